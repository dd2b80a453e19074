"""Which days' recommendations are out of date: made before a measurement of their window was
stored. A day measured late (a backfill run newest day first, a retry, the command filling a
gap) changes every later window that holds it, up to today, whoever launched the measuring."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg

from recommender_pipeline.assets.partitions import HISTORY_DAYS
from recommender_pipeline.days import window_days
from recommender_pipeline.resources.store.resource import MeasurementStoreResource

RECOMMENDATIONS_KEY = dg.AssetKey("topic_recommendations")


def recommended_at(instance: dg.DagsterInstance, since: date) -> dict[date, float]:
    """When each day's recommendation from `since` on was last made (epoch seconds)."""
    latest: dict[date, float] = {}
    records = instance.fetch_materializations(RECOMMENDATIONS_KEY, limit=20 * (HISTORY_DAYS + 1)).records
    for record in records:  # newest first: the first of each day is its latest
        key = record.partition_key
        if key and date.fromisoformat(key) >= since:
            latest.setdefault(date.fromisoformat(key), record.timestamp)
    return latest


def stale_days(
    instance: dg.DagsterInstance, store: MeasurementStoreResource, sampling_days: int, today: date
) -> dict[date, str]:
    """The days of the rolling history up to `today` whose recommendation predates a row stored
    in its window, each with that row's time (so a run key changes only when the window does)."""
    since = today - timedelta(days=HISTORY_DAYS)
    made = recommended_at(instance, since)
    if not made:
        return {}
    stored = store.last_stored((min(made) - timedelta(days=sampling_days - 1)).isoformat(), today.isoformat())
    stale = {}
    for day, at in sorted(made.items()):
        window = [stored[d.isoformat()] for d in window_days(day, sampling_days) if d.isoformat() in stored]
        latest = max(window, default="")
        if latest and datetime.fromisoformat(latest).timestamp() > at:
            stale[day] = latest
    return stale
