"""Known-truth workloads: records with explicit timestamps, sizes and partitions.

Tests assert against the numbers these functions say they produced; the demo uses the same
producer to fill a local cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class Record:
    timestamp_ms: int
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    partition: int = 0

    @property
    def size(self) -> int:
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(k.encode()) + len(v or b"") for k, v in self.headers)
        )

    @property
    def wire_size(self) -> int:
        """Bytes of this record encoded in Kafka's v2 record format, deltas 0 and no batch header:
        what the Confluent Cloud emulator counts as ``received_bytes``. Encoded for real here, so
        the tests' truth does not share the emulator's arithmetic."""
        return len(encode_record_v2(self.key, self.value, self.headers))


def _zigzag_varint(number: int) -> bytes:
    zigzag, out = (number << 1) ^ (number >> 63), bytearray()
    while True:
        low, zigzag = zigzag & 0x7F, zigzag >> 7
        out.append(low | 0x80 if zigzag else low)
        if not zigzag:
            return bytes(out)


def _length_prefixed(data: bytes | None) -> bytes:
    return _zigzag_varint(-1) if data is None else _zigzag_varint(len(data)) + data


def encode_record_v2(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> bytes:
    """One record as Kafka's DefaultRecord writes it (KIP-98), with timestamp and offset deltas 0."""
    body = bytes([0]) + _zigzag_varint(0) + _zigzag_varint(0) + _length_prefixed(key) + _length_prefixed(value)
    body += _zigzag_varint(len(headers))
    for name, data in headers:
        body += _length_prefixed(name.encode()) + _length_prefixed(data)
    return _zigzag_varint(len(body)) + body


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> int:
    """Epoch milliseconds of a UTC time on a day."""
    return int(datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})], operation_timeout=30)
    futures[name].result()


def produce(bootstrap: str, topic: str, records: Iterable[Record]) -> int:
    """Produces the records in order, flushes, and returns how many were sent."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    count = send_records(producer, topic, records)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records to {topic} were not delivered")
    return count


def send_records(producer: Producer, topic: str, records: Iterable[Record]) -> int:
    """Queues the records on a producer (waiting while its queue is full); returns how many."""
    count = 0
    for record in records:
        while True:
            try:
                producer.produce(
                    topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers or None,
                    partition=record.partition,
                    timestamp=record.timestamp_ms,
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.5)
        count += 1
    return count


def spread(day: date, hour: int, count: int, size: int, partitions: int = 1, seconds: int = 3600) -> list[Record]:
    """`count` records of `size` value bytes spread evenly over an hour, round robin on partitions."""
    start = at(day, hour)
    step = seconds * 1000 // max(count, 1)
    return [Record(start + i * step, b"v" * size, partition=i % partitions) for i in range(count)]
