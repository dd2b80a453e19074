"""One known-truth dataset on the real broker, produced once per test session.

Every number a test asserts is computed here from the records as produced, never read back
from the pipeline.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from recommender_pipeline.days import DAY_MS, day_end_ms, day_start_ms
from recommender_pipeline_testing.workloads import Record, at, create_topic, produce, send_records

RETENTION_TWO_DAYS_MS = 2 * 86_400_000


def records_in_hour(day: date, hour: int, count: int, make, partitions: int = 1) -> list[Record]:
    """`count` records evenly spread over one hour; `make(i)` gives (key, value, headers)."""
    start, step = at(day, hour), 3_600_000 // count
    out = []
    for i in range(count):
        key, value, headers = make(i)
        out.append(Record(start + i * step, value, key, headers, i % partitions))
    return out


@dataclass
class DayTruth:
    records: int = 0
    bytes: int = 0
    hour_bytes: dict[int, int] = field(default_factory=dict)
    partition_bytes: dict[int, int] = field(default_factory=dict)
    # What the Metrics API's received_bytes counts (the records' v2 wire size), at its finest buckets.
    wire_bytes: int = 0
    five_minute_wire_bytes: dict[int, int] = field(default_factory=dict)
    partition_wire_bytes: dict[int, int] = field(default_factory=dict)
    timeline: list[tuple[int, int, int]] = field(default_factory=list)  # (ms into the day, size, wire size)

    def add(self, records: list[Record], day: date) -> None:
        for record in records:
            hour = (record.timestamp_ms - day_start_ms(day)) // 3_600_000
            bucket = (record.timestamp_ms - day_start_ms(day)) // 300_000
            self.records += 1
            self.bytes += record.size
            self.hour_bytes[hour] = self.hour_bytes.get(hour, 0) + record.size
            self.partition_bytes[record.partition] = self.partition_bytes.get(record.partition, 0) + record.size
            wire = record.wire_size
            self.timeline.append((record.timestamp_ms - day_start_ms(day), record.size, wire))
            self.wire_bytes += wire
            self.five_minute_wire_bytes[bucket] = self.five_minute_wire_bytes.get(bucket, 0) + wire
            self.partition_wire_bytes[record.partition] = self.partition_wire_bytes.get(record.partition, 0) + wire

    @property
    def peak_bytes_per_sec(self) -> float:
        return max(self.hour_bytes.values(), default=0) / 3600

    def peak(self, bucket_seconds: int, wire: bool = False) -> tuple[float, int]:
        """The busiest bucket of `bucket_seconds`: its bytes per second (key + value + headers, or
        the wire size the Metrics API counts) and its start, in ms into the day."""
        buckets: dict[int, int] = {}
        for elapsed, size, wire_size in self.timeline:
            index = elapsed // (bucket_seconds * 1000)
            buckets[index] = buckets.get(index, 0) + (wire_size if wire else size)
        busiest = max(sorted(buckets), key=buckets.get)
        return buckets[busiest] / bucket_seconds, busiest * bucket_seconds * 1000


@dataclass
class Dataset:
    prefix: str
    today: date
    truth: dict[tuple[str, date], DayTruth] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    @property
    def days(self) -> list[date]:
        return [self.today - timedelta(days=2), self.today - timedelta(days=1), self.today]

    def day(self, name: str, day: date) -> DayTruth:
        return self.truth.get((self.topic(name), day), DayTruth())

    def add(self, bootstrap: str, name: str, day: date, records: list[Record]) -> None:
        produce(bootstrap, self.topic(name), records)
        self.truth.setdefault((self.topic(name), day), DayTruth()).add(records, day)


def build_dataset(bootstrap: str) -> Dataset:
    today = datetime.now(UTC).date()
    data = Dataset(f"k{uuid.uuid4().hex[:8]}", today)
    d2, d1, d0 = data.days
    topics = {
        "multi": (3, {}),
        "tx": (1, {}),
        "empty": (2, {}),
        "short": (1, {"retention.ms": str(RETENTION_TWO_DAYS_MS)}),
        "nulls": (1, {}),
        "wide": (24, {}),
        "eight": (8, {}),
        "compact": (
            1,
            {
                "cleanup.policy": "compact",
                "segment.ms": "100",
                "min.cleanable.dirty.ratio": "0.01",
                "min.compaction.lag.ms": "0",
                "delete.retention.ms": "100",
            },
        ),
    }
    for name, (partitions, config) in topics.items():
        create_topic(bootstrap, data.topic(name), partitions, config)
        data.partitions[data.topic(name)] = partitions
    for name in (f"__{data.prefix}_internal", f"_{data.prefix}_app"):
        create_topic(bootstrap, name, 1)
        produce(bootstrap, name, records_in_hour(d1, 6, 5, lambda i: (None, b"x" * 10, [])))

    # multi: two shapes on D-2 (the second all on partition 0, a hot partition), one on D-1, a few today.
    data.add(
        bootstrap,
        "multi",
        d2,
        records_in_hour(d2, 3, 300, lambda i: (b"k%04d" % i, b"v" * 100, [("h", b"xy")]), partitions=3)
        + records_in_hour(d2, 15, 900, lambda i: (None, b"w" * 60, [])),
    )
    data.add(bootstrap, "multi", d1, records_in_hour(d1, 7, 600, lambda i: (None, b"u" * 200, []), partitions=3))
    now = int(time.time() * 1000)
    midway = day_start_ms(d0) + (now - day_start_ms(d0)) // 2
    data.add(bootstrap, "multi", d0, [Record(midway + i, b"t" * 80, partition=i % 3) for i in range(120)])

    # tx: committed 100, aborted 50, committed 30, 40-byte values, today: transaction markers
    # carry the broker's clock, so a test transaction must happen now to stay within its day.
    _transactions(bootstrap, data, d0)

    data.add(bootstrap, "short", d1, records_in_hour(d1, 1, 50, lambda i: (None, b"s" * 10, [])))
    shapes = [
        (None, None, [("a", None)]),
        (b"kk", None, []),
        (None, b"vvv", [("hh", None), ("h2", b"zz")]),
    ]
    data.add(bootstrap, "nulls", d1, records_in_hour(d1, 2, 30, lambda i: shapes[i % 3]))
    data.add(bootstrap, "wide", d1, records_in_hour(d1, 6, 48, lambda i: (None, b"x" * 10, []), partitions=24))
    data.add(bootstrap, "eight", d1, records_in_hour(d1, 6, 8, lambda i: (None, b"x" * 10, []), partitions=8))
    _compacted(bootstrap, data, d1)
    return data


def _transactions(bootstrap: str, data: Dataset, day: date) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{data.prefix}-tx"})
    producer.init_transactions()
    start = max(int(time.time() * 1000) - 5000, day_start_ms(day))
    committed: list[Record] = []
    for batch, (count, commit) in enumerate([(100, True), (50, False), (30, True)]):
        producer.begin_transaction()
        records = [Record(start + batch * 1000 + i, b"c" * 40) for i in range(count)]
        for record in records:
            producer.produce(data.topic("tx"), value=record.value, partition=0, timestamp=record.timestamp_ms)
        if commit:
            producer.commit_transaction()
            committed += records
        else:
            producer.flush()
            producer.abort_transaction()
    data.truth.setdefault((data.topic("tx"), day), DayTruth()).add(committed, day)


def _compacted(bootstrap: str, data: Dataset, day: date) -> None:
    """200 records, every other one overwriting the same key, then one more after the segment
    rolls; waits until the cleaner has left gaps in the offsets."""
    topic = data.topic("compact")
    keys = lambda i: (b"hot" if i % 2 == 0 else b"u%03d" % i, b"c" * 20, [])  # noqa: E731
    produce(bootstrap, topic, records_in_hour(day, 4, 200, keys))
    time.sleep(0.5)
    produce(bootstrap, topic, [Record(at(day, 5), b"c" * 20, b"key0")])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if count_received(bootstrap, topic, day)[0] < 150:
            return
        time.sleep(1)
    raise AssertionError(f"the log cleaner did not compact {topic} within 60 s")


def count_received(bootstrap: str, topic: str, day: date) -> tuple[int, int]:
    """Records and bytes a plain read_committed consumer receives in the day: the independent truth."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, 0)
    start = admin.list_offsets({tp: OffsetSpec.for_timestamp(day_start_ms(day))})[tp].result().offset
    end = admin.list_offsets({tp: OffsetSpec.for_timestamp(day_end_ms(day))})[tp].result().offset
    latest = admin.list_offsets({tp: OffsetSpec.latest()})[tp].result().offset
    start = latest if start < 0 else start
    end = latest if end < 0 else end
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "isolation.level": "read_committed"}
    )
    consumer.assign([TopicPartition(topic, 0, start)])
    received = size = 0
    deadline = time.monotonic() + 30
    while consumer.position([tp])[0].offset < end and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=0.2):
            if message.error() is None and message.offset() < end:
                received += 1
                size += len(message.key() or b"") + len(message.value() or b"")
    consumer.close()
    return received, size


