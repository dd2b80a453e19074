"""The measurement store's contract, run against both engines (an embedded DuckDB file and a real
PostgreSQL server), and the pipeline measuring into PostgreSQL through Dagster.

PostgreSQL is `scripts/postgres-local` (Debian's server on 127.0.0.1), started on demand and
stopped at the end if these tests started it; or the server at POSTGRES_URL when that is set.
Each test gets a schema of its own, named in the URL's `options` (`-csearch_path=...`).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import time
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa
from pandas.testing import assert_frame_equal
from sqlalchemy.pool import NullPool

from recommender_pipeline.errors import ConfigurationError
from recommender_pipeline.resources import MeasurementStoreResource, SettingsResource, build_resources
from recommender_pipeline.resources.store import INVENTORY_COLUMNS, MEASUREMENT_COLUMNS, sessions
from recommender_pipeline.settings import load_settings
from recommender_pipeline_testing.known_truth import DayTruth, records_in_hour
from recommender_pipeline_testing.pipeline import CLUSTER_ID
from recommender_pipeline_testing.workloads import create_topic, produce

ENGINES = ["duckdb", "postgresql"]
BIG = 2**63 - 1  # BIGINT's largest: exact only if no float ever carries it


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(
        sa.make_url(url).set(drivername="postgresql+psycopg"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """The URL of a fresh, empty schema, dropped after the test."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = _engine(postgres_url)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(postgres_url)
    options = f"{url.query.get('options', '')} -csearch_path={schema}".strip()
    yield url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _env_file(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> Path:
    """A configuration file naming one engine's store (a child process reads it too)."""
    if engine == "postgresql":
        line = f"MEASUREMENT_STORE_URL={request.getfixturevalue('postgres_schema_url')}"
    else:
        line = f"MEASUREMENT_STORE_PATH={tmp_path / 'measurements.duckdb'}"
    path = tmp_path / f"{engine}.env"
    path.write_text(line + "\n")
    return path


def _store(env_file: Path) -> MeasurementStoreResource:
    return MeasurementStoreResource(config=SettingsResource(env_file=str(env_file)))


@pytest.fixture(params=ENGINES)
def store_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MEASUREMENT_STORE_URL", "MEASUREMENT_STORE_PATH"):  # the file decides, not the shell
        monkeypatch.delenv(name, raising=False)
    return _env_file(tmp_path, request.param, request)


@pytest.fixture
def store(store_env: Path) -> MeasurementStoreResource:
    store = _store(store_env)
    assert store.engine == store_env.stem
    return store


def measurement(day: str, topic: str, cluster: str = "c1", **values: object) -> dict:
    """A row as the measuring code writes it: every column, here with values that vary by column type."""
    row: dict[str, object] = {
        "date": day,
        "cluster_id": cluster,
        "topic": topic,
        "method": "sampling_records",
        "status": "measured",
        "reason": "",
        "partitions": 3,
        "is_compacted": False,
        "retention_ms": 604_800_000,
        "window_start": f"{day}T00:00:00+00:00",
        "window_end": f"{day}T23:59:59+00:00",
        "window_seconds": 86_400.0,
        "day_closed": True,
        "exact": True,
        "records": 1200,
        "bytes": 86_400,
        "offsets_in_window": 1203,
        "sampled_records": 1200,
        "retained_records": 5000,
        "mean_record_bytes": 72.0,
        "avg_ingress_bytes_per_sec": 1.0,
        "peak_ingress_bytes_per_sec": 15.0,
        "peak_bucket_start": f"{day}T15:00:00+00:00",
        "bucket_seconds": 3600,
        "partition_bytes": "[64800,21600,0]",
        "skew": 2.25,
        "egress_bytes": 0,
        "hot_partition_ingress": True,
        "hot_partition_egress": None,
        "measured_at": "2024-03-02T01:02:03+00:00",
        "duration_seconds": 0.25,
    }
    row.update(values)
    return row


def assert_row(actual: pd.Series, expected: dict) -> None:
    for name, value in expected.items():
        got = actual[name]
        if value is None:
            assert got is None or pd.isna(got), f"{name}: expected NULL, got {got!r}"
        elif isinstance(value, bool):
            assert not pd.isna(got) and bool(got) is value, f"{name}: expected {value}, got {got!r}"
        elif isinstance(value, float):
            assert float(got) == value, f"{name}: expected {value!r}, got {got!r}"
        else:
            assert got == value and type(got) is not float, f"{name}: expected {value!r}, got {got!r}"


def keyed(frame: pd.DataFrame) -> dict[tuple[str, str, str], pd.Series]:
    return {(row["date"], row["cluster_id"], row["topic"]): row for _, row in frame.iterrows()}


# The contract, on both engines.


def test_rows_read_back_exactly_with_nulls_booleans_and_big_integers(store):
    rows = [
        measurement("2024-03-01", "orders"),
        measurement(
            "2024-03-01",
            "clicks",
            records=BIG,
            bytes=BIG - 1,
            retention_ms=-1,
            exact=False,
            is_compacted=None,
            hot_partition_ingress=False,
            reason=None,
            skew=None,
            partitions=2**31 - 1,
            partition_bytes='["quote\'s", "ünïcode"]',
        ),
        measurement("2024-03-02", "orders", status="error", reason="broker unreachable", records=None, bytes=None),
    ]
    store.write_measurements(rows)
    stored = store.read_measurements("2024-03-01", "2024-03-02")
    assert list(stored.columns) == list(MEASUREMENT_COLUMNS)
    assert len(stored) == 3
    by_key = keyed(stored)
    for row in rows:
        assert_row(by_key[(row["date"], row["cluster_id"], row["topic"])], row)
    # A column with a NULL keeps its integers exact (a float would turn 2**63 - 1 into 2**63).
    assert int(stored["records"].dropna().max()) == BIG
    assert str(stored["records"].dtype) == "Int64" and str(stored["partitions"].dtype) == "int32"


def test_a_write_replaces_the_rows_of_the_same_day_cluster_and_topic(store):
    store.write_measurements(
        [
            measurement("2024-03-01", "orders", records=10),
            measurement("2024-03-01", "clicks", records=20),
            measurement("2024-03-02", "orders", records=30),
            measurement("2024-03-01", "orders", cluster="c2", records=40),
        ]
    )
    replacement = measurement("2024-03-01", "orders", records=11, exact=None, skew=None, status="empty")
    store.write_measurements([replacement])
    stored = keyed(store.read_measurements("2024-03-01", "2024-03-02"))
    assert len(stored) == 4
    assert_row(stored[("2024-03-01", "c1", "orders")], replacement)  # replaced whole, not merged
    assert [stored[key]["records"] for key in sorted(stored)] == [20, 11, 40, 30]
    store.write_measurements([])  # nothing to write changes nothing
    assert len(store.read_measurements("2024-03-01", "2024-03-02")) == 4


def test_a_measured_or_empty_day_is_never_downgraded(store):
    good = measurement("2024-03-01", "orders", records=10)
    quiet = measurement("2024-03-01", "quiet", status="empty", records=0, bytes=0)
    store.write_measurements([good, quiet])
    worse = [
        measurement("2024-03-01", "orders", status="not_measurable", reason="aged out", records=0),
        measurement("2024-03-01", "quiet", status="error", reason="broker unreachable", records=None),
        measurement("2024-03-01", "orders", cluster="c2", status="error", records=None),  # nothing stored: kept
    ]
    store.write_measurements([measurement("2024-03-01", "shorter", records=9)])
    shorter = measurement("2024-03-01", "shorter", records=5, window_seconds=3_600.0, day_closed=False)
    written = store.write_measurements([*worse, shorter])
    assert [(row["cluster_id"], row["topic"]) for row in written] == [("c2", "orders")]
    stored = keyed(store.read_measurements("2024-03-01", "2024-03-01"))
    assert_row(stored[("2024-03-01", "c1", "orders")], good)
    assert_row(stored[("2024-03-01", "c1", "quiet")], quiet)
    assert stored[("2024-03-01", "c1", "shorter")]["records"] == 9  # an open day's read covers less
    # The same window again, or a longer one, replaces; a worse row never does (a forced
    # re-measure writes through the same merge).
    assert len(store.write_measurements([measurement("2024-03-01", "orders", records=11)])) == 1
    assert store.write_measurements(worse[:1]) == []
    stored = keyed(store.read_measurements("2024-03-01", "2024-03-01"))
    assert (stored[("2024-03-01", "c1", "orders")]["status"], stored[("2024-03-01", "c1", "orders")]["records"]) == (
        "measured",
        11,
    )


def test_reads_are_ordered_by_cluster_topic_and_date_and_bounded_by_the_days(store):
    # Byte order, as DuckDB sorts: upper case before lower, "_" after letters of either case.
    topics = ["a", "B", "a_b", "aB", "Z", "ä"]
    days = ["2024-02-29", "2024-03-01", "2024-03-02", "2024-03-03"]
    rows = [measurement(day, topic, cluster=cluster) for day in days for topic in topics for cluster in ("c2", "C1")]
    store.write_measurements(rows[::-1])
    stored = store.read_measurements("2024-03-01", "2024-03-02")
    expected = sorted(
        (r["cluster_id"], r["topic"], r["date"]) for r in rows if "2024-03-01" <= r["date"] <= "2024-03-02"
    )
    assert list(zip(stored["cluster_id"], stored["topic"], stored["date"], strict=True)) == expected
    assert stored["cluster_id"].iloc[0] == "C1" and list(stored["topic"].iloc[:6:2]) == ["B", "Z", "a"]
    empty = store.read_measurements("2030-01-01", "2030-01-31")
    assert empty.empty and list(empty.columns) == list(MEASUREMENT_COLUMNS)


def test_the_inventory_is_replaced_whole_and_read_in_order(store):
    first = pd.DataFrame(
        [
            {
                "cluster_id": "c1",
                "topic": "orders",
                "partitions": 6,
                "replication_factor": 3,
                "cleanup_policy": "delete",
                "retention_ms": 604_800_000,
                "is_internal": False,
                "is_compacted": False,
                "inventoried_at": "t1",
            },
            {
                "cluster_id": "c1",
                "topic": "gone",
                "partitions": 1,
                "replication_factor": 3,
                "cleanup_policy": "delete",
                "retention_ms": -1,
                "is_internal": False,
                "is_compacted": False,
                "inventoried_at": "t1",
            },
        ]
    )
    store.replace_inventory(first)
    assert list(store.read_inventory()["topic"]) == ["gone", "orders"]
    # The asset's frame may lack columns: they are stored as NULL.
    second = pd.DataFrame(
        [
            {"cluster_id": "c1", "topic": "orders", "partitions": 12, "is_internal": False, "retention_ms": BIG},
            {
                "cluster_id": "c0",
                "topic": "__consumer_offsets",
                "partitions": 50,
                "is_internal": True,
                "retention_ms": -1,
            },
            {"cluster_id": "c1", "topic": "Audit", "partitions": 1, "is_internal": False, "retention_ms": 0},
        ]
    )
    store.replace_inventory(second)
    inventory = store.read_inventory()
    assert list(inventory.columns) == list(INVENTORY_COLUMNS)
    assert list(zip(inventory["cluster_id"], inventory["topic"], strict=True)) == [
        ("c0", "__consumer_offsets"),
        ("c1", "Audit"),
        ("c1", "orders"),
    ]
    orders = inventory.set_index("topic").loc["orders"]
    assert (orders["partitions"], orders["retention_ms"], bool(orders["is_internal"])) == (12, BIG, False)
    assert pd.isna(orders["cleanup_policy"]) and pd.isna(orders["is_compacted"])
    store.replace_inventory(pd.DataFrame(columns=["cluster_id", "topic"]))
    assert store.read_inventory().empty


def test_a_store_from_an_older_version_gains_the_new_columns(store, store_env):
    # The table as an older version made it, without the egress and hot-partition columns.
    old_columns = [name for name in MEASUREMENT_COLUMNS if "egress" not in name]
    kinds = {"DOUBLE": "DOUBLE PRECISION"} if store.engine == "postgresql" else {}
    body = ", ".join(
        f'"{name}" {kinds.get(MEASUREMENT_COLUMNS[name], MEASUREMENT_COLUMNS[name])}' for name in old_columns
    )
    statements = [
        f"CREATE TABLE measurements ({body}, PRIMARY KEY (date, cluster_id, topic))",
        "INSERT INTO measurements (date, cluster_id, topic, records) VALUES ('2024-03-01', 'c1', 'old', 5)",
    ]
    if store.engine == "postgresql":
        with _engine(store.url).connect() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))
    else:
        with duckdb.connect(str(store.path)) as connection:
            for statement in statements:
                connection.execute(statement)

    stored = store.read_measurements("2024-03-01", "2024-03-01")
    assert list(stored.columns) == old_columns + [n for n in MEASUREMENT_COLUMNS if n not in old_columns]
    assert stored["records"].tolist() == [5] and stored["egress_bytes"].isna().all()
    new = measurement("2024-03-01", "new", egress_bytes=BIG, hot_partition_egress=True)
    store.write_measurements([new])
    assert_row(keyed(store.read_measurements("2024-03-01", "2024-03-01"))[("2024-03-01", "c1", "new")], new)


