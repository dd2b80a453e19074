"""The recommendation arithmetic with plain numbers: capacity, seed, windows and summaries."""

from datetime import date

import pandas as pd
import pytest

from recommender_pipeline.days import unmeasurable_reason, window_days, window_length_days
from recommender_pipeline.outputs.reporting import summary_rows
from recommender_pipeline.recommending.model import capacity_recommendation, seed_recommendation
from recommender_pipeline.settings import MIB, RecommendationModel, Settings

DAY_MS = 86_400_000


def settings(**fields) -> Settings:
    """Defaults plus overrides, without reading the environment."""
    return Settings.model_construct(**fields)


def test_capacity_worked_example_from_the_original_readme():
    # 1.22 GB/s required (taken as 1,250 MB/s), 25 MB/s per consumer -> ceil(1250 / 25) = 50 partitions.
    s = settings(
        required_throughput_factor=1.0,
        min_consumption_throughput=0.0,
        consumer_throughput_per_partition=25e6,
        producer_throughput_per_partition=50e6,  # producers are not the limit here
    )
    result = capacity_recommendation(1.25e9, current_partitions=12, settings=s)
    assert (result.recommended_partitions, result.binding, result.action) == (50, "consumer_throughput", "increase")
    assert result.required_bytes_per_sec == 1.25e9


def test_capacity_rounds_up_and_scales_with_the_peak():
    s = settings(
        required_throughput_factor=3.0,
        consumer_throughput_per_partition=10 * MIB,
        min_consumption_throughput=0.0,
        min_recommended_partitions=1,
    )
    counts = [capacity_recommendation(peak * MIB, 1, s).recommended_partitions for peak in (1, 3.4, 3.34, 10, 40)]
    assert counts == [1, 2, 2, 3, 12]  # ceil(3 x peak / 10), never rounded down


def test_capacity_floors_name_the_binding_term():
    s = settings()  # factor 3, floor 10 MiB/s, consumer 10 MiB/s, minimum 6 partitions
    quiet = capacity_recommendation(1_000.0, 6, s)
    assert (quiet.recommended_partitions, quiet.binding, quiet.action) == (6, "min_recommended_partitions", "keep")
    floor = capacity_recommendation(1_000.0, 1, settings(min_recommended_partitions=1))
    assert (floor.recommended_partitions, floor.binding) == (1, "min_consumption_throughput")
    assert floor.required_bytes_per_sec == 10 * MIB


@pytest.mark.parametrize(("current", "action"), [(3, "increase"), (6, "keep"), (11, "keep"), (12, "over-provisioned")])
def test_more_partitions_than_needed_is_keep_or_over_provisioned_never_a_decrease(current, action):
    result = capacity_recommendation(100.0, current, settings())
    assert result.recommended_partitions == 6
    assert result.action == action


def test_seed_reproduces_the_original_readme_sample():
    s = settings(required_throughput_factor=10.0)
    trades = seed_recommendation(83.43, 540_995, 6, s)
    totals = seed_recommendation(35.458, 548_603, 6, s)
    assert trades.recommended_partitions == 10 and totals.recommended_partitions == 10
    assert trades.consumer_bytes_per_sec / MIB == pytest.approx(43.045, abs=1e-3)
    assert trades.required_bytes_per_sec / MIB == pytest.approx(430.45, abs=1e-2)
    assert seed_recommendation(83.43, 4_133, 6, s).recommended_partitions == 6  # below 10 MiB: the minimum


def test_seed_keeps_python_round_and_zero_for_no_records():
    assert seed_recommendation(100.0, 10**6, 1, settings(required_throughput_factor=2.5)).recommended_partitions == 2
    assert seed_recommendation(100.0, 10**6, 1, settings(required_throughput_factor=3.5)).recommended_partitions == 4
    assert seed_recommendation(100.0, 0, 1, settings()).recommended_partitions == 0


def _recommendations(rows):
    base = {
        "method": "sampling_records",
        "hot_partition_ingress": "no",
        "hot_partition_egress": "n/a",
        "window_end": "2026-11-28",
        "action": "increase",
        "records_in_window": 0,
    }
    return pd.DataFrame([{**base, **row} for row in rows])


