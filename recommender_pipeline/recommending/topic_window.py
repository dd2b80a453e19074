"""From daily measurements to one row per topic over its rolling window, with its recommendation.

`topic_window` composes small steps, each with a typed result: the window's days
(`WindowDays`), their totals (`WindowTotals`), how the bytes spread over the partitions
(`partition_shape`), the status and its reasons, the consumers as far as they were observed,
and the recommendation with the capacities it used. Bytes and records add up across the days;
the peak is the highest bucket of any day; the average rate divides the bytes by the seconds
actually measured. What was not observed (a day, the consumers) is reported as unknown, never
as zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

import pandas as pd

from recommender_pipeline.days import window_days, window_length_days
from recommender_pipeline.measuring.estimation import Busiest, busiest_of
from recommender_pipeline.measuring.hours import describe_missing
from recommender_pipeline.measuring.measurement import Method
from recommender_pipeline.profiling.keys import remapped_share
from recommender_pipeline.recommending.cluster_limits import capacities_for
from recommender_pipeline.recommending.forecast import HISTORY_FOR_TREND_DAYS, fit_trend
from recommender_pipeline.recommending.model import INCREASE, KEEP, Capacities, Demand, Recommendation, recommend
from recommender_pipeline.recommending.partition_shape import PartitionShape, partition_shape
from recommender_pipeline.recommending.profile_window import ProfileFacts, profile_facts
from recommender_pipeline.settings import RecommendationModel, Settings
from recommender_pipeline.values import known, stored_flag

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
# Terms that need the consumers, unknown (not 0) when no profile of the window observed them.
CONSUMER_TERMS = ("fan_out", "consumer_group")
IDLE = "idle"  # the binding of a topic that carried nothing in its window
INTEGER_COLUMNS = (
    "recommended_partitions",
    "needed_partitions",
    *(f"{name}_term" for name in TERM_COLUMNS),
    "consumer_groups",
    "largest_group_members",
    "idle_members",
    "consumer_lag",
    "egress_bytes_in_window",
    "trend_fit_days",
    "forecast_days",
    "forecast_recommended_partitions",
)


@dataclass(frozen=True)
class WindowDays:
    """The window's days and what the store holds for each."""

    days: list[str]  # ISO dates, oldest first
    measured: list  # rows (measured or empty), oldest first
    errors: list
    not_measurable: list[str]
    missing: list[str]
    reasons_not_measurable: list[str]


@dataclass(frozen=True)
class WindowTotals:
    records: int
    bytes: int
    seconds: float
    peak: float
    bytes_low: float
    bytes_high: float
    peak_low: float
    peak_high: float
    method: str
    by_metrics: bool
    seed_records: int  # the seed model's count: all retained records (sampling), the window's (Metrics API)

    @property
    def mean_record_bytes(self) -> float:
        return self.bytes / self.records if self.records else 0.0


Rows = Sequence[tuple]  # a topic's stored days as named tuples (`rows_of`): attribute access, no pandas per row


def rows_of(frame: pd.DataFrame | Rows) -> list:
    """A frame's rows as named tuples, once: iterating a small frame per topic (pandas' `itertuples`
    extracts every column each time) cost 25 ms a topic, most of a 2,000-topic day's recommendations."""
    return list(frame.itertuples(index=False)) if isinstance(frame, pd.DataFrame) else list(frame)


def days_of(inventory_row, measurements: Rows, end_day: date, settings: Settings) -> WindowDays:
    """The `SAMPLING_DAYS` days ending on `end_day`, capped by the topic's retention."""
    retention = None if pd.isna(inventory_row.retention_ms) else int(inventory_row.retention_ms)
    days = [d.isoformat() for d in window_days(end_day, window_length_days(settings.sampling_days, retention))]
    by_day = {row.date: row for row in measurements if row.date in days}
    status = {d: by_day[d].status for d in days if d in by_day}
    not_measurable = [d for d in days if status.get(d) == "not_measurable"]
    return WindowDays(
        days=days,
        measured=[by_day[d] for d in days if status.get(d) in MEASURED],
        errors=[by_day[d] for d in days if status.get(d) == "error"],
        not_measurable=not_measurable,
        missing=[d for d in days if d not in by_day],
        reasons_not_measurable=sorted({by_day[d].reason for d in not_measurable}),
    )


