"""A chart's value axis: each grid line labelled with the value it stands at, in round figures, above every bar."""

import math
import re

import pytest

MAXIMA = [pytest.param(values, kind, id=f"{kind}-{max(values)}") for values, kind in [
    ([0, 0, 0, 0], "count"),
    ([1, 0, 0, 0], "count"),
    ([3, 1, 0, 2], "count"),
    ([22, 5, 7, 0], "count"),
    ([2100, 40, 0, 1999], "count"),
    ([22.0, 3.5, 0.0, 10.0], "money"),
    ([87357.44, 1200.0, 5.0, 0.0], "money"),
    ([0.034, 0.01, 0.0, 0.02], "money"),
]]


def chart(app, macro, values, kind):
    """The SVG of `macro` (slot_chart or trend_chart) drawn over `values`."""
    with app.test_request_context():
        macros = app.jinja_env.get_template("admin/_macros.html").module
        if macro == "slot_chart":
            return str(macros.slot_chart("c", "A chart", values, kind=kind))
        buckets = [{"label": f"{i}h", "value": v} for i, v in enumerate(values)]
        return str(macros.trend_chart("c", "A chart", buckets, "value", kind=kind))


def axis(svg):
    """(y of the grid line, the number its label says) from the bottom line up, and the bars' (value, height)."""
    grid = [float(y) for y in re.findall(r'<line class="grid"[^>]* y1="([^"]+)"', svg)]
    labels = re.findall(r'<text class="tick" x="[^"]+" y="([^"]+)" text-anchor="end">([^<]+)</text>', svg)
    ticks = []
    for y, text in labels:
        line = min(grid, key=lambda g: abs(g - float(y)))
        ticks.append((line, text))
    return sorted(ticks, reverse=True), [float(h) for h in re.findall(r'<rect class="bar[^"]*"[^>]* height="([^"]+)"', svg)]


def number(label):
    return float(label.replace("$", "").replace(",", ""))


@pytest.mark.parametrize("macro", ["slot_chart", "trend_chart"])
@pytest.mark.parametrize("values, kind", MAXIMA)
def test_chart_axis_labels_each_grid_line_with_the_value_it_stands_at(app, macro, values, kind):
    ticks, heights = axis(chart(app, macro, values, kind))
    base, top = ticks[0][0], ticks[-1][0]
    assert number(ticks[0][1]) == 0 and number(ticks[-1][1]) > 0
    per_pixel = number(ticks[-1][1]) / (base - top)
    for y, label in ticks:
        assert number(label) == pytest.approx((base - y) * per_pixel, rel=1e-3), (y, label, [t[1] for t in ticks])
    for v, h in zip(values, heights):  # the bars on the axis's scale
        assert h == pytest.approx(v / per_pixel, abs=0.06)


@pytest.mark.parametrize("macro", ["slot_chart", "trend_chart"])
@pytest.mark.parametrize("values, kind", MAXIMA)
def test_chart_axis_labels_are_round_figures(app, macro, values, kind):
    ticks, _ = axis(chart(app, macro, values, kind))
    for _, label in ticks:
        n = number(label)
        if kind == "count":
            assert n == int(n) and "." not in label, label
        if n:
            digits = n / 10 ** math.floor(math.log10(n))
            assert round(digits, 9) in (1, 2, 4, 5), label  # one significant digit: 20, not 12.5 or 25


@pytest.mark.parametrize("macro", ["slot_chart", "trend_chart"])
@pytest.mark.parametrize("values, kind", MAXIMA)
def test_chart_axis_ends_above_the_highest_bar_within_two_and_a_half_times_it(app, macro, values, kind):
    ticks, heights = axis(chart(app, macro, values, kind))
    plot = ticks[0][0] - ticks[-1][0]
    assert max(heights) <= plot
    if max(values):
        assert max(heights) > plot / 2.5
