"""Known-truth tests on production logs untidier than the tidy workloads, on the real broker:
idle partitions emptied by retention, records stamped years ahead, a producer whose clock runs
fast, history replayed newest day first, an exactly-once replay committed today.

Each truth is computed from the records as produced (`untidy_logs.UntidyLogs.truth`): a topic-day
holds every committed record stamped in it that the log still holds.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from kafka import KafkaProducer

from recommender_pipeline.days import utc_today
from recommender_pipeline.measuring import estimation
from recommender_pipeline.measuring.measurement import Measurement, TopicSpec
from recommender_pipeline.measuring.records import DayMeasurer, SamplingLimits
from recommender_pipeline.resources import build_resources
from recommender_pipeline_testing.untidy_logs import FAR_FUTURE_MS, UntidyLogs, build_untidy_logs, evenly, grow
from recommender_pipeline_testing.workloads import create_topic, produce

# Run on every Kafka version of the matrix: where brokers differ, a test says how and checks each.
pytestmark = pytest.mark.brokers


@pytest.fixture(scope="module")
def untidy(kafka_bootstrap: str) -> UntidyLogs:
    return build_untidy_logs(kafka_bootstrap)


@pytest.fixture
def measure(configure, tmp_path: Path):
    """Measures topic-days with the pipeline's own Kafka clients; `budget` None reads every record."""
    configure()
    kafka = build_resources(str(tmp_path / "no.env"))["kafka"]

    def run(specs: list[TopicSpec], day: date, budget: int | None = None) -> dict[str, Measurement]:
        measurer = DayMeasurer(
            kafka.admin("local"),
            lambda overrides: kafka.consumer("local", overrides),
            day,
            SamplingLimits(budget, 1.0, 20),
        )
        return {row.topic: row for row in measurer.measure(specs)}

    return run


def exact_day(row: Measurement, records: int, size: int) -> tuple:
    return (row.status, row.records, row.bytes, row.exact, row.partial), ("measured", records, size, True, False)


def test_an_idle_partition_emptied_by_retention_leaves_the_day_exact(untidy, measure):
    """idle_mixed: 8,640 records over two partitions yesterday; retention emptied the third
    (log start = log end > 0) of records stamped 9 days ago."""
    day = untidy.day(1)
    row = measure([untidy.spec("idle_mixed")], day)[untidy.topic("idle_mixed")]
    got, wanted = exact_day(row, *untidy.truth("idle_mixed", day))
    assert got == wanted, row.reason
    assert row.hours_captured == "c" * 24
    assert json.loads(row.partition_bytes) == untidy.partition_bytes("idle_mixed", day)


def test_a_topic_idle_all_day_with_emptied_partitions_is_empty_not_unmeasurable(untidy, measure):
    for back in (1, 2):
        row = measure([untidy.spec("idle_all")], untidy.day(back))[untidy.topic("idle_all")]
        assert (row.status, row.records, row.exact) == ("empty", 0, True), row.reason
        assert "retention" in row.reason


@pytest.mark.parametrize("name", ["future_before", "future_inside"])
def test_a_record_stamped_years_ahead_neither_ends_nor_empties_a_day(untidy, measure, name):
    day = untidy.day(1)
    row = measure([untidy.spec(name)], day)[untidy.topic(name)]
    got, wanted = exact_day(row, *untidy.truth(name, day))
    assert got == wanted, row.reason
    assert row.future_records == 1
    assert "1 record stamped in the future" in row.reason
    # Every other day too: the record never counts, and never makes a day look empty of what it held.
    for back in (2, 0):
        other = measure([untidy.spec(name)], untidy.day(back))[untidy.topic(name)]
        assert (other.status, other.records) == ("empty", 0), other.reason


def test_a_producer_whose_clock_runs_30_minutes_fast_loses_no_record_of_the_day(untidy, measure):
    day = untidy.day(2)
    row = measure([untidy.spec("fast_clock")], day)[untidy.topic("fast_clock")]
    records, size = untidy.truth("fast_clock", day)
    assert records == 17_280
    assert exact_day(row, records, size)[0] == exact_day(row, records, size)[1], row.reason


def test_history_replayed_newest_day_first_counts_every_day_whole(untidy, measure):
    for back in (3, 2, 1):
        day = untidy.day(back)
        row = measure([untidy.spec("replayed")], day)[untidy.topic("replayed")]
        records, size = untidy.truth("replayed", day)
        assert records == 3_000
        got, wanted = exact_day(row, records, size)
        assert got == wanted, f"{day}: {row.reason}"


