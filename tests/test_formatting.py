"""How the dashboard writes money, names rules, and which way a first sort goes: pure functions."""

import pytest

import selection
from webapp.formatting import METRICS, is_sorted_descending_first, metric_label, money_text, rule_words

SCENARIOS = {value for name, value in vars(selection).items() if name.startswith("SCENARIO_")}


@pytest.mark.parametrize("value, currency, text", [
    (1234.5, "USD", "$1,234.50"), (0.0, "EUR", "€0.00"), (-3.456, "GBP", "−£3.46"),
    (1234.5, "CHF", "1,234.50 CHF"), (None, "USD", "—"),
])
def test_money_text_carries_the_currency_sign(value, currency, text):
    assert money_text(value, currency) == text


def test_money_text_without_cents_for_an_axis():
    assert money_text(25000, "USD", 0) == "$25,000"


def test_sort_metrics_first_highest_names_first_a_to_z():
    assert is_sorted_descending_first("revenue") and is_sorted_descending_first("ctr")
    assert not is_sorted_descending_first("campaign") and not is_sorted_descending_first("rank")


@pytest.mark.parametrize("scenario, words", [
    (selection.SCENARIO_TOP10_REVENUE, "top 10 by revenue"),
    (selection.SCENARIO_TOP_X_REVENUE, "all converting, by revenue"),
    (selection.SCENARIO_REVENUE_THEN_CLICKS, "converting by revenue, then by clicks"),
    (selection.SCENARIO_TOP5_CLICKS, "top 5 by clicks"),
])
def test_rule_words_name_each_rotation_rule_in_plain_words(scenario, words):
    assert rule_words(scenario) == words


def test_rule_words_cover_every_rule_selection_can_choose():
    assert len(SCENARIOS) == 4
    assert len({rule_words(scenario) for scenario in SCENARIOS}) == len(SCENARIOS)
    assert all("_" not in rule_words(scenario) for scenario in SCENARIOS)


def test_rule_words_of_no_rule_is_a_dash_and_of_an_unknown_rule_its_name_in_words():
    assert rule_words(None) == "—" and rule_words("") == "—"
    assert rule_words("some_new_rule") == "some new rule"


def test_rule_words_is_a_template_filter(app):
    from flask import render_template_string

    with app.test_request_context():
        assert render_template_string("{{ 'top5_clicks'|rule_words }}") == "top 5 by clicks"


def test_rule_columns_are_headed_in_words_not_by_the_letter_x():
    assert metric_label("x") == "converting banners"
    assert all("X" not in METRICS[column][1] for column in ("x", "scenario", "banners"))
