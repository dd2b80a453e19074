"""How fast and how accurately record sampling measures a day, against the physical limit measured in the same run.

The limit is a plain confluent-kafka consumer (isolation.level=read_committed, the measurer's own consumer
config) assigned to the same partitions at the same start offsets, stopping by offset: it lists the day's
offsets (first at the day's start, first at its end, else the last stable offset), reads every record of
those ranges and tallies what a record of the day (by its timestamp) carries: records, bytes (key + value +
header keys + header values, absent parts 0) and bytes per UTC hour. That read is the truth every figure is
checked against, and its time is the limit every speed figure is divided by.

    scripts/kafka-local start
    .venv/bin/python -m benchmarks.measuring --profile smoke|many-small|large|end-to-end|all \\
        [--bootstrap 127.0.0.1:19092] [--json out.json] [--strict] [--keep-topics]

Profiles (all data is stamped on yesterday, UTC, so the day is closed; topics carry a unique run prefix and
are deleted at the end unless --keep-topics):

- many-small: --topics (2,000) topics x 3 partitions x 10 records. "raw read" is the plain consumer over
  all 6,000 partitions (offset lookups included); "DayMeasurer.measure" is one call for all topics (one chunk);
  records, bytes and per-topic equality with the truth follow.
- large: a --partitions (2) topic of --records (1,000,000) records per partition, plus a compacted topic of
  --compacted-records (200,000). Timestamps follow a diurnal curve, values are 50..600 random bytes, keys
  8+ bytes, one record in five has a header, and 5 % of runs of 10..50 records are aborted. Figures per topic:
  exact read records/s vs raw records/s (target >= 0.80); capped read (10,000 records per partition) seconds
  vs raw seconds (<= 0.10); capped bytes and peak vs truth (error <= 1 %); over --trials (40) seeds, the share
  of 95 % intervals holding the truth (>= 95 %) and mean / max absolute errors; capped vs exact seconds (<= 1).
- end-to-end: the many-small topics (reused when many-small ran in the same invocation) through
  `recommender-pipeline --day <yesterday>` in a subprocess with a fresh DAGSTER_HOME, store and reports dir,
  TOPIC_FILTER=<their prefix>, SAMPLING_DAYS=1; the fixed Dagster cost is the same command for one topic.
  Target: command seconds <= 3 x (raw read seconds + one-topic seconds). The stored rows are checked against
  the truth too.
- smoke: 50 small topics and one 100,000-record topic with aborted runs, 5 trials; for CI (< 60 s on 2 cores).
  It exits non-zero only when an exact measurement differs from the truth or something crashes.
- all: many-small, end-to-end, large.

Speed and raw read times are the best of --repeats (2; smoke 1) alternating raw and exact reads, so neither
side gains from the other warming the page cache. Exit code: 1 when an exact measurement differs from the
truth, the measurer fails, or (with --strict, never for smoke) a target is missed; 0 otherwise.

Why transactions stay open until the day is written: a transaction marker carries the broker's clock, so a
marker written today for records stamped yesterday would answer the broker's time lookups for yesterday's
hours and end (see `measuring/offsets.py`). All markers therefore follow the day's last record; aborted
records still lie throughout the day, and the capped read can still sample.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import confluent_kafka
import numpy as np
from confluent_kafka import Consumer, IsolationLevel, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from recommender_pipeline.days import HOUR_MS, HOURS_PER_DAY, day_end_ms, day_start_ms, utc_today
from recommender_pipeline.measuring.measurement import Measurement, TopicSpec
from recommender_pipeline.measuring.records import DayMeasurer, SamplingLimits

PROFILES = ("smoke", "many-small", "large", "end-to-end")
CAP = 10_000  # SAMPLING_BATCH_SIZE's default: the capped read
# consume() costs grow with the batch asked for: on this broker 64..500 read fastest, 10,000 ~40 % slower.
CONSUME_BATCH = 256
IDLE_WAIT_SECONDS = 0.01  # block this long only when nothing is queued
STALL_SECONDS = 60.0
TOPICS_PER_REQUEST = 200
SMALL_PARTITIONS = 3
SMALL_RECORDS_PER_PARTITION = 10
ABORTED_SHARE = 0.05
RUN_LENGTHS = (10, 50)  # records per transaction run
VALUE_SIZES = (50, 600)
HEADER = [("trace", b"0123456789abcdef")]
OVERWRITE_SHARE = 0.30  # compacted topic: records whose key a later record repeats
# Busier afternoons: hour weights of a cosine peaking at 14:00 UTC, from 0.2 to 1.8.
HOUR_WEIGHTS = np.array([1 + 0.8 * math.cos(2 * math.pi * (h - 14) / HOURS_PER_DAY) for h in range(HOURS_PER_DAY)])
COMPACTED_CONFIG = {
    "cleanup.policy": "compact",
    # Segments roll by record time: 100 ms of it makes nearly every batch of a day-wide topic its own
    # segment (hundreds per partition); an hour gives 24, all but the last cleanable.
    "segment.ms": str(HOUR_MS),
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
}
COMPACTION_WAIT_SECONDS = 120.0


# ------------------------------------------------------------------------------------------------ clients


@dataclass
class Cluster:
    """The broker under test, and the consumer config both the measurer and the raw reader get."""

    bootstrap: str
    admin: AdminClient = field(init=False)

    def __post_init__(self) -> None:
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})

    def consumer_config(self, overrides: dict | None = None) -> dict:
        # The same base config for both readers, so the comparison is of code, not of tuning.
        return {
            "bootstrap.servers": self.bootstrap,
            "group.id": uuid.uuid4().hex,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            **(overrides or {}),
        }

    def consumer(self, overrides: dict) -> Consumer:
        return Consumer(self.consumer_config(overrides))


# ------------------------------------------------------------------------------------------------ truth


@dataclass
class Truth:
    """What the day holds for one topic, by record timestamp."""

    records: int = 0
    bytes: int = 0
    hour_bytes: list[int] = field(default_factory=lambda: [0] * HOURS_PER_DAY)

    @property
    def peak_bytes_per_sec(self) -> float:
        return max(self.hour_bytes) / (HOUR_MS / 1000)

    def add(self, other: Truth) -> None:
        self.records += other.records
        self.bytes += other.bytes
        self.hour_bytes = [a + b for a, b in zip(self.hour_bytes, other.hour_bytes, strict=True)]


@dataclass
class RawRead:
    """One plain-consumer read of the day: its time and the truth it found."""

    seconds: float
    offsets_seconds: float  # of which the day's offset lookups
    offsets: int  # offsets in the day's ranges
    delivered: int  # records the consumer delivered inside the ranges, of the day or not
    truth: dict[str, Truth]

    @property
    def records(self) -> int:
        return sum(t.records for t in self.truth.values())

    @property
    def total(self) -> Truth:
        total = Truth()
        for truth in self.truth.values():
            total.add(truth)
        return total


def day_ranges(admin: AdminClient, topics: dict[str, int], day: date) -> dict[tuple[str, int], tuple[int, int]]:
    """[first offset at the day's start, first offset at its end) per partition; -1 answers are the LSO.

    All three lookups are sent before any is awaited, as the measurer does, so the limit is not
    handicapped by round trips the measurer avoids.
    """
    tps = [TopicPartition(topic, p) for topic, count in topics.items() for p in range(count)]
    specs = {
        "start": {tp: OffsetSpec.for_timestamp(day_start_ms(day)) for tp in tps},
        "end": {tp: OffsetSpec.for_timestamp(day_end_ms(day)) for tp in tps},
        "stable": {tp: OffsetSpec.latest() for tp in tps},
    }
    futures = {
        name: admin.list_offsets(spec, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=60)
        for name, spec in specs.items()
    }
    answers = {
        name: {(tp.topic, tp.partition): f.result().offset for tp, f in found.items()}
        for name, found in futures.items()
    }
    ranges = {}
    for key, stable in answers["stable"].items():
        start, end = answers["start"][key], answers["end"][key]
        start = stable if start < 0 else start
        end = stable if end < 0 else end
        ranges[key] = (start, max(start, end))
    return ranges


def raw_read(cluster: Cluster, topics: dict[str, int], day: date) -> RawRead:
    """The physical limit: list the day's offsets, read every record in them, tally the day's.

    One consumer is assigned every partition at its start offset; a partition is done when a record
    at or past its end arrives, its last offset is read, or (when nothing is queued) its position
    has passed its end over markers, aborted records or compaction gaps.
    """
    start_ms, end_ms = day_start_ms(day), day_end_ms(day)
    started = time.perf_counter()
    ranges = day_ranges(cluster.admin, topics, day)
    offsets_seconds = time.perf_counter() - started
    truth = {topic: Truth() for topic in topics}
    ends = {topic: {} for topic in topics}
    for (topic, partition), (_, end) in ranges.items():
        ends[topic][partition] = end
    pending = {key for key, (start, end) in ranges.items() if end > start}
    consumer = cluster.consumer({})
    delivered = 0

    def finish(topic: str, partition: int) -> None:
        pending.discard((topic, partition))
        consumer.pause([TopicPartition(topic, partition)])

    try:
        consumer.assign([TopicPartition(t, p, ranges[(t, p)][0]) for t, p in sorted(pending)])
        last_progress = time.monotonic()
        while pending:
            messages = consumer.consume(CONSUME_BATCH, timeout=0) or consumer.consume(1, timeout=IDLE_WAIT_SECONDS)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"raw consumer: {error.str()}")
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                end = ends[topic][partition]
                if offset >= end:
                    if (topic, partition) in pending:
                        finish(topic, partition)
                    continue
                delivered += 1
                timestamp = message.timestamp()[1]
                if start_ms <= timestamp < end_ms:
                    size = len(message.key() or b"") + len(message.value() or b"")
                    headers = message.headers()
                    if headers:
                        for name, value in headers:
                            size += len(name.encode()) + len(value or b"")
                    tally = truth[topic]
                    tally.records += 1
                    tally.bytes += size
                    tally.hour_bytes[(timestamp - start_ms) // HOUR_MS] += size
                if offset == end - 1:
                    finish(topic, partition)
            if messages:
                last_progress = time.monotonic()
                continue
            for tp in consumer.position([TopicPartition(t, p) for t, p in pending]):
                if tp.offset >= ends[tp.topic][tp.partition]:
                    finish(tp.topic, tp.partition)
            if pending and time.monotonic() - last_progress > STALL_SECONDS:
                raise RuntimeError(f"raw consumer: no progress for {STALL_SECONDS:.0f}s on {sorted(pending)[:5]}")
    finally:
        consumer.close()
    seconds = time.perf_counter() - started
    offsets = sum(end - start for start, end in ranges.values())
    return RawRead(seconds, offsets_seconds, offsets, delivered, truth)


# ------------------------------------------------------------------------------------------------ producing


def create_topics(admin: AdminClient, names: list[str], partitions: int, config: dict | None = None) -> None:
    """Creates topics ~200 per request: one request for thousands would outlast its timeout."""
    for index in range(0, len(names), TOPICS_PER_REQUEST):
        batch = [NewTopic(n, partitions, 1, config=config or {}) for n in names[index : index + TOPICS_PER_REQUEST]]
        for future in admin.create_topics(batch, operation_timeout=120, request_timeout=180).values():
            future.result()
    wait = 60 + 0.05 * len(names)  # thousands of new partitions take the broker a while
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:  # the broker's metadata may trail the controller's
        live = admin.list_topics(timeout=30).topics
        if all(n in live and len(live[n].partitions) == partitions for n in names):
            return
        time.sleep(0.2)
    raise RuntimeError(f"created topics did not all appear in the metadata within {wait:.0f} s")


def delete_topics(admin: AdminClient, names: list[str]) -> None:
    for index in range(0, len(names), TOPICS_PER_REQUEST):
        for future in admin.delete_topics(names[index : index + TOPICS_PER_REQUEST], operation_timeout=120).values():
            try:
                future.result()
            except Exception as error:  # cleanup must not hide the benchmark's result
                print(f"  could not delete a topic: {error}", file=sys.stderr)


def send(producer: Producer, topic: str, partition: int, timestamp: int, key: Any, value: Any, headers: Any) -> None:
    """Queues one record, waiting while the local queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, partition=partition, timestamp=timestamp)
            return
        except BufferError:
            producer.poll(0.05)


