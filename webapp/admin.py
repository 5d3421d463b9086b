"""The dashboard (/admin): the blueprint, its error pages and formatting, the overview and duplicates.

The statistics table, the campaign page and the ingest page live in admin_stats, admin_campaign and
admin_ingests, on this blueprint.
"""

from flask import Blueprint, current_app, g, render_template, request, url_for

from dashboard_queries import files_behind_served_data, last_loaded_at, quarter_totals
import selection
from webapp.live_panel import live_panel_context, live_since
from models import IngestRun
from webapp import charts, formatting, freshness
from webapp.auth import login_required
from webapp.clock import utc_now
from webapp.kpis import hour_total, kpi_cards
from webapp.trends import period_of, trend
from webapp.viewability import viewability

bp = Blueprint("admin", __name__, url_prefix="/admin")

QUARTERS = (1, 2, 3, 4)

@bp.before_request
@login_required
def require_login():
    """Every dashboard page needs a signed-in user; admin actions check the role themselves."""


@bp.after_request
def dashboard_headers(response):
    """Dashboard pages and exports: never framed, never sniffed as another type, never kept by a cache."""
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_errorhandler(403)
@bp.app_errorhandler(404)
def error_page(error):
    """403 and 404: in the dashboard layout, with a way back, for signed-in users inside /admin."""
    message = error.description if error.description != type(error).description else None
    if request.path.startswith(bp.url_prefix) and g.get("user"):
        return render_template("admin/error.html", status=error.code, message=message), error.code
    if error.code == 404:
        return render_template("errors/404.html", message=message), 404
    return error


for _name, _function in {"ratio": formatting.ratio, "rpm": formatting.rpm,
                         "descending_first": formatting.is_sorted_descending_first}.items():
    bp.add_app_template_global(_function, _name)
for _name, _function in {"ratio_text": formatting.ratio_text, "slot": formatting.slot_label,
                         "change_text": formatting.change_text, "slot_words": formatting.slot_words,
                         "rule_words": formatting.rule_words}.items():
    bp.add_app_template_filter(_function, _name)


@bp.app_template_filter("money")
def money_filter(value, places=2):
    """Money in the deployment's currency, with its sign: '$1,234.56'."""
    return formatting.money_text(value, current_app.extensions["settings"].currency, places)


bp.add_app_template_filter(charts.axis_step, "axis_step")


@bp.context_processor
def dashboard_globals():
    """What every dashboard template may use: the currency, the metrics' names and explanations."""
    currency = current_app.extensions["settings"].currency
    metrics = {k: (label, text.format(currency=currency)) for k, (label, text) in formatting.METRICS.items()}
    return {"currency": currency, "metrics": metrics, "slots": formatting.SLOTS}


@bp.app_context_processor
def dashboard_layout_globals():
    """What the dashboard's layout asks, on the pages of every dashboard blueprint (the live panel's too)."""
    return {"stale": freshness.staleness}  # called by the layout only, not by the fragments htmx polls


@bp.get("/")
def overview():
    """The business at a glance: the slot served now against the others, the four slots, the live hour."""
    slot = selection.quarter_of(utc_now())
    totals = quarter_totals()
    by_slot = {t["quarter"]: t for t in totals}
    live_trend = trend(period_of(request.args, utc_now()))
    return render_template(
        "admin/overview.html", slot=slot, previous=4 if slot == 1 else slot - 1, totals=totals, by_slot=by_slot,
        cards=kpi_cards(by_slot, slot), hour=hour_total(by_slot), loaded_at=last_loaded_at(),
        revenue=[by_slot.get(q, {}).get("revenue", 0.0) for q in QUARTERS],
        impressions=[by_slot.get(q, {}).get("impressions", 0) for q in QUARTERS],
        live=live_panel_context(), live_since=live_since(),
        trend=live_trend, viewability=viewability(live_trend),
        trend_url=lambda **args: url_for("admin.overview", **args),
    )


@bp.get("/duplicates")
def duplicates():
    """Duplicate and conflict counts per quarter and file, from the loads behind the served data."""
    files = files_behind_served_data()
    fields = ("rows_read", "loaded", "duplicates", "conflicts", "rejected", "orphans")
    totals = {f: sum(getattr(x, f) for group in files.values() for x in group) for f in fields}
    runs = {r.id: r for r in IngestRun.select().where(IngestRun.id.in_([g[0].run_id for g in files.values()]))} \
        if files else {}
    return render_template("admin/duplicates.html", files=files, totals=totals, runs=runs, quarters=QUARTERS)


from webapp import admin_campaign, admin_ingests, admin_stats  # noqa: E402,F401  (they register their pages on bp)
