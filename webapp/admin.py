"""The dashboard (/admin): overview, campaign statistics, plans, ingest history and duplicates."""

import csv
import io
import math
from dataclasses import dataclass, replace

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

import selection
from jobs.parsing import MAX_ID
from models import (
    CAMPAIGN_STAT_COLUMNS, CampaignStat, ExportRun, IngestRun, banner_stats_of_campaign, banners_by_id,
    campaign_stat_totals, campaign_stats, files_behind_served_data, files_of_runs, get_data_version,
    last_loaded_at, last_run, latest_runs, plans_of_campaign, quarter_totals, revenue_by_quarter, utcnow,
)
from webapp.auth import admin_required, is_htmx_request, login_required
from webapp.clock import utc_now
from live.panel import live_panel_context

bp = Blueprint("admin", __name__, url_prefix="/admin")

PAGE_SIZE = 20
QUARTERS = (1, 2, 3, 4)
CSV_COLUMNS = ("campaign", "quarter", "impressions", "clicks", "conversions", "revenue",
               "ctr", "cvr", "epc", "x", "scenario", "banners")


@bp.before_request
@login_required
def require_login():
    """Every dashboard page needs a signed-in user; admin actions check the role themselves."""


@bp.after_request
def no_framing(response):
    response.headers["X-Frame-Options"] = "DENY"
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


@bp.app_template_global()
def ratio(numerator, denominator):
    """numerator/denominator, or None when the denominator is 0."""
    return numerator / denominator if denominator else None


@bp.app_template_filter("ratio_text")
def ratio_text(value, kind="percent"):
    """A ratio for the page: a percentage, or money per click; a dash when undefined."""
    if value is None:
        return "—"
    return f"{value:.2%}" if kind == "percent" else f"{value:.4f}"


@bp.get("/")
def overview():
    """Current quarter, data freshness, totals per quarter, and worker and queue health."""
    from webapp.admin_ingests import queue_health

    return render_template(
        "admin/overview.html",
        quarter=selection.quarter_of(utc_now()), data_version=get_data_version(), loaded_at=last_loaded_at(),
        run=last_run(), totals=quarter_totals(), health=queue_health(current_app.extensions["runtime"]),
        live=live_panel_context(),
    )


@dataclass(frozen=True)
class StatsView:
    """What the stats table shows: filters, sort and page, as read from (and written to) the URL."""

    quarter: int | None = None
    campaign: int | None = None
    sort: str = "campaign"
    descending: bool = False
    page: int = 1

    @classmethod
    def from_args(cls, args):
        quarter = args.get("quarter", type=int)
        campaign = args.get("campaign", type=int)
        sort = args.get("sort", "campaign")
        return cls(
            quarter=quarter if quarter in QUARTERS else None,
            # Outside the ids' 64-bit range no campaign can match, and the database would overflow.
            campaign=campaign if campaign is None or 0 < campaign <= MAX_ID else None,
            sort=sort if sort in CAMPAIGN_STAT_COLUMNS else "campaign",
            descending=args.get("dir") == "desc",
            page=max(1, args.get("page", 1, type=int)),
        )

    def args(self, **changes) -> dict:
        """Query arguments of this view with `changes`, leaving out defaults so URLs stay short."""
        view = replace(self, **changes)
        args = {"quarter": view.quarter, "campaign": view.campaign, "sort": view.sort,
                "dir": "desc" if view.descending else None, "page": view.page if view.page > 1 else None}
        if args["sort"] == "campaign" and not view.descending:
            del args["sort"]
        return {k: v for k, v in args.items() if v is not None}

    def sort_args(self, column) -> dict:
        """The view sorted by `column`: ascending first, flipped when it is already the sort column."""
        descending = not self.descending if column == self.sort else False
        return self.args(sort=column, descending=descending, page=1)

    def query(self):
        return campaign_stats(self.quarter, self.campaign, self.sort, self.descending)


