"""What Dagster records of one topic-day of `topic_measurements`: its metadata, and the
materialization of a day an earlier run already settled.

A run (a backfill day, a Materialize click, the schedule) measures only the topic-days not
settled in the store. Dagster counts every partition a run planned and did not materialize as
failed: a backfill over days measured before showed "Failed" and "5 failed" although every run
succeeded. So a run re-reports each settled topic-day it covers with the numbers read back from
the store, marked `settled: true` and naming when the earlier measurement was stored: the day
was measured, by an earlier run, and no run ever reports a topic-day it has no stored row for.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
import pandas as pd

from recommender_pipeline.assets.partitions import split_day_topic_key, split_topic_key
from recommender_pipeline.measuring.hours import COMPLETE, LOST, NOT_READ, OPEN, PARTIAL
from recommender_pipeline.outputs.units import amount, rate

HOURS_LEGEND = (
    f"one letter per UTC hour 00-23: {COMPLETE} complete, {OPEN} open (read while running), "
    f"{PARTIAL} partly deleted before read, {LOST} deleted before any read, {NOT_READ} not read"
)


def partition_metadata(row: dict) -> dict:
    """What a person reads on a topic-day: a one-line summary with units first, then the numbers
    Dagster plots across days (bytes and bytes/s, as their names say)."""
    metadata = {
        "summary": dg.MetadataValue.text(day_summary(row)),
        "status": str(row["status"]),
        "method": str(row["method"]),
        "records": int(row["records"]),
        "bytes": int(row["bytes"]),
        "mean_record_bytes": float(round(row["mean_record_bytes"], 2)),
        "avg_ingress_bytes_per_sec": float(round(row["avg_ingress_bytes_per_sec"], 3)),
        "peak_ingress_bytes_per_sec": float(round(row["peak_ingress_bytes_per_sec"], 3)),
        "partition_skew": float(round(row["skew"], 3)),
        "exact": bool(row["exact"]),
        "partial": bool(row["partial"]),
        "late_records": int(row["late_records"]),
        "hours_captured": row.get("hours_captured") or "",
        "hours_legend": HOURS_LEGEND,
        "reason": row["reason"] or "",
    }
    for name in ("bytes_ci_low", "bytes_ci_high", "peak_ci_low", "peak_ci_high"):
        value = row.get(name)
        if value is not None and value == value:
            metadata[name] = float(round(value, 3))
    return metadata


def day_summary(row: dict) -> str:
    """One topic-day in words with binary units, e.g. "5.85 MiB in 28,800 records (217 B each);
    peak 1.63 KiB/s, average 70.95 B/s; 24 of 24 hours complete"."""
    records = int(row["records"])
    text = (
        f"{amount(row['bytes']) or '0 B'} in {records:,} records ({amount(row['mean_record_bytes']) or '0 B'} each); "
        f"peak {rate(row['peak_ingress_bytes_per_sec'])}, average {rate(row['avg_ingress_bytes_per_sec'])}"
    )
    hours = row.get("hours_captured") or ""
    if hours:
        text += f"; {hours.count(COMPLETE)} of {len(hours)} hours complete"
    return text if row.get("exact", True) else text + "; estimated from a sample"


def settled_materializations(stored: pd.DataFrame, keys: Iterable[str]) -> list[dg.AssetMaterialization]:
    """For each `date|cluster/topic` key with a stored row that is not in error, a materialization
    with that row's numbers, marked `settled` (measured by an earlier run, not by this one).
    `stored` holds the store's rows of the keys' days; keys without a stored row get none."""
    by_key = {(str(row["date"])[:10], row["cluster_id"], row["topic"]): row for row in stored.to_dict("records")}
    materializations = []
    for key in keys:
        day, topic = split_day_topic_key(key)
        row = by_key.get((day, *split_topic_key(topic)))
        if row is None or row["status"] == "error":
            continue
        metadata = partition_metadata(row)
        metadata["settled"] = True
        metadata["summary"] = dg.MetadataValue.text(
            f"settled: measured by an earlier run (stored {row.get('stored_at') or 'before'}), "
            f"not re-measured by this one; {metadata['summary'].value}"
        )
        materializations.append(
            dg.AssetMaterialization(
                asset_key="topic_measurements",
                partition=dg.MultiPartitionKey({"date": day, "topic": topic}),
                metadata=metadata,
            )
        )
    return materializations
