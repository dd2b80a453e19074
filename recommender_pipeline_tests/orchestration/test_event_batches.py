"""Topic-days recorded as one batch of materializations (`orchestration/materializations.py`),
on both instance storages. The batch goes through a non-public Dagster call (the step's log
manager with `DagsterEventBatchMetadata`); these tests fail when a Dagster upgrade stops handing
the storage one batch, or loses a partition or its metadata on the way."""

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_postgres import PostgresEventLogStorage

from recommender_pipeline.command.instance import instance_yaml
from recommender_pipeline.orchestration.materializations import record_in_batches
from recommender_pipeline.orchestration.sqlite_events import BatchingSqliteEventLogStorage
from recommender_pipeline_testing.instances import postgres_dagster_instance

TOPIC_DAYS = 500
ASSET = dg.AssetKey("batched_topic_days")


@dg.op
def record_topic_days(context: dg.OpExecutionContext) -> None:
    record_in_batches(
        context,
        [
            dg.AssetMaterialization(ASSET, partition=f"2026-03-01|local/t{i:04d}", metadata={"records": i})
            for i in range(TOPIC_DAYS)
        ],
    )


@dg.job
def batch_job() -> None:
    record_topic_days()


def _record(instance: dg.DagsterInstance, storage_class: type, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Runs the job; returns the size of each batch the storage was handed (materializations only)."""
    batches: list[int] = []
    store = storage_class.store_event_batch

    def spy(self, events):
        kinds = {event.dagster_event_type for event in events}
        if kinds == {dg.DagsterEventType.ASSET_MATERIALIZATION}:
            batches.append(len(events))
        return store(self, events)

    monkeypatch.setattr(storage_class, "store_event_batch", spy)
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)  # set by the op itself
    started = time.perf_counter()
    assert batch_job.execute_in_process(instance=instance).success
    seconds = time.perf_counter() - started
    print(f"{type(instance.event_log_storage).__name__}: {TOPIC_DAYS} topic-days in {seconds:.2f} s")
    return batches


def _assert_all_recorded(instance: dg.DagsterInstance) -> None:
    keys = {f"2026-03-01|local/t{i:04d}" for i in range(TOPIC_DAYS)}
    assert instance.get_materialized_partitions(ASSET) == keys
    records = instance.fetch_materializations(ASSET, limit=TOPIC_DAYS).records
    assert {r.partition_key: r.asset_materialization.metadata["records"].value for r in records} == {
        f"2026-03-01|local/t{i:04d}": i for i in range(TOPIC_DAYS)
    }
    latest = instance.get_latest_materialization_event(ASSET)
    assert latest is not None and latest.asset_materialization.partition == f"2026-03-01|local/t{TOPIC_DAYS - 1:04d}"


def test_a_batch_is_one_write_on_the_embedded_sqlite_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # opened by its path alone, as tools do
    (tmp_path / "dagster.yaml").write_text(instance_yaml(tmp_path))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        assert _record(instance, BatchingSqliteEventLogStorage, monkeypatch) == [TOPIC_DAYS]
        _assert_all_recorded(instance)


@pytest.fixture
def postgres_instance(postgres_url: str) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance on PostgreSQL, in a schema of its own (dropped after the test)."""
    with postgres_dagster_instance(postgres_url) as instance:
        yield instance


def test_a_batch_is_one_bulk_insert_on_postgresql(postgres_instance: dg.DagsterInstance, monkeypatch):
    assert isinstance(postgres_instance.event_log_storage, PostgresEventLogStorage)
    assert _record(postgres_instance, PostgresEventLogStorage, monkeypatch) == [TOPIC_DAYS]
    _assert_all_recorded(postgres_instance)
