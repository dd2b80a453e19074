"""The measurement history through Dagster on the real broker: only what is missing is measured,
a failing chunk loses only its own topics, and a retry of the failed run re-reads only them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from recommender_pipeline.assets.run_tags import day_range_tags
from recommender_pipeline.days import utc_today
from recommender_pipeline.definitions import defs
from recommender_pipeline.measuring import records
from recommender_pipeline.orchestration.jobs import IN_PROCESS_RUN_CONFIG, measurement_job
from recommender_pipeline.resources import build_resources
from recommender_pipeline_testing.known_truth import records_in_hour
from recommender_pipeline_testing.pipeline import ALL_ASSETS, CLUSTER_ID
from recommender_pipeline_testing.workloads import create_topic, produce, spread

DAY = utc_today() - timedelta(days=1)
MEASUREMENTS_PARTITIONS = defs.resolve_asset_graph().get(dg.AssetKey("topic_measurements")).partitions_def


def get_measurement_job() -> dg.JobDefinition:
    """The measurement job with the test's configuration, rebuilt wherever Dagster reconstructs it."""
    return dg.Definitions(
        assets=ALL_ASSETS, jobs=[measurement_job], resources=build_resources("no.env")
    ).resolve_job_def(measurement_job.name)


def topics_with_records(bootstrap: str, prefix: str, names: list[str]) -> dict[str, int]:
    """Each topic gets 10 x (its index + 1) records of 20 bytes on DAY: the truth by topic."""
    truth = {}
    for index, name in enumerate(names):
        topic = f"{prefix}.{name}"
        create_topic(bootstrap, topic, 1)
        produce(bootstrap, topic, records_in_hour(DAY, 3, 10 * (index + 1), lambda i: (None, b"r" * 20, [])))
        truth[topic] = 10 * (index + 1)
    return truth


def materialized_topics(pipeline, result, settled: bool = False) -> set[str]:
    """The topics a run recorded as materialized partitions of `topic_measurements`, from the
    instance's event log (the chunks record them in batches, outside the run's result events):
    those it measured, or with `settled` those an earlier run measured that it re-reported."""
    entries = pipeline.instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    events = [entry.asset_materialization for entry in entries]
    return {
        str(event.partition).split("/", 1)[1]
        for event in events
        if event.asset_key == dg.AssetKey("topic_measurements") and ("settled" in event.metadata) == settled
    }


def measured_at(pipeline, topic: str) -> str:
    return pipeline.measurement(DAY, topic)["measured_at"]


def test_a_new_topic_costs_only_its_own_day_and_force_re_measures_all(configure, pipeline, prefix, kafka_bootstrap):
    truth = topics_with_records(kafka_bootstrap, prefix, ["a", "b"])
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1)
    assert pipeline.inventory().success
    first = pipeline.measure(DAY)
    assert first.success and materialized_topics(pipeline, first) == set(truth)
    before = {topic: measured_at(pipeline, topic) for topic in truth}

    truth |= topics_with_records(kafka_bootstrap, prefix, ["new"])
    assert pipeline.inventory().success
    second = pipeline.measure(DAY)
    assert second.success
    assert materialized_topics(pipeline, second) == {f"{prefix}.new"}  # the settled topics were not read again
    assert materialized_topics(pipeline, second, settled=True) == set(before)  # but reported, so not "failed"
    assert {topic: measured_at(pipeline, topic) for topic in before} == before
    assert pipeline.measurement(DAY, f"{prefix}.new")["records"] == 10

    forced = pipeline.measure(DAY, force=True)
    assert forced.success and materialized_topics(pipeline, forced) == set(truth)
    assert all(measured_at(pipeline, topic) > before[topic] for topic in before)
    assert [pipeline.measurement(DAY, topic)["records"] for topic in truth] == list(truth.values())


def test_a_chunk_that_raises_loses_only_its_topics_and_the_retry_re_reads_only_them(
    configure, pipeline, prefix, kafka_bootstrap, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    truth = topics_with_records(kafka_bootstrap, prefix, ["x", "y", "z"])
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1, MAX_WORKERS_PER_CLUSTER=3, RECORDS_PER_CHUNK=1)  # a chunk a topic
    monkeypatch.chdir(tmp_path)
    assert pipeline.inventory().success
    keys = pipeline.topic_keys()
    measure = records.DayMeasurer.measure

    def broken(self, topics, read_from=None):
        topics = list(topics)
        if any(spec.topic == f"{prefix}.y" for spec in topics):
            raise ValueError("simulated bug in one chunk")
        return measure(self, topics, read_from)

    monkeypatch.setattr(records.DayMeasurer, "measure", broken)
    job = dg.reconstructable(get_measurement_job)
    tags = day_range_tags(DAY.isoformat(), keys, {CLUSTER_ID})
    with dg.execute_job(
        job, pipeline.instance, run_config=IN_PROCESS_RUN_CONFIG, tags=tags, raise_on_error=False
    ) as failed:
        assert not failed.success
        assert materialized_topics(pipeline, failed) == {f"{prefix}.x", f"{prefix}.z"}
        failed_run = failed.run_id
    broken_row = pipeline.measurement(DAY, f"{prefix}.y")
    assert broken_row["status"] == "error"
    assert "ValueError: simulated bug in one chunk" in broken_row["reason"]
    for name in ("x", "z"):
        assert pipeline.measurement(DAY, f"{prefix}.{name}")["records"] == truth[f"{prefix}.{name}"]
    before = {topic: measured_at(pipeline, topic) for topic in (f"{prefix}.x", f"{prefix}.z")}

    monkeypatch.setattr(records.DayMeasurer, "measure", measure)  # the transient fault is gone
    with dg.execute_job(
        job,
        pipeline.instance,
        run_config=IN_PROCESS_RUN_CONFIG,
        reexecution_options=dg.ReexecutionOptions.from_failure(failed_run, pipeline.instance),
        raise_on_error=False,
    ) as retry:
        assert retry.success
        assert materialized_topics(pipeline, retry) == {f"{prefix}.y"}  # only the failed chunk ran, and re-read y
    assert pipeline.measurement(DAY, f"{prefix}.y")["records"] == truth[f"{prefix}.y"]
    assert {topic: measured_at(pipeline, topic) for topic in before} == before