def diurnal_timestamps(rng: np.random.Generator, count: int, day: date) -> list[int]:
    """`count` sorted timestamps over the day, hours drawn by HOUR_WEIGHTS, uniform within an hour.

    Sorted per partition, as real traffic is, so the broker's time index is exact.
    """
    hours = rng.choice(HOURS_PER_DAY, size=count, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    offsets = np.sort(hours.astype(np.int64) * HOUR_MS + rng.integers(0, HOUR_MS, size=count))
    return (offsets + day_start_ms(day)).tolist()


def produce_small_topics(cluster: Cluster, names: list[str], day: date, seed: int) -> int:
    """10 records per partition of each topic, spread over the day, through one producer."""
    rng = np.random.default_rng(seed)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
    payload = random.Random(seed).randbytes(VALUE_SIZES[1])
    count = 0
    start = day_start_ms(day)
    for name in names:
        for partition in range(SMALL_PARTITIONS):
            stamps = np.sort(rng.integers(0, HOUR_MS * HOURS_PER_DAY, size=SMALL_RECORDS_PER_PARTITION)) + start
            sizes = rng.integers(20, 201, size=SMALL_RECORDS_PER_PARTITION)
            for stamp, size in zip(stamps.tolist(), sizes.tolist(), strict=True):
                send(producer, name, partition, stamp, b"k%06d" % count, payload[:size], None)
                count += 1
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the small topics' records were not all delivered")
    return count


@dataclass
class Produced:
    """What a large topic was given, by the producer's own account."""

    records: int = 0  # committed records
    bytes: int = 0
    aborted: int = 0
    aborted_runs: int = 0
    runs: int = 0
    hour_bytes: list[int] = field(default_factory=lambda: [0] * HOURS_PER_DAY)
    seconds: float = 0.0
    distinct_keys: int = 0  # compacted topic: committed records a full compaction keeps


def transactional_producer(cluster: Cluster, transactional_id: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "none",
            "queue.buffering.max.messages": 500_000,
            "transaction.timeout.ms": 900_000,  # the broker's maximum: the whole day stays in two transactions
        }
    )
    producer.init_transactions(60)
    producer.begin_transaction()
    return producer


