"""Which day and hour a record belongs to, and what a partition's log says about a day.

Rules (the README's "Attribution" paragraph):
- A committed data record belongs to the UTC day and hour of its own timestamp, CreateTime or
  LogAppendTime as the broker returns it. Nothing is clamped into a day.
- A day is read from the first offset the broker gives for its start (no record before it is
  stamped in the day) up to the first data record stamped at or after the day's end plus the
  skew bound (`TIMESTAMP_SKEW_SECONDS`). Records of the day appended after that are beyond the
  bound and not counted; those counted after the first record of the next day are `late`.
- Transaction markers and aborted records are never data: a read_committed consumer skips them,
  so a marker stamped with the commit's wall clock cannot end a day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from recommender_pipeline.days import HOUR_MS, HOURS_PER_DAY


def header_size(headers: list[tuple[str, bytes | None]]) -> int:
    """Header keys and values, in bytes; a record's size adds its key and value (absent: 0), which
    the reader's hot loop takes straight from the message."""
    return sum(len(key.encode()) + len(value or b"") for key, value in headers)


@dataclass
class DayTally:
    """What was read of one partition (or one block of it) for one day."""

    day_start: int
    records: int = 0
    bytes: int = 0
    late: int = 0
    hour_bytes: list[int] = field(default_factory=lambda: [0] * HOURS_PER_DAY)
    hour_records: list[int] = field(default_factory=lambda: [0] * HOURS_PER_DAY)
    first_timestamp: int | None = None  # of the first data record read, in or out of the day
    next_day_seen: bool = False
    # Bytes per PEAK_BUCKET_SECONDS bucket of the day (index -> bytes), when buckets are finer than hours.
    bucket_ms: int = HOUR_MS
    bucket_bytes: dict[int, int] = field(default_factory=dict)

    def add(self, timestamp: int, size: int) -> None:
        """Counts a record if its timestamp falls in the day."""
        if self.first_timestamp is None:
            self.first_timestamp = timestamp
        elapsed = timestamp - self.day_start
        if 0 <= elapsed < HOURS_PER_DAY * HOUR_MS:
            self.records += 1
            self.bytes += size
            hour = elapsed // HOUR_MS
            self.hour_bytes[hour] += size
            self.hour_records[hour] += 1
            if self.bucket_ms < HOUR_MS:
                bucket = elapsed // self.bucket_ms
                self.bucket_bytes[bucket] = self.bucket_bytes.get(bucket, 0) + size
            if self.next_day_seen:
                self.late += 1
        elif elapsed >= HOURS_PER_DAY * HOUR_MS:
            self.next_day_seen = True


class Retention(Enum):
    """What the log still holds of a day in one partition."""

    WHOLE = "whole"
    EMPTIED = "emptied"  # retention emptied the partition of records all older than the day: it held none of it
    PARTIAL = "partial"  # the log's head was deleted inside the day
    LOST = "lost"  # the log's head was deleted after the day ended: its records are gone


@dataclass(frozen=True)
class LogBounds:
    """One partition's log around a day: where it starts and ends, where the day's read starts
    (the broker's first offset at `read_from`), and the first readable record's time from there."""

    log_start: int
    first: int
    stable: int
    first_timestamp: int | None  # None: no readable record from `first` on


def day_retention(bounds: LogBounds, read_from: int, day_end: int, retention_horizon: int | None) -> Retention:
    """Judges truncation from the log itself, whatever `retention.ms` says.

    When the log's first offset is not 0, something was deleted (retention by time or size,
    `DeleteRecords`). If the day's read starts at that first offset, no retained record is older
    than the day, so the deleted records may have belonged to it: the first retained record's
    time tells how much.

    A partition that holds nothing at all (log start = log end > 0) is the one case where that
    time is missing. Kafka's time retention deletes a segment only once its newest record is
    older than `retention.ms` (the active segment too, so an idle partition ends up empty), and
    size retention never deletes the last segment, so when the day began after the horizon
    (`retention_horizon`: the measurement's time minus `retention.ms`, None without time
    retention) an emptied partition held no record of the day: it was idle. Without time
    retention (`retention.ms=-1`, as Kafka Streams' repartition topics, which are purged by
    DeleteRecords) an emptied partition may have lost the day.
    """
    if bounds.log_start <= 0 or bounds.first > bounds.log_start:
        return Retention.WHOLE
    if bounds.log_start >= bounds.stable and retention_horizon is not None and read_from >= retention_horizon:
        return Retention.EMPTIED
    if bounds.first_timestamp is None or bounds.first_timestamp >= day_end:
        return Retention.LOST
    if bounds.first_timestamp > read_from:
        return Retention.PARTIAL
    return Retention.WHOLE
