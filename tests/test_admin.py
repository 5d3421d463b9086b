"""The dashboard over HTTP: every page per role, fragments with and without HX-Request, CSV, ingests."""

import csv
import io
import re
import subprocess
from html import unescape
from pathlib import Path

import pytest

from conftest import write_source
from test_auth import csrf_of, login, users  # noqa: F401  (users is a fixture)

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["/admin/", "/admin/campaigns", "/admin/campaigns?quarter=2&sort=revenue&dir=desc",
         "/admin/campaigns/1", "/admin/ingests", "/admin/duplicates"]
ROW = re.compile(r'<tr data-campaign="(\d+)" data-quarter="(\d)"[^>]*>')


@pytest.fixture
def settings_overrides(settings_overrides, demo_source):
    return {**settings_overrides, "ingest_source": str(demo_source)}


@pytest.fixture
def loaded(app, demo_source):
    """The demo source loaded by one ingest run."""
    from jobs.ingest import run_ingest

    with app.app_context():
        run_ingest(str(demo_source), trigger="cli")
    return app


@pytest.fixture
def admin(client, users):  # noqa: F811
    login(client, "ada")
    return client


@pytest.fixture
def manager(client, users):  # noqa: F811
    login(client, "mel")
    return client


def html(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def table_rows(text):
    return [(int(c), int(q)) for c, q in ROW.findall(text)]


def stats_sorted(key, descending=False, quarter=None):
    """CampaignStat rows as (campaign, quarter), sorted in Python the way the table must sort them."""
    from models import CampaignStat

    rows = [r for r in CampaignStat.select() if quarter is None or r.quarter == quarter]
    rows.sort(key=lambda r: (r.campaign_id, r.quarter))
    present = [r for r in rows if key(r) is not None]
    present.sort(key=key, reverse=descending)
    return [(r.campaign_id, r.quarter) for r in present + [r for r in rows if key(r) is None]]


@pytest.mark.parametrize("role", ["ada", "mel"])
@pytest.mark.parametrize("path", PAGES)
def test_dashboard_page_renders_for_each_role(client, users, loaded, role, path):  # noqa: F811
    login(client, role)
    text = html(client.get(path))
    assert "<html" in text and f"{role} <span class=\"role\">" in text
    assert "X-CSRFToken" in text  # htmx sends the token from <body hx-headers>


def test_campaign_table_for_htmx_is_the_partial_and_otherwise_the_full_page(admin, loaded):
    full = admin.get("/admin/campaigns?quarter=1")
    partial = admin.get("/admin/campaigns?quarter=1", headers={"HX-Request": "true"})
    restore = admin.get("/admin/campaigns?quarter=1",
                        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in html(full) and html(full).count('id="campaign-table"') == 1
    assert html(partial).lstrip().startswith('<div id="campaign-table"') and "<html" not in html(partial)
    assert "<html" in html(restore)
    for response in (full, partial, restore):
        assert "HX-Request" in response.headers["Vary"]
    assert table_rows(html(full)) == table_rows(html(partial))
    assert "HX-Push-Url" not in full.headers


def test_campaign_table_pushes_the_canonical_url_of_the_view(admin, loaded):
    response = admin.get("/admin/campaigns?quarter=2&campaign=&sort=clicks&dir=desc&page=99",
                         headers={"HX-Request": "true"})
    assert response.headers["HX-Push-Url"] == "/admin/campaigns?slot=2&sort=clicks&dir=desc&page=3"


@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}])
def test_ingest_rows_fragment_is_always_the_partial(admin, loaded, headers):
    text = html(admin.get("/admin/ingests/rows", headers=headers))
    assert text.lstrip().startswith('<div id="ingest-rows"') and "<html" not in text


