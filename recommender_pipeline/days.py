"""UTC days: their boundaries, the window of days ending on a day, and its length under a topic's retention."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
HOURS_PER_DAY = 24


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def day_end_ms(day: date) -> int:
    return day_start_ms(day) + DAY_MS


def utc_today() -> date:
    return datetime.now(UTC).date()


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def window_length_days(sampling_days: int, retention_ms: int | None) -> int:
    """`SAMPLING_DAYS`, capped by the whole days the topic retains, never less than one day."""
    if retention_ms is None or retention_ms < 0:
        return sampling_days
    return min(sampling_days, max(1, retention_ms // DAY_MS))


def window_days(end_day: date, length_days: int) -> list[date]:
    """The `length_days` UTC days that end on `end_day`, oldest first."""
    return [end_day - timedelta(days=offset) for offset in range(length_days - 1, -1, -1)]


def unmeasurable_reason(day: date, at_ms: int) -> str | None:
    """Why a day cannot be measured at `at_ms`, or None when it can.

    Only a day that has not begun: what retention deleted of a past day is read from the log
    itself (`attribution.day_retention`, hour by hour in `hours`), since brokers delete whole
    segments late and a day older than `retention.ms` is often still there.
    """
    if day_start_ms(day) > at_ms:
        return "the day has not started yet"
    return None
