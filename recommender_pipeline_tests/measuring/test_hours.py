"""Hour-by-hour captures of a topic-day and how they merge: pure arithmetic, no broker."""

from __future__ import annotations

import json
from datetime import date

from recommender_pipeline.days import DAY_MS, HOUR_MS, day_start_ms
from recommender_pipeline.measuring import hours
from recommender_pipeline.measuring.measurement import Measurement, Method, Status

DAY = date(2026, 3, 1)
START = day_start_ms(DAY)


def capture(states: str, hour_records: list[int], hour_bytes: list[int], measured_at: int, **fields) -> dict:
    """A stored-shaped row of one capture, its totals the sums of the hours it read."""
    row = Measurement(
        date=DAY.isoformat(), cluster_id="c1", topic="clicks", method=Method.SAMPLING_RECORDS, status=Status.MEASURED
    ).as_row()
    row.update(
        window_seconds=min(measured_at - START, DAY_MS) / 1000,
        day_closed=measured_at >= START + DAY_MS,
        measured_at=str(measured_at),
        exact=True,
        partition_bytes="[1]",
        skew=1.0,
        **fields,
    )
    read = [state != hours.NOT_READ for state in states]
    hours.fill_day(
        row,
        states,
        [r if ok else 0 for r, ok in zip(hour_records, read, strict=True)],
        [b if ok else 0 for b, ok in zip(hour_bytes, read, strict=True)],
    )
    return row


# A busy day: hour h carries 100 + h records of 10 + h bytes each; the busiest hour is 23.
RECORDS = [100 + h for h in range(24)]
BYTES = [(100 + h) * (10 + h) for h in range(24)]


def test_hour_states_follow_the_clock_the_read_start_and_the_logs_deletions():
    at_0630 = START + 6 * HOUR_MS + 30 * 60_000
    assert hours.hour_states(START, START, START, at_0630) == "c" * 6 + "o" + "-" * 17
    # Read from 06:00 at 12:30, the log having deleted everything before 05:30.
    at_1230 = START + 12 * HOUR_MS + 30 * 60_000
    assert hours.hour_states(START, START + 6 * HOUR_MS, START + 5 * HOUR_MS + 1, at_1230) == (
        "-" * 6 + "c" * 6 + "o" + "-" * 11
    )
    # One read after the day closed, deletions up to 17:30: 17 hours lost, one partly.
    closed = START + DAY_MS + 30 * 60_000
    assert hours.hour_states(START, START, START + 17 * HOUR_MS + 1_800_000, closed) == "x" * 17 + "p" + "c" * 6


def test_hourly_captures_of_a_short_retention_topic_sum_to_the_whole_day():
    at = [START + h * HOUR_MS + 30 * 60_000 for h in (6, 12, 18, 24)]
    store: dict | None = None
    for index, states in enumerate(
        [
            "c" * 6 + "o" + "-" * 17,
            "-" * 6 + "c" * 6 + "o" + "-" * 11,
            "-" * 12 + "c" * 6 + "o" + "-" * 5,
            "-" * 18 + "c" * 6,
        ]
    ):
        # Where the next capture starts reading: the first hour that was open or not read.
        assert hours.read_from_ms(store, START) == START + 6 * index * HOUR_MS
        new = capture(states, RECORDS, BYTES, at[index])
        store = hours.merge(store, new) or store
    assert store is not None
    assert store["hours_captured"] == "c" * 24
    assert (store["records"], store["bytes"]) == (sum(RECORDS), sum(BYTES))
    assert store["peak_ingress_bytes_per_sec"] == BYTES[23] / 3600
    assert store["peak_bucket_start"].endswith("T23:00:00+00:00")
    assert store["avg_ingress_bytes_per_sec"] == sum(BYTES) / 86_400
    assert (store["status"], store["partial"], store["exact"]) == ("measured", False, True)
    assert hours.read_from_ms(store, START) is None  # settled: the next run reads nothing


