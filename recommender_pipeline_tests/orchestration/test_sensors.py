"""The daily schedule, the follow-up recommendation sensor and topic discovery, evaluated with
Dagster's own contexts on a real instance and the real broker."""

import json
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
from confluent_kafka.admin import AdminClient

from recommender_pipeline.assets.measurements import measure_topic_chunk
from recommender_pipeline.assets.partitions import HISTORY_DAYS, topics_partitions
from recommender_pipeline.days import utc_today
from recommender_pipeline.measuring import hours
from recommender_pipeline.measuring.measurement import Measurement, Method, Status
from recommender_pipeline.orchestration.freshness import stale_days
from recommender_pipeline.orchestration.sensors import (
    MEASUREMENTS_KEY,
    daily_measurement_schedule,
    hourly_capture_schedule,
    measured,
    recommendations_after_measurement_sensor,
    recommendations_after_partial_measurement_sensor,
    stale_recommendations_sensor,
    topic_discovery_sensor,
)
from recommender_pipeline_testing.known_truth import records_in_hour
from recommender_pipeline_testing.pipeline import REPO
from recommender_pipeline_testing.workloads import create_topic, produce


def test_the_instance_template_loads_with_run_and_pool_limits(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    concurrency = dg.DagsterInstance.from_config(str(tmp_path)).get_concurrency_config()
    assert concurrency.run_queue_config.max_concurrent_runs == 4
    # One measuring run at a time, whatever launched it: a slot of the measuring op's pool per run.
    assert concurrency.pool_config.pool_granularity.value == "run"
    assert concurrency.pool_config.default_pool_limit == 1
    assert measure_topic_chunk.pool == "measurement_chunks"


def test_any_run_that_measures_is_followed_by_recommendations():
    """The schedule's and the command's `measurement_job`, and the UI's or a backfill's
    `__ASSET_JOB` with `topic_measurements`; not a run that only recommends or inventories."""
    tags = {"dagster/asset_partition_range_start": "2026-03-09|c1/orders"}
    assert measured(dg.DagsterRun(job_name="measurement_job", tags=tags))
    ui_run = dg.DagsterRun(job_name="__ASSET_JOB", tags=tags, asset_selection=frozenset({MEASUREMENTS_KEY}))
    assert measured(ui_run)
    recommending = frozenset({dg.AssetKey("topic_recommendations"), dg.AssetKey("reports")})
    assert not measured(dg.DagsterRun(job_name="__ASSET_JOB", asset_selection=recommending))
    assert not measured(dg.DagsterRun(job_name="recommendation_job", tags={"dagster/partition": "2026-03-09"}))


def test_the_daily_tick_measures_the_day_just_closed_for_every_topic(configure, pipeline):
    configure(SAMPLING_DAYS=7)
    tick = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)

    def evaluate():
        with dg.build_schedule_context(
            instance=pipeline.instance, scheduled_execution_time=tick, resources=pipeline.resources()
        ) as context:
            return daily_measurement_schedule(context)

    assert isinstance(evaluate(), dg.SkipReason)
    pipeline.instance.add_dynamic_partitions(topics_partitions.name, ["c1/orders", "c1/clicks", "c2/audit"])
    [request] = evaluate()
    assert request.run_key == "measure-2026-03-09"
    assert request.tags["dagster/asset_partition_range_start"] == "2026-03-09|c1/orders"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-03-09|c2/audit"
    assert request.tags["kafka_cluster"] == "c1,c2"
    assert request.tags["measures_day"] == "2026-03-09"  # named in the UI's tick preview
    assert daily_measurement_schedule.cron_schedule == "30 0 * * *"
    assert daily_measurement_schedule.execution_timezone == "UTC"

    # A topic-day in error earlier in the window is measured again the next night; the days
    # whose topics are all settled are not.
    inventory = pd.DataFrame(
        [
            {"cluster_id": c, "topic": t, "partitions": 1, "retention_ms": None, "is_compacted": False}
            for c, t in [("c1", "orders"), ("c1", "clicks"), ("c2", "audit")]
        ]
    )
    pipeline.store.replace_inventory(inventory)
    settled = [
        settled_day(day, cluster, topic)
        for day in [date(2026, 3, d) for d in range(3, 9)]
        for cluster, topic in [("c1", "orders"), ("c1", "clicks"), ("c2", "audit")]
    ]
    settled[4] = {**settled[4], "status": "error", "reason": "leader election", "hours_captured": ""}  # 03-04 clicks
    pipeline.store.write_measurements(settled)
    requests = evaluate()
    assert [r.run_key for r in requests] == ["remeasure-2026-03-04-on-2026-03-10", "measure-2026-03-09"]
    assert requests[0].tags["dagster/asset_partition_range_start"] == "2026-03-04|c1/orders"


