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

from recommender_pipeline.measuring.days import HOUR_MS, HOURS_PER_DAY


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
    PARTIAL = "partial"  # the log's head was deleted inside the day
    LOST = "lost"  # the log's head was deleted after the day ended: its records are gone


def day_retention(
    log_start: int, day_first_offset: int, first_timestamp: int | None, day_start: int, day_end: int
) -> Retention:
    """Judges truncation from the log itself, whatever `retention.ms` says.

    When the log's first offset is not 0, something was deleted (retention by time or size,
    `DeleteRecords`). If the day's first offset is that first offset, no retained record is older
    than the day, so the deleted records may have belonged to it: the first retained record's
    time tells how much. `first_timestamp` None means the log holds no readable record from there.
    """
    if log_start <= 0 or day_first_offset > log_start:
        return Retention.WHOLE
    if first_timestamp is None or first_timestamp >= day_end:
        return Retention.LOST
    if first_timestamp > day_start:
        return Retention.PARTIAL
    return Retention.WHOLE
