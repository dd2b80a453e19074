"""Partition offsets from the broker, asked for all partitions of a chunk at once.

`list_offsets` takes one spec per partition per request, so each kind of offset (log start,
last stable offset, the first offset at a time) is one request; all of them are sent before any
answer is awaited, so a chunk pays one round trip whatever its partition count.

The offset the broker gives for a timestamp is the first whose batch is stamped at or after it.
Transaction markers carry the broker's clock, so on a topic whose records carry older (event)
times a marker can answer first: such an offset is a lower bound for the first *record* at
that time, a hint the reader refines, never the truth.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

Key = tuple[str, int]  # (topic, partition)
REQUEST_TIMEOUT_SECONDS = 30
RETRY_BACKOFF_SECONDS, MAX_RETRY_BACKOFF_SECONDS = 0.25, 4.0
# What a leader moving or a broker restarting answers for a while: Kafka's retriable errors, and
# the client's own while it reconnects. librdkafka flags only some errors `retriable()`.
TRANSIENT = {
    getattr(KafkaError, name)
    for name in (
        "NOT_LEADER_FOR_PARTITION",
        "LEADER_NOT_AVAILABLE",
        "UNKNOWN_LEADER_EPOCH",
        "FENCED_LEADER_EPOCH",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "NOT_ENOUGH_REPLICAS",
        "OFFSET_NOT_AVAILABLE",
        "KAFKA_STORAGE_ERROR",
        "BROKER_NOT_AVAILABLE",
        "REPLICA_NOT_AVAILABLE",
        "UNKNOWN_TOPIC_OR_PART",
        "_TRANSPORT",
        "_TIMED_OUT",
        "_ALL_BROKERS_DOWN",
        "_WAIT_COORD",
    )
    if hasattr(KafkaError, name)
}


def transient(error: KafkaError) -> bool:
    """Whether asking again soon may succeed: a leader moving, a broker restarting."""
    return error.retriable() or error.code() in TRANSIENT


@dataclass(frozen=True)
class Found:
    """The broker's answer for one partition: an offset (-1: no such record) and, for a lookup by
    time or of the largest timestamp, the timestamp of the record it found (-1 otherwise)."""

    offset: int
    timestamp: int = -1


@dataclass(frozen=True)
class OffsetQuery:
    """One `list_offsets` request: the same kind of offset for many partitions."""

    specs: Mapping[Key, OffsetSpec]
    isolation: IsolationLevel = IsolationLevel.READ_COMMITTED


def list_offsets(
    admin: AdminClient, queries: Mapping[str, OffsetQuery], errors: dict[str, str], retry_seconds: float = 0.0
) -> dict[str, dict[Key, Found]]:
    """Sends every query, then waits: {query name: {(topic, partition): Found}}.

    An offset of -1 means "no such record" (a time after the last record). A partition whose
    lookup failed with a retriable error (a leader moving, or a broker just restarted answering
    UNKNOWN_LEADER_EPOCH for a few seconds) is asked again with backoff for up to
    `retry_seconds`; one that still failed, or failed otherwise, is missing from the answer, and
    its topic gets the broker's reason in `errors`.
    """
    deadline = time.monotonic() + retry_seconds
    answers: dict[str, dict[Key, Found]] = {name: {} for name in queries}
    todo = {name: dict(query.specs) for name, query in queries.items() if query.specs}
    wait = RETRY_BACKOFF_SECONDS
    while todo:
        retry: dict[str, dict[Key, OffsetSpec]] = {}
        for name, specs in _sent(admin, queries, todo, errors).items():
            for key, outcome in specs.items():
                if isinstance(outcome, Found):
                    answers[name][key] = outcome
                elif transient(outcome) and time.monotonic() < deadline:
                    retry.setdefault(name, {})[key] = todo[name][key]
                else:
                    errors.setdefault(key[0], f"offset lookup failed: {outcome.str()}")
        todo = retry
        if todo:
            time.sleep(min(wait, max(deadline - time.monotonic(), 0)))
            wait = min(wait * 2, MAX_RETRY_BACKOFF_SECONDS)
    return answers


def _sent(
    admin: AdminClient, queries: Mapping[str, OffsetQuery], todo: Mapping[str, Mapping[Key, OffsetSpec]], errors: dict
) -> dict[str, dict[Key, Found | KafkaError]]:
    """One round: every pending lookup sent before any answer is awaited; each answer or error."""
    pending = {}
    for name, specs in todo.items():
        request = {TopicPartition(topic, partition): spec for (topic, partition), spec in specs.items()}
        try:
            pending[name] = admin.list_offsets(
                request, isolation_level=queries[name].isolation, request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except KafkaException as error:
            for topic, _ in specs:
                errors.setdefault(topic, f"offset lookup failed: {error.args[0].str()}")
    outcomes: dict[str, dict[Key, Found | KafkaError]] = {}
    for name, futures in pending.items():
        for tp, future in futures.items():
            try:
                info = future.result()
                outcomes.setdefault(name, {})[(tp.topic, tp.partition)] = Found(info.offset, info.timestamp)
            except KafkaException as error:
                outcomes.setdefault(name, {})[(tp.topic, tp.partition)] = error.args[0]
    return outcomes


def at_time(keys: list[Key], timestamp_ms: int) -> OffsetQuery:
    return at_times(dict.fromkeys(keys, timestamp_ms))


def at_times(times: Mapping[Key, int]) -> OffsetQuery:
    """Each partition's first offset at its own time."""
    return OffsetQuery({key: OffsetSpec.for_timestamp(at) for key, at in times.items()})


def log_start(keys: list[Key]) -> OffsetQuery:
    """The first offset still in the log (read_uncommitted: the log itself, not what is readable)."""
    return OffsetQuery({key: OffsetSpec.earliest() for key in keys}, IsolationLevel.READ_UNCOMMITTED)


def largest_timestamp(keys: list[Key]) -> OffsetQuery:
    """Each partition's record with the largest timestamp (-1 when the log holds none that has one)."""
    return OffsetQuery({key: OffsetSpec.max_timestamp() for key in keys}, IsolationLevel.READ_UNCOMMITTED)


def last_stable(keys: list[Key]) -> OffsetQuery:
    """Where a read_committed consumer stops: no open transaction lies before it."""
    return OffsetQuery({key: OffsetSpec.latest() for key in keys})