def test_a_forced_re_measure_never_downgrades_a_day_whose_records_left_or_whose_cluster_failed(
    configure, pipeline, prefix, kafka_bootstrap, monkeypatch: pytest.MonkeyPatch
):
    """3,600 records measured; then DeleteRecords empties the log, and a forced run reads nothing
    (not measurable); then the cluster fails a forced run (error rows). The day stays measured."""
    topic = f"{prefix}.kept"
    create_topic(kafka_bootstrap, topic, 1)
    produce(kafka_bootstrap, topic, spread(DAY, 0, 3_600, 20, seconds=86_400))
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1)
    assert pipeline.inventory().success and pipeline.measure(DAY).success
    assert (pipeline.measurement(DAY, topic)["status"], pipeline.measurement(DAY, topic)["records"]) == (
        "measured",
        3_600,
    )

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, -1)], operation_timeout=30).values():
        future.result()  # offset -1: up to the high watermark
    forced = pipeline.measure(DAY, force=True)
    assert forced.success and materialized_topics(pipeline, forced) == set()
    row = pipeline.measurement(DAY, topic)
    assert (row["status"], row["records"], row["bytes"]) == ("measured", 3_600, 3_600 * 20)

    def unreachable(self, topics, read_from=None):
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))

    monkeypatch.setattr(records.DayMeasurer, "measure", unreachable)
    assert not pipeline.measure(DAY, force=True).success
    row = pipeline.measurement(DAY, topic)
    assert (row["status"], row["records"], row["bytes"]) == ("measured", 3_600, 3_600 * 20)


def test_rows_the_store_cannot_hold_become_error_rows_and_the_other_chunks_land(
    configure, pipeline, prefix, kafka_bootstrap, monkeypatch: pytest.MonkeyPatch
):
    """A measurer bug gives one topic a count no BIGINT holds: its chunk stores error rows naming
    why, instead of nothing, and the other chunk's topic is measured."""
    truth = topics_with_records(kafka_bootstrap, prefix, ["sane", "huge"])
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1, MAX_WORKERS_PER_CLUSTER=2, RECORDS_PER_CHUNK=1)
    assert pipeline.inventory().success
    measure = records.DayMeasurer.measure

    def overflowing(self, topics, read_from=None):
        rows = measure(self, topics, read_from)
        for row in rows:
            if row.topic.endswith(".huge"):
                row.bytes = 10**30
        return rows

    monkeypatch.setattr(records.DayMeasurer, "measure", overflowing)
    assert not pipeline.measure(DAY).success
    huge = pipeline.measurement(DAY, f"{prefix}.huge")
    assert huge["status"] == "error" and "could not be stored" in huge["reason"]
    assert pipeline.measurement(DAY, f"{prefix}.sane")["records"] == truth[f"{prefix}.sane"]


def test_with_one_planned_event_per_run_the_partitions_show_what_was_measured_and_the_run_what_failed(
    configure, pipeline, prefix, kafka_bootstrap, monkeypatch: pytest.MonkeyPatch
):
    """The README's trade (`DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`, set by the command):
    the Partitions tab shows the measured topic-days as materialized, in success and in failure;
    a failed topic-day is not shown failed there, but the run fails naming it and the store holds
    its error row (what the coverage check and the reports show)."""
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    truth = topics_with_records(kafka_bootstrap, prefix, ["ok", "bad"])
    configure(TOPIC_FILTER=prefix, SAMPLING_DAYS=1, MAX_WORKERS_PER_CLUSTER=2, RECORDS_PER_CHUNK=1)
    assert pipeline.inventory().success
    measure = records.DayMeasurer.measure

    def broken(self, topics, read_from=None):
        if any(spec.topic.endswith(".bad") for spec in topics):
            raise ValueError("simulated bug in one chunk")
        return measure(self, topics, read_from)

    monkeypatch.setattr(records.DayMeasurer, "measure", broken)
    result = pipeline.measure(DAY)
    assert not result.success
    planned = pipeline.instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    assert len(planned) == 1  # one for the run's whole range, not one per topic-day
    keys = [f"{DAY.isoformat()}|{CLUSTER_ID}/{topic}" for topic in truth]
    status = pipeline.instance.get_status_by_partition(dg.AssetKey("topic_measurements"), keys, MEASUREMENTS_PARTITIONS)
    assert status[keys[0]] == dg.AssetPartitionStatus.MATERIALIZED
    assert status[keys[1]] is None  # neither materialized nor shown failed in the Partitions tab...
    failure = next(
        event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE
    ).step_failure_data
    assert f"{prefix}.bad" in failure.error.message  # ...but the run's failure names it
    assert pipeline.measurement(DAY, f"{prefix}.bad")["status"] == "error"  # and the store holds why

    monkeypatch.setattr(records.DayMeasurer, "measure", measure)
    assert pipeline.measure(DAY).success  # the retry measures the failed topic-day alone
    status = pipeline.instance.get_status_by_partition(dg.AssetKey("topic_measurements"), keys, MEASUREMENTS_PARTITIONS)
    assert set(status.values()) == {dg.AssetPartitionStatus.MATERIALIZED}
    assert pipeline.measurement(DAY, f"{prefix}.bad")["records"] == truth[f"{prefix}.bad"]
