"""Record reading: what a cluster's topics carried on one UTC day, read from their logs.

A chunk of topics is measured in one pass:

1. every boundary offset of every partition is asked for at once (`offsets`);
2. partitions whose day costs no more to read whole than to sample (`estimation.worth_sampling`;
   all of them when `SAMPLING_BATCH_SIZE` is empty) are read whole by one consumer assigned to
   all of them (`reading`), and records are attributed to days and hours by their own
   timestamps (`attribution`);
3. at the same time, on a second consumer, the bigger partitions are sampled in blocks spread
   over the day's hours, a round of blocks for all of them at once, and estimated with a 95 %
   interval (`estimation`);
4. truncation is judged from each log's first retained record (`attribution.day_retention`).
"""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from recommender_pipeline.measuring import offsets as boundary
from recommender_pipeline.measuring.attribution import DayTally, Retention, day_retention
from recommender_pipeline.measuring.days import (
    DAY_MS,
    HOUR_MS,
    HOURS_PER_DAY,
    day_end_ms,
    day_start_ms,
    iso_utc,
    unmeasurable_reason,
)
from recommender_pipeline.measuring.estimation import Block, Estimate, Stratum, estimate, plan_blocks, worth_sampling
from recommender_pipeline.measuring.hours import NOT_READ, describe_missing, fine_peak, hour_states
from recommender_pipeline.measuring.measurement import Measurement, Method, Status, TopicSpec
from recommender_pipeline.measuring.offsets import Key
from recommender_pipeline.measuring.reading import Range, first_record_at, read_ranges

METHOD = Method.SAMPLING_RECORDS
METADATA_TIMEOUT_SECONDS = 30  # how long a cluster may take to answer for its topics (TLS, WAN)
# Blocks want tens of records, not the megabyte a bulk read prefetches per partition.
SAMPLE_FETCH = {"max.partition.fetch.bytes": 262_144, "fetch.wait.max.ms": 10}


@dataclass(frozen=True)
class SamplingLimits:
    """The sampling variables, given their meaning here."""

    max_records_per_partition: int | None  # SAMPLING_BATCH_SIZE; None reads every record
    poll_timeout_seconds: float  # SAMPLING_TIMEOUT_SECONDS
    max_empty_polls: int  # SAMPLING_MAX_CONSECUTIVE_NULLS: no progress for their product fails a topic
    skew_ms: int = 900_000  # TIMESTAMP_SKEW_SECONDS: how late a record may be appended after its day
    seed: int = 0  # with the partition number, fixes the sampled blocks: re-measuring gives the same numbers
    peak_bucket_ms: int = HOUR_MS  # PEAK_BUCKET_SECONDS: the width of the buckets the peak is the busiest of

    @property
    def stall_seconds(self) -> float:
        return self.poll_timeout_seconds * self.max_empty_polls


@dataclass
class PartitionDay:
    """One partition's offsets around the day and what was found there."""

    key: Key
    read_from: int  # ms: the day's start, or the first hour a previous capture left unsettled
    first: int  # the broker's first offset at `read_from`: no earlier record is in what is read
    stable: int  # the last stable offset: the log's readable end
    log_start: int
    stop_hint: int = -1  # sampled: the broker's first offset at day end + skew (-1: none); a lower bound
    end_hint: int = -1  # sampled: the broker's first offset at day end (-1: none)
    hour_hints: list[int] = field(default_factory=list)
    estimate: Estimate | None = None
    offsets: int = 0  # offsets spanned by the day's read or sample
    read: int = 0  # records actually read
    late: int = 0
    first_timestamp: int | None = None  # of the first readable record at `first`
    sampled: bool = False
    stop: int = 0  # sampled partitions: the first data record past the day and its bound
    bucket_bytes: dict[int, int] | None = None  # read whole: bytes per peak bucket (finer than hours)

    def hint(self, offset: int) -> int:
        """A boundary offset, or the readable end when the broker has no record at that time."""
        return self.stable if offset < 0 else min(max(offset, self.first), self.stable)


