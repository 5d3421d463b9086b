"""Viewability of the live impressions over a trend's period: all impressions, those the JS tag measured, the viewable ones."""

from dashboard_queries import live_viewability, viewable_rate


def viewability(trend, campaign_id=None) -> dict:
    """Totals over `trend`'s buckets (webapp.trends.trend) of all campaigns or one, and the viewable rate (None: none measured)."""
    buckets = trend["buckets"]
    hours = live_viewability(buckets[0]["start"], buckets[-1]["end"], campaign_id).values()
    impressions, measured, viewable = (sum(column) for column in zip(*hours)) if hours else (0, 0, 0)
    return {"impressions": impressions, "measured": measured, "viewable": viewable,
            "rate": viewable_rate(measured, viewable)}
