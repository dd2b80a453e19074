"""What the emulator knows of the broker's traffic: every record of the topics a Metrics API query
asks for, bytes and records bucketed per minute and partition, read from the log and cached.

Its own module because it is the one part of the emulator that reads records from Kafka;
``metrics.py`` turns these per-minute counts into the points of a query.

Emulator assumptions and deviations (Confluent's behaviour where it is documented, else a choice):

- ``received_bytes`` / ``received_records`` are read from the log with a ``read_uncommitted``
  consumer: what producers wrote, aborted transactions included (as a broker's ingress counter
  would), control records excluded, bucketed per minute by record timestamp.
- Bytes per record are the record's size on the wire in Kafka's v2 record format (KIP-98): its
  length, attributes, timestamp and offset deltas, key and value lengths, header count and header
  lengths as zigzag varints, around the key, value and headers themselves. Deltas are taken as 0
  (one byte each) and batch headers are not counted: a consumer cannot see how the producer
  batched. So ``received_bytes`` is deliberately *not* the record sampler's key + value + headers;
  a test that agrees with both was not agreeing by construction.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

MINUTE_MS = 60_000
READ_STALL_SECONDS = 30.0


def varint_size(number: int) -> int:
    """Bytes of a zigzag varint, as Kafka's record format writes lengths and deltas."""
    zigzag, size = (number << 1) ^ (number >> 63), 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def field_size(data: bytes | None) -> int:
    """A length-prefixed field; an absent one is the length -1 alone."""
    return 1 if data is None else varint_size(len(data)) + len(data)


def wire_size(key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None) -> int:
    """A record's bytes in the v2 record format (deltas 0, batch header not counted)."""
    headers = list(headers or ())
    body = 3 + field_size(key) + field_size(value) + varint_size(len(headers))  # attributes + 2 deltas
    for name, data in headers:
        body += field_size(name.encode()) + field_size(data)
    return varint_size(body) + body


@dataclass
class PartitionLog:
    next_offset: int = 0
    minutes: dict[int, list[int]] = field(default_factory=dict)  # minute start ms -> [bytes, records]


class BrokerTraffic:
    """Every record of the requested topics, bucketed per minute and partition.

    A topic is read once; later queries read only what a partition gained since (its high
    watermark moved). A partition whose high watermark went down (topic re-created) is re-read.
    """

    def __init__(self, bootstrap: str, admin: AdminClient):
        self.bootstrap = bootstrap
        self.admin = admin
        self.lock = threading.RLock()
        self.logs: dict[tuple[str, int], PartitionLog] = {}
        self.records_read = 0
        self._consumer: Consumer | None = None
        self._known_topics: set[str] = set()

    def topics(self) -> dict[str, int]:
        """Partition counts of the broker's non-internal topics."""
        metadata = self.admin.list_topics(timeout=30)
        return {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None and not name.startswith("__")
        }

    def refresh(self, topics: dict[str, int]) -> None:
        """Brings the cache of these topics up to their current high watermarks (caller holds lock)."""
        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        if not tps:
            return
        futures = self.admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in tps},
            isolation_level=IsolationLevel.READ_UNCOMMITTED,
            request_timeout=30,
        )
        todo: dict[tuple[str, int], tuple[int, int]] = {}
        for tp, future in futures.items():
            try:
                high = future.result().offset
            except KafkaException:
                continue  # deleted meanwhile: no data
            key = (tp.topic, tp.partition)
            log = self.logs.setdefault(key, PartitionLog())
            if high < log.next_offset:
                log = self.logs[key] = PartitionLog()
            if high > log.next_offset:
                todo[key] = (log.next_offset, high)
        if todo:
            self._read(todo)

    def _consumer_for(self, topics: set[str]) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"ccloud-emulator-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_uncommitted",
                    "enable.partition.eof": False,
                }
            )
        if not topics <= self._known_topics:
            # Warm the metadata cache: an unknown topic would wait for the next periodic refresh.
            self._consumer.list_topics(timeout=30)
            self._known_topics |= topics
        return self._consumer

    def _read(self, todo: dict[tuple[str, int], tuple[int, int]]) -> None:
        consumer = self._consumer_for({t for t, _ in todo})
        pending = set(todo)
        assigned = [TopicPartition(t, p, todo[(t, p)][0]) for t, p in sorted(todo)]

        def finish(key: tuple[str, int]) -> None:
            self.logs[key].next_offset = todo[key][1]
            pending.discard(key)
            consumer.pause([TopicPartition(*key)])

        consumer.assign(assigned)
        last_progress = time.monotonic()
        try:
            while pending:
                messages = consumer.consume(10_000, timeout=0.05)
                if messages:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > READ_STALL_SECONDS:
                    raise RuntimeError(f"emulator: no progress reading {sorted(pending)}")
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(error)
                    key = (message.topic(), message.partition())
                    if key not in pending:
                        continue
                    offset, end = message.offset(), todo[key][1]
                    if offset >= end:
                        finish(key)
                        continue
                    minute = max(message.timestamp()[1], 0) // MINUTE_MS * MINUTE_MS
                    bucket = self.logs[key].minutes.setdefault(minute, [0, 0])
                    bucket[0] += wire_size(message.key(), message.value(), message.headers())
                    bucket[1] += 1
                    self.records_read += 1
                    self.logs[key].next_offset = offset + 1
                    if offset == end - 1:
                        finish(key)
                if pending:
                    # Transaction markers and compaction gaps end a range without a record.
                    for tp in consumer.position([TopicPartition(*key) for key in pending]):
                        key = (tp.topic, tp.partition)
                        if tp.offset >= todo[key][1]:
                            finish(key)
        finally:
            consumer.resume(assigned)
            consumer.unassign()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
