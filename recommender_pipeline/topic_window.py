"""From daily measurements to one row per topic over its rolling window, with its recommendation.

Bytes and records add up across the window's days; the peak is the highest hourly bucket of
any day; the average rate divides the bytes by the seconds actually measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date, timedelta

import pandas as pd

from recommender_pipeline.cluster_limits import capacities_for
from recommender_pipeline.forecast import HISTORY_FOR_TREND_DAYS, fit_trend
from recommender_pipeline.keys import remapped_share
from recommender_pipeline.measuring.days import window_days, window_length_days
from recommender_pipeline.measuring.hours import describe_missing, stored_flag
from recommender_pipeline.measuring.metrics_api import METHOD as METRICS_METHOD
from recommender_pipeline.model import INCREASE, Demand, recommend
from recommender_pipeline.profile_window import ProfileFacts, profile_facts
from recommender_pipeline.settings import RecommendationModel, Settings

MEASURED = {"measured", "empty"}
FORECAST_COLUMNS = (
    "trend_fit_days",
    "trend_slope_bytes_per_sec_per_day",
    "forecast_days",
    "forecast_peak_ingress_bytes_per_sec",
    "forecast_recommended_partitions",
)
# The capacity model's terms, each a column `<name>_term` (see `model.capacity_terms`).
TERM_COLUMNS = ("producer_throughput", "consumer_throughput", "fan_out", "consumer_group")


def _sum_partition_bytes(lists: list[str]) -> list[int]:
    totals: list[int] = []
    for values in (json.loads(text) for text in lists):
        totals += [0] * (len(values) - len(totals))
        for index, value in enumerate(values):
            totals[index] += value
    return totals


def _intervals(measured: list, total_bytes: int, peak: float) -> tuple[float, float, float, float]:
    """The window's 95 % intervals from its days': days are sampled independently, so the bytes'
    half-widths add in quadrature; the window's peak is its busiest day's, so its interval runs
    from the largest day low to the largest day high. A day without intervals counts as exact."""
    halves, lows, highs = [], [], []
    for row in measured:
        low, high = getattr(row, "bytes_ci_low", None), getattr(row, "bytes_ci_high", None)
        halves.append((float(high) - float(low)) / 2 if _known(low) and _known(high) else 0.0)
        day_peak = float(row.peak_ingress_bytes_per_sec)
        low, high = getattr(row, "peak_ci_low", None), getattr(row, "peak_ci_high", None)
        lows.append(float(low) if _known(low) else day_peak)
        highs.append(float(high) if _known(high) else day_peak)
    half = math.sqrt(sum(h * h for h in halves))
    return max(total_bytes - half, 0.0), total_bytes + half, max(lows, default=peak), max(highs, default=peak)


def topic_window(
    inventory_row: pd.Series,
    measurements: pd.DataFrame,
    end_day: date,
    settings: Settings,
    profiles: pd.DataFrame | None = None,
) -> dict:
    """One topic's window measurements and recommendation; `measurements` and `profiles` hold
    only its rows."""
    retention = None if pd.isna(inventory_row.retention_ms) else int(inventory_row.retention_ms)
    days = [d.isoformat() for d in window_days(end_day, window_length_days(settings.sampling_days, retention))]
    by_day = {row.date: row for row in measurements.itertuples() if row.date in days}
    measured = [by_day[d] for d in days if d in by_day and by_day[d].status in MEASURED]
    errors = [by_day[d] for d in days if d in by_day and by_day[d].status == "error"]
    not_measurable = [d for d in days if d in by_day and by_day[d].status == "not_measurable"]
    missing = [d for d in days if d not in by_day]

    current = int(inventory_row.partitions)
    records = sum(int(row.records) for row in measured)
    total_bytes = sum(int(row.bytes) for row in measured)
    seconds = sum(float(row.window_seconds) for row in measured)
    partition_bytes = _sum_partition_bytes([row.partition_bytes for row in measured])
    mean_partition = sum(partition_bytes) / len(partition_bytes) if partition_bytes else 0.0
    skew = max(partition_bytes) / mean_partition if mean_partition else 0.0
    mean_record_bytes = total_bytes / records if records else 0.0
    peak = max((float(row.peak_ingress_bytes_per_sec) for row in measured), default=0.0)
    bytes_low, bytes_high, peak_low, peak_high = _intervals(measured, total_bytes, peak)
    latest = measured[-1] if measured else None
    by_metrics = latest is not None and latest.method == METRICS_METHOD
    # The seed model's record count: all retained records (sampling), the window's records (Metrics API).
    seed_records = records if by_metrics else (int(latest.retained_records) if latest is not None else 0)
    if by_metrics:  # the Metrics API's own hot-partition signals
        hot_ingress = _yes_no(any(stored_flag(row.hot_partition_ingress) for row in measured))
        hot_egress = _yes_no(any(stored_flag(row.hot_partition_egress) for row in measured))
    else:  # record sampling sees ingress skew only
        hot_ingress = _yes_no(len(partition_bytes) > 1 and skew >= settings.hot_partition_skew)
        hot_egress = "n/a"

    reasons = []
    if errors:
        status = "error"
        reasons.append("; ".join(f"{row.date}: {row.reason}" for row in errors))
    elif not measured:
        status = "not_measured"
    else:
        status = "active" if records > 0 else "empty"
    if not_measurable:
        why = sorted({by_day[d].reason for d in not_measurable})
        reasons.append(f"not measurable: {', '.join(not_measurable)} ({'; '.join(why)})")
    if missing:
        reasons.append(f"not measured yet: {', '.join(missing)}")
    uncaptured = [
        f"{row.date} ({describe_missing(row.hours_captured)})"
        for row in measured
        if isinstance(getattr(row, "hours_captured", None), str) and describe_missing(row.hours_captured)
    ]
    if uncaptured:
        reasons.append(f"partly deleted before capture: {'; '.join(uncaptured)}")
    if measured and not all(bool(row.exact) for row in measured):
        reasons.append("counts estimated from a sample (SAMPLING_BATCH_SIZE)")

    window = {
        "cluster_id": inventory_row.cluster_id,
        "topic_name": inventory_row.topic,
        "method": latest.method if latest is not None else "sampling_records",
        "is_compacted": bool(inventory_row.is_compacted),
        "number_of_partitions": current,
        "window_start": days[0],
        "window_end": days[-1],
        "window_days": len(days),
        "days_measured": len(measured),
        "days_not_measurable": len(not_measurable),
        "days_missing": len(missing),
        "days_in_error": len(errors),
        "records_in_window": records,
        "bytes_in_window": total_bytes,
        "measured_seconds": seconds,
        "mean_record_bytes": mean_record_bytes,
        "avg_ingress_bytes_per_sec": total_bytes / seconds if seconds else 0.0,
        "peak_ingress_bytes_per_sec": peak,
        "bytes_ci_low": bytes_low,
        "bytes_ci_high": bytes_high,
        "peak_ci_low": peak_low,
        "peak_ci_high": peak_high,
        "days_partial": sum(1 for row in measured if stored_flag(getattr(row, "partial", False))),
        "partition_skew": skew,
        "hot_partition_ingress": hot_ingress,
        "hot_partition_egress": hot_egress,
        "egress_bytes_in_window": sum(int(row.egress_bytes) for row in measured if _known(row.egress_bytes))
        if by_metrics
        else None,
        "exact": bool(measured) and all(bool(row.exact) for row in measured),
        "retained_records": seed_records,
        "measuring_seconds": sum(float(row.duration_seconds) for row in measured),
        "status": status,
    }
    facts = profile_facts(profiles, current) if profiles is not None else ProfileFacts()
    total_partition_bytes = sum(partition_bytes)
    shares = [b / total_partition_bytes for b in partition_bytes] if total_partition_bytes else []
    window.update(
        consumer_groups=facts.consumer_groups,
        largest_group_members=facts.largest_group_members,
        idle_members=facts.idle_members,
        consumer_lag=facts.consumer_lag,
        lag_trend=facts.lag_trend,
        lag_bound_group=facts.lag_bound_group,
        fan_out=(window["egress_bytes_in_window"] or 0) / total_bytes
        if by_metrics and total_bytes
        else float(facts.consumer_groups),
        effective_partitions=1 / sum(x * x for x in shares) if shares else 0.0,
        busiest_partition_share=max(shares, default=0.0),
        keyed_share=facts.keyed_share,
        top_key_share=facts.top_key_share,
    )
    if status in {"error", "not_measured"}:
        window.update(
            # Every column a recommended row has, so a day of nothing but errors has them too.
            **{f"{name}_term": 0 for name in TERM_COLUMNS},
            **dict.fromkeys(FORECAST_COLUMNS),
            hot_key="no",
            keys_remapped_share=None,
            recommended_partitions=0,
            needed_partitions=0,
            required_bytes_per_sec=0.0,
            consumer_bytes_per_sec=0.0,
            binding="",
            action="n/a",
            reason="; ".join(reasons),
        )
        return window
    cluster_type = getattr(inventory_row, "cluster_type", "")
    capacities = capacities_for(cluster_type if isinstance(cluster_type, str) else "", settings)
    brokers = getattr(inventory_row, "cluster_brokers", 0)
    demand = Demand(
        peak_ingress_bytes_per_sec=peak,
        fan_out=window["fan_out"],
        lag_bound_members=facts.lag_bound_members,
        group_sizes=facts.group_sizes,
        brokers=int(brokers) if _known(brokers) else 0,
    )
    result = recommend(
        demand=demand,
        mean_record_bytes=mean_record_bytes,
        seed_record_count=seed_records,
        current_partitions=current,
        settings=settings,
        capacities=capacities,
    )
    reasons.insert(0, _explain(result.binding, result.recommended_partitions, current, result.action))
    needed = result.needed_partitions or result.recommended_partitions
    if result.recommended_partitions != needed:
        reasons.insert(
            1, f"{needed} needed, rounded to {result.recommended_partitions} ({settings.partition_rounding})"
        )
    # A skewed partition (HOT_PARTITION_SKEW x its fair share) that alone needs more than a
    # partition can take: its keys stay together whatever the count, so more partitions won't help.
    # (A balanced topic that is simply too busy is not that: more partitions do spread it.)
    scaled_peak = peak * settings.required_throughput_factor
    skewed = len(shares) > 1 and skew >= settings.hot_partition_skew
    hot_key = skewed and window["busiest_partition_share"] * scaled_peak > capacities.producer
    if hot_key:
        reasons.append(
            f"hot key: adding partitions will not spread it (the busiest partition carries "
            f"{window['busiest_partition_share']:.0%} of the bytes)"
        )
    remapped = None
    if result.action == INCREASE and (facts.keyed_share or bool(inventory_row.is_compacted)):
        remapped = remapped_share(facts.key_hashes, current, result.recommended_partitions, settings.partitioner)
        if remapped is not None:
            reasons.append(
                f"remap warning: {remapped:.0%} of keyed records would move to another partition "
                f"({settings.partitioner}); per-key order breaks across the change"
            )
    window.update(_forecast(measurements, end_day, peak, demand, current, settings, capacities))
    if window["forecast_recommended_partitions"] and window["forecast_recommended_partitions"] > needed:
        reasons.append(
            f"forecast: {window['forecast_recommended_partitions']} partitions in {settings.forecast_days} days "
            f"(daily peak {window['trend_slope_bytes_per_sec_per_day']:+,.1f} B/s a day over "
            f"{window['trend_fit_days']} days)"
        )
    window.update(
        recommended_partitions=result.recommended_partitions,
        needed_partitions=needed,
        required_bytes_per_sec=result.required_bytes_per_sec,
        consumer_bytes_per_sec=result.consumer_bytes_per_sec,
        **{f"{name}_term": result.terms.get(name, 0) for name in TERM_COLUMNS},
        hot_key=_yes_no(hot_key),
        keys_remapped_share=remapped,
        binding=result.binding,
        action=result.action,
        reason="; ".join(reasons),
    )
    return window


def _forecast(
    measurements: pd.DataFrame,
    end_day: date,
    peak: float,
    demand: Demand,
    current: int,
    settings: Settings,
    capacities,
) -> dict:
    """The trend of the measured daily peaks over the stored history ending on `end_day`, and the
    recommendation for the window's peak carried `FORECAST_DAYS` ahead along it."""
    first = (end_day - timedelta(days=HISTORY_FOR_TREND_DAYS - 1)).isoformat()
    daily = {
        date.fromisoformat(row.date): float(row.peak_ingress_bytes_per_sec)
        for row in measurements.itertuples()
        if first <= row.date <= end_day.isoformat() and row.status == "measured"
    }
    capacity_model = settings.recommendation_model is not RecommendationModel.SEED
    trend = fit_trend(daily) if settings.forecast_days and capacity_model else None
    if trend is None:
        return dict.fromkeys(FORECAST_COLUMNS) | {"trend_fit_days": len(daily)}
    ahead = trend.project(peak, settings.forecast_days)
    forecast = recommend(
        demand=replace(demand, peak_ingress_bytes_per_sec=ahead),
        mean_record_bytes=0.0,
        seed_record_count=0,
        current_partitions=current,
        settings=settings,
        capacities=capacities,
    )
    return {
        "trend_fit_days": trend.days,
        "trend_slope_bytes_per_sec_per_day": trend.slope,
        "forecast_days": settings.forecast_days,
        "forecast_peak_ingress_bytes_per_sec": ahead,
        "forecast_recommended_partitions": forecast.recommended_partitions,
    }


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _known(value: object) -> bool:
    return value is not None and not pd.isna(value)


