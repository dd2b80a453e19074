"""The quick start's workload: a few topics with three days of traffic of different shapes, and
the consumers that read them, so that the demo shows every kind of recommendation.

- `demo.orders`: read by three consumer groups (offsets committed): egress is three times the
  ingress, and the fan-out binds.
- `demo.payments`: keyed like the Java client does (murmur2), read by a live group of 4 members:
  an increase that remaps keys, rounded up to a count the group divides (`PARTITION_ROUNDING`).
- `demo.sessions`: one tenant's key carries most of the bytes on one partition: a hot key.
- `demo.clicks`, `demo.audit`: plain traffic, an increase and a topic the floor sets.

    python -m recommender_pipeline_testing.demo --bootstrap HOST:PORT            # produce, commit
    python -m recommender_pipeline_testing.demo --bootstrap HOST:PORT --hold     # keep the live group
"""

from __future__ import annotations

import argparse
import random
import signal
import time
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition

from recommender_pipeline.profiling.keys import Partitioner, key_hashes, partition_for
from recommender_pipeline_testing.workloads import Record, at, create_topic, produce

PREFIX = "demo"
READING_GROUPS = ("billing", "shipping", "analytics")  # each reads all of demo.orders
LIVE_GROUP, LIVE_MEMBERS = "settlement", 4  # on demo.payments, held by `--hold`


def _hours(days: int):
    today = datetime.now(UTC).date()
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        for hour in range(24) if back else range(datetime.now(UTC).hour):
            yield day, hour


def demo_workload(bootstrap: str, prefix: str = PREFIX, days: int = 3) -> list[str]:
    """Creates and fills the demo topics; returns their names."""
    rng = random.Random(7)
    plain = {f"{prefix}.orders": (6, 400), f"{prefix}.clicks": (3, 2500), f"{prefix}.audit": (1, 60)}
    for name, (partitions, per_hour) in plain.items():
        create_topic(bootstrap, name, partitions)
        records = []
        for day, hour in _hours(days):
            count, size = per_hour * (4 if hour in (9, 17) else 1), rng.randint(80, 600)
            step = 3_600_000 // count
            records += [Record(at(day, hour) + i * step, b"v" * size, partition=i % partitions) for i in range(count)]
        produce(bootstrap, name, records)

    payments, accounts = f"{prefix}.payments", [b"account-%04d" % i for i in range(2_000)]
    create_topic(bootstrap, payments, 4)
    records = []
    for day, hour in _hours(days):
        count = 900 * (3 if hour == 12 else 1)
        for i in range(count):
            key = rng.choice(accounts)
            partition = partition_for(key_hashes(key), 4, Partitioner.MURMUR2)
            records.append(Record(at(day, hour) + i * (3_600_000 // count), b"p" * 250, key, partition=partition))
    produce(bootstrap, payments, records)

    sessions = f"{prefix}.sessions"
    create_topic(bootstrap, sessions, 3)
    records = []
    for day, hour in _hours(days):
        for i in range(600):  # tenant-1 sends 4 in 5 records, all on partition 0
            hot = i % 5 != 0
            key = b"tenant-1" if hot else b"tenant-%d" % rng.randint(2, 50)
            partition = 0 if hot else 1 + i % 2
            records.append(Record(at(day, hour) + i * 6_000, b"s" * 400, key, partition=partition))
    produce(bootstrap, sessions, records)
    return [*plain, payments, sessions]


def commit_readers(bootstrap: str, prefix: str = PREFIX) -> None:
    """Each reading group commits demo.orders at its end: groups that read everything, now idle."""
    topic = f"{prefix}.orders"
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-probe"})
    ends = [TopicPartition(topic, p, probe.get_watermark_offsets(TopicPartition(topic, p))[1]) for p in range(6)]
    probe.close()
    for group in READING_GROUPS:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-{group}"})
        consumer.commit(offsets=ends, asynchronous=False)
        consumer.close()


def hold_live_group(bootstrap: str, prefix: str = PREFIX) -> None:
    """Keeps LIVE_MEMBERS members of the settlement group on demo.payments until SIGTERM/SIGINT."""
    members = [
        Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-{LIVE_GROUP}", "auto.offset.reset": "latest"})
        for _ in range(LIVE_MEMBERS)
    ]
    for member in members:
        member.subscribe([f"{prefix}.payments"])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while not stop:
            for member in members:
                member.poll(0.2)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for member in members:
            member.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fill a local cluster with the demo workload.")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--prefix", default=PREFIX)
    parser.add_argument("--hold", action="store_true", help="keep the live consumer group until stopped")
    args = parser.parse_args()
    if args.hold:
        hold_live_group(args.bootstrap, args.prefix)
    else:
        print("produced topics:", ", ".join(demo_workload(args.bootstrap, args.prefix)))
        commit_readers(args.bootstrap, args.prefix)
