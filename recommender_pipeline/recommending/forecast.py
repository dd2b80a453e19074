"""A topic's growth: a robust trend of its daily peaks over the stored history, projected ahead.

Partitions cannot be removed and adding them remaps keys, so teams size for where traffic is
going, not only where it is. The trend is Theil-Sen's (the median of the slopes between every
pair of days): a day of incident traffic or a half-captured day moves it far less than a
least-squares line, and a steady growth is recovered exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

MIN_FIT_DAYS = 5  # fewer days say too little about a trend to project it
HISTORY_FOR_TREND_DAYS = 28  # the days of stored history a fit looks back over


@dataclass(frozen=True)
class Trend:
    slope: float  # bytes/s of daily peak gained per day
    days: int  # measured days the fit used
    first_day: date
    last_day: date

    def project(self, window_peak: float, horizon_days: int) -> float:
        """The window's peak carried `horizon_days` ahead along the trend (never below zero)."""
        return max(window_peak + self.slope * horizon_days, 0.0)


def fit_trend(daily_peaks: dict[date, float]) -> Trend | None:
    """Theil-Sen over the measured days' peaks; None with fewer than MIN_FIT_DAYS days."""
    if len(daily_peaks) < MIN_FIT_DAYS:
        return None
    from scipy.stats import theilslopes  # imported here: scipy.stats takes half a second to import

    days = sorted(daily_peaks)
    x = [(day - days[0]).days for day in days]
    slope = theilslopes([daily_peaks[day] for day in days], x).slope
    return Trend(float(slope), len(days), days[0], days[-1])