def totals_of(window: WindowDays) -> WindowTotals:
    measured = window.measured
    records = sum(int(row.records) for row in measured)
    total_bytes = sum(int(row.bytes) for row in measured)
    bytes_low, bytes_high = _bytes_interval(measured, total_bytes)
    peak = _busiest_day(measured)
    latest = measured[-1] if measured else None
    by_metrics = latest is not None and latest.method == Method.METRICS_API
    return WindowTotals(
        records=records,
        bytes=total_bytes,
        seconds=sum(float(row.window_seconds) for row in measured),
        peak=peak.value,
        bytes_low=bytes_low,
        bytes_high=bytes_high,
        peak_low=peak.low,
        peak_high=peak.high,
        method=latest.method if latest is not None else str(Method.SAMPLING_RECORDS),
        by_metrics=by_metrics,
        seed_records=records if by_metrics else (int(latest.retained_records) if latest is not None else 0),
    )


def _bytes_interval(measured: list, total_bytes: int) -> tuple[float, float]:
    """The window's 95 % bytes interval from its days': days are sampled independently, so their
    half-widths add in quadrature. A day without an interval counts as exact."""
    halves = []
    for row in measured:
        low, high = getattr(row, "bytes_ci_low", None), getattr(row, "bytes_ci_high", None)
        halves.append((float(high) - float(low)) / 2 if known(low) and known(high) else 0.0)
    half = math.sqrt(sum(h * h for h in halves))
    return max(total_bytes - half, 0.0), total_bytes + half


def _busiest_day(measured: list) -> Busiest:
    """The window's peak: its busiest day's, with the sampling noise of estimated days shrunk away
    (the largest of seven noisy day peaks is biased up, +20 %: `estimation.busiest_of`), and a
    95 % interval. A day without an interval (exact, or stored before intervals) counts as exact."""
    if not measured:
        return Busiest(0, 0.0, 0.0, 0.0)
    values = [float(row.peak_ingress_bytes_per_sec) for row in measured]
    lows = [
        float(row.peak_ci_low) if known(getattr(row, "peak_ci_low", None)) else v
        for row, v in zip(measured, values, strict=True)
    ]
    highs = [
        float(row.peak_ci_high) if known(getattr(row, "peak_ci_high", None)) else v
        for row, v in zip(measured, values, strict=True)
    ]
    return busiest_of(values, lows, highs)


def status_of(window: WindowDays, totals: WindowTotals) -> tuple[str, list[str]]:
    """`error`, `not_measured`, `active` or `empty`, and the reasons a reader needs to trust it."""
    reasons = []
    if window.errors:
        status = "error"
        reasons.append("; ".join(f"{row.date}: {row.reason}" for row in window.errors))
    elif not window.measured:
        status = "not_measured"
    else:
        status = "active" if totals.records > 0 else "empty"
    if window.not_measurable:
        reasons.append(
            f"not measurable: {', '.join(window.not_measurable)} ({'; '.join(window.reasons_not_measurable)})"
        )
    if window.missing:
        reasons.append(f"not measured yet: {', '.join(window.missing)}")
    uncaptured = [
        f"{row.date} ({describe_missing(row.hours_captured)})"
        for row in window.measured
        if isinstance(getattr(row, "hours_captured", None), str) and describe_missing(row.hours_captured)
    ]
    if uncaptured:
        reasons.append(f"partly deleted before capture: {'; '.join(uncaptured)}")
    sampled = [row.date for row in window.measured if stored_flag(getattr(row, "estimated", False))]
    if sampled:
        reasons.append(f"counts estimated from a sample (SAMPLING_BATCH_SIZE) on {', '.join(sampled)}")
    return status, reasons


def shape_of(window: WindowDays, current: int, totals: WindowTotals, settings: Settings) -> tuple[PartitionShape, dict]:
    """The partitions' shares over the days that had the current partition count, and the
    columns they give: skew, effective partitions, the busiest share and the hot flags."""
    shape = partition_shape([str(row.partition_bytes or "") for row in window.measured], current)
    # The flags of the days the shares come from (every day when none lists its partitions).
    days = [window.measured[index] for index in shape.day_indexes] if shape.day_indexes else window.measured
    if totals.by_metrics:  # the Metrics API's own hot-partition signals
        hot_ingress = _yes_no(any(stored_flag(row.hot_partition_ingress) for row in days))
        hot_egress = _yes_no(any(stored_flag(row.hot_partition_egress) for row in days))
    else:  # record sampling sees ingress skew only
        hot_ingress = _yes_no(len(shape.shares) > 1 and shape.skew >= settings.hot_partition_skew)
        hot_egress = "n/a"
    return shape, {
        "partition_skew": shape.skew,
        "hot_partition_ingress": hot_ingress,
        "hot_partition_egress": hot_egress,
        "effective_partitions": shape.effective_partitions,
        "busiest_partition_share": shape.busiest_share,
    }


