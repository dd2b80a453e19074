"""Topic-day materializations written per second, on both instance storages: one event at a time
(how the project recorded a topic-day before issue 20) against one batch per chunk
(`orchestration/materializations.py`). No broker: a job that records N topic-days, each with the
17 metadata entries a real topic-day carries.

    .venv/bin/python -m benchmarks.event_writes [--topic-days 2000] [--storage sqlite postgres] [--json out.json]

PostgreSQL is scripts/postgres-local (started when not running, stopped when this started it),
each storage in a schema or folder of its own. Prints events/s and the ratio of the batched to
the one-at-a-time write; exits 1 when a run loses a topic-day, never for speed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from recommender_pipeline.command.instance import instance_yaml
from recommender_pipeline.orchestration.materializations import record_in_batches
from recommender_pipeline_testing.instances import postgres_dagster_instance
from recommender_pipeline_testing.pipeline import REPO

ASSET = dg.AssetKey("benchmark_topic_days")


def topic_days(count: int) -> list[dg.AssetMaterialization]:
    """`count` topic-days of one day, each with a real topic-day's 17 metadata entries."""
    return [
        dg.AssetMaterialization(
            ASSET,
            partition=f"2026-03-01|local/t{index:06d}",
            metadata={
                "status": "measured",
                "method": "sampling_records",
                "records": index,
                "bytes": index * 200,
                "mean_record_bytes": 200.0,
                "avg_ingress_bytes_per_sec": 1.5,
                "peak_ingress_bytes_per_sec": 9.25,
                "partition_skew": 1.1,
                "exact": True,
                "partial": False,
                "late_records": 0,
                "hours_captured": "c" * 24,
                "reason": "",
                "bytes_ci_low": 1.0,
                "bytes_ci_high": 2.0,
                "peak_ci_low": 3.0,
                "peak_ci_high": 4.0,
            },
        )
        for index in range(count)
    ]


@dg.op(config_schema={"count": int, "batched": bool})
def record(context: dg.OpExecutionContext):
    events = topic_days(context.op_config["count"])
    if context.op_config["batched"]:
        record_in_batches(context, events)
    else:
        yield from events  # one event, one write, as before issue 20
    yield dg.Output(None)


@dg.job
def write_job() -> None:
    record()


def timed_write(instance: dg.DagsterInstance, count: int, batched: bool) -> float:
    config = {"ops": {"record": {"config": {"count": count, "batched": batched}}}}
    started = time.perf_counter()
    result = write_job.execute_in_process(instance=instance, run_config=config)
    seconds = time.perf_counter() - started
    written = len(instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
    if not result.success or written != count:
        raise RuntimeError(f"{written} of {count} topic-days recorded")
    return seconds


@contextmanager
def sqlite_instance() -> Iterator[dg.DagsterInstance]:
    with tempfile.TemporaryDirectory() as home:
        os.environ["DAGSTER_HOME"] = home
        Path(home, "dagster.yaml").write_text(instance_yaml(Path(home)))
        with dg.DagsterInstance.from_config(home) as instance:
            yield instance


@contextmanager
def postgres_instance() -> Iterator[dg.DagsterInstance]:
    script = str(REPO / "scripts" / "postgres-local")
    was_running = subprocess.run([script, "status"], stdout=subprocess.DEVNULL).returncode == 0
    url = subprocess.run([script, "start"], check=True, stdout=subprocess.PIPE, text=True).stdout.split()[-1]
    try:
        with postgres_dagster_instance(url) as instance:
            yield instance
    finally:
        if not was_running:
            subprocess.run([script, "stop"], check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topic-days", type=int, default=2000)
    parser.add_argument("--storage", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)  # as in a fresh step process: the op sets it
    results = []
    print(f"{args.topic_days:,} topic-day materializations, 17 metadata entries each")
    print(f"{'storage':<10} {'one at a time':>15} {'one batch':>12} {'events/s (batch)':>17} {'speed-up':>9}")
    for storage in args.storage:
        opened = sqlite_instance if storage == "sqlite" else postgres_instance
        with opened() as instance:
            single = timed_write(instance, args.topic_days, batched=False)
            batch = timed_write(instance, args.topic_days, batched=True)
        rate = args.topic_days / batch
        results.append({"storage": storage, "single_seconds": single, "batch_seconds": batch, "events_per_sec": rate})
        print(f"{storage:<10} {single:>13.1f} s {batch:>10.2f} s {rate:>17,.0f} {single / batch:>8.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"topic_days": args.topic_days, "storages": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
