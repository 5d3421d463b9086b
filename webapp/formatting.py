"""How the dashboard names and formats things: slots of the hour, metrics and their explanations, ratios, money."""

import re

import selection

SLOTS = {1: ":00–:14", 2: ":15–:29", 3: ":30–:44", 4: ":45–:59"}

# Column name -> (header, explanation shown on hover and focus). "{currency}" is filled in per deployment.
METRICS = {
    "campaign": ("Campaign", "The campaign's id; follow it for the campaign's banners and plans."),
    "quarter": ("Slot of the hour", "Which 15 minutes of every hour (UTC) the figures are for; "
                                    "visitors are shown the plan of the slot they arrive in."),
    "impressions": ("Impressions", "Times one of the campaign's banners was shown."),
    "clicks": ("Clicks", "Clicks on those banners."),
    "ctr": ("CTR", "Click-through rate: clicks ÷ impressions."),
    "conversions": ("Conversions", "Sales or sign-ups that followed a click."),
    "cvr": ("CVR", "Conversion rate: conversions ÷ clicks."),
    "revenue": ("Revenue", "What the conversions earned, in {currency}."),
    "rpm": ("RPM", "Revenue per 1,000 impressions (eCPM): revenue ÷ impressions × 1,000, in {currency}."),
    "epc": ("EPC", "Earnings per click: revenue ÷ clicks, in {currency}."),
    "x": ("Converting banners", "Banners with at least one conversion in this slot; how many there are "
                                "decides which rotation rule applies."),
    "scenario": ("Rule", "The rotation rule their number chose: which banners are shown, best first."),
    "banners": ("Banners", "Banners in the rotation plan of this slot."),
}

# The rotation rule selection.py chose, as the stats table names it.
RULES = {
    selection.SCENARIO_TOP10_REVENUE: "top 10 by revenue",
    selection.SCENARIO_TOP_X_REVENUE: "all converting, by revenue",
    selection.SCENARIO_REVENUE_THEN_CLICKS: "converting by revenue, then by clicks",
    selection.SCENARIO_TOP5_CLICKS: "top 5 by clicks",
}


# Columns that name things sort A-Z first; a metric's first sort puts the highest first.
NAME_COLUMNS = ("campaign", "quarter", "scenario", "banner", "rank")


def is_sorted_descending_first(column) -> bool:
    """Whether a first click on `column`'s header sorts it highest first (metrics) or A-Z (names, ranks)."""
    return column not in NAME_COLUMNS


def metric_label(column) -> str:
    """The header of a column, in words ("revenue", "slot of the hour")."""
    label = METRICS[column][0]
    return label if label.isupper() else label.lower()


def slot_label(quarter) -> str:
    """':00–:14' for quarter 1 of the hour, and so on; a dash for anything else."""
    return SLOTS.get(quarter, "—")


def slot_words(text) -> str:
    """A job's words for the dashboard: 'quarter 2: reading …' becomes 'slot :15–:29: reading …'."""
    return re.sub(r"\bquarter ([1-4])\b", lambda m: f"slot {SLOTS[int(m.group(1))]}", text or "")


def rule_words(scenario) -> str:
    """A rotation rule in words ('top10_revenue' -> 'top 10 by revenue'); a dash for none."""
    if not scenario:
        return "—"
    return RULES.get(scenario, scenario.replace("_", " "))


def slot_csv_label(quarter) -> str:
    """The slot in ASCII, for CSV files that spreadsheets open in any encoding: ':00-:14'."""
    return SLOTS[quarter].replace("–", "-")


def ratio(numerator, denominator):
    """numerator/denominator, or None when the denominator is 0."""
    return numerator / denominator if denominator else None


def rpm(revenue, impressions):
    """Revenue per 1,000 impressions, or None without impressions."""
    return revenue * 1000 / impressions if impressions else None


def ratio_text(value, kind="percent") -> str:
    """A ratio for the page: a percentage, or money; a dash when undefined."""
    if value is None:
        return "—"
    return f"{value:.2%}" if kind == "percent" else f"{value:,.4f}" if kind == "money" else f"{value:,.2f}"


CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$", "AUD": "A$"}


def money_text(value, currency, places=2) -> str:
    """'$1,234.56' (a code after the figure for a currency without a sign here: '1,234.56 CHF'); a dash when undefined."""
    if value is None:
        return "—"
    sign = CURRENCY_SIGNS.get(currency)
    figure = f"{abs(value):,.{places}f}"
    return f"{'−' if value < 0 else ''}{sign}{figure}" if sign else f"{'−' if value < 0 else ''}{figure} {currency}"


def change(value, reference):
    """The relative change of `value` against `reference` (0.25 = 25 % more), or None when undefined."""
    if value is None or reference is None or reference == 0:
        return None
    return (value - reference) / reference


def change_text(value) -> str:
    """'+12.5 %', '−3.0 %', '±0 %', or a dash when undefined; the sign is spelled out, not coloured only."""
    if value is None:
        return "—"
    if abs(value) < 0.0005:
        return "±0 %"
    return f"{'+' if value > 0 else '−'}{abs(value):.1%}".replace("%", " %")
