"""The dashboard's read queries: the stats tables, the campaign page, the ingest history, the live periods."""

import functools
import json
import operator

from peewee import Case, Cast, fn

from jobs.parsing import MAX_ID
from models import (
    LIVE_COUNTS,
    Banner,
    BannerStat,
    CampaignStat,
    IngestFile,
    IngestRun,
    LiveHour,
    LiveMark,
    LiveSiteHour,
    LoadedFile,
    Meta,
    Plan,
    db,
    naive_datetime,
)


def latest_runs(limit=50):
    return IngestRun.select().order_by(IngestRun.id.desc()).limit(limit)


def _ratio(numerator, denominator):
    """SQL for numerator/denominator that is NULL, not an error, when the denominator is 0."""
    # A double, not the exact NUMERIC that PostgreSQL makes of `clicks * 1.0`: sorting 40,000 rows by a
    # NUMERIC quotient took PostgreSQL 1.8 times as long (docs/performance.md, Dashboard growth).
    return Case(None, [(denominator == 0, None)], Cast(numerator, "DOUBLE PRECISION") / denominator)


# The stats table's sortable columns: name in the URL -> SQL expression.
CAMPAIGN_STAT_COLUMNS = {
    "campaign": CampaignStat.campaign_id,
    "quarter": CampaignStat.quarter,
    "impressions": CampaignStat.impressions,
    "clicks": CampaignStat.clicks,
    "conversions": CampaignStat.conversions,
    "revenue": CampaignStat.revenue,
    "ctr": _ratio(CampaignStat.clicks, CampaignStat.impressions),
    "cvr": _ratio(CampaignStat.conversions, CampaignStat.clicks),
    "epc": _ratio(CampaignStat.revenue, CampaignStat.clicks),
    "rpm": _ratio(CampaignStat.revenue * 1000, CampaignStat.impressions),
    "x": CampaignStat.x,
    "scenario": CampaignStat.scenario,
    "banners": CampaignStat.banners,
}


def campaign_stats(quarter=None, campaign_prefix=None, sort="campaign", descending=False):
    """CampaignStat rows filtered by quarter and campaign id prefix, sorted by a CAMPAIGN_STAT_COLUMNS name."""
    query = CampaignStat.select()
    if quarter is not None:
        query = query.where(CampaignStat.quarter == quarter)
    if campaign_prefix is not None:
        query = query.where(_id_with_prefix(CampaignStat.campaign_id, campaign_prefix))
    column = CAMPAIGN_STAT_COLUMNS[sort]
    order = column.desc(nulls="LAST") if descending else column.asc(nulls="LAST")
    # Ties fall back to (campaign, quarter) so pages never shuffle rows between requests.
    return query.order_by(order, CampaignStat.campaign_id, CampaignStat.quarter)


def id_prefix_ranges(prefix: int, max_id=MAX_ID) -> list[tuple[int, int]]:
    """The id ranges whose decimal digits start with those of `prefix`: 1 -> 1, 10-19, 100-199, ...; none below 1."""
    ranges, scale = [], 1
    while 0 < prefix * scale <= max_id:
        ranges.append((prefix * scale, min((prefix + 1) * scale - 1, max_id)))
        scale *= 10
    return ranges


def _id_with_prefix(column, prefix: int):
    # Ranges instead of CAST(id AS TEXT) LIKE '1%': the same rows, and an index on the id still serves them.
    terms = [(column == low) if low == high else column.between(low, high) for low, high in id_prefix_ranges(prefix)]
    return functools.reduce(operator.or_, terms) if terms else column.in_([])  # no range, no row


