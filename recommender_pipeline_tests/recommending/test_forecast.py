"""The forecast: Theil-Sen's trend of daily peaks, projected FORECAST_DAYS ahead, on known growth.

The unit tests fit series whose slope is known; the integration test produces 14 days of traffic
growing by a known number of records a day on the real broker, measures every day, and checks
the slope and the forecast recommendation against the numbers produced.
"""

import math
import random
from datetime import date, timedelta

import pytest

from recommender_pipeline.days import utc_today
from recommender_pipeline.recommending.forecast import MIN_FIT_DAYS, fit_trend
from recommender_pipeline_testing.workloads import Record, at, create_topic, produce

START = date(2026, 11, 1)


def test_a_steady_growth_is_recovered_exactly_despite_outliers():
    peaks = {START + timedelta(days=d): 1_000.0 + 250.0 * d for d in range(14)}
    peaks[START + timedelta(days=5)] = 90_000.0  # an incident day
    peaks[START + timedelta(days=9)] = 10.0  # a half-captured day
    trend = fit_trend(peaks)
    assert (trend.slope, trend.days, trend.first_day, trend.last_day) == (250.0, 14, START, START + timedelta(13))
    assert trend.project(4_250.0, 30) == 4_250.0 + 250.0 * 30


def test_noise_around_a_known_slope_stays_close_and_a_decline_is_not_clamped_until_zero():
    rng = random.Random(3)
    peaks = {START + timedelta(days=d): 5_000.0 + 40.0 * d + rng.uniform(-30, 30) for d in range(28)}
    assert fit_trend(peaks).slope == pytest.approx(40.0, abs=4.0)
    falling = fit_trend({START + timedelta(days=d): 1_000.0 - 100.0 * d for d in range(8)})
    assert falling.slope == -100.0 and falling.project(300.0, 2) == 100.0 and falling.project(300.0, 30) == 0.0


def test_too_few_days_give_no_trend():
    assert fit_trend({START + timedelta(days=d): float(d) for d in range(MIN_FIT_DAYS - 1)}) is None


def test_fourteen_days_of_known_growth_on_the_broker_give_the_slope_and_the_forecast(
    configure, pipeline, prefix, kafka_bootstrap
):
    """Day d (0..13 before yesterday's end) carries 3600 + 360 x d records of 1,000 bytes in its
    hour 12: a peak of (3600 + 360 d) x 1000 / 3600 = 1,000 + 100 d bytes/s, growing 100 B/s a day."""
    topic = f"{prefix}.growing"
    # Kept for ever: under the default 7-day retention the broker may delete the first week's
    # segment while the test runs (it did once in CI), and those days would rightly not be exact.
    create_topic(kafka_bootstrap, topic, 1, {"retention.ms": "-1"})
    last = utc_today() - timedelta(days=1)
    days = [last - timedelta(days=13 - d) for d in range(14)]
    records = []
    for d, day in enumerate(days):
        count = 3_600 + 360 * d
        step = 3_600_000 / count
        records += [Record(at(day, 12) + int(i * step), b"g" * 1_000) for i in range(count)]
    produce(kafka_bootstrap, topic, records)
    configure(
        TOPIC_FILTER=topic,
        SAMPLING_DAYS=7,
        SAMPLING_BATCH_SIZE="",
        FORECAST_DAYS=30,
        REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR=1,
        MIN_CONSUMPTION_THROUGHPUT=0,
        MIN_RECOMMENDED_PARTITIONS=1,
        PRODUCER_THROUGHPUT_PER_PARTITION=500,
        CONSUMER_THROUGHPUT_PER_PARTITION=500,
    )
    assert pipeline.inventory().success
    for day in days:
        assert pipeline.measure(day).success
    result = pipeline.recommend(last)
    assert result.success
    row = result.asset_value("topic_recommendations").set_index("topic_name").loc[topic]
    peak = 1_000 + 100 * 13  # the window's busiest day is the last
    assert row["peak_ingress_bytes_per_sec"] == pytest.approx(peak)
    assert (row["trend_fit_days"], row["forecast_days"]) == (14, 30)
    assert row["trend_slope_bytes_per_sec_per_day"] == pytest.approx(100.0, rel=1e-9)
    assert row["forecast_peak_ingress_bytes_per_sec"] == pytest.approx(peak + 30 * 100.0)
    assert row["recommended_partitions"] == math.ceil(peak / 500)  # 5 now
    assert row["forecast_recommended_partitions"] == math.ceil((peak + 3_000) / 500)  # 11 in 30 days
    assert "forecast: 11 partitions in 30 days" in row["reason"]