def consumers_of(facts: ProfileFacts, window: WindowDays, totals: WindowTotals) -> dict:
    """The consumer columns: measured by the Metrics API's egress, observed in the window's
    profiles, or unknown (None) when neither saw them, never zero readers."""
    egress = None
    if totals.by_metrics:
        egress = sum(int(row.egress_bytes) for row in window.measured if known(row.egress_bytes))
    if totals.by_metrics and totals.bytes:
        fan_out: float | None = egress / totals.bytes
    else:
        fan_out = float(facts.consumer_groups) if facts.observed else None
    observed = {
        "consumer_groups": facts.consumer_groups,
        "largest_group_members": facts.largest_group_members,
        "idle_members": facts.idle_members,
        "lag_bound_group": facts.lag_bound_group,
    }
    return {
        "egress_bytes_in_window": egress,
        **(observed if facts.observed else dict.fromkeys(observed)),
        "consumer_lag": facts.consumer_lag,
        "lag_trend": facts.lag_trend,
        "fan_out": fan_out,
        "keyed_share": facts.keyed_share,
        "top_key_share": facts.top_key_share,
    }


def capacity_columns(capacities: Capacities, settings: Settings) -> dict:
    """The per-partition capacities a recommendation used, kept with it so the reports draw the
    same lines: a partition takes the scaled peak up to the slower of producers and consumers."""
    return {
        "producer_capacity_bytes_per_sec": capacities.producer,
        "consumer_capacity_bytes_per_sec": capacities.consumer,
        "egress_capacity_bytes_per_sec": capacities.egress,
        "peak_per_partition_bytes_per_sec": min(capacities.producer, capacities.consumer)
        / settings.required_throughput_factor,
    }


def topic_window(
    inventory_row: pd.Series,
    measurements: pd.DataFrame | Rows,
    end_day: date,
    settings: Settings,
    profiles: pd.DataFrame | Rows | None = None,
) -> dict:
    """One topic's window measurements and recommendation; `measurements` (a frame, or its rows
    from `rows_of`) and `profiles` hold only its rows."""
    measurements = rows_of(measurements)
    window = days_of(inventory_row, measurements, end_day, settings)
    totals = totals_of(window)
    current = int(inventory_row.partitions)
    status, reasons = status_of(window, totals)
    shape, shape_columns = shape_of(window, current, totals, settings)
    if shape.note:
        reasons.append(shape.note)
    facts = profile_facts(profiles, current) if profiles is not None else ProfileFacts()
    cluster_type = getattr(inventory_row, "cluster_type", "")
    capacities = capacities_for(cluster_type if isinstance(cluster_type, str) else "", settings)
    row = {
        "cluster_id": inventory_row.cluster_id,
        "topic_name": inventory_row.topic,
        "method": totals.method,
        "is_compacted": bool(inventory_row.is_compacted),
        "number_of_partitions": current,
        "window_start": window.days[0],
        "window_end": window.days[-1],
        "window_days": len(window.days),
        "days_measured": len(window.measured),
        "days_not_measurable": len(window.not_measurable),
        "days_missing": len(window.missing),
        "days_in_error": len(window.errors),
        "records_in_window": totals.records,
        "bytes_in_window": totals.bytes,
        "measured_seconds": totals.seconds,
        "mean_record_bytes": totals.mean_record_bytes,
        "avg_ingress_bytes_per_sec": totals.bytes / totals.seconds if totals.seconds else 0.0,
        "peak_ingress_bytes_per_sec": totals.peak,
        "bytes_ci_low": totals.bytes_low,
        "bytes_ci_high": totals.bytes_high,
        "peak_ci_low": totals.peak_low,
        "peak_ci_high": totals.peak_high,
        "days_partial": sum(1 for row in window.measured if stored_flag(getattr(row, "partial", False))),
        **shape_columns,
        "exact": bool(window.measured) and all(bool(row.exact) for row in window.measured),
        "retained_records": totals.seed_records,
        "measuring_seconds": sum(float(row.duration_seconds) for row in window.measured),
        "status": status,
        **consumers_of(facts, window, totals),
        **capacity_columns(capacities, settings),
    }
    if status in {"error", "not_measured"}:
        row.update(_unrated(reasons))
        return row
    row.update(_recommended(row, inventory_row, measurements, end_day, settings, facts, shape, capacities, reasons))
    return row


