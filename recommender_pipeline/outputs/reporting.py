"""The detail and summary CSVs, in the original tool's names and leading columns."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from recommender_pipeline.clusters.topic_listing import NOT_SUPPORTED
from recommender_pipeline.days import window_days
from recommender_pipeline.errors import ReportWriteError
from recommender_pipeline.measuring.measurement import Method
from recommender_pipeline.outputs.atomic_files import AtomicWriteError, write_files_atomically
from recommender_pipeline.recommending.model import to_mib
from recommender_pipeline.settings import RecommendationModel, Settings

DETAIL_LEADING_COLUMNS = [
    "method",
    "topic_name",
    "is_compacted",
    "number_of_records",
    "number_of_partitions",
    "required_throughput",
    "consumer_throughput",
    "recommended_partitions",
    "hot_partition_ingress",
    "hot_partition_egress",
    "status",
]
DETAIL_ADDED_COLUMNS = [
    "cluster_id",
    "window_start",
    "window_end",
    "window_days",
    "days_measured",
    "records_in_window",
    "bytes_in_window",
    "mean_record_bytes",
    "avg_ingress_bytes_per_sec",
    "peak_ingress_bytes_per_sec",
    "bytes_ci_low",
    "bytes_ci_high",
    "peak_ci_low",
    "peak_ci_high",
    "partition_skew",
    "egress_bytes_in_window",
    "exact",
    "days_partial",
    "binding",
    "action",
    "reason",
    # Acting on it (README, "Acting on a recommendation"): the raw need before rounding, each term,
    # the consumers, the keys and the skew.
    "needed_partitions",
    "producer_throughput_term",
    "consumer_throughput_term",
    "fan_out_term",
    "consumer_group_term",
    "fan_out",
    "consumer_groups",
    "largest_group_members",
    "idle_members",
    "consumer_lag",
    "lag_trend",
    "lag_bound_group",
    "effective_partitions",
    "busiest_partition_share",
    "hot_key",
    "keyed_share",
    "top_key_share",
    "keys_remapped_share",
    # The forecast (README, "Forecast"): the daily peaks' trend and the count FORECAST_DAYS ahead.
    "trend_fit_days",
    "trend_slope_bytes_per_sec_per_day",
    "forecast_days",
    "forecast_peak_ingress_bytes_per_sec",
    "forecast_recommended_partitions",
]
ACTIVE = "active"
# What the reports read besides the detail CSV's columns: a row measured by nobody has them empty.
UNMEASURED_INPUTS = [
    "is_compacted",
    "retained_records",
    "records_in_window",
    "required_bytes_per_sec",
    "consumer_bytes_per_sec",
    "recommended_partitions",
    "binding",
    "measuring_seconds",
]


def detail_frame(recommendations: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Throughputs are MiB/s rates in the capacity model and MiB totals in the seed model."""
    seed = settings.recommendation_model is RecommendationModel.SEED
    frame = recommendations.copy()
    frame["is_compacted"] = frame["is_compacted"].map({True: "yes", False: "no"})
    frame["number_of_records"] = frame["retained_records"] if seed else frame["records_in_window"]
    frame["required_throughput"] = frame["required_bytes_per_sec"].map(to_mib)
    frame["consumer_throughput"] = frame["consumer_bytes_per_sec"].map(to_mib)
    return frame.reindex(columns=DETAIL_LEADING_COLUMNS + DETAIL_ADDED_COLUMNS)


class _Totals(NamedTuple):
    """The topic and partition counts every summary statistic is derived from."""

    topics: int
    active: int
    partitions: int
    active_partitions: int
    recommended: int


class _ModelShares(NamedTuple):
    """The statistics whose formula depends on the recommendation model."""

    increase: float
    decrease: float
    active_average: float
    total_records: int