def _writer(env_file: str, name: str, batches: int, barrier, errors) -> None:
    """A process that replaces its own topics and one shared topic, `batches` times, pausing
    between a write's delete and its insert so that the two writers' transactions overlap."""
    try:
        for session in (sessions.DuckDBSession, sessions.PostgresSession):
            session.insert = _after_a_pause(session.insert)
        store = _store(Path(env_file))
        barrier.wait(60)
        for batch in range(batches):
            own = [measurement("2024-03-01", f"{name}-{i}", records=batch) for i in range(20)]
            shared = measurement("2024-03-01", "shared", records=batch, reason=name)
            store.write_measurements([*own, shared])
    except BaseException:
        errors.put(f"{name}: {traceback.format_exc()}")
        raise


def _after_a_pause(insert):
    def paused(self, table: str, frame: pd.DataFrame) -> None:
        time.sleep(0.02)
        insert(self, table, frame)

    return paused


def test_concurrent_writers_in_two_processes_both_land(store, store_env):
    # Both start on an empty store: they create the tables at the same time too.
    context = multiprocessing.get_context("spawn")
    barrier, errors, batches = context.Barrier(2), context.Queue(), 15
    writers = [
        context.Process(target=_writer, args=(str(store_env), name, batches, barrier, errors)) for name in ("w1", "w2")
    ]
    for process in writers:
        process.start()
    try:
        for process in writers:
            process.join(180)
    finally:
        for process in writers:
            if process.is_alive():  # a writer that hangs fails the test below, and ends here
                process.kill()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert [p.exitcode for p in writers] == [0, 0], "\n".join(failures)

    stored = store.read_measurements("2024-03-01", "2024-03-01").set_index("topic")
    assert len(stored) == 2 * 20 + 1
    for name in ("w1", "w2"):
        assert stored.loc[[f"{name}-{i}" for i in range(20)], "records"].tolist() == [batches - 1] * 20
    assert stored.loc["shared", "records"] == batches - 1  # the last write of either writer, once
    assert stored.loc["shared", "reason"] in {"w1", "w2"}


