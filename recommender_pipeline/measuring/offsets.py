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

from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

Key = tuple[str, int]  # (topic, partition)
REQUEST_TIMEOUT_SECONDS = 30


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
    admin: AdminClient, queries: Mapping[str, OffsetQuery], errors: dict[str, str]
) -> dict[str, dict[Key, Found]]:
    """Sends every query, then waits: {query name: {(topic, partition): Found}}.

    An offset of -1 means "no such record" (a time after the last record). A partition whose
    lookup failed is missing from the answer, and its topic gets the broker's reason in `errors`.
    """
    pending = {}
    for name, query in queries.items():
        if not query.specs:
            continue
        request = {TopicPartition(topic, partition): spec for (topic, partition), spec in query.specs.items()}
        try:
            pending[name] = admin.list_offsets(
                request, isolation_level=query.isolation, request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except KafkaException as error:
            for topic, _ in query.specs:
                errors.setdefault(topic, f"offset lookup failed: {error.args[0].str()}")
    answers: dict[str, dict[Key, Found]] = {name: {} for name in queries}
    for name, futures in pending.items():
        for tp, future in futures.items():
            try:
                info = future.result()
                answers[name][(tp.topic, tp.partition)] = Found(info.offset, info.timestamp)
            except KafkaException as error:
                errors.setdefault(tp.topic, f"offset lookup failed: {error.args[0].str()}")
    return answers


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
