"""The campaign page as a drill-down: slot × metric table, then per slot a sortable banner table and the rule."""

import re
from datetime import datetime, timezone
from html import unescape

import pytest

from test_admin import admin, html, loaded, manager, settings_overrides  # noqa: F401  (fixtures)
from test_auth import users  # noqa: F401  (users is a fixture)


def section(text, quarter):
    start = text.index(f'id="slot-{quarter}"')
    return text[start:text.index("</section>", start)]


def banner_row(text, quarter, banner_id):
    part = section(text, quarter)
    start = part.index(f'data-banner-id="{banner_id}"')
    row = part[start:part.index("</tr>", start)]
    return [unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c))).strip()
            for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]


def test_campaign_page_has_a_slot_by_metric_table(admin, loaded, app):  # noqa: F811
    from models import CampaignStat

    app.config["CLOCK"] = lambda: datetime(2026, 1, 1, 12, 20, tzinfo=timezone.utc)
    text = html(admin.get("/admin/campaigns/4"))
    table = text[text.index('id="campaign-slots"'):text.index("</table>", text.index('id="campaign-slots"'))]
    for stat in CampaignStat.select().where(CampaignStat.campaign_id == 4):
        row = table[table.index(f'data-slot="{stat.quarter}"'):]
        row = row[:row.index("</tr>")]
        assert f"{stat.impressions:,}" in row and f"{stat.revenue:,.2f}" in row
        assert f"{stat.clicks / stat.impressions:.2%}" in row
    assert 'data-slot="2" class="current-slot"' in table and "now" in table
    assert 'href="/campaigns/4"' in text  # the public slot


def test_campaign_page_banner_table_has_every_metric_and_marks_the_plan(admin, loaded):  # noqa: F811
    from models import BannerStat, Plan

    text = html(admin.get("/admin/campaigns/4"))
    plan = Plan.get(Plan.campaign_id == 4, Plan.quarter == 1)
    stats = list(BannerStat.select().where((BannerStat.campaign_id == 4) & (BannerStat.quarter == 1)))
    outside = [s for s in stats if s.banner_id not in plan.banner_id_list]
    for stat in stats:
        cells = banner_row(text, 1, stat.banner_id)
        assert cells[2:5] == [f"{stat.impressions:,}", f"{stat.clicks:,}",
                              f"{stat.clicks / stat.impressions:.2%}" if stat.impressions else "—"]
        assert cells[7] == f"${stat.revenue:,.2f}"
        assert cells[8] == (f"${stat.revenue * 1000 / stat.impressions:,.2f}" if stat.impressions else "—")
        if stat.banner_id in plan.banner_id_list:
            assert cells[1].startswith(f"#{plan.banner_id_list.index(stat.banner_id) + 1}")
        else:
            assert cells[1] == "not shown now"
    assert outside or len(stats) <= len(plan.banner_id_list)


@pytest.mark.parametrize("column, key", [
    ("revenue", lambda s: s.revenue),
    ("impressions", lambda s: s.impressions),
    ("ctr", lambda s: s.clicks / s.impressions if s.impressions else None),
])
def test_campaign_page_banner_table_sorts(admin, loaded, column, key):  # noqa: F811
    from models import BannerStat, Plan

    text = html(admin.get(f"/admin/campaigns/4?sort={column}&dir=desc"))
    plan = Plan.get(Plan.campaign_id == 4, Plan.quarter == 1)
    stats = {s.banner_id: s for s in BannerStat.select().where((BannerStat.campaign_id == 4) & (BannerStat.quarter == 1))}
    ids = sorted(set(plan.banner_id_list) | set(stats))
    values = {b: key(stats[b]) if b in stats else (0 if column != "ctr" else None) for b in ids}
    present = sorted((b for b in ids if values[b] is not None), key=lambda b: values[b], reverse=True)
    shown = [int(b) for b in re.findall(r'data-banner-id="(\d+)"', section(text, 1))]
    assert shown[:len(present)] == present or [values[b] for b in shown[:len(present)]] == [values[b] for b in present]
    assert f'aria-sort="descending"' in section(text, 1)


