"""The dashboard's live parts: impressions and clicks of the last hour, the event stream, exports."""

from datetime import datetime, timezone

from flask import Blueprint, current_app, render_template
from redis import RedisError

from live.events import GROUP, STREAM, recent_counts, stream_health
from models import ExportRun
from webapp.auth import is_htmx_request, login_required
from webapp.clock import utc_now

bp = Blueprint("live_admin", __name__, url_prefix="/admin/live")


@bp.before_request
@login_required
def require_login():
    """The live panel is a dashboard page: signed-in users only."""


@bp.get("/")
def panel():
    """The live panel: the fragment htmx polls every few seconds, or a page of its own when opened directly."""
    template = "admin/_live_panel.html" if is_htmx_request() else "admin/live.html"
    response = current_app.make_response(render_template(template, live=live_panel_context()))
    response.vary.add("HX-Request")
    return response


def live_panel_context() -> dict:
    """Per-campaign impressions, clicks and CTR of the last hour, events waiting, the last exports."""
    ctx = current_app.extensions["runtime"]
    context = {"enabled": current_app.extensions["settings"].events_enabled, "error": None, "rows": [], "waiting": None,
               "exports": list(ExportRun.select().order_by(ExportRun.id.desc()).limit(5))}
    try:
        counts = recent_counts(ctx, utc_now())
        context["waiting"] = events_waiting(ctx.redis, ctx.key(STREAM))
        context["stream"] = stream_health(ctx.redis, ctx.key(STREAM), utc_now())
    except RedisError as exc:
        context["error"] = f"Redis did not answer: {exc}"
        return context
    context["rows"] = sorted(
        ({"campaign": c, "impressions": i, "clicks": k, "ctr": k / i if i else None} for c, (i, k) in counts.items()),
        key=lambda row: (-row["impressions"], row["campaign"]),
    )
    context["degraded"] = current_app.extensions["degraded"].as_dict()
    context["totals"] = {"impressions": sum(r["impressions"] for r in context["rows"]),
                         "clicks": sum(r["clicks"] for r in context["rows"])}
    return context


def events_waiting(redis, stream) -> int:
    """Events not yet exported: those no exporter has read (the group's lag) plus those read but unacknowledged."""
    try:
        groups = redis.xinfo_groups(stream)
    except RedisError as exc:
        if "no such key" in str(exc).lower():
            return 0
        raise
    group = next((g for g in groups if g["name"] == GROUP), None)
    if group is None:
        return redis.xlen(stream)
    lag = group.get("lag")
    return (lag if lag is not None else redis.xlen(stream)) + group["pending"]


def live_since():
    """When the oldest live event still on record happened: the stream's first entry, else the first export
    that carried events; None when there are none (or Redis does not answer)."""
    ctx = current_app.extensions["runtime"]
    first = ExportRun.select(ExportRun.started_at).where(ExportRun.events > 0).order_by(ExportRun.id).first()
    since = first.started_at if first else None
    try:
        entries = ctx.redis.xrange(ctx.key(STREAM), count=1)
    except RedisError:
        entries = []
    if entries:
        millis = int(str(entries[0][0]).split("-")[0])
        stream_since = datetime.fromtimestamp(millis / 1000, timezone.utc).replace(tzinfo=None)
        since = min(since, stream_since) if since else stream_since
    return since
