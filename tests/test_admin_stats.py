"""The campaign statistics table: plain words, RPM, changes against the hour, id prefixes, page sizes, status."""

import re
from datetime import datetime, timezone
from html import unescape

import pytest

from test_admin import admin, html, loaded, manager, settings_overrides, table_rows  # noqa: F401  (fixtures)
from test_auth import users  # noqa: F401  (users is a fixture)


def row_html(text, campaign, quarter):
    start = text.index(f'<tr data-campaign="{campaign}" data-quarter="{quarter}"')
    return text[start:text.index("</tr>", start)]


def cells(row):
    return [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]


def test_stats_table_says_slot_of_the_hour_and_the_currency(admin, loaded, app):  # noqa: F811
    app.config["CLOCK"] = lambda: datetime(2026, 1, 1, 12, 50, tzinfo=timezone.utc)
    text = html(admin.get("/admin/campaigns?campaign=4"))
    assert "Slot of the hour" in text and "Quarter" not in text and ">Q1<" not in text
    assert [cells(row_html(text, 4, q))[1] for q in (1, 2, 3, 4)] == [":00–:14", ":15–:29", ":30–:44", ":45–:59 now"]
    assert 'data-sort="revenue" aria-describedby="help-revenue">Revenue <span class="unit">USD</span>' in text


def test_stats_table_currency_comes_from_the_setting(client, users, loaded):  # noqa: F811
    from dataclasses import replace

    from test_auth import login

    client.application.extensions["settings"] = replace(client.application.extensions["settings"], currency="EUR")
    login(client, "ada")
    assert '<span class="unit">EUR</span>' in html(client.get("/admin/campaigns"))
    assert client.get("/admin/campaigns.csv").get_data(as_text=True).startswith(
        "campaign,slot_of_hour,impressions,clicks,conversions,revenue_eur,")


def test_currency_setting_is_read_from_the_environment():
    from config import load_settings

    assert load_settings({}).currency == "USD"
    assert load_settings({"CURRENCY": "EUR"}).currency == "EUR"


@pytest.mark.parametrize("column", ["impressions", "clicks", "ctr", "conversions", "cvr", "revenue", "rpm", "epc", "quarter"])
def test_stats_table_headers_explain_themselves(admin, loaded, column):  # noqa: F811
    text = html(admin.get("/admin/campaigns"))
    assert f'aria-describedby="help-{column}"' in text
    tip = re.search(rf'<span class="tip" id="help-{column}" role="tooltip">([^<]+)</span>', text)
    assert tip and len(tip.group(1)) > 20


def test_stats_table_shows_rpm_and_changes_against_the_hour_average(admin, loaded):  # noqa: F811
    from models import CampaignStat

    stats = {s.quarter: s for s in CampaignStat.select().where(CampaignStat.campaign_id == 4)}
    text = html(admin.get("/admin/campaigns?campaign=4"))
    hour_revenue = sum(s.revenue for s in stats.values()) / 4
    hour_ctr = sum(s.clicks for s in stats.values()) / sum(s.impressions for s in stats.values())
    for quarter, stat in stats.items():
        row = cells(row_html(text, 4, quarter))
        assert row[2] == f"${stat.revenue:,.2f}"  # revenue and RPM lead (first on a phone's screen)
        assert row[3] == f"${stat.revenue * 1000 / stat.impressions:,.2f}"  # RPM, money with its sign
        assert row[9] == f"${stat.revenue / stat.clicks:,.2f}"  # EPC, to the cent like revenue
        revenue_change = (stat.revenue - hour_revenue) / hour_revenue
        assert row[10] == f"{'+' if revenue_change > 0 else '−'}{abs(revenue_change):.1%}".replace("%", " %")
        ctr_change = (stat.clicks / stat.impressions - hour_ctr) / hour_ctr
        assert row[11] == f"{'+' if ctr_change > 0 else '−'}{abs(ctr_change):.1%}".replace("%", " %")


def test_stats_table_hides_the_rule_columns_until_asked(admin, loaded):  # noqa: F811
    plain = html(admin.get("/admin/campaigns"))
    assert 'data-sort="scenario"' not in plain and "Show the rotation rule columns" in plain
    assert 'href="/admin/campaigns?rule=1"' in plain
    shown = html(admin.get("/admin/campaigns?rule=1&sort=x"))
    assert 'data-sort="scenario"' in shown and "Hide the rotation rule columns" in shown
    assert 'href="/admin/campaigns?sort=x&amp;dir=desc&amp;rule=1"' in shown  # sorting keeps the group open


