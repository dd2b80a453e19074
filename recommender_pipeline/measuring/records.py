"""Record reading: what a cluster's topics carried on one UTC day, read from their logs.

A topic-day holds every committed record stamped in the day that the log holds when it is
measured, whatever order the records were appended in. A chunk of topics is measured in one pass:

1. every boundary offset of every partition is asked for at once (`offsets`);
2. a partition whose log from the day's start to its end costs no more to read whole than to
   sample (`estimation.worth_sampling`; all of them when `SAMPLING_BATCH_SIZE` is empty) is read
   to its end by one consumer assigned to all of them (`reading`), and records are attributed
   to days and hours by their own timestamps (`attribution`);
3. at the same time, on a second consumer, the bigger partitions are split at the day's real end
   (plus the skew bound), found by probing the records themselves: the day is sampled in blocks
   spread over its hours, a round of blocks for all partitions at once, and estimated with a 95 %
   interval (`estimation`); the log after it (records of the day appended late) is read whole
   when small, or sampled for stragglers with a small share of the budget;
4. truncation is judged from each log's first retained record (`attribution.day_retention`).

Timestamps are evidence, not commands: a record stamped more than `PLAUSIBLE_AHEAD_MS` after the
measurement, or without a timestamp, is counted apart, placed in no day, and never taken as a
boundary (`reading.Range.note`).
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
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from recommender_pipeline.days import (
    DAY_MS,
    HOUR_MS,
    HOURS_PER_DAY,
    day_end_ms,
    day_start_ms,
    iso_utc,
    unmeasurable_reason,
)
from recommender_pipeline.measuring import offsets as boundary
from recommender_pipeline.measuring.attribution import DayTally, LogBounds, Retention, day_retention
from recommender_pipeline.measuring.estimation import Block, Estimate, Stratum, estimate, plan_blocks, worth_sampling
from recommender_pipeline.measuring.hours import NOT_READ, describe_missing, fine_peak, hour_states
from recommender_pipeline.measuring.measurement import Measurement, Method, Status, TopicSpec
from recommender_pipeline.measuring.offsets import Found, Key
from recommender_pipeline.measuring.reading import REACHABLE_CHECK_SECONDS, Range, first_record_at, read_ranges

METHOD = Method.SAMPLING_RECORDS
METADATA_TIMEOUT_SECONDS = 30  # how long a cluster may take to answer for its topics (TLS, WAN)
# Blocks want tens of records, not the megabyte a bulk read prefetches per partition.
SAMPLE_FETCH = {"max.partition.fetch.bytes": 262_144, "fetch.wait.max.ms": 10}
# A record stamped more than this after the measurement cannot be what it says: Kafka 4.x refuses
# CreateTime more than an hour ahead by default (`log.message.timestamp.after.max.ms`), 3.x accepts
# any. Such a record belongs to no day yet and is never a boundary.
PLAUSIBLE_AHEAD_MS = HOUR_MS
# The log after a sampled day (records of the day appended late) gets this share of the budget.
TAIL_BUDGET_SHARE = 8


@dataclass(frozen=True)
class SamplingLimits:
    """The sampling variables, given their meaning here."""

    max_records_per_partition: int | None  # SAMPLING_BATCH_SIZE; None reads every record
    poll_timeout_seconds: float  # SAMPLING_TIMEOUT_SECONDS
    max_empty_polls: int  # SAMPLING_MAX_CONSECUTIVE_NULLS: no progress for their product fails a topic
    skew_ms: int = 900_000  # TIMESTAMP_SKEW_SECONDS: how late a record may be appended after its hour
    seed: int = 0  # with the partition number, fixes the sampled blocks: re-measuring gives the same numbers
    peak_bucket_ms: int = HOUR_MS  # PEAK_BUCKET_SECONDS: the width of the buckets the peak is the busiest of
    retry_seconds: float = 60.0  # KAFKA_RETRY_TIMEOUT_SECONDS: how long retriable Kafka errors are retried

    @property
    def stall_seconds(self) -> float:
        return self.poll_timeout_seconds * self.max_empty_polls

    @property
    def unreachable_after(self) -> float:
        """No answer for this long without progress: the cluster is down, not restarting."""
        return max(REACHABLE_CHECK_SECONDS, self.retry_seconds)


@dataclass
class Plan:
    """Sampled blocks of one stretch of a partition's log, and how to start their tallies."""

    strata: list[Stratum]
    blocks: list[Block]
    late_from: int  # blocks starting at or after this offset come after the next day's first record
    tail: bool = False  # the log after the day, sampled for stragglers
    tallies: list[DayTally] = field(default_factory=list)