# The engines agree.


@pytest.mark.integration  # PostgreSQL, through request.getfixturevalue
def test_both_engines_return_the_same_frames(tmp_path, monkeypatch, request):
    for name in ("MEASUREMENT_STORE_URL", "MEASUREMENT_STORE_PATH"):
        monkeypatch.delenv(name, raising=False)
    stores = [_store(_env_file(tmp_path, engine, request)) for engine in ENGINES]
    rows = [
        measurement("2024-03-01", "b", records=None, exact=None, skew=None, reason=None),
        measurement("2024-03-02", "a", records=BIG, measured_at=None),
        measurement("2024-03-01", "A", cluster="c0"),
    ]
    inventory = pd.DataFrame([{"cluster_id": "c1", "topic": t, "partitions": 3, "is_internal": False} for t in "bA"])
    for store in stores:
        store.write_measurements(rows)
        store.replace_inventory(inventory)
    duck, postgres = stores
    written = [store.read_measurements("2024-03-01", "2024-03-02") for store in stores]
    assert all(frame["stored_at"].str.match(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00$").all() for frame in written)
    assert_frame_equal(*(frame.drop(columns="stored_at") for frame in written))  # when each wrote differs
    assert_frame_equal(
        duck.read_measurements("2025-01-01", "2025-01-02"), postgres.read_measurements("2025-01-01", "2025-01-02")
    )
    assert_frame_equal(duck.read_inventory(), postgres.read_inventory())


# Configuration.


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://app:hunter2@db:3306/recommender", "unsupported scheme 'mysql'"),
        ("sqlite:///hunter2.db", "unsupported scheme 'sqlite'"),
        ("app:hunter2@db/recommender", "is not a URL"),
        ("postgresql://app:hunter2@db:port/recommender", "is not a well-formed URL"),
        ("postgresql://app:hun@ter2@db/recommender", "percent-encode"),
        ("postgresql://app:hunter2@db:5432", "names no database"),
    ],
)
def test_a_bad_store_url_is_named_without_its_password(monkeypatch, tmp_path, url, says):
    monkeypatch.setenv("MEASUREMENT_STORE_URL", url)
    with pytest.raises(ConfigurationError) as raised:
        load_settings(str(tmp_path / "no.env"))
    message = str(raised.value)
    assert "MEASUREMENT_STORE_URL: " in message and says in message
    assert "postgresql://user:password@host:port/database" in message  # the expected form
    assert "hunter2" not in message and "ter2" not in message


