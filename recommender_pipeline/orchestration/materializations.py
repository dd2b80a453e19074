"""Recording a chunk's topic-days as materialized partitions in one batch instead of one event
each: what kept a day of many topics waiting on Dagster rather than on Kafka.

Dagster writes an event with batch metadata (`DagsterEventBatchMetadata`) into a buffer and hands
the whole batch to the event log storage at its end, when `DAGSTER_EVENT_BATCH_SIZE` is set. Its
PostgreSQL storage bulk-inserts a batch of materializations (700-1,000 events/s measured, against
16-35 written one at a time); the embedded tier's SQLite storage writes a batch event by event,
which `sqlite_events.BatchingSqliteEventLogStorage` turns into one transaction per shard. An op
cannot attach batch metadata to the events it yields, so the chunk logs them through its step's
log manager as Dagster itself does for a partitioned output (`execute_step`): a non-public call,
pinned by `test_scale.py` on both storages.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, generate_event_batch_id

# Events buffered before a write: a chunk's topic-days go in one batch up to this many.
BATCH_SIZE = 10_000


def record_in_batches(context: dg.OpExecutionContext, materializations: Sequence[dg.AssetMaterialization]) -> None:
    """Logs `materializations` as one batch (or batches of BATCH_SIZE): each keeps its own
    partition and metadata, and the storage writes the batch at once."""
    # The instance reads this per event; set in the step's process, it reaches only what the
    # step logs with batch metadata (Dagster's own planned events carry none here).
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", str(BATCH_SIZE))
    step = context.get_step_execution_context()
    batch_id = generate_event_batch_id()
    for index, materialization in enumerate(materializations):
        is_end = index == len(materializations) - 1 or (index + 1) % BATCH_SIZE == 0
        DagsterEvent.asset_materialization(step, materialization, DagsterEventBatchMetadata(batch_id, is_end))
        if is_end:
            batch_id = generate_event_batch_id()
