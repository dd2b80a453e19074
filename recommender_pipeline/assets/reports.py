"""Per cluster, the detail and summary CSV reports for a day's recommendations."""

import time

import dagster as dg
import pandas as pd

from recommender_pipeline.partitions import daily_partitions
from recommender_pipeline.reporting import detail_frame, report_paths, summary_rows, write_csv_atomically
from recommender_pipeline.resources import SettingsResource


@dg.asset(partitions_def=daily_partitions, group_name="reports", kinds={"csv"})
def reports(
    context: dg.AssetExecutionContext, topic_recommendations: pd.DataFrame, config: SettingsResource
) -> pd.DataFrame:
    """`<cluster>-recommender-<epoch>-<day>-<run>-detail-report.csv` and `...-summary-report.csv`
    in `REPORTS_DIR`, written atomically, never over another report; returns the files written."""
    settings = config.settings
    epoch = int(time.time())
    written = []
    if topic_recommendations.empty:
        context.log.warning("no topics to report")
    for cluster_id, recommendations in topic_recommendations.groupby("cluster_id", sort=True):
        detail_path, summary_path = report_paths(
            settings.reports_dir, str(cluster_id), epoch, context.partition_key, context.run.run_id
        )
        detail = detail_frame(recommendations, settings)
        summary = pd.DataFrame(
            summary_rows(recommendations, settings, recommendations["measuring_seconds"].sum()),
            columns=["stat", "value"],
        )
        write_csv_atomically(detail, detail_path)
        write_csv_atomically(summary, summary_path)
        written += [
            {
                "cluster_id": cluster_id,
                "kind": "detail",
                "path": str(detail_path.resolve()),
                "rows": len(detail),
            },
            {
                "cluster_id": cluster_id,
                "kind": "summary",
                "path": str(summary_path.resolve()),
                "rows": len(summary),
            },
        ]
        context.log.info(f"cluster {cluster_id}: wrote {detail_path} ({len(detail)} topics) and {summary_path}")
    files = pd.DataFrame(written, columns=["cluster_id", "kind", "path", "rows"])
    context.add_output_metadata(
        {
            "files": dg.MetadataValue.md(files.to_markdown(index=False)),
            "paths": dg.MetadataValue.json(files["path"].tolist()),
            "detail_rows": int(files.loc[files["kind"] == "detail", "rows"].sum()),
            "reports_dir": dg.MetadataValue.path(str(settings.reports_dir.resolve())),
        }
    )
    return files
