"""Day x topic measurements: a run covers one day's range of topics, measured in a few chunks.

One step process per topic would cost about a second each on a small machine, so the planner
splits each cluster's topics that still need measuring into at most `MAX_WORKERS_PER_CLUSTER`
chunks; the multiprocess executor runs the chunks in parallel, and each chunk stores its own
rows, so a chunk that fails loses nothing of the others.
"""

import heapq
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import dagster as dg
import pandas as pd
from confluent_kafka import KafkaException

from recommender_pipeline.assets.partitions import (
    daily_topic_partitions,
    split_day_topic_key,
    split_topic_key,
    topic_key,
)
from recommender_pipeline.assets.run_tags import FORCE_TAG, FORCE_VALUE
from recommender_pipeline.assets.topic_days import partition_metadata, settled_materializations
from recommender_pipeline.errors import RecommenderError
from recommender_pipeline.measuring.measurement import Measurement, Method, Status, TopicSpec
from recommender_pipeline.measuring.metrics_api import MetricsDayMeasurer
from recommender_pipeline.measuring.records import DayMeasurer, SamplingLimits
from recommender_pipeline.orchestration.materializations import record_in_batches
from recommender_pipeline.resources import (
    ConfluentCloudResource,
    KafkaResource,
    MeasurementStoreResource,
    SettingsResource,
)
from recommender_pipeline.settings import Settings


@dataclass(frozen=True)
class MeasurementChunk:
    day: str
    cluster_id: str
    topics: tuple[TopicSpec, ...]


# `RECORDS_PER_CHUNK` (default 2 M): 2-4 s of reading here against about 1 s to start a step.
# Sampled partitions read about the budget each and share their rounds of blocks only within a
# chunk: many of them belong together.
UNKNOWN_RECORDS_PER_PARTITION = 1_000  # a topic never measured yet: assume a small one


def topic_work(inventory: pd.DataFrame, recent_reads: Mapping[str, float] | None = None) -> dict[str, float]:
    """About how many records a day of each inventoried topic (`cluster/topic`) reads: its latest
    measured day's (`MeasurementStoreResource.recent_reads`); for a topic never measured, the
    records in its log when listed (more than a day's), or a small topic's when unknown."""
    work = {}
    for row in inventory.itertuples():
        key = topic_key(row.cluster_id, row.topic)
        logged = getattr(row, "log_records", None)
        unknown = int(row.partitions) * UNKNOWN_RECORDS_PER_PARTITION if pd.isna(logged) else float(logged)
        work[key] = float((recent_reads or {}).get(key) or unknown)
    return work


def plan_chunks(
    keys: list[str],
    inventory: pd.DataFrame,
    max_chunks_per_cluster: int,
    recent_reads: Mapping[str, float] | None = None,
    records_per_chunk: int = 2_000_000,
) -> tuple[list[MeasurementChunk], list[str]]:
    """Groups a run's (day, topic) keys into per-cluster chunks by the work they hold.

    The records to read (`topic_work`) decide how many chunks a cluster-day needs (one per
    `records_per_chunk`, at most `max_chunks_per_cluster`, never more than its topics); topics
    are then dealt biggest first into the chunk with the least work, so chunks take about as
    long, and many sampled partitions share a chunk's rounds of blocks. Returns the chunks and
    the keys left out because their topic is not in the inventory.
    """
    specs = {
        topic_key(row.cluster_id, row.topic): TopicSpec(
            row.cluster_id,
            row.topic,
            int(row.partitions),
            None if pd.isna(row.retention_ms) else int(row.retention_ms),
            bool(row.is_compacted),
            str(row.cleanup_policy) if isinstance(getattr(row, "cleanup_policy", None), str) else "delete",
        )
        for row in inventory.itertuples()
    }
    work = topic_work(inventory, recent_reads)
    grouped: dict[tuple[str, str], list[tuple[float, TopicSpec]]] = {}
    skipped = []
    for key in keys:
        day, topic = split_day_topic_key(key)
        if topic not in specs:
            skipped.append(key)
            continue
        grouped.setdefault((day, specs[topic].cluster_id), []).append((work[topic], specs[topic]))
    chunks = []
    for (day, cluster_id), topics in sorted(grouped.items()):
        total = sum(records for records, _ in topics)
        count = min(max_chunks_per_cluster, len(topics), max(1, math.ceil(total / records_per_chunk)))
        loads = [(0.0, index) for index in range(count)]  # (work dealt so far, chunk)
        dealt: list[list[TopicSpec]] = [[] for _ in range(count)]
        for records, spec in sorted(topics, key=lambda item: (-item[0], item[1].topic)):
            load, index = heapq.heappop(loads)
            dealt[index].append(spec)
            heapq.heappush(loads, (load + records, index))
        chunks += [MeasurementChunk(day, cluster_id, tuple(specs_of)) for specs_of in dealt]
    return chunks, skipped


