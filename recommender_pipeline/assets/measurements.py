"""Day x topic measurements: a run covers one day's range of topics, measured in a few chunks.

One step process per topic would cost about a second each on a small machine, so the planner
splits each cluster's topics into at most `MAX_WORKERS_PER_CLUSTER` chunks; the multiprocess
executor runs the chunks in parallel and a single step writes every row into the store.
"""

import re
import time
from dataclasses import dataclass
from datetime import date

import dagster as dg
import pandas as pd
from confluent_kafka import KafkaException

from recommender_pipeline.errors import RecommenderError
from recommender_pipeline.measuring.measurement import Measurement, Method, Status, TopicSpec
from recommender_pipeline.measuring.metrics_api import MetricsDayMeasurer
from recommender_pipeline.measuring.records import DayMeasurer, SamplingLimits
from recommender_pipeline.partitions import (
    daily_topic_partitions,
    split_day_topic_key,
    topic_key,
)
from recommender_pipeline.resources import (
    ConfigResource,
    ConfluentCloudResource,
    KafkaResource,
    MeasurementStoreResource,
)


@dataclass(frozen=True)
class MeasurementChunk:
    day: str
    cluster_id: str
    topics: tuple[TopicSpec, ...]


def plan_chunks(
    keys: list[str], inventory: pd.DataFrame, max_chunks_per_cluster: int
) -> tuple[list[MeasurementChunk], list[str]]:
    """Groups a run's (day, topic) keys into per-cluster chunks of similar size.

    Returns the chunks and the keys left out because their topic is not in the inventory.
    """
    specs = {
        topic_key(row.cluster_id, row.topic): TopicSpec(
            row.cluster_id,
            row.topic,
            int(row.partitions),
            None if pd.isna(row.retention_ms) else int(row.retention_ms),
            bool(row.is_compacted),
        )
        for row in inventory.itertuples()
    }
    grouped: dict[tuple[str, str], list[TopicSpec]] = {}
    skipped = []
    for key in keys:
        day, topic = split_day_topic_key(key)
        if topic not in specs:
            skipped.append(key)
            continue
        grouped.setdefault((day, specs[topic].cluster_id), []).append(specs[topic])
    chunks = []
    for (day, cluster_id), topics in sorted(grouped.items()):
        count = min(max_chunks_per_cluster, len(topics))
        # Deal the biggest topics first, round robin, so chunks carry similar partition counts.
        ordered = sorted(topics, key=lambda spec: -spec.partitions)
        chunks += [MeasurementChunk(day, cluster_id, tuple(ordered[i::count])) for i in range(count)]
    return chunks, skipped


def _mapping_key(chunk: MeasurementChunk, index: int) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{chunk.cluster_id}_{chunk.day}_{index}")


@dg.op(out=dg.DynamicOut(MeasurementChunk))
def plan_measurement_chunks(context: dg.OpExecutionContext, cluster_inventory: pd.DataFrame, config: ConfigResource):
    """Splits the run's partitions into per-cluster chunks."""
    keys = [str(key) for key in context.partition_keys]
    settings = config.settings
    # The Metrics API answers a whole cluster in a handful of queries: one chunk per cluster.
    per_cluster = settings.max_workers_per_cluster if settings.use_sample_records else 1
    chunks, skipped = plan_chunks(keys, cluster_inventory, per_cluster)
    if skipped:
        context.log.warning(f"{len(skipped)} partition(s) skipped, topic not in the inventory: {skipped[:10]}")
    context.log.info(f"{len(keys)} partitions in {len(chunks)} chunks")
    for index, chunk in enumerate(chunks):
        yield dg.DynamicOutput(chunk, mapping_key=_mapping_key(chunk, index))


