"""Partitions: one dynamic key per cluster topic, UTC days, and their product for measurements."""

import dagster as dg

HISTORY_START = "2026-01-01"
TOPIC_KEY_SEPARATOR = "/"  # neither Kafka topic names nor our cluster ids can contain it

topics_partitions = dg.DynamicPartitionsDefinition(name="topics")
# end_offset=1 includes today, measured up to now and re-measured until it closes.
daily_partitions = dg.DailyPartitionsDefinition(start_date=HISTORY_START, end_offset=1)
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