@pytest.mark.parametrize("column, key", [
    ("campaign", lambda r: r.campaign_id),
    ("quarter", lambda r: r.quarter),
    ("impressions", lambda r: r.impressions),
    ("clicks", lambda r: r.clicks),
    ("conversions", lambda r: r.conversions),
    ("revenue", lambda r: r.revenue),
    ("ctr", lambda r: r.clicks / r.impressions if r.impressions else None),
    ("cvr", lambda r: r.conversions / r.clicks if r.clicks else None),
    ("epc", lambda r: r.revenue / r.clicks if r.clicks else None),
    ("rpm", lambda r: r.revenue * 1000 / r.impressions if r.impressions else None),
    ("x", lambda r: r.x),
    ("scenario", lambda r: r.scenario),
    ("banners", lambda r: r.banners),
])
@pytest.mark.parametrize("descending", [False, True])
def test_campaign_table_sorts_by_every_column(admin, loaded, column, key, descending):
    from webapp.admin_stats import PAGE_SIZES

    PAGE_SIZE = PAGE_SIZES[0]

    url = f"/admin/campaigns?sort={column}" + ("&dir=desc" if descending else "")
    expected = stats_sorted(key, descending)
    assert table_rows(html(admin.get(url, headers={"HX-Request": "true"}))) == expected[:PAGE_SIZE]
    assert table_rows(html(admin.get(url + "&page=3"))) == expected[2 * PAGE_SIZE:3 * PAGE_SIZE]


def test_campaign_table_filters_by_quarter_and_campaign(admin, loaded):
    assert {q for _, q in table_rows(html(admin.get("/admin/campaigns?quarter=3")))} == {3}
    assert table_rows(html(admin.get("/admin/campaigns?campaign=7"))) == [(7, 1), (7, 2), (7, 3), (7, 4)]
    assert table_rows(html(admin.get("/admin/campaigns?campaign=7&quarter=2"))) == [(7, 2)]
    assert "No statistics match" in html(admin.get("/admin/campaigns?campaign=9999"))


def test_campaign_table_links_keep_the_view_in_the_url(admin, loaded):
    text = html(admin.get("/admin/campaigns?quarter=2&sort=clicks&dir=desc"))
    assert 'hx-push-url="true"' in text
    assert 'href="/admin/campaigns?slot=2&amp;sort=clicks&amp;dir=desc&amp;page=2"' in text
    assert 'href="/admin/campaigns?slot=2&amp;sort=clicks"' in text  # clicking the sorted column flips it
    assert 'href="/admin/campaigns.csv?slot=2&amp;sort=clicks&amp;dir=desc"' in text


def test_campaign_table_page_past_the_end_shows_the_last_page(admin, loaded):
    last = html(admin.get("/admin/campaigns?page=999"))
    assert "Page 10 of 10" in last and len(table_rows(last)) == 20


def test_campaign_table_totals_row_sums_the_whole_view(admin, loaded):
    from models import CampaignStat

    text = html(admin.get("/admin/campaigns?quarter=2"))
    rows = list(CampaignStat.select().where(CampaignStat.quarter == 2))
    footer = text[text.index("<tfoot>"):]
    assert f"{len(rows)} rows" in footer
    assert f"{sum(r.clicks for r in rows):,}" in footer
    assert f"{sum(r.revenue for r in rows):,.2f}" in footer


def test_campaign_table_ratios_show_a_dash_when_the_divisor_is_zero(admin, loaded):
    from models import CampaignStat

    CampaignStat.create(quarter=1, campaign_id=777, impressions=0, clicks=0, conversions=0, revenue=0.0,
                        x=0, scenario="top5_clicks", banners=0)
    text = html(admin.get("/admin/campaigns?campaign=777"))
    row = text[text.index('data-campaign="777"'):text.index("</tr>", text.index('data-campaign="777"'))]
    assert row.count("—") == 6  # CTR, CVR, RPM, EPC, and both changes against the hour's average
    for column in ("ctr", "cvr", "epc", "rpm"):
        assert table_rows(html(admin.get(f"/admin/campaigns?quarter=1&sort={column}&page=3")))[-1] == (777, 1)
    lines = list(csv.reader(io.StringIO(admin.get("/admin/campaigns.csv?campaign=777").get_data(as_text=True))))
    assert lines[1][6:10] == ["", "", "", ""] and lines[2][6:10] == ["", "", "", ""]


