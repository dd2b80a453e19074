"""Every topic of every cluster, after the filters, and the dynamic partitions that follow them."""

from dataclasses import dataclass, field

import dagster as dg
import pandas as pd
from confluent_kafka import KafkaException

from recommender_pipeline.assets.partitions import topic_key, topics_partitions
from recommender_pipeline.clusters.topic_listing import (
    NOT_SUPPORTED_REASON,
    UNSUPPORTED_IN_KEYS,
    is_keyable,
    list_cluster_topics,
)
from recommender_pipeline.errors import ClusterUnreachableError, RecommenderError
from recommender_pipeline.resources import ConfluentCloudResource, KafkaResource, SettingsResource
from recommender_pipeline.resources.store import INVENTORY_COLUMNS
from recommender_pipeline.settings import Settings, unknown_variable_warnings

# The inventory's metadata entry listing the topics Dagster cannot key, read back by the reports.
NOT_SUPPORTED_METADATA = "not_supported_topics"
NOT_SUPPORTED_COLUMNS = ["cluster_id", "topic", "partitions", "reason"]


@dataclass
class _ListedTopics:
    """What listing every cluster gave: the kept topics' rows, the clusters that failed (with the
    reason) and how many topics the filters left out."""

    rows: list[dict] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    excluded: int = 0


@dg.asset(group_name="recommender", kinds={"kafka", "duckdb"}, io_manager_key="inventory_io_manager")
def cluster_inventory(
    context: dg.AssetExecutionContext,
    credentials: pd.DataFrame,
    config: SettingsResource,
    kafka: KafkaResource,
    cloud: ConfluentCloudResource,
) -> pd.DataFrame:
    """Start here: materialize this first (or turn on topic_discovery_sensor). Per cluster, every
    topic with its partitions, replication factor, `cleanup.policy`, `retention.ms` and internal
    flag, after `TOPIC_FILTER` and `INCLUDE_INTERNAL_TOPICS`. Adds a `topics` dynamic partition
    (`<cluster_id>/<topic>`) for each new topic so it is measured from now on: until then
    topic_measurements has no topics to pick. The inventory itself lives in the store's
    inventory table (`InventoryIOManager`)."""
    settings = config.settings
    for warning in unknown_variable_warnings(config.env_file):  # a misspelt variable, said where runs are seen
        context.log.warning(warning)
    listed = _list_clusters(context, credentials, kafka, settings)
    failed = listed.failed

    kinds = _cloud_cluster_kinds(context, cloud, settings, {r["cluster_id"] for r in listed.rows})
    for row in listed.rows:
        row["cluster_type"] = kinds.get(row["cluster_id"], "")

    not_supported, unsupported = _not_supported(context, listed.rows, failed)
    rows = [r for r in listed.rows if is_keyable(r["topic"])]
    inventory = pd.DataFrame(rows, columns=list(INVENTORY_COLUMNS))
    inventory.attrs["failed_clusters"] = sorted(failed)
    new_keys = _add_new_topic_partitions(context, inventory)

    # A generator, so that a partial inventory is still the asset's output (the other clusters'
    # topics are measured) before the Failure marks the run as failed for the cluster that was not.
    yield dg.Output(
        inventory,
        metadata=_inventory_metadata(inventory, listed, new_keys, unsupported, not_supported, settings),
    )
    if failed:
        raise dg.Failure(
            f"{len(failed)} cluster(s) could not be inventoried: {', '.join(sorted(failed))}; "
            "the other clusters' topics were stored, and theirs kept as last known.",
            metadata={"clusters_failed": dg.MetadataValue.json(failed)},
        )


def _list_clusters(
    context: dg.AssetExecutionContext, credentials: pd.DataFrame, kafka: KafkaResource, settings: Settings
) -> _ListedTopics:
    """Lists each cluster's topics, one cluster at a time, so that one unreachable cluster is
    logged and set aside while the others are still inventoried."""
    listed = _ListedTopics()
    for cluster_id in credentials["cluster_id"]:
        try:
            cluster_rows, cluster_excluded = list_cluster_topics(kafka.admin(cluster_id), cluster_id, settings)
        except ClusterUnreachableError as error:  # credentials, TLS, DNS: said at once, with the reason
            listed.failed[cluster_id] = str(error)
            context.log.error(listed.failed[cluster_id])
            continue
        except KafkaException as error:
            listed.failed[cluster_id] = error.args[0].str()
            context.log.error(f"cluster {cluster_id} unreachable: {listed.failed[cluster_id]}")
            continue
        listed.rows += cluster_rows
        listed.excluded += cluster_excluded
        context.log.info(f"cluster {cluster_id}: {len(cluster_rows)} topics kept, {cluster_excluded} filtered out")
    return listed


