"""What a topic's keys do to a partition change: how many records carry a key, how much the
busiest key carries, and which share of keyed records would move to another partition.

Kafka's default partitioners map a key to `hash(key) % partitions`, so a new partition count sends
most keys elsewhere and breaks per-key ordering across the change. The hashes of a uniform sample
of keyed records are kept (not the keys, which may be personal data), so the share that moves can
be computed later for whatever count the recommendation settles on.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from confluent_kafka import Consumer, KafkaError, TopicPartition
from kafka.partitioner.default import murmur2


class Partitioner(StrEnum):
    """The producers' key partitioner: Java's default (and librdkafka's `murmur2_random`), or
    librdkafka's default `consistent_random` (CRC32 of the key)."""

    MURMUR2 = "murmur2"
    CONSISTENT_RANDOM = "consistent_random"
    CRC32 = "crc32"


def key_hashes(key: bytes) -> tuple[int, int]:
    """The key's positive murmur2 (as Java's `Utils.toPositive(Utils.murmur2(key))`) and CRC32."""
    return murmur2(key) & 0x7FFFFFFF, zlib.crc32(key) & 0xFFFFFFFF


def partition_for(hashes: tuple[int, int], partitions: int, partitioner: Partitioner) -> int:
    murmur, crc = hashes
    return (murmur if partitioner is Partitioner.MURMUR2 else crc) % partitions


def remapped_share(sample: list[tuple[int, int]], current: int, target: int, partitioner: Partitioner) -> float | None:
    """The share of sampled keyed records whose partition differs between `current` and `target`
    partitions; None without a sample."""
    if not sample or current <= 0 or target <= 0:
        return None
    moved = sum(partition_for(h, current, partitioner) != partition_for(h, target, partitioner) for h in sample)
    return moved / len(sample)


@dataclass
class KeySample:
    """The latest records of a topic, read for their keys only."""

    records: int = 0
    keyed: int = 0
    top_key_records: int = 0
    hashes: list[tuple[int, int]] = field(default_factory=list)  # a uniform sample of keyed records

    @property
    def keyed_share(self) -> float:
        return self.keyed / self.records if self.records else 0.0

    @property
    def top_key_share(self) -> float:
        """The busiest key's share of the keyed records read."""
        return self.top_key_records / self.keyed if self.keyed else 0.0


def sample_keys(
    consumer: Consumer,
    topic: str,
    partitions: int,
    records: int,
    kept_hashes: int,
    timeout_seconds: float = 10.0,
    seed: int = 0,
) -> KeySample:
    """Reads up to `records` of the topic's latest records, spread evenly over its partitions,
    and keeps `kept_hashes` of the keyed ones' hashes (a reservoir sample)."""
    per_partition = max(records // max(partitions, 1), 1)
    ranges: dict[int, tuple[int, int]] = {}
    for partition in range(partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_seconds)
        if high > low:
            ranges[partition] = (max(low, high - per_partition), high)
    sample = KeySample()
    if not ranges:
        return sample
    counts: Counter[bytes] = Counter()
    rng = random.Random(seed)
    consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in ranges.items()])
    pending = set(ranges)
    deadline = time.monotonic() + timeout_seconds
    try:
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"topic {topic}: reading keys failed: {error.str()}")
                partition, offset = message.partition(), message.offset()
                if partition not in pending:
                    continue
                sample.records += 1
                key = message.key()
                if key is not None:
                    sample.keyed += 1
                    counts[key] += 1
                    hashes = key_hashes(key)
                    if len(sample.hashes) < kept_hashes:
                        sample.hashes.append(hashes)
                    elif (slot := rng.randrange(sample.keyed)) < kept_hashes:
                        sample.hashes[slot] = hashes
                if offset >= ranges[partition][1] - 1:
                    pending.discard(partition)
            if pending:  # transaction markers and compaction gaps end a range without a record
                for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                    if tp.offset >= ranges[tp.partition][1]:
                        pending.discard(tp.partition)
    finally:
        consumer.unassign()
    sample.top_key_records = max(counts.values(), default=0)
    return sample
