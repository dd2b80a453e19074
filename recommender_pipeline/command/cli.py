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
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import dagster as dg
import pandas as pd

from recommender_pipeline import definitions
from recommender_pipeline.assets.measurements import topic_work
from recommender_pipeline.assets.partitions import (
    HISTORY_DAYS,
    history_start,
    split_topic_key,
    topic_key,
    topics_partitions,
)
from recommender_pipeline.command import console, orphans
from recommender_pipeline.command.digest import digest
from recommender_pipeline.command.instance import command_tags, open_instance
from recommender_pipeline.command.progress import MeasurementProgress
from recommender_pipeline.command.stop_signals import StopSignals
from recommender_pipeline.errors import ConfigurationError, RecommenderError, StoreError
from recommender_pipeline.measuring.days import utc_today, window_days
from recommender_pipeline.orchestration.freshness import stale_days
from recommender_pipeline.orchestration.jobs import (
    FORCE_TAG,
    FORCE_VALUE,
    IN_PROCESS_RUN_CONFIG,
    day_range_tags,
    measurement_run_config,
)
from recommender_pipeline.resources import build_resources
from recommender_pipeline.resources.kafka_credentials import Provisioning, provisioned_credentials
from recommender_pipeline.settings import Settings, load_settings, unknown_variable_warnings

# Progress (per-topic lines, counts) without Dagster's per-event debug lines.
INTERRUPT_EVENT_TYPES = {
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.ENGINE_EVENT,
}


@dataclass
class Outcome:
    day: date
    measured_days: list[str] = field(default_factory=list)
    recommended_days: list[str] = field(default_factory=list)
    refreshed_days: list[str] = field(default_factory=list)  # earlier days whose window this run changed
    runs: int = 0
    failed_runs: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # the ready-made partition changes of the last day
    provisioning: Provisioning | None = None
    inventory_failed: bool = False  # for some cluster at least: what it lists was not refreshed

    @property
    def success(self) -> bool:
        return not self.failed_runs


