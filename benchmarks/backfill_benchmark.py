"""Wall time and run count of a 7-day backfill for 50 topics, through Dagster, on the local broker.

Produces `--days + SAMPLING_DAYS - 1` days of hourly traffic on `--topics` topics, then runs
`recommender-pipeline --backfill-days 7` (the multiprocess executor, as users run it) on a fresh
instance and store, and prints the runs, their kinds and the wall time.

    scripts/kafka-local start
    .venv/bin/python -m benchmarks.backfill_benchmark [--topics 50] [--days 7]
"""

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from recommender_pipeline.command.runs import CommandOptions, run_recommendations
from recommender_pipeline.settings import load_settings
from recommender_pipeline_testing.known_truth import records_in_hour
from recommender_pipeline_testing.workloads import send_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--sampling-days", type=int, default=7)
    parser.add_argument("--records-per-hour", type=int, default=10)
    parser.add_argument("--workers-per-cluster", type=int, default=2)
    args = parser.parse_args()

    prefix = f"backfill-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}.t{i:02d}" for i in range(args.topics)]
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for future in admin.create_topics(
        [NewTopic(name, 3, 1, config={"retention.ms": "-1"}) for name in names], operation_timeout=60
    ).values():
        future.result()
    today = datetime.now(UTC).date()
    history = args.days + args.sampling_days - 1
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 20})
    produced = 0
    for back in range(history - 1, 0, -1):  # closed days only, so every number is final
        day = today - timedelta(days=back)
        for name in names:
            for hour in range(24):
                produced += send_records(
                    producer,
                    name,
                    records_in_hour(day, hour, args.records_per_hour, lambda i: (None, b"x" * 100, []), 3),
                )
    producer.flush(120)
    print(f"produced {produced:,} records on {args.topics} topics over {history - 1} closed days")

    workdir = Path(tempfile.mkdtemp(prefix="backfill-benchmark-"))
    os.environ.update(
        KAFKA_CREDENTIALS=f'[{{"kafka_cluster_id": "local", "bootstrap.servers": "{args.bootstrap}"}}]',
        TOPIC_FILTER=prefix,
        SAMPLING_DAYS=str(args.sampling_days),
        SAMPLING_BATCH_SIZE="",
        MAX_WORKERS_PER_CLUSTER=str(args.workers_per_cluster),
        REPORTS_DIR=str(workdir / "reports"),
        MEASUREMENT_STORE_PATH=str(workdir / "store.duckdb"),
    )
    (workdir / "home").mkdir()
    (workdir / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    end_day = today - timedelta(days=1)
    started = time.perf_counter()
    with dg.DagsterInstance.from_config(str(workdir / "home")) as instance:
        options = CommandOptions(end_day, backfill_days=args.days)
        outcome = run_recommendations(instance, load_settings(str(workdir / "none.env")), options)
        runs = instance.get_runs()
    elapsed = time.perf_counter() - started
    print()
    print(f"backfill of {args.days} days x {args.topics} topics (SAMPLING_DAYS={args.sampling_days}):")
    print(f"  wall time          {elapsed:8.1f} s")
    print(f"  runs               {outcome.runs:8d}  ({len(runs)} in the instance)")
    print(f"  measurement runs   {len(outcome.measured_days):8d}  (one per day, all topics)")
    print(f"  recommendation runs{len(outcome.recommended_days):8d}  (one per day)")
    print(f"  seconds per run    {elapsed / max(outcome.runs, 1):8.1f}")
    print(f"  success            {outcome.success!s:>8}")


if __name__ == "__main__":
    main()
