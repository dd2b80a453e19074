"""Partitions: one dynamic key per cluster topic, UTC days, and their product for measurements.

Dagster keeps an asset under 100,000 partitions comfortably, so the date dimension is a rolling
history of `HISTORY_DAYS` days ending today, computed when the code location loads, and retired
topics leave the topic dimension once their last measured day has left it
(`sensors.topic_discovery_sensor`). The measurement store keeps every day ever measured: only what
Dagster's UI lists (and what a run can target) rolls. 2,000 topics x 41 days = 82,000 partitions.
"""

from datetime import timedelta

import dagster as dg

from recommender_pipeline.days import utc_today

HISTORY_DAYS = 40  # days before today in Dagster's date dimension (the store keeps everything)
TOPIC_KEY_SEPARATOR = "/"  # neither Kafka topic names nor our cluster ids can contain it


def history_start() -> str:
    """The first day of the rolling history, as of now."""
    return (utc_today() - timedelta(days=HISTORY_DAYS)).isoformat()


topics_partitions = dg.DynamicPartitionsDefinition(name="topics")
# end_offset=1 includes today, measured up to now and re-measured until it closes.
daily_partitions = dg.DailyPartitionsDefinition(start_date=history_start(), end_offset=1)
daily_topic_partitions = dg.MultiPartitionsDefinition({"date": daily_partitions, "topic": topics_partitions})


def topic_key(cluster_id: str, topic: str) -> str:
    return f"{cluster_id}{TOPIC_KEY_SEPARATOR}{topic}"


def split_topic_key(key: str) -> tuple[str, str]:
    cluster_id, _, topic = key.partition(TOPIC_KEY_SEPARATOR)
    return cluster_id, topic


def split_day_topic_key(key: str) -> tuple[str, str]:
    """A `date|topic` multi-partition key (dimensions sorted by name) as (day, topic key)."""
    day, _, topic = str(key).partition("|")
    return day, topic
