"""The measurement store: one row per (day, cluster, topic), plus the latest inventory.

An embedded DuckDB file by default (`MEASUREMENT_STORE_PATH`), or PostgreSQL when
`MEASUREMENT_STORE_URL` names one. Both engines run the same code: the same tables, the same
add-missing-columns migration, the same queries, and every write is one transaction that deletes
the rows it replaces and inserts the new ones. A small backend per engine does what differs: how
to connect, the column types, bulk loading, and concurrency.

- DuckDB lets one process write at a time, so each call opens the file briefly and retries while
  another process holds the lock.
- PostgreSQL takes concurrent writers. Replacing rows locks their keys first (transaction-scoped
  advisory locks, taken in a fixed order, before the stored rows are read to be merged), so two
  writers of the same (day, cluster, topic) queue up and the second merges with what the first
  wrote, while writers of other keys go on in parallel; replacing the
  inventory locks its table against other writers (readers are never blocked).

Reads return the same frame from both engines: "date" as ISO strings, integers and booleans as
numpy dtypes, or pandas' nullable ones when the column holds a NULL (as DuckDB returns them).
"""

import contextlib
import logging
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import sqlalchemy as sa

from recommender_pipeline.days import window_days
from recommender_pipeline.errors import StoreError
from recommender_pipeline.measuring import hours
from recommender_pipeline.measuring.measurement import MEASUREMENT_COLUMNS, MEASUREMENT_KEY, Measurement
from recommender_pipeline.resources.settings import SettingsResource
from recommender_pipeline.resources.store.frames import incoming_frame, result_frame
from recommender_pipeline.resources.store.schema import (
    INVENTORY_COLUMNS,
    INVENTORY_KEY,
    PROFILE_COLUMNS,
    PROFILE_KEY,
)
from recommender_pipeline.resources.store.sessions import (
    DuckDBSession,
    PostgresSession,
    Session,
    ensure_tables,
    lock_id,
    postgres_engine,
)

LOCK_WAIT_SECONDS = 60  # how long to wait for another process's hold on the DuckDB file
STORE_LOG = logging.getLogger("recommender_pipeline.store")


