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

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

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

    finished: list[TopicPartition] = []

    def finish(key: Key, covered_to: int) -> None:
        ranges[key].covered_to = covered_to
        del pending[key]
        finished.append(TopicPartition(*key))

    def pause_finished() -> None:
        """Stops the fetches of the partitions that are done, all in one call."""
        if finished:
            consumer.pause(finished)
            finished.clear()

    consumer.assign([TopicPartition(*key, span.start) for key, span in pending.items()])
    last_progress = last_report = last_check = time.monotonic()
    try:
        while pending:
            if progress is not None and time.monotonic() - last_report >= PROGRESS_SECONDS:
                last_report = time.monotonic()
                read = sum(span.read for span in ranges.values())
                progress(f"{read:,} records read; {len(pending):,} of {len(ranges):,} partitions still reading")
            messages = consumer.consume(CONSUME_BATCH, timeout=0) or consumer.consume(1, timeout=IDLE_WAIT_SECONDS)
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
            pause_finished()
            if messages:
                last_progress = time.monotonic()
                continue
            # Nothing queued: markers, aborted records or compaction may have carried a position
            # past the end without a record to show for it.
            for tp in consumer.position([TopicPartition(*key) for key in pending]):
                key = (tp.topic, tp.partition)
                if tp.offset >= ranges[key].end:
                    finish(key, ranges[key].end)
            pause_finished()
            idle = time.monotonic() - last_progress
            if pending and idle > unreachable_after and time.monotonic() - last_check > REACHABLE_CHECK_SECONDS:
                last_check = time.monotonic()
                unreachable = _unreachable(consumer)
                if unreachable:  # a dead cluster fails the whole chunk now, not after the stall period
                    for topic, _ in sorted(pending):
                        errors.setdefault(
                            topic, f"cluster unreachable after {idle:.0f}s without progress: {unreachable}"
                        )
                    break
            if pending and time.monotonic() - last_progress > stall_seconds:
                for topic, partition in sorted(pending):
                    errors.setdefault(
                        topic,
                        f"no progress for {stall_seconds:.0f}s (SAMPLING_TIMEOUT_SECONDS x "
                        f"SAMPLING_MAX_CONSECUTIVE_NULLS) on partition {partition}",
                    )
                break
    finally:
        # Paused state outlives an assignment and would silence the next read of the partition.
        consumer.resume([TopicPartition(*key) for key in ranges])
        consumer.unassign()
    return {topic: reason for topic, reason in errors.items() if topic}


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
