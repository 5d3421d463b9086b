"""Ingest clarity on the dashboard: sources named, confirmation on a change of source, polling that notices and clears."""

import re

import pytest

from test_admin import admin, html, loaded, manager, settings_overrides  # noqa: F401  (fixtures)
from test_auth import csrf_of, users  # noqa: F401  (users is a fixture)


def hx(client):
    return {"HX-Request": "true", "X-CSRFToken": csrf_of(client, "/admin/")}


def opening_tag(text, element_id):
    start = text.index(f'id="{element_id}"')
    return text[text.rindex("<", 0, start):text.index(">", start) + 1]


def test_ingest_history_shows_the_source_of_each_run(admin, loaded, demo_source):  # noqa: F811
    text = html(admin.get("/admin/ingests"))
    run = text[text.index('id="run-1"'):]
    assert f"<code>{demo_source}</code>" in run[:run.index("</header>")]


def test_run_button_names_the_source_it_will_load(admin, loaded, demo_source):  # noqa: F811
    text = html(admin.get("/admin/ingests"))
    control = text[text.index('id="ingest-control"'):text.index("</section>", text.index('id="ingest-control"'))]
    assert f"<code>{demo_source}</code>" in control
    assert 'name="replace_source"' not in control  # the served data came from the same source: nothing to confirm


@pytest.fixture
def served_elsewhere(loaded, tmp_path):  # noqa: F811
    """The served data came from another source than the configured one."""
    from models import IngestRun

    IngestRun.update(source=str(tmp_path / "real-data")).execute()
    return str(tmp_path / "real-data")


def test_run_button_asks_to_confirm_a_change_of_source(admin, served_elsewhere, demo_source):  # noqa: F811
    text = html(admin.get("/admin/ingests"))
    control = text[text.index('id="ingest-control"'):text.index("</section>", text.index('id="ingest-control"'))]
    assert f"The data served now was loaded from <code>{served_elsewhere}</code>" in control
    assert re.search(r'<input type="checkbox" name="replace_source" value="1" required', control)


def test_run_ingest_with_a_changed_source_is_refused_without_confirmation(admin, served_elsewhere):  # noqa: F811
    from models import IngestRun

    text = html(admin.post("/admin/ingests", headers=hx(admin)))
    assert "Nothing was queued: confirm that the data from" in text
    assert IngestRun.select().count() == 1
    response = admin.post("/admin/ingests", data={"csrf_token": csrf_of(admin, "/admin/")})
    assert response.status_code == 302 and IngestRun.select().count() == 1
    queued = html(admin.post("/admin/ingests", data={"replace_source": "1"}, headers=hx(admin)))
    assert "is queued." in queued and IngestRun.select().count() == 2


def test_run_button_is_disabled_with_progress_while_a_run_is_active(admin, loaded):  # noqa: F811
    response = html(admin.post("/admin/ingests", headers=hx(admin)))
    control = opening_tag(response, "ingest-control")
    assert 'hx-swap-oob="true"' in control
    section = response[response.index('id="ingest-control"'):]
    assert re.search(r'<button[^>]*id="run-ingest-button"[^>]*disabled', section)
    assert "<progress" in section[:section.index("</section>")]
    page = html(admin.get("/admin/ingests"))
    assert re.search(r'<button[^>]*id="run-ingest-button"[^>]*disabled', page)


