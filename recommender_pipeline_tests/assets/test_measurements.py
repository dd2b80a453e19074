"""Day x topic measurements on the real broker, run through Dagster, against known truth."""

import json
import time

import dagster as dg
import pytest

from recommender_pipeline.days import day_start_ms
from recommender_pipeline.measuring import estimation
from recommender_pipeline_testing.known_truth import Dataset, count_received, in_interval


@pytest.fixture
def measured(dataset: Dataset, configure, pipeline):
    """The dataset's three days measured in full (exact mode); `pipeline.clock` holds each day's
    wall-clock (start, end) of its run, an oracle independent of what the code reports."""
    configure(TOPIC_FILTER=dataset.prefix, SAMPLING_DAYS=3, SAMPLING_BATCH_SIZE="")
    assert pipeline.inventory().success
    pipeline.clock = {}
    for day in dataset.days:
        started = time.time()
        result = pipeline.measure(day)
        pipeline.clock[day] = (started, time.time())
        assert result.success, f"measurement of {day} failed"
    return pipeline


def test_day_counts_sizes_and_rates_match_what_was_produced(dataset, measured):
    for day in dataset.days:
        truth = dataset.day("multi", day)
        row = measured.measurement(day, dataset.topic("multi"))
        assert row["status"] == "measured"
        assert bool(row["exact"]) is True
        assert row["records"] == truth.records
        assert row["bytes"] == truth.bytes
        assert row["mean_record_bytes"] == pytest.approx(truth.bytes / truth.records, rel=1e-12)
        assert row["peak_ingress_bytes_per_sec"] == pytest.approx(truth.peak_bytes_per_sec, rel=1e-12)
        assert json.loads(row["partition_bytes"]) == [truth.partition_bytes.get(p, 0) for p in range(3)]
    d2, d1, d0 = dataset.days
    closed = measured.measurement(d2, dataset.topic("multi"))
    # D-2 carried 300 records of 108 bytes and 900 of 60: 86,400 bytes, so exactly 1 B/s on average,
    # with its busiest hour (15:00) at 54,000 bytes = 15 B/s, all on partition 0 (skew 2.25).
    assert (closed["records"], closed["bytes"]) == (1200, 86_400)
    assert closed["avg_ingress_bytes_per_sec"] == pytest.approx(1.0, rel=1e-12)
    assert closed["peak_ingress_bytes_per_sec"] == pytest.approx(15.0, rel=1e-12)
    assert closed["peak_bucket_start"].endswith("T15:00:00+00:00")
    assert closed["skew"] == pytest.approx(64_800 / 28_800)
    assert bool(closed["day_closed"]) is True
    today = measured.measurement(d0, dataset.topic("multi"))
    assert bool(today["day_closed"]) is False
    # Measured up to some moment of its run: bytes over the seconds from midnight to then.
    started, ended = measured.clock[d0]
    since_midnight = [moment - day_start_ms(d0) / 1000 for moment in (started, ended)]
    assert since_midnight[0] <= today["window_seconds"] <= since_midnight[1]
    assert 120 * 80 / since_midnight[1] <= today["avg_ingress_bytes_per_sec"] <= 120 * 80 / since_midnight[0]
    assert measured.measurement(d1, dataset.topic("multi"))["records"] == 600
    # Each topic-day is its own materialized partition, with its numbers for the UI's plots.
    key = dg.MultiPartitionKey({"date": d2.isoformat(), "topic": f"local/{dataset.topic('multi')}"})
    records = measured.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("topic_measurements"), asset_partitions=[str(key)]), limit=1
    ).records
    metadata = records[0].asset_materialization.metadata
    assert metadata["records"].value == 1200 and metadata["peak_ingress_bytes_per_sec"].value == 15.0


@pytest.mark.brokers  # transaction markers
def test_transactional_topic_counts_only_committed_records_without_stalling(dataset, measured):
    d0 = dataset.days[2]
    row = measured.measurement(d0, dataset.topic("tx"))
    assert row["records"] == 130  # 100 + 30 committed; the 50 aborted are not data a consumer gets
    assert row["bytes"] == 130 * 40
    assert row["offsets_in_window"] == 183  # 180 records + 3 transaction markers
    started, ended = measured.clock[d0]  # stops at the end offset, never waits out empty polls (20 s)
    assert ended - started < 15


