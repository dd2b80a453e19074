"""The daily schedule, the follow-up recommendation sensor and topic discovery, evaluated with
Dagster's own contexts on a real instance and the real broker."""

import json
from datetime import UTC, datetime

import dagster as dg
from confluent_kafka.admin import AdminClient

from recommender_pipeline.measuring.windows import utc_today
from recommender_pipeline.partitions import topics_partitions
from recommender_pipeline.sensors import (
    daily_measurement_schedule,
    recommendations_after_measurement_sensor,
    topic_discovery_sensor,
)
from recommender_pipeline_tests.conftest import REPO
from recommender_pipeline_tests.known_truth import records_in_hour
from recommender_pipeline_tests.workloads import create_topic, produce


def test_the_instance_template_loads_with_run_and_pool_limits(tmp_path):
    (tmp_path / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    concurrency = dg.DagsterInstance.from_config(str(tmp_path)).get_concurrency_config()
    assert concurrency.run_queue_config.max_concurrent_runs == 4
    assert concurrency.run_queue_config.tag_concurrency_limits[0]["key"] == "kafka_cluster"
    assert concurrency.pool_config.default_pool_limit == 4


def test_the_daily_tick_measures_the_day_just_closed_for_every_topic(pipeline):
    tick = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
    empty = daily_measurement_schedule(
        dg.build_schedule_context(instance=pipeline.instance, scheduled_execution_time=tick)
    )
    assert isinstance(empty, dg.SkipReason)
    pipeline.instance.add_dynamic_partitions(topics_partitions.name, ["c1/orders", "c1/clicks", "c2/audit"])
    request = daily_measurement_schedule(
        dg.build_schedule_context(instance=pipeline.instance, scheduled_execution_time=tick)
    )
    assert request.run_key == "measure-2026-03-09"
    assert request.tags["dagster/asset_partition_range_start"] == "2026-03-09|c1/orders"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-03-09|c2/audit"
    assert request.tags["kafka_cluster"] == "c1,c2"
    assert daily_measurement_schedule.cron_schedule == "30 0 * * *"
    assert daily_measurement_schedule.execution_timezone == "UTC"


def test_a_finished_measurement_requests_that_days_recommendations(configure, pipeline, prefix, kafka_bootstrap):
    create_topic(kafka_bootstrap, f"{prefix}.a", 1)
    configure(TOPIC_FILTER=prefix)
    assert pipeline.inventory().success
    day = utc_today()
    result = pipeline.measure(day)
    assert result.success
    context = dg.build_run_status_sensor_context(
        sensor_name=recommendations_after_measurement_sensor.name,
        dagster_event=result.get_run_success_event(),
        dagster_instance=pipeline.instance,
        dagster_run=pipeline.instance.get_run_by_id(result.run_id),
    )
    request = recommendations_after_measurement_sensor(context)
    assert request.partition_key == day.isoformat()
    assert request.run_key == f"recommend-{day.isoformat()}-{result.run_id}"


def test_topic_discovery_adds_new_topics_and_retires_deleted_ones_keeping_them(
    configure, pipeline, prefix, kafka_bootstrap
):
    create_topic(kafka_bootstrap, f"{prefix}.first", 1)
    configure(TOPIC_FILTER=prefix)

    def evaluate(cursor):
        with dg.build_sensor_context(
            instance=pipeline.instance, cursor=cursor, resources=pipeline.resources()
        ) as context:
            return topic_discovery_sensor(context)

    first = evaluate(None)
    assert first.dynamic_partitions_requests[0].partition_keys == [f"local/{prefix}.first"]
    assert len(first.run_requests) == 1  # refresh the inventory
    pipeline.instance.add_dynamic_partitions(topics_partitions.name, [f"local/{prefix}.first"])

    create_topic(kafka_bootstrap, f"{prefix}.second", 2)
    produce(kafka_bootstrap, f"{prefix}.second", records_in_hour(utc_today(), 0, 2, lambda i: (None, b"x", [])))
    second = evaluate(first.cursor)
    assert second.dynamic_partitions_requests[0].partition_keys == [f"local/{prefix}.second"]
    pipeline.instance.add_dynamic_partitions(topics_partitions.name, [f"local/{prefix}.second"])

    unchanged = evaluate(second.cursor)
    assert unchanged.run_requests == [] and unchanged.dynamic_partitions_requests == []

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_topics([f"{prefix}.first"])[f"{prefix}.first"].result()
    third = evaluate(unchanged.cursor)
    assert json.loads(third.cursor) == [f"local/{prefix}.first"]
    assert third.dynamic_partitions_requests == []  # retired, not deleted: its history stays visible
    assert len(third.run_requests) == 1
    assert f"local/{prefix}.first" in pipeline.topic_keys()
    assert evaluate(third.cursor).run_requests == []  # reported once