@bp.get("/campaigns")
def campaigns():
    """Per-quarter campaign statistics: the full page, or only the table for htmx."""
    view = StatsView.from_args(request.args)
    query = view.query()
    totals = campaign_stat_totals(query)
    pages = max(1, math.ceil(totals["rows"] / PAGE_SIZE))
    view = replace(view, page=min(view.page, pages))
    rows = list(query.paginate(view.page, PAGE_SIZE))
    context = dict(
        view=view, rows=rows, totals=totals, pages=pages, columns=CSV_COLUMNS,
        charts=revenue_by_quarter({r.campaign_id for r in rows}),
    )
    if not is_htmx_request():
        response = current_app.make_response(render_template("admin/campaigns.html", **context))
    else:
        response = current_app.make_response(render_template("admin/_campaign_table.html", **context))
        # Push the view's canonical URL: no empty fields from the filter form, the page as clamped.
        response.headers["HX-Push-Url"] = url_for("admin.campaigns", **view.args())
    response.vary.add("HX-Request")
    return response


@bp.get("/campaigns.csv")
def campaigns_csv():
    """The stats table's current view (filters and sort, every page) as CSV, with a totals line."""
    view = StatsView.from_args(request.args)
    query = view.query()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in query:
        writer.writerow([
            r.campaign_id, r.quarter, r.impressions, r.clicks, r.conversions, _number(r.revenue),
            *_ratios_for_csv(r.impressions, r.clicks, r.conversions, r.revenue), r.x, r.scenario, r.banners,
        ])
    t = campaign_stat_totals(query)
    writer.writerow([
        "total", "", t["impressions"], t["clicks"], t["conversions"], _number(t["revenue"]),
        *_ratios_for_csv(t["impressions"], t["clicks"], t["conversions"], t["revenue"]), "", "", "",
    ])
    name = "campaign-stats" + "".join(f"-{k}{v}" for k, v in view.args(page=1).items()) + ".csv"
    return out.getvalue(), 200, {
        "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"',
    }


def _ratios_for_csv(impressions, clicks, conversions, revenue):
    return [_number(ratio(clicks, impressions)), _number(ratio(conversions, clicks)), _number(ratio(revenue, clicks))]


def _number(value) -> str:
    return "" if value is None else f"{value:.6f}"


@bp.get("/campaigns/<int:campaign_id>")
def campaign(campaign_id):
    """One campaign: per quarter its plan in rank order, each banner's revenue and clicks, and the rule."""
    if campaign_id > MAX_ID:
        abort(404, f"There is no campaign {campaign_id}.")
    plans = plans_of_campaign(campaign_id)
    stats = {s.quarter: s for s in CampaignStat.select().where(CampaignStat.campaign_id == campaign_id)}
    if not plans and not stats:
        abort(404, f"There is no campaign {campaign_id}.")
    banner_stats = banner_stats_of_campaign(campaign_id)
    banners = banners_by_id(b for p in plans.values() for b in p.banner_id_list)
    quarters = []
    for quarter in QUARTERS:
        plan = plans.get(quarter)
        entries = []
        if plan:
            ids = plan.banner_id_list
            first_fill = len(ids) - plan.random_fill
            entries = [
                {"rank": i + 1, "banner_id": b, "banner": banners.get(b), "stat": banner_stats.get((quarter, b)),
                 "random": i >= first_fill}
                for i, b in enumerate(ids)
            ]
        quarters.append({"quarter": quarter, "plan": plan, "entries": entries, "stat": stats.get(quarter),
                         "rule": describe_plan(plan) if plan else None})
    return render_template("admin/campaign.html", campaign_id=campaign_id, quarters=quarters,
                           chart=revenue_by_quarter([campaign_id])[campaign_id])


def describe_plan(plan) -> str:
    """selection.describe() of a stored Plan."""
    return selection.describe(selection.Plan(
        x=plan.x, scenario=plan.scenario, banner_ids=tuple(plan.banner_id_list), random_fill=plan.random_fill,
    ))


@bp.get("/duplicates")
def duplicates():
    """Duplicate and conflict counts per quarter and file, from the loads behind the served data."""
    files = files_behind_served_data()
    fields = ("rows_read", "loaded", "duplicates", "conflicts", "rejected", "orphans")
    totals = {f: sum(getattr(x, f) for group in files.values() for x in group) for f in fields}
    runs = {r.id: r for r in IngestRun.select().where(IngestRun.id.in_([g[0].run_id for g in files.values()]))} \
        if files else {}
    return render_template("admin/duplicates.html", files=files, totals=totals, runs=runs, quarters=QUARTERS)


from webapp import admin_ingests  # noqa: E402,F401  (registers the ingest pages on bp)
