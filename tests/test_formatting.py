"""How the dashboard writes money, where a chart's axis ends, and which way a first sort goes: pure functions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webapp.formatting import is_sorted_descending_first, money_text, nice_ceiling


@pytest.mark.parametrize("value, currency, text", [
    (1234.5, "USD", "$1,234.50"), (0.0, "EUR", "€0.00"), (-3.456, "GBP", "−£3.46"),
    (1234.5, "CHF", "1,234.50 CHF"), (None, "USD", "—"),
])
def test_money_text_carries_the_currency_sign(value, currency, text):
    assert money_text(value, currency) == text


def test_money_text_without_cents_for_an_axis():
    assert money_text(25000, "USD", 0) == "$25,000"


@pytest.mark.parametrize("value, top", [(87357.44, 100000), (0.7, 1), (1, 1), (1.01, 2), (2100, 2500), (3, 5),
                                        (0, 1), (None, 1), (0.034, 0.05)])
def test_nice_ceiling_ends_an_axis_on_a_round_figure(value, top):
    assert nice_ceiling(value) == pytest.approx(top)


@given(st.floats(min_value=1e-6, max_value=1e12))
def test_nice_ceiling_is_at_least_the_value_and_under_two_and_a_half_times_it(value):
    top = nice_ceiling(value)
    assert value * (1 - 1e-9) <= top < value * 2.5 * (1 + 1e-9)


def test_sort_metrics_first_highest_names_first_a_to_z():
    assert is_sorted_descending_first("revenue") and is_sorted_descending_first("ctr")
    assert not is_sorted_descending_first("campaign") and not is_sorted_descending_first("rank")
