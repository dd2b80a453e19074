"""One peak definition (PEAK_BUCKET_SECONDS) in record sampling: buckets by record timestamp,
the busiest one's rate, and buckets merging hour by hour like the captures they came from."""

import json
from datetime import date

from recommender_pipeline.days import day_start_ms
from recommender_pipeline.measuring.attribution import DayTally
from recommender_pipeline.measuring.hours import fine_peak, merge
from recommender_pipeline.settings import Settings

DAY = "2026-11-30"
START = day_start_ms(date.fromisoformat(DAY))


def test_a_tally_buckets_bytes_by_record_timestamp():
    tally = DayTally(START, bucket_ms=300_000)
    for second, size in [(0, 10), (299, 5), (300, 7), (3_599, 1), (86_399, 2), (86_400, 99)]:
        tally.add(START + second * 1000, size)
    assert tally.bucket_bytes == {0: 15, 1: 7, 11: 1, 287: 2}  # the next day's record is not counted
    assert tally.hour_bytes[0] == 23 and DayTally(START).bucket_bytes == {}  # hourly: no fine buckets


def test_the_busiest_bucket_rate_and_start():
    assert fine_peak({3: 600, 40: 900, 41: 900}, 300, START) == (
        3.0,
        "2026-11-30T03:20:00+00:00",  # the first of two equal buckets: 40 x 300 s after midnight
        json.dumps({"3": 600, "40": 900, "41": 900}),
    )
    assert fine_peak({}, 60, START)[:2] == (0.0, None)


def _row(states: str, hour_bytes: list[int], buckets: dict[int, int], at: str) -> dict:
    return {
        "date": DAY,
        "status": "measured",
        "reason": "",
        "window_seconds": 86_400.0,
        "hours_captured": states,
        "hour_records": json.dumps([1 if b else 0 for b in hour_bytes]),
        "hour_bytes": json.dumps(hour_bytes),
        "bucket_seconds": 300,
        "bucket_bytes": json.dumps({str(k): v for k, v in buckets.items()}),
        "measured_at": at,
        "exact": True,
        "bytes": sum(hour_bytes),
        "partition_bytes": "[0]",
        "skew": 1.0,
    }


def test_fine_buckets_merge_with_their_hours_and_give_the_merged_peak():
    # The first capture read hours 0-11 (hour 1 busy in one 5-minute burst), the second 12-23.
    first = _row("c" * 12 + "-" * 12, [100] + [3_000] + [100] * 10 + [0] * 12, {0: 100, 12: 3_000}, "t1")
    second = _row("-" * 12 + "c" * 12, [0] * 12 + [2_000] * 12, {144 + 12 * h: 2_000 for h in range(12)}, "t2")
    merged = merge(first, second)
    assert merged["peak_ingress_bytes_per_sec"] == 3_000 / 300  # hour 1's burst, from the first capture
    assert merged["peak_bucket_start"] == "2026-11-30T01:00:00+00:00"
    assert merged["bucket_seconds"] == 300 and len(json.loads(merged["bucket_bytes"])) == 14
    # A capture without fine buckets (a sampled day) leaves the hourly peak.
    hourly = dict(second, bucket_bytes="", bucket_seconds=3600)
    merged = merge(first, hourly)
    assert (merged["bucket_seconds"], merged["peak_ingress_bytes_per_sec"]) == (3600, 3_000 / 3600)


def test_only_widths_both_methods_can_bucket_are_accepted():
    assert Settings.model_validate({"PEAK_BUCKET_SECONDS": "300"}).peak_bucket_seconds == 300
    assert Settings.model_validate({}).peak_bucket_seconds == 3600