@pytest.mark.brokers  # the broker's log cleaner
def test_compacted_topic_measures_what_a_consumer_receives(dataset, measured, kafka_bootstrap):
    d1 = dataset.days[1]
    row = measured.measurement(d1, dataset.topic("compact"))
    received, size = count_received(kafka_bootstrap, dataset.topic("compact"), d1)
    assert (row["records"], row["bytes"]) == (received, size)
    assert 100 < received < 150
    assert row["offsets_in_window"] > received  # compaction left gaps in the offsets
    assert bool(row["is_compacted"]) is True
    started, ended = measured.clock[d1]
    assert ended - started < 15


def test_empty_topic_is_reported_empty_not_missing(dataset, measured):
    for day in dataset.days:
        row = measured.measurement(day, dataset.topic("empty"))
        assert (row["status"], row["records"], row["bytes"]) == ("empty", 0, 0)
        assert "2 of 2 partitions had no records" in row["reason"]


def test_days_past_the_retention_horizon_are_judged_by_the_log_not_by_retention_ms(dataset, measured):
    # D-2 began more than retention.ms (2 days) ago, but the broker has deleted nothing yet (log
    # start 0): the log still shows the day whole, and nothing was produced on it. A day the log
    # did lose is not_measurable (test_attribution's deleted log head).
    d2, d1, _ = dataset.days
    old = measured.measurement(d2, dataset.topic("short"))
    assert dataset.day("short", d2).records == 0
    assert (old["status"], old["records"], bool(old["partial"])) == ("empty", 0, False)
    assert old["hours_captured"] == "c" * 24
    recent = measured.measurement(d1, dataset.topic("short"))
    assert (recent["status"], recent["records"], recent["bytes"]) == ("measured", 50, 500)


def test_null_keys_values_and_header_values_count_as_zero_bytes(dataset, measured):
    d1 = dataset.days[1]
    row = measured.measurement(d1, dataset.topic("nulls"))
    # Per 3 records: 1 (header key "a", None value) + 2 (key "kk", None value) + 9 ("vvv" + "hh" + "h2" + "zz").
    assert (row["records"], row["bytes"]) == (30, 10 * (1 + 2 + 9))
    assert row["bytes"] == dataset.day("nulls", d1).bytes


def test_capped_sampling_estimates_within_one_percent_and_says_so(dataset, configure, pipeline, monkeypatch):
    # These days are small enough that reading them whole is cheaper than sampling: sample anyway.
    monkeypatch.setattr(estimation, "RECORDS_PER_ROUND_TRIP", 0)
    configure(TOPIC_FILTER=f"{dataset.prefix}.multi,{dataset.prefix}.tx", SAMPLING_BATCH_SIZE=48)
    assert pipeline.inventory().success
    d2, _d1, _ = dataset.days
    assert pipeline.measure(d2).success and pipeline.measure(dataset.today).success
    truth = dataset.day("multi", d2)
    row = pipeline.measurement(d2, dataset.topic("multi"))
    assert bool(row["exact"]) is False
    assert "estimated" in row["reason"]
    assert row["sampled_records"] <= 3 * (48 + 24)  # the cap, plus at most one rounding per hour
    assert row["records"] == pytest.approx(truth.records, rel=0.01)
    assert row["bytes"] == pytest.approx(truth.bytes, rel=0.01)
    # 12 blocks of 4 offsets cannot split the hours apart: the peak is an estimate with its interval.
    assert row["peak_ingress_bytes_per_sec"] == pytest.approx(truth.peak_bytes_per_sec, rel=0.03)
    assert in_interval(row, "peak", truth.peak_bytes_per_sec)
    assert in_interval(row, "bytes", truth.bytes)
    # Markers and an aborted batch thin the sampled blocks: 12 blocks of 4 offsets out of 183 give
    # an estimate labelled as such, whose interval holds the 130 committed records' bytes.
    tx = pipeline.measurement(dataset.today, dataset.topic("tx"))
    assert bool(tx["exact"]) is False
    assert tx["records"] == pytest.approx(130, rel=0.1)
    assert tx["mean_record_bytes"] == pytest.approx(40, rel=1e-9)
    assert in_interval(tx, "bytes", 130 * 40)