class MeasurementStoreResource(dg.ConfigurableResource):
    """Reads and writes measurements in PostgreSQL when `MEASUREMENT_STORE_URL` is set, else in
    the DuckDB file named by `MEASUREMENT_STORE_PATH`. The URL, with its password, stays in the
    settings of the process: it is not part of the resource's config."""

    config: dg.ResourceDependency[SettingsResource]

    @property
    def path(self) -> Path:
        return self.config.settings.measurement_store_path

    @property
    def url(self) -> str | None:
        return self.config.settings.measurement_store_url

    @property
    def engine(self) -> str:
        return "postgresql" if self.url else "duckdb"

    @property
    def location(self) -> str:
        """Where the measurements are, safe to log: the file, or the URL with its password masked."""
        return sa.make_url(self.url).render_as_string(hide_password=True) if self.url else str(self.path)

    def check(self) -> None:
        """Opens the store once: raises StoreError, in one line, if it cannot be used."""
        with self._transaction():
            pass

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A session on a store whose tables are up to date, in a transaction that commits when
        the block ends and rolls back if it raises. An engine's failure becomes a StoreError that
        names the store (its password masked) and what to do."""
        try:
            with self._engine_transaction() as session:
                yield session
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None  # DuckDB took Ctrl-C for its query: give it back
        except RuntimeError as error:
            # DuckDB's scan of a pandas frame reports Ctrl-C as RuntimeError("Query interrupted").
            if "query interrupted" in str(error).lower():
                raise KeyboardInterrupt from None
            raise
        except (duckdb.Error, sa.exc.DBAPIError) as error:
            raise StoreError(f"measurement store {self.location}: {_first_line(error)}; {self._hint(error)}") from None

    def _hint(self, error: Exception) -> str:
        text = str(error).lower()
        if self.url:
            return "check MEASUREMENT_STORE_URL, and that the PostgreSQL server is up and reachable"
        if "lock" in text:
            return f"another process kept the file locked for {LOCK_WAIT_SECONDS} s; retry when it is done"
        if "no space left" in text or "disk is full" in text:
            return f"the disk under {self.path.parent} is full: free space and run again (the stored rows are intact)"
        if "read-only" in text or "permission denied" in text:
            return f"{self.path.parent} is not writable by this process: make it writable or set MEASUREMENT_STORE_PATH"
        return "move the file aside (its rows are lost to this run) or set MEASUREMENT_STORE_PATH to another file"

    @contextlib.contextmanager
    def _engine_transaction(self) -> Iterator[Session]:
        if self.url:
            engine = postgres_engine(self.url)
            with engine.begin() as connection:  # the schema in its own short transaction
                # One process at a time creates or migrates tables (CREATE IF NOT EXISTS races otherwise).
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id("schema", ())})
                ensure_tables(PostgresSession(connection))
            with engine.begin() as connection:
                yield PostgresSession(connection)
            return
        with self._duckdb() as connection:
            session = DuckDBSession(connection)
            ensure_tables(session)
            connection.execute("BEGIN")
            try:
                yield session
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @contextlib.contextmanager
    def _duckdb(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        said = False
        while True:
            try:
                connection = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as error:  # another process holds the write lock
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise
                if not said:  # a wait says what it waits for, at once
                    STORE_LOG.warning(
                        f"measurement store {self.path} is locked by another process: waiting for it, "
                        f"up to {LOCK_WAIT_SECONDS} s"
                    )
                    said = True
                time.sleep(random.uniform(0.1, 0.5))
        try:
            yield connection
        finally:
            connection.close()

    def write_measurements(self, measurements: Sequence[Measurement | dict]) -> list[dict]:
        """Stores rows by (day, cluster, topic), and returns the rows written.

        Never a downgrade, forced re-measure or not: a new capture is merged with the stored row
        hour by hour, each hour kept from the capture that saw it more completely (`hours.merge`),
        and a stored `measured` or `empty` row stays when the new one is `not_measurable` or
        `error`. Re-measuring a day after its records aged out, or through a failing broker,
        never erases what was measured.
        """
        rows = [m.as_row() if isinstance(m, Measurement) else m for m in measurements]
        if not rows:
            return []
        with self._transaction() as session:
            key_columns = {k: MEASUREMENT_COLUMNS[k] for k in MEASUREMENT_KEY}
            keys = incoming_frame({k: [row[k] for row in rows] for k in MEASUREMENT_KEY}, key_columns)
            session.lock_keys("measurements", keys.drop_duplicates())  # before the read that merges
            rows = _merged_with_stored(session, rows)
            stored_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            rows = [{**row, "stored_at": stored_at} for row in rows]
            if rows:
                frame = incoming_frame(
                    {name: [row.get(name) for row in rows] for name in MEASUREMENT_COLUMNS}, MEASUREMENT_COLUMNS
                )
                session.delete_keys("measurements", frame[list(MEASUREMENT_KEY)].drop_duplicates())
                session.insert("measurements", frame)
        return rows

    def pending_reads(
        self, day: date, topics: Mapping[str, Iterable[str]], force: bool = False
    ) -> dict[str, dict[str, int]]:
        """Per cluster of `topics` ({cluster: topic names}), the topics of `day` still to capture,
        each with where its read starts (`hours.pending_reads`): one read of the day's rows."""
        stored: dict[str, list[dict]] = {}
        for row in self.read_measurements(day.isoformat(), day.isoformat()).to_dict("records"):
            stored.setdefault(row["cluster_id"], []).append(row)
        return {
            cluster_id: hours.pending_reads(stored.get(cluster_id, []), day, names, force)
            for cluster_id, names in topics.items()
        }

    def days_to_capture(self, end_day: date, days_back: int, force: bool = False) -> list[date]:
        """Days among the `days_back` ending on `end_day` with an inventoried topic-day still to
        capture: not yet measured, open, in error, or with hours left to read; every day with
        `force`."""
        inventory = self.read_inventory()
        topics = {cluster_id: list(names) for cluster_id, names in inventory.groupby("cluster_id")["topic"]}
        days = window_days(end_day, days_back)
        return [day for day in days if any(self.pending_reads(day, topics, force).values())]

    def recent_reads(self, before: str | None, days: int = 7) -> dict[str, int]:
        """Per topic key (`cluster/topic`), the records its latest measured day within `days` days
        before `before` read: what measuring it costs, for planning chunks by their work."""
        if before is None:
            return {}
        last = date.fromisoformat(str(before)[:10])
        with self._transaction() as session:
            _, rows = session.query(
                'SELECT cluster_id, topic, sampled_records FROM measurements WHERE "date" BETWEEN '
                "CAST(:first_day AS DATE) AND CAST(:last_day AS DATE) AND status IN ('measured', 'empty') "
                'ORDER BY "date"',
                {"first_day": str(last - timedelta(days=days)), "last_day": str(last)},
            )
        return {f"{cluster_id}/{topic}": int(records or 0) for cluster_id, topic, records in rows}

    def last_stored(self, first_day: str, last_day: str) -> dict[str, str]:
        """Per day from `first_day` to `last_day` (ISO dates), when a row of it was last stored."""
        with self._transaction() as session:
            _, rows = session.query(
                'SELECT "date", MAX(stored_at) FROM measurements '
                'WHERE "date" BETWEEN CAST(:first_day AS DATE) AND CAST(:last_day AS DATE) GROUP BY "date"',
                {"first_day": str(first_day), "last_day": str(last_day)},
            )
        return {str(day)[:10]: stored for day, stored in rows if stored}

    def read_measurements(self, first_day: str, last_day: str) -> pd.DataFrame:
        """The rows of the days from `first_day` to `last_day` (ISO dates, both included)."""
        return self._read_days("measurements", MEASUREMENT_COLUMNS, first_day, last_day)

    def _read_days(self, table: str, declared: dict[str, str], first_day: str, last_day: str) -> pd.DataFrame:
        with self._transaction() as session:
            order = ", ".join(f"{k}{session.binary_order}" for k in ("cluster_id", "topic")) + ', "date"'
            columns, rows = session.query(
                f'SELECT * FROM {table} WHERE "date" BETWEEN CAST(:first_day AS DATE) AND CAST(:last_day AS DATE) '
                f"ORDER BY {order}",
                {"first_day": str(first_day), "last_day": str(last_day)},
            )
        return result_frame(columns, rows, declared)

    def replace_inventory(self, inventory: pd.DataFrame, keep_clusters: Sequence[str] = ()) -> None:
        """Replaces the inventory with `inventory`, except the rows of `keep_clusters` (clusters
        that could not be listed this time), which stay as last known: their topics are then
        measured as `error`, with the reason, instead of vanishing from the reports."""
        given = inventory.reindex(columns=list(INVENTORY_COLUMNS))
        frame = incoming_frame({name: given[name].tolist() for name in INVENTORY_COLUMNS}, INVENTORY_COLUMNS)
        frame = frame[~frame["cluster_id"].isin(list(keep_clusters))]
        kept = {f"k{index}": cluster for index, cluster in enumerate(keep_clusters)}
        with self._transaction() as session:
            session.lock_table("inventory")
            if kept:
                session.execute(
                    f"DELETE FROM inventory WHERE cluster_id NOT IN ({', '.join(':' + k for k in kept)})", kept
                )
            else:
                session.execute("DELETE FROM inventory")
            session.insert("inventory", frame)

    def write_profiles(self, rows: Sequence[dict]) -> None:
        """Stores topic profiles (`consumers`, `keys`), each replacing the one of its (day, cluster, topic)."""
        if not rows:
            return
        frame = incoming_frame({name: [row.get(name) for row in rows] for name in PROFILE_COLUMNS}, PROFILE_COLUMNS)
        keys = frame[list(PROFILE_KEY)].drop_duplicates()
        with self._transaction() as session:
            session.lock_keys("topic_profiles", keys)
            session.delete_keys("topic_profiles", keys)
            session.insert("topic_profiles", frame)

    def read_profiles(self, first_day: str, last_day: str) -> pd.DataFrame:
        """The topic profiles of the days from `first_day` to `last_day` (ISO dates, both included)."""
        return self._read_days("topic_profiles", PROFILE_COLUMNS, first_day, last_day)

    def read_inventory(self) -> pd.DataFrame:
        with self._transaction() as session:
            order = ", ".join(f"{k}{session.binary_order}" for k in INVENTORY_KEY)
            columns, rows = session.query(f"SELECT * FROM inventory ORDER BY {order}")
        return result_frame(columns, rows, INVENTORY_COLUMNS)


def _merged_with_stored(session: Session, rows: list[dict]) -> list[dict]:
    """The rows to write: each incoming row merged with the stored one of its key (`hours.merge`),
    leaving out those that would change nothing or downgrade what is stored."""
    days = sorted({str(pd.Timestamp(row["date"]).date()) for row in rows})
    columns, stored = session.query(
        'SELECT * FROM measurements WHERE "date" BETWEEN CAST(:first_day AS DATE) AND CAST(:last_day AS DATE)',
        {"first_day": days[0], "last_day": days[-1]},
    )
    kept = {}
    for values in stored:
        row = dict(zip(columns, values, strict=True))
        kept[(str(row["date"]), row["cluster_id"], row["topic"])] = row
    merged = []
    for row in rows:
        key = (str(pd.Timestamp(row["date"]).date()), row["cluster_id"], row["topic"])
        result = hours.merge(kept.get(key), row)
        if result is not None:
            merged.append(result)
    return merged


def _first_line(error: Exception) -> str:
    """An engine error's first line, without SQLAlchemy's appended SQL and links."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