def test_ingest_rows_clear_the_notice_and_enable_the_button_when_no_run_is_active(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/ingests/rows", headers={"HX-Request": "true"}))
    notice = text[text.index('id="ingest-notice"') - 5:]
    assert 'hx-swap-oob="innerHTML"' in opening_tag(text, "ingest-notice")
    assert "notice-" not in notice[:notice.index("</div>")]
    assert not re.search(r'<button[^>]*id="run-ingest-button"[^>]*disabled', text)


def test_ingest_rows_following_a_run_say_how_it_ended(admin, loaded):  # noqa: F811
    from models import IngestRun, utcnow

    run = IngestRun.create(trigger="manual", source="/data", status=IngestRun.FAILED, started_at=utcnow(),
                           finished_at=utcnow(), error="quarter 2: clicks.csv is missing")
    text = html(admin.get(f"/admin/ingests/rows?follow={run.id}", headers={"HX-Request": "true"}))
    notice = text[text.index('id="ingest-notice"'):]
    assert f'<p class="notice notice-error">Ingest run #{run.id} failed: slot :15–:29: clicks.csv is missing</p>' in notice
    assert "follow=" not in opening_tag(text, "ingest-rows")  # it ended: the page stops following it


def test_ingest_rows_for_a_manager_carry_no_run_button(manager, loaded):  # noqa: F811
    text = html(manager.get("/admin/ingests/rows", headers={"HX-Request": "true"}))
    assert "ingest-control" not in text and "run-ingest-button" not in text


def test_ingest_rows_poll_slowly_when_idle_and_answer_204_until_a_new_run(admin, loaded, app):  # noqa: F811
    from jobs.ingest import run_ingest

    tag = opening_tag(html(admin.get("/admin/ingests")), "ingest-rows")
    assert 'hx-trigger="every 20s"' in tag and 'hx-get="/admin/ingests/rows?after=1"' in tag
    unchanged = admin.get("/admin/ingests/rows?after=1", headers={"HX-Request": "true"})
    assert unchanged.status_code == 204 and unchanged.data == b""
    with app.app_context():
        run_ingest(trigger="cli")  # a run the page did not start
    fresh = html(admin.get("/admin/ingests/rows?after=1", headers={"HX-Request": "true"}))
    assert 'id="run-2"' in fresh and 'hx-get="/admin/ingests/rows?after=2"' in opening_tag(fresh, "ingest-rows")


def test_ingest_rows_poll_fast_while_a_run_is_active(admin, loaded):  # noqa: F811
    admin.post("/admin/ingests", headers=hx(admin))
    text = html(admin.get("/admin/ingests/rows?after=2", headers={"HX-Request": "true"}))
    assert 'hx-trigger="every 2s"' in opening_tag(text, "ingest-rows")
    assert 'id="ingest-notice"' not in text  # the "is queued" message stays while the run is active


def test_finished_runs_keep_their_expanded_files_across_refreshes(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/ingests/rows", headers={"HX-Request": "true"}))
    assert re.search(r'<details id="run-1-files-final" hx-preserve="true"', text)


def test_a_run_that_found_every_file_unchanged_is_one_line(admin, loaded, app):  # noqa: F811
    from jobs.ingest import run_ingest
    from models import IngestFile

    with app.app_context():
        run_ingest(trigger="cli")
    files = IngestFile.select().where(IngestFile.run == 2).count()
    text = html(admin.get("/admin/ingests"))
    run = text[text.index('id="run-2"'):text.index('id="run-1"')]
    assert f"Nothing changed: all {files} files were as already loaded." in run
    assert "<table" not in run


def run_article(text, run_id):
    """The history's <article> of one run."""
    start = text.index(f'id="run-{run_id}"')
    return text[start:text.index("</article>", start)]


@pytest.mark.parametrize("job", [None, "failed"], ids=["lock expired", "worker died"])
def test_ingest_history_of_an_abandoned_run_speaks_of_the_slot_being_loaded(admin, loaded, app, monkeypatch, job):  # noqa: F811
    from jobs import runs
    from jobs.ingest import reap_abandoned_runs
    from models import IngestRun, utcnow

    monkeypatch.setattr(runs, "_job_status", lambda ctx, run: job)
    with app.app_context():
        run = IngestRun.create(trigger="manual", source="/data", status=IngestRun.RUNNING, started_at=utcnow(),
                               job_id="job-1" if job else None, stage="quarter 2: reading")
        assert reap_abandoned_runs() == 1
    text = html(admin.get(f"/admin/ingests/rows?follow={run.id}", headers={"HX-Request": "true"}))
    notice = text[text.index('id="ingest-notice"'):]
    assert "nothing of the slot of the hour being loaded was applied" in run_article(text, run.id)
    assert "quarter" not in run_article(text, run.id).lower() and "quarter" not in notice.lower()


def test_ingest_history_files_not_read_for_a_refused_slot_say_so_without_quarter(admin, loaded, app, tmp_path):  # noqa: F811
    from conftest import write_source
    from jobs.ingest import run_ingest
    from test_ingest import GOOD

    source = write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    (source / "2" / "impressions.csv").write_text("id,banner\n1,10\n")
    with app.app_context():
        run_id = run_ingest(str(source), trigger="cli")
    article = run_article(html(admin.get("/admin/ingests")), run_id)
    assert "not read: another file of this slot of the hour was refused" in article
    assert "quarter" not in article.lower()
