"""A cluster's window day as one self-contained HTML page: an overview, charts of the topics that
matter most, and a sortable table of every topic.

The page is shared by e-mail or opened from the Dagster UI on machines without internet access,
so it loads nothing: the CSS and the few lines of sorting script are inline, and the charts are
inline SVG (`report_charts.py`). The template is Jinja2's, with autoescaping (topic names and
reasons are user data). Charts are drawn for at most `CHART_LIMIT` topics (the largest increases
first, then the busiest by peak), so 2,000 topics make a page of about 2 MB, not one of 2,000
charts; the table lists every topic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from recommender_pipeline.outputs.report_charts import ChartLines, topic_chart_svg
from recommender_pipeline.recommending.model import Capacities

CHART_LIMIT = 30  # topics drawn as charts; every topic is in the table
INCREASES_CHARTED = 20  # of those, at most this many for the largest increases, the rest by peak
FORECAST_COLUMNS = (
    "forecast_peak_ingress_bytes_per_sec",
    "forecast_recommended_partitions",
    "forecast_days",
    "trend_slope_bytes_per_sec_per_day",
    "trend_fit_days",
)
HISTORY_COLUMNS = ["date", "peak_ingress_bytes_per_sec", "avg_ingress_bytes_per_sec", "peak_ci_low", "peak_ci_high"]
_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt field fails the test, not the reader
    trim_blocks=True,
    lstrip_blocks=True,
)


def peak_per_partition(capacities: Capacities, required_throughput_factor: float) -> float:
    """The window peak (bytes/s) one partition takes under the capacity model: the scaled peak
    must fit both the producer and the consumer side (`model.capacity_terms`)."""
    return min(capacities.producer, capacities.consumer) / required_throughput_factor


def rate(value: object) -> str:
    """Bytes per second as a person reads it (B/s, KiB/s, MiB/s); empty when unknown."""
    if not _known(value):
        return ""
    number = float(value)
    for unit, size in (("MiB/s", 1024**2), ("KiB/s", 1024)):
        if abs(number) >= size:
            return f"{number / size:,.2f} {unit}"
    return f"{number:,.1f} B/s"


def amount(value: object) -> str:
    """Bytes as a person reads them; empty when unknown."""
    if not _known(value):
        return ""
    number = float(value)
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(number) >= size:
            return f"{number / size:,.2f} {unit}"
    return f"{number:,.0f} B"


def charted_topics(recommendations: pd.DataFrame, limit: int = CHART_LIMIT) -> list[str]:
    """The topics to draw: the largest increases (by partitions to add, then peak), at most
    `INCREASES_CHARTED`, then the busiest remaining topics by peak, `limit` in all."""
    frame = recommendations.assign(change=_change(recommendations))
    increases = frame[frame["action"] == "increase"].sort_values(
        ["change", "peak_ingress_bytes_per_sec", "topic_name"], ascending=[False, False, True]
    )
    chosen = increases["topic_name"].head(min(INCREASES_CHARTED, limit)).tolist()
    rest = frame[~frame["topic_name"].isin(chosen)].sort_values(
        ["peak_ingress_bytes_per_sec", "topic_name"], ascending=[False, True]
    )
    return chosen + rest["topic_name"].head(limit - len(chosen)).tolist()


@dataclass(frozen=True)
class ReportInput:
    """One cluster's window day: its recommendations, its stored days and its capacity."""

    cluster_id: str
    day: str
    recommendations: pd.DataFrame  # the cluster's rows of `topic_recommendations`
    history: pd.DataFrame  # the cluster's rows of the measurement store, any days
    peak_per_partition: float  # bytes/s, see `peak_per_partition`
    # Topics Dagster cannot key (`topic_listing.UNSUPPORTED_IN_KEYS`): never measured, listed apart
    # with the reason; rows with `topic_name`, `number_of_partitions` and `reason`.
    not_supported: pd.DataFrame | None = None


def render_report(report: ReportInput) -> str:
    """The page's HTML."""
    frame = report.recommendations.sort_values("topic_name", ignore_index=True)
    forecast = _has_forecast(frame)
    charted = charted_topics(frame)
    history = report.history
    history = history.loc[history["topic"].isin(charted) & history["status"].isin(["measured", "empty"])]
    histories = {topic: rows.sort_values("date") for topic, rows in history.groupby("topic")}
    empty = pd.DataFrame(columns=HISTORY_COLUMNS)
    charts = []
    rows = frame.to_dict("records")
    by_topic = {row["topic_name"]: row for row in rows}
    for topic in charted:
        row = by_topic[topic]
        charts.append(
            {
                "topic": _topic_facts(row, forecast),
                "svg": Markup(
                    topic_chart_svg(
                        histories.get(topic, empty).reindex(columns=HISTORY_COLUMNS),
                        _chart_lines(row, report.peak_per_partition, report.day, forecast),
                        title=str(topic),
                    )
                ),
            }
        )
    return _ENVIRONMENT.get_template("report.html.j2").render(
        cluster_id=report.cluster_id,
        day=report.day,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        window=_window(frame),
        overview=_overview(frame),
        capacity=rate(report.peak_per_partition),
        forecast=forecast,
        forecast_days=_forecast_days(frame) if forecast else None,
        charts=charts,
        chart_limit=CHART_LIMIT,
        topics=[_topic_facts(row, forecast) for row in rows],
        not_supported=_not_supported(report.not_supported),
    )


def _not_supported(frame: pd.DataFrame | None) -> list[dict]:
    """The topics listed apart, by name: name, partitions now and why they are not measured."""
    if frame is None or frame.empty:
        return []
    return [
        {"name": str(row["topic_name"]), "now": _int(row.get("number_of_partitions")), "reason": _text(row["reason"])}
        for row in frame.sort_values("topic_name").to_dict("records")
    ]