def summary_rows(recommendations: pd.DataFrame, settings: Settings, elapsed_seconds: float) -> list[tuple]:
    """The original tool's statistics in its order, then ours.

    The seed model keeps the original's formulas (its `active_average_partitions_per_topic`
    divides every topic's partitions by the active count). The capacity model computes them as
    named, and since partitions are never removed, `percentage_decrease` is the over-provisioned
    share that could not be given back, not a proposal. Topics Dagster cannot key (status
    `not_supported`) are counted in `not_supported_topics` only: they were never measured.
    """
    seed = settings.recommendation_model is RecommendationModel.SEED
    not_supported = int((recommendations["status"] == NOT_SUPPORTED).sum()) if len(recommendations) else 0
    recommendations = recommendations[recommendations["status"] != NOT_SUPPORTED] if not_supported else recommendations
    active = recommendations[recommendations["status"] == ACTIVE]
    totals = _totals(recommendations, active)
    shares = _seed_shares(recommendations, totals) if seed else _capacity_shares(recommendations, active, totals)
    method = recommendations["method"].iloc[0] if totals.topics else "sampling_records"
    rows = [
        ("elapsed_time_hours", elapsed_seconds / 3600),
        ("method", method),
        *_settings_rows(settings, sampling=method == "sampling_records"),
        *_partition_rows(totals, shares, settings),
        *_hot_rows(active, totals.active),
        *_outcome_rows(recommendations, settings, not_supported),
        *_cap_rows(recommendations),
    ]
    return [(stat, value) for stat, value in rows if value is not None]


def _totals(recommendations: pd.DataFrame, active: pd.DataFrame) -> _Totals:
    """Counts the topics and partitions once, for every statistic that divides by them."""
    total_topics = len(recommendations)
    return _Totals(
        topics=total_topics,
        active=len(active),
        partitions=int(recommendations["number_of_partitions"].sum()) if total_topics else 0,
        active_partitions=int(active["number_of_partitions"].sum()),
        recommended=int(active["recommended_partitions"].sum()),
    )


def _seed_shares(recommendations: pd.DataFrame, totals: _Totals) -> _ModelShares:
    """The original tool's formulas, kept as they were for the seed model."""
    active_partitions, total_recommended = totals.active_partitions, totals.recommended
    if active_partitions > total_recommended:
        decrease = (active_partitions - total_recommended) / active_partitions * 100
        increase = 0.0
    else:
        increase = (total_recommended - active_partitions) / active_partitions * 100 if active_partitions else 0.0
        decrease = 0.0
    return _ModelShares(
        increase=increase,
        decrease=decrease,
        active_average=totals.partitions / totals.active if totals.active else 0.0,
        total_records=int(recommendations["retained_records"].sum()) if totals.topics else 0,
    )


def _capacity_shares(recommendations: pd.DataFrame, active: pd.DataFrame, totals: _Totals) -> _ModelShares:
    """The statistics as named, per topic: partitions are never removed, so the decrease is spare."""
    active_partitions = totals.active_partitions
    to_add = (active["recommended_partitions"] - active["number_of_partitions"]).clip(lower=0).sum()
    spare = (active["number_of_partitions"] - active["recommended_partitions"]).clip(lower=0).sum()
    return _ModelShares(
        increase=float(to_add) / active_partitions * 100 if active_partitions else 0.0,
        decrease=float(spare) / active_partitions * 100 if active_partitions else 0.0,
        active_average=active_partitions / totals.active if totals.active else 0.0,
        total_records=int(recommendations["records_in_window"].sum()) if totals.topics else 0,
    )


def _settings_rows(settings: Settings, sampling: bool) -> list[tuple]:
    """The settings the run used; the sampling ones are None (left out) unless records were sampled."""
    return [
        ("required_consumption_throughput_factor", settings.required_throughput_factor),
        ("minimum_required_throughput_threshold", to_mib(settings.min_consumption_throughput)),
        ("default_partition_count", settings.min_recommended_partitions),
        ("sampling_batch_size", settings.sampling_batch_size if sampling else None),
        ("sampling_days", settings.sampling_days if sampling else None),
        ("sampling_max_consecutive_nulls", settings.sampling_max_consecutive_nulls if sampling else None),
        ("sampling_timeout", settings.sampling_timeout_seconds if sampling else None),
        (
            "sampling_max_continuous_failed_batches",
            settings.sampling_max_continuous_failed_batches if sampling else None,
        ),
    ]


