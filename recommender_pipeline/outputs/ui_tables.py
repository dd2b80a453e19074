"""What the Dagster UI shows of a day's recommendations: a typed table that fits a screen.

A markdown table of every column is cut off at "recommended_partiti..." on a 1600 px screen, so
the UI gets Dagster's table metadata (a `TableSchema`, which the UI renders with its headers and
types) of the few columns a person acts on, in the order they read them: the topic, its partitions
now and recommended, the action, what bound it, the row's status and the reason. The rows to act
on come first. Every other column stays in the detail CSV (`reports`).
"""

import math

import dagster as dg
import pandas as pd

# (column in the recommendations frame, header in the UI, Dagster type, what it means)
UI_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("topic_name", "topic", "string", "the topic"),
    ("number_of_partitions", "now", "int", "partitions the topic has now"),
    ("recommended_partitions", "recommended", "int", "partitions recommended for the window"),
    ("action", "action", "string", "increase, keep or over-provisioned (never a decrease); n/a without numbers"),
    ("binding", "binding", "string", "the term that set the recommendation"),
    ("status", "status", "string", "measured, estimated, error, not_measured..."),
    ("peak_ingress_bytes_per_sec", "peak B/s", "float", "the window's busiest bucket, bytes per second"),
    ("cluster_id", "cluster", "string", "the Kafka cluster"),
    ("reason", "reason", "string", "why, in words"),
)
MAX_ROWS = 200  # a page the UI renders quickly; the detail CSV has every topic
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


def recommendations_table(recommendations: pd.DataFrame, max_rows: int = MAX_ROWS) -> dg.TableMetadataValue:
    """The UI's table of a day's recommendations: topics to increase first, then the rest by
    cluster and topic, at most `max_rows` rows."""
    present = [column for column in UI_COLUMNS if column[0] in recommendations.columns]
    order = recommendations.assign(_order=recommendations["action"].map(ACTION_ORDER).fillna(len(ACTION_ORDER)))
    shown = order.sort_values(["_order", "cluster_id", "topic_name"], kind="stable").head(max_rows)
    schema = dg.TableSchema(
        columns=[dg.TableColumn(header, kind, description) for _, header, kind, description in present]
    )
    records = [
        dg.TableRecord({header: _cell(row[source]) for source, header, _, _ in present}) for _, row in shown.iterrows()
    ]
    return dg.MetadataValue.table(records, schema)
