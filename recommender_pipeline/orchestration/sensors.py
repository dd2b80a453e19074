"""Keeping it running: the daily schedule, recommendations after each day's measurement, and
topic discovery that follows topics as they appear and disappear."""

import hashlib
import json
from datetime import date, timedelta

import dagster as dg

from recommender_pipeline.assets.measurements import measure_topic_chunk
from recommender_pipeline.assets.partitions import (
    HISTORY_DAYS,
    split_day_topic_key,
    split_topic_key,
    topic_key,
    topics_partitions,
)
from recommender_pipeline.assets.run_tags import RANGE_START, day_range_tags
from recommender_pipeline.clusters.topic_listing import UNSUPPORTED_IN_KEYS, list_cluster_topics
from recommender_pipeline.days import utc_today
from recommender_pipeline.orchestration.freshness import stale_days
from recommender_pipeline.orchestration.jobs import inventory_job, measurement_job, recommendation_job
from recommender_pipeline.resources import KafkaResource, MeasurementStoreResource, SettingsResource

DAY_TAG = "measures_day"  # on the schedules' runs: the UTC day each one measures


def _measure_days(context: dg.ScheduleEvaluationContext, run_keys: dict[str, str]) -> list | dg.SkipReason:
    """One run per day ({day: run key}) over every topic key: each measures only what that day
    has left to capture (`assets.measurements.plan_measurement_chunks`)."""
    keys = context.instance.get_dynamic_partitions(topics_partitions.name)
    if not keys:
        return dg.SkipReason("no topics yet: materialize cluster_inventory or turn on topic_discovery_sensor")
    clusters = {split_topic_key(key)[0] for key in keys}
    # The day as a tag of its own: the UI's tick preview lists each request by job and tags.
    return [
        dg.RunRequest(run_key=key, tags={**day_range_tags(day, keys, clusters), DAY_TAG: day})
        for day, key in run_keys.items()
    ]


@dg.schedule(
    job=measurement_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="At 00:30 UTC: one run measures yesterday for every topic of every cluster, plus one per earlier "
    "day of the window with topic-days in error or missing. Turn on recommendations_after_measurement_sensor too.",
)
def daily_measurement_schedule(
    context: dg.ScheduleEvaluationContext, store: MeasurementStoreResource, config: SettingsResource
):
    """At 00:30 UTC, one run measures the day just closed for every topic of every cluster, and
    one more per earlier day of the window that still has topic-days in error or missing, so a
    transient failure leaves no gap once the next night has run.
    `recommendations_after_measurement_sensor` then refreshes each day's recommendations."""
    tick = context.scheduled_execution_time.date()
    yesterday = tick - timedelta(days=1)
    earlier = store.days_to_capture(yesterday - timedelta(days=1), config.settings.sampling_days - 1)
    run_keys = {day.isoformat(): f"remeasure-{day.isoformat()}-on-{tick.isoformat()}" for day in earlier}
    return _measure_days(context, {**run_keys, yesterday.isoformat(): f"measure-{yesterday.isoformat()}"})


@dg.schedule(
    job=measurement_job,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Five minutes past each hour: captures the hour just ended for every topic, so topics that keep "
    "only hours (short retention.ms) are read before their records are deleted; and yesterday, until its last "
    "hour has settled (TIMESTAMP_SKEW_SECONDS after midnight).",
)
def hourly_capture_schedule(context: dg.ScheduleEvaluationContext, config: SettingsResource):
    """Five minutes past each hour, captures the hour just ended (`measuring/hours.py`): a topic
    that keeps only hours is read before its records age out. An hour settles only
    TIMESTAMP_SKEW_SECONDS after it ends, so the first ticks of a day also capture yesterday,
    whose last hour was still open at 00:05."""
    tick = context.scheduled_execution_time
    ended = tick - timedelta(hours=1)
    settling = ended - timedelta(seconds=config.settings.timestamp_skew_seconds)
    days = sorted({ended.date().isoformat(), settling.date().isoformat()})
    return _measure_days(context, {day: f"capture-{day}-at-{tick:%Y-%m-%dT%H}" for day in days})


MEASUREMENTS_KEY = dg.AssetKey("topic_measurements")


def measured(run: dg.DagsterRun) -> bool:
    """Whether a run measures: `measurement_job` (schedule, command), any run whose assets
    include `topic_measurements` (a Materialize click or a backfill in the UI: Dagster's
    `__ASSET_JOB`), or any other run whose plan holds `measure_topic_chunk`, as its pool says
    (an ad hoc job such as `dg.materialize`'s, which names no asset selection)."""
    if run.job_name == measurement_job.name or MEASUREMENTS_KEY in (run.asset_selection or ()):
        return True
    pools = run.run_op_concurrency.all_pools if run.run_op_concurrency else None
    return measure_topic_chunk.pool in (pools or ())


def _recommend_for(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    run = context.dagster_run
    if not measured(run):
        return dg.SkipReason(f"run {run.run_id} of {run.job_name} measures nothing")
    start = run.tags.get(RANGE_START) or run.tags.get("dagster/partition", "")
    day, _ = split_day_topic_key(start)
    if not day:
        return dg.SkipReason("the measurement run names no day")
    return dg.RunRequest(run_key=f"recommend-{day}-{run.run_id}", partition_key=day)


# No `monitored_jobs`: the sensors watch every run of this code location and keep those that
# measure (`measured`), so a day measured from the UI, a backfill, the schedule or the command
# gets its recommendations alike.
@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=recommendation_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="After any successful run that measured a day (schedule, command, UI or backfill): one run "
    "recommends for the window ending on that day and writes its reports.",
)
def recommendations_after_measurement_sensor(context: dg.RunStatusSensorContext):
    """A day's measurement finished: recommend for the window that ends on that day."""
    return _recommend_for(context)