def campaign_stat_totals(query) -> dict:
    """Sums of impressions, clicks, conversions and revenue over a campaign_stats() query, and its row count."""
    inner = query.order_by().alias("view")
    row = (
        CampaignStat.select(
            fn.COUNT(inner.c.id), fn.SUM(inner.c.impressions), fn.SUM(inner.c.clicks),
            fn.SUM(inner.c.conversions), fn.SUM(inner.c.revenue),
        )
        .from_(inner)
        .tuples()
        .get()
    )
    rows, impressions, clicks, conversions, revenue = row
    return {
        "rows": rows or 0, "impressions": int(impressions or 0), "clicks": int(clicks or 0),
        "conversions": int(conversions or 0), "revenue": float(revenue or 0),
    }


def quarter_totals() -> list[dict]:
    """Per quarter: campaigns, impressions, clicks, conversions and revenue, from CampaignStat."""
    rows = (
        CampaignStat.select(
            CampaignStat.quarter, fn.COUNT(CampaignStat.id), fn.SUM(CampaignStat.impressions),
            fn.SUM(CampaignStat.clicks), fn.SUM(CampaignStat.conversions), fn.SUM(CampaignStat.revenue),
        )
        .group_by(CampaignStat.quarter)
        .order_by(CampaignStat.quarter)
        .tuples()
    )
    return [
        {"quarter": q, "campaigns": n, "impressions": int(i or 0), "clicks": int(c or 0),
         "conversions": int(v or 0), "revenue": float(r or 0)}
        for q, n, i, c, v, r in rows
    ]


def revenue_by_quarter(campaign_ids) -> dict:
    """{campaign_id: [revenue in Q1, Q2, Q3, Q4]} for the given campaigns (0.0 where there is no row)."""
    result = {cid: [0.0, 0.0, 0.0, 0.0] for cid in campaign_ids}
    if not result:
        return result
    query = CampaignStat.select(CampaignStat.campaign_id, CampaignStat.quarter, CampaignStat.revenue).where(
        CampaignStat.campaign_id.in_(list(result))
    )
    for row in query:
        if 1 <= row.quarter <= 4:
            result[row.campaign_id][row.quarter - 1] = row.revenue
    return result


def hour_averages(campaign_ids) -> dict:
    """{campaign_id: (revenue per slot of the hour, CTR of the whole hour)}; a slot without a row earned 0."""
    result = {}
    ids = list(set(campaign_ids))
    if not ids:
        return result
    query = (
        CampaignStat.select(CampaignStat.campaign_id, fn.SUM(CampaignStat.revenue),
                            fn.SUM(CampaignStat.clicks), fn.SUM(CampaignStat.impressions))
        .where(CampaignStat.campaign_id.in_(ids))
        .group_by(CampaignStat.campaign_id)
        .tuples()
    )
    for campaign_id, revenue, clicks, impressions in query:
        result[campaign_id] = (float(revenue or 0) / 4, (clicks or 0) / impressions if impressions else None)
    return result


def live_totals_before(at, campaign_prefix=None) -> dict:
    """{campaign_id: [impressions, clicks, conversions, revenue]} of the live events before `at`."""
    mark = LiveMark.select(fn.MIN(LiveMark.at)).where(LiveMark.at >= at).scalar()
    if mark is None:
        return {}
    mark = naive_datetime(mark)
    p, names = db.obj.param, LIVE_COUNTS[:4]
    prefix_sql, prefix_args = _prefix_sql(campaign_prefix)
    columns = ", ".join(f'"{c}"' for c in names)
    rows = db.execute_sql(f'SELECT "campaign_id", {columns} FROM "livemark" WHERE "at" = {p}{prefix_sql}',
                          [LiveMark.at.db_value(mark), *prefix_args]).fetchall()
    totals = {cid: [i, k, v, r] for cid, i, k, v, r in rows}
    if mark > at:  # no mark at `at`: take off the hours between it and the next one
        sums = ", ".join(f'SUM("{c}")' for c in names)
        later = db.execute_sql(
            f'SELECT "campaign_id", {sums} FROM "livehour" WHERE "hour" >= {p} AND "hour" < {p}{prefix_sql} GROUP BY "campaign_id"',
            [LiveHour.hour.db_value(at), LiveHour.hour.db_value(mark), *prefix_args]).fetchall()
        for cid, *values in later:
            total = totals[cid]
            for index, value in enumerate(values):
                total[index] -= value or 0
    return totals