def test_seed_summary_reproduces_the_original_readme_sample():
    frame = _recommendations(
        [
            {"status": "active", "number_of_partitions": 6, "recommended_partitions": 10, "retained_records": 540_995},
            {"status": "active", "number_of_partitions": 6, "recommended_partitions": 10, "retained_records": 548_603},
        ]
    )
    stats = dict(
        summary_rows(
            frame, settings(recommendation_model=RecommendationModel.SEED, required_throughput_factor=10.0), 0.0
        )
    )
    assert stats["total_recommended_partitions"] == 20
    assert stats["active_total_partition_count"] == 12
    assert stats["percentage_increase"] == pytest.approx(66.66666666666666)
    assert stats["percentage_decrease"] == 0.0
    assert stats["total_records"] == 1_089_598
    assert stats["average_recommended_partitions_per_topic"] == 10.0


def test_capacity_summary_counts_partitions_to_add_and_spare_separately():
    frame = _recommendations(
        [
            {"status": "active", "number_of_partitions": 3, "recommended_partitions": 6, "retained_records": 0},
            {"status": "active", "number_of_partitions": 24, "recommended_partitions": 6, "retained_records": 0},
            {"status": "empty", "number_of_partitions": 1, "recommended_partitions": 6, "retained_records": 0},
        ]
    )
    stats = dict(summary_rows(frame, settings(), 0.0))
    assert stats["active_total_partition_count"] == 27
    assert stats["percentage_increase"] == pytest.approx(3 / 27 * 100)  # 3 partitions to add
    assert stats["percentage_decrease"] == pytest.approx(18 / 27 * 100)  # 18 spare, never removed
    assert stats["active_average_partitions_per_topic"] == 13.5  # active partitions / active topics
    assert stats["average_partitions_per_topic"] == pytest.approx(28 / 3)


@pytest.mark.parametrize(
    ("retention_ms", "days"), [(None, 7), (-1, 7), (12 * 3_600_000, 1), (36 * 3_600_000, 1), (3 * DAY_MS, 3)]
)
def test_window_is_sampling_days_capped_by_retention_and_at_least_one_day(retention_ms, days):
    assert window_length_days(7, retention_ms) == days
    assert window_length_days(30, 7 * DAY_MS) == 7


def test_window_days_end_on_the_day_and_only_a_day_not_begun_is_unmeasurable_by_date():
    assert window_days(date(2026, 3, 2), 3) == [date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2)]
    noon = int(pd.Timestamp("2026-03-02T12:00:00Z").timestamp() * 1000)
    assert unmeasurable_reason(date(2026, 3, 2), noon) is None  # open, measured up to now
    assert unmeasurable_reason(date(2026, 2, 1), noon) is None  # the log says what is left of it
    assert unmeasurable_reason(date(2026, 3, 3), noon) == "the day has not started yet"


def test_metrics_api_hot_partition_flags_reach_the_window_from_a_boolean_column():
    from recommender_pipeline.recommending.topic_window import build_recommendations

    inventory = pd.DataFrame(
        [{"cluster_id": "c", "topic": "t", "partitions": 2, "retention_ms": -1, "is_compacted": False}]
    )
    day = {
        "cluster_id": "c",
        "topic": "t",
        "method": "metrics_api",
        "status": "measured",
        "reason": "",
        "records": 10,
        "bytes": 1000,
        "window_seconds": 86_400.0,
        "partition_bytes": "[900,100]",
        "peak_ingress_bytes_per_sec": 2.0,
        "retained_records": 0,
        "exact": True,
        "egress_bytes": 500,
        "duration_seconds": 0.1,
    }
    measurements = pd.DataFrame(
        [
            {**day, "date": "2026-03-01", "hot_partition_ingress": False, "hot_partition_egress": False},
            {**day, "date": "2026-03-02", "hot_partition_ingress": True, "hot_partition_egress": False},
        ]
    )
    row = build_recommendations(inventory, measurements, date(2026, 3, 2), settings(sampling_days=2)).iloc[0]
    assert (row["hot_partition_ingress"], row["hot_partition_egress"]) == ("yes", "no")
    assert row["egress_bytes_in_window"] == 1000
