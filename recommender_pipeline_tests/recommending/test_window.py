"""A topic's window from its stored days: intervals, partial days and the Metrics API's flags,
on frames shaped as the store returns them (nullable columns where a day has NULLs). No broker."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pandas as pd
import pytest

from recommender_pipeline.measuring.measurement import Measurement, Method, Status, TopicSpec
from recommender_pipeline.recommending.partition_shape import partitions_by_day
from recommender_pipeline.recommending.topic_window import topic_window
from recommender_pipeline.settings import PartitionRounding, Settings

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
    # The window's peak is its busiest day's (`estimation.busiest_of`): here 6.0, the days too far
    # apart for their noise to shrink them; its interval reaches the largest high, 6.5, and down
    # to what either estimated day could be, given their noise.
    assert result["peak_ingress_bytes_per_sec"] == 6.0
    assert result["peak_ci_high"] == 6.5
    assert 4.0 < result["peak_ci_low"] < 5.5
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


def grown_window(before: str, partitions_now: int = 6, peak: float = 1e6) -> dict:
    """Four days: two with `before` as their partition bytes, then two balanced over 6 partitions."""
    rows = [
        day(back, records=6, bytes=6_000, partition_bytes=before, peak_ingress_bytes_per_sec=peak) for back in (3, 2)
    ]
    rows += [
        day(
            back,
            records=6,
            bytes=6_000,
            partition_bytes="[1000,1000,1000,1000,1000,1000]",
            peak_ingress_bytes_per_sec=peak,
        )
        for back in (1, 0)
    ]
    inventory = INVENTORY.copy()
    inventory["partitions"] = partitions_now
    settings = Settings.model_construct(sampling_days=4, hot_partition_skew=2.0)
    return topic_window(inventory, pd.DataFrame(rows), END, settings)


@pytest.mark.parametrize(
    "before",
    [
        "[6000]",  # measured each day while the topic had one partition
        "[6000,0,0,0,0,0]",  # measured after it grew: the new partitions show nothing on the old days
    ],
)
def test_a_balanced_topic_grown_from_1_to_6_partitions_stays_balanced(before):
    result = grown_window(before)
    assert result["partition_skew"] == pytest.approx(1.0)
    assert result["effective_partitions"] == pytest.approx(6.0)
    assert result["busiest_partition_share"] == pytest.approx(1 / 6)
    assert (result["hot_partition_ingress"], result["hot_key"]) == ("no", "no")
    assert "the 2 of 4 days on which the topic had 6 partitions" in result["reason"]


def test_a_skewed_topic_stays_skewed_and_a_cold_partition_is_not_taken_for_a_new_one():
    rows = [day(back, records=3, bytes=1_000, partition_bytes="[900,100,0]") for back in range(3)]
    result = window(rows)
    assert result["effective_partitions"] == pytest.approx(1 / (0.9**2 + 0.1**2))
    assert (result["partition_skew"], result["hot_partition_ingress"]) == (pytest.approx(2.7), "yes")


def test_partitions_by_day_sees_partitions_added_after_a_day():
    days = [[5.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0], [5.0, 4.0, 0.0, 3.0], [5.0, 4.0, 2.0, 3.0]]
    assert partitions_by_day(days) == [1, 1, 4, 4]
    assert partitions_by_day([[5.0, 0.0], [5.0, 0.0]]) == [2, 2]  # a cold partition was always there


def test_a_topic_idle_all_window_keeps_its_partitions_and_gets_no_increase():
    rows = [day(back, status=Status.EMPTY, records=0, bytes=0, partition_bytes="[0]") for back in range(3)]
    inventory = INVENTORY.copy()
    inventory["partitions"] = 1
    result = topic_window(inventory, pd.DataFrame(rows), END, Settings.model_construct(sampling_days=3))
    assert (result["status"], result["action"], result["recommended_partitions"], result["binding"]) == (
        "empty",
        "keep",
        1,
        "idle",
    )
    assert result["reason"].startswith("idle: no record in the window's 3 measured days")


def test_consumers_not_observed_are_unknown_and_the_reason_says_which_terms_were_not_weighed():
    rows = [day(back, records=10, bytes=1_000, partition_bytes="[400,300,300]") for back in range(3)]
    result = window(rows)  # no topic_profiles in the window
    unknown = ("consumer_groups", "largest_group_members", "idle_members", "fan_out", "fan_out_term")
    assert [result[name] for name in (*unknown, "consumer_group_term")] == [None] * 6
    assert "consumers not observed" in result["reason"]
    assert "fan_out and consumer_group term(s) could not be weighed" in result["reason"]
    observed = pd.DataFrame(
        [
            {
                "date": END.isoformat(),
                "consumer_groups": "[]",
                "key_sampled_records": 0,
                "keyed_records": 0,
                "top_key_share": None,
                "key_hashes": "[]",
            }
        ]
    )
    frame = pd.DataFrame(rows)
    seen = topic_window(INVENTORY, frame, END, Settings.model_construct(sampling_days=3), observed)
    assert (seen["consumer_groups"], seen["fan_out"], seen["fan_out_term"]) == (0, 0.0, 0)
    assert "consumers not observed" not in seen["reason"]


def test_a_partial_day_that_was_not_sampled_is_not_called_estimated():
    rows = [day(back, records=10, bytes=1_000, exact=back != 1, partial=back == 1) for back in range(3)]
    assert "estimated from a sample" not in window(rows)["reason"]
    rows[0]["estimated"] = True
    assert f"estimated from a sample (SAMPLING_BATCH_SIZE) on {END}" in window(rows)["reason"]


def test_a_flat_trend_gives_no_forecast_line_when_partition_rounding_is_on():
    """A peak needing 7 partitions, rounded to 9 on 3 brokers: the flat forecast is 9 too, not growth."""
    rows = [day(back, records=10, bytes=1_000, peak_ingress_bytes_per_sec=700.0) for back in range(6)]
    inventory = INVENTORY.copy()
    inventory["cluster_brokers"] = 3
    settings = Settings.model_construct(
        sampling_days=3,
        partition_rounding=PartitionRounding.BROKERS,
        required_throughput_factor=1.0,
        min_consumption_throughput=0.0,
        consumer_throughput_per_partition=100.0,
        producer_throughput_per_partition=100.0,
        forecast_days=30,
    )
    result = topic_window(inventory, pd.DataFrame(rows), END, settings)
    assert (result["needed_partitions"], result["recommended_partitions"]) == (7, 9)
    assert result["forecast_recommended_partitions"] == 9
    assert "forecast:" not in result["reason"]
