"""The dashboard's campaign page: a drill-down from the slots of the hour to each slot's banners."""

from flask import abort, redirect, render_template, request, url_for

from dashboard_queries import banner_stats_of_campaign, banners_by_id, plans_of_campaign
import selection
from jobs.parsing import MAX_ID
from models import CampaignStat
from webapp.admin import QUARTERS, bp
from webapp.clock import utc_now
from webapp.formatting import ratio, rpm
from webapp.trends import period_of, trend
from webapp.viewability import viewability

# Banner table columns that sort, and their values; None sorts last either way.
BANNER_SORTS = {
    "rank": lambda r: r["rank"],
    "banner": lambda r: r["banner_id"],
    "impressions": lambda r: r["impressions"],
    "clicks": lambda r: r["clicks"],
    "ctr": lambda r: r["ctr"],
    "conversions": lambda r: r["conversions"],
    "cvr": lambda r: r["cvr"],
    "revenue": lambda r: r["revenue"],
    "rpm": lambda r: r["rpm"],
}


@bp.get("/campaigns/go")
def go_to_campaign():
    """The navigation's "go to campaign" box: to that campaign's page (which says so when there is none)."""
    campaign_id = request.args.get("id", type=int)
    if campaign_id is None or campaign_id < 1:
        return redirect(url_for("admin.campaigns"))
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


@bp.get("/campaigns/<int:campaign_id>")
def campaign(campaign_id):
    """One campaign: its slots side by side, then per slot the rule and a sortable table of its banners."""
    if campaign_id > MAX_ID:
        abort(404, f"There is no campaign {campaign_id}.")
    plans = plans_of_campaign(campaign_id)
    stats = {s.quarter: s for s in CampaignStat.select().where(CampaignStat.campaign_id == campaign_id)}
    if not plans and not stats:
        abort(404, f"There is no campaign {campaign_id}.")
    sort = request.args.get("sort") if request.args.get("sort") in BANNER_SORTS else "rank"
    descending = request.args.get("dir") == "desc"
    banner_stats = banner_stats_of_campaign(campaign_id)
    banners = banners_by_id([b for p in plans.values() for b in p.banner_id_list] + [b for _, b in banner_stats])
    slots = []
    for quarter in QUARTERS:
        plan = plans.get(quarter)
        rows = banner_rows(quarter, plan, banner_stats, banners)
        slots.append({"quarter": quarter, "plan": plan, "stat": stats.get(quarter), "rule": describe_plan(plan) if plan else None,
                      "rows": sort_rows(rows, sort, descending)})
    live_trend = trend(period_of(request.args, utc_now()), campaign_id)
    return render_template("admin/campaign.html", campaign_id=campaign_id, slots=slots, sort=sort, descending=descending,
                           current=selection.quarter_of(utc_now()), hour=hour_total(stats.values()),
                           ranking=rank_banners_over_the_hour(banner_stats, banners),
                           revenue=[stats[q].revenue if q in stats else 0.0 for q in QUARTERS],
                           trend=live_trend, viewability=viewability(live_trend, campaign_id),
                           trend_url=lambda **args: url_for("admin.campaign", campaign_id=campaign_id, **args))


def banner_rows(quarter, plan, banner_stats, banners) -> list[dict]:
    """Every banner of the campaign in one slot: those in the plan (with rank) and those only in the statistics."""
    ids = plan.banner_id_list if plan else []
    first_fill = len(ids) - plan.random_fill if plan else 0
    ranks = {b: i + 1 for i, b in enumerate(ids)}
    all_ids = ids + sorted({b for q, b in banner_stats if q == quarter} - set(ids))
    rows = []
    for banner_id in all_ids:
        stat = banner_stats.get((quarter, banner_id))
        impressions, clicks = (stat.impressions, stat.clicks) if stat else (0, 0)
        conversions, revenue = (stat.conversions, stat.revenue) if stat else (0, 0.0)
        rank = ranks.get(banner_id)
        rows.append({
            "banner_id": banner_id, "banner": banners.get(banner_id), "rank": rank,
            "random": rank is not None and rank > first_fill, "impressions": impressions, "clicks": clicks,
            "conversions": conversions, "revenue": revenue, "ctr": ratio(clicks, impressions),
            "cvr": ratio(conversions, clicks), "rpm": rpm(revenue, impressions),
        })
    return rows


def hour_total(stats) -> dict:
    """The campaign's four slots summed: the whole hour."""
    fields = ("impressions", "clicks", "conversions", "revenue")
    return {f: sum(getattr(s, f) for s in stats) for f in fields}


def rank_banners_over_the_hour(banner_stats, banners) -> list[dict]:
    """Every banner with statistics, its four slots summed, the best earner first (ties: more clicks, lower id)."""
    sums = {}
    for (_, banner_id), stat in banner_stats.items():
        row = sums.setdefault(banner_id, {"banner_id": banner_id, "banner": banners.get(banner_id), "impressions": 0,
                                          "clicks": 0, "conversions": 0, "revenue": 0.0})
        for field in ("impressions", "clicks", "conversions", "revenue"):
            row[field] += getattr(stat, field)
    return sorted(sums.values(), key=lambda r: (-r["revenue"], -r["clicks"], r["banner_id"]))


def sort_rows(rows, sort, descending) -> list[dict]:
    """Rows sorted by a BANNER_SORTS column; rows without a value last, ties by banner id."""
    key = BANNER_SORTS[sort]
    present = sorted((r for r in rows if key(r) is not None), key=lambda r: r["banner_id"])
    present.sort(key=key, reverse=descending)
    return present + sorted((r for r in rows if key(r) is None), key=lambda r: r["banner_id"])


def describe_plan(plan) -> str:
    """The rule behind a stored Plan in a manager's words (selection.describe() names it by X)."""
    x, fill = plan.x, plan.random_fill
    shown = len(plan.banner_id_list) - fill

    def banners(n):
        return f"{n} banner{'' if n == 1 else 's'}"

    if plan.scenario == selection.SCENARIO_TOP10_REVENUE:
        text = f"{banners(x)} converted in this slot: the 10 that earned most are shown, best first"
    elif plan.scenario == selection.SCENARIO_TOP_X_REVENUE:
        text = f"{banners(x)} converted in this slot: all are shown, the best earner first"
    elif plan.scenario == selection.SCENARIO_REVENUE_THEN_CLICKS:
        text = f"{banners(x)} converted in this slot: {'it is' if x == 1 else 'they are'} shown first, best earner first"
        if shown > x:
            text += f", then the {banners(shown - x)} clicked most"
    elif shown:
        text = f"No banner converted in this slot: the {banners(shown)} clicked most are shown"
    else:
        text = "No banner converted or was clicked in this slot"
    if fill:
        text += f", and {banners(fill)} picked at random from the campaign's others to make five"
    return text + "."