def test_campaign_csv_is_the_current_view_with_totals_from_the_database(admin, loaded):
    from models import CampaignStat

    response = admin.get("/admin/campaigns.csv?quarter=2&sort=revenue&dir=desc&page=2")
    assert response.status_code == 200 and response.content_type.startswith("text/csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="campaign-stats_slot-15-29_by-revenue-desc.csv"'
    lines = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    header, body, total = lines[0], lines[1:-1], lines[-1]
    assert header == ["campaign", "slot_of_hour", "impressions", "clicks", "conversions", "revenue_usd",
                      "ctr_fraction", "cvr_fraction", "epc_usd", "rpm_usd", "x", "scenario", "banners"]
    db_rows = sorted(CampaignStat.select().where(CampaignStat.quarter == 2),
                     key=lambda r: (-r.revenue, r.campaign_id))
    assert [(int(r[0]), r[1]) for r in body] == [(r.campaign_id, ":15-:29") for r in db_rows]  # every page, in order
    for line, row in zip(body, db_rows):
        assert [int(v) for v in line[2:5]] == [row.impressions, row.clicks, row.conversions]
        assert float(line[5]) == pytest.approx(row.revenue, abs=1e-6)
        assert float(line[6]) == pytest.approx(row.clicks / row.impressions, abs=1e-6)
        assert float(line[9]) == pytest.approx(row.revenue * 1000 / row.impressions, abs=1e-6)
        assert line[10:] == [str(row.x), row.scenario, str(row.banners)]
    assert total[0] == "total"
    assert int(total[3]) == sum(r.clicks for r in db_rows)
    assert int(total[2]) == sum(r.impressions for r in db_rows)
    assert int(total[4]) == sum(r.conversions for r in db_rows)
    assert float(total[5]) == pytest.approx(sum(r.revenue for r in db_rows), abs=1e-4)
    assert float(total[8]) == pytest.approx(sum(r.revenue for r in db_rows) / sum(r.clicks for r in db_rows), abs=1e-6)


def test_campaign_page_shows_each_quarters_plan_in_rank_order_with_its_rule(admin, loaded):
    from models import Banner, Plan
    from webapp.admin_campaign import describe_plan

    text = html(admin.get("/admin/campaigns/1"))
    for plan in Plan.select().where(Plan.campaign_id == 1):
        section = text[text.index(f'id="slot-{plan.quarter}"'):]
        section = section[:section.index("</section>")]
        ranked = [int(b) for b in re.findall(r'data-banner-id="(\d+)" data-rank=', section)]
        assert ranked == plan.banner_id_list  # sorted by rank by default
        assert describe_plan(plan) in unescape(section)  # the rule in a manager's words
        first = plan.banner_id_list[0]
        banner = Banner.get_or_none(Banner.id == first)
        assert (f'src="/images/{banner.image_name}"' if banner else "placeholder.svg") in section


def test_campaign_page_unknown_campaign_is_404(admin, loaded):
    assert admin.get("/admin/campaigns/9999").status_code == 404


def test_ingests_page_shows_the_button_to_admins_only(client, users, loaded):  # noqa: F811
    login(client, "ada")
    assert "Run ingest now" in html(client.get("/admin/ingests"))
    other = client.application.test_client()
    login(other, "mel")
    assert "Run ingest now" not in html(other.get("/admin/ingests"))


def test_run_ingest_by_a_manager_is_403(manager, loaded):
    from models import IngestRun

    response = manager.post("/admin/ingests", headers={"HX-Request": "true", "X-CSRFToken": csrf_of(manager, "/admin/")})
    assert response.status_code == 403
    assert IngestRun.select().count() == 1


def test_run_ingest_without_csrf_is_400(admin, loaded):
    from models import IngestRun

    assert admin.post("/admin/ingests", headers={"HX-Request": "true"}).status_code == 400
    assert IngestRun.select().count() == 1


def test_run_ingest_queues_a_run_that_polls_and_a_second_press_says_busy(admin, loaded, app):
    from models import IngestRun

    token = csrf_of(admin, "/admin/")
    headers = {"HX-Request": "true", "X-CSRFToken": token}
    first = html(admin.post("/admin/ingests", headers=headers))
    run = IngestRun.select().order_by(IngestRun.id.desc()).get()
    assert (run.status, run.trigger, run.user) == ("queued", "manual", "ada")
    # The rows follow the run just queued, so the message above them can say how it goes.
    assert first.lstrip().startswith(f'<div id="ingest-rows" hx-get="/admin/ingests/rows?follow={run.id}" hx-trigger="every 2s"')
    assert f"Ingest run #{run.id} is queued." in first
    assert f'id="run-{run.id}" data-status="queued"' in first and "<progress" in first
    assert "No worker listens" in first
    second = html(admin.post("/admin/ingests", headers=headers))
    assert f"An ingest is already in progress (run #{run.id} is queued)" in second
    assert IngestRun.select().count() == 2
    assert app.extensions["runtime"].queue().count == 1


def test_run_ingest_from_a_plain_form_redirects_with_a_message(admin, loaded):
    response = admin.post("/admin/ingests", data={"csrf_token": csrf_of(admin, "/admin/")})
    assert response.status_code == 302 and response.location == "/admin/ingests"
    assert "is queued." in html(admin.get("/admin/ingests"))


def test_ingest_rows_stop_polling_when_no_run_is_active(admin, loaded):
    text = html(admin.get("/admin/ingests/rows"))
    assert 'hx-trigger="every 20s"' in text.split(">", 1)[0]  # only the slow poll for runs started elsewhere
    assert 'data-status="succeeded with rejects"' in text
    assert "status-succeeded-with-rejects" in text


def test_ingest_history_marks_a_run_without_a_live_worker_abandoned(admin, loaded):
    from models import IngestRun

    stuck = IngestRun.create(trigger="manual", source="x", status=IngestRun.RUNNING)
    text = html(admin.get("/admin/ingests"))
    assert f'id="run-{stuck.id}" data-status="abandoned"' in text
    assert 'hx-trigger="every 20s"' in text[text.index('<div id="ingest-rows"'):].split(">", 1)[0]


def test_ingest_history_shows_per_file_counts_and_rejected_reasons(admin, loaded):
    from models import IngestFile

    text = html(admin.get("/admin/ingests"))
    rejected = IngestFile.select().where(IngestFile.rejected > 0).first()
    line, reason = rejected.sample_list[0]
    assert "<details" in text and f"line {line}: {reason}" in text
    assert f"<th scope=\"row\">{rejected.quarter}/{rejected.name}</th>" in text


def test_duplicates_page_counts_the_loads_behind_the_served_data(admin, loaded, app, tmp_path, demo_source):
    from jobs.ingest import run_ingest
    from models import IngestFile

    first = html(admin.get("/admin/duplicates"))
    files = list(IngestFile.select().where(IngestFile.quarter.is_null(False)))
    assert f"{sum(f.duplicates for f in files):,}" in first[first.index("<tfoot>"):]
    assert first.count("run #1,") == 4
    with app.app_context():
        run_ingest(str(demo_source), trigger="cli")  # unchanged: the counts stay those of run #1
    assert html(admin.get("/admin/duplicates")).count("run #1,") == 4


def test_duplicates_page_follows_a_quarter_reloaded_by_a_later_run(admin, loaded, app, tmp_path):
    from jobs.ingest import run_ingest

    from models import IngestFile

    source = write_source(tmp_path / "changed", {
        q: {"impressions": "1,1\n", "clicks": "10,1,1\n10,1,1\n10,2,1\n", "conversions": "20,10,1.5\n"}
        for q in (1, 2, 3, 4)
    })
    with app.app_context():
        run_ingest(str(source), trigger="cli")
    text = html(admin.get("/admin/duplicates"))
    assert text.count("run #2,") == 4 and "run #1," not in text
    footer = text[text.index("<tfoot>"):text.index("</tfoot>")]
    numbers = [int(n.replace(",", "")) for n in re.findall(r'<td class="num">([\d,]+)</td>', footer)]
    files = list(IngestFile.select().where((IngestFile.run == 2) & IngestFile.quarter.is_null(False)))
    fields = ("rows_read", "loaded", "duplicates", "conflicts", "rejected", "orphans")
    assert numbers == [sum(getattr(f, name) for f in files) for name in fields]
    assert numbers[2:4] == [4, 4]  # one repeated click and one conflicting click per quarter



def write_live(folder, conversions, last_entry):
    """A live batch as the exporter leaves it: the file, and the manifest that vouches for it."""
    import json

    (folder / "conversions.csv").write_text(conversions)
    manifest = {"last_entry": last_entry, "sizes": {"conversions.csv": len(conversions.encode())}}
    (folder / "_manifest.json").write_text(json.dumps(manifest))


def test_duplicates_page_ignores_a_run_whose_live_batch_was_rejected(admin, app, tmp_path):
    """Historical files re-read for a new live batch that fails: the served data, and the page, stay run #1's."""
    from datetime import datetime, timezone

    from jobs.ingest import run_ingest

    rows = {"impressions": "1,1\n2,1\n", "clicks": "10,1,1\n10,1,1\n", "conversions": "20,10,1.5\n"}
    source = write_source(tmp_path / "src", {q: rows for q in (1, 2, 3, 4)})
    with app.app_context():
        run_ingest(str(source), trigger="cli")
        folder = source / "live" / f"{datetime.now(timezone.utc):%Y-%m-%d/%H}" / "1"
        folder.mkdir(parents=True)
        write_live(folder, "wrong,header\n1,2\n", "1-0")  # read last: the others get hashed
        run_ingest(str(source), trigger="cli", live_hours=1)
    text = html(admin.get("/admin/duplicates"))
    assert text.count("run #1,") == 4 and "run #2," not in text
    write_live(folder, "conversion_id,click_id,revenue\n21,10,2.5\n", "2-0")
    with app.app_context():
        run_ingest(str(source), trigger="cli", live_hours=1)
    text = html(admin.get("/admin/duplicates"))
    assert text.count("run #1,") == 3 and text.count("run #3,") == 1
    assert f"<td>{folder.relative_to(source)}/conversions.csv</td>" in text  # the live batch is listed


@pytest.fixture
def worker(worker_env, settings_overrides, demo_source):
    """Start a burst RQ worker on this test's queue; it drains the queue and exits."""
    env = {**worker_env, "INGEST_SOURCE": str(demo_source)}

    def start():
        return subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "rq"), "worker", "--burst", "--url", settings_overrides["redis_url"],
             settings_overrides["queue_name"]],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    return start


