"""The overview: KPI cards of the slot served now, the four slots on one scale, the period; operations on the ingest page."""

import re
from datetime import datetime, timezone
from html import unescape

import pytest

from webapp.charts import axis_step

from test_admin import admin, html, loaded, manager, settings_overrides  # noqa: F401  (fixtures)
from test_auth import users  # noqa: F401  (users is a fixture)


@pytest.fixture
def at_half_past(app):
    app.config["CLOCK"] = lambda: datetime(2026, 1, 1, 12, 31, tzinfo=timezone.utc)
    return 3


def slot_totals():
    from models import CampaignStat

    totals = {q: {"impressions": 0, "clicks": 0, "conversions": 0, "revenue": 0.0} for q in (1, 2, 3, 4)}
    for s in CampaignStat.select():
        for k in totals[s.quarter]:
            totals[s.quarter][k] += getattr(s, k)
    return totals


def card(text, key):
    start = text.index(f'data-kpi="{key}"')
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text[start:text.index("</li>", start)])))


def test_overview_kpi_cards_show_the_current_slot_with_changes(admin, loaded, at_half_past):  # noqa: F811
    text = html(admin.get("/admin/"))
    totals = slot_totals()
    now, before = totals[3], totals[2]
    assert "Slot :30–:44 of each hour (UTC): being served now" in text
    revenue = card(text, "revenue")
    assert f" ${now['revenue']:,.2f} " in revenue  # the Revenue card with its currency sign
    vs_previous = (now["revenue"] - before["revenue"]) / before["revenue"]
    assert f"{'+' if vs_previous > 0 else '−'}{abs(vs_previous):.1%} vs :15–:29".replace("%", " %") in revenue
    average = sum(t["revenue"] for t in totals.values()) / 4
    vs_average = (now["revenue"] - average) / average
    assert f"{'+' if vs_average > 0 else '−'}{abs(vs_average):.1%} vs hour average".replace("%", " %") in revenue
    assert f"{now['impressions']:,}" in card(text, "impressions")
    assert f"{now['clicks'] / now['impressions']:.2%}" in card(text, "ctr")
    assert f"${now['revenue'] * 1000 / now['impressions']:,.2f}" in card(text, "rpm")
    for key in ("impressions", "clicks", "ctr", "conversions", "cvr", "revenue", "rpm"):
        assert f'aria-describedby="help-kpi-{key}"' in text


def test_overview_charts_the_four_slots_on_one_scale_with_values(admin, loaded, at_half_past):  # noqa: F811
    text = html(admin.get("/admin/"))
    totals = slot_totals()
    svg = text[text.index('<svg class="slot-chart"'):text.index("</svg>")]
    heights = [float(h) for h in re.findall(r'<rect class="bar[^"]*" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)]
    revenues = [totals[q]["revenue"] for q in (1, 2, 3, 4)]
    step = axis_step(max(revenues), "money")
    top = 2 * step
    assert heights == pytest.approx([round(r / top * 154, 1) for r in revenues], abs=0.11)  # one scale: bars ∝ values
    for q, r in zip((1, 2, 3, 4), revenues):
        assert f">${r:,.2f}</text>" in svg
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', svg)
    assert ticks == ["0", f"${step:,.0f}", f"${top:,.0f}"]  # the axis at round figures
    assert '<rect class="bar current"' in svg and ">now</text>" in svg
    assert 'role="img"' in svg and "<title id=\"chart-revenue-title\">Revenue per slot of the hour, in USD</title>" in svg


def test_overview_says_which_period_the_figures_cover(admin, loaded):  # noqa: F811
    from dashboard_queries import last_loaded_at

    text = html(admin.get("/admin/"))
    assert f"Figures from the imported data, loaded <time datetime=\"{last_loaded_at().isoformat()}Z\">" in text
    assert "live events since" not in text


def test_overview_says_since_when_live_events_exist(admin, loaded, app):  # noqa: F811
    from live.events import STREAM, encode, impression_event

    ctx = app.extensions["runtime"]
    moment = datetime(2026, 3, 1, 9, 0, 0, tzinfo=timezone.utc)
    event = impression_event(moment, 1, 4, 101, "v", 1, "i1")
    ctx.redis.xadd(ctx.key(STREAM), {"e": encode(event)}, id=f"{int(moment.timestamp() * 1000)}-0")
    text = html(admin.get("/admin/"))
    assert 'live events since <time datetime="2026-03-01T09:00:00Z">' in text


def test_overview_totals_table_has_the_whole_hour(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/"))
    footer = text[text.index("<tfoot>"):text.index("</tfoot>")]
    hour = sum(t["revenue"] for t in slot_totals().values())
    assert "The hour" in footer and f"{hour:,.2f}" in footer


def test_overview_without_data_says_so(admin):  # noqa: F811
    text = html(admin.get("/admin/"))
    assert "No data has been imported yet" in text and "nothing has been imported" in text


@pytest.mark.parametrize("role", ["ada", "mel"])
def test_overview_has_no_operations(client, users, loaded, role):  # noqa: F811
    from test_auth import login

    login(client, role)
    text = html(client.get("/admin/"))
    assert "Data version" not in text and "Workers alive" not in text


def test_operations_are_on_the_ingest_page_for_admins_only(client, users, loaded):  # noqa: F811
    from models import get_data_version
    from test_auth import login

    login(client, "ada")
    text = html(client.get("/admin/ingests"))
    ops = text[text.index('id="operations"'):]
    assert f"<dt>Data version</dt><dd><strong>{get_data_version()}</strong>" in ops
    assert "Workers alive" in ops and "No worker listens" in ops and "Failed jobs" in ops
    other = client.application.test_client()
    login(other, "mel")
    assert 'id="operations"' not in html(other.get("/admin/ingests"))
