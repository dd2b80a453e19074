"""What the Dagster UI shows of a day's recommendations: a typed table that fits a screen.

A markdown table of every column is cut off at "recommended_partiti..." on a 1600 px screen, so
the UI gets Dagster's table metadata (a `TableSchema`, which the UI renders with its headers and
types) of the few columns a person acts on, in the order they read them: the topic, its partitions
now, recommended and the change, the action and the reason in short, then the status and what
bound it. The asset page leaves the table about 700 px of a 1600 px window and cuts any cell at
about 230 px, so the reason is a few words (`WHY`; the detail CSV and the HTML report have it
whole) placed before the wide columns. Rows are in the order to act on them: the largest
increase first.
"""

import math
from urllib.parse import quote

import dagster as dg
import pandas as pd

from recommender_pipeline.outputs.units import rate

# The `status` values the recommendations carry (`topic_window.status_of`, `reporting`).
STATUSES = "active, empty, error, not_measured or not_supported"
# (column in the recommendations frame, header in the UI, Dagster type, what it means)
UI_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("topic_name", "topic", "string", "the topic"),
    ("number_of_partitions", "now", "int", "partitions the topic has now"),
    ("recommended_partitions", "recommended", "int", "partitions recommended for the window"),
    ("change", "change", "int", "recommended - now, for an increase; 0 otherwise (partitions are never removed)"),
    ("action", "action", "string", "increase, keep or over-provisioned (never a decrease); n/a without numbers"),
    ("short_reason", "reason", "string", "why, in short (the detail CSV and the HTML report say it whole)"),
    ("status", "status", "string", STATUSES),
    ("binding", "binding", "string", "the term that set the recommendation"),
    ("peak", "peak", "string", "the window's busiest bucket, per second (binary units)"),
    ("cluster_id", "cluster", "string", "the Kafka cluster"),
)
# The reason in words of what bound it, short enough for the UI's column (it cuts a cell at
# about 230 px, 26 characters); a row without numbers shows the first words of its reason.
WHY = {
    "consumer_throughput": "peak ingress vs consumers",
    "producer_throughput": "peak ingress vs producers",
    "fan_out": "egress of every group",
    "consumer_group": "members of a lagging group",
    "min_consumption_throughput": "the throughput minimum",
    "min_recommended_partitions": "the partition floor",
    "required_consumption_throughput_factor": "seed model: the factor",
    "no_records": "seed model: no records",
}
MAX_ROWS = 200  # a page the UI renders quickly; the detail CSV has every topic
REASON_CHARS = 26  # what the UI shows of a cell before it cuts it
ACTION_ORDER = {"increase": 0, "n/a": 1, "over-provisioned": 2, "keep": 3}