def _mapping_key(chunk: MeasurementChunk, index: int) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{chunk.cluster_id}_{chunk.day}_{index}")


def forced(context: dg.OpExecutionContext) -> bool:
    """Whether the run re-measures settled topic-days too (the `remeasure=force` tag)."""
    return context.run.tags.get(FORCE_TAG) == FORCE_VALUE


@dg.op(out=dg.DynamicOut(MeasurementChunk))
def plan_measurement_chunks(
    context: dg.OpExecutionContext,
    cluster_inventory: pd.DataFrame,
    config: SettingsResource,
    store: MeasurementStoreResource,
):
    """Splits the run's partitions that still need measuring into per-cluster chunks.

    A topic-day already settled in the store is skipped (a new topic costs only its own days),
    unless the run carries the `remeasure=force` tag.
    """
    keys = [str(key) for key in context.partition_keys]
    settings = config.settings
    by_day: dict[str, dict[str, list[str]]] = {}  # day -> cluster -> topics
    for key in keys:
        day, topic = split_day_topic_key(key)
        cluster_id, name = split_topic_key(topic)
        by_day.setdefault(day, {}).setdefault(cluster_id, []).append(name)
    todo = []
    for day, topics in sorted(by_day.items()):
        pending = store.pending_reads(date.fromisoformat(day), topics, forced(context))
        todo += [f"{day}|{topic_key(c, name)}" for c, names in topics.items() for name in names if name in pending[c]]
    if len(todo) < len(keys):
        # Re-reported from the store, so Dagster does not count them failed (`topic_days.py`).
        settled = sorted(set(keys) - set(todo))
        stored = store.read_measurements(min(by_day), max(by_day))
        record_in_batches(context, settled_materializations(stored, settled))
        context.log.info(
            f"{len(settled)} topic-day(s) already settled in the store, not re-measured: "
            "recorded as materialized with their stored numbers (settled: true)"
        )
    # The Metrics API answers a whole cluster in a handful of queries: one chunk per cluster.
    per_cluster = settings.max_workers_per_cluster if settings.use_sample_records else 1
    work = store.recent_reads(min(by_day, default=None))
    chunks, skipped = plan_chunks(todo, cluster_inventory, per_cluster, work, settings.records_per_chunk)
    # A key typed by hand in the UI ("Add a partition") without `<cluster_id>/` names no cluster.
    unkeyed = [key for key in skipped if not split_topic_key(split_day_topic_key(key)[1])[1]]
    if unkeyed:
        context.log.error(
            f"partition key(s) {unkeyed[:10]} name no cluster, not measured: topic keys are `<cluster_id>/<topic>` "
            "(e.g. local/orders), added by cluster_inventory; topic_discovery_sensor removes such keys"
        )
    skipped = [key for key in skipped if key not in unkeyed]
    if skipped:
        context.log.warning(f"{len(skipped)} partition(s) skipped, topic not in the inventory: {skipped[:10]}")
    context.log.info(f"{len(todo)} of {len(keys)} partitions to measure, in {len(chunks)} chunks")
    for index, chunk in enumerate(chunks):
        yield dg.DynamicOutput(chunk, mapping_key=_mapping_key(chunk, index))