@dataclass
class PartitionDay:
    """One partition's offsets around the day and what was found there."""

    key: Key
    read_from: int  # ms: the day's start, or the first hour a previous capture left unsettled
    first: int  # the broker's first offset at `read_from`: no earlier record is in what is read
    stable: int  # the last stable offset: the log's readable end
    log_start: int
    largest: Found | None = None  # the record with the largest timestamp (None: the broker did not say)
    sampled: bool = False  # the log from `first` on is big enough to sample
    stop: int = 0  # the first plausible data record past the day and its skew bound (sampled)
    day_end: int = 0  # the first plausible data record of the next day (sampled)
    stop_hint: int = -1  # the broker's offsets for those times and the hours (lower bounds)
    end_hint: int = -1
    hour_hints: list[int] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    estimate: Estimate = field(default_factory=Estimate.zero)
    offsets: int = 0  # offsets spanned by the read or sample
    read: int = 0  # records actually read
    late: int = 0
    future: int = 0  # records read stamped beyond the plausible horizon
    untimestamped: int = 0  # records read without a timestamp
    first_timestamp: int | None = None  # of the first plausible record at `first`
    stragglers_sampled: int = 0  # offsets after a sampled day that were sampled, not read
    stragglers_found: float = 0.0  # records of the day estimated among them
    bucket_bytes: dict[int, int] | None = None  # read whole: bytes per peak bucket (finer than hours)

    def hint(self, offset: int) -> int:
        """A boundary offset, or the readable end when the broker has no record at that time."""
        return self.stable if offset < 0 else min(max(offset, self.first), self.stable)

    def add(self, span: Range) -> None:
        """Counts what a read range delivered."""
        self.read += span.read
        self.future += span.future
        self.untimestamped += span.untimestamped

    @property
    def untimestamped_log(self) -> bool:
        """The log holds records, none of which has a timestamp (an old message format)."""
        return self.largest is not None and self.stable > self.log_start and self.largest.timestamp < 0


@dataclass(frozen=True)
class _Gaps:
    """The partitions (by number) that could not give all of the day, and why."""

    lost: list[int]  # deletion moved the log start past the day
    partial: list[int]  # deletion took part of the day
    emptied: list[int]  # time retention emptied them of older records: none of the day was there
    blind: list[int]  # only records without timestamps (an old message format): no day to place them in

    @classmethod
    def of(cls, parts: list[PartitionDay], retention: Mapping[int, Retention]) -> _Gaps:
        """The groups from each partition's retention and log format."""
        return cls(
            lost=sorted(p for p, kept in retention.items() if kept is Retention.LOST),
            partial=sorted(p for p, kept in retention.items() if kept is Retention.PARTIAL),
            emptied=sorted(p for p, kept in retention.items() if kept is Retention.EMPTIED),
            blind=sorted(part.key[1] for part in parts if part.untimestamped_log),
        )


@dataclass(frozen=True)
class _Counts:
    """How the partitions were measured, and the records found besides the day's own."""

    day_sampled: list[PartitionDay]  # the day sampled, not read whole
    straggled: list[PartitionDay]  # the log after the day sampled for stragglers
    stragglers: float  # records of the day estimated among those samples
    late: int  # appended after the next day had begun
    future: int  # stamped beyond the plausible horizon
    untimestamped: int

    @classmethod
    def of(cls, parts: list[PartitionDay]) -> _Counts:
        """The partitions' counts summed."""
        straggled = [part for part in parts if part.stragglers_sampled]
        return cls(
            day_sampled=[part for part in parts if any(not plan.tail for plan in part.plans)],
            straggled=straggled,
            stragglers=sum(part.stragglers_found for part in straggled),
            late=sum(part.late for part in parts),
            future=sum(part.future for part in parts),
            untimestamped=sum(part.untimestamped for part in parts),
        )


