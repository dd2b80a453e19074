"""One consumer reading many partition ranges at once, each stopped by its own position.

Every range of a pass is assigned together, so the broker's fetches serve all partitions in
parallel and the pass costs about what a plain consumer needs for the same offsets. A range is
done when its position reaches its end offset, when a record at or past the end arrives, when
a data record is stamped at or after its `stop_at` time, or when `limit` records were read; the
partition is then paused so its fetches stop. Nothing waits a fixed time: the consumer takes
what is already queued and only blocks, briefly, when nothing is.

A record's timestamp is evidence, not a command: one stamped in the future of the measurement
(beyond `plausible_until`) or without a timestamp (-1, old message formats) is counted apart,
never placed in a day, and never ends a range or counts towards its `limit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from recommender_pipeline.measuring.attribution import DayTally, header_size
from recommender_pipeline.measuring.offsets import Key, transient

CONSUME_BATCH = 500  # consume() costs grow with the batch asked for, even when less is queued
IDLE_WAIT_SECONDS = 0.01  # how long to block when nothing is queued, before checking positions
PROGRESS_SECONDS = 10.0
# After this long without a record, ask the cluster for metadata: if it does not answer, the
# chunk fails at once instead of waiting out the whole stall period partition by partition.
REACHABLE_CHECK_SECONDS = 10.0


@dataclass
class Range:
    start: int
    end: int  # exclusive; the last stable offset when the range runs to the log's end
    tally: DayTally
    stop_at: int | None = None  # epoch ms: stop at the first data record stamped at or after it
    limit: int | None = None  # stop after this many data records with a plausible timestamp
    plausible_until: int | None = None  # epoch ms: records stamped later are implausible (a clock far ahead)
    read: int = 0  # data records read, in or out of the day
    placed: int = 0  # of those, records with a plausible timestamp (the others: `future`, `untimestamped`)
    future: int = 0  # records stamped after `plausible_until`
    untimestamped: int = 0  # records without a timestamp (-1)
    covered_to: int | None = None  # the first offset not read, once done

    def note(self, timestamp: int, size: int) -> None:
        """Places one data record: in the tally when its timestamp is plausible, else counted apart."""
        self.read += 1
        if timestamp < 0:
            self.untimestamped += 1
        elif self.plausible_until is not None and timestamp > self.plausible_until:
            self.future += 1
        else:
            self.placed += 1
            self.tally.add(timestamp, size)


def read_ranges(
    consumer: Consumer,
    ranges: Mapping[Key, Range],
    stall_seconds: float,
    progress: Callable[[str], None] | None = None,
    unreachable_after: float = REACHABLE_CHECK_SECONDS,
) -> dict[str, str]:
    """Reads every range to its end; returns {topic: reason} for topics that failed.

    A partition that makes no progress for `stall_seconds` fails its topic, not the others; a
    cluster that has not answered metadata for `unreachable_after` seconds without progress
    (KAFKA_RETRY_TIMEOUT_SECONDS: a broker restarting comes back within it) fails them all. Retriable
    errors are the client's to retry. A long read reports its progress every PROGRESS_SECONDS
    through `progress`.
    """
    pending = {key: span for key, span in ranges.items() if span.end > span.start}
    for key, span in ranges.items():
        if key not in pending:
            span.covered_to = span.start
    errors: dict[str, str] = {}
    if not pending:
        return errors

    consumer.assign([TopicPartition(*key, span.start) for key, span in pending.items()])
    reader = _Pass(consumer, ranges, pending, errors)
    try:
        reader.run(stall_seconds, progress, unreachable_after)
    finally:
        # Paused state outlives an assignment and would silence the next read of the partition.
        consumer.resume([TopicPartition(*key) for key in ranges])
        consumer.unassign()
    return {topic: reason for topic, reason in errors.items() if topic}


class _Pass:
    """One pass of `read_ranges` over its assigned partitions: the ranges still reading, and
    when the pass last made progress, reported it and checked the cluster."""

    def __init__(
        self, consumer: Consumer, ranges: Mapping[Key, Range], pending: dict[Key, Range], errors: dict[str, str]
    ):
        self.consumer = consumer
        self.ranges = ranges
        self.pending = pending
        self.errors = errors
        self.finished: list[TopicPartition] = []
        self.last_progress = self.last_report = self.last_check = time.monotonic()

    def run(self, stall_seconds: float, progress: Callable[[str], None] | None, unreachable_after: float) -> None:
        """Consumes until every range is done, or the cluster or a partition stops answering."""
        consumer = self.consumer
        while self.pending:
            self._report(progress)
            messages = consumer.consume(CONSUME_BATCH, timeout=0) or consumer.consume(1, timeout=IDLE_WAIT_SECONDS)
            self._take(messages)
            self._pause_finished()
            if messages:
                self.last_progress = time.monotonic()
                continue
            # Nothing queued: markers, aborted records or compaction may have carried a position
            # past the end without a record to show for it.
            self._settle_positions()
            self._pause_finished()
            if self._cluster_gone(unreachable_after) or self._stalled(stall_seconds):
                break

    def _finish(self, key: Key, covered_to: int) -> None:
        """Marks a range done, its partition to be paused with the others done in the same batch."""
        self.ranges[key].covered_to = covered_to
        del self.pending[key]
        self.finished.append(TopicPartition(*key))

    def _pause_finished(self) -> None:
        """Stops the fetches of the partitions that are done, all in one call."""
        if self.finished:
            self.consumer.pause(self.finished)
            self.finished.clear()

    def _report(self, progress: Callable[[str], None] | None) -> None:
        """Says how far a long read got, every PROGRESS_SECONDS."""
        if progress is not None and time.monotonic() - self.last_report >= PROGRESS_SECONDS:
            self.last_report = time.monotonic()
            read = sum(span.read for span in self.ranges.values())
            progress(f"{read:,} records read; {len(self.pending):,} of {len(self.ranges):,} partitions still reading")

    def _take(self, messages: list[Message]) -> None:
        """Places a batch of consumed messages in their ranges, finishing those they complete."""
        pending, finish, errors = self.pending, self._finish, self.errors
        # The hot loop: one dict lookup and the message's own accessors per record.
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF and not transient(error):
                    errors.setdefault(message.topic() or "", error.str())
                continue
            key = (message.topic(), message.partition())
            span = pending.get(key)
            if span is None:
                continue
            offset = message.offset()
            if offset < span.start:  # left over from an earlier assignment
                continue
            if offset >= span.end:
                finish(key, span.end)
                continue
            timestamp = message.timestamp()[1]
            if span.stop_at is not None and span.stop_at <= timestamp <= (span.plausible_until or timestamp):
                finish(key, offset)
                continue
            size = len(message.key() or b"") + len(message.value() or b"")
            headers = message.headers()
            if headers:
                size += header_size(headers)
            span.note(timestamp, size)
            if offset == span.end - 1 or (span.limit is not None and span.placed >= span.limit):
                finish(key, offset + 1)

    def _settle_positions(self) -> None:
        """Finishes the ranges whose position reached their end though no record there arrived."""
        for tp in self.consumer.position([TopicPartition(*key) for key in self.pending]):
            key = (tp.topic, tp.partition)
            if tp.offset >= self.ranges[key].end:
                self._finish(key, self.ranges[key].end)

    def _cluster_gone(self, unreachable_after: float) -> bool:
        """Whether the cluster, silent for too long, no longer answers metadata: then every topic
        still reading fails."""
        idle = time.monotonic() - self.last_progress
        if not (
            self.pending and idle > unreachable_after and time.monotonic() - self.last_check > REACHABLE_CHECK_SECONDS
        ):
            return False
        self.last_check = time.monotonic()
        unreachable = _unreachable(self.consumer)
        if not unreachable:
            return False
        # A dead cluster fails the whole chunk now, not after the stall period.
        for topic, _ in sorted(self.pending):
            self.errors.setdefault(topic, f"cluster unreachable after {idle:.0f}s without progress: {unreachable}")
        return True

    def _stalled(self, stall_seconds: float) -> bool:
        """Whether the partitions still reading made no progress for `stall_seconds`: each fails its topic."""
        if not (self.pending and time.monotonic() - self.last_progress > stall_seconds):
            return False
        for topic, partition in sorted(self.pending):
            self.errors.setdefault(
                topic,
                f"no progress for {stall_seconds:.0f}s (SAMPLING_TIMEOUT_SECONDS x "
                f"SAMPLING_MAX_CONSECUTIVE_NULLS) on partition {partition}",
            )
        return True


def _unreachable(consumer: Consumer) -> str | None:
    """Why the cluster does not answer a metadata request, or None when it does."""
    try:
        consumer.list_topics(timeout=REACHABLE_CHECK_SECONDS / 2)
    except KafkaException as error:
        return error.args[0].str()
    return None


def first_record_at(
    consumer: Consumer,
    bounds: Mapping[Key, tuple[int, int]],
    at_ms: int,
    stall_seconds: float,
    errors: dict[str, str],
    plausible_until: int | None = None,
    unreachable_after: float = REACHABLE_CHECK_SECONDS,
) -> dict[Key, int]:
    """The offset of the first data record stamped at or after `at_ms` in each partition's
    [low, high), or high when there is none, found by bisection over offsets; records with an
    implausible timestamp (see `Range.note`) are stepped over.

    The broker's time index counts transaction markers, stamped with the commit's wall clock; a
    read_committed consumer skips them, so probing records finds the boundary the index misses
    when a producer forwards older event times. It assumes that the records' times grow with
    their offsets, as they do for a producer that forwards them in order.
    """
    low = {key: bound[0] for key, bound in bounds.items()}
    high = {key: bound[1] for key, bound in bounds.items()}
    while probes := {
        key: Range((low[key] + high[key]) // 2, high[key], DayTally(0), limit=1, plausible_until=plausible_until)
        for key in low
        if low[key] < high[key]
    }:
        errors.update(read_ranges(consumer, probes, stall_seconds, unreachable_after=unreachable_after))
        for key, probe in probes.items():
            found = probe.tally.first_timestamp
            if found is None:  # no data record from the probe's start on
                high[key] = probe.start
            elif found >= at_ms:
                high[key] = (probe.covered_to or probe.end) - 1
            else:
                low[key] = probe.covered_to or probe.end
    return high
