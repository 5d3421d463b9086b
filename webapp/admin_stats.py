"""The dashboard's campaign statistics table: filters, sort, pages and CSV, all held in the URL."""

import csv
import io
import math
from dataclasses import dataclass, replace

from flask import current_app, render_template, request, stream_with_context, url_for

from dashboard_queries import CAMPAIGN_STAT_COLUMNS, campaign_stat_totals, campaign_stats, hour_averages
import selection
from webapp.admin import QUARTERS, bp
from webapp.auth import is_htmx_request, shareable
from webapp.clock import utc_now
from webapp.formatting import change, is_sorted_descending_first, metric_label, ratio, rpm, slot_csv_label, slot_label
from webapp.period_stats import CHANGE_COLUMNS, LIVE_COLUMNS, period_table
from webapp.trends import PRESETS, period_of, span_words

PAGE_SIZES = (20, 50, 100)
RULE_COLUMNS = ("x", "scenario", "banners")
# Money leads, after what the row is: a phone shows campaign, slot, revenue and RPM before any scrolling.
TABLE_COLUMNS = ("campaign", "quarter", "revenue", "rpm", "impressions", "clicks", "ctr", "conversions", "cvr", "epc")


@dataclass(frozen=True)
class StatsView:
    """What the stats table shows: filters, sort, page, page size and shown groups, as read from (and written to) the URL."""

    slot: int | None = None  # 1-4: the slot of the hour (`?slot=`; `?quarter=` in links kept from before)
    campaign: int | None = None  # an id prefix: 1 finds 1, 10-19, 100-199, ...
    sort: str = "campaign"
    descending: bool = False
    page: int = 1
    size: int = PAGE_SIZES[0]
    rule: bool = False  # show the rotation rule columns
    # Live figures per campaign over a period (a preset, or "custom" from `first` to `last`) instead of the imported hour.
    period: str | None = None
    first: str | None = None
    last: str | None = None

    @classmethod
    def from_args(cls, args):
        slot = args.get("slot", type=int) if "slot" in args else args.get("quarter", type=int)
        campaign = args.get("campaign", type=int)
        sort = args.get("sort", "campaign")
        sort = "quarter" if sort == "slot" else sort  # the URL says slot; the column (and links kept from before) quarter
        size = args.get("size", type=int)
        period = args.get("period") or None
        custom = period == "custom"
        return cls(
            slot=slot if slot in QUARTERS and not period else None,
            campaign=campaign,  # below 1 or past 64 bits no id starts with it: no rows, never every campaign
            sort=sort if sort in (LIVE_COLUMNS if period else CAMPAIGN_STAT_COLUMNS) else "campaign",
            descending=args.get("dir") == "desc",
            page=max(1, args.get("page", 1, type=int)),
            size=size if size in PAGE_SIZES else PAGE_SIZES[0],
            rule=args.get("rule") == "1" and not period,
            period=period,
            first=args.get("from") if custom else None,
            last=args.get("to") if custom else None,
        )

    def args(self, **changes) -> dict:
        """Query arguments of this view with `changes`, leaving out defaults so URLs stay short."""
        view = replace(self, **changes)
        args = {"slot": view.slot, "campaign": view.campaign, "sort": view.sort,
                "dir": "desc" if view.descending else None, "page": view.page if view.page > 1 else None,
                "size": view.size if view.size != PAGE_SIZES[0] else None, "rule": 1 if view.rule else None,
                "period": view.period, "from": view.first, "to": view.last}
        if args["sort"] == "campaign" and not view.descending:
            del args["sort"]
        else:
            args["sort"] = view.sort_name
        return {k: v for k, v in args.items() if v is not None}

    @property
    def sort_name(self) -> str:
        """The sort as the URL names it: the slot column is `slot`."""
        return "slot" if self.sort == "quarter" else self.sort

    def sort_args(self, column) -> dict:
        """The view sorted by `column`: a metric highest first, a name A-Z first; flipped when already sorted by it."""
        descending = not self.descending if column == self.sort else is_sorted_descending_first(column)
        return self.args(sort=column, descending=descending, page=1)

    def live_period(self, now):
        """The period of the live view (the last 24 hours, with an error, when the URL's cannot be one)."""
        return period_of({"period": self.period, "from": self.first, "to": self.last}, now)

    def with_period(self, **period) -> dict:
        """Query arguments of this view over another period (`period=None`: the imported hour), from page 1."""
        live = period.get("period")
        sort = self.sort if self.sort in (LIVE_COLUMNS if live else CAMPAIGN_STAT_COLUMNS) else "campaign"
        return self.args(slot=None, rule=False, page=1, first=None, last=None, sort=sort,
                         descending=self.descending and sort != "campaign", **period)

    def describe(self, pages, period=None) -> str:
        """The view in words, for the status line screen readers announce after each change."""
        label = CHANGE_COLUMNS[self.sort][0].lower() if self.sort in CHANGE_COLUMNS else metric_label(self.sort)
        words = [f"sorted by {label}, {'descending' if self.descending else 'ascending'}",
                 f"page {self.page} of {pages}"]
        if period is not None:
            words.append("live figures, " + span_words(period.start, period.end, period.unit))
        if self.slot:
            words.append(f"slot {slot_label(self.slot)}")
        if self.campaign is not None:
            words.append(f"campaigns starting with {self.campaign}")
        text = ", ".join(words)
        return text[:1].upper() + text[1:]  # not str.capitalize(): "RPM" and "Nov 21" keep their capitals

    def file_name(self, period=None) -> str:
        """The CSV's file name after the view: campaign-stats_slot-15-29_campaigns-starting-1_by-revenue-desc.csv,
        campaign-stats_live-2026-11-21-to-2026-11-27.csv for a live period."""
        parts = ["campaign-stats"]
        if period is not None:
            parts.append(f"live-{period.start:%Y-%m-%d}-to-{period.last_day:%Y-%m-%d}")
        if self.slot:
            parts.append("slot-" + slot_csv_label(self.slot).replace(":", ""))
        if self.campaign is not None:
            parts.append(f"campaigns-starting-{self.campaign}")
        if self.sort != "campaign" or self.descending:
            parts.append(f"by-{self.sort_name}-{'desc' if self.descending else 'asc'}")
        return "_".join(parts) + ".csv"

    def query(self):
        return campaign_stats(self.slot, self.campaign, self.sort, self.descending)