@dg.run_failure_sensor(
    request_job=recommendation_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="After a run that measured a day but failed for some topics: the others are stored, so it still "
    "recommends for that day; the failed topics show as error in the reports.",
)
def recommendations_after_partial_measurement_sensor(context: dg.RunFailureSensorContext):
    """A day's measurement failed for some topics: the others are stored, so still recommend;
    the failed topics appear as `error` in the reports."""
    return _recommend_for(context)


IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=recommendation_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Every 2 minutes, once no run measures or recommends: re-runs each day's recommendations whose "
    "window gained measurements after they were made (a backfill in any order, a retry, the command), up to today.",
)
def stale_recommendations_sensor(
    context: dg.SensorEvaluationContext, store: MeasurementStoreResource, config: SettingsResource
):
    """A recommendation follows its window: when a day is stored, every recommendation whose
    window holds it is brought up to date (`freshness.stale_days`). It waits for the runs in
    flight, so a backfill's days are refreshed once, after its last run."""
    busy = [
        run
        for run in context.instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT))
        if measured(run) or run.job_name == recommendation_job.name
    ]
    if busy:
        return dg.SkipReason(f"{len(busy)} run(s) measuring or recommending: the windows they change wait for them")
    stale = stale_days(context.instance, store, config.settings.sampling_days, utc_today())
    if not stale:
        return dg.SkipReason("every recommendation is up to date with the measurements of its window")
    context.log.info(f"out of date: {', '.join(day.isoformat() for day in stale)}")
    return [
        dg.RunRequest(run_key=f"refresh-{day.isoformat()}-{stored}", partition_key=day.isoformat())
        for day, stored in stale.items()
    ]


@dg.sensor(
    job=inventory_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Every 5 minutes: adds a topics partition for each new topic and retires deleted ones (their "
    "measured days stay visible for the rolling history), then refreshes the inventory.",
)
def topic_discovery_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource, config: SettingsResource):
    """Adds a `topics` partition for each new topic and retires deleted ones.

    A retired topic keeps its partition while its measured days are in the rolling history
    (`partitions.HISTORY_DAYS`), so they stay visible in the UI, then leaves the partition space
    (the store keeps its rows). The inventory run this sensor requests drops it from what is
    measured next. The cursor holds each retired key with the day it retired, so each change
    triggers one inventory run.
    """
    settings = config.settings
    live, listed_clusters = set(), set()
    for cluster_id in kafka.connections():
        try:
            rows, _ = list_cluster_topics(kafka.admin(cluster_id), cluster_id, settings)
        except Exception as error:  # an unreachable cluster retires nothing
            context.log.warning(f"cluster {cluster_id} not listed: {error}")
            continue
        listed_clusters.add(cluster_id)
        live |= {topic_key(cluster_id, row["topic"]) for row in rows if UNSUPPORTED_IN_KEYS not in row["topic"]}
    known = set(context.instance.get_dynamic_partitions(topics_partitions.name))
    new = sorted(live - known)
    retired = {key for key in known - live if split_topic_key(key)[0] in listed_clusters}
    since: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    today = utc_today()
    since = {key: since.get(key, today.isoformat()) for key in retired}
    expired = sorted(key for key, day in since.items() if date.fromisoformat(day) < today - timedelta(HISTORY_DAYS))
    # A key typed by hand without `<cluster_id>/` names no cluster: never measured, removed now.
    unkeyed = sorted(key for key in known if not split_topic_key(key)[1])
    if unkeyed:
        context.log.warning(f"removing partition key(s) that name no cluster (not <cluster_id>/<topic>): {unkeyed}")
        expired = sorted({*expired, *unkeyed})
    changed = bool(new) or set(since) != set(json.loads(context.cursor or "{}"))
    if new:
        context.log.info(f"{len(new)} new topic(s): {new[:20]}")
    if changed and retired:
        context.log.info(f"retired topic(s), history kept for {HISTORY_DAYS} days: {sorted(retired)[:20]}")
    if expired:
        context.log.info(f"{len(expired)} topic(s) retired over {HISTORY_DAYS} days ago leave the partitions")
    requests = [topics_partitions.build_add_request(new)] if new else []
    requests += [topics_partitions.build_delete_request(expired)] if expired else []
    # What it saw, on the tick in the UI (which otherwise says only "0 runs requested").
    seen = (
        f"listed {len(live)} topic(s) on {len(listed_clusters)} of {len(kafka.connections())} cluster(s): "
        f"{len(new)} new, {len(retired)} retired, {len(expired)} leaving the partitions"
    )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"inventory-{_fingerprint(live, retired)}")] if changed else [],
        dynamic_partitions_requests=requests,
        cursor=json.dumps({key: day for key, day in sorted(since.items()) if key not in expired}),
        skip_reason=None if changed else f"{seen}; nothing changed since the last tick",
    )


def _fingerprint(*key_sets: set[str]) -> str:
    text = "|".join(",".join(sorted(keys)) for keys in key_sets)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


ALL_SCHEDULES = [daily_measurement_schedule, hourly_capture_schedule]
ALL_SENSORS = [
    recommendations_after_measurement_sensor,
    recommendations_after_partial_measurement_sensor,
    stale_recommendations_sensor,
    topic_discovery_sensor,
]
