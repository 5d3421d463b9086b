"""The overview's key figures: one slot's totals, compared with the slot before and the hour's average."""

from webapp.formatting import change, ratio, rpm

# (key, kind): counts and money average over the four slots; ratios are the whole hour's ratio.
KPIS = (("impressions", "count"), ("clicks", "count"), ("ctr", "percent"), ("conversions", "count"),
        ("cvr", "percent"), ("revenue", "money"), ("rpm", "rpm"))
EMPTY = {"impressions": 0, "clicks": 0, "conversions": 0, "revenue": 0.0}


def figures(totals) -> dict:
    """The seven KPIs of one set of totals (impressions, clicks, conversions, revenue)."""
    return {
        "impressions": totals["impressions"], "clicks": totals["clicks"], "conversions": totals["conversions"],
        "revenue": totals["revenue"], "ctr": ratio(totals["clicks"], totals["impressions"]),
        "cvr": ratio(totals["conversions"], totals["clicks"]), "rpm": rpm(totals["revenue"], totals["impressions"]),
    }


def hour_total(by_slot) -> dict:
    """The four slots summed: the hour."""
    return {k: sum(by_slot.get(q, EMPTY)[k] for q in (1, 2, 3, 4)) for k in EMPTY}


def kpi_cards(by_slot, slot) -> list[dict]:
    """Per KPI: its value in `slot`, and its change against the previous slot and the hour's average.

    `by_slot` maps 1-4 to totals; a missing slot counts as nothing served.
    """
    previous = 4 if slot == 1 else slot - 1
    now, before = figures(by_slot.get(slot, EMPTY)), figures(by_slot.get(previous, EMPTY))
    hour = figures(hour_total(by_slot))
    cards = []
    for key, kind in KPIS:
        average = hour[key] / 4 if kind in ("count", "money") else hour[key]
        cards.append({"key": key, "kind": kind, "value": now[key], "previous": before[key],
                      "vs_previous": change(now[key], before[key]), "average": average,
                      "vs_average": change(now[key], average)})
    return cards