def produce_day(
    cluster: Cluster,
    topic: str,
    partitions: int,
    per_partition: int,
    day: date,
    seed: int,
    compacted: bool,
    progress: Callable[[str], None],
) -> Produced:
    """Produces one partition after the other, in timestamp order, as runs of 10..50 records.

    Committed runs go through one transactional producer, aborted runs (ABORTED_SHARE of them) through
    another; the first producer is flushed before the other takes over, which keeps each partition's
    log in timestamp order. Both transactions end only after the whole day is written, so their markers
    (stamped with today's clock) follow the day's last record instead of cutting the day short.
    On the compacted topic 70 % of committed records get a new key and 30 % repeat an earlier one.
    """
    rng = np.random.default_rng(seed)
    draw = random.Random(seed)
    payload = draw.randbytes(VALUE_SIZES[1])
    run_id = topic.replace(".", "-")
    committer = transactional_producer(cluster, f"{run_id}-commit")
    aborter = transactional_producer(cluster, f"{run_id}-abort")
    produced = Produced()
    started = time.perf_counter()
    start_ms = day_start_ms(day)
    total = partitions * per_partition
    reported = 0
    for partition in range(partitions):
        stamps = diurnal_timestamps(rng, per_partition, day)
        sizes = rng.integers(VALUE_SIZES[0], VALUE_SIZES[1] + 1, size=per_partition).tolist()
        with_header = (rng.random(per_partition) < 0.2).tolist()
        null_value = (rng.random(per_partition) < (0 if compacted else 0.005)).tolist()
        keys: list[bytes] = []  # committed keys of this partition, for the compacted topic's overwrites
        current: Producer | None = None
        index = 0
        while index < per_partition:
            stop = min(index + draw.randint(*RUN_LENGTHS), per_partition)
            aborted = draw.random() < ABORTED_SHARE
            producer = aborter if aborted else committer
            if current is not None and producer is not current:
                current.flush(120)
            current = producer
            produced.runs += 1
            produced.aborted_runs += aborted
            for i in range(index, stop):
                if compacted and not aborted and keys and draw.random() < OVERWRITE_SHARE:
                    key = keys[draw.randrange(len(keys))]
                else:
                    key = b"p%d-k%08d" % (partition, i)
                    if compacted and not aborted:
                        keys.append(key)
                value = None if null_value[i] else payload[: sizes[i]]
                headers = HEADER if with_header[i] else None
                send(producer, topic, partition, stamps[i], key, value, headers)
                if aborted:
                    produced.aborted += 1
                    continue
                size = len(key) + (0 if value is None else len(value))
                if headers:
                    size += sum(len(k.encode()) + len(v) for k, v in headers)
                produced.records += 1
                produced.bytes += size
                produced.hour_bytes[(stamps[i] - start_ms) // HOUR_MS] += size
            index = stop
            done = partition * per_partition + index
            if done - reported >= total // 10:
                reported = done
                elapsed = time.perf_counter() - started
                progress(f"  {topic}: {done:,}/{total:,} records queued in {elapsed:.1f}s")
        produced.distinct_keys += len(set(keys))
    for producer in (committer, aborter):
        if producer.flush(300):
            raise RuntimeError(f"records to {topic} were not all delivered")
    aborter.abort_transaction(60)
    committer.commit_transaction(60)
    wait_for_markers(cluster.admin, topic, partitions)
    produced.seconds = time.perf_counter() - started
    return produced


def wait_for_markers(admin: AdminClient, topic: str, partitions: int, timeout: float = 60.0) -> None:
    """Waits until every partition's last stable offset is its high watermark.

    `commit_transaction` returns once the coordinator has decided; it writes the markers to the
    partitions afterwards. A read before that sees a partition end at its open transaction's first
    offset, and would take a truth of nothing for it.
    """
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {}
        for isolation in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED):
            futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}, isolation_level=isolation)
            found[isolation] = [futures[tp].result().offset for tp in tps]
        if found[IsolationLevel.READ_COMMITTED] == found[IsolationLevel.READ_UNCOMMITTED]:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{topic}: transaction markers not written within {timeout:.0f}s")


