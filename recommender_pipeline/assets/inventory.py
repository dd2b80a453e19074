"""Every topic of every cluster, after the filters, and the dynamic partitions that follow them."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ResourceType
from confluent_kafka.admin import ConfigResource as KafkaConfigResource

from recommender_pipeline.partitions import topic_key, topics_partitions
from recommender_pipeline.resources import ConfigResource, KafkaResource, MeasurementStoreResource
from recommender_pipeline.resources.store import INVENTORY_COLUMNS
from recommender_pipeline.settings import Settings

SYSTEM_PREFIXES = ("__", "_confluent", "_schemas")
TIMEOUT_SECONDS = 30
UNSUPPORTED_IN_KEYS = "..."


def is_internal(topic: str, broker_says_internal: bool) -> bool:
    """Internal means marked so by the broker or a system name; a user's `_app` topic is not."""
    return broker_says_internal or topic.startswith(SYSTEM_PREFIXES)


def matches_topic_filter(topic: str, topic_filter: list[str]) -> bool:
    """`TOPIC_FILTER` entries match as case-insensitive substrings; no entries match all."""
    return not topic_filter or any(entry.lower() in topic.lower() for entry in topic_filter)


def list_cluster_topics(admin: AdminClient, cluster_id: str, settings: Settings) -> tuple[list[dict], int]:
    """The cluster's topics that pass the filters, and how many were filtered out."""
    names = sorted(admin.list_topics(timeout=TIMEOUT_SECONDS).topics, key=str.lower)
    if not names:
        return [], 0
    descriptions = admin.describe_topics(TopicCollection(names), request_timeout=TIMEOUT_SECONDS)
    resources = [KafkaConfigResource(ResourceType.TOPIC, name) for name in names]
    configs = admin.describe_configs(resources, request_timeout=TIMEOUT_SECONDS)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows, excluded = [], 0
    for name, resource in zip(names, resources, strict=True):
        try:
            description = descriptions[name].result()
        except KafkaException:  # deleted while we looked
            continue
        internal = is_internal(name, description.is_internal)
        if (internal and not settings.include_internal_topics) or not matches_topic_filter(name, settings.topic_filter):
            excluded += 1
            continue
        try:
            entries = configs[resource].result()
        except KafkaException:
            entries = {}
        policy = entries["cleanup.policy"].value if "cleanup.policy" in entries else "delete"
        retention = int(entries["retention.ms"].value) if "retention.ms" in entries else None
        rows.append(
            {
                "cluster_id": cluster_id,
                "topic": name,
                "partitions": len(description.partitions),
                "replication_factor": len(description.partitions[0].replicas) if description.partitions else 0,
                "cleanup_policy": policy,
                "retention_ms": retention,
                "is_internal": internal,
                "is_compacted": "compact" in policy.lower(),
                "inventoried_at": now,
            }
        )
    return rows, excluded


@dg.asset(group_name="inventory", kinds={"kafka", "duckdb"})
def cluster_inventory(
    context: dg.AssetExecutionContext,
    credentials: pd.DataFrame,
    config: ConfigResource,
    kafka: KafkaResource,
    store: MeasurementStoreResource,
) -> pd.DataFrame:
    """Per cluster, every topic with its partitions, replication factor, `cleanup.policy`,
    `retention.ms` and internal flag, after `TOPIC_FILTER` and `INCLUDE_INTERNAL_TOPICS`.
    Adds a `topics` dynamic partition for each new topic so it is measured from now on."""
    settings = config.settings
    rows: list[dict] = []
    failed: dict[str, str] = {}
    excluded = 0
    for cluster_id in credentials["cluster_id"]:
        try:
            cluster_rows, cluster_excluded = list_cluster_topics(kafka.admin(cluster_id), cluster_id, settings)
        except KafkaException as error:
            failed[cluster_id] = error.args[0].str()
            context.log.error(f"cluster {cluster_id} unreachable: {failed[cluster_id]}")
            continue
        rows += cluster_rows
        excluded += cluster_excluded
        context.log.info(f"cluster {cluster_id}: {len(cluster_rows)} topics kept, {cluster_excluded} filtered out")

    # Dagster partition keys cannot contain "...", which Kafka allows in topic names.
    unsupported = sorted(topic_key(r["cluster_id"], r["topic"]) for r in rows if UNSUPPORTED_IN_KEYS in r["topic"])
    if unsupported:
        context.log.warning(f"topics left out, their names contain '...' (not a valid Dagster key): {unsupported}")
    rows = [r for r in rows if UNSUPPORTED_IN_KEYS not in r["topic"]]
    inventory = pd.DataFrame(rows, columns=list(INVENTORY_COLUMNS))
    keys = [topic_key(c, t) for c, t in zip(inventory["cluster_id"], inventory["topic"], strict=True)]
    known = set(context.instance.get_dynamic_partitions(topics_partitions.name))
    new_keys = [key for key in keys if key not in known]
    if new_keys:
        context.instance.add_dynamic_partitions(topics_partitions.name, new_keys)
    store.replace_inventory(inventory)

    yield dg.Output(
        inventory,
        metadata={
            "topics": len(inventory),
            "partitions": int(inventory["partitions"].sum()),
            "new_topic_partitions": len(new_keys),
            "filtered_out_topics": excluded,
            "unsupported_topic_names": dg.MetadataValue.json(unsupported),
            "clusters_failed": dg.MetadataValue.json(failed),
            "filters": dg.MetadataValue.json(
                {
                    "TOPIC_FILTER": settings.topic_filter,
                    "INCLUDE_INTERNAL_TOPICS": settings.include_internal_topics,
                    "KAFKA_CLUSTER_FILTER": settings.kafka_cluster_filter,
                }
            ),
            "preview": dg.MetadataValue.md(inventory.head(50).to_markdown(index=False)),
        },
    )
    if failed:
        raise dg.Failure(
            f"{len(failed)} cluster(s) could not be inventoried: {', '.join(sorted(failed))}; "
            "the other clusters' topics were stored.",
            metadata={"clusters_failed": dg.MetadataValue.json(failed)},
        )
