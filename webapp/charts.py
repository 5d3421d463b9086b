"""A chart's value axis: lines at 0, one step and two steps, each a round figure of its kind."""

import math

# The least step an axis can label truly: a whole count, a cent, a hundredth of a percent.
LEAST_STEP = {"count": 1, "money": 0.01, "percent": 0.0001}


def axis_step(value, kind="count") -> float:
    """The least of 1, 2 and 5 times a power of ten (and at least its kind's least step) whose double reaches `value`."""
    least = LEAST_STEP.get(kind, 0.01)
    half = value / 2 if value and value > 0 else 0
    if half <= least:
        return least
    e = math.floor(math.log10(half))
    # Divided by a power rather than multiplied by a negative one: 2 / 100 is the float nearest 0.02, 2 * 0.01 may not be.
    steps = (digit * 10 ** e if e >= 0 else digit / 10 ** -e for digit in (1, 2, 5, 10))
    return max(least, next(step for step in steps if step >= half * (1 - 1e-12)))