def wait_for_compaction(cluster: Cluster, topic: str, partitions: int, day: date, committed: int) -> tuple[float, int]:
    """Waits until the cleaner has removed records and the count is stable: (seconds waited, count)."""
    started = time.monotonic()
    previous = -1
    while time.monotonic() - started < COMPACTION_WAIT_SECONDS:
        count = raw_read(cluster, {topic: partitions}, day).records
        if count < committed and count == previous:
            return time.monotonic() - started, count
        previous = count
        time.sleep(2)
    raise RuntimeError(f"the log cleaner did not compact {topic} within {COMPACTION_WAIT_SECONDS:.0f}s")


# ------------------------------------------------------------------------------------------------ measuring


@dataclass
class Timed:
    rows: list[Measurement]
    seconds: float


def measure(cluster: Cluster, day: date, specs: list[TopicSpec], cap: int | None, seed: int, verbose: bool) -> Timed:
    """One DayMeasurer.measure call for all `specs`, timed from outside (its offset lookups included)."""
    limits = SamplingLimits(max_records_per_partition=cap, poll_timeout_seconds=2.0, max_empty_polls=50, seed=seed)
    measurer = DayMeasurer(cluster.admin, cluster.consumer, day, limits, log=print if verbose else lambda _: None)
    started = time.perf_counter()
    rows = measurer.measure(specs)
    return Timed(rows, time.perf_counter() - started)


def mismatches(rows: Iterable[Measurement], truth: dict[str, Truth]) -> list[dict]:
    """Exact rows whose records, bytes or peak differ from the truth (or that are not exact or failed)."""
    found = []
    for row in rows:
        expected = truth[row.topic]
        same = (
            row.exact
            and row.records == expected.records
            and row.bytes == expected.bytes
            and math.isclose(row.peak_ingress_bytes_per_sec, expected.peak_bytes_per_sec, rel_tol=1e-9, abs_tol=1e-9)
        )
        if not same:
            found.append(
                {
                    "topic": row.topic,
                    "status": str(row.status),
                    "reason": row.reason,
                    "exact": row.exact,
                    "records": row.records,
                    "true_records": expected.records,
                    "bytes": row.bytes,
                    "true_bytes": expected.bytes,
                    "peak": row.peak_ingress_bytes_per_sec,
                    "true_peak": expected.peak_bytes_per_sec,
                }
            )
    return found


# ------------------------------------------------------------------------------------------------ figures


@dataclass
class Figure:
    """One line of the table: the measurer's figure beside the raw consumer's, their ratio and the target."""

    name: str
    unit: str  # s, rec/s, B, B/s, n, share
    measurer: float | str | None
    raw: float | str | None
    ratio: float | None = None
    ratio_style: str = "x"  # x: measurer / raw; err: signed relative error; %: a share
    target: str = ""
    met: bool | None = None


def fmt(value: float | str | None, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return {
        "s": f"{value:,.2f} s",
        "rec/s": f"{value:,.0f}/s",
        "B": f"{value:,.0f} B",
        "B/s": f"{value:,.1f} B/s",
        "n": f"{value:,.0f}",
        "share": f"{value * 100:.1f} %",
    }.get(unit, f"{value}")


def fmt_ratio(figure: Figure) -> str:
    if figure.ratio is None:
        return "-"
    if figure.ratio_style == "err":
        return f"{(figure.ratio - 1) * 100:+.3f} %"
    if figure.ratio_style == "%":
        return f"{figure.ratio * 100:.1f} %"
    return f"{figure.ratio:.3f}x"


def print_table(title: str, figures: list[Figure]) -> None:
    print()
    print(title)
    header = f"{'figure':<46}{'measurer':>20}{'raw consumer':>20}{'ratio':>12}  {'target':<14}{'met':<4}"
    print(header)
    print("-" * len(header))
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "NO")
        print(
            f"{f.name:<46}{fmt(f.measurer, f.unit):>20}{fmt(f.raw, f.unit):>20}"
            f"{fmt_ratio(f):>12}  {f.target:<14}{met:<4}"
        )


def ratio(a: float, b: float) -> float | None:
    """a / b, or None when b is 0 (an empty truth has no ratio, and must not crash the table)."""
    return a / b if b else None


def error_figure(name: str, unit: str, estimate: float, truth: float, limit: float = 0.01) -> Figure:
    r = ratio(estimate, truth)
    return Figure(name, unit, estimate, truth, r, "err", f"|err| <= {limit:.0%}", r is not None and abs(r - 1) <= limit)


def all_figure(name: str, matching: int, total: int) -> Figure:
    """How many of `total` topics matched the truth; all of them must."""
    return Figure(name, "n", matching, total, ratio(matching, total), "x", "all", matching == total)


def equality_figure(name: str, unit: str, value: float, truth: float) -> Figure:
    return Figure(name, unit, value, truth, ratio(value, truth), "x", "= raw", value == truth)


