"""The banner rules: per-banner statistics of one (quarter, campaign) in, a plan out.

Pure: no framework imports; time and randomness come in as arguments.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

PLAN_SIZE_MAX = 10
PLAN_SIZE_MIN = 5

SCENARIO_TOP10_REVENUE = "top10_revenue"
SCENARIO_TOP_X_REVENUE = "top_x_revenue"
SCENARIO_REVENUE_THEN_CLICKS = "revenue_then_clicks"
SCENARIO_TOP5_CLICKS = "top5_clicks"


@dataclass(frozen=True)
class BannerStats:
    """What one banner did in one campaign in one quarter."""

    banner_id: int
    clicks: int = 0
    conversions: int = 0
    revenue: Decimal = Decimal(0)


@dataclass(frozen=True)
class Plan:
    """The banners a campaign shows in a quarter, in rank order, and why."""

    x: int
    scenario: str
    banner_ids: tuple[int, ...]
    # How many of banner_ids (at the end) were drawn at random from the pool.
    random_fill: int = 0


def revenue_key(s: BannerStats):
    """Revenue order: revenue desc, then clicks desc, then banner_id asc."""
    return (-s.revenue, -s.clicks, s.banner_id)


def click_key(s: BannerStats):
    """Click order: clicks desc, then revenue desc, then banner_id asc."""
    return (-s.clicks, -s.revenue, s.banner_id)


def select_banners(stats, pool, rng) -> Plan:
    """Apply the four rules to `stats` (BannerStats of one campaign and quarter).

    `pool` holds every banner seen in the campaign that quarter (impression or click);
    `rng` (a random.Random) draws the fill when the rules give fewer than five.
    """
    x, scenario, banner_ids = rank_banners(stats)
    fill = draw_fill(banner_ids, pool, rng)
    return Plan(x=x, scenario=scenario, banner_ids=tuple(banner_ids + fill), random_fill=len(fill))


def rank_banners(stats) -> tuple[int, str, list[int]]:
    """The rules without the random fill: (X, scenario, the chosen banner ids in rank order)."""
    converted = sorted((s for s in stats if s.conversions > 0), key=revenue_key)
    x = len(converted)
    if x >= PLAN_SIZE_MAX:
        chosen, scenario = converted[:PLAN_SIZE_MAX], SCENARIO_TOP10_REVENUE
    elif x >= PLAN_SIZE_MIN:
        chosen, scenario = converted, SCENARIO_TOP_X_REVENUE
    else:
        taken = {s.banner_id for s in converted}
        clicked = sorted((s for s in stats if s.clicks > 0 and s.banner_id not in taken), key=click_key)
        chosen = converted + clicked[: PLAN_SIZE_MIN - x]
        scenario = SCENARIO_REVENUE_THEN_CLICKS if x else SCENARIO_TOP5_CLICKS
    return x, scenario, [s.banner_id for s in chosen]


def draw_fill(chosen, pool, rng) -> list[int]:
    """Random banners from `pool` not in `chosen`, enough to reach five (or all there are)."""
    missing = PLAN_SIZE_MIN - len(chosen)
    if missing <= 0:
        return []
    candidates = sorted(set(pool) - set(chosen))  # sorted: the same seed draws the same banners
    return rng.sample(candidates, min(missing, len(candidates)))


def describe(plan: Plan) -> str:
    """One sentence saying which rule produced `plan`."""
    n, x = len(plan.banner_ids), plan.x
    if plan.scenario == SCENARIO_TOP10_REVENUE:
        text = f"X = {x}: the top 10 banners by revenue"
    elif plan.scenario == SCENARIO_TOP_X_REVENUE:
        text = f"X = {x}: all {x} converting banners by revenue"
    elif plan.scenario == SCENARIO_REVENUE_THEN_CLICKS:
        by_clicks = n - x - plan.random_fill
        text = f"X = {x}: {x} banner{'s' if x != 1 else ''} by revenue, {by_clicks} by clicks"
    else:
        text = f"X = 0: {n - plan.random_fill} banner{'s' if n - plan.random_fill != 1 else ''} by clicks"
    if plan.random_fill:
        text += f", {plan.random_fill} drawn at random from the campaign's banners"
    return text + "."


def quarter_of(now: datetime) -> int:
    """The quarter of the hour (1-4) that `now` falls in, in UTC."""
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    return now.minute // 15 + 1
