"""The overview's KPI arithmetic (pure)."""

import pytest

from webapp.kpis import kpi_cards


def totals(impressions, clicks, conversions, revenue):
    return {"impressions": impressions, "clicks": clicks, "conversions": conversions, "revenue": revenue}


def test_kpi_cards_compare_with_the_previous_slot_and_the_hour_average():
    by_slot = {1: totals(100, 10, 2, 20.0), 2: totals(200, 10, 1, 10.0), 3: totals(100, 20, 4, 50.0)}
    cards = {c["key"]: c for c in kpi_cards(by_slot, 3)}
    assert cards["impressions"]["value"] == 100
    assert cards["impressions"]["vs_previous"] == pytest.approx(-0.5)
    assert cards["impressions"]["vs_average"] == pytest.approx(100 / (400 / 4) - 1)
    assert cards["revenue"]["vs_average"] == pytest.approx(50 / (80 / 4) - 1)
    assert cards["ctr"]["value"] == pytest.approx(0.2)
    assert cards["ctr"]["vs_previous"] == pytest.approx(0.2 / 0.05 - 1)
    assert cards["ctr"]["vs_average"] == pytest.approx(0.2 / (40 / 400) - 1)  # the hour's CTR, not a mean of CTRs
    assert cards["rpm"]["value"] == pytest.approx(500.0)


def test_kpi_cards_wrap_from_the_first_slot_to_the_last_and_tolerate_empty_slots():
    cards = {c["key"]: c for c in kpi_cards({4: totals(50, 5, 0, 0.0)}, 1)}
    assert cards["impressions"]["previous"] == 50 and cards["impressions"]["vs_previous"] == pytest.approx(-1.0)
    assert cards["ctr"]["value"] is None and cards["ctr"]["vs_previous"] is None
    assert cards["cvr"]["vs_average"] is None


def test_kpi_cards_of_no_data_have_no_changes():
    cards = kpi_cards({}, 2)
    assert all(c["vs_previous"] is None and c["vs_average"] is None for c in cards)