def _not_supported(
    context: dg.AssetExecutionContext, rows: list[dict], failed: dict[str, str]
) -> tuple[list[dict], list[str]]:
    """The topics Dagster cannot key (with their reason) and their sorted keys, warned about once."""
    # Dagster partition keys cannot contain "...", which Kafka allows in topic names: such topics
    # get no key (so they are never measured) and are kept aside, in this asset's metadata, for the
    # reports to list as not supported. A cluster that could not be listed keeps its last known ones.
    not_supported = [
        {"cluster_id": r["cluster_id"], "topic": r["topic"], "partitions": r["partitions"]}
        for r in rows
        if not is_keyable(r["topic"])
    ]
    last_known = not_supported_topics(context.instance)
    not_supported += last_known.loc[
        last_known["cluster_id"].isin(list(failed)), ["cluster_id", "topic", "partitions"]
    ].to_dict("records")
    not_supported = [{**entry, "reason": NOT_SUPPORTED_REASON} for entry in not_supported]
    unsupported = sorted(topic_key(r["cluster_id"], r["topic"]) for r in not_supported)
    if unsupported:
        context.log.warning(
            f"{len(unsupported)} topic(s) not supported, their names contain '{UNSUPPORTED_IN_KEYS}' (not a valid "
            f"Dagster key): listed in the reports, never measured: {unsupported}"
        )
    return not_supported, unsupported


def _add_new_topic_partitions(context: dg.AssetExecutionContext, inventory: pd.DataFrame) -> list[str]:
    """Adds a `topics` dynamic partition for each topic not keyed yet, so it is measured from now
    on, and returns the keys added."""
    keys = [topic_key(c, t) for c, t in zip(inventory["cluster_id"], inventory["topic"], strict=True)]
    known = set(context.instance.get_dynamic_partitions(topics_partitions.name))
    new_keys = [key for key in keys if key not in known]
    if new_keys:
        context.instance.add_dynamic_partitions(topics_partitions.name, new_keys)
    return new_keys


def _inventory_metadata(
    inventory: pd.DataFrame,
    listed: _ListedTopics,
    new_keys: list[str],
    unsupported: list[str],
    not_supported: list[dict],
    settings: Settings,
) -> dict[str, object]:
    """The inventory's materialization metadata; NOT_SUPPORTED_METADATA is read back by the reports."""
    return {
        "topics": len(inventory),
        "partitions": int(inventory["partitions"].sum()),
        "new_topic_partitions": len(new_keys),
        "filtered_out_topics": listed.excluded,
        "unsupported_topic_names": dg.MetadataValue.json(unsupported),
        NOT_SUPPORTED_METADATA: dg.MetadataValue.json(not_supported),
        "clusters_failed": dg.MetadataValue.json(listed.failed),
        "filters": dg.MetadataValue.json(
            {
                "TOPIC_FILTER": settings.topic_filter,
                "INCLUDE_INTERNAL_TOPICS": settings.include_internal_topics,
                "KAFKA_CLUSTER_FILTER": settings.kafka_cluster_filter,
            }
        ),
        "preview": dg.MetadataValue.md(inventory.head(50).to_markdown(index=False)),
    }


def _cloud_cluster_kinds(
    context: dg.AssetExecutionContext, cloud: ConfluentCloudResource, settings, cluster_ids: set[str]
) -> dict[str, str]:
    """Confluent Cloud cluster types, when a Cloud API key is configured and a cluster is a
    Confluent Cloud one (`lkc-`); without them the per-broker budget sets the partition cap."""
    has_cloud_key = settings.confluent_cloud_credential or settings.confluent_cloud_api_secret_path
    if not has_cloud_key or not any(c.startswith("lkc-") for c in cluster_ids):
        return {}
    try:
        return cloud.cluster_kinds()
    except RecommenderError as error:
        context.log.warning(f"cluster types unknown, the per-broker partition budget applies: {error}")
        return {}


def not_supported_topics(instance: dg.DagsterInstance) -> pd.DataFrame:
    """The topics the latest inventory could not key (`NOT_SUPPORTED_COLUMNS`), from its metadata:
    they are not in the store's inventory, since nothing downstream could measure them."""
    event = instance.get_latest_materialization_event(dg.AssetKey("cluster_inventory"))
    materialization = event.asset_materialization if event else None
    entry = materialization.metadata.get(NOT_SUPPORTED_METADATA) if materialization else None
    return pd.DataFrame(entry.value if entry else [], columns=NOT_SUPPORTED_COLUMNS)
