"""The one command: measure what the window still lacks (missing, open or failed topic-days), then recommend.

    recommender-pipeline [--day YYYY-MM-DD] [--backfill-days N] [--force] [--in-process] [--top N] [--all]

Every step is a Dagster run on the instance in `DAGSTER_HOME` (default `.local/dagster_home`),
so the runs, their logs and the materialized partitions are all visible in the Dagster UI.
Exit code 0 when every run succeeded, 1 when a run failed (the reports are still written when
the failure is limited to some topics or clusters) or the store cannot be used, 2 for a
configuration error (also a `--day` in the future or before Dagster's rolling history), and 130
when interrupted (Ctrl-C): the command stops after the current run, which Dagster marks failed,
and writes no report from a window it did not finish. SIGTERM (a scheduler, `kill`, `timeout`)
is handled as Ctrl-C, so the API keys a run created are deleted before the command exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import date, timedelta

import pandas as pd

from recommender_pipeline.assets.partitions import (
    HISTORY_DAYS,
    history_start,
)
from recommender_pipeline.command import orphans
from recommender_pipeline.command.digest import digest
from recommender_pipeline.command.instance import open_instance
from recommender_pipeline.command.runs import CommandOptions, run_recommendations
from recommender_pipeline.command.stop_signals import StopSignals
from recommender_pipeline.days import utc_today
from recommender_pipeline.errors import ConfigurationError, RecommenderError, StoreError
from recommender_pipeline.resources import build_resources
from recommender_pipeline.settings import Settings, load_settings, unknown_variable_warnings


def check_before_running(settings: Settings, end_day: date, backfill_days: int) -> str | None:
    """What makes this command unable to run, as one line, before any work is done."""
    if end_day > utc_today():
        return f"--day {end_day} is in the future (today is {utc_today()} UTC): nothing can be measured yet"
    first = end_day - timedelta(days=settings.sampling_days + backfill_days - 2)
    if first.isoformat() < history_start():
        return (
            f"the window reaches back to {first}, before Dagster's rolling history starts on {history_start()} "
            f"(partitions.HISTORY_DAYS={HISTORY_DAYS}): lower SAMPLING_DAYS or --backfill-days, or choose a later --day"
        )
    if not (
        settings.kafka_credentials or settings.kafka_api_secret_paths or settings.use_cloud_api_for_kafka_credentials
    ):
        return (
            "KAFKA_CREDENTIALS: no Kafka cluster to analyse; set KAFKA_CREDENTIALS, or KAFKA_API_SECRET_PATHS "
            "with USE_AWS_SECRETS_MANAGER, or USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS"
        )
    try:
        settings.reports_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=settings.reports_dir).close()
    except OSError as error:
        return f"REPORTS_DIR: {settings.reports_dir} is not writable ({error.strerror}); choose a writable folder"
    return None


def _terminal_table(detail_path: str) -> str:
    """The detail report's key columns, as a person reads them in a terminal (`--all`)."""
    detail = pd.read_csv(detail_path, keep_default_na=False)
    columns = {
        "topic_name": "topic",
        "number_of_partitions": "now",
        "recommended_partitions": "recommended",
        "action": "action",
        "peak_ingress_bytes_per_sec": "peak B/s",
        "binding": "binding",
        "status": "status",
    }
    table = detail[list(columns)].rename(columns=columns)
    return table.to_string(index=False, float_format=lambda value: f"{value:,.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recommender-pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", type=date.fromisoformat, default=None, help="window end day (UTC), default today")
    parser.add_argument("--in-process", action="store_true", help="measure in one process (no step processes)")
    parser.add_argument(
        "--backfill-days",
        type=int,
        default=1,
        metavar="N",
        help="recommend for each of the N days ending on --day, measuring whatever their windows miss",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-measure every topic-day of the window, replacing what is stored (default: only what is missing)",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=10,
        metavar="N",
        help="list the N topics with the most partitions to add (then the busiest) per cluster, default 10",
    )
    parser.add_argument("--all", action="store_true", help="also print every topic's line (the full table)")
    args = parser.parse_args(argv)
    orphans.mark_as_the_command()  # before any step process: they end when this process does
    # One "planned" event per run rather than one per topic-day: the command creates runs of
    # thousands of topic-days (README, "Scaling out": what the Partitions tab shows instead).
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    with StopSignals() as stop_signals:
        try:
            return _main(args, stop_signals)
        except KeyboardInterrupt:  # before any run (waiting for a locked store, say): nothing changed
            print("interrupted: stopped before any run; nothing was measured or written", file=sys.stderr)
            return 130


def _main(args: argparse.Namespace, stop_signals: StopSignals) -> int:
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(error, file=sys.stderr)
        return 2
    for warning in unknown_variable_warnings(".env"):  # a misspelt variable is otherwise silently ignored
        print(warning, file=sys.stderr)
    end_day = args.day or utc_today()
    problem = check_before_running(settings, end_day, max(args.backfill_days, 1))
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        resources = build_resources(".env")
        resources["store"].check()
    except StoreError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    try:
        with open_instance(log=lambda line: print(line, file=sys.stderr)) as instance:
            options = CommandOptions(
                end_day,
                backfill_days=max(args.backfill_days, 1),
                force=args.force,
                in_process=args.in_process,
                progress=lambda line: print(line, flush=True),
                stop_requested=stop_signals.requested,
            )
            outcome = run_recommendations(instance, settings, options, resources)
    except RecommenderError as error:  # credentials, the Confluent Cloud API, the store: say which
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: stopped after the current run; what it stored is kept, no report written", file=sys.stderr)
        return 130
    measured = ", ".join(outcome.measured_days) or ("none" if outcome.inventory_failed else "none (all stored)")
    print(f"window ending {end_day}: measured days {measured}")
    if len(outcome.recommended_days) > 1:
        print(f"recommended for {len(outcome.recommended_days)} days in {outcome.runs} runs")
    if outcome.refreshed_days:
        print(f"brought up to date, their windows gained measurements: {', '.join(outcome.refreshed_days)}")
    for path in outcome.reports:  # the digest per cluster, then where the files are
        if path.endswith("-detail-report.csv"):
            print("\n".join(digest(pd.read_csv(path), top=max(args.top, 0))))
            if args.all:
                print(_terminal_table(path))
    for path in outcome.reports:
        print(f"report: {path}")
    for path in outcome.changes:
        print(f"changes: {path}")
    if outcome.provisioning is not None:
        created, deleted = outcome.provisioning.created_keys, outcome.provisioning.deleted_keys
        print(f"API keys: {len(created)} created, {len(deleted)} deleted")
    for run in outcome.failed_runs:
        print(f"FAILED: {run}", file=sys.stderr)
    return 0 if outcome.success else 1


if __name__ == "__main__":
    sys.exit(main())