# ------------------------------------------------------------------------------------------------ profiles


@dataclass
class Run:
    """State shared by the profiles of one invocation."""

    args: argparse.Namespace
    cluster: Cluster
    day: date
    prefix: str
    created: list[str] = field(default_factory=list)
    small_topics: list[str] = field(default_factory=list)
    small_raw: RawRead | None = None
    failures: list[str] = field(default_factory=list)  # correctness: exact counts differ, or a crash
    results: dict[str, Any] = field(default_factory=dict)

    def log(self, line: str) -> None:
        print(line, flush=True)


def small_topic_name(prefix: str, index: int, width: int = 4) -> str:
    # Fixed width, so "<prefix>.small.0000" names exactly one topic as a TOPIC_FILTER substring.
    return f"{prefix}.small.{index:0{width}d}"


def ensure_small_topics(run: Run, count: int) -> None:
    """Creates and fills the small topics once per invocation (end-to-end reuses many-small's)."""
    if run.small_topics:
        return
    names = [small_topic_name(run.prefix, i) for i in range(count)]
    started = time.perf_counter()
    create_topics(run.cluster.admin, names, SMALL_PARTITIONS)
    run.created += names
    created = time.perf_counter() - started
    produced = produce_small_topics(run.cluster, names, run.day, run.args.seed)
    run.small_topics = names
    run.log(
        f"created {count:,} topics x {SMALL_PARTITIONS} partitions in {created:.1f}s, produced {produced:,} records "
        f"in {time.perf_counter() - started - created:.1f}s"
    )
    run.results.setdefault("setup", {})["small_topics"] = {
        "topics": count,
        "records": produced,
        "create_seconds": created,
        "produce_seconds": time.perf_counter() - started - created,
    }


def alternate_reads(
    run: Run, counts: dict[str, int], specs: list[TopicSpec], repeats: int
) -> tuple[list[RawRead], list[Timed]]:
    """Raw and exact reads of the same ranges, alternating, so neither gains from the other
    warming the page cache; the caller takes the best of each."""
    raws: list[RawRead] = []
    exacts: list[Timed] = []
    for _ in range(repeats):
        raws.append(raw_read(run.cluster, counts, run.day))
        exacts.append(measure(run.cluster, run.day, specs, None, 0, run.args.verbose))
    return raws, exacts


def profile_many_small(run: Run, topics: int, repeats: int) -> dict:
    """Thousands of near-empty topics: the cost is per partition and per request, not per record."""
    ensure_small_topics(run, topics)
    counts = {name: SMALL_PARTITIONS for name in run.small_topics}
    specs = [TopicSpec("local", name, SMALL_PARTITIONS, None, False) for name in run.small_topics]
    raws, timings = alternate_reads(run, counts, specs, repeats)
    raw = min(raws, key=lambda r: r.seconds)
    timed = min(timings, key=lambda t: t.seconds)
    run.small_raw = raw
    if any(r.truth != raw.truth for r in raws):
        run.failures.append(f"many-small: the raw reads disagree ({[r.records for r in raws]} records): no truth")
    truth = raw.truth
    wrong = [m for t in timings for m in mismatches(t.rows, truth)]
    if wrong:
        run.failures.append(f"many-small: {len(wrong)} exact measurements differ from the truth, e.g. {wrong[0]}")
    expected = topics * SMALL_PARTITIONS * SMALL_RECORDS_PER_PARTITION
    total = raw.total
    records = sum(row.records for row in timed.rows)
    measured_bytes = sum(row.bytes for row in timed.rows)
    matching = topics - len(mismatches(timed.rows, truth))
    partitions = topics * SMALL_PARTITIONS
    figures = [
        Figure(
            f"read the day of {partitions:,} partitions",
            "s",
            timed.seconds,
            raw.seconds,
            ratio(timed.seconds, raw.seconds),
            target="report",
        ),
        Figure("  of which offset lookups (raw)", "s", None, raw.offsets_seconds),
        Figure(
            "records read per second",
            "rec/s",
            records / timed.seconds,
            raw.records / raw.seconds,
            ratio(raw.seconds, timed.seconds),
            target="report",
        ),
        equality_figure("records", "n", records, total.records),
        equality_figure("bytes", "B", measured_bytes, total.bytes),
        all_figure("topics whose exact row equals the truth", matching, topics),
        Figure(
            "raw consumer read == produced",
            "n",
            raw.records,
            expected,
            ratio(raw.records, expected),
            "x",
            "= produced",
            raw.records == expected,
        ),
    ]
    print_table(
        f"many-small: {topics:,} topics x {SMALL_PARTITIONS} partitions x {SMALL_RECORDS_PER_PARTITION}"
        f" records on {run.day} (best of {repeats})",
        figures,
    )
    return {
        "figures": [asdict(f) for f in figures],
        "raw_seconds": [r.seconds for r in raws],
        "measure_seconds": [t.seconds for t in timings],
        "mismatches": wrong[:50],
    }


