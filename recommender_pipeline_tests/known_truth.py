"""One known-truth dataset on the real broker, produced once per test session.

Every number a test asserts is computed here from the records as produced, never read back
from the pipeline.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from recommender_pipeline.measuring.windows import day_end_ms, day_start_ms
from recommender_pipeline_tests.workloads import Record, at, create_topic, produce

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

    def add(self, records: list[Record], day: date) -> None:
        for record in records:
            hour = (record.timestamp_ms - day_start_ms(day)) // 3_600_000
            self.records += 1
            self.bytes += record.size
            self.hour_bytes[hour] = self.hour_bytes.get(hour, 0) + record.size
            self.partition_bytes[record.partition] = self.partition_bytes.get(record.partition, 0) + record.size

    @property
    def peak_bytes_per_sec(self) -> float:
        return max(self.hour_bytes.values(), default=0) / 3600


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