@dg.op(pool="measurement_chunks", out=dg.Out(dict))
def measure_topic_chunk(
    context: dg.OpExecutionContext,
    chunk: MeasurementChunk,
    config: SettingsResource,
    kafka: KafkaResource,
    cloud: ConfluentCloudResource,
    store: MeasurementStoreResource,
):
    """Measures one chunk of topics for one day, by record sampling or through the Metrics API,
    and stores its rows: each measured topic-day becomes a materialized partition with its own
    numbers, so the UI plots them across days.

    Any exception makes `error` rows for this chunk's topics only. The step then fails after
    storing, so the run reports partial success and a retry of it (`run_retries`, or
    "re-execute from failure") re-measures exactly the topic-days still in error: the others
    are settled in the store by then.
    """
    settings = config.settings
    day = date.fromisoformat(chunk.day)
    method = Method.SAMPLING_RECORDS if settings.use_sample_records else Method.METRICS_API
    names = {chunk.cluster_id: [spec.topic for spec in chunk.topics]}
    reads = store.pending_reads(day, names, forced(context))[chunk.cluster_id]
    topics = [spec for spec in chunk.topics if spec.topic in reads]
    started = time.monotonic()
    try:  # settled since the plan (a retry after another run measured them): nothing to read
        rows = _measure(context, chunk, topics, reads, settings, kafka, cloud) if topics else []
    except Exception as error:  # one chunk's failure must not sink the other chunks' rows
        reason = f"cluster {chunk.cluster_id} could not be measured: {_detail(error)}"
        context.log.error(reason)
        rows = [Measurement.failed(spec, day, method, reason) for spec in topics]
    elapsed = time.monotonic() - started
    written = _store_or_fail(store, rows, spec_of={spec.topic: spec for spec in topics}, day=day, method=method)
    _record_topic_days(context, chunk, written, store)
    kept = len(rows) - len(written)
    if kept:
        context.log.info(f"kept {kept} stored topic-day(s) that the new rows would have downgraded")
    records = sum(row.sampled_records for row in rows)
    statuses = pd.Series([str(row.status) for row in rows], dtype=str).value_counts().to_dict()
    context.log.info(f"stored {len(written)} of {len(rows)} topic-days: {statuses}")
    context.add_output_metadata(
        {
            "topics": len(rows),
            "records_read": records,
            "records_per_sec": round(records / elapsed, 1) if elapsed else 0.0,
            "metrics_api_requests": cloud.request_count(),
            "seconds": round(elapsed, 2),
        }
    )
    failed = {f"{row.cluster_id}/{row.topic}": row.reason for row in rows if row.status is Status.ERROR}
    if failed:
        raise dg.Failure(
            f"{len(failed)} of {len(rows)} topics could not be measured: {', '.join(sorted(failed))}. "
            "The other topics were measured and stored; a retry of this step re-measures only these.",
            metadata={"failed_topics": dg.MetadataValue.json(failed)},
        )
    yield dg.Output(statuses)


def _measure(
    context: dg.OpExecutionContext,
    chunk: MeasurementChunk,
    topics: list[TopicSpec],
    reads: dict[str, int],
    settings: Settings,
    kafka: KafkaResource,
    cloud: ConfluentCloudResource,
) -> list[Measurement]:
    """The chunk's topics measured by the configured method: record sampling or the Metrics API."""
    day = date.fromisoformat(chunk.day)
    if not settings.use_sample_records:
        return MetricsDayMeasurer(
            cloud.query_metrics,
            chunk.cluster_id,
            day,
            log=context.log.info,
            peak_bucket_seconds=settings.peak_bucket_seconds,
        ).measure(topics)
    limits = SamplingLimits(
        settings.sampling_batch_size,
        settings.sampling_timeout_seconds,
        settings.sampling_max_consecutive_nulls,
        skew_ms=round(settings.timestamp_skew_seconds * 1000),
        peak_bucket_ms=settings.peak_bucket_seconds * 1000,
        retry_seconds=settings.kafka_retry_timeout_seconds,
    )
    consumer = lambda overrides: kafka.consumer(chunk.cluster_id, overrides)  # noqa: E731
    measurer = DayMeasurer(kafka.admin(chunk.cluster_id), consumer, day, limits, log=context.log.info)
    return measurer.measure(topics, reads)