@pytest.fixture
def sampling_small_days(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test days are small enough that reading them whole is cheaper: sample them anyway."""
    monkeypatch.setattr(estimation, "RECORDS_PER_ROUND_TRIP", 0)


def test_a_sampled_day_with_a_record_stamped_years_ahead_at_noon_is_estimated_whole(
    untidy, measure, sampling_small_days
):
    day = untidy.day(1)
    row = measure([untidy.spec("sampled_future")], day, budget=2_000)[untidy.topic("sampled_future")]
    records, size = untidy.truth("sampled_future", day)
    assert row.exact is False and row.status == "measured"
    assert row.sampled_records < records / 3
    # Sizes and density are constant, so the sample misses only the one record placed in no day.
    assert (row.records, row.bytes) == (pytest.approx(records, abs=1), pytest.approx(size, abs=40))
    assert row.future_records <= 1


def test_an_exactly_once_replay_committed_today_has_no_late_records_when_sampled(untidy, measure, sampling_small_days):
    """30,000 records stamped yesterday, committed today in 30 transactions: the markers carry
    today's clock and answer the broker's lookup of yesterday's end; no record is late."""
    day = untidy.day(1)
    spec = untidy.spec("eos_replay")
    whole = measure([spec], day)[spec.topic]
    assert (whole.records, whole.late_records) == (untidy.truth("eos_replay", day)[0], 0)
    sampled = measure([spec], day, budget=2_000)[spec.topic]
    assert sampled.exact is False
    assert sampled.late_records == 0
    assert sampled.records == pytest.approx(whole.records, rel=0.02)


@pytest.mark.parametrize("measured", ["each day as it came", "all after the topic grew"])
def test_a_balanced_topic_grown_from_1_to_6_partitions_is_not_called_skewed(
    configure, pipeline, prefix, kafka_bootstrap, measured
):
    """Two days on one partition, then the team added five (as the tool recommended), then a day
    balanced over six: the window ending that day is balanced, with six effective partitions."""
    topic = f"{prefix}.grown"
    d3, d2, d1 = (utc_today() - timedelta(days=back) for back in (3, 2, 1))
    create_topic(kafka_bootstrap, topic, 1)
    produce(kafka_bootstrap, topic, evenly(d3, 1_200) + evenly(d2, 1_200))
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=3)
    assert pipeline.inventory().success
    if measured == "each day as it came":
        assert pipeline.measure(d3).success and pipeline.measure(d2).success
    grow(kafka_bootstrap, topic, 6)
    produce(kafka_bootstrap, topic, evenly(d1, 1_200, partitions=6))
    assert pipeline.inventory().success
    for day in (d3, d2, d1):
        assert pipeline.measure(day).success
    result = pipeline.recommend(d1)
    assert result.success
    row = result.output_for_node("topic_recommendations").set_index("topic_name").loc[topic]
    assert (row["records_in_window"], row["number_of_partitions"]) == (3_600, 6)
    assert row["partition_skew"] == pytest.approx(1.0)
    assert row["effective_partitions"] == pytest.approx(6.0)
    assert (row["hot_partition_ingress"], row["hot_key"]) == ("no", "no")


def test_a_record_stamped_years_ahead_on_a_topic_with_the_brokers_defaults(
    kafka_bootstrap, kafka_version, prefix, measure
):
    """Kafka 4 refuses CreateTime more than an hour ahead by default (log.message.timestamp.after.max.ms,
    KIP-1030): the producer is told INVALID_TIMESTAMP and the day is exact. Kafka 3 takes it: the
    record reaches the log, counts in no day, and the day says so."""
    day = utc_today() - timedelta(days=1)
    spec = TopicSpec("local", f"{prefix}.defaults", 1, 7 * 86_400_000, False)
    create_topic(kafka_bootstrap, spec.topic, 1)
    stamped = evenly(day, 600)
    produce(kafka_bootstrap, spec.topic, stamped[:300])
    errors = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": False, "retries": 0})
    now = int(datetime.now(UTC).timestamp() * 1000)
    producer.produce(
        spec.topic, b"f" * 30, timestamp=now + FAR_FUTURE_MS, on_delivery=lambda error, _: errors.append(error)
    )
    producer.flush(30)
    produce(kafka_bootstrap, spec.topic, stamped[300:])
    row = measure([spec], day)[spec.topic]
    got, wanted = exact_day(row, 600, sum(r.size for r in stamped))
    assert got == wanted, row.reason
    if kafka_version >= (4,):
        assert [error.code() for error in errors] == [KafkaError.INVALID_TIMESTAMP]
        assert row.future_records == 0, row.reason
    else:
        assert errors == [None]
        assert row.future_records == 1
        assert "1 record stamped in the future" in row.reason


def produce_without_timestamps(bootstrap: str, topic: str, count: int) -> None:
    """Records in message format v0, which has no timestamp: what a client older than Kafka 0.10
    writes. Kafka 3.x still takes them and stores them with the timestamp -1."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=(0, 9))
    for index in range(count):
        producer.send(topic, b"old-client-%04d" % index, partition=0)
    producer.flush()
    producer.close()


def test_records_without_timestamps_are_never_taken_for_an_empty_day(kafka_bootstrap, kafka_version, prefix, measure):
    if kafka_version >= (4,):
        pytest.skip("Kafka 4 refuses message format v0 (KIP-896): no record without a timestamp reaches its log")
    day = utc_today() - timedelta(days=1)
    blind = TopicSpec("local", f"{prefix}.blind", 1, 7 * 86_400_000, False)
    mixed = TopicSpec("local", f"{prefix}.mixed", 1, 7 * 86_400_000, False)
    for spec in (blind, mixed):
        create_topic(kafka_bootstrap, spec.topic, 1)
    produce_without_timestamps(kafka_bootstrap, blind.topic, 200)
    stamped = evenly(day, 600)
    produce(kafka_bootstrap, mixed.topic, stamped[:300])
    produce_without_timestamps(kafka_bootstrap, mixed.topic, 50)
    produce(kafka_bootstrap, mixed.topic, stamped[300:])
    rows = measure([blind, mixed], day)
    row = rows[blind.topic]
    assert (row.status, row.records, row.exact) == ("not_measurable", 0, False)
    assert "hold only records without timestamps" in row.reason
    row = rows[mixed.topic]
    assert (row.status, row.records, row.bytes) == ("measured", 600, sum(r.size for r in stamped))
    assert (row.untimestamped_records, row.exact) == (50, False)
    assert "50 records without a timestamp" in row.reason