def _interrupted(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a run ended because of an interrupt: Dagster says so in its failure events."""
    records = instance.get_records_for_run(run_id, of_type=INTERRUPT_EVENT_TYPES).records
    return any("interrupt" in (record.event_log_entry.message or "").lower() for record in records)


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


def _topic_range(instance: dg.DagsterInstance, clusters: set[str]) -> tuple[str, str] | None:
    """First and last topic keys: a run's range over the topic dimension covers them all."""
    keys = instance.get_dynamic_partitions(topics_partitions.name)
    if not any(split_topic_key(key)[0] in clusters for key in keys):
        return None
    return keys[0], keys[-1]


def run_recommendations(
    instance: dg.DagsterInstance,
    settings: Settings,
    end_day: date,
    in_process: bool = False,
    env_file: str = ".env",
    backfill_days: int = 1,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    resources: dict | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Inventory, the missing measurement days (one run per day), then the day's recommendations.
    `progress`, when given, receives a line per measuring chunk finished (`progress.py`);
    `resources`, when given, are those the caller already built from `env_file`;
    `stop_requested` says whether Ctrl-C or SIGTERM arrived (`stop_signals.py`), so that a signal
    a run swallowed still stops the command after that run.

    With `USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS`, the Kafka API keys live exactly
    as long as this call: created first, deleted last, also when something fails.
    """
    resources = resources or build_resources(env_file)
    credentials = (
        provisioned_credentials(settings, resources["cloud"])
        if settings.use_cloud_api_for_kafka_credentials
        else contextlib.nullcontext()
    )
    with credentials as provisioning:
        outcome = Outcome(end_day, provisioning=provisioning)
        for cluster_id, reason in provisioning.failed.items() if provisioning else ():
            outcome.failed_runs.append(f"credentials for {cluster_id}: {reason}")
        return _run(
            instance, settings, end_day, in_process, resources, outcome, backfill_days, force, progress, stop_requested
        )


def _run(
    instance: dg.DagsterInstance,
    settings: Settings,
    end_day: date,
    in_process: bool,
    resources: dict,
    outcome: Outcome,
    backfill_days: int,
    force: bool,
    progress: Callable[[str], None] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> Outcome:
    def execute(factory, run_config: dict | None = None, **kwargs) -> tuple[list[str], list[str]]:
        """Runs a job; returns the paths of the reports and of the changes it wrote. Raises
        KeyboardInterrupt when the run was interrupted (Dagster catches it inside the run), or
        when a stop was requested while it ran, whatever the run made of it."""
        with dg.execute_job(
            dg.reconstructable(factory),
            instance=instance,
            raise_on_error=False,
            run_config={**(run_config or {}), **console.RUN_CONFIG},
            tags={**kwargs.pop("tags", {}), **command_tags()},
            **kwargs,
        ) as result:
            outcome.runs += 1
            if not result.success:
                outcome.failed_runs.append(f"{result.job_def.name} ({result.run_id[:8]}): {_cause(result)}")
            if stop_requested() or (not result.success and _interrupted(instance, result.run_id)):
                raise KeyboardInterrupt
            return tuple(
                [
                    path
                    for event in result.get_asset_materialization_events()
                    if event.asset_key == dg.AssetKey(asset)
                    for path in event.materialization.metadata["paths"].value
                ]
                for asset in ("reports", "partition_changes")
            )

    failed_before = len(outcome.failed_runs)
    execute(definitions.get_inventory_job)
    outcome.inventory_failed = len(outcome.failed_runs) > failed_before
    connections = resources["kafka"].connections()
    key_range = _topic_range(instance, set(connections))
    if key_range is None:
        return outcome
    clusters = len(connections)
    multiprocess = measurement_run_config(
        min(clusters, settings.max_cluster_workers) * settings.max_workers_per_cluster
    )
    # Every recommended day needs its whole window: measure back SAMPLING_DAYS - 1 more days.
    tags = {FORCE_TAG: FORCE_VALUE} if force else {}
    store = resources["store"]
    inventory = store.read_inventory()
    for day in store.days_to_capture(end_day, settings.sampling_days + backfill_days - 1, force):
        pending = _pending(store, inventory, day, force)
        totals = {cluster_id: len(reads) for cluster_id, reads in pending.items()}
        # A day one chunk reads runs in this process: step processes cost more than they save.
        small = _records_to_read(store, inventory, day, pending) <= settings.records_per_chunk
        with MeasurementProgress(instance, day.isoformat(), totals if progress else {}, emit=progress) as watch:
            execute(
                definitions.get_measurement_job,
                run_config=IN_PROCESS_RUN_CONFIG if in_process or small else multiprocess,
                tags={**day_range_tags(day.isoformat(), key_range, set(connections)), **tags, **watch.tags},
            )
        outcome.measured_days.append(day.isoformat())
    for day in window_days(end_day, backfill_days):
        outcome.reports, changes = execute(
            definitions.get_recommendation_job, tags={"dagster/partition": day.isoformat()}
        )
        outcome.changes = changes or outcome.changes
        outcome.recommended_days.append(day.isoformat())
    # Earlier recommendations whose window this run's measurements changed follow it.
    for day in stale_days(instance, store, settings.sampling_days, utc_today()):
        if day.isoformat() not in outcome.recommended_days:
            execute(definitions.get_recommendation_job, tags={"dagster/partition": day.isoformat()})
            outcome.refreshed_days.append(day.isoformat())
    return outcome


def _cause(result: dg.ExecuteJobResult) -> str:
    """A failed run's cause in one line: its first failed step's error, without Dagster's frames."""
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
                error = error.cause  # the op's own error, not Dagster's wrapper around it
            message = " ".join(error.message.split())
            if error.cls_name == "Failure":  # the op's own words: no need for Dagster's class name
                message = message.split("Failure: ", 1)[-1]
            return f"step {event.step_key}: {message[:400]}"
    return "see the Dagster UI or `dagster run list`"


def _pending(store, inventory: pd.DataFrame, day: date, force: bool) -> dict[str, dict[str, int]]:
    """Per cluster, the topics of `day` the measurement run will capture (and where each starts)."""
    topics = {cluster_id: list(names) for cluster_id, names in inventory.groupby("cluster_id")["topic"]}
    return store.pending_reads(day, topics, force)


def _records_to_read(store, inventory: pd.DataFrame, day: date, pending: dict[str, dict[str, int]]) -> float:
    """About how many records measuring the pending topics of `day` reads (`topic_work`)."""
    work = topic_work(inventory, store.recent_reads(day.isoformat()))
    return sum(work.get(topic_key(cluster_id, topic), 0.0) for cluster_id, reads in pending.items() for topic in reads)


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
            outcome = run_recommendations(
                instance,
                settings,
                end_day,
                in_process=args.in_process,
                backfill_days=max(args.backfill_days, 1),
                force=args.force,
                progress=lambda line: print(line, flush=True),
                resources=resources,
                stop_requested=stop_signals.requested,
            )
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