def _partition_rows(totals: _Totals, shares: _ModelShares, settings: Settings) -> list[tuple]:
    """The topic and partition statistics, in the original tool's order."""
    total_topics, active_count = totals.topics, totals.active
    return [
        ("total_topics", total_topics),
        ("internal_topics_included", settings.include_internal_topics),
        ("topic_filter", ",".join(settings.topic_filter) or "None"),
        ("active_topic_count", active_count),
        ("active_topic_percentage", active_count / total_topics * 100 if total_topics else 0.0),
        ("total_partitions", totals.partitions),
        ("total_recommended_partitions", totals.recommended),
        ("active_total_partition_count", totals.active_partitions),
        ("percentage_decrease", shares.decrease),
        ("percentage_increase", shares.increase),
        ("total_records", shares.total_records),
        ("average_partitions_per_topic", totals.partitions / total_topics if total_topics else 0.0),
        ("active_average_partitions_per_topic", shares.active_average),
        (
            "average_recommended_partitions_per_topic",
            totals.recommended / active_count if active_count else 0.0,
        ),
    ]


def _hot_rows(active: pd.DataFrame, active_count: int) -> list[tuple]:
    """How many active topics have a hot partition, on ingress and on egress."""
    hot = int((active["hot_partition_ingress"] == "yes").sum())
    hot_egress = int((active["hot_partition_egress"] == "yes").sum())
    return [
        ("hot_partition_ingress_count", hot),
        ("hot_partition_ingress_percentage", hot / active_count * 100 if active_count else 0.0),
        ("hot_partition_egress_count", hot_egress),
        ("hot_partition_egress_percentage", hot_egress / active_count * 100 if active_count else 0.0),
    ]


def _outcome_rows(recommendations: pd.DataFrame, settings: Settings, not_supported: int) -> list[tuple]:
    """Our statistics after the original's: the model, the window and what the topics need."""
    total_topics = len(recommendations)
    return [
        ("recommendation_model", settings.recommendation_model.value),
        ("consumer_throughput_per_partition_mib_per_sec", to_mib(settings.consumer_throughput_per_partition)),
        ("window_end", recommendations["window_end"].max() if total_topics else None),
        ("topics_to_increase", int((recommendations["action"] == "increase").sum()) if total_topics else 0),
        (
            "topics_over_provisioned",
            int((recommendations["action"] == "over-provisioned").sum()) if total_topics else 0,
        ),
        ("error_topic_count", int((recommendations["status"] == "error").sum()) if total_topics else 0),
        ("not_supported_topics", not_supported),
    ]


def _cap_rows(recommendations: pd.DataFrame) -> list[tuple]:
    """The cluster's partition cap and what applying every increase leaves (`cluster_limits`)."""
    if recommendations.empty or "cluster_partition_cap" not in recommendations:
        return []
    first = recommendations.iloc[0]
    if pd.isna(first["cluster_partition_cap"]):
        return []
    cap, after = int(first["cluster_partition_cap"]), int(first["cluster_partitions_after"])
    return [
        ("partition_cap", cap),
        ("partition_cap_counts", first["cluster_counted"]),
        ("partitions_now", int(first["cluster_partitions_now"])),
        ("partitions_after_increases", after),
        ("partition_headroom_after_increases", cap - after),
        ("partition_cap_exceeded", "yes" if after > cap else "no"),
    ]