@dataclass(frozen=True)
class _Sums:
    """The topic-day's records and bytes over the hours this capture read, and each partition's."""

    hour_records: np.ndarray
    hour_bytes: np.ndarray
    read_records: float
    read_bytes: float
    partition_hours: list[np.ndarray]  # each partition's bytes per hour read
    partition_bytes: list[float]

    @classmethod
    def of(cls, total: Estimate, parts: list[PartitionDay], read: np.ndarray) -> _Sums:
        """The sums of `total` and of each partition's estimate over the hours in `read`."""
        hour_records, hour_bytes = total.hour_records * read, total.hour_bytes * read
        partition_hours = [part.estimate.hour_bytes * read for part in parts]
        return cls(
            hour_records,
            hour_bytes,
            float(hour_records.sum()),
            float(hour_bytes.sum()),
            partition_hours,
            [float(hours.sum()) for hours in partition_hours],
        )

    @property
    def records(self) -> int:
        """The row's records: the estimate rounded."""
        return round(self.read_records)

    @property
    def total_bytes(self) -> int:
        """The row's bytes: the estimate rounded."""
        return round(self.read_bytes)

    @property
    def mean_partition(self) -> float:
        """A partition's mean bytes: what skew is measured against."""
        return sum(self.partition_bytes) / len(self.partition_bytes) if self.partition_bytes else 0.0


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
        # A sampled day's strata end at its first record stamped here; what follows is its tail.
        self.stop_ms = self.end_ms + limits.skew_ms

    def measure(self, topics: Iterable[TopicSpec], read_from: Mapping[str, int] | None = None) -> list[Measurement]:
        """Measures the topics' day; `read_from` (topic: ms, an hour boundary) starts a topic's
        read where an earlier capture left off (`hours.read_from_ms`)."""
        started = time.monotonic()
        self.read_from = {**(read_from or {})}
        measured_at = int(self.clock() * 1000)
        self.plausible_until = measured_at + PLAUSIBLE_AHEAD_MS
        rows: dict[str, Measurement] = {}
        specs: dict[str, TopicSpec] = {}
        errors: dict[str, str] = {}
        live = self._topics()
        todo: list[TopicSpec] = []
        for spec in topics:
            row = rows[spec.topic] = Measurement.planned(spec, self.day, measured_at, METHOD)
            specs[spec.topic] = spec
            reason = unmeasurable_reason(self.day, measured_at)
            if spec.topic not in live or live[spec.topic].error is not None:
                errors[spec.topic] = "topic no longer exists on the cluster (deleted after the inventory?)"
            elif reason:
                row.status, row.reason = Status.NOT_MEASURABLE, reason
            else:
                row.partitions = len(live[spec.topic].partitions)
                todo.append(spec)

        parts = self._locate([(s.topic, p) for s in todo for p in range(rows[s.topic].partitions)], errors)
        whole = [part for part in parts.values() if not part.sampled]
        sampled = [part for part in parts.values() if part.sampled]
        with ThreadPoolExecutor(max_workers=1) as pool:
            sampling = pool.submit(self._sample, sampled, errors) if sampled else None
            if whole:
                consumer = self.consumer_factory({})
                try:
                    self._read_whole(
                        consumer, {part.key: (part, part.first, part.stable, False) for part in whole}, errors
                    )
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
                self._fill(row, spec, sorted(by_topic[spec.topic], key=lambda p: p.key[1]), measured_at)
        for topic, reason in errors.items():
            rows[topic].status, rows[topic].reason = Status.ERROR, reason
        elapsed = round(time.monotonic() - started, 3)
        partitions = sum(row.partitions for row in rows.values()) or 1
        for row in rows.values():  # the chunk is read in one pass: each topic's share of its time
            row.duration_seconds = round(elapsed * row.partitions / partitions, 4)
        read = sum(part.read for part in parts.values())
        self.log(f"{self.day}: {len(rows)} topics, {len(parts)} partitions, {read:,} records read in {elapsed}s")
        return list(rows.values())

    def _topics(self) -> dict:
        """The cluster's topics, asked again while a restarting broker cannot answer yet (for up
        to KAFKA_RETRY_TIMEOUT_SECONDS)."""
        deadline = time.monotonic() + self.limits.retry_seconds
        while True:
            try:
                return self.admin.list_topics(timeout=METADATA_TIMEOUT_SECONDS).topics
            except KafkaException as error:
                if not boundary.transient(error.args[0]) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

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
            self.limits.retry_seconds,
        )
        # Which logs hold only records without timestamps: asked apart, since a broker older than
        # Kafka 3.0 does not know the query, and its refusal must not fail the topic.
        largest = boundary.list_offsets(self.admin, {"largest": boundary.largest_timestamp(keys)}, {})["largest"]
        parts = {}
        for key in keys:
            if key[0] in errors:
                continue
            stable, first = answers["stable"][key].offset, answers["first"][key].offset
            first = stable if first < 0 else min(first, stable)
            parts[key] = PartitionDay(
                key,
                self._read_from(key[0]),
                first=first,
                stable=stable,
                log_start=answers["log_start"][key].offset,
                largest=largest.get(key),
            )
        # The offset for the day's end may be a marker's, too early: a partition whose readable
        # log from the day's start is worth sampling goes to the sampler, which confirms the day's
        # end by probing the records and reads it whole after all when the day turns out small.
        cap = self.limits.max_records_per_partition
        sampled = [key for key, part in parts.items() if cap and worth_sampling(part.stable - part.first, cap)]
        if sampled:
            times = {"end": self.end_ms, "stop": self.stop_ms}
            times |= {str(h): self.start_ms + h * HOUR_MS for h in range(1, HOURS_PER_DAY)}
            hints = boundary.list_offsets(
                self.admin,
                {name: boundary.at_time(sampled, at) for name, at in times.items()},
                errors,
                self.limits.retry_seconds,
            )
            for key in sampled:
                part = parts[key]
                part.sampled = True
                part.end_hint = hints["end"].get(key, Found(-1)).offset
                part.stop_hint = hints["stop"].get(key, Found(-1)).offset
                part.hour_hints = [hints[str(h)].get(key, Found(-1)).offset for h in range(1, HOURS_PER_DAY)]
        return parts

    def _read_whole(
        self,
        consumer: Consumer,
        stretches: Mapping[Key, tuple[PartitionDay, int, int, bool]],
        errors: dict[str, str],
    ) -> None:
        """Reads every record of each partition's stretch ({key: (part, start, end, late)}; `late`:
        the stretch comes after the next day's first record), all partitions in one pass, and adds
        what it held to the partition's estimate, exactly."""
        bucket_ms = self.limits.peak_bucket_ms
        ranges = {
            key: Range(
                start,
                end,
                DayTally(self.start_ms, bucket_ms=bucket_ms, next_day_seen=late),
                plausible_until=self.plausible_until,
            )
            for key, (_, start, end, late) in stretches.items()
        }
        errors.update(
            read_ranges(consumer, ranges, self.limits.stall_seconds, self._progress, self.limits.unreachable_after)
        )
        for key, (part, _, _, late) in stretches.items():
            span = ranges[key]
            part.estimate = part.estimate + Estimate.exact(span.tally)
            part.add(span)
            part.offsets += (span.covered_to or span.start) - span.start
            part.late += span.tally.late
            if not late:  # the day's own stretch: its start tells about truncation
                part.first_timestamp = span.tally.first_timestamp
            buckets = part.bucket_bytes if part.bucket_bytes is not None else {}
            for index, size in span.tally.bucket_bytes.items():
                buckets[index] = buckets.get(index, 0) + size
            part.bucket_bytes = buckets

    def _sample(self, parts: list[PartitionDay], errors: dict[str, str]) -> None:
        """Splits each big partition at its day's real end and samples what is worth sampling."""
        cap = self.limits.max_records_per_partition or 0
        consumer = self.consumer_factory(SAMPLE_FETCH)
        try:
            for part in parts:
                part.stop, part.day_end = part.hint(part.stop_hint), part.hint(part.end_hint)
            # The broker's offsets for the day's start, end and end plus the bound are lower
            # bounds: a transaction marker stamped later than its records, or a record stamped in
            # the future, may have answered first. Probing the records confirms each, or a
            # bisection finds it.
            self._confirm(consumer, parts, errors, "stop")
            self._confirm(consumer, parts, errors, "day_end")
            self._confirm(consumer, parts, errors, "first")
            whole: dict[Key, tuple[PartitionDay, int, int, bool]] = {}
            tails: dict[Key, tuple[PartitionDay, int, int, bool]] = {}
            for part in parts:
                day_small = not worth_sampling(part.stop - part.first, cap)
                tail_small = not worth_sampling(part.stable - part.stop, cap)
                if day_small and tail_small:  # small after all: read it all, as an unsampled partition
                    part.sampled = False
                    whole[part.key] = (part, part.first, part.stable, False)
                    continue
                if day_small:
                    whole[part.key] = (part, part.first, part.stop, False)
                else:
                    part.plans.append(self._plan_day(part, cap))
                if part.stop < part.stable:
                    if tail_small:
                        tails[part.key] = (part, part.stop, part.stable, True)
                    else:
                        part.plans.append(self._plan_tail(part, cap))
            self._read_whole(consumer, whole, errors)
            self._read_whole(consumer, tails, errors)
        finally:
            consumer.close()
        self._read_blocks([part for part in parts if part.plans], errors)

    def _confirm(self, consumer: Consumer, parts: list[PartitionDay], errors: dict[str, str], which: str) -> None:
        """Moves each partition's `stop`, `day_end` or `first` to the first plausible data record
        stamped at or after its time; the probe of `first` also tells whether the log's head was
        deleted (the first record's time)."""
        at = {"stop": lambda p: self.stop_ms, "day_end": lambda p: self.end_ms, "first": lambda p: p.read_from}[which]
        upper = {"stop": lambda p: p.stable, "day_end": lambda p: p.stop, "first": lambda p: p.day_end}[which]
        probes = {
            part.key: Range(
                getattr(part, which),
                part.stable,
                DayTally(self.start_ms),
                limit=1,
                plausible_until=self.plausible_until,
            )
            for part in parts
            if getattr(part, which) < part.stable
        }
        errors.update(
            read_ranges(consumer, probes, self.limits.stall_seconds, unreachable_after=self.limits.unreachable_after)
        )
        searches: dict[int, dict[Key, tuple[int, int]]] = {}  # by the time searched for
        for part in parts:
            probe = probes.get(part.key)
            found = probe.tally.first_timestamp if probe else None
            if which == "first":
                part.first_timestamp = found
            if probe is not None and found is None:  # no plausible record from there on
                setattr(part, which, min(upper(part), part.stable))
            elif found is not None and found < at(part):
                searches.setdefault(at(part), {})[part.key] = (probe.covered_to or probe.end, upper(part))
            part.read += probe.read if probe else 0
        for when, group in searches.items():
            found_at = first_record_at(
                consumer,
                group,
                when,
                self.limits.stall_seconds,
                errors,
                plausible_until=self.plausible_until,
                unreachable_after=self.limits.unreachable_after,
            )
            for key, offset in found_at.items():
                part = next(p for p in parts if p.key == key)
                setattr(part, which, offset)
        for part in parts:  # the boundaries stay in order whatever the probes found
            part.day_end = min(max(part.day_end, part.first), part.stop)

    def _plan_day(self, part: PartitionDay, cap: int) -> Plan:
        """The day's strata (its hours as the broker's time index sees them, then the skew tail)
        and the blocks to read in them."""
        end = part.stop
        edges = [part.first, *(min(part.hint(h), end) for h in part.hour_hints), min(part.day_end, end)]
        edges = [max(edges[: i + 1]) for i in range(len(edges))] + [end]
        strata, blocks = plan_blocks(edges, cap, random.Random(self._seed(part.key)))
        part.offsets += end - part.first
        return Plan(strata, blocks, late_from=part.day_end)

    def _plan_tail(self, part: PartitionDay, cap: int) -> Plan:
        """A small sample of the log after the day, for records of the day appended late."""
        strata, blocks = plan_blocks(
            [part.stop, part.stable], max(cap // TAIL_BUDGET_SHARE, 1), random.Random(self._seed(part.key) + 1)
        )
        part.stragglers_sampled += part.stable - part.stop
        return Plan(strata, blocks, late_from=part.stop, tail=True)

    def _read_blocks(self, parts: list[PartitionDay], errors: dict[str, str]) -> None:
        """Reads the planned blocks in rounds, one block of every sampled partition per round,
        and estimates each plan from them."""
        queues: dict[Key, list[tuple[Block, DayTally]]] = {}
        for part in parts:
            for plan in part.plans:
                # A block after the next day's first record: its records of the day are late.
                plan.tallies = [DayTally(self.start_ms, next_day_seen=b.start >= plan.late_from) for b in plan.blocks]
                queues.setdefault(part.key, []).extend(zip(plan.blocks, plan.tallies, strict=True))
        rounds = max((len(queue) for queue in queues.values()), default=0)
        by_key = {part.key: part for part in parts}
        # A round costs a fetch round trip whatever the number of partitions in it; consumers in
        # threads, to overlap rounds, were slower on two cores than this one.
        consumer = self.consumer_factory(SAMPLE_FETCH)
        try:
            for index in range(rounds):
                ranges = {
                    key: Range(
                        queue[index][0].start,
                        queue[index][0].end,
                        queue[index][1],
                        plausible_until=self.plausible_until,
                    )
                    for key, queue in queues.items()
                    if index < len(queue)
                }
                errors.update(
                    read_ranges(
                        consumer, ranges, self.limits.stall_seconds, unreachable_after=self.limits.unreachable_after
                    )
                )
                for key, span in ranges.items():
                    by_key[key].add(span)
        finally:
            consumer.close()
        for part in parts:
            for plan in part.plans:
                found = estimate(plan.strata, plan.blocks, plan.tallies)
                part.estimate = part.estimate + found
                part.late += round(found.late)
                if plan.tail:
                    part.stragglers_found += found.records

    def _read_from(self, topic: str) -> int:
        return self.read_from.get(topic, self.start_ms)

    def _progress(self, line: str) -> None:
        self.log(f"{self.day}: {line}")

    def _seed(self, key: Key) -> int:
        """The same data gives the same sample (reproducible reruns); trials vary `seed`."""
        return zlib.crc32(str(key[1]).encode()) ^ self.limits.seed

    def _retention(self, part: PartitionDay, spec: TopicSpec, measured_at: int) -> Retention:
        bounds = LogBounds(part.log_start, part.first, part.stable, part.first_timestamp)
        return day_retention(bounds, part.read_from, self.end_ms, spec.retention_horizon(measured_at))

    def _fill(self, row: Measurement, spec: TopicSpec, parts: list[PartitionDay], measured_at: int) -> None:
        """The topic-day's numbers from its partitions."""
        total = sum((part.estimate for part in parts), Estimate.zero())
        retention = {part.key[1]: self._retention(part, spec, measured_at) for part in parts}
        gaps, counts = _Gaps.of(parts, retention), _Counts.of(parts)
        retained_from = self._retained_from(parts, retention)
        states = hour_states(
            self.start_ms, self._read_from(row.topic), retained_from, measured_at, settle_ms=self.limits.skew_ms
        )
        # The row holds the hours this capture read; the store adds those read before (`hours.merge`).
        read = np.array([state != NOT_READ for state in states])
        sums = _Sums.of(total, parts, read)
        reasons = [
            *_gap_reasons(gaps, spec),
            *_unplaced_reasons(counts),
            *_empty_reasons(parts, sums.records, gaps),
            *_sampling_reasons(parts, counts, self.limits.max_records_per_partition),
            *_window_reasons(states, measured_at, self.end_ms),
        ]
        _set_outcome(row, reasons, gaps, counts, sums.records, len(parts))
        _set_counts(row, parts, counts, sums, self._window_seconds(measured_at))
        self._set_intervals(row, total, sums, read)
        _set_hours(row, total, sums, states, read)
        self._fine_peak(row, parts, read)

    def _window_seconds(self, measured_at: int) -> float:
        """The seconds of the day measured: all of a closed day, up to the measurement of an open one."""
        return (DAY_MS if measured_at >= self.end_ms else max(measured_at - self.start_ms, 1)) / 1000

    def _set_intervals(self, row: Measurement, total: Estimate, sums: _Sums, read: np.ndarray) -> None:
        """The busiest hour and the 95 % intervals of the bytes and the peak, over the hours read."""
        day = total.intervals(read)
        # The busiest hour, its bias from sampling noise shrunk away (`estimation.busiest`); a
        # partition read whole adds no variance: an exact day's intervals are its values.
        row.peak_ingress_bytes_per_sec = day.peak
        row.peak_bucket_start = iso_utc(self.start_ms + day.peak_hour * HOUR_MS) if sums.total_bytes else None
        row.bytes_ci_low, row.bytes_ci_high = day.bytes_low, day.bytes_high
        row.peak_ci_low, row.peak_ci_high = day.peak_low, day.peak_high

    def _fine_peak(self, row: Measurement, parts: list[PartitionDay], read: np.ndarray) -> None:
        """The peak over PEAK_BUCKET_SECONDS buckets finer than an hour, from the records' own
        timestamps. Only a day whose partitions were all read whole has them: a sampled one keeps
        the hourly peak, and says so."""
        bucket_ms = self.limits.peak_bucket_ms
        if bucket_ms >= HOUR_MS or not row.records:
            return
        if any(part.bucket_bytes is None or part.plans for part in parts):
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

    def _retained_from(self, parts: list[PartitionDay], retention: Mapping[int, Retention]) -> int:
        """The time from which every partition still held all its records: where the log's
        deletions end (a partition whose head was deleted keeps records from its first one on)."""
        retained = self.start_ms
        for part in parts:
            if retention[part.key[1]] in (Retention.PARTIAL, Retention.LOST):
                first = part.first_timestamp if part.first_timestamp is not None else self.end_ms
                retained = max(retained, first)
        return retained


def _gap_reasons(gaps: _Gaps, spec: TopicSpec) -> list[str]:
    """What deletion and old message formats kept from the day, for the row's reason."""
    reasons = []
    if gaps.lost:
        reasons.append(f"partitions {gaps.lost} lost the day to deletion (log start moved past it)")
    if gaps.partial:
        reasons.append(f"partitions {gaps.partial} lost part of the day to deletion")
    if gaps.emptied:
        reasons.append(
            f"partitions {gaps.emptied} hold no records: time retention (retention.ms={spec.retention_ms}) emptied "
            "them of records older than the day, so they carried none of it"
        )
    if gaps.blind:
        reasons.append(
            f"partitions {gaps.blind} hold only records without timestamps (an old message format): "
            "record sampling cannot place them in a day"
        )
    return reasons


def _unplaced_reasons(counts: _Counts) -> list[str]:
    """The records read that no day can hold, for the row's reason."""
    reasons = []
    if counts.untimestamped:
        reasons.append(f"{counts.untimestamped} records without a timestamp were read and could not be placed in a day")
    if counts.future:
        noun = "record" if counts.future == 1 else "records"
        reasons.append(
            f"{counts.future} {noun} stamped in the future (over {PLAUSIBLE_AHEAD_MS // 60_000} minutes after "
            f"the measurement) read and counted in no day"
        )
    return reasons


def _empty_reasons(parts: list[PartitionDay], records: int, gaps: _Gaps) -> list[str]:
    """How many partitions carried none of the day, unless deletion or blindness explains it."""
    empty = sum(1 for part in parts if part.estimate.records == 0)
    if empty and records:
        return [f"{empty} of {len(parts)} partitions had no records this day"]
    if not records and not gaps.lost and not gaps.blind:
        return [f"{len(parts)} of {len(parts)} partitions had no records this day"]
    return []


def _sampling_reasons(parts: list[PartitionDay], counts: _Counts, cap: int | None) -> list[str]:
    """What was estimated rather than read, and the records appended late, for the row's reason."""
    reasons = []
    if counts.day_sampled:
        reasons.append(
            f"estimated: {len(counts.day_sampled)} of {len(parts)} partitions were sampled "
            f"(SAMPLING_BATCH_SIZE={cap} records each, far fewer than they held)"
        )
    if counts.straggled:
        reasons.append(
            f"the {sum(p.stragglers_sampled for p in counts.straggled):,} offsets after the day's end were sampled "
            f"for records of the day appended late: {round(counts.stragglers):,} estimated"
        )
    if counts.late:
        reasons.append(f"{counts.late} records were appended after the next day had begun")
    return reasons


def _window_reasons(states: str, measured_at: int, end_ms: int) -> list[str]:
    """The hours never captured whole of a closed day, or how far an open day was measured."""
    reasons = []
    if measured_at >= end_ms and describe_missing(states):
        reasons.append(describe_missing(states))
    if measured_at < end_ms:
        reasons.append("day still open: measured up to " + iso_utc(measured_at))
    return reasons


def _status(records: int, gaps: _Gaps, partitions: int) -> Status:
    """Measured when the day had records; not measurable when deletion or timestamp-less logs hid it."""
    if records:
        return Status.MEASURED
    if gaps.lost or (gaps.blind and len(gaps.blind) + len(gaps.emptied) == partitions):
        return Status.NOT_MEASURABLE
    return Status.EMPTY


def _set_outcome(
    row: Measurement, reasons: list[str], gaps: _Gaps, counts: _Counts, records: int, partitions: int
) -> None:
    """The row's status, reason, and whether its numbers are exact, estimated or partial."""
    status = _status(records, gaps, partitions)
    row.status = status
    row.reason = "; ".join(reasons)
    row.estimated = bool(counts.day_sampled) or bool(counts.stragglers)
    row.exact = not row.estimated and not gaps.lost and not gaps.partial and not gaps.blind and not counts.untimestamped
    row.partial = bool(gaps.lost or gaps.partial or gaps.blind) and status is not Status.NOT_MEASURABLE


def _set_counts(
    row: Measurement, parts: list[PartitionDay], counts: _Counts, sums: _Sums, window_seconds: float
) -> None:
    """The row's records, bytes and offsets, and the averages over the measured window."""
    row.records = sums.records
    row.bytes = sums.total_bytes
    row.offsets_in_window = sum(part.offsets for part in parts)
    row.sampled_records = sum(part.read for part in parts)
    row.retained_records = sum(max(part.stable - part.log_start, 0) for part in parts)
    row.late_records = counts.late
    row.future_records = counts.future
    row.untimestamped_records = counts.untimestamped
    row.mean_record_bytes = sums.read_bytes / sums.read_records if sums.read_records else 0.0
    row.avg_ingress_bytes_per_sec = sums.read_bytes / window_seconds


def _set_hours(row: Measurement, total: Estimate, sums: _Sums, states: str, read: np.ndarray) -> None:
    """The row's per-hour and per-partition JSON: what a day merged from several captures is rebuilt from."""
    if row.estimated:
        for name, values in (
            ("hour_bytes_variance", total.hour_variances),
            ("hour_bytes_dof_terms", total.hour_dof_terms),
            ("hour_offsets", total.hour_offsets),
            ("hour_offset_bytes", total.hour_offset_bytes),
        ):
            setattr(row, name, json.dumps([float(value) for value in (values * read).tolist()]))
    row.partition_bytes = "[" + ",".join(str(round(b)) for b in sums.partition_bytes) + "]"
    row.partition_hour_bytes = json.dumps([[round(v) for v in hours.tolist()] for hours in sums.partition_hours])
    row.skew = max(sums.partition_bytes) / sums.mean_partition if sums.mean_partition else 0.0
    row.hours_captured = states
    row.hour_records = json.dumps([round(value) for value in sums.hour_records.tolist()])
    row.hour_bytes = json.dumps([round(value) for value in sums.hour_bytes.tolist()])
