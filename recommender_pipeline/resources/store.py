"""The measurement store: one row per (day, cluster, topic), plus the latest inventory.

An embedded DuckDB file by default (`MEASUREMENT_STORE_PATH`), or PostgreSQL when
`MEASUREMENT_STORE_URL` names one. Both engines run the same code: the same tables, the same
add-missing-columns migration, the same queries, and every write is one transaction that deletes
the rows it replaces and inserts the new ones. A small backend per engine does what differs: how
to connect, the column types, bulk loading, and concurrency.

- DuckDB lets one process write at a time, so each call opens the file briefly and retries while
  another process holds the lock.
- PostgreSQL takes concurrent writers. Replacing rows locks their keys first (transaction-scoped
  advisory locks, taken in a fixed order), so two writers of the same (day, cluster, topic) queue
  up and the last one wins, while writers of other keys go on in parallel; replacing the
  inventory locks its table against other writers (readers are never blocked).

Reads return the same frame from both engines: "date" as ISO strings, integers and booleans as
numpy dtypes, or pandas' nullable ones when the column holds a NULL (as DuckDB returns them).
"""

import contextlib
import functools
import hashlib
import random
import re
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from recommender_pipeline.measuring import hours
from recommender_pipeline.measuring.measurement import MEASUREMENT_COLUMNS, MEASUREMENT_KEY, Measurement
from recommender_pipeline.measuring.windows import window_days
from recommender_pipeline.resources.config import ConfigResource

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
INVENTORY_KEY = ("cluster_id", "topic")
TABLES = {"measurements": (MEASUREMENT_COLUMNS, MEASUREMENT_KEY), "inventory": (INVENTORY_COLUMNS, INVENTORY_KEY)}
LOCK_WAIT_SECONDS = 60
POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}
# numpy dtype of a column without NULLs, pandas' nullable one with (as DuckDB's `df()` returns them).
READ_DTYPES = {"INTEGER": ("int32", "Int32"), "BIGINT": ("int64", "Int64"), "BOOLEAN": ("bool", "boolean")}