def _detail(error: Exception) -> str:
    """What went wrong, in the client's or our own words (a bug: its class and message)."""
    if isinstance(error, KafkaException):
        return error.args[0].str()
    if isinstance(error, RecommenderError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _record_topic_days(
    context: dg.OpExecutionContext, chunk: MeasurementChunk, written: list[dict], store: MeasurementStoreResource
) -> None:
    """Each measured topic-day becomes a materialized partition with its own numbers, in one batch
    (`materializations.py`: written one event at a time they cost more than the reading); topics
    settled since the plan, or whose stored row was kept, are re-reported from the store
    (`topic_days.py`). Error rows are never recorded as materialized."""
    measured = [row for row in written if row["status"] != Status.ERROR]
    record_in_batches(
        context,
        [
            dg.AssetMaterialization(
                asset_key="topic_measurements",
                partition=dg.MultiPartitionKey({"date": chunk.day, "topic": topic_key(chunk.cluster_id, row["topic"])}),
                metadata=partition_metadata(row),
            )
            for row in measured
        ],
    )
    reported = {row["topic"] for row in measured}
    unreported = [
        f"{chunk.day}|{topic_key(chunk.cluster_id, s.topic)}" for s in chunk.topics if s.topic not in reported
    ]
    if unreported:
        stored = store.read_measurements(chunk.day, chunk.day)
        ours = stored.loc[stored["cluster_id"] == chunk.cluster_id]
        record_in_batches(context, settled_materializations(ours, unreported))


def _store_or_fail(
    store: MeasurementStoreResource, rows: list[Measurement], spec_of: dict[str, TopicSpec], day: date, method: Method
) -> list[dict]:
    """Stores the chunk's rows. Rows the store refuses (a value it cannot hold) become error rows
    naming why, so a failed chunk always leaves a row per topic; only a store that cannot be
    written at all (StoreError: it says which and what to do) leaves none."""
    try:
        return store.write_measurements(rows)
    except RecommenderError:
        raise
    except Exception as error:  # the rows, not the store: keep what can be said
        reason = f"the measurement could not be stored: {type(error).__name__}: {' '.join(str(error).split())[:300]}"
        failed = [Measurement.failed(spec_of[row.topic], day, method, reason) for row in rows if row.topic in spec_of]
        rows[:] = failed
        return store.write_measurements(failed)


@dg.op(out=dg.Out(dg.Nothing, is_required=False))
def summarize_measurements(context: dg.OpExecutionContext, chunk_statuses: list[dict[str, int]]):
    """The day's tally across chunks, in the run's log (the chunks stored their own rows)."""
    totals: dict[str, int] = {}
    for statuses in chunk_statuses:
        for status, count in statuses.items():
            totals[status] = totals.get(status, 0) + count
    context.log.info(f"{sum(totals.values())} topic-days measured in {len(chunk_statuses)} chunks: {totals}")
    # No output: an output would materialize every partition of the run, settled ones included;
    # each chunk recorded its own topic-days' materializations.
    yield from ()


@dg.graph_asset(
    partitions_def=daily_topic_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="recommender",
    kinds={"kafka", "duckdb"},
)
def topic_measurements(cluster_inventory: pd.DataFrame):
    """What each topic carried on each UTC day: records and bytes in the day, mean record size,
    average and peak (hourly) ingress in bytes/s, per-partition skew, and whether the numbers are
    exact or estimated. Rows live in the measurement store (DuckDB by default).

    In the UI, each topic-day is a partition: "latest materialization" is whichever topic-day
    was stored last, not a summary of the newest day; the Partitions tab shows every day and
    topic. Until `cluster_inventory` has added topics there are no partitions at all, and the
    catalog counts none missing."""
    return summarize_measurements(plan_measurement_chunks(cluster_inventory).map(measure_topic_chunk).collect())
