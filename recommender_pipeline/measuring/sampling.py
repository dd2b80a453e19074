"""Record sampling: what a topic carried on one UTC day, read through a `read_committed` consumer.

For every partition the day's first and last offsets come from the broker's time index, all
partitions in one `list_offsets` call. The consumer is assigned at those offsets (no seek, so no
"Erroneous state" race) and stops at the end offset by position, so transaction markers,
aborted records and compaction gaps never leave it waiting on empty polls.

When `SAMPLING_BATCH_SIZE` caps the records read per partition and a partition holds more,
the cap is spread over the day's hours; counts and bytes are then estimated from the offset
span, the share of offsets that were data records, and the mean size seen, and are labelled so.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from recommender_pipeline.errors import TopicMeasurementError
from recommender_pipeline.measuring.windows import (
    DAY_MS,
    HOUR_MS,
    HOURS_PER_DAY,
    day_end_ms,
    day_start_ms,
    iso_utc,
    unmeasurable_reason,
)

METHOD = "sampling_records"
CONSUME_BATCH = 10_000
BATCH_WAIT_SECONDS = 0.05
SLICE_RECORDS = 10  # records read per slice when sampling a capped partition
MAX_SLICES_PER_PARTITION = 120
SLICE_FETCH = {"max.partition.fetch.bytes": 65_536}


@dataclass(frozen=True)
class TopicSpec:
    """What the inventory knows about a topic when its measurement is planned."""

    cluster_id: str
    topic: str
    partitions: int
    retention_ms: int | None
    is_compacted: bool


@dataclass(frozen=True)
class SamplingLimits:
    """The original tool's sampling variables, given their meaning here."""

    max_records_per_partition: int | None  # SAMPLING_BATCH_SIZE; None reads every record
    poll_timeout_seconds: float  # SAMPLING_TIMEOUT_SECONDS
    max_empty_polls: int  # SAMPLING_MAX_CONSECUTIVE_NULLS: a read with no progress for
    # poll_timeout_seconds x max_empty_polls fails instead of waiting forever


@dataclass
class Tally:
    """What was read from one partition range."""

    records: int = 0
    bytes: int = 0
    offsets_covered: int = 0
    hour_bytes: list[int] = field(default_factory=lambda: [0] * HOURS_PER_DAY)


def record_size(message: Message) -> int:
    """Key + value + header keys and values, in bytes; absent parts count as zero."""
    size = len(message.key() or b"") + len(message.value() or b"")
    for key, value in message.headers() or ():
        size += len(key.encode()) + len(value or b"")
    return size


def _resolve(futures: dict, errors: dict[str, str]) -> dict[tuple[str, int], int]:
    offsets = {}
    for tp, future in futures.items():
        try:
            offsets[(tp.topic, tp.partition)] = future.result().offset
        except KafkaException as error:
            errors.setdefault(tp.topic, f"offset lookup failed: {error.args[0].str()}")
    return offsets


def _list_offsets(
    admin: AdminClient,
    spec_by_tp: dict[TopicPartition, OffsetSpec],
    errors: dict[str, str],
    isolation: IsolationLevel = IsolationLevel.READ_COMMITTED,
) -> dict[tuple[str, int], int]:
    if not spec_by_tp:
        return {}
    try:
        futures = admin.list_offsets(spec_by_tp, isolation_level=isolation, request_timeout=30)
    except KafkaException as error:
        for tp in spec_by_tp:
            errors.setdefault(tp.topic, f"offset lookup failed: {error.args[0].str()}")
        return {}
    return _resolve(futures, errors)