@bp.get("/campaigns")
@shareable
def campaigns():
    """Campaign statistics, per slot of the imported hour or live per campaign over a period: the full page, or
    only the table for htmx."""
    view = StatsView.from_args(request.args)
    context = _live_table(view) if view.period else _imported_table(view)
    view = context["view"]
    context.update(page_sizes=PAGE_SIZES, presets=PRESETS)
    table = "admin/_live_campaign_table.html" if view.period else "admin/_campaign_table.html"
    if not is_htmx_request():
        response = current_app.make_response(render_template("admin/campaigns.html", table=table, **context))
    else:
        # The form that sent the request keeps its controls (and the caret in them); any other change redraws it.
        from_form = request.headers.get("HX-Trigger") == "stats-filters"
        response = current_app.make_response(
            render_template(table, oob_status=True, oob_filters=not from_form, **context))
        # Push the view's canonical URL: no empty fields from the filter form, the page as clamped.
        response.headers["HX-Push-Url"] = url_for("admin.campaigns", **view.args())
    response.vary.add("HX-Request")
    return response


def _imported_table(view) -> dict:
    """The imported hour's rows per campaign and slot, of the view's page, with their deltas to the hour's average."""
    query = view.query()
    totals = campaign_stat_totals(query)
    pages = max(1, math.ceil(totals["rows"] / view.size))
    view = replace(view, page=min(view.page, pages))
    rows = list(query.paginate(view.page, view.size))
    averages = hour_averages(r.campaign_id for r in rows)
    deltas = {
        (r.campaign_id, r.quarter): (change(r.revenue, averages[r.campaign_id][0]),
                                     change(ratio(r.clicks, r.impressions), averages[r.campaign_id][1]))
        for r in rows
    }
    return dict(view=view, rows=rows, totals=totals, pages=pages, deltas=deltas,
                columns=TABLE_COLUMNS + (RULE_COLUMNS if view.rule else ()), rule_columns=RULE_COLUMNS,
                current=selection.quarter_of(utc_now()), status=view.describe(pages), period=None)