def settled_day(day: date, cluster_id: str, topic: str) -> dict:
    row = Measurement(day.isoformat(), cluster_id, topic, Method.SAMPLING_RECORDS, Status.MEASURED).as_row()
    row.update(window_seconds=86_400.0, day_closed=True, hours_captured="c" * 24)
    hours.fill_day(row, "c" * 24, [1] * 24, [10] * 24)
    return row


def test_the_hourly_tick_captures_the_hour_just_ended_and_yesterday_until_it_settles(configure, pipeline):
    configure(TIMESTAMP_SKEW_SECONDS=900)
    pipeline.instance.add_dynamic_partitions(topics_partitions.name, ["c1/orders", "c2/audit"])
    for tick, days in [
        (datetime(2026, 3, 10, 13, 5, tzinfo=UTC), ["2026-03-10"]),
        (datetime(2026, 3, 10, 0, 5, tzinfo=UTC), ["2026-03-09"]),  # hour 23 is still open
        (datetime(2026, 3, 10, 1, 5, tzinfo=UTC), ["2026-03-09", "2026-03-10"]),  # it settled at 00:15
        (datetime(2026, 3, 10, 2, 5, tzinfo=UTC), ["2026-03-10"]),
    ]:
        with dg.build_schedule_context(
            instance=pipeline.instance, scheduled_execution_time=tick, resources=pipeline.resources()
        ) as context:
            requests = hourly_capture_schedule(context)
        assert [r.run_key for r in requests] == [f"capture-{day}-at-{tick:%Y-%m-%dT%H}" for day in days]
        for request, day in zip(requests, days, strict=True):
            assert request.tags["dagster/asset_partition_range_start"] == f"{day}|c1/orders"
            assert request.tags["dagster/asset_partition_range_end"] == f"{day}|c2/audit"
    assert hourly_capture_schedule.cron_schedule == "5 * * * *"
    assert hourly_capture_schedule.default_status == dg.DefaultScheduleStatus.STOPPED


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


