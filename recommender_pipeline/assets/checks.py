"""Asset checks a user acts on: is every topic-day measured, is every recommendation sane, is
every report complete. Each is a pure function of the asset's value (tested with plain frames)
wrapped in a daily-partitioned `@asset_check`."""

import warnings

import dagster as dg
import pandas as pd

from recommender_pipeline.assets.partitions import daily_partitions
from recommender_pipeline.clusters.topic_listing import NOT_SUPPORTED
from recommender_pipeline.recommending.model import INCREASE, KEEP, OVER_PROVISIONED, action_for
from recommender_pipeline.resources import SettingsResource
from recommender_pipeline.settings import Settings

ACTIONS = {INCREASE, KEEP, OVER_PROVISIONED}


def measurement_coverage(recommendations: pd.DataFrame) -> tuple[bool, dict]:
    """Every topic's window is fully measured: no missing day, no day in error."""
    if recommendations.empty:  # no inventory (every cluster failed): the inventory run said so
        return True, {"topics_with_gaps": 0, "gaps": dg.MetadataValue.json({})}
    gaps = recommendations[(recommendations["days_missing"] > 0) | (recommendations["days_in_error"] > 0)]
    topics = {
        f"{row.cluster_id}/{row.topic_name}": f"{row.days_missing} missing, {row.days_in_error} in error"
        for row in gaps.itertuples()
    }
    return not topics, {"topics_with_gaps": len(topics), "gaps": dg.MetadataValue.json(topics)}


def recommendations_sane(recommendations: pd.DataFrame, settings: Settings) -> tuple[bool, dict]:
    """At least the minimum (an idle topic keeps its count), an action that matches the numbers,
    never a decrease."""
    if recommendations.empty:
        return True, {"checked_topics": 0, "problems": dg.MetadataValue.json({})}
    rated = recommendations[~recommendations["status"].isin(["error", "not_measured"])]
    problems = {}
    for row in rated.itertuples():
        key = f"{row.cluster_id}/{row.topic_name}"
        if row.action not in ACTIONS:
            problems[key] = f"action {row.action!r}"
        elif row.action != action_for(int(row.recommended_partitions), int(row.number_of_partitions), settings):
            problems[key] = f"action {row.action} for {row.recommended_partitions} vs {row.number_of_partitions} now"
        elif (
            settings.recommendation_model == "capacity"
            and row.recommended_partitions < settings.min_recommended_partitions
            and getattr(row, "binding", "") != "idle"  # a topic that carried nothing keeps what it has
        ):
            problems[key] = f"{row.recommended_partitions} is below MIN_RECOMMENDED_PARTITIONS"
    return not problems, {"checked_topics": len(rated), "problems": dg.MetadataValue.json(problems)}


def report_complete(report_files: pd.DataFrame, recommendations: pd.DataFrame) -> tuple[bool, dict]:
    """Each cluster's detail report has exactly one row per topic recommended for it (besides the
    `not_supported` rows of the topics Dagster cannot key)."""
    if recommendations.empty:
        return True, {"clusters": 0, "problems": dg.MetadataValue.json({})}
    problems = {}
    for cluster_id, expected in recommendations.groupby("cluster_id"):
        paths = report_files.loc[
            (report_files["cluster_id"] == cluster_id) & (report_files["kind"] == "detail"), "path"
        ].tolist()
        if len(paths) != 1:
            problems[str(cluster_id)] = f"{len(paths)} detail reports"
            continue
        detail = pd.read_csv(paths[0], keep_default_na=False)
        # Topics Dagster cannot key are listed too, but were never recommended for.
        listed = detail["status"] != NOT_SUPPORTED if "status" in detail else pd.Series(True, index=detail.index)
        rows = detail.loc[listed, "topic_name"].tolist()
        missing = sorted(set(expected["topic_name"]) - set(rows))
        if missing or len(rows) != len(set(rows)) or len(rows) != len(expected):
            problems[str(cluster_id)] = f"{len(rows)} rows for {len(expected)} topics; missing {missing[:10]}"
    return not problems, {
        "clusters": int(recommendations["cluster_id"].nunique()),
        "problems": dg.MetadataValue.json(problems),
    }


def _result(outcome: tuple[bool, dict]) -> dg.AssetCheckResult:
    passed, metadata = outcome
    return dg.AssetCheckResult(passed=passed, metadata=metadata)


with warnings.catch_warnings():  # partitioned checks are a preview feature in this Dagster release
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(asset="topic_recommendations", partitions_def=daily_partitions, blocking=False)
    def check_measurement_coverage(topic_recommendations: pd.DataFrame) -> dg.AssetCheckResult:
        """Fails when a topic's window has a day not measured yet or a day in error."""
        return _result(measurement_coverage(topic_recommendations))

    @dg.asset_check(asset="topic_recommendations", partitions_def=daily_partitions, blocking=True)
    def check_recommendations_sane(
        topic_recommendations: pd.DataFrame, config: SettingsResource
    ) -> dg.AssetCheckResult:
        """Fails on a recommendation below the minimum, an action that contradicts the numbers,
        or a decrease; blocking, so the reports are not written from such a table."""
        return _result(recommendations_sane(topic_recommendations, config.settings))

    @dg.asset_check(
        asset="reports",
        partitions_def=daily_partitions,
        additional_ins={"topic_recommendations": dg.AssetIn()},
    )
    def check_report_complete(reports: pd.DataFrame, topic_recommendations: pd.DataFrame) -> dg.AssetCheckResult:
        """Fails when a cluster's detail report lacks a topic, repeats one, or is missing."""
        return _result(report_complete(reports, topic_recommendations))


ALL_CHECKS = [check_measurement_coverage, check_recommendations_sane, check_report_complete]