def test_stats_table_marks_the_current_slot_in_words(admin, loaded, app):  # noqa: F811
    app.config["CLOCK"] = lambda: datetime(2026, 1, 1, 12, 31, tzinfo=timezone.utc)
    text = html(admin.get("/admin/campaigns?campaign=4"))
    assert 'class="current-slot"' in row_html(text, 4, 3) and "now" in cells(row_html(text, 4, 3))[1]
    assert "now" not in cells(row_html(text, 4, 2))[1] and "current-slot" not in row_html(text, 4, 2)


def test_stats_table_campaign_filter_is_an_id_prefix(admin, loaded):  # noqa: F811
    from models import CampaignStat

    expected = sorted((s.campaign_id, s.quarter) for s in CampaignStat.select()
                      if str(s.campaign_id).startswith("1"))
    text = html(admin.get("/admin/campaigns?campaign=1&size=100"))
    assert table_rows(text) == expected and {c for c, _ in expected} >= {1, 10, 19}
    assert 'min="1"' in text


def test_stats_table_campaign_filter_not_a_number_is_ignored(admin, loaded):  # noqa: F811
    assert len(table_rows(html(admin.get("/admin/campaigns?campaign=abc")))) == 20


@pytest.mark.parametrize("value", ["0", "-1", str(2**64)])
def test_stats_table_campaign_filter_no_id_starts_with_shows_no_rows(admin, loaded, value):  # noqa: F811
    """No campaign id is 0, negative or past 64 bits: the filter matches nothing, it is not dropped to show all."""
    response = admin.get(f"/admin/campaigns?campaign={value}")
    assert response.status_code == 200 and table_rows(html(response)) == []
    csv_rows = admin.get(f"/admin/campaigns.csv?campaign={value}").get_data(as_text=True).splitlines()
    assert [row.split(",")[:3] for row in csv_rows[1:]] == [["total", "", "0"]]  # no campaign's row, a total of none


def test_id_prefix_ranges_cover_each_length_up_to_the_largest_id():
    from dashboard_queries import id_prefix_ranges

    assert id_prefix_ranges(1, max_id=2000) == [(1, 1), (10, 19), (100, 199), (1000, 1999)]
    assert id_prefix_ranges(25, max_id=2600) == [(25, 25), (250, 259), (2500, 2599)]
    assert id_prefix_ranges(3, max_id=35) == [(3, 3), (30, 35)]


@pytest.mark.parametrize("size, rows", [("50", 50), ("100", 100), ("7", 20)])
def test_stats_table_page_size_is_a_choice(admin, loaded, size, rows):  # noqa: F811
    text = html(admin.get(f"/admin/campaigns?size={size}"))
    assert len(table_rows(text)) == rows
    if size != "7":
        assert f'<option value="{size}" selected>' in text and f"size={size}" in text


