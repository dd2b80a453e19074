"""One connection in one transaction, per engine: what differs between DuckDB and PostgreSQL
(connecting, column types, bulk loading, locking); the shared SQL lives in `resource.py`."""

import contextlib
import functools
import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from recommender_pipeline.resources.store.frames import driver_records
from recommender_pipeline.resources.store.schema import TABLES


class Session:
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
        """Deletes the rows whose key columns equal one of `keys`' rows (locked by `lock_keys` first)."""
        raise NotImplementedError

    def insert(self, table: str, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def lock_table(self, table: str) -> None:
        """Keeps other writers of `table` out until this transaction ends (readers go on)."""

    def lock_keys(self, table: str, keys: pd.DataFrame) -> None:
        """Makes other writers of these keys wait until this transaction ends, so a row read to
        be merged cannot change before the merged row replaces it."""


class DuckDBSession(Session):
    """The connection is the file's only writer: no other locks are needed."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self.connection.execute(dollar_parameters(sql), params or {})

    def query(self, sql: str, params: dict[str, Any] | None = None) -> tuple[list[str], list[tuple]]:
        cursor = self.connection.execute(dollar_parameters(sql), params or {})
        return [column[0] for column in cursor.description], cursor.fetchall()

    def delete_keys(self, table: str, keys: pd.DataFrame) -> None:
        columns, _ = TABLES[table]
        match = " AND ".join(f't."{k}" = CAST(i."{k}" AS {columns[k]})' for k in keys.columns)
        with self._registered("incoming_keys", keys):
            self.connection.execute(f"DELETE FROM {table} t USING incoming_keys i WHERE {match}")

    def insert(self, table: str, frame: pd.DataFrame) -> None:
        with self._registered("incoming", frame):
            self.connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")

    @contextlib.contextmanager
    def _registered(self, name: str, frame: pd.DataFrame) -> Iterator[None]:
        """`frame` as a view for one statement. After a failed statement the transaction is
        aborted and unregistering fails too: that second error must not hide the first."""
        self.connection.register(name, frame)
        try:
            yield
        except Exception:
            with contextlib.suppress(duckdb.Error):
                self.connection.unregister(name)
            raise
        self.connection.unregister(name)


class PostgresSession(Session):
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
        # Sorted, so two writers of overlapping keys cannot deadlock.
        records = keys.astype(object).to_dict("records")
        lock_ids = sorted({lock_id(table, tuple(str(v) for v in record.values())) for record in records})
        self.connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), [{"id": i} for i in lock_ids])

    def delete_keys(self, table: str, keys: pd.DataFrame) -> None:
        columns, _ = TABLES[table]
        records = keys.astype(object).to_dict("records")
        match = " AND ".join(f'"{k}" = CAST(:{k} AS {self.types.get(columns[k], columns[k])})' for k in keys.columns)
        self.connection.execute(sa.text(f"DELETE FROM {table} WHERE {match}"), records)

    def insert(self, table: str, frame: pd.DataFrame) -> None:
        # Typed by the declared columns, not by the frame's dtypes (an all-NULL column has none).
        if len(frame):
            self.connection.execute(sqlalchemy_table(table).insert(), driver_records(frame, TABLES[table][0]))

    def lock_table(self, table: str) -> None:
        self.connection.execute(sa.text(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))


@functools.cache
def sqlalchemy_table(table: str) -> sa.Table:
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


def dollar_parameters(sql: str) -> str:
    """`:name` parameters as DuckDB's `$name`."""
    return re.sub(r"(?<![:\w]):(\w+)", r"$\1", sql)


def lock_id(table: str, key: Sequence[str]) -> int:
    """A signed 64-bit advisory lock id for a table's key."""
    digest = hashlib.blake2b("\x1f".join(("recommender_pipeline", table, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def postgres_url(url: str) -> sa.URL:
    """The configured URL with psycopg (v3) as the driver, whichever PostgreSQL scheme it names."""
    return sa.make_url(url).set(drivername="postgresql+psycopg")


@functools.cache
def postgres_engine(url: str) -> sa.Engine:
    """One engine per URL and process. No pool: a call opens its own connection, and a forked
    process never shares a socket with its parent."""
    parsed = postgres_url(url)
    defaults = {"connect_timeout": 10, "application_name": "recommender-pipeline"}
    connect_args = {k: v for k, v in defaults.items() if k not in parsed.query}
    return sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)


def ensure_tables(session: Session) -> None:
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
