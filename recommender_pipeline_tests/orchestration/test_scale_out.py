"""The scale-out tier: a day of 40 topics measured through the Celery executor on two workers,
with Dagster's instance and the measurement store on PostgreSQL, against the embedded run.

Services are the repository's scripts: `scripts/postgres-local` (POSTGRES_LOCAL_PORT) and
`scripts/redis-local` (REDIS_LOCAL_PORT), started here when not running and stopped afterwards if
started here; the workers are `dagster-celery worker start`, exactly as the README starts them, each
in its own session so that killing one kills its pool process too. Each test gets its own
PostgreSQL schemas and Redis databases.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from confluent_kafka import Producer
from pandas.testing import assert_frame_equal
from sqlalchemy.pool import NullPool

from recommender_pipeline.resources import MeasurementStoreResource, SettingsResource
from recommender_pipeline_testing.pipeline import REPO, command_env
from recommender_pipeline_testing.scale_out import Workers, measure_day
from recommender_pipeline_testing.workloads import create_topic, send_records, spread

pytestmark = pytest.mark.integration

TOPICS = 40
DAY = datetime.now(UTC).date() - timedelta(days=1)
TIMING_COLUMNS = ["measured_at", "stored_at", "duration_seconds"]  # when and how fast, not what was measured
# The same settings for both tiers (the fixture adds the topics' prefix as TOPIC_FILTER).
SETTINGS = {
    "SAMPLING_DAYS": "1",
    "MAX_WORKERS_PER_CLUSTER": "4",
    "RECORDS_PER_CHUNK": "1",  # small topics, but the chunks are what the workers share
    "SAMPLING_TIMEOUT_SECONDS": "1",
    "SAMPLING_MAX_CONSECUTIVE_NULLS": "20",
}
VISIBILITY_TIMEOUT_SECONDS = 10  # a lost worker's chunk goes back to the queue after this


def _script(name: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "scripts" / name), command], stdout=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def service_urls() -> Iterator[tuple[str, str]]:
    """(PostgreSQL URL, Redis base URL): the local servers, stopped at the end if started here."""
    started = []
    urls = []
    for name in ("postgres-local", "redis-local"):
        if _script(name, "status").returncode != 0:
            started.append(name)
        done = _script(name, "start")
        assert done.returncode == 0, f"scripts/{name} start failed:\n{done.stdout}"
        urls.append(done.stdout.strip().splitlines()[-1])
    yield urls[0], urls[1].rsplit("/", 1)[0]
    for name in started:
        _script(name, "stop")


@pytest.fixture(scope="module")
def day_topics(kafka_bootstrap: str) -> list[str]:
    """40 topics of 1-4 partitions, each with its own traffic on DAY (and a little the day after)."""
    prefix = f"scale{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{index:02d}" for index in range(TOPICS)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for index, name in enumerate(names):
        partitions = 1 + index % 4
        create_topic(kafka_bootstrap, name, partitions)
        records = spread(DAY, index % 24, 20 + 7 * index, 50 + 13 * index, partitions)
        records += spread(DAY + timedelta(days=1), 0, 5, 40, partitions, seconds=60)
        send_records(producer, name, records)
    assert producer.flush(60) == 0
    SETTINGS["TOPIC_FILTER"] = prefix
    return names


@pytest.fixture(scope="module")
def schema_url(service_urls: tuple[str, str]) -> Iterator:
    """Makes URLs of fresh schemas in the local database; drops them after the test."""
    url = sa.make_url(service_urls[0]).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    schemas = []

    def make(role: str, driver: str = "postgresql") -> str:
        schema = f"{role}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        url = service_urls[0].replace("postgresql://", f"{driver}://", 1)
        return f"{url}?options=-csearch_path%3D{schema}"

    yield make
    with admin.connect() as connection:
        for schema in schemas:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _instance_home(path: Path, yaml_path: Path) -> Path:
    path.mkdir()
    (path / "dagster.yaml").write_text(yaml_path.read_text())
    return path


def _run_day(env: dict[str, str], cwd: Path, *args: str, background: bool = False):
    command = [sys.executable, "-m", "recommender_pipeline_testing.scale_out", "--day", DAY.isoformat(), *args]
    if background:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _embedded_rows(configure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[pd.DataFrame, dict]:
    """The embedded tier, single process: SQLite instance, DuckDB store, the in-process executor,
    here in the test's own process (which loaded the code location with the default executor)."""
    home = _instance_home(tmp_path / "embedded_home", REPO / "deploy" / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    configure(**SETTINGS, MEASUREMENT_STORE_PATH=str(tmp_path / "embedded.duckdb"))
    outcome = measure_day(DAY, in_process=True)
    assert outcome["success"], outcome
    return _store_rows(f"MEASUREMENT_STORE_PATH={tmp_path / 'embedded.duckdb'}", tmp_path, monkeypatch), outcome


def _celery_env(bootstrap: str, tmp_path: Path, schema_url, redis: str) -> dict[str, str]:
    """The scale-out tier's environment: PostgreSQL instance and store, Celery on Redis."""
    home = _instance_home(tmp_path / "celery_home", REPO / "deploy" / "postgres" / "dagster.yaml")
    executor = yaml.safe_load((REPO / "deploy" / "celery" / "executor.yaml").read_text())
    executor["execution"]["config"]["config_source"]["broker_transport_options"]["visibility_timeout"] = (
        VISIBILITY_TIMEOUT_SECONDS
    )
    executor_yaml = tmp_path / "executor.yaml"
    executor_yaml.write_text(yaml.safe_dump(executor))
    env = command_env(bootstrap, tmp_path, DAGSTER_HOME=str(home))
    env.update(
        **SETTINGS,
        # dagster-postgres needs psycopg2 (its NOTIFY takes a client-side parameter); SQLAlchemy 2.1
        # picks psycopg 3 for a bare postgresql:// URL.
        DAGSTER_PG_URL=schema_url("dagster", "postgresql+psycopg2"),
        MEASUREMENT_STORE_URL=schema_url("store"),
        RECOMMENDER_EXECUTOR="celery",
        RECOMMENDER_EXECUTOR_CONFIG=str(executor_yaml),
        CELERY_BROKER_URL=f"{redis}/2",
        CELERY_BACKEND_URL=f"{redis}/3",
    )
    return env


@pytest.fixture(scope="module")
def celery_stack(kafka_bootstrap, day_topics, service_urls, schema_url, tmp_path_factory) -> Iterator:
    """Two workers (`worker-a`, `worker-b`) and the scale-out environment they share with the runs."""
    path = tmp_path_factory.mktemp("celery")
    env = _celery_env(kafka_bootstrap, path, schema_url, service_urls[1])
    workers = Workers(env, path)
    try:
        workers.start("worker-a")
        workers.start("worker-b")
        workers.wait_ready()
        yield env, workers
    finally:
        workers.stop()


def _store_rows(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """The day's rows as the store reads them (its typing is the same for both engines)."""
    for name in ("MEASUREMENT_STORE_URL", "MEASUREMENT_STORE_PATH"):  # the file decides, not the shell
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / f"store-{uuid.uuid4().hex[:6]}.env"
    env_file.write_text(line + "\n")
    store = MeasurementStoreResource(config=SettingsResource(env_file=str(env_file)))
    return store.read_measurements(DAY.isoformat(), DAY.isoformat())


def _comparable(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.drop(columns=TIMING_COLUMNS).sort_values(["cluster_id", "topic"]).reset_index(drop=True)
    return rows[sorted(rows.columns)]


def _chunk_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Each chunk step's Celery workers, in the order they took it (from the workers' own events)."""
    workers: dict[str, list[str]] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if entry.step_key and entry.step_key.startswith("topic_measurements.measure_topic_chunk"):
            metadata = entry.dagster_event.engine_event_data.metadata
            if "Celery worker" in metadata:
                workers.setdefault(entry.step_key, []).append(metadata["Celery worker"].value)
    return workers


def _instance(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    monkeypatch.setenv("DAGSTER_PG_URL", env["DAGSTER_PG_URL"])
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def test_a_day_through_celery_on_two_workers_stores_the_rows_of_the_embedded_run(
    celery_stack, configure, tmp_path, monkeypatch
):
    env, _ = celery_stack
    embedded, embedded_outcome = _embedded_rows(configure, tmp_path, monkeypatch)
    assert len(embedded) == TOPICS and set(embedded["status"]) == {"measured"}
    started = time.monotonic()
    outcome = _run_day(env, tmp_path)
    seconds = time.monotonic() - started
    assert outcome["success"], outcome
    distributed = _store_rows(f"MEASUREMENT_STORE_URL={env['MEASUREMENT_STORE_URL']}", tmp_path, monkeypatch)
    assert_frame_equal(_comparable(distributed), _comparable(embedded), check_dtype=False)
    assert int(distributed["records"].sum()) == sum(20 + 7 * index for index in range(TOPICS))

    instance = _instance(env, monkeypatch)
    chunk_workers = _chunk_workers(instance, outcome["run_id"])
    assert len(chunk_workers) == 4  # MAX_WORKERS_PER_CLUSTER chunks, each taken once
    assert all(len(taken) == 1 for taken in chunk_workers.values())
    assert {taken[0].split("@")[0] for taken in chunk_workers.values()} == {"worker-a", "worker-b"}
    steps = instance.get_run_step_stats(outcome["run_id"])
    assert sorted(step.step_key.split("[")[0] for step in steps) == [
        "topic_measurements.measure_topic_chunk",
    ] * 4 + ["topic_measurements.plan_measurement_chunks", "topic_measurements.summarize_measurements"]
    events = len(instance.all_logs(outcome["run_id"]))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "embedded_home"))  # the event log storage's folder
    with dg.DagsterInstance.from_config(str(tmp_path / "embedded_home")) as embedded_instance:
        embedded_events = len(embedded_instance.all_logs(embedded_outcome["run_id"]))
    print(
        f"\nscale-out: {TOPICS} topics, {len(steps)} steps; celery command {seconds:.1f} s; "
        f"event-log rows per run: celery {events}, embedded in-process {embedded_events}"
    )
    instance.dispose()


def test_a_worker_killed_mid_chunk_leaves_the_chunk_to_the_other_worker_and_the_day_completes(
    celery_stack, tmp_path, monkeypatch
):
    env, workers = celery_stack
    instance = _instance(env, monkeypatch)
    measurement_runs = dg.RunsFilter(job_name="measurement_job")
    before = {record.dagster_run.run_id for record in instance.get_run_records(measurement_runs)}
    started = time.monotonic()
    run = _run_day(env, tmp_path, "--force", background=True)  # every topic-day, whatever is stored
    killed_step, killed_at, deadline = None, 0.0, time.monotonic() + 120
    try:
        while killed_step is None:
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "worker-a never took a chunk"
            runs = [
                record.dagster_run.run_id
                for record in instance.get_run_records(measurement_runs)
                if record.dagster_run.run_id not in before
            ]
            for step, taken in (_chunk_workers(instance, runs[0]) if runs else {}).items():
                if taken[0].startswith("worker-a@"):
                    workers.kill("worker-a")  # mid-chunk: it has just begun the step
                    killed_step, killed_at = step, time.monotonic() - started
                    break
            time.sleep(0.05)
        stdout, stderr = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
        workers.start("worker-a")  # the module's workers stay whole for any test after this one
    seconds = time.monotonic() - started
    assert run.returncode == 0, stderr[-4000:]
    outcome = json.loads(stdout.strip().splitlines()[-1])
    assert outcome["success"], outcome
    taken = _chunk_workers(instance, outcome["run_id"])
    assert [worker.split("@")[0] for worker in taken[killed_step]] == ["worker-a", "worker-b"]
    successes = [
        entry.step_key
        for entry in instance.all_logs(outcome["run_id"], of_type=dg.DagsterEventType.STEP_SUCCESS)
        if entry.step_key == killed_step
    ]
    assert successes == [killed_step]  # worker-a died before finishing it; worker-b finished it once
    stored = _store_rows(f"MEASUREMENT_STORE_URL={env['MEASUREMENT_STORE_URL']}", tmp_path, monkeypatch)
    assert len(stored) == TOPICS and set(stored["status"]) == {"measured"}
    assert int(stored["records"].sum()) == sum(20 + 7 * index for index in range(TOPICS))
    print(f"\nworker-a killed {killed_at:.1f} s into the command, in {killed_step}; day done after {seconds:.1f} s")
    instance.dispose()