def test_stats_table_pager_scrolls_to_the_table_top(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/campaigns?page=2"))
    assert re.search(r'id="page-next"[^>]*hx-swap="outerHTML show:#campaign-table:top"', text)
    assert re.search(r'id="page-prev"[^>]*hx-swap="outerHTML show:#campaign-table:top"', text)


def test_stats_table_status_says_what_changed_and_htmx_updates_it_out_of_band(admin, loaded):  # noqa: F811
    full = html(admin.get("/admin/campaigns?sort=revenue&dir=desc&quarter=2"))
    status = "Sorted by revenue, descending, page 1 of 3, slot :15–:29"
    assert f'<p id="table-status" class="table-status" role="status" aria-live="polite">{status}</p>' in full
    partial = html(admin.get("/admin/campaigns?sort=revenue&dir=desc&quarter=2", headers={"HX-Request": "true"}))
    assert f'<p id="table-status" hx-swap-oob="innerHTML">{status}</p>' in partial
    assert partial.count('role="status"') == 0


def test_stats_table_has_a_caption_and_a_focusable_scroll_box(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/campaigns"))
    assert '<caption id="stats-caption">' in text
    assert '<div class="table-scroll" role="region" aria-labelledby="stats-caption" tabindex="0" data-focus-here>' in text


def test_stats_filters_are_outside_the_table_and_redrawn_only_when_something_else_changed(admin, loaded):  # noqa: F811
    full = html(admin.get("/admin/campaigns"))
    assert full.index('<form id="stats-filters"') < full.index('<div id="campaign-table"')
    from_form = html(admin.get("/admin/campaigns?campaign=1", headers={"HX-Request": "true", "HX-Trigger": "stats-filters"}))
    assert "stats-filters" not in from_form  # the form being typed in is left alone
    from_header = html(admin.get("/admin/campaigns?sort=clicks", headers={"HX-Request": "true", "HX-Trigger": "sort-clicks"}))
    assert '<form id="stats-filters"' in from_header and 'hx-swap-oob="true"' in from_header
    assert '<input type="hidden" name="sort" value="clicks">' in from_header


def test_stats_headers_sort_a_metric_highest_first_and_names_a_to_z(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/campaigns"))
    assert 'href="/admin/campaigns?sort=revenue&amp;dir=desc"' in text
    assert 'href="/admin/campaigns?sort=slot"' in text
    assert 'href="/admin/campaigns?sort=campaign&amp;dir=desc"' in text  # already by campaign A-Z: flipped
    text = html(admin.get("/admin/campaigns?sort=revenue&dir=desc"))
    assert 'href="/admin/campaigns?sort=revenue"' in text  # already highest first: flipped


@pytest.mark.parametrize("query, name", [
    ("", "campaign-stats.csv"),
    ("?quarter=3&campaign=1", "campaign-stats_slot-30-44_campaigns-starting-1.csv"),
    ("?sort=ctr", "campaign-stats_by-ctr-asc.csv"),
    ("?campaign=42&sort=revenue&dir=desc&page=3&size=50", "campaign-stats_campaigns-starting-42_by-revenue-desc.csv"),
])
def test_stats_csv_is_named_after_the_view(admin, loaded, query, name):  # noqa: F811
    response = admin.get("/admin/campaigns.csv" + query)
    assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'


def test_stats_urls_name_the_slot_and_old_quarter_urls_still_filter(admin, loaded):  # noqa: F811
    new = html(admin.get("/admin/campaigns?slot=2&sort=clicks&dir=desc"))
    old = html(admin.get("/admin/campaigns?quarter=2&sort=clicks&dir=desc"))  # a link someone kept
    assert {q for _, q in table_rows(new)} == {2} and table_rows(old) == table_rows(new)
    for text in (new, old):
        assert 'href="/admin/campaigns?slot=2&amp;sort=clicks"' in text  # its links say slot, not quarter
        assert 'href="/admin/campaigns.csv?slot=2&amp;sort=clicks&amp;dir=desc"' in text
        assert 'name="slot"' in text and not re.search(r"[?&;]quarter=", text)
    assert admin.get("/admin/campaigns.csv?quarter=2").get_data(as_text=True) == \
        admin.get("/admin/campaigns.csv?slot=2").get_data(as_text=True)
    overview = html(admin.get("/admin/"))
    assert 'href="/admin/campaigns?slot=3"' in overview and not re.search(r"[?&;]quarter=", overview)


def test_stats_table_leads_with_revenue_and_rpm_after_campaign_and_slot(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/campaigns"))
    head = text[text.index("<thead>"):text.index("</thead>")]
    assert re.findall(r'data-sort="(\w+)"', head) == ["campaign", "quarter", "revenue", "rpm", "impressions", "clicks",
                                                      "ctr", "conversions", "cvr", "epc"]
    foot = cells(text[text.index('<tr class="totals">'):text.index("</tfoot>")])
    assert foot[0] == "Totals" and foot[2].startswith("$") and foot[3].startswith("$")


def test_stats_sorting_by_the_slot_says_slot_in_the_url_and_old_links_still_sort(admin, loaded):  # noqa: F811
    new = html(admin.get("/admin/campaigns?sort=slot&dir=desc"))
    old = html(admin.get("/admin/campaigns?sort=quarter&dir=desc"))  # a link someone kept
    assert table_rows(new) == table_rows(old) and [q for _, q in table_rows(new)][:3] == [4, 4, 4]
    assert 'href="/admin/campaigns?sort=slot"' in new  # the sorted column's own link flips it
    assert 'href="/admin/campaigns?sort=slot"' in html(admin.get("/admin/campaigns"))  # first A-Z, as ever
    assert "sort=quarter" not in new and "sort=quarter" not in old
