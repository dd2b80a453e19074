"""Keeping it running: the daily schedule, recommendations after each day's measurement, and
topic discovery that follows topics as they appear and disappear."""

import hashlib
import json
from datetime import timedelta

import dagster as dg

from recommender_pipeline.assets.inventory import UNSUPPORTED_IN_KEYS, list_cluster_topics
from recommender_pipeline.jobs import inventory_job, measurement_job, recommendation_job
from recommender_pipeline.partitions import split_day_topic_key, split_topic_key, topic_key, topics_partitions
from recommender_pipeline.resources import ConfigResource, KafkaResource

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
CLUSTER_TAG = "kafka_cluster"


def day_range_tags(day: str, keys: list[str] | tuple[str, str], clusters: set[str]) -> dict[str, str]:
    """Tags that make one run measure one day of every topic key (first to last); the
    `kafka_cluster` tag lets dagster.yaml keep one measurement run per set of clusters."""
    return {RANGE_START: f"{day}|{keys[0]}", RANGE_END: f"{day}|{keys[-1]}", CLUSTER_TAG: ",".join(sorted(clusters))}


@dg.schedule(
    job=measurement_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def daily_measurement_schedule(context: dg.ScheduleEvaluationContext):
    """At 00:30 UTC, one run measures the day just closed for every topic of every cluster;
    `recommendations_after_measurement_sensor` then refreshes that day's recommendations and reports."""
    day = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
    keys = context.instance.get_dynamic_partitions(topics_partitions.name)
    if not keys:
        return dg.SkipReason("no topics yet: materialize cluster_inventory or turn on topic_discovery_sensor")
    clusters = {split_topic_key(key)[0] for key in keys}
    return dg.RunRequest(run_key=f"measure-{day}", tags=day_range_tags(day, keys, clusters))


def _recommend_for(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    start = context.dagster_run.tags.get(RANGE_START) or context.dagster_run.tags.get("dagster/partition", "")
    day, _ = split_day_topic_key(start)
    if not day:
        return dg.SkipReason("the measurement run names no day")
    return dg.RunRequest(run_key=f"recommend-{day}-{context.dagster_run.run_id}", partition_key=day)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[measurement_job],
    request_job=recommendation_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def recommendations_after_measurement_sensor(context: dg.RunStatusSensorContext):
    """A day's measurement finished: recommend for the window that ends on that day."""
    return _recommend_for(context)


@dg.run_failure_sensor(
    monitored_jobs=[measurement_job],
    request_job=recommendation_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def recommendations_after_partial_measurement_sensor(context: dg.RunFailureSensorContext):
    """A day's measurement failed for some topics: the others are stored, so still recommend;
    the failed topics appear as `error` in the reports."""
    return _recommend_for(context)


@dg.sensor(job=inventory_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def topic_discovery_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource, config: ConfigResource):
    """Adds a `topics` partition for each new topic and retires deleted ones.

    A retired topic keeps its partition, so its measured days stay visible in the UI; the
    inventory run this sensor requests drops it from what is measured next. The cursor holds the
    retired keys, so each change triggers one inventory run.
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
    previously_retired = set(json.loads(context.cursor)) if context.cursor else set()
    changed = bool(new) or retired != previously_retired
    if new:
        context.log.info(f"{len(new)} new topic(s): {new[:20]}")
    if retired - previously_retired:
        context.log.info(f"retired topic(s), history kept: {sorted(retired - previously_retired)[:20]}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"inventory-{_digest(live, retired)}")] if changed else [],
        dynamic_partitions_requests=[topics_partitions.build_add_request(new)] if new else [],
        cursor=json.dumps(sorted(retired)),
    )


def _digest(*key_sets: set[str]) -> str:
    text = "|".join(",".join(sorted(keys)) for keys in key_sets)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


ALL_SCHEDULES = [daily_measurement_schedule]
ALL_SENSORS = [
    recommendations_after_measurement_sensor,
    recommendations_after_partial_measurement_sensor,
    topic_discovery_sensor,
]