def _live_table(view) -> dict:
    """Live figures per campaign over the view's period and the period before it, of the view's page."""
    period = view.live_period(utc_now())
    rows, totals, page = period_table(period, view.campaign, view.sort, view.descending, view.page, view.size)
    pages = max(1, math.ceil(totals["rows"] / view.size))
    view = replace(view, page=page)
    previous_start, previous_end = period.previous
    return dict(view=view, rows=rows, totals=totals, pages=pages,
                columns=LIVE_COLUMNS, change_columns=CHANGE_COLUMNS, period=period,
                span=span_words(period.start, period.end, period.unit),
                previous_span=span_words(previous_start, previous_end, period.unit),
                status=view.describe(pages, period))


def csv_columns(currency) -> tuple:
    """The CSV's header: money columns name their currency, rates say they are fractions (0.078 is 7.8 %)."""
    money = currency.lower()
    return ("campaign", "slot_of_hour", "impressions", "clicks", "conversions", f"revenue_{money}",
            "ctr_fraction", "cvr_fraction", f"epc_{money}", f"rpm_{money}", "x", "scenario", "banners")


@bp.get("/campaigns.csv")
def campaigns_csv():
    """The stats table's current view (filters and sort, every page) as CSV, with a totals line."""
    view = StatsView.from_args(request.args)
    currency = current_app.extensions["settings"].currency
    if view.period:
        period = view.live_period(utc_now())
        rows, totals, _ = period_table(period, view.campaign, view.sort, view.descending)
        name, lines = view.file_name(period), _live_csv_lines(rows, totals, period, live_csv_columns(currency))
    else:
        name, lines = view.file_name(), stream_with_context(_csv_lines(view.query(), csv_columns(currency)))
    return current_app.response_class(lines, 200, {
        "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"',
    })


def live_csv_columns(currency) -> tuple:
    """The live CSV's header: the period's bounds (UTC, end excluded), its figures and the period before's."""
    money = currency.lower()
    return ("campaign", "period_start_utc", "period_end_utc", "impressions", "clicks", "conversions",
            f"revenue_{money}", "ctr_fraction", "cvr_fraction", f"epc_{money}", f"rpm_{money}",
            "previous_impressions", "previous_clicks", "previous_conversions", f"previous_revenue_{money}",
            "revenue_change_fraction", "ctr_change_fraction")


def _live_csv_lines(rows, t, period, columns):
    """The live view's CSV: a line per campaign and a totals line (the rows are already in memory)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    bounds = (f"{period.start:%Y-%m-%dT%H:%M}Z", f"{period.end:%Y-%m-%dT%H:%M}Z")
    for r in [*rows, None]:
        if r is None:
            label, counts, previous = "total", (t["impressions"], t["clicks"], t["conversions"], t["revenue"]), t["previous"]
            changes = (t["revenue_change"], t["ctr_change"])
        else:
            label, counts, previous = r.campaign_id, (r.impressions, r.clicks, r.conversions, r.revenue), r.previous
            changes = (r.revenue_change, r.ctr_change)
        writer.writerow([label, *bounds, *counts[:3], _number(counts[3]), *_ratios_for_csv(*counts),
                         *previous[:3], _number(previous[3]), *(_number(c) for c in changes)])
    return out.getvalue()


CSV_CHUNK_ROWS = 500


def _csv_lines(query, columns):
    """The CSV in chunks of CSV_CHUNK_ROWS rows, read from the database as it is sent (constant memory)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for i, r in enumerate(query.namedtuples().iterator(), 1):
        writer.writerow([
            r.campaign_id, slot_csv_label(r.quarter), r.impressions, r.clicks, r.conversions, _number(r.revenue),
            *_ratios_for_csv(r.impressions, r.clicks, r.conversions, r.revenue), r.x, r.scenario, r.banners,
        ])
        if i % CSV_CHUNK_ROWS == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    t = campaign_stat_totals(query)
    writer.writerow([
        "total", "", t["impressions"], t["clicks"], t["conversions"], _number(t["revenue"]),
        *_ratios_for_csv(t["impressions"], t["clicks"], t["conversions"], t["revenue"]), "", "", "",
    ])
    yield out.getvalue()


def _ratios_for_csv(impressions, clicks, conversions, revenue):
    return [_number(ratio(clicks, impressions)), _number(ratio(conversions, clicks)), _number(ratio(revenue, clicks)),
            _number(rpm(revenue, impressions))]


def _number(value) -> str:
    return "" if value is None else f"{value:.6f}"
