"""Production logs untidier than any tidy workload: idle partitions that retention emptied, records
stamped in the future, a producer whose clock runs fast, history replayed newest day first, an
exactly-once replay committed today, and a topic that grew. Produced on the real broker, once per
test module; each topic's truth is computed here from the records as produced.

The truth follows one rule, the one a user means: a topic-day holds every committed record stamped
in that UTC day that the log still holds when the day is measured, whatever order the records were
appended in and whatever else the log holds around them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, OffsetSpec

from recommender_pipeline.days import DAY_MS, day_end_ms, day_start_ms
from recommender_pipeline.measuring.measurement import TopicSpec
from recommender_pipeline_testing.known_truth import produce_transactions
from recommender_pipeline_testing.workloads import Record, create_topic, produce

WEEK_MS = 7 * DAY_MS
# Kafka 4.x refuses CreateTime more than an hour ahead by default; 3.x brokers accept any. A topic
# with this setting behaves as a 3.x broker would.
ANY_FUTURE = {"message.timestamp.after.max.ms": "9223372036854775807"}
FAR_FUTURE_MS = 5 * 365 * DAY_MS  # a producer whose clock is years ahead


def evenly(
    day: date, count: int, partitions: int = 1, size: int = 20, first: int = 0, last: int = DAY_MS
) -> list[Record]:
    """`count` records of `size` bytes evenly spread over [first, last) ms into `day`, round robin."""
    step = (last - first) / count
    return [
        Record(day_start_ms(day) + first + int(i * step), b"v" * size, partition=i % partitions) for i in range(count)
    ]


@dataclass
class UntidyLogs:
    prefix: str
    today: date
    records: dict[str, list[Record]] = field(default_factory=dict)  # every committed record, per topic
    partitions: dict[str, int] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def day(self, back: int) -> date:
        return self.today - timedelta(days=back)

    def spec(self, name: str, retention_ms: int | None = WEEK_MS) -> TopicSpec:
        return TopicSpec("local", self.topic(name), self.partitions[self.topic(name)], retention_ms, False)

    def create(self, bootstrap: str, name: str, partitions: int, config: dict | None = None) -> None:
        create_topic(bootstrap, self.topic(name), partitions, {"retention.ms": str(WEEK_MS), **(config or {})})
        self.partitions[self.topic(name)] = partitions
        self.records[self.topic(name)] = []

    def add(self, bootstrap: str, name: str, records: list[Record]) -> None:
        produce(bootstrap, self.topic(name), records)
        self.records[self.topic(name)] += records

    def truth(self, name: str, day: date) -> tuple[int, int]:
        """Records and bytes stamped in `day`."""
        start, end = day_start_ms(day), day_end_ms(day)
        kept = [r for r in self.records[self.topic(name)] if start <= r.timestamp_ms < end]
        return len(kept), sum(r.size for r in kept)

    def partition_bytes(self, name: str, day: date) -> list[int]:
        start, end = day_start_ms(day), day_end_ms(day)
        sizes = [0] * self.partitions[self.topic(name)]
        for record in self.records[self.topic(name)]:
            if start <= record.timestamp_ms < end:
                sizes[record.partition] += record.size
        return sizes


def build_untidy_logs(bootstrap: str) -> UntidyLogs:
    if time.time() % 86_400 > 86_400 - 120:  # let the dataset's days not change while it is built
        time.sleep(86_400 - time.time() % 86_400 + 1)
    data = UntidyLogs(f"u{uuid.uuid4().hex[:8]}", datetime.now(UTC).date())
    yesterday = data.day(1)
    now = int(time.time() * 1000)

    # An idle partition emptied by retention beside two busy ones, and a topic idle all day.
    data.create(bootstrap, "idle_mixed", 3)
    data.create(bootstrap, "idle_all", 2)
    expired = day_start_ms(data.day(9))
    produce(bootstrap, data.topic("idle_mixed"), [Record(expired + i, b"old", partition=2) for i in range(50)])
    produce(bootstrap, data.topic("idle_all"), [Record(expired + i, b"old", partition=i % 2) for i in range(50)])
    data.add(bootstrap, "idle_mixed", evenly(yesterday, 8_640, partitions=2))

    # One record stamped years ahead before the day, and one inside it.
    data.create(bootstrap, "future_before", 1, ANY_FUTURE)
    produce(bootstrap, data.topic("future_before"), [Record(now + FAR_FUTURE_MS, b"f" * 30)])
    data.add(bootstrap, "future_before", evenly(yesterday, 3_600))
    data.create(bootstrap, "future_inside", 1, ANY_FUTURE)
    day_records = evenly(yesterday, 3_600)
    data.add(bootstrap, "future_inside", day_records[:1_500])
    produce(bootstrap, data.topic("future_inside"), [Record(now + FAR_FUTURE_MS, b"f" * 30)])
    data.add(bootstrap, "future_inside", day_records[1_500:])

    # Two producers on one partition, the second's clock 30 minutes fast, appended in real-time
    # order around the whole day D-2 (one record each every 10 s).
    data.create(bootstrap, "fast_clock", 1)
    d2 = data.day(2)
    interleaved = []
    for step in range(-360, 8_640 + 360):
        real = day_start_ms(d2) + step * 10_000
        interleaved += [Record(real, b"h" * 20), Record(real + 30 * 60_000, b"s" * 20)]
    data.add(bootstrap, "fast_clock", interleaved)

    # History replayed newest day first: D-1, then D-2, then D-3, all appended now.
    data.create(bootstrap, "replayed", 1)
    for back in (1, 2, 3):
        data.add(bootstrap, "replayed", evenly(data.day(back), 3_000, size=30))

    # A big partition (sampled) with a record stamped years ahead at noon.
    data.create(bootstrap, "sampled_future", 1, ANY_FUTURE)
    big = evenly(yesterday, 30_000, size=40)
    data.add(bootstrap, "sampled_future", big[:15_000])
    produce(bootstrap, data.topic("sampled_future"), [Record(now + FAR_FUTURE_MS, b"f" * 30)])
    data.add(bootstrap, "sampled_future", big[15_000:])

    # An exactly-once replay of yesterday committed today: 30 transactions of 1,000 records whose
    # markers carry today's clock.
    data.create(bootstrap, "eos_replay", 1)
    replay = evenly(yesterday, 30_000, size=40)
    produce_transactions(
        bootstrap, data.topic("eos_replay"), [(replay[i : i + 1000], True) for i in range(0, 30_000, 1000)]
    )
    data.records[data.topic("eos_replay")] += replay

    wait_until_emptied(
        bootstrap,
        [data.topic("idle_mixed"), data.topic("idle_all")],
        lambda tp: tp.topic.endswith(".idle_all") or tp.partition == 2,
    )
    return data


def wait_until_emptied(
    bootstrap: str, topics: list[str], held_expired: Callable[[TopicPartition], bool], timeout: float = 90.0
) -> None:
    """Waits until retention deleted the expired records: every partition that held only such
    records (`held_expired`) has its log start at its end (the broker checks retention every 5 s
    in `scripts/kafka-local`)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=30).topics
        partitions = [
            TopicPartition(t, p) for t in topics for p in metadata[t].partitions if held_expired(TopicPartition(t, p))
        ]
        start = admin.list_offsets({tp: OffsetSpec.earliest() for tp in partitions})
        end = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions})
        offsets = [(start[tp].result().offset, end[tp].result().offset) for tp in partitions]
        if all(s == e > 0 for s, e in offsets):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"retention did not empty the idle partitions within {timeout:.0f} s: {offsets}")
        time.sleep(1)


def grow(bootstrap: str, topic: str, partitions: int) -> None:
    """Adds partitions to a topic, as a team acting on a recommendation would."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_partitions([NewPartitions(topic, partitions)], operation_timeout=30)[topic].result()
    deadline = time.monotonic() + 30
    while len(admin.list_topics(topic, timeout=30).topics[topic].partitions) < partitions:
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic} did not reach {partitions} partitions")
        time.sleep(0.2)