def test_campaign_page_slots_have_captions_and_a_chart(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/campaigns/4"))
    assert text.count("<caption") == 6  # the slots, the ranking over the hour, one per slot
    assert 'id="chart-campaign-revenue-title"' in text


def test_campaign_page_says_each_slot_rule_in_plain_words(admin, loaded):  # noqa: F811
    from models import Plan

    text = html(admin.get("/admin/campaigns/4"))
    rules = re.findall(r'<p class="rule">([^<]+)</p>', text)
    assert len(rules) == Plan.select().where(Plan.campaign_id == 4).count() > 0
    assert all("X =" not in r and "converted in this slot" in r for r in rules), rules
    assert "random fill" not in text and "not in plan" not in text


def test_campaign_page_totals_the_hour_with_epc(admin, loaded):  # noqa: F811
    from models import CampaignStat

    stats = list(CampaignStat.select().where(CampaignStat.campaign_id == 4))
    text = html(admin.get("/admin/campaigns/4"))
    footer = text[text.index('data-slot="hour"'):text.index("</tr>", text.index('data-slot="hour"'))]
    cells = [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", footer, re.S)]
    impressions, clicks = sum(s.impressions for s in stats), sum(s.clicks for s in stats)
    revenue = sum(s.revenue for s in stats)
    assert cells[:2] == ["The hour", f"{impressions:,}"] and cells[2] == f"{clicks:,}"
    assert cells[6] == f"${revenue:,.2f}" and cells[8] == f"${revenue / clicks:,.2f}"  # revenue and EPC


def test_campaign_page_ranks_its_banners_by_revenue_over_the_hour(admin, loaded):  # noqa: F811
    from models import BannerStat

    sums = {}
    for s in BannerStat.select().where(BannerStat.campaign_id == 4):
        revenue, clicks, impressions = sums.get(s.banner_id, (0.0, 0, 0))
        sums[s.banner_id] = (revenue + s.revenue, clicks + s.clicks, impressions + s.impressions)
    expected = sorted(sums, key=lambda b: (-sums[b][0], -sums[b][1], b))
    text = html(admin.get("/admin/campaigns/4"))
    ranking = text[text.index('id="banner-ranking"'):text.index("</section>", text.index('id="banner-ranking"'))]
    assert [int(b) for b in re.findall(r'data-banner-id="(\d+)"', ranking)] == expected
    best = ranking[ranking.index(f'data-banner-id="{expected[0]}"'):]
    assert f"${sums[expected[0]][0]:,.2f}" in best[:best.index("</tr>")]


def test_navigation_box_goes_to_a_campaign(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/"))
    assert '<form method="get" action="/admin/campaigns/go" class="go-to"' in text and 'for="go-to-campaign"' in text
    assert admin.get("/admin/campaigns/go?id=37").location == "/admin/campaigns/37"
    assert admin.get("/admin/campaigns/go?id=abc").location == "/admin/campaigns"
    missing = admin.get("/admin/campaigns/go?id=999999", follow_redirects=True)
    assert missing.status_code == 404 and "There is no campaign 999999" in missing.get_data(as_text=True)


@pytest.mark.parametrize("x, scenario, banners, fill, words", [
    (13, "top10_revenue", 10, 0, "13 banners converted in this slot: the 10 that earned most are shown, best first."),
    (6, "top_x_revenue", 6, 0, "6 banners converted in this slot: all are shown, the best earner first."),
    (1, "revenue_then_clicks", 5, 0,
     "1 banner converted in this slot: it is shown first, best earner first, then the 4 banners clicked most."),
    (2, "revenue_then_clicks", 5, 3, "2 banners converted in this slot: they are shown first, best earner first, "
                                     "and 3 banners picked at random from the campaign's others to make five."),
    (0, "top5_clicks", 5, 1, "No banner converted in this slot: the 4 banners clicked most are shown, "
                             "and 1 banner picked at random from the campaign's others to make five."),
    (0, "top5_clicks", 5, 5, "No banner converted or was clicked in this slot, "
                             "and 5 banners picked at random from the campaign's others to make five."),
])
def test_describe_plan_in_a_managers_words(x, scenario, banners, fill, words):
    from types import SimpleNamespace

    from webapp.admin_campaign import describe_plan

    plan = SimpleNamespace(x=x, scenario=scenario, banner_id_list=list(range(1, banners + 1)), random_fill=fill)
    assert describe_plan(plan) == words


def test_campaign_page_slot_anchors_say_slot_and_old_quarter_anchors_still_land(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/campaigns/4"))
    for quarter in (1, 2, 3, 4):
        assert f'<section class="slot-plan" id="slot-{quarter}"' in text and f'href="#slot-{quarter}"' in text
        assert f'id="quarter-{quarter}"' in text  # a kept link to #quarter-N lands on the same slot
    assert "#quarter-" not in text
