"""The many-small day (N topics x 3 partitions x 10 records) on the embedded tier and through the
scale-out tier (PostgreSQL + Celery) on one worker and on two: the figures behind the README's
scale model.

    .venv/bin/python -m benchmarks.scale_out --bootstrap 127.0.0.1:19092 [--topics 2000] [--workers 1 2] \
        [--records-per-chunk N] [--json out.json]

Starts scripts/postgres-local and scripts/redis-local when they are not running (and stops what it
started), gives every run its own PostgreSQL schemas and DAGSTER_HOME, and prints, per tier: the
wall time of inventory + measurement run beside the limit measured in the same run (a plain
consumer reading the same offsets), the run's time, the chunk steps' span, the topic-day
materializations and the event-log rows with their rate, and the peak memory of the process tree.
Exit 1 when a stored count differs from the truth, never for speed.
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
from datetime import date, timedelta
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
    raw_read,
    read_store,
    small_topic_name,
)
from recommender_pipeline.days import utc_today
from recommender_pipeline_testing.pipeline import REPO
from recommender_pipeline_testing.scale_out import Workers

CHUNKS = 4  # MAX_WORKERS_PER_CLUSTER: the same chunks for every tier


def script(name: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "scripts" / name), command], stdout=subprocess.PIPE, text=True)


def run_figures(home: Path, run_id: str, pg_url: str | None) -> dict:
    """Steps, event-log rows and times of one measurement run, read back from its instance."""
    if pg_url:
        os.environ["DAGSTER_PG_URL"] = pg_url
    os.environ["DAGSTER_HOME"] = str(home)  # the embedded event log storage is found through it
    with dg.DagsterInstance.from_config(str(home)) as instance:
        stats = instance.get_run_stats(run_id)
        steps = instance.get_run_step_stats(run_id)
        chunks = [step for step in steps if "measure_topic_chunk" in step.step_key]
        run_seconds = (stats.end_time or 0) - (stats.start_time or 0)
        materialized = len(instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
        rows = len(instance.all_logs(run_id))
        return {
            "topic_day_materializations": materialized,
            "event_log_rows_per_sec": round(rows / run_seconds, 1) if run_seconds else None,
            "run_seconds": round((stats.end_time or 0) - (stats.start_time or 0), 1),
            "steps": len(steps),
            "event_log_rows": len(instance.all_logs(run_id)),
            "chunk_span_seconds": round(max(s.end_time for s in chunks) - min(s.start_time for s in chunks), 1),
            "chunk_seconds": sorted(round(s.end_time - s.start_time, 1) for s in chunks),
        }


def tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and every process below it, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    return sum(rss.get(pid, 0) for pid in tree)


def measure(env: dict[str, str], workdir: Path, day: str, *args: str) -> tuple[dict, float, int]:
    """Inventory and one measurement run in their own process; its outcome, wall time and the
    peak memory of its process tree (sampled every 0.5 s)."""
    command = [sys.executable, "-m", "recommender_pipeline_testing.scale_out", "--day", day, *args]
    started = time.perf_counter()
    # Files, not pipes: a pipe nobody reads until the end fills and stops the run's logging.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with subprocess.Popen(command, env=env, cwd=workdir, stdout=out, stderr=err) as process:
            peak = 0
            while process.poll() is None:
                peak = max(peak, tree_rss_bytes(process.pid))
                time.sleep(0.5)
        seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(err.read().decode()[-3000:])
        return json.loads(out.read().decode().strip().splitlines()[-1]), seconds, peak


def base_env(bootstrap: str, prefix: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEASUREMENT_STORE", "RECOMMENDER_", "CELERY_"))}
    home.mkdir(parents=True)
    env.update(
        DAGSTER_HOME=str(home),
        KAFKA_CREDENTIALS=json.dumps([{"kafka_cluster_id": "local", "bootstrap.servers": bootstrap}]),
        TOPIC_FILTER=f"{prefix}.small.",
        SAMPLING_DAYS="1",
        MAX_WORKERS_PER_CLUSTER=str(CHUNKS),
        RECORDS_PER_CHUNK=os.environ.get("RECORDS_PER_CHUNK", "2000000"),
        USE_SAMPLE_RECORDS="true",
    )
    return env


def embedded(bootstrap: str, prefix: str, workdir: Path, day: str) -> dict:
    home = workdir / "embedded_home"
    env = base_env(bootstrap, prefix, home)
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    env["MEASUREMENT_STORE_PATH"] = str(workdir / "embedded.duckdb")
    outcome, seconds, peak = measure(env, workdir, day)
    tier = {"tier": "embedded: SQLite, DuckDB, multiprocess", "wall_seconds": round(seconds, 1)}
    return tier | {"peak_memory_mib": round(peak / 2**20)} | run_figures(home, outcome["run_id"], None)


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
        outcome, seconds, peak = measure(env, workdir, day)
    finally:
        pool.stop()
    figures = run_figures(home, outcome["run_id"], pg_dagster)
    with admin.connect() as connection:
        for schema in schemas.values():
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        connection.commit()
    admin.dispose()
    tier = {"tier": f"PostgreSQL + Celery, {workers} worker(s) x 1 slot", "wall_seconds": round(seconds, 1)}
    return tier | {"peak_memory_mib": round(peak / 2**20)} | figures


def exact_rows(store: Path, day: str, truth: dict) -> int:
    """How many of the day's stored rows (DuckDB store) equal the raw read's records and bytes."""
    stored = read_store(store, date.fromisoformat(day))
    return sum(
        1
        for topic, expected in truth.items()
        if topic in stored and (stored[topic]["records"], stored[topic]["bytes"]) == (expected.records, expected.bytes)
    )


def print_table(results: list[dict], raw_seconds: float, topics: int) -> None:
    print(f"\nmany-small day: {topics:,} topics x {SMALL_PARTITIONS} partitions; raw consumer {raw_seconds:.1f} s")
    header = ("tier", "wall s", "x raw", "run s", "chunks", "topic-days", "events/s", "rows", "peak MiB")
    print(" | ".join(header))
    for r in results:
        cells = (
            r["tier"],
            f"{r['wall_seconds']:.1f}",
            f"{r['wall_seconds'] / raw_seconds:.1f}x",
            f"{r['run_seconds']:.1f}",
            str(len(r["chunk_seconds"])),
            f"{r['topic_day_materializations']:,}",
            f"{r['event_log_rows_per_sec']:,.0f}",
            f"{r['event_log_rows']:,}",
            f"{r['peak_memory_mib']:,}",
        )
        print(" | ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--topics", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="Celery tiers; none: embedded only")
    parser.add_argument("--records-per-chunk", type=int, default=2_000_000, help="RECORDS_PER_CHUNK of every tier")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ["RECORDS_PER_CHUNK"] = str(args.records_per_chunk)
    started = [name for name in ("postgres-local", "redis-local") if script(name, "status").returncode != 0]
    if args.workers:
        pg = script("postgres-local", "start").stdout.strip().splitlines()[-1]
        redis = script("redis-local", "start").stdout.strip().splitlines()[-1].rsplit("/", 1)[0]
    cluster = Cluster(args.bootstrap)
    prefix = f"so{uuid.uuid4().hex[:6]}"
    names = [small_topic_name(prefix, i, width=len(str(args.topics - 1))) for i in range(args.topics)]
    day = utc_today() - timedelta(days=1)
    results: list[dict] = []
    failures: list[str] = []
    try:
        create_topics(cluster.admin, names, SMALL_PARTITIONS)
        records = produce_small_topics(cluster, names, day, seed=7)
        print(f"{args.topics:,} topics x {SMALL_PARTITIONS} partitions, {records:,} records on {day}", flush=True)
        raw = raw_read(cluster, dict.fromkeys(names, SMALL_PARTITIONS), day)
        print(f"raw consumer: {raw.seconds:.1f} s for the same offsets", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            results.append(embedded(args.bootstrap, prefix, Path(tmp), day.isoformat()))
            exact = exact_rows(Path(tmp) / "embedded.duckdb", day.isoformat(), raw.truth)
            if exact != args.topics:
                failures.append(f"embedded: {args.topics - exact} stored rows differ from the raw read")
            print(json.dumps(results[-1]), flush=True)
            for workers in args.workers:
                results.append(celery(args.bootstrap, prefix, Path(tmp), day.isoformat(), workers, pg, redis))
                print(json.dumps(results[-1]), flush=True)
        for result in results:
            if result["topic_day_materializations"] != args.topics:
                failures.append(f"{result['tier']}: {result['topic_day_materializations']} topic-days recorded")
    finally:
        delete_topics(cluster.admin, names)
        for name in started:
            script(name, "stop")
    print_table(results, raw.seconds, args.topics)
    if args.json:
        args.json.write_text(
            json.dumps({"raw_seconds": raw.seconds, "topics": args.topics, "tiers": results}, indent=2)
        )
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