def _cell(value: object) -> str | int | float | bool | None:
    """A value Dagster's `TableRecord` accepts: numpy scalars unwrapped, NaN as an empty cell."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float):
        return round(value, 1)
    if isinstance(value, str | int | bool):
        return value
    return str(value)


def short_reason(reason: object, binding: object = None, limit: int = REASON_CHARS) -> str:
    """What bound the recommendation, in words (`WHY`); otherwise the reason's first clause
    (before ": N partitions vs M now" or "; more"), at most `limit` characters, cut with "…"."""
    if isinstance(binding, str) and binding in WHY:
        return WHY[binding]
    text = reason if isinstance(reason, str) else ""
    clause = text.split("; ")[0].split(": ")[0].strip()
    return clause if len(clause) <= limit else clause[: limit - 1].rstrip() + "…"


def table_rows(recommendations: pd.DataFrame, max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """The rows to show, in the order to act on them: increases by partitions to add (then
    peak), then topics without numbers, over-provisioned and kept ones by cluster and topic."""
    frame = recommendations.assign(
        change=(recommendations["recommended_partitions"] - recommendations["number_of_partitions"])
        .where(recommendations["action"] == "increase", 0)
        .fillna(0)
        .astype(int),
        _order=recommendations["action"].map(ACTION_ORDER).fillna(len(ACTION_ORDER)),
        short_reason=[
            short_reason(reason, binding if action != "n/a" else None)
            for reason, binding, action in zip(
                recommendations.get("reason", pd.Series("", index=recommendations.index)),
                recommendations.get("binding", pd.Series(None, index=recommendations.index)),
                recommendations["action"],
                strict=True,
            )
        ],
        peak=recommendations["peak_ingress_bytes_per_sec"].map(rate),
    )
    increase = frame["_order"] == 0
    sort_change = frame["change"].where(increase, 0)
    sort_peak = frame["peak_ingress_bytes_per_sec"].where(increase, 0).fillna(0)
    ordered = frame.assign(_change=-sort_change, _peak=-sort_peak).sort_values(
        ["_order", "_change", "_peak", "cluster_id", "topic_name"], kind="stable"
    )
    return ordered.head(max_rows)


def recommendations_table(recommendations: pd.DataFrame, max_rows: int = MAX_ROWS) -> dg.TableMetadataValue:
    """The UI's table of a day's recommendations (`table_rows`), at most `max_rows` rows."""
    shown = table_rows(recommendations, max_rows)
    present = [column for column in UI_COLUMNS if column[0] in shown.columns]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(header, kind, description) for _, header, kind, description in present]
    )
    records = [
        dg.TableRecord({header: _cell(row[source]) for source, header, _, _ in present}) for _, row in shown.iterrows()
    ]
    return dg.MetadataValue.table(records, schema)


HISTORY_ROWS = 25  # topics in the history view: the first rows of the table, in its order
BARS = "▁▂▃▄▅▆▇█"


def sparkline(peaks: list[float | None]) -> str:
    """One bar per day scaled to the busiest, `·` for a day without a measurement."""
    known_peaks = [peak for peak in peaks if peak is not None]
    top = max(known_peaks, default=0.0)
    bars = []
    for peak in peaks:
        if peak is None:
            bars.append("·")
        else:
            bars.append(BARS[min(int(peak / top * (len(BARS) - 1) + 0.5), len(BARS) - 1)] if top else BARS[0])
    return "".join(bars)


def history_markdown(recommendations: pd.DataFrame, measurements: pd.DataFrame, days: list[str]) -> str:
    """Each topic's window, day by day, beside its recommendation, in the table's order: the daily
    peaks as bars, their range, and a link to each measured day's partition of
    `topic_measurements` (its numbers, as the chunk recorded them). Dagster's table cells hold no
    links and its plots interleave every topic's days, so this is where one topic's history and
    the evidence behind its number are read."""
    shown = table_rows(recommendations, HISTORY_ROWS)
    # Only the shown topics' days of the window: the history holds every topic's 28 days.
    shown_keys = list(zip(shown["cluster_id"], shown["topic_name"], strict=True))
    keys = pd.MultiIndex.from_frame(measurements[["cluster_id", "topic"]])
    window = measurements.loc[measurements["date"].astype(str).isin(days).to_numpy() & keys.isin(shown_keys)]
    by_topic = {
        (cluster, topic): rows.set_index(rows["date"].astype(str))
        for (cluster, topic), rows in window.groupby(["cluster_id", "topic"])
    }
    lines = [
        f"Daily peaks over the window {days[0]} to {days[-1]} (· a day not measured); each date opens that "
        "topic-day's measurement.",
        "",
        "| topic | now → recommended | daily peak | lowest - busiest day | measured days |",
        "|---|---|---|---|---|",
    ]
    for row in shown.itertuples():
        stored = by_topic.get((row.cluster_id, row.topic_name))
        measured = [] if stored is None else [d for d in days if d in stored.index]
        peaks = [float(stored.loc[day, "peak_ingress_bytes_per_sec"]) if day in measured else None for day in days]
        values = [peak for peak in peaks if peak is not None]
        span = f"{rate(min(values))} - {rate(max(values))}" if values else "none measured"
        links = " ".join(f"[{day[5:]}]({measurement_url(day, row.cluster_id, row.topic_name)})" for day in measured)
        lines.append(
            f"| {row.topic_name} | {row.number_of_partitions} → {row.recommended_partitions} | "
            f"`{sparkline(peaks)}` | {span} | {links or '-'} |"
        )
    if len(recommendations) > len(shown):
        lines += ["", f"The first {len(shown)} of {len(recommendations)} topics; every topic is in the HTML report."]
    return "\n".join(lines)


def measurement_url(day: str, cluster_id: str, topic: str) -> str:
    """The Dagster UI's page of one topic-day partition of `topic_measurements` (a path on the
    webserver that shows this metadata, so it works wherever the UI is served)."""
    return f"/assets/topic_measurements?partition={quote(f'{day}|{cluster_id}/{topic}', safe='')}"