# --- Attribution: production-shaped logs, the truth computed from them by the measuring rules ---
#
# Each topic's log is kept as produced, partition by partition in append order, with whether each
# record was committed and how many were deleted from the head. `LogDataset.expect` applies the
# rules a day's measurement follows to that log, independently of the measurer:
#   - a committed data record belongs to the UTC day and hour of its timestamp (CreateTime, or the
#     broker's append time on LogAppendTime topics); aborted records and markers never count;
#   - every committed record stamped in the day that the log still holds counts, wherever it was
#     appended (TIMESTAMP_SKEW_SECONDS only says when an hour is settled, see test_hourly_capture);
#   - counted records after the first data record timestamped at or after the day's end are late;
#   - a partition whose head was deleted has lost the day when its first retained record is at or
#     after the day's end, and holds it partially when that record is within the day.


@dataclass(frozen=True)
class Entry:
    """One data record as appended to a partition."""

    record: Record
    committed: bool = True


@dataclass
class Expected:
    """What a measurement of one topic-day must say, computed from the logs."""

    records: int = 0
    bytes: int = 0
    late: int = 0
    hour_bytes: list[int] = field(default_factory=lambda: [0] * 24)
    partition_bytes: list[int] = field(default_factory=list)
    lost: bool = False  # some partition lost the whole day to deletion
    cut: bool = False  # some partition lost part of the day to deletion

    @property
    def status(self) -> str:
        if self.records:
            return "measured"
        return "not_measurable" if self.lost else "empty"

    @property
    def exact(self) -> bool:
        """Read in full, nothing deleted (a sampled measurement is never exact either)."""
        return not (self.lost or self.cut)

    @property
    def partial(self) -> bool:
        """Counted, but some of the day was deleted first (a not_measurable day is not partial)."""
        return not self.exact and self.status == "measured"

    @property
    def peak_bytes_per_sec(self) -> float:
        return max(self.hour_bytes) / 3600

    @property
    def peak_hour(self) -> int | None:
        """The busiest hour when exactly one hour is the busiest."""
        top = max(self.hour_bytes)
        hours = [h for h, b in enumerate(self.hour_bytes) if b == top]
        return hours[0] if top and len(hours) == 1 else None


