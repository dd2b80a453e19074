"""Listing a cluster's topics with their configuration, after the filters: what the inventory
asset stores and what topic discovery compares against Dagster's partitions."""

from datetime import UTC, datetime

from confluent_kafka import KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec, ResourceType

from recommender_pipeline.settings import Settings

SYSTEM_PREFIXES = ("__", "_confluent", "_schemas")
TIMEOUT_SECONDS = 30
# Dagster refuses partition keys holding any of its INVALID_PARTITION_SUBSTRINGS: "..." (the
# separator of a partition range, `a...b`, in its UI and CLI) and control characters. A Kafka topic
# name is 1-249 of [A-Za-z0-9._-], so of those only "..." can occur: a topic whose name holds three
# dots in a row (`...`, `a...b`, `a....b`, `logs...`) has no partition key, so it cannot be measured.
UNSUPPORTED_IN_KEYS = "..."
NOT_SUPPORTED = "not_supported"  # the status such a topic has in the reports
NOT_SUPPORTED_REASON = (
    f"not supported: Dagster cannot use '{UNSUPPORTED_IN_KEYS}' in a partition key, so a topic whose name holds "
    "three dots in a row cannot be measured; to measure it, move its traffic to a topic named without them"
)


def is_keyable(topic: str) -> bool:
    """Whether Dagster can key the topic, i.e. measure it (see `UNSUPPORTED_IN_KEYS`)."""
    return UNSUPPORTED_IN_KEYS not in topic


def is_internal(topic: str, broker_says_internal: bool) -> bool:
    """Internal means marked so by the broker or a system name; a user's `_app` topic is not."""
    return broker_says_internal or topic.startswith(SYSTEM_PREFIXES)


def matches_topic_filter(topic: str, topic_filter: list[str]) -> bool:
    """`TOPIC_FILTER` entries match as case-insensitive substrings; no entries match all."""
    return not topic_filter or any(entry.lower() in topic.lower() for entry in topic_filter)


def _kept_by_name(name: str, settings: Settings) -> bool:
    """The filters a name alone decides: `TOPIC_FILTER`, internal names, the results topic."""
    if is_internal(name, False) and not settings.include_internal_topics:
        return False
    if settings.use_kafka_writer and name == settings.kafka_writer_topic_name:  # our own output, not traffic
        return False
    return matches_topic_filter(name, settings.topic_filter)


def list_cluster_topics(admin: AdminClient, cluster_id: str, settings: Settings) -> tuple[list[dict], int]:
    """The cluster's topics that pass the filters, and how many were filtered out. Each row also
    carries the cluster's broker count and its partitions and replicas over every topic, filtered
    out or not, for the partition cap."""
    metadata = admin.list_topics(timeout=TIMEOUT_SECONDS)
    # The filters by name first: a cluster of thousands of topics is described only for the ones
    # kept (the broker's own internal flag, which needs a description, is checked after).
    names = sorted((name for name in metadata.topics if _kept_by_name(name, settings)), key=str.lower)
    excluded = len(metadata.topics) - len(names)
    if not names:
        return [], excluded
    descriptions = admin.describe_topics(TopicCollection(names), request_timeout=TIMEOUT_SECONDS)
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    configs = admin.describe_configs(resources, request_timeout=TIMEOUT_SECONDS)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    log_records = _log_records(admin, {name: len(metadata.topics[name].partitions) for name in names})
    cluster = {"cluster_brokers": len(metadata.brokers), "cluster_partitions": 0, "cluster_replicas": 0}
    for topic in metadata.topics.values():
        cluster["cluster_partitions"] += len(topic.partitions)
        cluster["cluster_replicas"] += sum(len(p.replicas) for p in topic.partitions.values())
    rows = []
    for name, resource in zip(names, resources, strict=True):
        try:
            description = descriptions[name].result()
        except KafkaException:  # deleted while we looked
            continue
        internal = is_internal(name, description.is_internal)
        if internal and not settings.include_internal_topics:
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
                **cluster,
                "cluster_type": "",
                "log_records": log_records.get(name),
            }
        )
    return rows, excluded


def _log_records(admin: AdminClient, partitions: dict[str, int]) -> dict[str, int]:
    """Each topic's records in its log (end minus start offsets, transaction markers included):
    two ListOffsets requests per broker for the whole cluster. A topic whose offsets the broker
    did not give is left out: its work is then unknown, never wrong."""
    wanted = [TopicPartition(topic, p) for topic, count in partitions.items() for p in range(count)]
    ends = {}
    for name, spec in (("start", OffsetSpec.earliest()), ("end", OffsetSpec.latest())):
        futures = admin.list_offsets({tp: spec for tp in wanted}, request_timeout=TIMEOUT_SECONDS)
        for tp, future in futures.items():
            try:
                ends[(name, tp.topic, tp.partition)] = future.result().offset
            except KafkaException:
                continue
    records: dict[str, int] = {}
    missing = set()
    for tp in wanted:
        start, end = ends.get(("start", tp.topic, tp.partition)), ends.get(("end", tp.topic, tp.partition))
        if start is None or end is None:
            missing.add(tp.topic)
            continue
        records[tp.topic] = records.get(tp.topic, 0) + max(end - start, 0)
    return {topic: count for topic, count in records.items() if topic not in missing}