def _unrated(reasons: list[str]) -> dict:
    """Every column a recommended row has, so a day of nothing but errors has them too."""
    return {
        **{f"{name}_term": 0 for name in TERM_COLUMNS},
        **dict.fromkeys(FORECAST_COLUMNS),
        "hot_key": "no",
        "keys_remapped_share": None,
        "recommended_partitions": 0,
        "needed_partitions": 0,
        "required_bytes_per_sec": 0.0,
        "consumer_bytes_per_sec": 0.0,
        "binding": "",
        "action": "n/a",
        "reason": "; ".join(reasons),
    }


def _recommended(
    row: dict,
    inventory_row,
    measurements: Rows,
    end_day: date,
    settings: Settings,
    facts: ProfileFacts,
    shape: PartitionShape,
    capacities: Capacities,
    reasons: list[str],
) -> dict:
    """The recommendation columns: the model's result, its terms, the key and forecast notes."""
    current = row["number_of_partitions"]
    capacity_model = settings.recommendation_model is not RecommendationModel.SEED
    if capacity_model and row["status"] == "empty":
        return _idle(row, settings, reasons)
    demand = _demand(row, inventory_row, facts)
    result = recommend(
        demand=demand,
        mean_record_bytes=row["mean_record_bytes"],
        seed_record_count=row["retained_records"],
        current_partitions=current,
        settings=settings,
        capacities=capacities,
    )
    needed = result.needed_partitions or result.recommended_partitions
    unknown = _unweighed_terms(facts, row, capacity_model)
    notes = _result_notes(result, needed, current, settings, unknown)
    hot_key = _hot_key(row, shape, settings, capacities)
    if hot_key:
        reasons.append(
            f"hot key: adding partitions will not spread it (the busiest partition carries "
            f"{shape.busiest_share:.0%} of the bytes)"
        )
    remapped = _remapped(result, inventory_row, facts, current, settings, reasons)
    forecast = _forecast(
        measurements, end_day, row["peak_ingress_bytes_per_sec"], demand, current, settings, capacities
    )
    _note_forecast(forecast, result.recommended_partitions, settings, reasons)
    terms = {f"{name}_term": result.terms.get(name, 0) for name in TERM_COLUMNS}
    terms |= {f"{name}_term": None for name in unknown}
    return {
        **forecast,
        **_result_columns(result, needed),
        **terms,
        "hot_key": _yes_no(hot_key),
        "keys_remapped_share": remapped,
        "reason": "; ".join(notes + reasons),
    }


def _demand(row: dict, inventory_row, facts: ProfileFacts) -> Demand:
    """What the topic asks of its partitions: the window's peak, its readers and its brokers."""
    brokers = getattr(inventory_row, "cluster_brokers", 0)
    return Demand(
        peak_ingress_bytes_per_sec=row["peak_ingress_bytes_per_sec"],
        fan_out=row["fan_out"] or 0.0,
        lag_bound_members=facts.lag_bound_members,
        group_sizes=facts.group_sizes,
        brokers=int(brokers) if known(brokers) else 0,
    )


def _result_notes(
    result: Recommendation, needed: int, current: int, settings: Settings, unknown: list[str]
) -> list[str]:
    """The notes that explain the result: what set the need, its rounding, the terms not weighed."""
    notes = [_explain(result.binding, result.recommended_partitions, current, result.action)]
    if result.recommended_partitions != needed:
        notes.append(f"{needed} needed, rounded to {result.recommended_partitions} ({settings.partition_rounding})")
    if unknown:
        notes.append(
            f"consumers not observed: no topic_profiles in the window, so the {' and '.join(unknown)} "
            "term(s) could not be weighed (materialize topic_profiles for a day in the window)"
        )
    return notes


def _remapped(
    result: Recommendation,
    inventory_row,
    facts: ProfileFacts,
    current: int,
    settings: Settings,
    reasons: list[str],
) -> float | None:
    """The share of keyed records an increase would move to another partition (None when it
    moves none or is unknown), with a warning in `reasons`: per-key order breaks across it."""
    remapped = None
    if result.action == INCREASE and (facts.keyed_share or bool(inventory_row.is_compacted)):
        remapped = remapped_share(facts.key_hashes, current, result.recommended_partitions, settings.partitioner)
        if remapped is not None:
            reasons.append(
                f"remap warning: {remapped:.0%} of keyed records would move to another partition "
                f"({settings.partitioner}); per-key order breaks across the change"
            )
    return remapped


