"""Live figures per campaign over a period and the period before it: the stats table's live view."""

from dataclasses import dataclass

from dashboard_queries import live_period_rows, live_totals_before
from webapp.formatting import change, ratio, rpm

# The live view's columns, as the URL names them; each change is against the period before.
LIVE_COLUMNS = ("campaign", "revenue", "revenue_change", "rpm", "impressions", "clicks", "ctr", "ctr_change",
                "conversions", "cvr", "epc")
CHANGE_COLUMNS = {
    "revenue_change": ("Revenue vs before", "This period's revenue against the period before it."),
    "ctr_change": ("CTR vs before", "This period's CTR against the period before it."),
}


@dataclass(frozen=True)
class CampaignPeriod:
    """One campaign's live counts over a period, and over the period before it."""

    campaign_id: int
    impressions: int
    clicks: int
    conversions: int
    revenue: float
    previous: tuple  # (impressions, clicks, conversions, revenue) of the period before

    @property
    def ctr(self):
        return ratio(self.clicks, self.impressions)

    @property
    def cvr(self):
        return ratio(self.conversions, self.clicks)

    @property
    def epc(self):
        return ratio(self.revenue, self.clicks)

    @property
    def rpm(self):
        return rpm(self.revenue, self.impressions)

    @property
    def revenue_change(self):
        return change(self.revenue, self.previous[3])

    @property
    def ctr_change(self):
        return change(self.ctr, ratio(self.previous[1], self.previous[0]))


def period_table(period, campaign_prefix=None, sort="campaign", descending=False, page=1, size=None):
    """One page (`size` rows; all of them without a size) of every campaign's live figures over `period` and the one
    before, sorted by a LIVE_COLUMNS name; with their totals and the page as clamped: (rows, totals, page)."""
    before_start, before_end = period.previous
    bounds = (period.end, period.start, before_end, before_start)
    offset = (page - 1) * size if size else 0
    found = live_period_rows(bounds, campaign_prefix, sort, descending, size, offset)
    if found is None:  # a bound without a mark of its own (an export missed its hour): summed from the nearest
        rows = sorted_rows(campaign_periods(period, campaign_prefix), sort, descending)
        found_totals = totals(rows)
        page = _clamped(page, size, found_totals["rows"])
        return (rows[(page - 1) * size:page * size] if size else rows), found_totals, page
    rows, sums = found
    page = _clamped(page, size, sums[0])
    if size and rows == [] and sums[0]:  # past the last page: the last one
        rows = live_period_rows(bounds, campaign_prefix, sort, descending, size, (page - 1) * size)[0]
    rows = [CampaignPeriod(cid, *now, tuple(before)) for cid, now, before in rows]
    return rows, _totals(sums[0], sums[1:5], sums[5:9]), page


def _clamped(page, size, count) -> int:
    return min(page, max(1, -(-count // size))) if size else 1


def campaign_periods(period, campaign_prefix=None) -> list[CampaignPeriod]:
    """Every campaign with live events before the period's end: its counts in the period and in the one before,
    summed from the nearest marks (any period, however its bounds fall)."""
    before_start, before_end = period.previous
    marks = {at: live_totals_before(at, campaign_prefix) for at in {period.start, period.end, before_start, before_end}}
    zero = (0, 0, 0, 0.0)
    rows = []
    for campaign_id, end in marks[period.end].items():
        start = marks[period.start].get(campaign_id, zero)
        previous = _minus(marks[before_end].get(campaign_id, zero), marks[before_start].get(campaign_id, zero))
        impressions, clicks, conversions, revenue = _minus(end, start)
        rows.append(CampaignPeriod(campaign_id, impressions, clicks, conversions, revenue, previous))
    return rows


def _minus(later, earlier) -> tuple:
    # Counts are whole; revenue is a difference of running sums, so a cent's float dust is rounded away.
    return (later[0] - earlier[0], later[1] - earlier[1], later[2] - earlier[2], round(later[3] - earlier[3], 6))


def sorted_rows(rows, column, descending) -> list:
    """`rows` by a LIVE_COLUMNS name; rows without a value (a ratio of nothing) last, ties by campaign id."""
    if column == "campaign":
        return sorted(rows, key=lambda r: r.campaign_id, reverse=descending)
    with_value = [r for r in rows if getattr(r, column) is not None]
    without = sorted((r for r in rows if getattr(r, column) is None), key=lambda r: r.campaign_id)
    with_value.sort(key=lambda r: r.campaign_id)
    with_value.sort(key=lambda r: getattr(r, column), reverse=descending)  # stable: ties stay by id
    return with_value + without


def totals(rows) -> dict:
    """The rows summed, with the period before: what the table's totals line and the CSV's last line show."""
    now = [sum(r.impressions for r in rows), sum(r.clicks for r in rows), sum(r.conversions for r in rows),
           sum(r.revenue for r in rows)]
    return _totals(len(rows), now, [sum(r.previous[i] for r in rows) for i in range(4)])


def _totals(count, now, before) -> dict:
    impressions, clicks, conversions, revenue = now
    revenue, before = round(revenue or 0, 6), tuple(before[:3]) + (round(before[3] or 0, 6),)
    return {"rows": count, "impressions": impressions or 0, "clicks": clicks or 0, "conversions": conversions or 0,
            "revenue": revenue, "previous": before, "revenue_change": change(revenue, before[3]),
            "ctr_change": change(ratio(clicks, impressions), ratio(before[1], before[0]))}
