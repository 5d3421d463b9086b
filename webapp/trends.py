"""Live figures over a period (a preset or a custom range, read from the URL) and the period just before it."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from dashboard_queries import has_live_hours, live_hours
from webapp.formatting import change
from webapp.kpis import KPIS, figures

PRESETS = {"24h": "Last 24 hours", "today": "Today", "yesterday": "Yesterday", "7d": "Last 7 days",
           "30d": "Last 30 days"}
DEFAULT = "24h"
MAX_CUSTOM_DAYS = 366
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclass(frozen=True)
class Period:
    """[start, end) in naive UTC, shown per hour or per day; `error` says why the URL's period was not used."""

    key: str  # a preset's key, or "custom"
    label: str
    start: datetime
    end: datetime
    unit: str  # "hour" or "day"
    length: timedelta  # how far back the period before it is: a day for today (so far) and yesterday
    error: str | None = None

    @property
    def last_day(self) -> date:
        """The last day the period covers (a part of it, for hours)."""
        return (self.end - timedelta(microseconds=1)).date()

    @property
    def previous(self) -> tuple:
        """The period before this one: `length` earlier (today so far: yesterday until the same hour)."""
        return self.start - self.length, self.end - self.length

    def url_args(self) -> dict:
        """The query arguments that show this period again."""
        if self.key != "custom":
            return {"period": self.key}
        return {"period": "custom", "from": self.start.date().isoformat(), "to": self.last_day.isoformat()}


def period_of(args, now: datetime) -> Period:
    """The period the URL asks for (`period=`, with `from=`/`to=` dates for a custom range; the older `range=`)."""
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc).replace(tzinfo=None)
    key = args.get("period") or args.get("range") or DEFAULT
    if key == "custom":
        period = _custom(args.get("from"), args.get("to"))
        if isinstance(period, Period):
            return period
        error = period
    elif key in PRESETS:
        return _preset(key, now)
    else:
        error = f"There is no period called {key[:30]!r}."
    return _preset(DEFAULT, now, error=f"{error} Instead, showing the last 24 hours.")


def _preset(key, now, error=None) -> Period:
    hour_end = now.replace(minute=0, second=0, microsecond=0) + HOUR
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start, end, unit, length = {
        "24h": (hour_end - 24 * HOUR, hour_end, "hour", DAY),
        "today": (midnight, hour_end, "hour", DAY),  # so far: compared with yesterday until the same hour
        "yesterday": (midnight - DAY, midnight, "hour", DAY),
        "7d": (midnight - 6 * DAY, midnight + DAY, "day", 7 * DAY),
        "30d": (midnight - 29 * DAY, midnight + DAY, "day", 30 * DAY),
    }[key]
    return Period(key, PRESETS[key], start, end, unit, length, error)


def _custom(first, last):
    """A Period of whole days from `first` to `last` (inclusive, YYYY-MM-DD), or why it cannot be one."""
    try:
        start, end = date.fromisoformat(first or ""), date.fromisoformat(last or "")
    except (TypeError, ValueError):
        return "The custom range's dates are not a date as YYYY-MM-DD (from and to)."
    if end < start:
        return "The custom range ends before it starts."
    days = (end - start).days + 1
    if days > MAX_CUSTOM_DAYS:
        return f"The custom range is {days} days long; it may be at most {MAX_CUSTOM_DAYS} days."
    label = f"{start:%b} {start.day}, {start.year}" if days == 1 else _span(start, end)
    start_at = datetime.combine(start, datetime.min.time())
    return Period("custom", label, start_at, start_at + days * DAY, "hour" if days == 1 else "day", days * DAY)


def _span(first: date, last: date) -> str:
    """'Nov 21 – Nov 27, 2026' (both years when they differ)."""
    head = f"{first:%b} {first.day}" + (f", {first.year}" if first.year != last.year else "")
    return f"{head} – {last:%b} {last.day}, {last.year}"


def span_words(start: datetime, end: datetime, unit: str) -> str:
    """[start, end) in words: the days it covers, or the hours of one day."""
    last = end - (HOUR if unit == "hour" else DAY)
    if unit == "hour":
        if start.date() == last.date():
            return f"{start:%b} {start.day}, {start.year}, {start:%H}:00–{end:%H}:00 UTC".replace("–00:00", "–24:00")
        return f"{start:%b} {start.day} {start:%H}:00 – {last:%b} {last.day} {end:%H}:00, {last.year} UTC"
    return _span(start.date(), last.date())


def trend(period: Period, campaign_id=None) -> dict:
    """The period's buckets (oldest first) and the previous period's, their totals and the KPIs compared."""
    step = HOUR if period.unit == "hour" else DAY
    count = int((period.end - period.start) / step)
    previous_start, previous_end = period.previous
    hours = live_hours(previous_start, period.end, campaign_id)
    current = _buckets(hours, period.start, step, count, period.unit)
    before = _buckets(hours, previous_start, step, count, period.unit)
    totals, previous_totals = _total(current), _total(before)
    now_figures, before_figures = figures(totals), figures(previous_totals)
    comparison = [{"key": key, "kind": kind, "value": now_figures[key], "previous": before_figures[key],
                   "change": change(now_figures[key], before_figures[key])} for key, kind in KPIS]
    words = period.label if period.key == "custom" else period.label.lower()  # inside a sentence
    return {"period": period, "label": period.label, "words": words, "unit": period.unit, "buckets": current, "previous": before,
            "totals": totals, "previous_totals": previous_totals, "comparison": comparison, "presets": PRESETS,
            "span": span_words(period.start, period.end, period.unit),
            "previous_span": span_words(previous_start, previous_end, period.unit),
            "has_data": has_live_hours(campaign_id)}


def _buckets(hours, start, step, count, unit) -> list:
    sums = [[0, 0, 0, 0.0] for _ in range(count)]
    for hour, values in hours.items():
        index = int((hour - start) / step) if hour >= start else -1
        if 0 <= index < count:
            for i, v in enumerate(values):
                sums[index][i] += v
    return [{"start": start + i * step, "end": start + (i + 1) * step, "impressions": v[0], "clicks": v[1],
             "conversions": v[2], "revenue": v[3],
             "label": f"{start + i * step:%H:%M}" if unit == "hour" else f"{start + i * step:%b %d}"}
            for i, v in enumerate(sums)]


def _total(buckets) -> dict:
    return {key: sum(b[key] for b in buckets) for key in ("impressions", "clicks", "conversions", "revenue")}