def test_the_store_url_chooses_postgresql_and_is_never_shown(monkeypatch, tmp_path):
    monkeypatch.setenv("MEASUREMENT_STORE_URL", "postgres://app:hunter2@db.internal:5432/recommender?sslmode=require")
    settings = load_settings(str(tmp_path / "no.env"))
    assert "hunter2" not in repr(settings)
    store = _store(tmp_path / "no.env")
    assert store.engine == "postgresql"
    assert store.location == "postgres://app:***@db.internal:5432/recommender?sslmode=require"
    monkeypatch.setenv("MEASUREMENT_STORE_URL", " ")
    assert _store(tmp_path / "other.env").engine == "duckdb"


# End to end: the pipeline measures into PostgreSQL by configuration alone.


def test_the_pipeline_measures_into_postgresql(
    configure, pipeline, kafka_bootstrap, prefix, postgres_schema_url, tmp_path
):
    day = datetime.now(UTC).date() - timedelta(days=1)
    orders, audit = f"{prefix}.orders", f"{prefix}.audit"
    produced = {
        orders: records_in_hour(day, 9, 120, lambda i: (f"k{i}".encode(), b"o" * (10 + i % 7), []), partitions=2)
        + records_in_hour(day, 15, 60, lambda i: (None, b"v" * 50, [("h", b"1")]), partitions=2),
        audit: records_in_hour(day, 3, 30, lambda i: (None, b"a" * (i + 1), [])),
    }
    for topic, records in produced.items():
        create_topic(kafka_bootstrap, topic, partitions=max(r.partition for r in records) + 1)
        produce(kafka_bootstrap, topic, records)

    configure(MEASUREMENT_STORE_URL=postgres_schema_url, TOPIC_FILTER=prefix, SAMPLING_DAYS=1, SAMPLING_BATCH_SIZE="")
    assert pipeline.store.engine == "postgresql"
    assert pipeline.inventory().success
    assert sorted(pipeline.store.read_inventory()["topic"]) == [audit, orders]
    for _ in range(2):  # measuring a day again replaces its rows
        assert pipeline.measure(day).success
    for topic, records in produced.items():
        truth = DayTruth()
        truth.add(records, day)
        row = pipeline.measurement(day, topic)  # exactly one stored row
        assert (row["cluster_id"], row["status"], bool(row["exact"])) == (CLUSTER_ID, "measured", True)
        assert (row["records"], row["bytes"]) == (truth.records, truth.bytes)
        assert math.isclose(row["peak_ingress_bytes_per_sec"], truth.peak_bytes_per_sec, rel_tol=1e-12)
        partitions = max(r.partition for r in records) + 1
        assert json.loads(row["partition_bytes"]) == [truth.partition_bytes.get(p, 0) for p in range(partitions)]
    assert pipeline.is_materialized(day, orders)
    # The recommendation reads the window back from PostgreSQL; no DuckDB file was made.
    assert pipeline.recommend(day).success
    assert not (tmp_path / "measurements.duckdb").exists()
    with _engine(postgres_schema_url).connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM measurements")).scalar_one() == 2


