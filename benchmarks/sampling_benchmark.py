"""How fast record sampling measures a day, against the physical limit on the same broker.

The limit is a plain confluent-kafka consumer that reads the same offsets and only sums value
lengths. The benchmark produces one day of known traffic into a fresh topic, then times:

- raw: the plain consumer over the day's offsets;
- exact: DayMeasurer reading every record (SAMPLING_BATCH_SIZE empty);
- capped: DayMeasurer with SAMPLING_BATCH_SIZE=10000 (the original tool's default).

    scripts/kafka-local start
    .venv/bin/python -m benchmarks.sampling_benchmark [--records 1000000] [--partitions 6]
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from recommender_pipeline.measuring.sampling import DayMeasurer, SamplingLimits, TopicSpec
from recommender_pipeline.measuring.windows import day_end_ms, day_start_ms
from recommender_pipeline_tests.workloads import Record, create_topic, produce


def raw_read(bootstrap: str, topic: str, partitions: int, start_ms: int, end_ms: int) -> tuple[int, int, float]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    starts = {
        tp.partition: f.result().offset
        for tp, f in admin.list_offsets({tp: OffsetSpec.for_timestamp(start_ms) for tp in tps}).items()
    }
    latest = {
        tp.partition: f.result().offset for tp, f in admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}).items()
    }
    ends = {
        tp.partition: (f.result().offset if f.result().offset >= 0 else latest[tp.partition])
        for tp, f in admin.list_offsets({tp: OffsetSpec.for_timestamp(end_ms) for tp in tps}).items()
    }
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "fetch.wait.max.ms": 50})
    consumer.list_topics(timeout=10)
    started = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in range(partitions)])
    expected = sum(ends[p] - starts[p] for p in range(partitions))
    records = size = 0
    while records < expected:
        for message in consumer.consume(10_000, timeout=0.05):
            if message.error() is None and message.offset() < ends[message.partition()]:
                records += 1
                size += len(message.value())
    elapsed = time.perf_counter() - started
    consumer.close()
    return records, size, elapsed


def measure(bootstrap: str, spec: TopicSpec, day, cap: int | None) -> tuple[dict, float]:
    config = {"bootstrap.servers": bootstrap}
    consumer_config = {
        **config,
        "group.id": uuid.uuid4().hex,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 50,
    }
    measurer = DayMeasurer(
        AdminClient(config),
        lambda overrides: Consumer({**consumer_config, **overrides}),
        day,
        SamplingLimits(cap, 2.0, 50),
    )
    started = time.perf_counter()
    row = measurer.measure([spec])[0]
    return row, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--value-bytes", type=int, default=200)
    args = parser.parse_args()

    day = datetime.now(UTC).date() - timedelta(days=1)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    create_topic(args.bootstrap, topic, args.partitions)
    step = 86_400_000 // args.records
    start = day_start_ms(day)
    value = b"b" * args.value_bytes
    t0 = time.perf_counter()
    produce(
        args.bootstrap,
        topic,
        (Record(start + i * step, value, partition=i % args.partitions) for i in range(args.records)),
    )
    print(f"produced {args.records:,} records of {args.value_bytes} B into {topic} in {time.perf_counter() - t0:.1f}s")

    raw_records, raw_bytes, raw_seconds = raw_read(args.bootstrap, topic, args.partitions, start, day_end_ms(day))
    spec = TopicSpec("local", topic, args.partitions, None, False)
    exact, exact_seconds = measure(args.bootstrap, spec, day, None)
    capped, capped_seconds = measure(args.bootstrap, spec, day, 10_000)
    assert raw_records == exact["records"] == args.records, (raw_records, exact["records"])

    print()
    print(f"{'reader':<28}{'records':>12}{'seconds':>10}{'records/s':>14}{'vs raw':>10}")
    rows = [
        ("raw confluent-kafka", raw_records, raw_seconds),
        ("DayMeasurer exact", exact["sampled_records"], exact_seconds),
        ("DayMeasurer capped 10,000", capped["sampled_records"], capped_seconds),
    ]
    for name, records, seconds in rows:
        print(f"{name:<28}{records:>12,}{seconds:>10.2f}{records / seconds:>14,.0f}{seconds / raw_seconds:>9.2f}x")
    print()
    print(f"exact:  {exact['records']:,} records, {exact['bytes']:,} bytes (raw read {raw_bytes:,} value bytes)")
    error = abs(capped["records"] - exact["records"]) / exact["records"] * 100
    print(f"capped: {capped['records']:,} records estimated ({error:.2f} % off), exact={capped['exact']}")


if __name__ == "__main__":
    main()