def _change_sql(now, before) -> str:
    return f"CASE WHEN {before} = 0 OR {before} IS NULL THEN NULL ELSE ({now} - {before}) / {before} END"


_CTR_SQL = "CAST(clicks AS DOUBLE PRECISION) / NULLIF(impressions, 0)"


# The stats table's live view: its sortable columns, as SQL over a campaign's period and the one before (p_*).
LIVE_PERIOD_COLUMNS = {
    "campaign": "campaign_id",
    "revenue": "revenue",
    "impressions": "impressions",
    "clicks": "clicks",
    "conversions": "conversions",
    "ctr": _CTR_SQL,
    "cvr": "CAST(conversions AS DOUBLE PRECISION) / NULLIF(clicks, 0)",
    "epc": "revenue / NULLIF(clicks, 0)",
    "rpm": "revenue * 1000 / NULLIF(impressions, 0)",
    "revenue_change": _change_sql("revenue", "p_revenue"),
    "ctr_change": _change_sql(_CTR_SQL, "CAST(p_clicks AS DOUBLE PRECISION) / NULLIF(p_impressions, 0)"),
}


PERIOD_COUNTS = ("impressions", "clicks", "conversions", "revenue")


def live_period_rows(bounds, campaign_prefix=None, sort="campaign", descending=False, limit=None, offset=0):
    """Every campaign's live counts between the marks of `bounds` (end, start, previous end, previous start), sorted by
    a LIVE_PERIOD_COLUMNS name and cut to a page, with the count and sums of all of them:
    ([(campaign_id, 4 counts, 4 previous counts)], [rows, 4 sums, 4 previous sums]).
    None when a bound has no mark of its own (the caller sums from the nearest marks instead)."""
    marks = [_mark_at(at) for at in bounds]
    if None in marks:
        return None
    if marks[0] is False:
        return [], [0] * 9  # no live event at all
    p = db.obj.param
    # Most periods start where the one before ends: one join fewer (a look-up per campaign).
    joins = ["s", "ps"] if marks[1] == marks[2] else ["s", "pe", "ps"]
    pe = "s" if marks[1] == marks[2] else "pe"
    counts = ", ".join(f'{_money(f"e.{c} - COALESCE(s.{c}, 0)", c)} AS {c}' for c in PERIOD_COUNTS)
    before = ", ".join(f'{_money(f"COALESCE({pe}.{c}, 0) - COALESCE(ps.{c}, 0)", c)} AS p_{c}' for c in PERIOD_COUNTS)
    joined = " ".join(f"LEFT JOIN livemark AS {a} ON {a}.at = {p} AND {a}.campaign_id = e.campaign_id" for a in joins)
    prefix_sql, prefix_args = _prefix_sql(campaign_prefix, "e.campaign_id")
    sums = ", ".join(f"SUM({c})" for c in PERIOD_COUNTS + tuple(f"p_{c}" for c in PERIOD_COUNTS))
    direction = "DESC" if descending else "ASC"
    order = f"{LIVE_PERIOD_COLUMNS[sort]} {direction} NULLS LAST, campaign_id" if sort != "campaign" else f"campaign_id {direction}"
    page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    # Materialized: each campaign's differences computed once, then sorted and summed (not once per use).
    sql = (f"WITH v AS MATERIALIZED (SELECT e.campaign_id AS campaign_id, {counts}, {before} FROM livemark AS e {joined} "
           f"WHERE e.at = {p}{prefix_sql}), t AS (SELECT COUNT(*) AS n, {sums} FROM v) "
           f"SELECT campaign_id, {', '.join(PERIOD_COUNTS)}, {', '.join('p_' + c for c in PERIOD_COUNTS)}, t.* "
           f"FROM v CROSS JOIN t ORDER BY {order}{page}")
    joined_marks = [marks[1], marks[3]] if pe == "s" else marks[1:]
    found = db.execute_sql(sql, [LiveMark.at.db_value(m) for m in joined_marks] + [LiveMark.at.db_value(marks[0])]
                           + prefix_args).fetchall()
    if not found:
        if offset:  # past the last page: the totals from the first
            return [], live_period_rows(bounds, campaign_prefix, sort, descending, 1, 0)[1]
        return [], [0] * 9
    rows = [(r[0], r[1:5], r[5:9]) for r in found]
    # PostgreSQL sums integers as NUMERIC: back to int and float.
    return rows, [float(v or 0) if i in (4, 8) else int(v or 0) for i, v in enumerate(found[0][9:])]


