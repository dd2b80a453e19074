"""Which clusters can be analysed and how each is reached; a manifest, never a secret."""

import dagster as dg
import pandas as pd

from recommender_pipeline.resources import KafkaResource

MANIFEST_COLUMNS = ["cluster_id", "bootstrap_servers", "source", "key_id", "security_protocol"]


@dg.asset(group_name="recommender", kinds={"kafka"})
def credentials(context: dg.AssetExecutionContext, kafka: KafkaResource) -> pd.DataFrame:
    """One row per Kafka cluster the pipeline can reach: id, bootstrap servers, where the
    credentials came from (env, aws_secrets_manager, provisioned) and the API key id.
    Secrets stay in the memory of the processes that use them."""
    connections = list(kafka.connections().values())
    if not connections:
        raise dg.Failure(
            "No Kafka cluster to analyse: set KAFKA_CREDENTIALS or KAFKA_API_SECRET_PATHS, or provision keys "
            "(USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS); check KAFKA_CLUSTER_FILTER."
        )
    manifest = pd.DataFrame(
        [
            {
                "cluster_id": c.cluster_id,
                "bootstrap_servers": c.bootstrap_servers,
                "source": c.source,
                "key_id": c.key_id or "",
                "security_protocol": c.properties.get("security.protocol", "PLAINTEXT"),
            }
            for c in connections
        ],
        columns=MANIFEST_COLUMNS,
    )
    context.add_output_metadata(
        {"clusters": len(manifest), "manifest": dg.MetadataValue.md(manifest.to_markdown(index=False))}
    )
    return manifest
