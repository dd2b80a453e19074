"""A topic's window from its stored days: intervals, partial days and the Metrics API's flags,
on frames shaped as the store returns them (nullable columns where a day has NULLs). No broker."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pandas as pd
import pytest

from recommender_pipeline.measuring.measurement import Measurement, Method, Status, TopicSpec
from recommender_pipeline.settings import Settings
from recommender_pipeline.topic_window import topic_window

END = date(2026, 11, 20)
SPEC = TopicSpec("c1", "orders", 3, None, False)
INVENTORY = pd.Series(
    {"cluster_id": "c1", "topic": "orders", "partitions": 3, "retention_ms": None, "is_compacted": False}
)


def day(back: int, method: Method = Method.SAMPLING_RECORDS, **values: object) -> dict:
    row = Measurement.planned(SPEC, END - timedelta(days=back), 0, method)
    row.status, row.day_closed, row.window_seconds = Status.MEASURED, True, 86_400.0
    for name, value in values.items():
        setattr(row, name, value)
    return row.as_row()


def window(rows: list[dict]) -> dict:
    frame = pd.DataFrame(rows)
    for column in ("hot_partition_ingress", "hot_partition_egress", "partial"):
        frame[column] = pd.array(frame[column], dtype="boolean")  # NULLs, as the store reads them
    return topic_window(INVENTORY, frame, END, Settings.model_construct(sampling_days=3))


def test_window_intervals_combine_sampled_and_exact_days():
    rows = [
        day(
            2,
            records=100,
            bytes=10_000,
            peak_ingress_bytes_per_sec=5.0,
            bytes_ci_low=9_000.0,
            bytes_ci_high=11_000.0,
            peak_ci_low=4.0,
            peak_ci_high=6.5,
            exact=False,
        ),
        day(
            1,
            records=100,
            bytes=20_000,
            peak_ingress_bytes_per_sec=6.0,
            bytes_ci_low=19_000.0,
            bytes_ci_high=21_000.0,
            peak_ci_low=5.5,
            peak_ci_high=6.2,
            exact=False,
            partial=True,
        ),
        day(
            0,
            records=10,
            bytes=1_000,
            peak_ingress_bytes_per_sec=1.0,
            bytes_ci_low=1_000.0,
            bytes_ci_high=1_000.0,
            peak_ci_low=1.0,
            peak_ci_high=1.0,
        ),
    ]
    result = window(rows)
    half = math.sqrt(1_000**2 + 1_000**2)  # independent days: half-widths add in quadrature
    assert result["bytes_in_window"] == 31_000
    assert (result["bytes_ci_low"], result["bytes_ci_high"]) == pytest.approx((31_000 - half, 31_000 + half))
    # The window's peak is its busiest day's: the largest low and the largest high bound it.
    assert result["peak_ingress_bytes_per_sec"] == 6.0
    assert (result["peak_ci_low"], result["peak_ci_high"]) == (5.5, 6.5)
    assert result["days_partial"] == 1
    assert result["exact"] is False


def test_metrics_api_hot_partition_flag_survives_a_null_day_in_the_window():
    rows = [
        day(2, Method.METRICS_API, records=5, bytes=50, hot_partition_ingress=None, hot_partition_egress=None),
        day(1, Method.METRICS_API, records=5, bytes=50, hot_partition_ingress=True, hot_partition_egress=False),
        day(0, Method.METRICS_API, records=5, bytes=50, hot_partition_ingress=False, hot_partition_egress=True),
    ]
    result = window(rows)
    assert (result["hot_partition_ingress"], result["hot_partition_egress"]) == ("yes", "yes")
    cold = window([day(b, Method.METRICS_API, records=5, bytes=50, hot_partition_ingress=None) for b in range(3)])
    assert cold["hot_partition_ingress"] == "no"


def test_a_day_whose_hours_were_deleted_before_capture_is_named_in_the_window():
    rows = [
        day(2, records=5, bytes=50, hours_captured="c" * 24),
        day(1, records=5, bytes=50, partial=True, hours_captured="x" * 6 + "p" + "c" * 17),
        day(0, records=5, bytes=50, hours_captured=""),  # the Metrics API, or a row from before hours
    ]
    result = window(rows)
    assert result["days_partial"] == 1
    expected = f"partly deleted before capture: {END - timedelta(days=1)} (hours 00-06 UTC were deleted"
    assert expected in result["reason"]


@pytest.mark.parametrize(("partition_bytes", "hot"), [("[200,100,0]", "yes"), ("[199,100,1]", "no")])
def test_hot_partition_skew_is_yes_at_the_threshold_and_no_just_below(partition_bytes, hot):
    # Mean 100 B per partition: the busiest holds 2.00x (at HOT_PARTITION_SKEW=2) or 1.99x of it.
    result = window([day(b, records=3, bytes=300, partition_bytes=partition_bytes) for b in range(3)])
    assert result["hot_partition_ingress"] == hot
    assert result["hot_partition_egress"] == "n/a"  # record sampling does not see consumers