def _money(sql, column) -> str:
    # A difference of running sums carries float dust (2.9999999999): rounded to a millionth, as the screen reads
    # it, so it sorts as it reads (in doubles: PostgreSQL rounds to digits in NUMERIC only, which costs more).
    return f"ROUND(({sql}) * 1000000) / 1000000" if column == "revenue" else sql


def _mark_at(at):
    """The `at` of the mark that holds the totals before `at`: its own, or a later one with no live hour between;
    None when there is none; False when there is no mark at all."""
    mark = LiveMark.select(fn.MIN(LiveMark.at)).where(LiveMark.at >= at).scalar()
    if mark is None:
        return False if not LiveMark.select().exists() else None
    mark = naive_datetime(mark)
    if mark > at:
        # MIN, not EXISTS over a range: the hour index answers it at once, however fresh the planner's statistics.
        hour = LiveHour.select(fn.MIN(LiveHour.hour)).where(LiveHour.hour >= at).scalar()
        if hour is not None and naive_datetime(hour) < mark:
            return None
    return mark


def _prefix_sql(campaign_prefix, column='"campaign_id"'):
    """SQL (and its arguments) keeping the campaigns whose id starts with `campaign_prefix`; none when it is None."""
    if campaign_prefix is None:
        return "", []
    ranges = id_prefix_ranges(campaign_prefix)
    if not ranges:
        return " AND 1 = 0", []
    p = db.obj.param
    terms = " OR ".join(f"{column} BETWEEN {p} AND {p}" for _ in ranges)
    return f" AND ({terms})", [bound for pair in ranges for bound in pair]


def live_hours(since, until, campaign_id=None) -> dict:
    """{hour: (impressions, clicks, conversions, revenue)} in [since, until) of all campaigns or of one."""
    if campaign_id is None:
        query = LiveSiteHour.select(LiveSiteHour.hour, LiveSiteHour.impressions, LiveSiteHour.clicks,
                                    LiveSiteHour.conversions, LiveSiteHour.revenue).where(
            (LiveSiteHour.hour >= since) & (LiveSiteHour.hour < until))
    else:
        query = LiveHour.select(LiveHour.hour, LiveHour.impressions, LiveHour.clicks, LiveHour.conversions,
                                LiveHour.revenue).where(
            (LiveHour.campaign_id == campaign_id) & (LiveHour.hour >= since) & (LiveHour.hour < until))
    return {naive_datetime(h): (int(i or 0), int(k or 0), int(v or 0), float(r or 0)) for h, i, k, v, r in query.tuples()}


def live_viewability(since, until, campaign_id=None) -> dict:
    """{hour: (impressions, measured, viewable)} in [since, until) of all campaigns or of one. The viewable rate is
    viewable / measured: only the impressions the JS tag rendered could be watched (the page and iframe's cannot)."""
    model = LiveSiteHour if campaign_id is None else LiveHour
    where = (model.hour >= since) & (model.hour < until)
    if campaign_id is not None:
        where &= LiveHour.campaign_id == campaign_id
    query = model.select(model.hour, model.impressions, model.measured, model.viewable).where(where)
    return {naive_datetime(h): (int(i or 0), int(m or 0), int(w or 0)) for h, i, m, w in query.tuples()}