def test_run_ingest_goes_from_queued_to_succeeded_with_a_real_worker(admin, worker, app):
    headers = {"HX-Request": "true", "X-CSRFToken": csrf_of(admin, "/admin/")}
    queued = html(admin.post("/admin/ingests", headers=headers))
    assert 'data-status="queued"' in queued and 'hx-trigger="every 2s"' in queued
    process = worker()
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output.decode()
    rows = html(admin.get("/admin/ingests/rows", headers={"HX-Request": "true"}))
    assert 'data-status="succeeded with rejects"' in rows, output.decode()
    assert 'hx-trigger="every 20s"' in rows.split(">", 1)[0]
    assert "manual by ada" in rows
    assert table_rows(html(admin.get("/admin/campaigns?quarter=1")))  # the data arrived



@pytest.mark.parametrize("path", ["/admin/campaigns?campaign=99999999999999999999", "/admin/campaigns.csv?campaign=99999999999999999999"])
def test_campaign_filter_beyond_64_bits_is_ignored_not_a_500(manager, loaded, path):
    assert manager.get(path).status_code == 200


def test_campaign_page_beyond_64_bits_is_404_not_500(manager, loaded):
    assert manager.get("/admin/campaigns/99999999999999999999").status_code == 404


@pytest.mark.parametrize("path", ["/admin/", "/admin/campaigns", "/admin/campaigns.csv", "/admin/campaigns/1"])
def test_dashboard_pages_and_csv_are_not_sniffed_nor_stored(admin, loaded, path):
    response = admin.get(path)
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_slot_answers_405_to_methods_it_does_not_take(client, loaded, method):
    response = client.open("/campaigns/1", method=method)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