def test_a_partly_failed_measurement_still_requests_that_days_recommendations(
    configure, pipeline, prefix, kafka_bootstrap
):
    for name in ("kept", "doomed"):
        create_topic(kafka_bootstrap, f"{prefix}.{name}", 1)
    configure(TOPIC_FILTER=prefix)
    assert pipeline.inventory().success
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_topics([f"{prefix}.doomed"])[f"{prefix}.doomed"].result()
    day = utc_today()
    result = pipeline.measure(day)
    assert not result.success  # one topic failed; the other is stored
    assert pipeline.measurement(day, f"{prefix}.kept")["status"] == "empty"
    context = dg.build_run_status_sensor_context(
        sensor_name=recommendations_after_partial_measurement_sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=pipeline.instance,
        dagster_run=pipeline.instance.get_run_by_id(result.run_id),
    ).for_run_failure()
    request = recommendations_after_partial_measurement_sensor(context)
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
    assert unchanged.skip_reason is not None  # the tick says what it saw
    assert re.search(
        r"listed \d+ topic\(s\) on 1 of 1 cluster\(s\): 0 new, 0 retired", unchanged.skip_reason.skip_message
    )

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.delete_topics([f"{prefix}.first"])[f"{prefix}.first"].result()
    third = evaluate(unchanged.cursor)
    assert json.loads(third.cursor) == {f"local/{prefix}.first": utc_today().isoformat()}
    assert third.dynamic_partitions_requests == []  # retired, not deleted: its history stays visible
    assert len(third.run_requests) == 1
    assert f"local/{prefix}.first" in pipeline.topic_keys()
    assert evaluate(third.cursor).run_requests == []  # reported once

    # Once its last day has left the rolling history, a retired topic leaves the partitions.
    long_ago = (utc_today() - timedelta(days=HISTORY_DAYS + 1)).isoformat()
    fourth = evaluate(json.dumps({f"local/{prefix}.first": long_ago}))
    [delete] = fourth.dynamic_partitions_requests
    assert isinstance(delete, dg.DeleteDynamicPartitionsRequest)
    assert delete.partition_keys == [f"local/{prefix}.first"]
    assert json.loads(fourth.cursor) == {}

    # A key typed by hand in the UI without `<cluster_id>/` names no cluster: removed at once.
    pipeline.instance.add_dynamic_partitions(topics_partitions.name, [f"{prefix}.typed"])
    [typed] = evaluate(fourth.cursor).dynamic_partitions_requests
    assert isinstance(typed, dg.DeleteDynamicPartitionsRequest) and typed.partition_keys == [f"{prefix}.typed"]


def test_every_schedule_and_sensor_starts_stopped():
    from recommender_pipeline.orchestration.sensors import ALL_SCHEDULES, ALL_SENSORS

    assert {s.name for s in ALL_SCHEDULES} == {"daily_measurement_schedule", "hourly_capture_schedule"}
    assert all(s.default_status == dg.DefaultScheduleStatus.STOPPED for s in ALL_SCHEDULES)
    assert len(ALL_SENSORS) == 4
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in ALL_SENSORS)


def test_every_schedule_and_sensor_describes_itself_in_the_ui():
    from recommender_pipeline.orchestration.sensors import ALL_SCHEDULES, ALL_SENSORS

    for definition in [*ALL_SCHEDULES, *ALL_SENSORS]:
        assert definition.description and len(definition.description) > 40, definition.name


def test_recommendations_whose_window_gained_a_day_are_brought_up_to_date_once_no_run_is_in_flight(configure, pipeline):
    """A 3-day window. Today's and yesterday's recommendations were made; then D-1 was measured
    late (a backfill newest day first, a retry): both windows hold it, D-2's was not made."""
    configure(SAMPLING_DAYS=3)
    back = {n: utc_today() - timedelta(days=n) for n in range(4)}

    def evaluate():
        with dg.build_sensor_context(instance=pipeline.instance, resources=pipeline.resources()) as context:
            return stale_recommendations_sensor(context)

    pipeline.store.write_measurements([settled_day(back[3], "c1", "orders")])
    for n in (1, 0):
        pipeline.instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="topic_recommendations", partition=back[n].isoformat())
        )
    assert isinstance(evaluate(), dg.SkipReason)  # D-3 was stored before both recommendations
    assert stale_days(pipeline.instance, pipeline.store, 3, utc_today()) == {}

    time.sleep(0.01)
    pipeline.store.write_measurements([settled_day(back[1], "c1", "orders")])
    requests = evaluate()
    assert [r.partition_key for r in requests] == [back[1].isoformat(), back[0].isoformat()]
    assert len({r.run_key for r in requests}) == 2

    measuring = dg.DagsterRun(job_name="measurement_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED)
    pipeline.instance.add_run(measuring)
    assert "measuring or recommending" in evaluate().skip_message  # refreshed once, after the run
