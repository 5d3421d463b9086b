"""The dashboard's ingest page: run history that notices new runs, and the admins' run button."""

from flask import current_app, flash, g, redirect, render_template, request, url_for
from redis import RedisError

from dashboard_queries import files_of_runs, last_loaded_at, latest_runs, served_source
from jobs.ingest import IngestBusy, reap_abandoned_runs, request_ingest
from models import ExportRun, IngestRun, get_data_version, utcnow
from webapp.admin import bp
from webapp.auth import admin_required, is_htmx_request
from webapp.formatting import slot_words
from webapp.outage import is_full

ACTIVE_POLL, IDLE_POLL = "every 2s", "every 20s"


def queue_health(ctx) -> dict:
    """Workers listening on our queue, jobs waiting in it, and failed jobs; or the Redis error."""
    from rq import Worker

    try:
        queue = ctx.queue()
        workers = Worker.all(queue=queue)
        return {
            "queue": ctx.settings.queue_name, "workers": [(w.name, w.get_state()) for w in workers],
            "queued": queue.count, "failed": queue.failed_job_registry.count, "error": None,
        }
    except RedisError as exc:
        return {"queue": ctx.settings.queue_name, "error": f"Redis did not answer: {exc}"}


@bp.get("/ingests")
def ingests():
    """The ingest history page, with the run button for admins."""
    exports = ExportRun.select().order_by(ExportRun.id.desc()).limit(10)
    context = ingest_rows_context()
    operations = g.user.role == "admin"
    if operations:
        context.update(ops=queue_health(current_app.extensions["runtime"]), data_version=get_data_version(),
                       loaded_at=last_loaded_at())
    return render_template("admin/ingests.html", exports=list(exports), operations=operations, **context)


@bp.get("/ingests/rows")
def ingest_rows():
    """The history rows fragment, polling itself: fast while a run is active, slowly (for runs started
    elsewhere) when idle; an idle poll that finds no newer run than `after` gets 204 and swaps nothing."""
    follow = request.args.get("follow", type=int)
    context = ingest_rows_context(follow)
    after = request.args.get("after", type=int)
    followed = next((r for r in context["runs"] if r.id == follow), None)
    if followed:
        # The run queued from this page: the notice above the rows says how it goes, to its end.
        return render_rows(context, *run_notice(followed))
    if not context["active"] and after is not None and after == context["latest_id"]:
        return "", 204
    # Once no run is active, any "queued" or "busy" message above the rows is stale: clear it.
    return render_rows(context, notice=None, with_notice=not context["active"])


def run_notice(run) -> tuple:
    """The notice about a run queued from this page, in words, and its level."""
    if run.status == IngestRun.QUEUED:
        return f"Ingest run #{run.id} is queued.", "info"
    if run.status == IngestRun.RUNNING:
        return f"Ingest run #{run.id} is running: {run.progress:.0%} · {slot_words(run.stage) or 'starting'}.", "info"
    took = f" in {run.duration_seconds:.1f} s" if run.duration_seconds is not None else ""
    if run.status == IngestRun.SUCCEEDED:
        return f"Ingest run #{run.id} succeeded{took}.", "info"
    if run.status == IngestRun.SUCCEEDED_WITH_REJECTS:
        return f"Ingest run #{run.id} succeeded with rejects{took}: see its files below.", "warning"
    what = "failed" if run.status == IngestRun.FAILED else "was abandoned"
    return f"Ingest run #{run.id} {what}: {slot_words(run.error)}", "error"


@bp.post("/ingests")
@admin_required
def run_ingest_now():
    """Queue an ingest for the workers; say so plainly when one is already queued or running."""
    context = ingest_rows_context()
    notice, level, run = None, "info", None
    if context["source_changes"] and request.form.get("replace_source") != "1":
        notice, level = (f"Nothing was queued: confirm that the data from {context['served_source']} "
                         f"is to be replaced by {context['source']}."), "warning"
    else:
        try:
            run = request_ingest(trigger="manual", user=g.user.username)
            notice = f"Ingest run #{run.id} is queued."
        except IngestBusy as exc:
            notice, level = f"An ingest is already in progress ({exc.what}); no new run was queued.", "warning"
        except RedisError as exc:
            why = ("Redis is full (out of memory); the live events' export frees it" if is_full(exc)
                   else "Redis did not answer")
            notice, level = f"Could not queue the ingest: {why} ({exc}).", "error"
    if is_htmx_request():
        return render_rows(ingest_rows_context(follow=run.id if run else None), notice=notice, level=level)
    flash(notice, level)
    return redirect(url_for("admin.ingests"))


def render_rows(context, notice, level="info", with_notice=True) -> str:
    """The rows, and out of band the notice above them and (for admins) the run button."""
    parts = [render_template("admin/_ingest_rows.html", **context)]
    if with_notice:
        parts.append(render_template("admin/_ingest_notice.html", notice=notice, notice_level=level, oob=True))
    if g.user.role == "admin":
        parts.append(render_template("admin/_ingest_control.html", oob=True, **context))
    return "".join(parts)


def ingest_rows_context(follow=None) -> dict:
    """The runs (newest first) with their files, whether any is active, queue health, and the sources;
    `follow` is a run whose progress the page's notice reports, until it ends."""
    ctx = current_app.extensions["runtime"]
    try:
        reap_abandoned_runs(ctx)  # so a run whose worker died does not show "running" forever
    except RedisError:
        pass
    runs = list(latest_runs(50))
    active = any(r.is_active for r in runs)
    source, served = ctx.settings.ingest_source, served_source()
    return {"runs": runs, "files": files_of_runs([r.id for r in runs]), "active": active, "now": utcnow(),
            "health": queue_health(ctx) if active else None, "statuses": IngestRun,
            "latest_id": runs[0].id if runs else 0, "poll": ACTIVE_POLL if active else IDLE_POLL,
            "source": source, "served_source": served, "source_changes": bool(served and served != source),
            "active_run": next((r for r in runs if r.is_active), None), "follow": follow if active else None}
