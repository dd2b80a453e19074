"""Dagster instances for tests and benchmarks on the PostgreSQL tier: each in a schema of its own
on the server `scripts/postgres-local` runs, dropped afterwards."""

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.pool import NullPool


@contextmanager
def postgres_dagster_instance(server_url: str) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance whose runs and event log live in a fresh schema of `server_url`
    (dagster-postgres needs psycopg2's driver name; see the README's note)."""
    schema = f"dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        sa.make_url(server_url).set(drivername="postgresql+psycopg"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{server_url.replace('postgresql:', 'postgresql+psycopg2:')}?options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as home:
            Path(home, "dagster.yaml").write_text(
                f"telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url: '{url}'\n"
            )
            with dg.DagsterInstance.from_config(home) as instance:
                yield instance
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
