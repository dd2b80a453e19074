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

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from recommender_pipeline.outputs.report_charts import ChartLines, topic_chart_svg
from recommender_pipeline.outputs.units import amount, rate
from recommender_pipeline.values import known

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
    peak_per_partition: float  # bytes/s: the recommendations' `peak_per_partition_bytes_per_sec`
    # Topics Dagster cannot key (`topic_listing.UNSUPPORTED_IN_KEYS`): never measured, listed apart
    # with the reason; rows with `topic_name`, `number_of_partitions` and `reason`.
    not_supported: pd.DataFrame | None = None


def panel_id(topic: str) -> str:
    """The id of a topic's chart panel in the page: `<report>#topic-<name>` links to it (topic
    names hold only letters, digits, `.`, `_` and `-`, all valid in an id and a URL fragment)."""
    return f"topic-{topic}"


def coverage(frame: pd.DataFrame, history: pd.DataFrame) -> dict:
    """How much of the window was measured: days with any measured topic of the window's days,
    and measured topic-days of topics x days. A report from 1 of 3 days says so up front."""
    window = _window(frame)
    days = int(window["days"])
    topics = int((frame["status"] != "not_measured").sum()) if len(frame) else 0
    in_window = history
    if len(history) and window["start"]:
        dates = history["date"].astype(str).str[:10]
        good = history["status"].isin(["measured", "empty"])
        in_window = history.loc[good & (dates >= str(window["start"])) & (dates <= str(window["end"]))]
    measured = in_window["date"].astype(str).str[:10].nunique() if len(in_window) else 0
    topic_days = int(pd.to_numeric(frame.get("days_measured"), errors="coerce").fillna(0).sum()) if len(frame) else 0
    return {
        "days": days,
        "days_measured": int(min(measured, days)),
        "topic_days": topic_days,
        "topic_days_total": topics * days,
        "complete": days > 0 and measured >= days and topic_days >= topics * days,
    }


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
        coverage=coverage(frame, report.history),
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
    if known(cap):
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
        "panel": panel_id(str(row["topic_name"])),
        "evidence": _evidence(row),
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


def _evidence(row: dict) -> str:
    """What the binding term was computed from, in words: the groups and fan-out behind a
    fan-out need, the lag-bound group behind a consumer-group need; empty for ingress terms,
    whose evidence is the chart's daily peak."""
    binding = row.get("binding")
    if binding == "fan_out" and known(row.get("fan_out")):
        groups = _int(row.get("consumer_groups"))
        return (
            f"egress = daily peak x fan-out {float(row['fan_out']):g}"
            + (f" ({groups} consumer groups read each byte)" if groups is not None else "")
            + f", {amount(row.get('egress_bytes_in_window')) or 'unknown'} read in the window"
        )
    if binding == "consumer_group":
        group = _text(row.get("lag_bound_group")) or "a consumer group"
        members = _int(row.get("largest_group_members"))
        lag = _int(row.get("consumer_lag"))
        return (
            f"lag-bound group {group}: {members if members is not None else '?'} members, "
            f"lag {lag if lag is not None else 'unknown'} records ({_text(row.get('lag_trend')) or 'trend unknown'})"
        )
    return ""


def _chart_lines(row: dict, per_partition: float, day: str, forecast: bool) -> ChartLines:
    now, recommended = int(row["number_of_partitions"]), int(row["recommended_partitions"])
    fan_out, egress = row.get("fan_out"), row.get("egress_capacity_bytes_per_sec")
    producer, consumer = row.get("producer_capacity_bytes_per_sec"), row.get("consumer_capacity_bytes_per_sec")
    all_known = all(known(value) and float(value) > 0 for value in (fan_out, egress, producer, consumer))
    if row.get("binding") == "fan_out" and all_known:
        # The need came from egress (peak x factor x fan-out over what a partition serves): draw the
        # peak x fan-out against the egress a partition serves over the same growth factor.
        per_egress = float(egress) * per_partition / min(float(producer), float(consumer))
        lines = ChartLines(
            per_egress * now, per_egress * recommended, fan_out=float(fan_out), capacity_label="egress capacity"
        )
    else:
        lines = ChartLines(capacity_now=per_partition * now, capacity_recommended=per_partition * recommended)
    days = row.get("forecast_days") if forecast else None
    peak = row.get("forecast_peak_ingress_bytes_per_sec") if forecast else None
    if known(days) and known(peak):
        return replace(
            lines, forecast_day=date.fromisoformat(day) + timedelta(days=int(days)), forecast_peak=float(peak)
        )
    return lines


def _interval(low: object, high: object, show) -> str:
    return f"{show(low)} to {show(high)}" if known(low) and known(high) else ""


def _text(value: object) -> str:
    """A text cell; a missing one (None, NaN) is empty, never "nan"."""
    return str(value) if known(value) else ""


def _int(value: object) -> int | None:
    return int(value) if known(value) else None


def _float(value: object) -> float | None:
    return float(value) if known(value) else None


PREVIEW_ROWS = 10  # increases listed in the UI's preview; the report has every topic


def report_preview(report: ReportInput, url: str | None) -> str:
    """The report's overview as Markdown, for the `reports` asset's metadata: readable in the
    Dagster UI without opening anything, with a link to the report (and to each listed topic's
    chart panel) when the reports are served at `url` (`report_server.py`)."""
    frame = report.recommendations
    overview, window, cover = _overview(frame), _window(frame), coverage(frame, report.history)
    partial = "" if cover["complete"] else " **(a partial window: the numbers may change)**"
    lines = [
        f"**{report.cluster_id}**, window {window['start']} to {window['end']}: "
        f"{cover['days_measured']} of {cover['days']} days measured "
        f"({cover['topic_days']} of {cover['topic_days_total']} topic-days){partial}",
        "",
        "| topics | to increase | partitions to add | over-provisioned | keep | in error |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {overview['topics']} | {overview['increase']} | +{overview['partitions_to_add']} "
        f"| {overview['over_provisioned']} | {overview['keep']} | {overview['error']} |",
    ]
    increases = frame.assign(change=_change(frame)).loc[lambda f: f["action"] == "increase"]
    increases = increases.sort_values(["change", "peak_ingress_bytes_per_sec"], ascending=False).head(PREVIEW_ROWS)
    if len(increases):
        lines += ["", "| topic | now | recommended | change | binding |", "|---|---:|---:|---:|---|"]
        for row in increases.to_dict("records"):
            name = _markdown_cell(str(row["topic_name"]))
            topic = f"[{name}]({url}#{panel_id(str(row['topic_name']))})" if url else name
            lines.append(
                f"| {topic} | {int(row['number_of_partitions'])} | {int(row['recommended_partitions'])} "
                f"| +{int(row['change'])} | {_markdown_cell(_text(row.get('binding')))} |"
            )
    lines += ["", f"[Open the HTML report]({url})" if url else "The HTML report is not served: set REPORTS_URL."]
    return "\n".join(lines)


def _markdown_cell(text: str) -> str:
    """Text safe in a Markdown table cell and link text (a topic name may hold `_`, `|` cannot)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("_", "\\_").replace("[", "\\[").replace("]", "\\]")