def _note_forecast(forecast: dict, recommended: int, settings: Settings, reasons: list[str]) -> None:
    """Adds the forecast to `reasons` when it asks for more partitions than today's peak."""
    # Both counts rounded alike (PARTITION_ROUNDING): a flat trend never reads as growth.
    if (forecast["forecast_recommended_partitions"] or 0) > recommended:
        reasons.append(
            f"forecast: {forecast['forecast_recommended_partitions']} partitions in {settings.forecast_days} days "
            f"(daily peak {forecast['trend_slope_bytes_per_sec_per_day']:+,.1f} B/s a day over "
            f"{forecast['trend_fit_days']} days)"
        )


def _unweighed_terms(facts: ProfileFacts, row: dict, capacity_model: bool) -> list[str]:
    """The consumer terms no observation backs: both without profiles, except the fan-out, which
    the Metrics API measures as egress over ingress."""
    if not capacity_model or facts.observed:
        return []
    return [name for name in CONSUMER_TERMS if not (name == "fan_out" and row["method"] == Method.METRICS_API)]


def _idle(row: dict, settings: Settings, reasons: list[str]) -> dict:
    """A topic that carried nothing in its window keeps its partitions: `MIN_RECOMMENDED_PARTITIONS`
    is a floor for topics in use, and partitions, once added, can never be removed."""
    current = row["number_of_partitions"]
    note = (
        f"idle: no record in the window's {row['days_measured']} measured days; MIN_RECOMMENDED_PARTITIONS "
        f"({settings.min_recommended_partitions}) applies to topics in use: keep {current}"
    )
    result = Recommendation(current, 0.0, 0.0, IDLE, KEEP, current, {})
    return {
        **dict.fromkeys(FORECAST_COLUMNS),
        **_result_columns(result, current),
        **{f"{name}_term": None for name in TERM_COLUMNS},
        "hot_key": "no",
        "keys_remapped_share": None,
        "reason": "; ".join([note, *reasons]),
    }


def _result_columns(result: Recommendation, needed: int) -> dict:
    return {
        "recommended_partitions": result.recommended_partitions,
        "needed_partitions": needed,
        "required_bytes_per_sec": result.required_bytes_per_sec,
        "consumer_bytes_per_sec": result.consumer_bytes_per_sec,
        "binding": result.binding,
        "action": result.action,
    }


def _hot_key(row: dict, shape: PartitionShape, settings: Settings, capacities: Capacities) -> bool:
    """A skewed partition (HOT_PARTITION_SKEW x its fair share) that alone needs more than a
    partition can take: its keys stay together whatever the count, so more partitions won't help.
    (A balanced topic that is simply too busy is not that: more partitions do spread it.)"""
    scaled_peak = row["peak_ingress_bytes_per_sec"] * settings.required_throughput_factor
    skewed = len(shape.shares) > 1 and shape.skew >= settings.hot_partition_skew
    return skewed and shape.busiest_share * scaled_peak > capacities.producer


def _forecast(
    measurements: Rows,
    end_day: date,
    peak: float,
    demand: Demand,
    current: int,
    settings: Settings,
    capacities: Capacities,
) -> dict:
    """The trend of the measured daily peaks over the stored history ending on `end_day`, and the
    recommendation for the window's peak carried `FORECAST_DAYS` ahead along it."""
    first = (end_day - timedelta(days=HISTORY_FOR_TREND_DAYS - 1)).isoformat()
    daily = {
        date.fromisoformat(row.date): float(row.peak_ingress_bytes_per_sec)
        for row in measurements
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
    grouped: dict[tuple, list] = {}
    for row in rows_of(measurements):
        grouped.setdefault((row.cluster_id, row.topic), []).append(row)
    empty: list = []
    by_topic: dict[tuple, list] = {}
    for row in rows_of(profiles) if profiles is not None else ():
        by_topic.setdefault((row.cluster_id, row.topic), []).append(row)
    no_profile = None if profiles is None else []
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
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).sort_values(["cluster_id", "topic_name"], ignore_index=True)
    # Counts stay whole numbers where some rows do not know them (unknown, not zero).
    counts = [column for column in INTEGER_COLUMNS if column in frame]
    return frame.astype(dict.fromkeys(counts, "Int64"))