class _Session:
    """One connection in one transaction, as the store's shared code sees it. SQL takes `:name`
    parameters and quotes column names ("date" is a keyword)."""

    types: dict[str, str] = {}  # the engine's name for a declared column type, where it differs
    binary_order = ""  # appended to text columns in ORDER BY, so both engines sort by code point

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple]]:
        """The result's column names and rows of Python values."""
        raise NotImplementedError

    def delete_keys(self, table: str, keys: pd.DataFrame) -> None:
        """Deletes the rows whose key columns equal one of `keys`' rows."""
        raise NotImplementedError

    def insert(self, table: str, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def lock_table(self, table: str) -> None:
        """Keeps other writers of `table` out until this transaction ends (readers go on)."""

    def lock_keys(self, table: str, keys: pd.DataFrame) -> None:
        """Makes other writers of these keys wait until this transaction ends, so a row read to
        be merged cannot change before the merged row replaces it."""


class _DuckDBSession(_Session):
    """The connection is the file's only writer: no other locks are needed."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.connection.execute(_dollar_parameters(sql), params or {})

    def query(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple]]:
        cursor = self.connection.execute(_dollar_parameters(sql), params or {})
        return [column[0] for column in cursor.description], cursor.fetchall()

    def delete_keys(self, table: str, keys: pd.DataFrame) -> None:
        columns, _ = TABLES[table]
        match = " AND ".join(f't."{k}" = CAST(i."{k}" AS {columns[k]})' for k in keys.columns)
        self.connection.register("incoming_keys", keys)
        try:
            self.connection.execute(f"DELETE FROM {table} t USING incoming_keys i WHERE {match}")
        finally:
            self.connection.unregister("incoming_keys")

    def insert(self, table: str, frame: pd.DataFrame) -> None:
        self.connection.register("incoming", frame)
        try:
            self.connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
        finally:
            self.connection.unregister("incoming")


class _PostgresSession(_Session):
    types = {"DOUBLE": "DOUBLE PRECISION"}
    binary_order = ' COLLATE "C"'

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.connection.execute(sa.text(sql), params or {})

    def query(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple]]:
        result = self.connection.execute(sa.text(sql), params or {})
        return list(result.keys()), [tuple(row) for row in result]

    def lock_keys(self, table: str, keys: pd.DataFrame) -> None:
        # Writers of the same key queue up here, so a DELETE never misses a row that another
        # transaction inserted after it began (which would make our INSERT hit the primary key).
        # Sorted, so two writers of overlapping keys cannot deadlock; taking them again in the
        # same transaction is a no-op.
        records = keys.astype(object).to_dict("records")
        lock_ids = sorted({_lock_id(table, tuple(str(v) for v in record.values())) for record in records})
        self.connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), [{"id": i} for i in lock_ids])

    def delete_keys(self, table: str, keys: pd.DataFrame) -> None:
        columns, _ = TABLES[table]
        records = keys.astype(object).to_dict("records")
        self.lock_keys(table, keys)
        match = " AND ".join(f'"{k}" = CAST(:{k} AS {self.types.get(columns[k], columns[k])})' for k in keys.columns)
        self.connection.execute(sa.text(f"DELETE FROM {table} WHERE {match}"), records)

    def insert(self, table: str, frame: pd.DataFrame) -> None:
        # Typed by the declared columns, not by the frame's dtypes (an all-NULL column has none).
        if len(frame):
            self.connection.execute(_sqlalchemy_table(table).insert(), _records(frame, TABLES[table][0]))

    def lock_table(self, table: str) -> None:
        self.connection.execute(sa.text(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))


class MeasurementStoreResource(dg.ConfigurableResource):
    """Reads and writes measurements in PostgreSQL when `MEASUREMENT_STORE_URL` is set, else in
    the DuckDB file named by `MEASUREMENT_STORE_PATH`. The URL, with its password, stays in the
    settings of the process: it is not part of the resource's config."""

    config: dg.ResourceDependency[ConfigResource]

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

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Session]:
        """A session on a store whose tables are up to date, in a transaction that commits when
        the block ends and rolls back if it raises."""
        if self.url:
            engine = _postgres_engine(self.url)
            with engine.begin() as connection:  # the schema in its own short transaction
                # One process at a time creates or migrates tables (CREATE IF NOT EXISTS races otherwise).
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _lock_id("schema", ())})
                _ensure_tables(_PostgresSession(connection))
            with engine.begin() as connection:
                yield _PostgresSession(connection)
            return
        with self._duckdb() as connection:
            session = _DuckDBSession(connection)
            _ensure_tables(session)
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
        while True:
            try:
                connection = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as error:  # another process holds the write lock
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.1, 0.5))
        try:
            yield connection
        finally:
            connection.close()

    def write_measurements(self, measurements: Sequence[Measurement | dict], force: bool = False) -> list[dict]:
        """Stores rows by (day, cluster, topic), and returns the rows written.

        Never a downgrade (unless `force`, which replaces): a new capture is merged with the
        stored row hour by hour, each hour kept from the capture that saw it more completely
        (`hours.merge`), and a stored `measured` or `empty` row stays when the new one is
        `not_measurable` or `error`. Re-measuring a day after its records aged out, or through a
        failing broker, never erases what was measured.
        """
        rows = [m.as_row() if isinstance(m, Measurement) else m for m in measurements]
        if not rows:
            return []
        with self._transaction() as session:
            if not force:
                key_columns = {k: MEASUREMENT_COLUMNS[k] for k in MEASUREMENT_KEY}
                keys = _incoming({k: [row[k] for row in rows] for k in MEASUREMENT_KEY}, key_columns)
                session.lock_keys("measurements", keys.drop_duplicates())
                rows = _merged_with_stored(session, rows)
            if rows:
                frame = _incoming(
                    {name: [row.get(name) for row in rows] for name in MEASUREMENT_COLUMNS}, MEASUREMENT_COLUMNS
                )
                session.delete_keys("measurements", frame[list(MEASUREMENT_KEY)].drop_duplicates())
                session.insert("measurements", frame)
        return rows

    def days_to_capture(self, end_day: date, days_back: int, force: bool = False) -> list[date]:
        """Days among the `days_back` ending on `end_day` with an inventoried topic-day still to
        capture: not yet measured, open, in error, or with hours left to read
        (`hours.pending_reads`); every day with `force`."""
        inventory = self.read_inventory()
        days = window_days(end_day, days_back)
        if not days:
            return []
        stored = self.read_measurements(days[0].isoformat(), days[-1].isoformat()).to_dict("records")
        todo = []
        for day in days:
            for cluster_id, topics in inventory.groupby("cluster_id")["topic"]:
                rows = [row for row in stored if row["date"] == day.isoformat() and row["cluster_id"] == cluster_id]
                if hours.pending_reads(rows, day, list(topics), force):
                    todo.append(day)
                    break
        return todo

    def read_measurements(self, first_day: str, last_day: str) -> pd.DataFrame:
        """The rows of the days from `first_day` to `last_day` (ISO dates, both included)."""
        with self._transaction() as session:
            order = ", ".join(f"{k}{session.binary_order}" for k in ("cluster_id", "topic")) + ', "date"'
            columns, rows = session.query(
                'SELECT * FROM measurements WHERE "date" BETWEEN CAST(:first_day AS DATE) AND CAST(:last_day AS DATE) '
                f"ORDER BY {order}",
                {"first_day": str(first_day), "last_day": str(last_day)},
            )
        return _frame(columns, rows, MEASUREMENT_COLUMNS)

    def replace_inventory(self, inventory: pd.DataFrame) -> None:
        given = inventory.reindex(columns=list(INVENTORY_COLUMNS))
        frame = _incoming({name: given[name].tolist() for name in INVENTORY_COLUMNS}, INVENTORY_COLUMNS)
        with self._transaction() as session:
            session.lock_table("inventory")
            session.execute("DELETE FROM inventory")
            session.insert("inventory", frame)

    def read_inventory(self) -> pd.DataFrame:
        with self._transaction() as session:
            order = ", ".join(f"{k}{session.binary_order}" for k in INVENTORY_KEY)
            columns, rows = session.query(f"SELECT * FROM inventory ORDER BY {order}")
        return _frame(columns, rows, INVENTORY_COLUMNS)