def _change(frame: pd.DataFrame) -> pd.Series:
    if frame.empty:
        return pd.Series(dtype=int)
    return (frame["recommended_partitions"] - frame["number_of_partitions"]).where(frame["action"] == "increase", 0)


def _has_forecast(frame: pd.DataFrame) -> bool:
    """Whether the recommendations carry a forecast (columns added by `forecast.py`) for any topic."""
    return "forecast_recommended_partitions" in frame and bool(frame["forecast_recommended_partitions"].notna().any())


def _forecast_days(frame: pd.DataFrame) -> int | None:
    days = frame["forecast_days"].dropna() if "forecast_days" in frame else pd.Series(dtype=float)
    return int(days.iloc[0]) if len(days) else None


def _window(frame: pd.DataFrame) -> dict:
    if frame.empty:
        return {"start": "", "end": "", "days": 0, "method": ""}
    return {
        "start": frame["window_start"].min(),
        "end": frame["window_end"].max(),
        "days": int(frame["window_days"].max()),
        "method": ", ".join(sorted(frame["method"].astype(str).unique())),
    }


def _overview(frame: pd.DataFrame) -> dict:
    actions = frame["action"].value_counts().to_dict() if len(frame) else {}
    first = frame.iloc[0] if len(frame) else pd.Series(dtype=object)
    cap = first.get("cluster_partition_cap")
    overview = {
        "topics": len(frame),
        "increase": int(actions.get("increase", 0)),
        "over_provisioned": int(actions.get("over-provisioned", 0)),
        "keep": int(actions.get("keep", 0)),
        "error": int((frame["status"] == "error").sum()) if len(frame) else 0,
        "not_measured": int((frame["status"] == "not_measured").sum()) if len(frame) else 0,
        "partitions_now": int(frame["number_of_partitions"].sum()) if len(frame) else 0,
        "partitions_to_add": int(_change(frame).sum()) if len(frame) else 0,
        "cap": None,
    }
    if _known(cap):
        after = int(first["cluster_partitions_after"])
        overview["cap"] = {
            "cap": int(cap),
            "counted": first.get("cluster_counted") or "partitions",
            "now": int(first["cluster_partitions_now"]),
            "after": after,
            "headroom": int(cap) - after,
            "exceeded": after > int(cap),
        }
    return overview


def _topic_facts(row: dict, forecast: bool) -> dict:
    """A topic's numbers, each as shown and as sorted (`value`)."""
    now, recommended = int(row["number_of_partitions"]), int(row["recommended_partitions"])
    exact = bool(row.get("exact", True))
    facts = {
        "name": row["topic_name"],
        "action": row["action"],
        "status": row["status"],
        "now": now,
        "recommended": recommended,
        "change": recommended - now if row["action"] == "increase" else 0,
        "needed": _int(row.get("needed_partitions")),
        "binding": _text(row.get("binding")),
        "peak": float(row["peak_ingress_bytes_per_sec"]),
        "peak_text": rate(row["peak_ingress_bytes_per_sec"]),
        "peak_interval": "" if exact else _interval(row.get("peak_ci_low"), row.get("peak_ci_high"), rate),
        "average": float(row["avg_ingress_bytes_per_sec"]),
        "average_text": rate(row["avg_ingress_bytes_per_sec"]),
        "bytes_text": amount(row.get("bytes_in_window")),
        "bytes_interval": "" if exact else _interval(row.get("bytes_ci_low"), row.get("bytes_ci_high"), amount),
        "skew": _float(row.get("partition_skew")),
        "busiest_share": _float(row.get("busiest_partition_share")),
        "hot_key": row.get("hot_key") == "yes",
        "exact": exact,
        "days_measured": _int(row.get("days_measured")),
        "reason": _text(row.get("reason")),
    }
    if forecast:
        facts.update(
            forecast_peak=_float(row.get("forecast_peak_ingress_bytes_per_sec")),
            forecast_peak_text=rate(row.get("forecast_peak_ingress_bytes_per_sec")),
            forecast_recommended=_int(row.get("forecast_recommended_partitions")),
            trend_slope=_float(row.get("trend_slope_bytes_per_sec_per_day")),
            trend_slope_text=rate(row.get("trend_slope_bytes_per_sec_per_day")),
            trend_fit_days=_int(row.get("trend_fit_days")),
        )
    return facts


def _chart_lines(row: dict, per_partition: float, day: str, forecast: bool) -> ChartLines:
    lines = ChartLines(
        capacity_now=per_partition * int(row["number_of_partitions"]),
        capacity_recommended=per_partition * int(row["recommended_partitions"]),
    )
    days = row.get("forecast_days") if forecast else None
    peak = row.get("forecast_peak_ingress_bytes_per_sec") if forecast else None
    if _known(days) and _known(peak):
        return ChartLines(
            lines.capacity_now,
            lines.capacity_recommended,
            forecast_day=date.fromisoformat(day) + timedelta(days=int(days)),
            forecast_peak=float(peak),
        )
    return lines


def _interval(low: object, high: object, show) -> str:
    return f"{show(low)} to {show(high)}" if _known(low) and _known(high) else ""


def _known(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and not pd.isna(value)


def _text(value: object) -> str:
    """A text cell; a missing one (None, NaN) is empty, never "nan"."""
    return str(value) if _known(value) else ""


def _int(value: object) -> int | None:
    return int(value) if _known(value) else None


def _float(value: object) -> float | None:
    return float(value) if _known(value) else None