def viewable_rate(measured, viewable):
    """The share of measured impressions that became viewable; None when none was measured."""
    return viewable / measured if measured else None


def has_live_hours(campaign_id=None) -> bool:
    """Whether the export job has rolled up any live event (of the campaign)."""
    if campaign_id is None:
        return LiveSiteHour.select().exists()
    return LiveHour.select().where(LiveHour.campaign_id == campaign_id).exists()


def plans_of_campaign(campaign_id) -> dict:
    """{quarter: Plan} of one campaign."""
    return {p.quarter: p for p in Plan.select().where(Plan.campaign_id == campaign_id)}


def banner_stats_of_campaign(campaign_id) -> dict:
    """{(quarter, banner_id): BannerStat} of one campaign."""
    query = BannerStat.select().where(BannerStat.campaign_id == campaign_id)
    return {(s.quarter, s.banner_id): s for s in query}


def banners_by_id(banner_ids) -> dict:
    """{banner_id: Banner} for the ids that have a Banner row."""
    ids = list(set(banner_ids))
    return {b.id: b for b in Banner.select().where(Banner.id.in_(ids))} if ids else {}


def files_of_runs(run_ids) -> dict:
    """{run_id: [IngestFile, ...]} in quarter then name order, images last."""
    result = {rid: [] for rid in run_ids}
    if not result:
        return result
    query = (
        IngestFile.select()
        .where(IngestFile.run.in_(list(result)))
        .order_by(IngestFile.quarter.asc(nulls="LAST"), IngestFile.id)
    )
    for f in query:
        result[f.run_id].append(f)
    return result


def last_loaded_at():
    """When a source file was last loaded into the served data (None before the first load)."""
    return LoadedFile.select(fn.MAX(LoadedFile.loaded_at)).scalar()


def served_source():
    """The source of the newest run that succeeded: where the data served now was loaded from (None before any)."""
    run = (
        IngestRun.select(IngestRun.source)
        .where(IngestRun.status.in_([IngestRun.SUCCEEDED, IngestRun.SUCCEEDED_WITH_REJECTS]))
        .order_by(IngestRun.id.desc())
        .first()
    )
    return run.source if run else None


def last_run():
    """The newest IngestRun, or None."""
    return IngestRun.select().order_by(IngestRun.id.desc()).first()


def files_behind_served_data(quarters=(1, 2, 3, 4), names=("impressions.csv", "clicks.csv", "conversions.csv")) -> dict:
    """{quarter: [IngestFile, ...]} of the run whose load built each quarter's served data.

    That run is the newest one that read (not "unchanged") exactly the quarter's files now recorded
    as loaded, historical and live, with the hashes LoadedFile holds: a run that found all of them
    loaded would have called them unchanged, and a failed store leaves LoadedFile as it was.
    Quarters never loaded are left out.
    """
    loaded = {f.path: f.sha256 for f in LoadedFile.select()}
    result = {}
    for quarter in quarters:
        live = Meta.get_or_none(Meta.key == f"live_files:{quarter}")  # written by ingest with each load
        wanted = {name: loaded.get(f"{quarter}/{name}") for name in names}
        wanted.update({path: loaded.get(path) for path in (json.loads(live.value) if live else [])})
        if None in wanted.values():
            continue
        candidates = IngestFile.select().where(
            (IngestFile.quarter == quarter) & (IngestFile.unchanged == False)  # noqa: E712
        ).order_by(IngestFile.run.desc(), IngestFile.id)
        by_run = {}
        for f in candidates:
            by_run.setdefault(f.run_id, []).append(f)
        for files in by_run.values():  # newest run first
            if len(files) == len(wanted) and {f.name: f.sha256 for f in files} == wanted:
                result[quarter] = files
                break
    return result