@dg.op(pool="measurement_chunks")
def measure_topic_chunk(
    context: dg.OpExecutionContext,
    chunk: MeasurementChunk,
    config: ConfigResource,
    kafka: KafkaResource,
    cloud: ConfluentCloudResource,
) -> list[Measurement]:
    """Measures one chunk of topics for one day, by record sampling or through the Metrics API;
    a failing topic becomes an `error` row, a failing cluster makes all its topics `error`."""
    settings = config.settings
    day = date.fromisoformat(chunk.day)
    method = Method.SAMPLING_RECORDS if settings.use_sample_records else Method.METRICS_API
    started = time.monotonic()
    try:
        if settings.use_sample_records:
            limits = SamplingLimits(
                settings.sampling_batch_size,
                settings.sampling_timeout_seconds,
                settings.sampling_max_consecutive_nulls,
                skew_ms=round(settings.timestamp_skew_seconds * 1000),
            )
            measurer = DayMeasurer(
                kafka.admin(chunk.cluster_id),
                lambda overrides: kafka.consumer(chunk.cluster_id, overrides),
                day,
                limits,
                log=context.log.info,
            )
        else:
            measurer = MetricsDayMeasurer(cloud.query_metrics, chunk.cluster_id, day, log=context.log.info)
        rows = measurer.measure(chunk.topics)
    except Exception as error:  # one chunk's failure must not sink the other chunks' rows
        if isinstance(error, KafkaException):
            detail = error.args[0].str()
        elif isinstance(error, RecommenderError):
            detail = str(error)
        else:
            detail = f"{type(error).__name__}: {error}"
        reason = f"cluster {chunk.cluster_id} could not be measured: {detail}"
        context.log.error(reason)
        rows = [Measurement.failed(spec, day, method, reason) for spec in chunk.topics]
    elapsed = time.monotonic() - started
    records = sum(row.sampled_records for row in rows)
    context.add_output_metadata(
        {
            "topics": len(rows),
            "records_read": records,
            "records_per_sec": round(records / elapsed, 1) if elapsed else 0.0,
            "metrics_api_requests": cloud.request_count(),
            "seconds": round(elapsed, 2),
        }
    )
    return rows


@dg.op(out=dg.Out(dg.Nothing, is_required=False))
def store_measurements(
    context: dg.OpExecutionContext, chunk_rows: list[list[Measurement]], store: MeasurementStoreResource
):
    """The single writer: stores every row, records each measured topic-day as a materialized
    partition with its own numbers (so the UI plots them across days), then fails the run if
    any topic failed. The failed ones stay unmaterialized: a retry re-measures only them."""
    rows = [row for chunk in chunk_rows for row in chunk]
    written = {(row["date"], row["cluster_id"], row["topic"]) for row in store.write_measurements(rows)}
    kept = sum(1 for row in rows if (row.date, row.cluster_id, row.topic) not in written)
    if kept:
        context.log.info(f"kept {kept} stored topic-day(s) that the new rows would have downgraded")
    for row in rows:
        if row.status is not Status.ERROR and (row.date, row.cluster_id, row.topic) in written:
            yield dg.AssetMaterialization(
                asset_key="topic_measurements",
                partition=dg.MultiPartitionKey({"date": row.date, "topic": topic_key(row.cluster_id, row.topic)}),
                metadata=partition_metadata(row),
            )
    by_status = pd.Series([str(row.status) for row in rows], dtype=str).value_counts().to_dict()
    context.log.info(f"stored {len(rows)} topic-days: {by_status}")
    failed = {f"{row.cluster_id}/{row.topic}": row.reason for row in rows if row.status is Status.ERROR}
    if failed:
        raise dg.Failure(
            f"{len(failed)} of {len(rows)} topics could not be measured: {', '.join(sorted(failed))}. "
            "The other topics were measured and stored.",
            metadata={"failed_topics": dg.MetadataValue.json(failed)},
        )


def partition_metadata(row: Measurement) -> dict:
    """What a person reads on a topic-day, with units; numbers Dagster can plot across days."""
    metadata = {
        "status": str(row.status),
        "method": str(row.method),
        "records": int(row.records),
        "bytes": int(row.bytes),
        "mean_record_bytes": float(round(row.mean_record_bytes, 2)),
        "avg_ingress_bytes_per_sec": float(round(row.avg_ingress_bytes_per_sec, 3)),
        "peak_ingress_bytes_per_sec": float(round(row.peak_ingress_bytes_per_sec, 3)),
        "partition_skew": float(round(row.skew, 3)),
        "exact": bool(row.exact),
        "partial": bool(row.partial),
        "late_records": int(row.late_records),
        "reason": row.reason or "",
    }
    for name in ("bytes_ci_low", "bytes_ci_high", "peak_ci_low", "peak_ci_high"):
        value = getattr(row, name)
        if value is not None:
            metadata[name] = float(round(value, 3))
    return metadata


@dg.graph_asset(
    partitions_def=daily_topic_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="measurements",
    kinds={"kafka", "duckdb"},
)
def topic_measurements(cluster_inventory: pd.DataFrame):
    """What each topic carried on each UTC day: records and bytes in the day, mean record size,
    average and peak (hourly) ingress in bytes/s, per-partition skew, and whether the numbers are
    exact or estimated. Rows live in the measurement store (DuckDB by default)."""
    return store_measurements(plan_measurement_chunks(cluster_inventory).map(measure_topic_chunk).collect())