def expect_partition(entries: list[Entry], deleted: int, day: date, into: Expected) -> None:
    """Adds what the rules count of one partition's log on `day` to `into`."""
    start, end = day_start_ms(day), day_end_ms(day)
    data = [entry.record for entry in entries[deleted:] if entry.committed]
    if deleted:
        first = data[0].timestamp_ms if data else None
        if first is None or first >= end:
            into.lost = True
        elif first >= start:
            into.cut = True
    late_from = next((i for i, r in enumerate(data) if r.timestamp_ms >= end), len(data))
    size = 0
    for i, record in enumerate(data):
        if start <= record.timestamp_ms < end:
            into.records += 1
            into.late += i > late_from
            into.hour_bytes[(record.timestamp_ms - start) // 3_600_000] += record.size
            size += record.size
    into.bytes += size
    into.partition_bytes.append(size)


@dataclass
class LogDataset:
    prefix: str
    today: date
    logs: dict[str, list[list[Entry]]] = field(default_factory=dict)  # topic: partitions: entries in order
    deleted: dict[str, list[int]] = field(default_factory=dict)  # topic: records deleted from each head
    append_windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # LogAppendTime topics

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    @property
    def names(self) -> list[str]:
        return [topic.removeprefix(f"{self.prefix}.") for topic in self.logs]

    @property
    def days(self) -> list[date]:
        """D-3 .. today."""
        return [self.today - timedelta(days=back) for back in (3, 2, 1, 0)]

    def create(self, bootstrap: str, name: str, partitions: int, config: dict | None = None) -> None:
        create_topic(bootstrap, self.topic(name), partitions, config)
        self.logs[self.topic(name)] = [[] for _ in range(partitions)]
        self.deleted[self.topic(name)] = [0] * partitions

    def appended(self, name: str, records: list[Record], committed: bool = True) -> None:
        for record in records:
            self.logs[self.topic(name)][record.partition].append(Entry(record, committed))

    def expect(self, name: str, day: date) -> Expected:
        topic = self.topic(name)
        expected = Expected()
        for entries, deleted in zip(self.logs[topic], self.deleted[topic], strict=True):
            expect_partition(entries, deleted, day, expected)
        return expected


def build_attribution_dataset(bootstrap: str) -> LogDataset:
    if time.time() % 86_400 > 86_400 - 60:  # let the dataset's days not change while it is built
        time.sleep(86_400 - time.time() % 86_400 + 1)
    data = LogDataset(f"a{uuid.uuid4().hex[:8]}", datetime.now(UTC).date())
    _eos(bootstrap, data)
    _midnight(bootstrap, data)
    _truncated(bootstrap, data)
    _varsize(bootstrap, data)
    _bulk(bootstrap, data)
    _tombstones(bootstrap, data)
    _logappend(bootstrap, data)  # last: it may wait out an hour boundary
    return data


def produce_transactions(bootstrap: str, topic: str, transactions: list[tuple[list[Record], bool]]) -> None:
    """Each (records, commit) in its own transaction, committed or aborted after its records are in the log."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-{uuid.uuid4().hex[:6]}", "linger.ms": 5}
    )
    producer.init_transactions(30)
    for records, commit in transactions:
        producer.begin_transaction()
        send_records(producer, topic, records)
        if commit:
            producer.commit_transaction(30)
        else:
            if producer.flush(30):
                raise RuntimeError(f"aborted records to {topic} were not delivered")
            producer.abort_transaction(30)


def _eos(bootstrap: str, data: LogDataset) -> None:
    """An exactly-once pipeline forwarding events days late: 40 transactions of 20 records stamped
    over D-3..D-1, produced now (their markers carry today's clock), every 4th aborted."""
    rng = random.Random(11)
    d3 = data.days[0]
    data.create(bootstrap, "eos", 2)
    step = 3 * DAY_MS // 800
    records = [
        Record(
            day_start_ms(d3) + i * step + rng.randrange(step),
            b"e" * rng.randint(20, 200),
            b"order-%05d" % i,
            [("src", b"pos")] if i % 3 == 0 else [],
            i % 2,
        )
        for i in range(800)
    ]
    transactions = [(records[i : i + 20], (i // 20) % 4 != 3) for i in range(0, 800, 20)]
    produce_transactions(bootstrap, data.topic("eos"), transactions)
    for batch, commit in transactions:
        data.appended("eos", batch, commit)


def _midnight(bootstrap: str, data: LogDataset) -> None:
    """Out of order across midnight D-2 / D-1, in append order:
    120 records on D-2 08:00-20:00 (100 B each, 1,000 B an hour);
    100 records at D-1 00:00:00-00:04:57 (50 B);
    50 late records stamped D-2 23:58:00-23:59:58 (80 B: 4,000 B, D-2's busiest hour);
    40 records at D-1 00:10:00-00:29:30 (50 B);
    1 record stamped D-2 12:00 (500 B), appended after D-1 00:15: late, and still D-2's;
    230 records over D-1 01:00-24:00 (50 B)."""
    _, d2, d1, _ = data.days
    data.create(bootstrap, "midnight", 1)
    records = [r for hour in range(8, 20) for r in records_in_hour(d2, hour, 10, lambda i: (None, b"a" * 100, []))]
    records += [Record(at(d1, 0) + i * 3000, b"b" * 50) for i in range(100)]
    records += [Record(at(d2, 23, 58) + i * 2400, b"c" * 80) for i in range(50)]
    records += [Record(at(d1, 0, 10) + i * 30_000, b"d" * 50) for i in range(40)]
    records += [Record(at(d2, 12), b"e" * 500)]
    records += [r for hour in range(1, 24) for r in records_in_hour(d1, hour, 10, lambda i: (None, b"f" * 50, []))]
    produce(bootstrap, data.topic("midnight"), records)
    data.appended("midnight", records)


def _truncated(bootstrap: str, data: LogDataset) -> None:
    """100 records on D-2 (00:00-10:00), 100 spread over D-1 (one every 14.4 minutes), then
    DeleteRecords before the 41st D-1 record: 60 of D-1's records remain."""
    _, d2, d1, _ = data.days
    data.create(bootstrap, "truncated", 1)
    records = [r for hour in range(10) for r in records_in_hour(d2, hour, 10, lambda i: (None, b"t" * 40, []))]
    records += [Record(day_start_ms(d1) + i * (DAY_MS // 100), b"t" * 40) for i in range(100)]
    produce(bootstrap, data.topic("truncated"), records)
    data.appended("truncated", records)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([TopicPartition(data.topic("truncated"), 0, 140)], operation_timeout=30)
    for future in futures.values():
        if future.result().low_watermark != 140:
            raise RuntimeError("DeleteRecords did not move the log start offset to 140")
    data.deleted[data.topic("truncated")] = [140]


def varsize_records(day: date, count: int, rng: random.Random) -> list[Record]:
    """`count` records over a day with a daily cycle (18:00 the busiest hour, 3x the quietest),
    bursty within each hour, random sizes, keys and headers, uneven over 3 partitions."""
    weights = [1 + (2 if hour == 18 else 1.2 if 9 <= hour <= 20 else 0) for hour in range(24)]
    counts = [round(count * w / sum(weights)) for w in weights]
    stamps = sorted(
        at(day, hour) + int(rng.betavariate(1.5, 4) * 3_600_000) for hour, n in enumerate(counts) for _ in range(n)
    )
    records = []
    for stamp in stamps:
        roll = rng.random()
        headers = [("trace-id", rng.randbytes(16))] if roll < 0.2 else []
        if roll < 0.05:
            headers.append(("retry", None))
        key = b"user-%06d" % rng.randrange(1_000_000) if rng.random() < 0.7 else None
        value = rng.randbytes(rng.randint(150, 450))
        records.append(Record(stamp, value, key, headers, rng.choices((0, 1, 2), (5, 3, 2))[0]))
    return records


def _varsize(bootstrap: str, data: LogDataset) -> None:
    """About 30,000 committed records on D-1 in transactions of 1,000, with 3 aborted transactions of
    40 records stamped among them."""
    rng = random.Random(23)
    d1 = data.days[2]
    data.create(bootstrap, "varsize", 3)
    records = varsize_records(d1, 30_000, rng)
    transactions: list[tuple[list[Record], bool]] = []
    for n, i in enumerate(range(0, len(records), 1000)):
        batch = records[i : i + 1000]
        transactions.append((batch, True))
        if n in (4, 14, 24):
            stamp = batch[-1].timestamp_ms
            aborted = [Record(stamp + j, rng.randbytes(rng.randint(150, 450)), partition=j % 3) for j in range(40)]
            transactions.append((aborted, False))
    produce_transactions(bootstrap, data.topic("varsize"), transactions)
    for batch, commit in transactions:
        data.appended("varsize", batch, commit)


def _bulk(bootstrap: str, data: LogDataset) -> None:
    """varsize's shape without transactions among the day's records (a marker stamped now in the
    middle of a past day makes the measurer read the day whole instead of sampling it): 30,000
    records on D-1, then one aborted transaction of 60 records stamped D-1 23:59:30."""
    rng = random.Random(29)
    d1 = data.days[2]
    data.create(bootstrap, "bulk", 3)
    records = varsize_records(d1, 30_000, rng)
    produce(bootstrap, data.topic("bulk"), records)
    data.appended("bulk", records)
    aborted = [Record(at(d1, 23, 59, 30) + j, rng.randbytes(rng.randint(150, 450)), partition=j % 3) for j in range(60)]
    produce_transactions(bootstrap, data.topic("bulk"), [(aborted, False)])
    data.appended("bulk", aborted, committed=False)


def _tombstones(bootstrap: str, data: LogDataset) -> None:
    """A compacted topic: 16,000 writes of 4,000 keys over D-1, one in eight a tombstone; once the
    cleaner has compacted it, its log is what a plain read_committed consumer receives."""
    rng = random.Random(31)
    d1 = data.days[2]
    topic = data.topic("tombstones")
    config = {
        "cleanup.policy": "compact",
        "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": str(DAY_MS),  # tombstones stay for the session
    }
    data.create(bootstrap, "tombstones", 1, config)
    step = DAY_MS // 16_000
    writes = [
        Record(
            day_start_ms(d1) + i * step,
            None if rng.random() < 1 / 8 else rng.randbytes(rng.randint(40, 80)),
            b"k%05d" % rng.randrange(4000),
        )
        for i in range(16_000)
    ]
    produce(bootstrap, topic, writes)
    # A segment rolls when a batch is stamped segment.ms after the segment's first batch's newest
    # record: this one, stamped after every write, rolls the active segment and makes it cleanable.
    produce(bootstrap, topic, [Record(at(d1, 23, 59, 59) + 500, b"r" * 60, b"roll")])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log = read_log(bootstrap, topic, 1)[0]
        if len({record.key for record in log}) == len(log):  # one record per key: fully compacted
            data.logs[topic] = [[Entry(record) for record in log]]
            return
        time.sleep(0.3)
    raise AssertionError(f"the log cleaner did not compact {topic} within 60 s")


def _logappend(bootstrap: str, data: LogDataset) -> None:
    """A LogAppendTime topic fed records whose CreateTimes are on D-2 and D-1: the broker stamps
    them with its clock, so they all belong to today's current hour."""
    _, d2, d1, _ = data.days
    data.create(bootstrap, "logappend", 2, {"message.timestamp.type": "LogAppendTime"})
    rng = random.Random(43)
    records = [
        Record(at(d2 if i % 2 else d1, 10, i % 60), b"l" * rng.randint(30, 90), b"k%03d" % i, [], i % 2)
        for i in range(200)
    ]
    if (time.time() * 1000) % 3_600_000 > 3_600_000 - 20_000:  # keep the append within one hour
        time.sleep(3600 - time.time() % 3600 + 1)
    first = int(time.time() * 1000)
    produce(bootstrap, data.topic("logappend"), records)
    last = int(time.time() * 1000)
    data.append_windows[data.topic("logappend")] = (first, last)
    data.appended("logappend", [replace(r, timestamp_ms=first) for r in records])


def read_log(bootstrap: str, topic: str, partitions: int) -> list[list[Record]]:
    """Every record a plain read_committed consumer receives, per partition, with the broker's timestamps."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,  # the end of a partition shows as an empty fetch: don't let it wait
        }
    )
    consumer.list_topics(topic, timeout=30)  # else the assignment waits for a metadata refresh, about 1 s
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    logs: list[list[Record]] = [[] for _ in range(partitions)]
    pending = set(range(partitions))
    deadline = time.monotonic() + 30
    try:
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} did not reach the end of partitions {sorted(pending)}")
            for message in consumer.consume(10_000, timeout=0.02):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise AssertionError(f"reading {topic}: {error.str()}")
                    pending.discard(message.partition())
                    continue
                logs[message.partition()].append(
                    Record(
                        message.timestamp()[1],
                        message.value(),
                        message.key(),
                        list(message.headers() or []),
                        message.partition(),
                    )
                )
    finally:
        consumer.close()
    return logs


def in_interval(row, quantity: str, truth: float, widen: float = 1.5) -> bool:
    """Whether `truth` lies in the row's 95 % interval of `quantity` ("bytes" or "peak"), widened
    `widen` times about its centre. A test draws one fixed sample, so a bare 95 % interval would
    fail one configuration in twenty for no fault; 1.5 times is about a 99.7 % interval. The 95 %
    coverage itself is checked over many seeds by the unit tests and the benchmark."""
    low, high = float(row[f"{quantity}_ci_low"]), float(row[f"{quantity}_ci_high"])
    centre, half = (low + high) / 2, (high - low) / 2
    return abs(truth - centre) <= widen * half