def large_topic(
    run: Run,
    name: str,
    partitions: int,
    per_partition: int,
    compacted: bool,
    trials: int,
    repeats: int,
) -> dict:
    """Produces one large topic and runs every speed and accuracy figure on it."""
    topic = f"{run.prefix}.{name}"
    create_topics(run.cluster.admin, [topic], partitions, COMPACTED_CONFIG if compacted else None)
    run.created.append(topic)
    run.log(f"producing {partitions * per_partition:,} records into {topic}")
    produced = produce_day(
        run.cluster, topic, partitions, per_partition, run.day, run.args.seed + len(run.created), compacted, run.log
    )
    run.log(
        f"  produced {produced.records:,} committed and {produced.aborted:,} aborted records "
        f"({produced.aborted_runs:,} of {produced.runs:,} runs aborted) in {produced.seconds:.1f}s "
        f"({(produced.records + produced.aborted) / produced.seconds:,.0f} records/s)"
    )
    setup: dict[str, Any] = {"produced": asdict(produced)}
    if compacted:
        waited, left = wait_for_compaction(run.cluster, topic, partitions, run.day, produced.records)
        run.log(f"  the cleaner left {left:,} of {produced.records:,} committed records after {waited:.1f}s")
        setup.update(compaction_wait_seconds=waited, records_after_compaction=left)

    counts = {topic: partitions}
    spec = [TopicSpec("local", topic, partitions, None, compacted)]
    raws, exacts = alternate_reads(run, counts, spec, repeats)
    raw = min(raws, key=lambda r: r.seconds)
    truth = raw.truth[topic]
    if any(r.truth != raw.truth for r in raws):
        run.failures.append(f"{name}: the raw reads disagree ({[r.records for r in raws]} records): no truth")
    exact = min(exacts, key=lambda t: t.seconds)
    wrong = [m for t in exacts for m in mismatches(t.rows, raw.truth)]
    if wrong:
        run.failures.append(f"{name}: exact measurement differs from the truth: {wrong[0]}")

    trial_rows: list[dict] = []
    for seed in range(trials):
        try:
            timed = measure(run.cluster, run.day, spec, CAP, seed, run.args.verbose)
        except Exception:
            run.failures.append(f"{name}: capped measurement (seed {seed}) crashed: {traceback.format_exc()}")
            break
        row = timed.rows[0]
        trial_rows.append(
            {
                "seed": seed,
                "seconds": timed.seconds,
                "status": str(row.status),
                "exact": row.exact,
                "sampled_records": row.sampled_records,
                "records": row.records,
                "bytes": row.bytes,
                "bytes_ci": [row.bytes_ci_low, row.bytes_ci_high],
                "peak": row.peak_ingress_bytes_per_sec,
                "peak_ci": [row.peak_ci_low, row.peak_ci_high],
                "bytes_error": ratio(row.bytes, truth.bytes) - 1 if truth.bytes else None,
                "peak_error": ratio(row.peak_ingress_bytes_per_sec, truth.peak_bytes_per_sec) - 1
                if truth.peak_bytes_per_sec
                else None,
                "bytes_covered": _inside(truth.bytes, row.bytes_ci_low, row.bytes_ci_high),
                "peak_covered": _inside(truth.peak_bytes_per_sec, row.peak_ci_low, row.peak_ci_high),
            }
        )
    # A later raw read shows whether the truth moved (the cleaner) while the measurer ran.
    after = raw_read(run.cluster, counts, run.day)
    stable = after.truth[topic] == truth
    if not stable:
        run.log(f"  WARNING: {topic}'s truth changed during the run ({truth.records:,} -> {after.records:,} records)")

    exact_row = exact.rows[0]
    figures = [
        Figure(
            "exact read: records per second",
            "rec/s",
            truth.records / exact.seconds,
            truth.records / raw.seconds,
            ratio(raw.seconds, exact.seconds),
            target=">= 0.80x",
            met=raw.seconds / exact.seconds >= 0.80,
        ),
        Figure("exact read: seconds", "s", exact.seconds, raw.seconds, ratio(exact.seconds, raw.seconds)),
        equality_figure("exact read: records", "n", exact_row.records, truth.records),
        equality_figure("exact read: bytes", "B", exact_row.bytes, truth.bytes),
        equality_figure("exact read: peak hour", "B/s", exact_row.peak_ingress_bytes_per_sec, truth.peak_bytes_per_sec),
    ]
    if not compacted:
        figures.append(
            Figure(
                "raw consumer read == produced (committed)",
                "n",
                raw.records,
                produced.records,
                ratio(raw.records, produced.records),
                "x",
                "= produced",
                raw.records == produced.records and raw.total.bytes == produced.bytes,
            )
        )
    if trial_rows:
        first = trial_rows[0]
        capped_seconds = statistics.median(t["seconds"] for t in trial_rows)
        bytes_in = sum(t["bytes_covered"] for t in trial_rows)
        peak_in = sum(t["peak_covered"] for t in trial_rows)
        bytes_errors = [abs(t["bytes_error"]) for t in trial_rows if t["bytes_error"] is not None]
        peak_errors = [abs(t["peak_error"]) for t in trial_rows if t["peak_error"] is not None]
        n = len(trial_rows)
        # A partition-day too small to be worth sampling is read whole: the speed targets of the
        # capped read then compare two exact reads, and do not apply.
        sampled = any(not t["exact"] for t in trial_rows)
        whole = "n/a: read whole"
        figures += [
            Figure(
                f"capped read {CAP:,}/partition: seconds (median)",
                "s",
                capped_seconds,
                raw.seconds,
                ratio(capped_seconds, raw.seconds),
                target="<= 0.10x" if sampled else whole,
                met=capped_seconds <= 0.10 * raw.seconds if sampled else None,
            ),
            Figure(
                "capped read: records read (seed 0)",
                "n",
                first["sampled_records"],
                truth.records,
                ratio(first["sampled_records"], truth.records),
            ),
            error_figure("capped bytes (seed 0)", "B", first["bytes"], truth.bytes),
            error_figure("capped peak hour (seed 0)", "B/s", first["peak"], truth.peak_bytes_per_sec),
            Figure(
                f"bytes 95 % CI holds the truth ({n} seeds)",
                "n",
                f"{bytes_in}/{n}",
                None,
                bytes_in / n,
                "%",
                ">= 95 %",
                bytes_in / n >= 0.95,
            ),
            Figure(
                f"peak 95 % CI holds the truth ({n} seeds)",
                "n",
                f"{peak_in}/{n}",
                None,
                peak_in / n,
                "%",
                ">= 95 %",
                peak_in / n >= 0.95,
            ),
            Figure(
                "bytes |error| mean / max",
                "n",
                f"{statistics.mean(bytes_errors):.3%} / {max(bytes_errors):.3%}",
                None,
                target="report",
            ),
            Figure(
                "peak |error| mean / max",
                "n",
                f"{statistics.mean(peak_errors):.3%} / {max(peak_errors):.3%}",
                None,
                target="report",
            ),
            Figure(
                "capped vs exact read: seconds",
                "s",
                capped_seconds,
                exact.seconds,
                ratio(capped_seconds, exact.seconds),
                target="<= 1.00x" if sampled else whole,
                met=capped_seconds <= exact.seconds if sampled else None,
            ),
        ]
        not_sampled = [t["seed"] for t in trial_rows if t["exact"]]
        if not_sampled:
            run.log(f"  note: {len(not_sampled)} capped runs of {topic} were exact (read whole), not sampled")
    figures.append(Figure("truth unchanged over the run", "n", "yes" if stable else "NO", None, met=stable))
    what = "compacted " if compacted else ""
    print_table(
        f"large: {what}{topic}, {partitions} partitions, {truth.records:,} records of the day "
        f"({raw.offsets:,} offsets), best of {repeats}",
        figures,
    )
    return {
        "topic": topic,
        "setup": setup,
        "truth": asdict(truth) | {"peak_bytes_per_sec": truth.peak_bytes_per_sec},
        "figures": [asdict(f) for f in figures],
        "raw_seconds": [r.seconds for r in raws],
        "exact_seconds": [t.seconds for t in exacts],
        "exact_row": exact_row.as_row(),
        "trials": trial_rows,
        "mismatches": wrong,
    }


