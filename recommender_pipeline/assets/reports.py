"""Per cluster, the detail and summary CSV reports and the HTML report for a day's recommendations."""

from collections.abc import Hashable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import dagster as dg
import pandas as pd

from recommender_pipeline.assets.inventory import not_supported_topics
from recommender_pipeline.assets.partitions import daily_partitions, history_start
from recommender_pipeline.clusters.topic_listing import NOT_SUPPORTED
from recommender_pipeline.errors import ReportWriteError
from recommender_pipeline.outputs.html_report import ReportInput, render_report, report_preview
from recommender_pipeline.outputs.reporting import (
    detail_frame,
    report_paths,
    summary_rows,
    with_not_supported,
    write_report_set,
)
from recommender_pipeline.resources import MeasurementStoreResource, SettingsResource
from recommender_pipeline.settings import Settings


class _ClusterReport(NamedTuple):
    """One cluster's three reports, built in memory before any file is written."""

    detail: pd.DataFrame
    summary: pd.DataFrame
    report: ReportInput


@dg.asset(partitions_def=daily_partitions, group_name="recommender", kinds={"csv", "html"})
def reports(
    context: dg.AssetExecutionContext,
    topic_recommendations: pd.DataFrame,
    config: SettingsResource,
    store: MeasurementStoreResource,
) -> pd.DataFrame:
    """`<cluster>-recommender-<day>-<run>-detail-report.csv`, `...-summary-report.csv` and
    `...-report.html` (self-contained, charts inline, `html_report.py`) in `REPORTS_DIR`, each
    cluster's three written all or nothing, never over another report; returns the files written.
    Topics whose names Dagster cannot key are listed in them as `not_supported`, with the reason."""
    settings = config.settings
    day = context.partition_key
    # The topics Dagster cannot key were never measured; the inventory listed them aside.
    rows = with_not_supported(topic_recommendations, not_supported_topics(context.instance), day, settings)
    written: list[dict] = []
    previews: list[str] = []
    if rows.empty:
        context.log.warning("no topics to report")
    else:
        # The charts show each topic's whole stored history, not only the window.
        first_day = min(history_start(), str(rows["window_start"].min()))
        history = store.read_measurements(first_day, day)
        for cluster_id, cluster_rows in rows.groupby("cluster_id", sort=True):
            built = _build_cluster_report(cluster_id, cluster_rows, history, day, settings)
            cluster_written, preview = _write_cluster_report(context, settings, cluster_id, day, built)
            previews.append(preview)
            written += cluster_written
    files = pd.DataFrame(written, columns=["cluster_id", "kind", "path", "rows"])
    context.add_output_metadata(_reports_metadata(files, previews, settings))
    return files


def _build_cluster_report(
    cluster_id: Hashable, cluster_rows: pd.DataFrame, history: pd.DataFrame, day: str, settings: Settings
) -> _ClusterReport:
    """The cluster's detail and summary frames and the HTML report's input; the not supported
    topics are in the detail and summary, and set apart in the HTML report."""
    unsupported = cluster_rows["status"] == NOT_SUPPORTED
    recommendations = cluster_rows.loc[~unsupported]
    detail = detail_frame(cluster_rows, settings)
    summary = pd.DataFrame(
        summary_rows(cluster_rows, settings, recommendations["measuring_seconds"].sum()),
        columns=["stat", "value"],
    )
    report = ReportInput(
        cluster_id=str(cluster_id),
        day=day,
        recommendations=recommendations,
        history=history.loc[history["cluster_id"] == cluster_id],
        # The capacity each recommendation used (`topic_window.capacity_columns`), not rebuilt.
        peak_per_partition=_peak_per_partition(recommendations),
        not_supported=cluster_rows.loc[unsupported],
    )
    return _ClusterReport(detail, summary, report)


def _write_cluster_report(
    context: dg.AssetExecutionContext, settings: Settings, cluster_id: Hashable, day: str, built: _ClusterReport
) -> tuple[list[dict], str]:
    """Writes the cluster's three files, all or nothing, and returns their rows for the `files`
    output and the report's preview for the metadata."""
    paths = report_paths(settings.reports_dir, str(cluster_id), day, context.run.run_id)
    detail_path, summary_path, html_path = paths
    detail, summary = built.detail, built.summary
    html = render_report(built.report)
    preview = report_preview(built.report, report_url(settings.reports_url, settings.reports_dir, html_path))
    try:  # the three files, all or nothing
        write_report_set(paths, detail, summary, html)
    except ReportWriteError as error:
        raise dg.Failure(description=str(error)) from None
    written = [
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
        {"cluster_id": cluster_id, "kind": "html", "path": str(html_path.resolve()), "rows": len(detail)},
    ]
    context.log.info(
        f"cluster {cluster_id}: wrote {detail_path} ({len(detail)} topics), {summary_path} and {html_path}"
    )
    return written, preview


def _reports_metadata(files: pd.DataFrame, previews: list[str], settings: Settings) -> dict[str, object]:
    """The asset's metadata: the previews, a link per HTML report and the files written."""
    html_files = files.loc[files["kind"] == "html"]
    # One link per cluster's HTML report, over HTTP (a browser opens no file:// link from the UI),
    # and the overview as Markdown: readable in the UI even where the link cannot be reached.
    links = {
        f"html_report_{row.cluster_id}": dg.MetadataValue.url(url)
        for row in html_files.itertuples()
        if (url := report_url(settings.reports_url, settings.reports_dir, Path(row.path)))
    }
    if len(html_files) == 1:
        links["html_report"] = dg.MetadataValue.path(html_files["path"].iloc[0])
    return {
        "report_preview": dg.MetadataValue.md("\n\n---\n\n".join(previews) or "no topics to report"),
        **links,
        "files": dg.MetadataValue.md(files.to_markdown(index=False)),
        "paths": dg.MetadataValue.json(files["path"].tolist()),
        "detail_rows": int(files.loc[files["kind"] == "detail", "rows"].sum()),
        "reports_dir": dg.MetadataValue.path(str(settings.reports_dir.resolve())),
    }


def report_url(base: str, reports_dir: Path, path: Path) -> str | None:
    """The report at `path` (inside `reports_dir`) under REPORTS_URL `base`, or None without one."""
    if not base:
        return None
    relative = path.resolve().relative_to(reports_dir.resolve()).as_posix()
    return base + quote(relative)


def _peak_per_partition(recommendations: pd.DataFrame) -> float:
    """The window peak one partition of the cluster takes, as its recommendations computed it."""
    values = recommendations.get("peak_per_partition_bytes_per_sec", pd.Series(dtype=float)).dropna()
    return float(values.iloc[0]) if not values.empty else 0.0