def _explain(binding: str, recommended: int, current: int, action: str) -> str:
    why = {
        "consumer_throughput": "peak ingress x factor over CONSUMER_THROUGHPUT_PER_PARTITION sets the need",
        "producer_throughput": "peak ingress x factor over PRODUCER_THROUGHPUT_PER_PARTITION sets the need",
        "fan_out": "egress (every consumer group's reads) over EGRESS_THROUGHPUT_PER_PARTITION sets the need",
        "consumer_group": "a lag-bound consumer group's members set the need",
        "min_consumption_throughput": "MIN_CONSUMPTION_THROUGHPUT sets the need",
        "min_recommended_partitions": "MIN_RECOMMENDED_PARTITIONS sets the floor",
        "required_consumption_throughput_factor": "seed model: the factor decides",
        "no_records": "seed model: no records",
    }[binding]
    return f"{why}: {recommended} partitions vs {current} now ({action})"


def build_recommendations(
    inventory: pd.DataFrame,
    measurements: pd.DataFrame,
    end_day: date,
    settings: Settings,
    profiles: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per inventoried topic for the window that ends on `end_day`."""
    grouped = {key: frame for key, frame in measurements.groupby(["cluster_id", "topic"])}
    empty = measurements.iloc[0:0]
    by_topic = {} if profiles is None else {key: frame for key, frame in profiles.groupby(["cluster_id", "topic"])}
    no_profile = None if profiles is None else profiles.iloc[0:0]
    rows = [
        topic_window(
            row,
            grouped.get((row.cluster_id, row.topic), empty),
            end_day,
            settings,
            by_topic.get((row.cluster_id, row.topic), no_profile),
        )
        for row in inventory.itertuples(index=False)
    ]
    return pd.DataFrame(rows).sort_values(["cluster_id", "topic_name"], ignore_index=True) if rows else pd.DataFrame()