def test_a_single_read_after_the_day_closed_reports_the_hours_it_never_saw():
    states = "x" * 17 + "p" + "c" * 6
    kept_records = [0] * 17 + [50] + RECORDS[18:]
    kept_bytes = [0] * 17 + [50 * 27] + BYTES[18:]
    row = capture(states, kept_records, kept_bytes, START + DAY_MS + 1)
    assert (row["records"], row["bytes"]) == (sum(kept_records), sum(kept_bytes))
    assert row["partial"] is True
    assert hours.describe_missing(states) == "hours 00-17 UTC were deleted before they were captured whole"
    assert hours.read_from_ms(row, START) is None  # nothing left to recover


def test_a_stored_hour_is_never_replaced_by_a_capture_that_saw_less_of_it():
    full = capture("c" * 24, RECORDS, BYTES, START + DAY_MS + 1)
    truncated = capture("x" * 10 + "c" * 14, [0] * 10 + RECORDS[10:], [0] * 10 + BYTES[10:], START + 2 * DAY_MS)
    merged = hours.merge(full, truncated)
    assert merged is not None and (merged["records"], merged["bytes"]) == (sum(RECORDS), sum(BYTES))
    assert merged["hours_captured"] == "c" * 24 and merged["partial"] is False
    lost = capture("x" * 24, [0] * 24, [0] * 24, START + 3 * DAY_MS)
    lost["status"] = "not_measurable"
    assert hours.merge(full, lost) is None
    error = Measurement(date=DAY.isoformat(), cluster_id="c1", topic="clicks", method=Method.SAMPLING_RECORDS).as_row()
    assert hours.merge(full, error) is None
    assert hours.merge(None, error) == error  # nothing stored: the error is the news


def test_an_open_hour_is_replaced_by_a_later_capture_that_counted_more():
    early = capture(
        "c" * 6 + "o" + "-" * 17, [10] * 6 + [4] + [0] * 17, [100] * 6 + [40] + [0] * 17, START + 6.5 * HOUR_MS
    )
    later = capture(
        "-" * 6 + "o" + "-" * 17, [0] * 6 + [9] + [0] * 17, [0] * 6 + [90] + [0] * 17, START + 6.9 * HOUR_MS
    )
    merged = hours.merge(early, later)
    assert merged is not None and json.loads(merged["hour_records"])[:7] == [10] * 6 + [9]
    assert merged["records"] == 69 and merged["bytes"] == 690


def test_rows_without_hours_keep_the_whole_row_rule():
    metrics = {"status": "measured", "window_seconds": 86_400.0, "hours_captured": ""}
    assert hours.merge(metrics, {"status": "not_measurable", "window_seconds": 86_400.0}) is None
    assert hours.merge(metrics, {"status": "measured", "window_seconds": 3_600.0}) is None
    newer = {"status": "measured", "window_seconds": 86_400.0}
    assert hours.merge(metrics, newer) is newer
    assert hours.read_from_ms({"status": "measured", "day_closed": True}, START) is None
    assert hours.read_from_ms({"status": "measured", "day_closed": False}, START) == START
    assert hours.read_from_ms({"status": "error", "day_closed": True}, START) == START
    assert hours.read_from_ms({"status": "measured", "day_closed": True}, START, force=True) == START


def test_pending_reads_name_only_the_topics_left_to_capture():
    settled = capture("c" * 24, RECORDS, BYTES, START + DAY_MS + 1)
    open_day = {**capture("c" * 6 + "o" + "-" * 17, RECORDS, BYTES, START + 6.5 * HOUR_MS), "topic": "views"}
    pending = hours.pending_reads([settled, open_day], DAY, ["clicks", "views", "new-topic"])
    assert pending == {"views": START + 6 * HOUR_MS, "new-topic": START}
    assert hours.pending_reads([settled], DAY, ["clicks"], force=True) == {"clicks": START}