def read_ranges(
    consumer: Consumer,
    topic: str,
    ranges: dict[int, tuple[int, int, int | None]],
    day_start: int,
    limits: SamplingLimits,
) -> dict[int, Tally]:
    """Reads partitions of one topic over [start, end) offsets, at most `limit` records each.

    A partition is done when its position reaches the end offset, when a record at or past the
    end arrives, or when its limit is reached; nothing waits for polls that can only be empty.
    """
    tallies = {p: Tally() for p in ranges}
    pending = {p for p, (start, end, _) in ranges.items() if end > start}
    if not pending:
        return tallies

    def finish(partition: int, covered_to: int) -> None:
        start, end, _ = ranges[partition]
        tallies[partition].offsets_covered = min(covered_to, end) - start
        pending.discard(partition)
        consumer.pause([TopicPartition(topic, partition)])

    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in sorted(pending)])
    stall_seconds = limits.poll_timeout_seconds * limits.max_empty_polls
    last_progress = time.monotonic()
    try:
        while pending:
            # A short wait: `consume` returns early only once the whole batch is in.
            messages = consumer.consume(CONSUME_BATCH, timeout=BATCH_WAIT_SECONDS)
            if messages:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_seconds:
                raise TopicMeasurementError(
                    f"topic {topic}: no progress for {stall_seconds:.0f}s (SAMPLING_TIMEOUT_SECONDS x "
                    f"SAMPLING_MAX_CONSECUTIVE_NULLS) on partitions {sorted(pending)}"
                )
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise TopicMeasurementError(f"topic {topic}: {error.str()}")
                partition, offset = message.partition(), message.offset()
                if partition not in pending:
                    continue
                _, end, limit = ranges[partition]
                if offset >= end:
                    finish(partition, end)
                    continue
                tally = tallies[partition]
                size = record_size(message)
                hour = min(max((message.timestamp()[1] - day_start) // HOUR_MS, 0), HOURS_PER_DAY - 1)
                tally.records += 1
                tally.bytes += size
                tally.hour_bytes[hour] += size
                if offset == end - 1:
                    finish(partition, end)
                elif limit is not None and tally.records >= limit:
                    finish(partition, offset + 1)
            if pending:
                for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                    if tp.offset >= ranges[tp.partition][1]:
                        finish(tp.partition, tp.offset)
    finally:
        # Paused state would outlive the assignment and silence the next read of the partition.
        consumer.resume([TopicPartition(topic, p) for p in ranges])
        consumer.unassign()
    return tallies


def _plan_slices(boundaries: list[int], cap: int) -> list[tuple[int, int, int, int]]:
    """(hour, start, end, limit) slices that spread `cap` records over a partition's day.

    Each hour gets a share of the cap in proportion to its offsets, read as evenly spaced
    slices, so transaction markers, aborted batches and size changes within an hour are sampled
    where they are rather than only at the hour's start.
    """
    total = boundaries[-1] - boundaries[0]
    per_slice = max(SLICE_RECORDS, cap // MAX_SLICES_PER_PARTITION)
    slices = []
    for hour in range(HOURS_PER_DAY):
        start, end = boundaries[hour], boundaries[hour + 1]
        if end <= start:
            continue
        budget = max(1, round(cap * (end - start) / total))
        count = math.ceil(budget / per_slice)
        limit = math.ceil(budget / count)
        edges = [start + (end - start) * i // count for i in range(count + 1)]
        slices += [(hour, a, b, limit) for a, b in itertools.pairwise(edges) if b > a]
    return slices


def base_row(spec: TopicSpec, day: date, measured_at: int, closed: bool, method: str) -> dict:
    """A measurement row before measuring: the schema both methods fill."""
    start_ms = day_start_ms(day)
    window_end = day_end_ms(day) if closed else measured_at
    return {
        "date": day.isoformat(),
        "cluster_id": spec.cluster_id,
        "topic": spec.topic,
        "method": method,
        "status": "error",
        "reason": "",
        "partitions": spec.partitions,
        "is_compacted": spec.is_compacted,
        "retention_ms": spec.retention_ms,
        "window_start": iso_utc(start_ms),
        "window_end": iso_utc(window_end),
        "window_seconds": max(window_end - start_ms, 0) / 1000,
        "day_closed": closed,
        "exact": True,
        "records": 0,
        "bytes": 0,
        "offsets_in_window": 0,
        "sampled_records": 0,
        "retained_records": 0,
        "mean_record_bytes": 0.0,
        "avg_ingress_bytes_per_sec": 0.0,
        "peak_ingress_bytes_per_sec": 0.0,
        "peak_bucket_start": None,
        "bucket_seconds": HOUR_MS // 1000,
        "partition_bytes": "[]",
        "skew": 0.0,
        "egress_bytes": None,
        "hot_partition_ingress": None,
        "hot_partition_egress": None,
        "measured_at": iso_utc(measured_at),
        "duration_seconds": 0.0,
    }


def error_row(spec: TopicSpec, day: date, reason: str) -> dict:
    measured_at = int(time.time() * 1000)
    row = base_row(spec, day, measured_at, measured_at >= day_end_ms(day), METHOD)
    row.update(status="error", reason=reason)
    return row


class DayMeasurer:
    """Measures the topics of one cluster for one UTC day, one topic at a time, one consumer."""

    def __init__(
        self,
        admin: AdminClient,
        consumer_factory: Callable[[dict], Consumer],
        day: date,
        limits: SamplingLimits,
        log: Callable[[str], None] = lambda _: None,
    ):
        self.admin = admin
        self.consumer_factory = consumer_factory
        self.day = day
        self.limits = limits
        self.log = log

    def measure(self, topics: Iterable[TopicSpec]) -> list[dict]:
        topics = list(topics)
        measured_at = int(time.time() * 1000)
        start_ms, end_ms = day_start_ms(self.day), day_end_ms(self.day)
        closed = measured_at >= end_ms
        rows: dict[str, dict] = {}
        errors: dict[str, str] = {}

        live = self.admin.list_topics(timeout=30).topics
        todo: list[TopicSpec] = []
        for spec in topics:
            base = base_row(spec, self.day, measured_at, closed, METHOD)
            rows[spec.topic] = base
            reason = unmeasurable_reason(self.day, spec.retention_ms, measured_at)
            if spec.topic not in live or live[spec.topic].error is not None:
                errors[spec.topic] = "topic no longer exists on the cluster (deleted after the inventory?)"
            elif reason:
                base.update(status="not_measurable", reason=reason)
            else:
                base["partitions"] = len(live[spec.topic].partitions)
                todo.append(spec)

        tps = [TopicPartition(s.topic, p) for s in todo for p in range(rows[s.topic]["partitions"])]
        starts = _list_offsets(self.admin, {tp: OffsetSpec.for_timestamp(start_ms) for tp in tps}, errors)
        latest = _list_offsets(self.admin, {tp: OffsetSpec.latest() for tp in tps}, errors)
        # An open day ends at the last stable offset, which `latest` already holds.
        ends = (
            _list_offsets(self.admin, {tp: OffsetSpec.for_timestamp(end_ms) for tp in tps}, errors)
            if closed
            else latest
        )
        earliest = _list_offsets(
            self.admin, {tp: OffsetSpec.earliest() for tp in tps}, errors, IsolationLevel.READ_UNCOMMITTED
        )
        high = _list_offsets(
            self.admin, {tp: OffsetSpec.latest() for tp in tps}, errors, IsolationLevel.READ_UNCOMMITTED
        )

        consumer = self.consumer_factory({})
        # Warm the consumer's metadata cache: a topic it has not seen would otherwise wait for
        # the next periodic metadata refresh (about a second) after each assign.
        consumer.list_topics(timeout=30)
        try:
            for spec in todo:
                if spec.topic in errors:
                    continue
                row = rows[spec.topic]
                started = time.monotonic()
                try:
                    spans = {}
                    for p in range(row["partitions"]):
                        key = (spec.topic, p)
                        # -1 means no record at or after the boundary: the range runs to the end.
                        start = starts[key] if starts[key] >= 0 else latest[key]
                        end = ends[key] if ends[key] >= 0 else latest[key]
                        spans[p] = (start, max(start, end))
                    retained = sum(high[(spec.topic, p)] - earliest[(spec.topic, p)] for p in spans)
                    row.update(self._measure_topic(consumer, spec, spans, start_ms, measured_at, closed))
                    row["retained_records"] = retained
                except (TopicMeasurementError, KafkaException, KeyError) as error:
                    errors[spec.topic] = str(error) if not isinstance(error, KeyError) else "offset missing"
                row["duration_seconds"] = round(time.monotonic() - started, 3)
                self.log(
                    f"{spec.cluster_id}/{spec.topic} {self.day}: {row['status']} "
                    f"{row['records']:,} records, {row['bytes']:,} bytes in {row['duration_seconds']}s"
                )
        finally:
            consumer.close()

        for topic, reason in errors.items():
            rows[topic].update(status="error", reason=reason)
        return list(rows.values())

    def _measure_topic(
        self,
        consumer: Consumer,
        spec: TopicSpec,
        spans: dict[int, tuple[int, int]],
        start_ms: int,
        measured_at: int,
        closed: bool,
    ) -> dict:
        cap = self.limits.max_records_per_partition
        capped = {p for p, (s, e) in spans.items() if cap is not None and e - s > cap}
        exact_ranges = {p: (s, e, None) for p, (s, e) in spans.items() if p not in capped}
        tallies = read_ranges(consumer, spec.topic, exact_ranges, start_ms, self.limits)
        estimates = self._estimate_capped(spec.topic, spans, capped, start_ms) if capped else {}

        records = sum(t.records for t in tallies.values()) + sum(e[0] for e in estimates.values())
        partition_bytes = [tallies[p].bytes if p in tallies else estimates[p][1] for p in sorted(spans)]
        hour_bytes = [0.0] * HOURS_PER_DAY
        for tally in tallies.values():
            hour_bytes = [a + b for a, b in zip(hour_bytes, tally.hour_bytes, strict=True)]
        for estimate in estimates.values():
            hour_bytes = [a + b for a, b in zip(hour_bytes, estimate[2], strict=True)]
        total_bytes = sum(partition_bytes)
        window_seconds = (DAY_MS if closed else max(measured_at - start_ms, 1)) / 1000
        peak_hour = max(range(HOURS_PER_DAY), key=lambda h: hour_bytes[h])
        mean_partition = total_bytes / len(partition_bytes) if partition_bytes else 0
        empty_partitions = sum(1 for p, (s, e) in spans.items() if e == s)

        reasons = []
        if empty_partitions:
            reasons.append(f"{empty_partitions} of {len(spans)} partitions had no records this day")
        if capped:
            reasons.append(
                f"estimated: {len(capped)} of {len(spans)} partitions held more than "
                f"SAMPLING_BATCH_SIZE={cap} records and were sampled"
            )
        if not closed:
            reasons.append("day still open: measured up to " + iso_utc(measured_at))
        records = round(records)
        return {
            "status": "measured" if records > 0 else "empty",
            "reason": "; ".join(reasons),
            "exact": not capped,
            "records": records,
            "bytes": round(total_bytes),
            "offsets_in_window": sum(e - s for s, e in spans.values()),
            "sampled_records": sum(t.records for t in tallies.values()) + sum(e[3] for e in estimates.values()),
            "mean_record_bytes": total_bytes / records if records else 0.0,
            "avg_ingress_bytes_per_sec": total_bytes / window_seconds,
            "peak_ingress_bytes_per_sec": hour_bytes[peak_hour] / (HOUR_MS / 1000),
            "peak_bucket_start": iso_utc(start_ms + peak_hour * HOUR_MS) if total_bytes else None,
            "partition_bytes": "[" + ",".join(str(round(b)) for b in partition_bytes) + "]",
            "skew": max(partition_bytes) / mean_partition if mean_partition else 0.0,
        }

    def _estimate_capped(
        self,
        topic: str,
        spans: dict[int, tuple[int, int]],
        capped: set[int],
        start_ms: int,
    ) -> dict[int, tuple[float, float, list[float], int]]:
        """Samples each capped partition hour by hour: (records, bytes, hour bytes, records read)."""
        errors: dict[str, str] = {}
        boundaries = {p: [spans[p][0]] for p in capped}
        for hour in range(1, HOURS_PER_DAY):
            specs = {TopicPartition(topic, p): OffsetSpec.for_timestamp(start_ms + hour * HOUR_MS) for p in capped}
            found = _list_offsets(self.admin, specs, errors)
            for p in capped:
                offset = found.get((topic, p), -1)
                boundaries[p].append(min(max(offset if offset >= 0 else spans[p][1], boundaries[p][-1]), spans[p][1]))
        if errors:
            raise TopicMeasurementError(errors[topic])
        for p in capped:
            boundaries[p].append(spans[p][1])

        slices = {p: _plan_slices(boundaries[p], self.limits.max_records_per_partition) for p in capped}
        # Small fetches: a slice wants tens of records, not the megabyte a bulk read prefetches.
        consumer = self.consumer_factory(SLICE_FETCH)
        consumer.list_topics(timeout=30)
        estimates = {p: (0.0, 0.0, [0.0] * HOURS_PER_DAY, 0) for p in capped}
        try:
            self._read_slices(consumer, topic, slices, start_ms, estimates)
        finally:
            consumer.close()
        return estimates

    def _read_slices(self, consumer: Consumer, topic: str, slices: dict, start_ms: int, estimates: dict) -> None:
        for index in range(max(len(planned) for planned in slices.values())):
            batch = {p: planned[index] for p, planned in slices.items() if index < len(planned)}
            ranges = {p: (a, b, limit) for p, (_, a, b, limit) in batch.items()}
            for p, tally in read_ranges(consumer, topic, ranges, start_ms, self.limits).items():
                if not tally.offsets_covered:
                    continue
                hour, a, b, _ = batch[p]
                # Each slice stands for all of its offsets: scale what was read by span / covered.
                scale = (b - a) / tally.offsets_covered
                records, total, hour_bytes, sampled = estimates[p]
                hour_bytes[hour] += tally.bytes * scale
                estimates[p] = (
                    records + tally.records * scale,
                    total + tally.bytes * scale,
                    hour_bytes,
                    sampled + tally.records,
                )
