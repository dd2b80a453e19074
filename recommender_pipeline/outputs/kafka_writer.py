"""Results to a Kafka topic, as the original tool's later versions do (`USE_KAFKA_WRITER`): one
JSON record per analysed topic and day, keyed `<cluster_id>/<topic>`, on the cluster the topic
belongs to, so a team consumes its own cluster's recommendations where its data already lives.

The topic is created when missing (`KAFKA_WRITER_TOPIC_*`); an existing one is used as it is,
whatever its settings, because a team may have tuned it. Records carry the recommendations
table's columns only, which never hold a credential.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from recommender_pipeline.errors import RecommenderError
from recommender_pipeline.outputs.partition_changes import row_objects
from recommender_pipeline.settings import Settings

MS_PER_DAY = 86_400_000
ADMIN_TIMEOUT_SECONDS = 30
FLUSH_TIMEOUT_SECONDS = 150  # longer than the producer's delivery timeout, so every callback fires


class ResultsTopicError(RecommenderError):
    """The results could not be written to one cluster's results topic; names both."""


@dataclass(frozen=True)
class Published:
    """What one cluster's results topic received."""

    cluster_id: str
    topic: str
    records: int
    created: bool


def retention_ms(days: int) -> int:
    """`KAFKA_WRITER_TOPIC_DATA_RETENTION_IN_DAYS` as `retention.ms`: 0 days keeps records for
    ever (-1), as the original tool's variable means."""
    return -1 if days == 0 else days * MS_PER_DAY


def new_results_topic(settings: Settings) -> NewTopic:
    return NewTopic(
        settings.kafka_writer_topic_name,
        num_partitions=settings.kafka_writer_topic_partition_count,
        replication_factor=settings.kafka_writer_topic_replication_factor,
        config={"retention.ms": str(retention_ms(settings.kafka_writer_topic_data_retention_in_days))},
    )


def ensure_topic(admin: AdminClient, settings: Settings) -> bool:
    """Creates the results topic unless it exists; True when this call created it."""
    topic = new_results_topic(settings)
    future = admin.create_topics(
        [topic], operation_timeout=ADMIN_TIMEOUT_SECONDS, request_timeout=ADMIN_TIMEOUT_SECONDS
    )[topic.topic]
    try:
        future.result()
    except KafkaException as error:
        if error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise
    return True


def result_records(recommendations: pd.DataFrame, day: str) -> list[tuple[str, bytes]]:
    """One (key, JSON value) per topic: `recommendation_day` then every column of the table."""
    records = []
    for row in row_objects(recommendations):
        value = {"recommendation_day": day, **row}
        records.append((f"{row['cluster_id']}/{row['topic_name']}", json.dumps(value).encode()))
    return records


def publish(producer: Producer, topic: str, records: list[tuple[str, bytes]]) -> int:
    """Produces every record and waits for each acknowledgement; raises naming the records that
    failed. Returns how many were delivered."""
    failures: dict[str, str] = {}
    delivered = 0

    def on_delivery(error: KafkaError | None, message) -> None:
        nonlocal delivered
        if error is None:
            delivered += 1
        else:
            failures[message.key().decode()] = error.str()

    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.5)
        producer.poll(0)
    undelivered = producer.flush(FLUSH_TIMEOUT_SECONDS)
    if undelivered:
        raise ResultsTopicError(f"{undelivered} record(s) not acknowledged within {FLUSH_TIMEOUT_SECONDS} s")
    if failures:
        first = "; ".join(f"{key}: {reason}" for key, reason in list(failures.items())[:5])
        raise ResultsTopicError(f"{len(failures)} record(s) not delivered ({first})")
    return delivered


def write_cluster_results(
    admin: AdminClient, producer: Producer, cluster_id: str, recommendations: pd.DataFrame, day: str, settings: Settings
) -> Published:
    """One cluster: the topic ensured, then the cluster's records; any failure is raised as a
    ResultsTopicError naming the cluster and the results topic."""
    topic = settings.kafka_writer_topic_name
    try:
        created = ensure_topic(admin, settings)
        delivered = publish(producer, topic, result_records(recommendations, day))
    except (KafkaException, RecommenderError) as error:
        cause = error.args[0] if error.args else error
        reason = cause.str() if isinstance(cause, KafkaError) else str(cause)
        raise ResultsTopicError(f"cluster {cluster_id}, results topic {topic}: {reason}") from None
    return Published(cluster_id, topic, delivered, created)
