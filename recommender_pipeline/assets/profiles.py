"""Per day and topic, a snapshot of who consumes the topic and what its keys look like."""

import json
import time
from collections.abc import Hashable
from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd
from confluent_kafka import Consumer, KafkaException

from recommender_pipeline.assets.partitions import daily_partitions
from recommender_pipeline.days import day_end_ms
from recommender_pipeline.errors import ClusterUnreachableError
from recommender_pipeline.profiling.consumers import GroupOnTopic, consumer_groups_by_topic
from recommender_pipeline.profiling.keys import sample_keys
from recommender_pipeline.resources import KafkaResource, MeasurementStoreResource, SettingsResource
from recommender_pipeline.settings import Settings

# Lag and group membership can only be seen now: a day is observed until this long after it ends
# (the daily schedule recommends for yesterday shortly after midnight), never later.
OBSERVABLE_AFTER_DAY_MS = 6 * 3_600_000
KEY_HASHES_KEPT = 1_000  # enough for a remapped share within about 3 points (95 %)
KEY_READ_TIMEOUT_SECONDS = 10.0


def observable(day: date, now_ms: int) -> bool:
    return now_ms < day_end_ms(day) + OBSERVABLE_AFTER_DAY_MS


@dg.asset(
    partitions_def=daily_partitions,
    group_name="recommender",
    kinds={"kafka", "duckdb"},
)
def topic_profiles(
    context: dg.AssetExecutionContext,
    cluster_inventory: pd.DataFrame,
    config: SettingsResource,
    kafka: KafkaResource,
    store: MeasurementStoreResource,
) -> dg.MaterializeResult:
    """Per topic, its consumer groups (members, assigned partitions, committed offsets, lag) and a
    sample of its latest records' keys (keyed share, busiest key's share, key hashes for the
    remapped share), stored in the store's `topic_profiles` table. Taken for today, or for
    yesterday until 06:00 UTC; an older day keeps what was observed then."""
    settings = config.settings
    day = date.fromisoformat(context.partition_key)
    now_ms = int(time.time() * 1000)
    if not observable(day, now_ms):
        context.log.info(f"{day} is past: consumers can only be observed live, its stored profiles stay")
        return dg.MaterializeResult(metadata={"topics": 0, "observed": False})
    profiled_at = datetime.now(UTC).isoformat(timespec="seconds")
    rows: list[dict] = []
    failed: dict[str, str] = {}
    for cluster_id, topics in cluster_inventory.groupby("cluster_id", sort=True):
        partitions = dict(zip(topics["topic"], topics["partitions"].astype(int), strict=True))
        base = {"date": day.isoformat(), "cluster_id": cluster_id, "profiled_at": profiled_at}
        groups = _consumer_groups(context, kafka, cluster_id, partitions, failed)
        rows += _profile_cluster(kafka, settings, cluster_id, partitions, base, groups, failed.get(str(cluster_id)))
        context.log.info(f"cluster {cluster_id}: profiled {len(partitions)} topics")
    store.write_profiles(rows)
    group_count = sum(len(json.loads(r["consumer_groups"])) for r in rows)
    return dg.MaterializeResult(
        metadata={
            "topics": len(rows),
            "observed": True,
            "consumer_groups_on_topics": group_count,
            "keyed_topics": sum(1 for r in rows if r.get("keyed_records")),
            "clusters_failed": dg.MetadataValue.json(failed),
        }
    )


def _consumer_groups(
    context: dg.AssetExecutionContext,
    kafka: KafkaResource,
    cluster_id: Hashable,
    partitions: dict[str, int],
    failed: dict[str, str],
) -> dict[str, list[GroupOnTopic]]:
    """The cluster's consumer groups by topic; none, with the reason logged and kept in `failed`,
    when they cannot be listed, so that the keys are still sampled."""
    try:
        return consumer_groups_by_topic(kafka.admin(str(cluster_id)), partitions)
    except (KafkaException, ClusterUnreachableError) as error:
        failed[str(cluster_id)] = error.args[0].str() if isinstance(error, KafkaException) else str(error)
        context.log.error(f"cluster {cluster_id}: consumer groups unavailable: {failed[str(cluster_id)]}")
        return {}


def _profile_cluster(
    kafka: KafkaResource,
    settings: Settings,
    cluster_id: Hashable,
    partitions: dict[str, int],
    base: dict,
    groups: dict[str, list[GroupOnTopic]],
    groups_error: str | None,
) -> list[dict]:
    """One row per topic of the cluster, read through one consumer that is always closed."""
    rows: list[dict] = []
    consumer = kafka.consumer(str(cluster_id), {"isolation.level": "read_uncommitted"})
    try:
        for topic, count in partitions.items():
            row = {
                **base,
                "topic": topic,
                "consumer_groups": json.dumps([g.as_dict() for g in groups.get(topic, [])]),
            }
            if groups_error is not None:
                row["error"] = f"consumer groups unavailable: {groups_error}"
            if settings.key_sample_records:
                row.update(_key_columns(consumer, topic, count, settings))
            rows.append(row)
    finally:
        consumer.close()
    return rows


def _key_columns(consumer: Consumer, topic: str, count: int, settings: Settings) -> dict:
    """The topic's key sample columns, or an error for this topic only when it cannot be read."""
    try:
        sample = sample_keys(
            consumer,
            topic,
            count,
            settings.key_sample_records,
            KEY_HASHES_KEPT,
            KEY_READ_TIMEOUT_SECONDS,
        )
        return {
            "key_sampled_records": sample.records,
            "keyed_records": sample.keyed,
            "top_key_share": sample.top_key_share,
            "key_hashes": json.dumps(sample.hashes),
        }
    except (KafkaException, RuntimeError) as error:  # this topic only
        return {"error": f"keys not sampled: {error}"}
