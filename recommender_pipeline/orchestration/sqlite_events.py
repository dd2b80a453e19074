"""The embedded tier's event log: Dagster's SQLite storage, with a batch of materializations
written in one transaction per shard instead of one connection and commit per event.

Dagster's SQLite storage writes a batch event by event: for each, a new connection, an insert and
a commit in the run's shard, then again in the index shard (15-45 ms an event here). A day of
2,000 topics is 2,000 materializations, minutes of a run's time. Like dagster-postgres, this
storage inserts a batch made only of materializations in one statement per shard and updates the
asset's latest materialization once, with the batch's last event; any other batch is Dagster's.
`deploy/dagster.yaml` and the command's instance name it; the rest of the instance is Dagster's
default SQLite storage, in the same files, so an instance can switch to it and back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import dagster as dg
from dagster._config import Field, StringSource
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable

from recommender_pipeline.errors import ConfigurationError


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage`, writing a batch of materializations in one transaction per shard."""

    def __init__(self, base_dir: str | None = None, inst_data=None):
        # Dagster's default SQLite event log folder under DAGSTER_HOME, wherever DAGSTER_HOME now
        # is (a moved home keeps its history); `base_dir` serves a process that opens the instance
        # by its path without DAGSTER_HOME set (`DagsterInstance.from_config`).
        home = os.environ.get("DAGSTER_HOME")
        if not home and not base_dir:
            raise ConfigurationError("BatchingSqliteEventLogStorage needs DAGSTER_HOME set, or its base_dir")
        super().__init__(os.path.join(home, "history", "runs") if home else base_dir, inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchingSqliteEventLogStorage:
        return cls(base_dir=config_value.get("base_dir"), inst_data=inst_data)

    def store_event_batch(self, events: Sequence) -> None:
        materializations = [
            event
            for event in events
            if event.is_dagster_event
            and event.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
            and not event.get_dagster_event().is_asset_failed_to_materialize
        ]
        runs = {event.run_id for event in events}
        if len(materializations) != len(events) or len(runs) != 1 or not events:
            return super().store_event_batch(events)
        insert = self.prepare_insert_event_batch(events)
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(insert)
        with self.index_transaction() as conn:
            ids = [row[0] for row in conn.execute(insert.returning(SqlEventLogStorageTable.c.id)).fetchall()]
            self._store_asset_event_tags(conn, events, ids)
            self._store_asset_event(conn, events[-1], ids[-1])