def test_inventory_applies_topic_filter_entries_and_internal_rules(dataset, configure, pipeline):
    configure(TOPIC_FILTER=f"{dataset.prefix}.MULTI, {dataset.prefix}.tx")
    assert pipeline.inventory().success
    assert sorted(pipeline.store.read_inventory()["topic"]) == [dataset.topic("multi"), dataset.topic("tx")]

    configure(TOPIC_FILTER=dataset.prefix)
    assert pipeline.inventory().success
    topics = set(pipeline.store.read_inventory()["topic"])
    assert f"_{dataset.prefix}_app" in topics  # one underscore is a user's topic
    assert f"__{dataset.prefix}_internal" not in topics
    assert len(topics) == 9

    configure(TOPIC_FILTER=f"{dataset.prefix}_internal,__consumer_offsets", INCLUDE_INTERNAL_TOPICS="TRUE")
    assert pipeline.inventory().success
    inventory = pipeline.store.read_inventory().set_index("topic")
    assert set(inventory.index) == {f"__{dataset.prefix}_internal", "__consumer_offsets"}
    assert inventory["is_internal"].all()
    row = inventory.loc[dataset.topic("compact")] if dataset.topic("compact") in inventory.index else None
    assert row is None


@pytest.mark.brokers  # DescribeTopics, DescribeConfigs
def test_inventory_records_partitions_replication_and_configs(dataset, configure, pipeline):
    configure(TOPIC_FILTER=dataset.prefix)
    result = pipeline.inventory()
    assert result.success
    inventory = pipeline.store.read_inventory().set_index("topic")
    assert inventory.loc[dataset.topic("wide"), "partitions"] == 24
    assert inventory.loc[dataset.topic("wide"), "replication_factor"] == 1
    assert inventory.loc[dataset.topic("short"), "retention_ms"] == 2 * 86_400_000
    assert inventory.loc[dataset.topic("compact"), "cleanup_policy"] == "compact"
    assert bool(inventory.loc[dataset.topic("compact"), "is_compacted"]) is True
    assert set(pipeline.topic_keys()) == {f"local/{topic}" for topic in inventory.index}
    # The records in each log, what a never-measured topic's chunk is planned by: 300 + 900 + 600 + 120.
    assert inventory.loc[dataset.topic("multi"), "log_records"] == 1_920
    assert inventory.loc[dataset.topic("empty"), "log_records"] == 0
    metadata = result.asset_materializations_for_node("cluster_inventory")[0].metadata
    assert metadata["topics"].value == 9
    assert metadata["filtered_out_topics"].value >= 1


def test_a_topic_name_dagster_cannot_key_is_left_out_not_fatal(configure, pipeline, prefix, kafka_bootstrap):
    from recommender_pipeline_testing.workloads import create_topic

    create_topic(kafka_bootstrap, f"{prefix}.ok", 1)
    create_topic(kafka_bootstrap, f"{prefix}.a...b", 1)  # legal in Kafka, invalid in a Dagster key
    configure(TOPIC_FILTER=prefix)
    result = pipeline.inventory()
    assert result.success
    assert list(pipeline.store.read_inventory()["topic"]) == [f"{prefix}.ok"]
    metadata = result.asset_materializations_for_node("cluster_inventory")[0].metadata
    assert metadata["unsupported_topic_names"].value == [f"local/{prefix}.a...b"]


def test_a_partition_of_exactly_the_budget_is_read_whole_and_exact(
    configure, pipeline, prefix, kafka_bootstrap, monkeypatch
):
    from recommender_pipeline.days import utc_today
    from recommender_pipeline_testing.known_truth import records_in_hour
    from recommender_pipeline_testing.workloads import create_topic, produce

    day = utc_today().fromordinal(utc_today().toordinal() - 1)
    for name, count in (("budget", 48), ("triple", 144)):
        create_topic(kafka_bootstrap, f"{prefix}.{name}", 1)
        produce(kafka_bootstrap, f"{prefix}.{name}", records_in_hour(day, 5, count, lambda i: (b"k", b"v" * 29, [])))
    # Reading whole is cheaper than sampling at this size: sample whenever the budget allows.
    monkeypatch.setattr(estimation, "RECORDS_PER_ROUND_TRIP", 0)
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1, SAMPLING_BATCH_SIZE=48)
    assert pipeline.inventory().success and pipeline.measure(day).success
    budget = pipeline.measurement(day, f"{prefix}.budget")
    assert (budget["records"], budget["bytes"], bool(budget["exact"])) == (48, 48 * 30, True)
    triple = pipeline.measurement(day, f"{prefix}.triple")
    assert bool(triple["exact"]) is False  # 3x the budget: sampled
    assert triple["mean_record_bytes"] == 30.0  # one record size: the ratio estimator is exact for it