class DayMeasurer:
    """Measures the topics of one cluster for one UTC day, all partitions in one pass."""

    def __init__(
        self,
        admin: AdminClient,
        consumer_factory: Callable[[dict], Consumer],
        day: date,
        limits: SamplingLimits,
        log: Callable[[str], None] = lambda _: None,
        clock: Callable[[], float] = time.time,
    ):
        self.admin = admin
        self.consumer_factory = consumer_factory
        self.day = day
        self.limits = limits
        self.log = log
        self.clock = clock  # seconds since the epoch: when "now" is, for the hourly capture's tests
        self.start_ms, self.end_ms = day_start_ms(day), day_end_ms(day)
        self.stop_ms = self.end_ms + limits.skew_ms  # a day's read ends at its first record stamped from here

    def measure(self, topics: Iterable[TopicSpec], read_from: Mapping[str, int] | None = None) -> list[Measurement]:
        """Measures the topics' day; `read_from` (topic: ms, an hour boundary) starts a topic's
        read where an earlier capture left off (`hours.read_from_ms`)."""
        started = time.monotonic()
        self.read_from = {**(read_from or {})}
        measured_at = int(self.clock() * 1000)
        rows: dict[str, Measurement] = {}
        errors: dict[str, str] = {}
        live = self.admin.list_topics(timeout=METADATA_TIMEOUT_SECONDS).topics
        todo: list[TopicSpec] = []
        for spec in topics:
            row = rows[spec.topic] = Measurement.planned(spec, self.day, measured_at, METHOD)
            reason = unmeasurable_reason(self.day, measured_at)
            if spec.topic not in live or live[spec.topic].error is not None:
                errors[spec.topic] = "topic no longer exists on the cluster (deleted after the inventory?)"
            elif reason:
                row.status, row.reason = Status.NOT_MEASURABLE, reason
            else:
                row.partitions = len(live[spec.topic].partitions)
                todo.append(spec)

        parts = self._locate([(s.topic, p) for s in todo for p in range(rows[s.topic].partitions)], errors)
        exact = [part for part in parts.values() if not part.sampled]
        sampled = [part for part in parts.values() if part.sampled]
        with ThreadPoolExecutor(max_workers=1) as pool:
            sampling = pool.submit(self._sample, sampled, errors) if sampled else None
            if exact:
                consumer = self.consumer_factory({})
                try:
                    self._read_exactly(consumer, exact, errors)
                finally:
                    consumer.close()
            if sampling is not None:
                sampling.result()

        by_topic: dict[str, list[PartitionDay]] = {}
        for part in parts.values():
            by_topic.setdefault(part.key[0], []).append(part)
        for spec in todo:
            row = rows[spec.topic]
            if spec.topic not in errors and spec.topic in by_topic:
                self._fill(row, sorted(by_topic[spec.topic], key=lambda p: p.key[1]), measured_at)
        for topic, reason in errors.items():
            rows[topic].status, rows[topic].reason = Status.ERROR, reason
        elapsed = round(time.monotonic() - started, 3)
        partitions = sum(row.partitions for row in rows.values()) or 1
        for row in rows.values():  # the chunk is read in one pass: each topic's share of its time
            row.duration_seconds = round(elapsed * row.partitions / partitions, 4)
        read = sum(part.read for part in parts.values())
        self.log(f"{self.day}: {len(rows)} topics, {len(parts)} partitions, {read:,} records read in {elapsed}s")
        return list(rows.values())

    def _locate(self, keys: list[Key], errors: dict[str, str]) -> dict[Key, PartitionDay]:
        """Every partition's boundary offsets: one round of requests for all partitions, and one
        more for those big enough to sample."""
        answers = boundary.list_offsets(
            self.admin,
            {
                "first": boundary.at_times({key: self._read_from(key[0]) for key in keys}),
                "stable": boundary.last_stable(keys),
                "log_start": boundary.log_start(keys),
            },
            errors,
        )
        parts = {}
        for key in keys:
            if key[0] in errors:
                continue
            stable, first = answers["stable"][key], answers["first"][key]
            first = stable if first < 0 else min(first, stable)
            parts[key] = PartitionDay(
                key, self._read_from(key[0]), first=first, stable=stable, log_start=answers["log_start"][key]
            )
        # The offset for the day's end may be a marker's, too early: a partition whose readable
        # log from the day's start is worth sampling goes to the sampler, which confirms the day's
        # end and reads it whole after all when the day turns out small.
        cap = self.limits.max_records_per_partition
        sampled = [key for key, part in parts.items() if cap and worth_sampling(part.stable - part.first, cap)]
        if sampled:
            times = {"end": self.end_ms, "stop": self.stop_ms}
            times |= {str(h): self.start_ms + h * HOUR_MS for h in range(1, HOURS_PER_DAY)}
            hints = boundary.list_offsets(
                self.admin, {name: boundary.at_time(sampled, at) for name, at in times.items()}, errors
            )
            for key in sampled:
                part = parts[key]
                part.sampled = True
                part.end_hint, part.stop_hint = hints["end"].get(key, -1), hints["stop"].get(key, -1)
                part.hour_hints = [hints[str(h)].get(key, -1) for h in range(1, HOURS_PER_DAY)]
        return parts

    def _read_exactly(self, consumer: Consumer, parts: list[PartitionDay], errors: dict[str, str]) -> None:
        """Reads every record of the day of each partition, all of them in one pass."""
        bucket_ms = self.limits.peak_bucket_ms
        ranges = {
            part.key: Range(part.first, part.stable, DayTally(self.start_ms, bucket_ms=bucket_ms), stop_at=self.stop_ms)
            for part in parts
        }
        errors.update(read_ranges(consumer, ranges, self.limits.stall_seconds, self._progress))
        for part in parts:
            span = ranges[part.key]
            part.estimate = Estimate.exact(span.tally)
            part.bucket_bytes = span.tally.bucket_bytes
            part.offsets = (span.covered_to or span.start) - span.start
            part.read, part.late, part.first_timestamp = span.read, span.tally.late, span.tally.first_timestamp

    def _sample(self, parts: list[PartitionDay], errors: dict[str, str]) -> None:
        """Samples the big partitions in rounds of blocks, every partition in each round."""
        consumer = self.consumer_factory(SAMPLE_FETCH)
        try:
            for part in parts:
                part.stop = part.hint(part.stop_hint)
            # The broker's offsets for the day's start and for its end plus the bound are lower
            # bounds: a transaction marker stamped later than its records may have answered
            # first. A probe of the records themselves confirms each, or a bisection finds it.
            self._confirm(consumer, parts, self.stop_ms, errors, end=True)
            self._confirm(consumer, parts, None, errors, end=False)
            cap = self.limits.max_records_per_partition or 0
            small = [part for part in parts if not worth_sampling(part.stop - part.first, cap)]
            for part in small:
                part.sampled = False
            self._read_exactly(consumer, small, errors)
        finally:
            consumer.close()
        self._read_blocks([part for part in parts if part.sampled], errors)

    def _confirm(
        self, consumer: Consumer, parts: list[PartitionDay], at_ms: int | None, errors: dict[str, str], *, end: bool
    ) -> None:
        """Moves each partition's `stop` (end=True) or `first` to the first data record stamped at
        or after `at_ms` (its `read_from` when None); the probe of `first` also tells whether the
        log's head was deleted."""
        start = {part.key: part.stop if end else part.first for part in parts}
        probes = {
            part.key: Range(start[part.key], part.stable, DayTally(self.start_ms), limit=1)
            for part in parts
            if start[part.key] < part.stable
        }
        errors.update(read_ranges(consumer, probes, self.limits.stall_seconds))
        searches: dict[int, dict[Key, tuple[int, int]]] = {}  # by the time searched for
        for part in parts:
            probe = probes.get(part.key)
            found = probe.tally.first_timestamp if probe else None
            if not end:
                part.first_timestamp = found
            at = part.read_from if at_ms is None else at_ms
            if found is not None and found < at:
                span = ((probe.covered_to or probe.end), part.stop if not end else part.stable)
                searches.setdefault(at, {})[part.key] = span
        for at, group in searches.items():
            offsets = first_record_at(consumer, group, at, self.limits.stall_seconds, errors)
            for part in parts:
                if part.key in offsets:
                    if end:
                        part.stop = offsets[part.key]
                    else:
                        part.first = offsets[part.key]

    def _read_blocks(self, parts: list[PartitionDay], errors: dict[str, str]) -> None:
        """Reads the planned blocks in rounds, one block of every sampled partition per round,
        and estimates each partition-day from them."""
        cap = self.limits.max_records_per_partition or 0
        by_key = {part.key: part for part in parts}
        plans: dict[Key, tuple[list[Stratum], list[Block]]] = {}
        day_ends = {part.key: part.hint(part.end_hint) for part in parts}
        for part in parts:
            end = part.stop
            # Strata: the 24 hours as the broker's time index sees them, then the skew tail.
            edges = [part.first, *(min(part.hint(h), end) for h in part.hour_hints), min(day_ends[part.key], end)]
            edges = [max(edges[: i + 1]) for i in range(len(edges))] + [end]
            plans[part.key] = plan_blocks(edges, cap, random.Random(self._seed(part.key)))
            part.offsets = end - part.first
        # A block that starts in the skew tail comes after the next day's first record: its
        # records of the day are late even if the block holds no record of the next day.
        tallies = {
            key: [DayTally(self.start_ms, next_day_seen=block.start >= day_ends[key]) for block in blocks]
            for key, (_, blocks) in plans.items()
        }
        rounds = max((len(blocks) for _, blocks in plans.values()), default=0)
        # A round costs a fetch round trip whatever the number of partitions in it; consumers in
        # threads, to overlap rounds, were slower on two cores than this one.
        consumer = self.consumer_factory(SAMPLE_FETCH)
        try:
            for index in range(rounds):
                ranges = {
                    key: Range(blocks[index].start, blocks[index].end, tallies[key][index])
                    for key, (_, blocks) in plans.items()
                    if index < len(blocks)
                }
                errors.update(read_ranges(consumer, ranges, self.limits.stall_seconds))
                for key, span in ranges.items():
                    by_key[key].read += span.read
        finally:
            consumer.close()
        for part in parts:
            strata, blocks = plans[part.key]
            part.estimate = estimate(strata, blocks, tallies[part.key])
            part.late = round(part.estimate.late)

    def _read_from(self, topic: str) -> int:
        return self.read_from.get(topic, self.start_ms)

    def _progress(self, line: str) -> None:
        self.log(f"{self.day}: {line}")

    def _seed(self, key: Key) -> int:
        """The same data gives the same sample (reproducible reruns); trials vary `seed`."""
        return zlib.crc32(str(key[1]).encode()) ^ self.limits.seed

    def _fill(self, row: Measurement, parts: list[PartitionDay], measured_at: int) -> None:
        """The topic-day's numbers from its partitions."""
        total = Estimate.zero()
        for part in parts:
            total = total + part.estimate
        retention = {
            part.key[1]: day_retention(part.log_start, part.first, part.first_timestamp, part.read_from, self.end_ms)
            for part in parts
        }
        lost = sorted(p for p, kept in retention.items() if kept is Retention.LOST)
        partial = sorted(p for p, kept in retention.items() if kept is Retention.PARTIAL)
        sampled = [part for part in parts if part.sampled]
        states = hour_states(self.start_ms, self._read_from(row.topic), self._retained_from(parts), measured_at)
        # The row holds the hours this capture read; the store adds those read before (`hours.merge`).
        read = np.array([state != NOT_READ for state in states])
        hour_records, hour_bytes = total.hour_records * read, total.hour_bytes * read
        read_records, read_bytes = float(hour_records.sum()), float(hour_bytes.sum())
        records, total_bytes = round(read_records), round(read_bytes)
        window_seconds = (DAY_MS if measured_at >= self.end_ms else max(measured_at - self.start_ms, 1)) / 1000
        hour, peak, peak_low, peak_high = total.peak(read)
        bytes_low, bytes_high = total.bytes_interval()
        partition_bytes = [part.estimate.bytes for part in parts]
        mean_partition = sum(partition_bytes) / len(partition_bytes) if partition_bytes else 0.0

        reasons = []
        if lost:
            reasons.append(f"partitions {lost} lost the day to deletion (log start moved past it)")
        if partial:
            reasons.append(f"partitions {partial} lost part of the day to deletion")
        empty = sum(1 for part in parts if part.estimate.records == 0)
        if empty and records:
            reasons.append(f"{empty} of {len(parts)} partitions had no records this day")
        elif not records and not lost:
            reasons.append(f"{len(parts)} of {len(parts)} partitions had no records this day")
        if sampled:
            cap = self.limits.max_records_per_partition
            reasons.append(
                f"estimated: {len(sampled)} of {len(parts)} partitions were sampled "
                f"(SAMPLING_BATCH_SIZE={cap} records each, far fewer than they held)"
            )
        late = sum(part.late for part in parts)
        if late:
            reasons.append(f"{late} records were appended after the next day had begun")
        if measured_at >= self.end_ms and describe_missing(states):
            reasons.append(describe_missing(states))
        if measured_at < self.end_ms:
            reasons.append("day still open: measured up to " + iso_utc(measured_at))

        if records:
            status = Status.MEASURED
        elif lost:
            status = Status.NOT_MEASURABLE
        else:
            status = Status.EMPTY
        row.status = status
        row.reason = "; ".join(reasons)
        row.exact = not sampled and not lost and not partial
        row.partial = bool(lost or partial) and status is not Status.NOT_MEASURABLE
        row.records = records
        row.bytes = total_bytes
        row.offsets_in_window = sum(part.offsets for part in parts)
        row.sampled_records = sum(part.read for part in parts)
        row.retained_records = sum(max(part.stable - part.log_start, 0) for part in parts)
        row.late_records = late
        row.mean_record_bytes = read_bytes / read_records if read_records else 0.0
        row.avg_ingress_bytes_per_sec = read_bytes / window_seconds
        row.peak_ingress_bytes_per_sec = peak
        row.peak_bucket_start = iso_utc(self.start_ms + hour * HOUR_MS) if total_bytes else None
        # A partition read whole adds no variance: an exact day's intervals are its values.
        row.bytes_ci_low, row.bytes_ci_high = bytes_low, bytes_high
        row.peak_ci_low, row.peak_ci_high = peak_low, peak_high
        row.partition_bytes = "[" + ",".join(str(round(b)) for b in partition_bytes) + "]"
        row.skew = max(partition_bytes) / mean_partition if mean_partition else 0.0
        row.hours_captured = states
        row.hour_records = json.dumps([round(value) for value in hour_records.tolist()])
        row.hour_bytes = json.dumps([round(value) for value in hour_bytes.tolist()])
        self._fine_peak(row, parts, read)

    def _fine_peak(self, row: Measurement, parts: list[PartitionDay], read: np.ndarray) -> None:
        """The peak over PEAK_BUCKET_SECONDS buckets finer than an hour, from the records' own
        timestamps. Only a day whose partitions were all read whole has them: a sampled one keeps
        the hourly peak, and says so."""
        bucket_ms = self.limits.peak_bucket_ms
        if bucket_ms >= HOUR_MS or not row.records:
            return
        if any(part.bucket_bytes is None for part in parts):
            note = f"peak over hourly buckets: sampled partitions have no per-{bucket_ms // 1000} s counts"
            row.reason = "; ".join(part for part in (row.reason, note) if part)
            return
        buckets: dict[int, int] = {}
        for part in parts:
            for index, size in (part.bucket_bytes or {}).items():
                if read[index * bucket_ms // HOUR_MS]:
                    buckets[index] = buckets.get(index, 0) + size
        row.peak_ingress_bytes_per_sec, row.peak_bucket_start, row.bucket_bytes = fine_peak(
            buckets, bucket_ms // 1000, self.start_ms
        )
        row.bucket_seconds = bucket_ms // 1000
        row.peak_ci_low = row.peak_ci_high = row.peak_ingress_bytes_per_sec if row.exact else None

    def _retained_from(self, parts: list[PartitionDay]) -> int:
        """The time from which every partition still held all its records: where the log's
        deletions end (a partition whose head was deleted keeps records from its first one on)."""
        retained = self.start_ms
        for part in parts:
            if part.log_start > 0 and part.first <= part.log_start:
                first = part.first_timestamp if part.first_timestamp is not None else self.end_ms
                retained = max(retained, first)
        return retained