def _inside(value: float, low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and low <= value <= high


def profile_large(run: Run) -> dict:
    """Big partitions, where the cost is per record and sampling must pay off; plus compaction gaps."""
    args = run.args
    return {
        "large": large_topic(run, "large", args.partitions, args.records, False, args.trials, args.repeats),
        "compacted": large_topic(
            run,
            "compacted",
            args.partitions,
            args.compacted_records // args.partitions,
            True,
            args.trials,
            args.repeats,
        ),
    }


def run_command(run: Run, topic_filter: str, workdir: Path) -> dict:
    """`recommender-pipeline --day <yesterday>` in its own process, instance, store and reports dir."""
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "dagster_home"  # created by the command, as a new user's is
    store = workdir / "measurements.duckdb"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "KAFKA_CREDENTIALS": json.dumps([{"kafka_cluster_id": "local", "bootstrap.servers": run.cluster.bootstrap}]),
        "TOPIC_FILTER": topic_filter,
        "SAMPLING_DAYS": "1",
        "REPORTS_DIR": str(workdir / "reports"),
        "MEASUREMENT_STORE_PATH": str(store),
        "MEASUREMENT_STORE_URL": "",
        # Only the local broker: whatever the caller's shell says about clouds and secrets.
        "USE_SAMPLE_RECORDS": "true",
        "USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS": "false",
        "USE_AWS_SECRETS_MANAGER": "false",
        "KAFKA_CLUSTER_FILTER": "",
    }
    command = [str(Path(sys.executable).with_name("recommender-pipeline")), "--day", run.day.isoformat()]
    started = time.perf_counter()
    # cwd: a directory without a .env, so no developer's .env can point the command elsewhere.
    done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    stored = read_store(store, run.day)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
    return {
        "filter": topic_filter,
        "seconds": seconds,
        "exit_code": done.returncode,
        "runs": dagster_runs(home) if done.returncode in (0, 1) else [],
        "stored": stored,
        "stdout_tail": done.stdout[-2000:],
        "stderr_tail": done.stderr[-2000:],
    }


def dagster_runs(home: Path) -> list[dict]:
    """Each run's wall time and its steps' (first start to last end, count): where the command's time went."""
    import dagster as dg  # only end-to-end needs it, and it is slow to import

    runs = []
    os.environ["DAGSTER_HOME"] = str(home)  # the command's event log storage is found through it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for record in reversed(instance.get_runs()):
            stats = instance.get_run_stats(record.run_id)
            steps: dict[str, list[float]] = {}
            for step in instance.get_run_step_stats(record.run_id):
                name = step.step_key.split("[")[0]
                span = steps.setdefault(name, [step.start_time or 0.0, step.end_time or 0.0, 0])
                span[0] = min(span[0], step.start_time or span[0])
                span[1] = max(span[1], step.end_time or span[1])
                span[2] += 1
            runs.append(
                {
                    "job": record.job_name,
                    "status": str(record.status),
                    "seconds": (stats.end_time or 0.0) - (stats.start_time or 0.0),
                    "steps": {
                        name: {"seconds": end - start, "count": count} for name, (start, end, count) in steps.items()
                    },
                }
            )
    return runs


def describe_runs(runs: list[dict]) -> str:
    """One line: each run's seconds and its steps' spans (x N when a step ran once per chunk)."""
    parts = []
    for run in runs:
        steps = []
        for name, step in run["steps"].items():
            times = f" x{step['count']}" if step["count"] > 1 else ""
            steps.append(f"{name}{times} {step['seconds']:.1f}s")
        parts.append(f"{run['job']} {run['seconds']:.1f}s ({', '.join(steps)})")
    return "; ".join(parts)


def read_store(path: Path, day: date) -> dict[str, dict]:
    """The command's stored rows for the day, by topic (empty when the store was never written)."""
    if not path.exists():
        return {}
    import duckdb  # only end-to-end needs it

    with duckdb.connect(str(path), read_only=True) as connection:
        frame = connection.execute(
            "SELECT topic, status, exact, records, bytes, peak_ingress_bytes_per_sec FROM measurements WHERE date = ?",
            [day],
        ).df()
    return {row["topic"]: row for row in frame.to_dict("records")}


