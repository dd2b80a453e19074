"""A day's recommendations, one JSON record per topic, on each analysed cluster's results topic."""

import dagster as dg
import pandas as pd

from recommender_pipeline.assets.partitions import daily_partitions
from recommender_pipeline.errors import ClusterUnreachableError
from recommender_pipeline.outputs.kafka_writer import ResultsTopicError, retention_ms, write_cluster_results
from recommender_pipeline.resources import KafkaResource, SettingsResource

COLUMNS = ["cluster_id", "topic", "records", "created", "error"]


@dg.asset(partitions_def=daily_partitions, group_name="recommender", kinds={"kafka"})
def published_recommendations(
    context: dg.AssetExecutionContext,
    topic_recommendations: pd.DataFrame,
    config: SettingsResource,
    kafka: KafkaResource,
) -> pd.DataFrame:
    """With `USE_KAFKA_WRITER`, every topic's recommendation for the day as a JSON record keyed
    `<cluster_id>/<topic>` in `KAFKA_WRITER_TOPIC_NAME` on the topic's own cluster (created when
    missing). A cluster that fails does not stop the others; the step then fails naming it.
    Disabled, it writes nothing and says so. Returns one row per cluster."""
    settings = config.settings
    if not settings.use_kafka_writer:
        context.add_output_metadata({"enabled": False, "note": "USE_KAFKA_WRITER is false: nothing was written"})
        return pd.DataFrame(columns=COLUMNS)
    rows, failures = [], []
    for cluster_id, recommendations in topic_recommendations.groupby("cluster_id", sort=True):
        cluster_id = str(cluster_id)
        topic = settings.kafka_writer_topic_name
        try:
            published = write_cluster_results(
                kafka.admin(cluster_id),
                kafka.producer(cluster_id),
                cluster_id,
                recommendations,
                context.partition_key,
                settings,
            )
        except (ResultsTopicError, ClusterUnreachableError) as error:
            # Both name the cluster; the results topic is named once, before the reason.
            reason = str(error).removeprefix(f"cluster {cluster_id}, results topic {topic}: ")
            failure = f"cluster {cluster_id}, results topic {topic}: {reason.removeprefix(f'cluster {cluster_id} ')}"
            context.log.error(failure)
            failures.append(failure)
            rows.append({"cluster_id": cluster_id, "topic": topic, "error": failure})
            continue
        created = " (created)" if published.created else ""
        context.log.info(f"cluster {cluster_id}: {published.records} record(s) to {published.topic}{created}")
        rows.append({**vars(published), "error": ""})
    written = pd.DataFrame(rows, columns=COLUMNS)
    metadata = {
        "enabled": True,
        "topic": settings.kafka_writer_topic_name,
        "retention_ms": retention_ms(settings.kafka_writer_topic_data_retention_in_days),
        "records": int(written["records"].fillna(0).sum()),
        "clusters": dg.MetadataValue.md(written.to_markdown(index=False) if not written.empty else "none"),
    }
    if failures:
        raise dg.Failure(description="\n".join(failures), metadata=metadata)
    context.add_output_metadata(metadata)
    return written
