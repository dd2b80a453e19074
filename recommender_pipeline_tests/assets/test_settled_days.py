"""A run over topic-days an earlier run settled succeeds with every topic-day materialized (so a
backfill over measured days is not "Failed"), each marked `settled` with its stored numbers, and
no topic-day without a stored row is ever reported. No broker: nothing is left to measure."""

from datetime import date, timedelta

import dagster as dg
import pandas as pd

from recommender_pipeline.assets.partitions import topics_partitions
from recommender_pipeline.assets.run_tags import day_range_tags
from recommender_pipeline.assets.topic_days import HOURS_LEGEND, settled_materializations
from recommender_pipeline.days import utc_today
from recommender_pipeline.measuring import hours
from recommender_pipeline.measuring.measurement import Measurement, Method, Status

DAY = utc_today() - timedelta(days=2)  # inside Dagster's rolling date dimension
TOPICS = [("c1", "clicks"), ("c1", "orders")]


def settled_row(day: date, cluster_id: str, topic: str, records: int) -> dict:
    row = Measurement(day.isoformat(), cluster_id, topic, Method.SAMPLING_RECORDS, Status.MEASURED).as_row()
    row.update(window_seconds=86_400.0, day_closed=True, hours_captured="c" * 24)
    hours.fill_day(row, "c" * 24, [records] * 24, [100 * records] * 24)
    return row


def test_a_run_over_settled_days_records_them_settled_with_their_stored_numbers(configure, pipeline):
    configure(KAFKA_CREDENTIALS='[{"kafka_cluster_id": "c1", "bootstrap.servers": "127.0.0.1:9"}]')
    inventory = pd.DataFrame(
        [{"cluster_id": c, "topic": t, "partitions": 1, "retention_ms": None, "is_compacted": False} for c, t in TOPICS]
    )
    store = pipeline.store
    store.replace_inventory(inventory)
    store.write_measurements([settled_row(DAY, c, t, 1 + i) for i, (c, t) in enumerate(TOPICS)])
    keys = [f"{c}/{t}" for c, t in TOPICS]
    pipeline.instance.add_dynamic_partitions(topics_partitions.name, keys)
    day = DAY.isoformat()
    result = pipeline.materialize(["topic_measurements"], tags=day_range_tags(day, keys, {"c1"}))
    assert result.success
    entries = pipeline.instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    reported = {str(e.asset_materialization.partition): e.asset_materialization.metadata for e in entries}
    assert set(reported) == {f"{day}|{key}" for key in keys}
    orders = reported[f"{day}|c1/orders"]
    assert orders["settled"].value is True
    assert orders["records"].value == 48 and orders["bytes"].value == 4800
    assert orders["summary"].value.startswith("settled: measured by an earlier run (stored 20")
    assert "4.69 KiB in 48 records" in orders["summary"].value
    assert orders["hours_legend"].value == HOURS_LEGEND


def test_only_stored_days_not_in_error_are_re_reported():
    rows = [settled_row(DAY, "c1", "orders", 2), {**settled_row(DAY, "c1", "clicks", 1), "status": "error"}]
    stored = pd.DataFrame(rows)
    keys = [f"{DAY}|c1/orders", f"{DAY}|c1/clicks", f"{DAY}|c1/never-measured"]
    [only] = settled_materializations(stored, keys)
    assert only.partition == dg.MultiPartitionKey({"date": DAY.isoformat(), "topic": "c1/orders"})
