"""Per topic, the recommended partition count for the rolling window that ends on a day."""

import warnings
from datetime import date, timedelta

import dagster as dg
import pandas as pd

from recommender_pipeline.assets.partitions import daily_partitions
from recommender_pipeline.days import window_days
from recommender_pipeline.outputs.ui_tables import history_markdown, recommendations_table
from recommender_pipeline.recommending.cluster_limits import cluster_headroom
from recommender_pipeline.recommending.forecast import HISTORY_FOR_TREND_DAYS
from recommender_pipeline.recommending.topic_window import build_recommendations
from recommender_pipeline.resources import MeasurementStoreResource, SettingsResource
from recommender_pipeline.settings import Settings

with warnings.catch_warnings():
    # Beta in this Dagster release, and exactly the mapping wanted: a day's recommendation
    # follows that day's measurements of every topic.
    warnings.simplefilter("ignore", dg.BetaWarning)
    MEASUREMENTS_OF_THE_DAY = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date")


@dg.asset(
    partitions_def=daily_partitions,
    group_name="recommender",
    kinds={"pandas"},
    deps=[dg.AssetDep("topic_measurements", partition_mapping=MEASUREMENTS_OF_THE_DAY), "topic_profiles"],
)
def topic_recommendations(
    context: dg.AssetExecutionContext,
    cluster_inventory: pd.DataFrame,
    config: SettingsResource,
    store: MeasurementStoreResource,
) -> pd.DataFrame:
    """One row per topic: current and recommended partitions, the window's records, bytes, mean
    record size, average and peak ingress (bytes/s), the binding constraint and the action
    (`increase`, `keep` or `over-provisioned`; never a decrease)."""
    settings = config.settings
    end_day = date.fromisoformat(context.partition_key)
    first_day = window_days(end_day, settings.sampling_days)[0]
    # The window, and the longer history the forecast's trend is fitted on.
    history_start = min(first_day, end_day - timedelta(days=HISTORY_FOR_TREND_DAYS - 1))
    measurements = store.read_measurements(history_start.isoformat(), end_day.isoformat())
    profiles = store.read_profiles(first_day.isoformat(), end_day.isoformat())
    recommendations = build_recommendations(cluster_inventory, measurements, end_day, settings, profiles)
    # The asset page's "latest materialization" is the latest run, whichever day it recommended
    # for: its metadata names that day first.
    window = {"window_end_day": end_day.isoformat(), "window_start_day": first_day.isoformat()}
    if recommendations.empty:
        context.add_output_metadata({**window, "topics": 0})
        return recommendations
    limits = _cluster_limits(context, cluster_inventory, recommendations, settings)
    _add_limit_columns(recommendations, limits)
    metadata = _recommendations_metadata(recommendations, window, limits, settings)
    days = [day.isoformat() for day in window_days(end_day, settings.sampling_days)]
    metadata["topic_history"] = dg.MetadataValue.md(history_markdown(recommendations, measurements, days))
    context.add_output_metadata(metadata)
    return recommendations


def _cluster_limits(
    context: dg.AssetExecutionContext,
    cluster_inventory: pd.DataFrame,
    recommendations: pd.DataFrame,
    settings: Settings,
) -> dict[str, dict]:
    """Per cluster with a partition cap, the cap and the partitions counted against it now and
    after every increase, each logged (a warning when the increases would exceed it)."""
    limits = {}
    for cluster_id in sorted(recommendations["cluster_id"].unique()):
        room = cluster_headroom(cluster_id, cluster_inventory, recommendations, settings)
        if room is None:
            continue
        limits[cluster_id] = {"cap": room.cap, "counted": room.counted, "now": room.now, "after": room.after}
        (context.log.warning if room.exceeded else context.log.info)(room.describe())
    return limits


def _add_limit_columns(recommendations: pd.DataFrame, limits: dict[str, dict]) -> None:
    """Adds each row's cluster limits as columns, in place."""
    # Per row, so that each cluster's report can state its cap (`reporting.summary_rows`).
    for column, field in (
        ("cluster_partition_cap", "cap"),
        ("cluster_counted", "counted"),
        ("cluster_partitions_now", "now"),
        ("cluster_partitions_after", "after"),
    ):
        recommendations[column] = recommendations["cluster_id"].map(lambda c, f=field: limits.get(c, {}).get(f))


def _recommendations_metadata(
    recommendations: pd.DataFrame, window: dict[str, str], limits: dict[str, dict], settings: Settings
) -> dict[str, object]:
    """The asset's metadata, the window's days first: the counts, the forecast and the cluster limits."""
    counts = recommendations["action"].value_counts().to_dict()
    return {
        **window,
        "topics": len(recommendations),
        "topics_to_increase": int(counts.get("increase", 0)),
        "topics_over_provisioned": int(counts.get("over-provisioned", 0)),
        "topics_in_error": int((recommendations["status"] == "error").sum()),
        "current_partitions": int(recommendations["number_of_partitions"].sum()),
        "recommended_partitions": int(recommendations["recommended_partitions"].sum()),
        "max_peak_ingress_bytes_per_sec": float(recommendations["peak_ingress_bytes_per_sec"].max()),
        "bindings": dg.MetadataValue.json(recommendations["binding"].value_counts().to_dict()),
        "topics_hot_key": int((recommendations["hot_key"] == "yes").sum()),
        "topics_lag_growing": int((recommendations["lag_trend"] == "growing").sum()),
        # FORECAST_DAYS ahead along each topic's trend of daily peaks (`forecast`).
        "forecast_days": settings.forecast_days,
        "topics_to_increase_by_forecast": int(
            (recommendations["forecast_recommended_partitions"] > recommendations["number_of_partitions"]).sum()
        ),
        "forecast_recommended_partitions": int(recommendations["forecast_recommended_partitions"].fillna(0).sum()),
        "cluster_limits": dg.MetadataValue.json(limits),
        "clusters_over_cap": dg.MetadataValue.json(sorted(c for c, v in limits.items() if v["after"] > v["cap"])),
        "recommendations": recommendations_table(recommendations),
    }