def test_a_cluster_that_could_not_be_listed_keeps_its_last_known_topics(store):
    def topics(cluster: str, *names: str) -> list[dict]:
        return [{"cluster_id": cluster, "topic": name, "partitions": 3, "is_internal": False} for name in names]

    store.replace_inventory(pd.DataFrame(topics("up", "a", "b") + topics("down", "x", "y") + topics("gone", "z")))
    # "down" did not answer this time; "up" answered with one topic fewer; "gone" left the configuration.
    store.replace_inventory(pd.DataFrame(topics("up", "a")), keep_clusters=["down"])
    inventory = store.read_inventory()
    assert list(zip(inventory["cluster_id"], inventory["topic"], strict=True)) == [
        ("down", "x"),
        ("down", "y"),
        ("up", "a"),
    ]


def test_a_write_that_fails_midway_rolls_back_and_keeps_the_old_rows(store, monkeypatch):
    store.write_measurements([measurement("2024-03-01", "orders", records=5, reason="old")])

    def broken(self, table, frame):
        raise RuntimeError("disk full")

    # The failure comes after the old rows were deleted, inside the same transaction.
    monkeypatch.setattr(sessions.DuckDBSession, "insert", broken)
    monkeypatch.setattr(sessions.PostgresSession, "insert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        store.write_measurements([measurement("2024-03-01", "orders", records=9, reason="new")])
    row = keyed(store.read_measurements("2024-03-01", "2024-03-01"))[("2024-03-01", "c1", "orders")]
    assert (row["records"], row["reason"]) == (5, "old")


def _slow_writer(env_file: str, name: str, barrier, spans) -> None:
    """Writes its own key with a 1 s pause inside the transaction; reports when it held it."""
    sessions.PostgresSession.insert = _after(sessions.PostgresSession.insert, 1.0)
    store = _store(Path(env_file))
    store.check()  # tables created before the race
    barrier.wait(60)
    started = time.monotonic()
    store.write_measurements([measurement("2024-03-02", f"{name}-own")])
    spans.put((name, started, time.monotonic()))


def _after(insert, seconds: float):
    def paused(self, table: str, frame: pd.DataFrame) -> None:
        time.sleep(seconds)
        insert(self, table, frame)

    return paused


@pytest.mark.integration  # PostgreSQL, through request.getfixturevalue
def test_postgresql_writers_of_disjoint_keys_do_not_wait_for_each_other(tmp_path, monkeypatch, request):
    for name in ("MEASUREMENT_STORE_URL", "MEASUREMENT_STORE_PATH"):
        monkeypatch.delenv(name, raising=False)
    env_file = _env_file(tmp_path, "postgresql", request)
    context = multiprocessing.get_context("spawn")
    barrier, spans = context.Barrier(2), context.Queue()
    writers = [context.Process(target=_slow_writer, args=(str(env_file), n, barrier, spans)) for n in ("w1", "w2")]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
    assert [p.exitcode for p in writers] == [0, 0]
    (_, start1, end1), (_, start2, end2) = spans.get(timeout=5), spans.get(timeout=5)
    # Each holds its transaction for at least 1 s; had one waited for the other, the two would take 2 s.
    assert max(end1, end2) - min(start1, start2) < 1.8
    assert min(end1, end2) > max(start1, start2)  # they overlapped


@pytest.mark.parametrize(
    ("failure", "advice"),
    [
        (
            "IO Error: Could not write file: No space left on device",
            "is full: free space and run again (the stored rows are intact)",
        ),
        ("IO Error: Cannot open file: Read-only file system", "is not writable by this process"),
        ("IO Error: Could not set lock on file: Conflicting lock is held", "kept the file locked for 60 s"),
    ],
)
def test_store_failures_get_the_advice_that_fits_them(configure, tmp_path, failure, advice):
    configure(MEASUREMENT_STORE_PATH=str(tmp_path / "m.duckdb"))
    store = build_resources(str(tmp_path / "absent.env"))["store"]
    hint = store._hint(duckdb.IOException(failure))
    assert advice in hint
    assert "lost" not in hint or "lock" in failure  # a full disk loses no row: never advise moving the file
