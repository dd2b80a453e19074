"""The many-small day (2,000 topics x 3 partitions x 10 records) through the scale-out tier on one
Celery worker and on two, beside the embedded multiprocess run of the same day: the figures behind
the README's scale model.

    .venv/bin/python -m benchmarks.scale_out --bootstrap 127.0.0.1:19092 [--topics 2000] [--json out.json]

Starts scripts/postgres-local and scripts/redis-local when they are not running (and stops what it
started), gives every run its own PostgreSQL schemas and DAGSTER_HOME, and prints, per tier: the
command's wall time, the run's time, the chunk steps' span, steps and event-log rows per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from benchmarks.measuring import (
    SMALL_PARTITIONS,
    Cluster,
    create_topics,
    delete_topics,
    produce_small_topics,
    small_topic_name,
)
from recommender_pipeline.measuring.days import utc_today
from recommender_pipeline_testing.pipeline import REPO
from recommender_pipeline_testing.scale_out import Workers

CHUNKS = 4  # MAX_WORKERS_PER_CLUSTER: the same chunks for every tier


def script(name: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "scripts" / name), command], stdout=subprocess.PIPE, text=True)


def run_figures(home: Path, run_id: str, pg_url: str | None) -> dict:
    """Steps, event-log rows and times of one measurement run, read back from its instance."""
    if pg_url:
        os.environ["DAGSTER_PG_URL"] = pg_url
    with dg.DagsterInstance.from_config(str(home)) as instance:
        stats = instance.get_run_stats(run_id)
        steps = instance.get_run_step_stats(run_id)
        chunks = [step for step in steps if "measure_topic_chunk" in step.step_key]
        return {
            "run_seconds": round((stats.end_time or 0) - (stats.start_time or 0), 1),
            "steps": len(steps),
            "event_log_rows": len(instance.all_logs(run_id)),
            "chunk_span_seconds": round(max(s.end_time for s in chunks) - min(s.start_time for s in chunks), 1),
            "chunk_seconds": sorted(round(s.end_time - s.start_time, 1) for s in chunks),
        }


def measure(env: dict[str, str], workdir: Path, day: str, *args: str) -> tuple[dict, float]:
    command = [sys.executable, "-m", "recommender_pipeline_testing.scale_out", "--day", day, *args]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds


def base_env(bootstrap: str, prefix: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEASUREMENT_STORE", "RECOMMENDER_", "CELERY_"))}
    home.mkdir(parents=True)
    env.update(
        DAGSTER_HOME=str(home),
        KAFKA_CREDENTIALS=json.dumps([{"kafka_cluster_id": "local", "bootstrap.servers": bootstrap}]),
        TOPIC_FILTER=f"{prefix}.small.",
        SAMPLING_DAYS="1",
        MAX_WORKERS_PER_CLUSTER=str(CHUNKS),
        USE_SAMPLE_RECORDS="true",
    )
    return env


def embedded(bootstrap: str, prefix: str, workdir: Path, day: str) -> dict:
    home = workdir / "embedded_home"
    env = base_env(bootstrap, prefix, home)
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    env["MEASUREMENT_STORE_PATH"] = str(workdir / "embedded.duckdb")
    outcome, seconds = measure(env, workdir, day)
    return {"tier": "embedded multiprocess (2 cores)", "wall_seconds": round(seconds, 1)} | run_figures(
        home, outcome["run_id"], None
    )


def celery(bootstrap: str, prefix: str, workdir: Path, day: str, workers: int, pg: str, redis: str) -> dict:
    admin = sa.create_engine(sa.make_url(pg).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    schemas = {role: f"bench_{role}_{uuid.uuid4().hex[:8]}" for role in ("dagster", "store")}
    with admin.connect() as connection:
        for schema in schemas.values():
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        connection.commit()
    home = workdir / f"celery{workers}_home"
    env = base_env(bootstrap, prefix, home)
    (home / "dagster.yaml").write_text((REPO / "deploy" / "postgres" / "dagster.yaml").read_text())
    psycopg2_url = pg.replace("postgresql://", "postgresql+psycopg2://")  # dagster-postgres needs psycopg2
    pg_dagster = f"{psycopg2_url}?options=-csearch_path%3D{schemas['dagster']}"
    env.update(
        DAGSTER_PG_URL=pg_dagster,
        MEASUREMENT_STORE_URL=f"{pg}?options=-csearch_path%3D{schemas['store']}",
        RECOMMENDER_EXECUTOR="celery",
        RECOMMENDER_EXECUTOR_CONFIG=str(REPO / "deploy" / "celery" / "executor.yaml"),
        CELERY_BROKER_URL=f"{redis}/8",
        CELERY_BACKEND_URL=f"{redis}/9",
    )
    pool = Workers(env, workdir)
    try:
        for index in range(workers):
            pool.start(f"bench{workers}-{index}")
        pool.wait_ready(120)
        outcome, seconds = measure(env, workdir, day)
    finally:
        pool.stop()
    figures = run_figures(home, outcome["run_id"], pg_dagster)
    with admin.connect() as connection:
        for schema in schemas.values():
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        connection.commit()
    admin.dispose()
    return {"tier": f"celery, {workers} worker(s) x 1 slot", "wall_seconds": round(seconds, 1)} | figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--topics", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = [name for name in ("postgres-local", "redis-local") if script(name, "status").returncode != 0]
    pg = script("postgres-local", "start").stdout.strip().splitlines()[-1]
    redis = script("redis-local", "start").stdout.strip().splitlines()[-1].rsplit("/", 1)[0]
    cluster = Cluster(args.bootstrap)
    prefix = f"so{uuid.uuid4().hex[:6]}"
    names = [small_topic_name(prefix, i) for i in range(args.topics)]
    day = utc_today() - timedelta(days=1)
    results = []
    try:
        create_topics(cluster.admin, names, SMALL_PARTITIONS)
        records = produce_small_topics(cluster, names, day, seed=7)
        print(f"{args.topics:,} topics x {SMALL_PARTITIONS} partitions, {records:,} records on {day}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            results.append(embedded(args.bootstrap, prefix, Path(tmp), day.isoformat()))
            print(json.dumps(results[-1]), flush=True)
            for workers in args.workers:
                results.append(celery(args.bootstrap, prefix, Path(tmp), day.isoformat(), workers, pg, redis))
                print(json.dumps(results[-1]), flush=True)
    finally:
        delete_topics(cluster.admin, names)
        for name in started:
            script(name, "stop")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