def _merged_with_stored(session: _Session, rows: list[dict]) -> list[dict]:
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


def _ensure_tables(session: _Session) -> None:
    """Creates the tables, and adds the columns that a store from an older version lacks."""
    for table, (columns, key) in TABLES.items():
        body = ", ".join(f'"{name}" {session.types.get(kind, kind)}' for name, kind in columns.items())
        session.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body}, PRIMARY KEY ({', '.join(key)}))")
        _, rows = session.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = current_schema() AND table_name = :table",
            {"table": table},
        )
        present = {row[0] for row in rows}
        for name, kind in columns.items():
            if name not in present:
                session.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {session.types.get(kind, kind)}')


def _incoming(columns: dict[str, list], declared: dict[str, str]) -> pd.DataFrame:
    """Values to write, typed by their declared columns: integers and booleans as pandas'
    nullable dtypes, so that big integers next to NULLs stay exact (a plain frame would make such
    a column float), and dates as ISO strings. A column that does not convert is left as it is,
    to the engine's own casts."""
    data: dict[str, Any] = {}
    for name, kind in declared.items():
        values = columns[name]
        data[name] = values
        try:
            if kind == "DATE":
                data[name] = [None if _is_null(v) else pd.Timestamp(v).date().isoformat() for v in values]
            elif kind in READ_DTYPES:
                data[name] = pd.array(values, dtype=READ_DTYPES[kind][1])
        except (TypeError, ValueError):
            pass
    return pd.DataFrame(data, columns=list(declared))


def _is_null(value: Any) -> bool:
    return value is None or (not isinstance(value, str | bytes) and bool(pd.isna(value)))


def _frame(columns: list[str], rows: list[tuple], declared: dict[str, str]) -> pd.DataFrame:
    """A query's rows as the frame DuckDB's `df()` makes of them, for either engine."""
    data: dict[str, Any] = {}
    for index, name in enumerate(columns):
        values = [row[index] for row in rows]
        kind = declared.get(name)
        has_null = any(v is None for v in values)
        if kind == "DATE":
            data[name] = pd.Series([str(v) for v in values], dtype=str)
        elif kind in READ_DTYPES:
            numpy_dtype, nullable_dtype = READ_DTYPES[kind]
            data[name] = pd.array(values, dtype=nullable_dtype) if has_null else np.array(values, dtype=numpy_dtype)
        elif kind == "DOUBLE":
            data[name] = np.array([np.nan if v is None else v for v in values], dtype="float64")
        elif kind == "VARCHAR" and values and not all(v is None for v in values):
            data[name] = pd.Series(values, dtype=str)
        else:
            data[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data, columns=columns)


def _records(frame: pd.DataFrame, declared: dict[str, str]) -> list[dict[str, Any]]:
    """A frame's rows as plain Python values for a driver: NULL as None, dates as dates."""
    names = list(frame.columns)
    dates = {name for name in names if declared.get(name) == "DATE"}

    def plain(name: str, value: Any) -> Any:
        if _is_null(value):
            return None
        if name in dates:
            return pd.Timestamp(value).date()
        return value.item() if isinstance(value, np.generic) else value

    return [
        {name: plain(name, value) for name, value in zip(names, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


@functools.cache
def _sqlalchemy_table(table: str) -> sa.Table:
    types = {
        "VARCHAR": sa.String,
        "INTEGER": sa.Integer,
        "BIGINT": sa.BigInteger,
        "DOUBLE": sa.Double,
        "BOOLEAN": sa.Boolean,
        "DATE": sa.Date,
    }
    columns, _ = TABLES[table]
    return sa.Table(table, sa.MetaData(), *(sa.Column(name, types[kind]()) for name, kind in columns.items()))


def _dollar_parameters(sql: str) -> str:
    """`:name` parameters as DuckDB's `$name`."""
    return re.sub(r"(?<![:\w]):(\w+)", r"$\1", sql)


def _lock_id(table: str, key: Sequence[str]) -> int:
    """A signed 64-bit advisory lock id for a table's key."""
    digest = hashlib.blake2b("\x1f".join(("recommender_pipeline", table, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _postgres_url(url: str) -> sa.URL:
    """The configured URL with psycopg (v3) as the driver, whichever PostgreSQL scheme it names."""
    return sa.make_url(url).set(drivername="postgresql+psycopg")


@functools.cache
def _postgres_engine(url: str) -> sa.Engine:
    """One engine per URL and process. No pool: a call opens its own connection, and a forked
    process never shares a socket with its parent."""
    parsed = _postgres_url(url)
    defaults = {"connect_timeout": 10, "application_name": "recommender-pipeline"}
    connect_args = {k: v for k, v in defaults.items() if k not in parsed.query}
    return sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
