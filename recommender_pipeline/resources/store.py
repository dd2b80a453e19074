"""The measurement store: one row per (day, cluster, topic), plus the latest inventory.

An embedded DuckDB file by default. DuckDB lets one process write at a time, so each call opens
the file briefly and retries while another process holds the lock; the measurement graph keeps
a single writer step per run.
"""

import contextlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from recommender_pipeline.resources.config import ConfigResource

MEASUREMENT_COLUMNS = {
    "date": "DATE",
    "cluster_id": "VARCHAR",
    "topic": "VARCHAR",
    "method": "VARCHAR",
    "status": "VARCHAR",
    "reason": "VARCHAR",
    "partitions": "INTEGER",
    "is_compacted": "BOOLEAN",
    "retention_ms": "BIGINT",
    "window_start": "VARCHAR",
    "window_end": "VARCHAR",
    "window_seconds": "DOUBLE",
    "day_closed": "BOOLEAN",
    "exact": "BOOLEAN",
    "records": "BIGINT",
    "bytes": "BIGINT",
    "offsets_in_window": "BIGINT",
    "sampled_records": "BIGINT",
    "retained_records": "BIGINT",
    "mean_record_bytes": "DOUBLE",
    "avg_ingress_bytes_per_sec": "DOUBLE",
    "peak_ingress_bytes_per_sec": "DOUBLE",
    "peak_bucket_start": "VARCHAR",
    "bucket_seconds": "INTEGER",
    "partition_bytes": "VARCHAR",
    "skew": "DOUBLE",
    "egress_bytes": "BIGINT",
    "hot_partition_ingress": "BOOLEAN",
    "hot_partition_egress": "BOOLEAN",
    "measured_at": "VARCHAR",
    "duration_seconds": "DOUBLE",
}
INVENTORY_COLUMNS = {
    "cluster_id": "VARCHAR",
    "topic": "VARCHAR",
    "partitions": "INTEGER",
    "replication_factor": "INTEGER",
    "cleanup_policy": "VARCHAR",
    "retention_ms": "BIGINT",
    "is_internal": "BOOLEAN",
    "is_compacted": "BOOLEAN",
    "inventoried_at": "VARCHAR",
}
LOCK_WAIT_SECONDS = 60


def _create(table: str, columns: dict[str, str], key: str) -> str:
    body = ", ".join(f'"{name}" {kind}' for name, kind in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {table} ({body}, PRIMARY KEY ({key}))"


class MeasurementStoreResource(dg.ConfigurableResource):
    """Reads and writes measurements in the DuckDB file named by `MEASUREMENT_STORE_PATH`."""

    config: dg.ResourceDependency[ConfigResource]

    @property
    def path(self) -> Path:
        return self.config.settings.measurement_store_path

    @contextlib.contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                connection = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as error:  # another process holds the write lock
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.1, 0.5))
        try:
            connection.execute(_create("measurements", MEASUREMENT_COLUMNS, "date, cluster_id, topic"))
            for name, kind in MEASUREMENT_COLUMNS.items():  # a store from an older version gains new columns
                connection.execute(f'ALTER TABLE measurements ADD COLUMN IF NOT EXISTS "{name}" {kind}')
            connection.execute(_create("inventory", INVENTORY_COLUMNS, "cluster_id, topic"))
            yield connection
        finally:
            connection.close()

    def write_measurements(self, rows: list[dict]) -> None:
        """Replaces the stored rows of the same (day, cluster, topic)."""
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=list(MEASUREMENT_COLUMNS))
        with self._connect() as connection:
            connection.register("incoming", frame)
            connection.execute("BEGIN")
            connection.execute(
                "DELETE FROM measurements m USING incoming i "
                "WHERE m.date = CAST(i.date AS DATE) AND m.cluster_id = i.cluster_id AND m.topic = i.topic"
            )
            connection.execute("INSERT INTO measurements BY NAME SELECT * FROM incoming")
            connection.execute("COMMIT")

    def read_measurements(self, first_day: str, last_day: str) -> pd.DataFrame:
        with self._connect() as connection:
            frame = connection.execute(
                "SELECT * FROM measurements WHERE date BETWEEN ? AND ? ORDER BY cluster_id, topic, date",
                [first_day, last_day],
            ).df()
        frame["date"] = frame["date"].astype(str)
        return frame

    def replace_inventory(self, inventory: pd.DataFrame) -> None:
        frame = inventory.reindex(columns=list(INVENTORY_COLUMNS))
        with self._connect() as connection:
            connection.register("incoming", frame)
            connection.execute("BEGIN")
            connection.execute("DELETE FROM inventory")
            connection.execute("INSERT INTO inventory BY NAME SELECT * FROM incoming")
            connection.execute("COMMIT")

    def read_inventory(self) -> pd.DataFrame:
        with self._connect() as connection:
            return connection.execute("SELECT * FROM inventory ORDER BY cluster_id, topic").df()
