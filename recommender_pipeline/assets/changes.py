"""Per cluster, the ready-made changes for a day's topics to increase, beside the CSV reports."""

import time
from pathlib import Path

import dagster as dg
import pandas as pd

from recommender_pipeline.assets.partitions import daily_partitions
from recommender_pipeline.errors import RecommenderError
from recommender_pipeline.outputs.atomic_files import AtomicWriteError, write_files_atomically
from recommender_pipeline.outputs.partition_changes import (
    KINDS,
    ClusterTarget,
    change_paths,
    increases,
    paths_beside,
    render,
)
from recommender_pipeline.resources import KafkaResource, SettingsResource

# When a cluster's connection is not available in this run (a UI run of the provisioned path).
UNKNOWN_BOOTSTRAP = "<bootstrap-servers>"
PREVIEW_COLUMNS = ["cluster_id", "topic_name", "number_of_partitions", "recommended_partitions", "binding"]


def cluster_target(kafka: KafkaResource, cluster_id: str) -> ClusterTarget:
    """The cluster's bootstrap servers and whether it authenticates, from its connection; only
    `bootstrap.servers` and `security.protocol` are read, never a `sasl.*` property."""
    try:
        properties = kafka.connection(cluster_id).properties
    except RecommenderError:
        return ClusterTarget(cluster_id, UNKNOWN_BOOTSTRAP, authenticated=True)
    protocol = properties.get("security.protocol", "PLAINTEXT").upper()
    return ClusterTarget(cluster_id, properties["bootstrap.servers"], authenticated=protocol != "PLAINTEXT")


@dg.asset(partitions_def=daily_partitions, group_name="recommender", kinds={"json", "terraform"})
def partition_changes(
    context: dg.AssetExecutionContext,
    topic_recommendations: pd.DataFrame,
    reports: pd.DataFrame,
    config: SettingsResource,
    kafka: KafkaResource,
) -> pd.DataFrame:
    """`<cluster>-recommender-<day>-<run>-partition-changes.sh`, `...-rest-v3.json`, `.tf` and
    `.json` beside each cluster's CSV reports, with their stem: the topics whose action is
    `increase`, as commands, REST bodies, Terraform and a CI gate. Written, never applied;
    downstream of `topic_recommendations`, so its blocking sanity check gates these files too.
    Returns the files written."""
    settings = config.settings
    epoch = int(time.time())
    day = context.partition_key
    written = []
    for cluster_id, recommendations in topic_recommendations.groupby("cluster_id", sort=True):
        target = cluster_target(kafka, str(cluster_id))
        detail = reports.loc[(reports["cluster_id"] == cluster_id) & (reports["kind"] == "detail"), "path"]
        paths = (
            paths_beside(Path(detail.iloc[0]))
            if len(detail)
            else change_paths(settings.reports_dir, str(cluster_id), epoch, day, context.run.run_id)
        )
        topics = len(increases(recommendations))
        texts = {paths[kind]: text for kind, text in render(target, day, recommendations).items()}
        try:  # the four forms, all or nothing, as the reports
            write_files_atomically(texts, executable=frozenset({paths["kafka_topics_sh"]}))
        except AtomicWriteError as error:
            raise dg.Failure(
                description=f"REPORTS_DIR {error.path.parent}: {error.cause} writing {error.path.name}; "
                "nothing of this cluster's change files was kept"
            ) from None
        written += [
            {"cluster_id": cluster_id, "kind": kind, "path": str(path.resolve()), "topics": topics}
            for kind, path in paths.items()
        ]
        context.log.info(f"cluster {cluster_id}: {topics} topic(s) to increase, changes in {paths['ci_gate']}")
    files = pd.DataFrame(written, columns=["cluster_id", "kind", "path", "topics"])
    to_increase = increases(topic_recommendations)
    preview = to_increase.reindex(columns=PREVIEW_COLUMNS)
    context.add_output_metadata(
        {
            "files": dg.MetadataValue.md(files.to_markdown(index=False) if not files.empty else "no clusters"),
            "paths": dg.MetadataValue.json(files["path"].tolist()),
            "topics_to_increase": len(to_increase),
            "partitions_to_add": int(
                (to_increase["recommended_partitions"] - to_increase["number_of_partitions"]).sum()
                if not to_increase.empty
                else 0
            ),
            "changes": dg.MetadataValue.md(
                preview.to_markdown(index=False) if not preview.empty else "No topic to increase."
            ),
            "forms": dg.MetadataValue.json(KINDS),
        }
    )
    return files