def with_not_supported(
    recommendations: pd.DataFrame, not_supported: pd.DataFrame, day: str, settings: Settings
) -> pd.DataFrame:
    """`recommendations` and, after them, a row per topic Dagster cannot key (`not_supported`: the
    inventory's `cluster_id, topic, partitions, reason`), shaped as a recommendation row of the
    window ending on `day` with status `not_supported`, action `n/a` and nothing measured, so the
    reports list them. Integer columns stay integers (nullable): the CSV never turns 6 into 6.0."""
    if not_supported.empty:
        return recommendations
    # The window of the cluster's other topics, else SAMPLING_DAYS ending on `day`.
    window = window_days(date.fromisoformat(day), settings.sampling_days)
    spans = (
        recommendations.groupby("cluster_id").agg(start=("window_start", "min"), days=("window_days", "max"))
        if len(recommendations)
        else pd.DataFrame(columns=["start", "days"])
    )
    clusters = not_supported["cluster_id"].astype(str)
    method = Method.SAMPLING_RECORDS if settings.use_sample_records else Method.METRICS_API
    extra = pd.DataFrame(
        {
            "cluster_id": clusters,
            "topic_name": not_supported["topic"].astype(str),
            "method": method.value,
            "number_of_partitions": not_supported["partitions"].astype("Int64"),
            "window_start": [spans["start"].get(cluster, window[0].isoformat()) for cluster in clusters],
            "window_end": day,
            "window_days": [int(spans["days"].get(cluster, len(window))) for cluster in clusters],
            "days_measured": 0,
            "status": NOT_SUPPORTED,
            "action": "n/a",
            "reason": not_supported["reason"].astype(str),
        }
    )
    # Every column the reports read, empty, also when no topic of the day was recommended for.
    columns = [*extra.columns, *DETAIL_LEADING_COLUMNS, *DETAIL_ADDED_COLUMNS, *UNMEASURED_INPUTS]
    extra = extra.reindex(columns=list(dict.fromkeys(columns)))
    combined = pd.concat([recommendations, extra], ignore_index=True) if len(recommendations) else extra
    for column, dtype in recommendations.dtypes.items():
        if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            combined[column] = combined[column].astype("Int64")
    return combined


class ReportPaths(NamedTuple):
    detail: Path
    summary: Path
    html: Path


def report_paths(reports_dir: Path, cluster_id: str, day: str, run_id: str) -> ReportPaths:
    """`<cluster>-recommender-<day>-<run>-detail-report.csv`, its summary and `...-report.html`:
    named by cluster and window day (the original tool's `-recommender-` kept, so a glob on it
    still finds them), then the run, so two runs for the same day (a re-run, a backfill) never
    share a name. A name already taken gets a counter rather than overwriting."""
    stem = f"{cluster_id}-recommender-{day}-{run_id[:8]}"
    for suffix in itertools.chain([""], (f"-{n}" for n in itertools.count(2))):
        paths = ReportPaths(
            reports_dir / f"{stem}{suffix}-detail-report.csv",
            reports_dir / f"{stem}{suffix}-summary-report.csv",
            reports_dir / f"{stem}{suffix}-report.html",
        )
        if not any(path.exists() for path in paths):
            return paths
    raise AssertionError("unreachable")


def csv_text(frame: pd.DataFrame) -> str:
    """A report's CSV text: no index, "\n" line ends."""
    return frame.to_csv(index=False, lineterminator="\n")


def write_report_set(paths: ReportPaths, detail: pd.DataFrame, summary: pd.DataFrame, html: str) -> None:
    """A cluster's detail CSV, summary CSV and HTML report, all or nothing (`atomic_files`): a glob
    on `*-detail-report.csv` never finds a report whose HTML was never written. A failure is one
    line naming the folder, the cause and the file, and says that nothing of the set was kept."""
    texts = {paths.detail: csv_text(detail), paths.summary: csv_text(summary), paths.html: html}
    try:
        write_files_atomically(texts)
    except AtomicWriteError as error:
        raise ReportWriteError(
            f"REPORTS_DIR {error.path.parent}: {error.cause} writing {error.path.name}; "
            "nothing of this report set was kept"
        ) from None