def profile_end_to_end(run: Run, topics: int) -> dict:
    """What a user waits for: the one command, against reading the same offsets plus Dagster's fixed cost."""
    ensure_small_topics(run, topics)
    counts = {name: SMALL_PARTITIONS for name in run.small_topics}
    raw = run.small_raw or raw_read(run.cluster, counts, run.day)
    run.small_raw = raw
    with tempfile.TemporaryDirectory(prefix="measuring-benchmark-") as scratch:
        one = run_command(run, small_topic_name(run.prefix, 0), Path(scratch) / "one")
        run.log(f"one-topic command: {one['seconds']:.1f}s, exit {one['exit_code']}")
        full = run_command(run, f"{run.prefix}.small.", Path(scratch) / "all")
        run.log(f"{topics:,}-topic command: {full['seconds']:.1f}s, exit {full['exit_code']}")
    matching = sum(
        1
        for topic, truth in raw.truth.items()
        if topic in full["stored"]
        and full["stored"][topic]["records"] == truth.records
        and full["stored"][topic]["bytes"] == truth.bytes
    )
    if full["exit_code"] != 0 or one["exit_code"] != 0:
        run.failures.append(f"end-to-end: the command exited {full['exit_code']} (one topic: {one['exit_code']})")
    if matching != topics:
        run.failures.append(f"end-to-end: {topics - matching} stored measurements differ from the truth")
    limit = raw.seconds + one["seconds"]
    figures = [
        Figure(
            f"one command, {topics:,} topics",
            "s",
            full["seconds"],
            limit,
            ratio(full["seconds"], limit),
            target="<= 3.00x",
            met=full["seconds"] <= 3 * limit,
        ),
        Figure("  limit: raw read of the same ranges", "s", None, raw.seconds),
        Figure("  limit: one-topic command (fixed Dagster cost)", "s", None, one["seconds"]),
        all_figure("stored rows equal to the truth", matching, topics),
        Figure(
            "exit codes (all topics / one topic)",
            "n",
            f"{full['exit_code']} / {one['exit_code']}",
            None,
            target="0 / 0",
            met=full["exit_code"] == 0 and one["exit_code"] == 0,
        ),
    ]
    print_table(f"end-to-end: recommender-pipeline --day {run.day}, SAMPLING_DAYS=1, {topics:,} topics", figures)
    for label, result in (("one topic", one), (f"{topics:,} topics", full)):
        print(f"  Dagster runs, {label}: {describe_runs(result['runs'])}")
    for result in (one, full):
        result["stored"] = {t: r for t, r in list(result["stored"].items())[:5]}  # a sample: the JSON stays small
    return {"figures": [asdict(f) for f in figures], "one_topic": one, "all_topics": full, "raw_seconds": raw.seconds}


def profile_smoke(run: Run) -> dict:
    """Everything in small: counts must be exact; speed is printed, never judged."""
    small = profile_many_small(run, 50, 1)
    large = large_topic(run, "large", 2, 50_000, False, 5, 1)
    return {"many_small": small, "large": large}


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", required=True, choices=(*PROFILES, "all"))
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--json", type=Path, help="write every figure, trial and timing here")
    parser.add_argument("--topics", type=int, default=2000, help="many-small / end-to-end topics (at most 9,999)")
    parser.add_argument("--partitions", type=int, default=2, help="large: partitions")
    parser.add_argument("--records", type=int, default=1_000_000, help="large: records per partition")
    parser.add_argument("--compacted-records", type=int, default=200_000, help="large: compacted topic's records")
    parser.add_argument("--trials", type=int, default=40, help="large: capped runs with different seeds")
    parser.add_argument("--repeats", type=int, default=2, help="raw and exact reads, the best counts")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print the measurer's log lines")
    args = parser.parse_args(argv)
    if not 1 <= args.topics <= 9999:
        parser.error("--topics must be 1..9999")

    sys.stdout.reconfigure(line_buffering=True)  # progress shows when the output goes to a file (CI)
    run = Run(args, Cluster(args.bootstrap), utc_today() - timedelta(days=1), f"bm{uuid.uuid4().hex[:8]}")
    profiles = ["many-small", "end-to-end", "large"] if args.profile == "all" else [args.profile]
    print(f"measuring benchmark: {', '.join(profiles)} on {args.bootstrap}, day {run.day}, prefix {run.prefix}")
    run.results.update(
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        day=run.day.isoformat(),
        prefix=run.prefix,
        arguments={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0],
        },
        profiles={},
    )
    started = time.perf_counter()
    try:
        for name in profiles:
            began = time.perf_counter()
            try:
                if name == "smoke":
                    result = profile_smoke(run)
                elif name == "many-small":
                    result = profile_many_small(run, args.topics, args.repeats)
                elif name == "large":
                    result = profile_large(run)
                else:
                    result = profile_end_to_end(run, args.topics)
            except Exception:
                run.failures.append(f"{name} crashed:\n{traceback.format_exc()}")
                result = {"crashed": traceback.format_exc()}
            result["seconds"] = time.perf_counter() - began
            run.results["profiles"][name] = result
            print(f"\n{name}: {result['seconds']:.1f}s")
    finally:
        if run.created and not args.keep_topics:
            delete_topics(run.cluster.admin, run.created)
    missed = [
        f"{name}: {figure['name'].strip()}"
        for name, result in run.results["profiles"].items()
        for figure in _all_figures(result)
        if figure["met"] is False
    ]
    run.results.update(seconds=time.perf_counter() - started, failures=run.failures, missed_targets=missed)
    if args.json:
        args.json.write_text(json.dumps(run.results, indent=2, default=_json_default))
    print(f"\ntotal {run.results['seconds']:.1f}s")
    for failure in run.failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    for miss in missed:
        print(f"target missed: {miss}")
    if run.failures:
        return 1
    return 1 if args.strict and missed and args.profile != "smoke" else 0


def _all_figures(result: dict) -> Iterable[dict]:
    """Figures of a profile's result, however deep the profile nests its parts."""
    for key, value in result.items():
        if key == "figures":
            yield from value
        elif isinstance(value, dict):
            yield from _all_figures(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
