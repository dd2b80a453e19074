"""The command's Dagster runs: the inventory, one measurement run per day the window still
lacks, then the recommendations of each day asked for and of earlier days whose window changed.

`run_recommendations` takes one `CommandOptions` value, so that a flag cannot be passed in the
place of another; `CommandRuns` executes the runs on one instance and keeps their `Outcome`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
import pandas as pd

from recommender_pipeline import definitions
from recommender_pipeline.assets.measurements import topic_work
from recommender_pipeline.assets.partitions import split_topic_key, topic_key, topics_partitions
from recommender_pipeline.assets.run_tags import FORCE_TAG, FORCE_VALUE, day_range_tags
from recommender_pipeline.command import console
from recommender_pipeline.command.instance import command_tags
from recommender_pipeline.command.progress import MeasurementProgress
from recommender_pipeline.days import utc_today, window_days
from recommender_pipeline.orchestration.freshness import stale_days
from recommender_pipeline.orchestration.jobs import IN_PROCESS_RUN_CONFIG, measurement_run_config
from recommender_pipeline.resources import build_resources
from recommender_pipeline.resources.kafka_credentials import Provisioning, provisioned_credentials
from recommender_pipeline.settings import Settings

# The events in which Dagster says that a run ended because of an interrupt.
INTERRUPT_EVENT_TYPES = {
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.ENGINE_EVENT,
}


@dataclass(frozen=True)
class CommandOptions:
    """What one command asks for. `progress` receives a line per measuring chunk finished
    (`progress.py`); `stop_requested` says whether Ctrl-C or SIGTERM arrived (`stop_signals.py`),
    so that a signal a run swallowed still stops the command after that run."""

    end_day: date
    backfill_days: int = 1
    force: bool = False
    in_process: bool = False
    env_file: str = ".env"
    progress: Callable[[str], None] | None = None
    stop_requested: Callable[[], bool] = lambda: False


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


def run_recommendations(
    instance: dg.DagsterInstance, settings: Settings, options: CommandOptions, resources: dict | None = None
) -> Outcome:
    """Inventory, the missing measurement days (one run per day), then the day's recommendations.
    `resources`, when given, are those the caller already built from `options.env_file`.

    With `USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS`, the Kafka API keys live exactly
    as long as this call: created first, deleted last, also when something fails.
    """
    resources = resources or build_resources(options.env_file)
    credentials = (
        provisioned_credentials(settings, resources["cloud"])
        if settings.use_cloud_api_for_kafka_credentials
        else contextlib.nullcontext()
    )
    with credentials as provisioning:
        outcome = Outcome(options.end_day, provisioning=provisioning)
        for cluster_id, reason in provisioning.failed.items() if provisioning else ():
            outcome.failed_runs.append(f"credentials for {cluster_id}: {reason}")
        runs = CommandRuns(instance, settings, options, resources, outcome)
        if runs.inventory():
            runs.measure()
            runs.recommend()
        return outcome


@dataclass
class CommandRuns:
    """The runs of one command on one instance, and what they made (`outcome`)."""

    instance: dg.DagsterInstance
    settings: Settings
    options: CommandOptions
    resources: dict
    outcome: Outcome
    key_range: tuple[str, str] | None = None

    def execute(self, factory, run_config: dict | None = None, **kwargs) -> tuple[list[str], list[str]]:
        """Runs a job; returns the paths of the reports and of the changes it wrote. Raises
        KeyboardInterrupt when the run was interrupted (Dagster catches it inside the run), or
        when a stop was requested while it ran, whatever the run made of it."""
        with dg.execute_job(
            dg.reconstructable(factory),
            instance=self.instance,
            raise_on_error=False,
            run_config={**(run_config or {}), **console.RUN_CONFIG},
            tags={**kwargs.pop("tags", {}), **command_tags()},
            **kwargs,
        ) as result:
            self.outcome.runs += 1
            if not result.success:
                self.outcome.failed_runs.append(f"{result.job_def.name} ({result.run_id[:8]}): {cause(result)}")
            if self.options.stop_requested() or (not result.success and _interrupted(self.instance, result.run_id)):
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

    def inventory(self) -> bool:
        """The inventory run; whether any topic of the configured clusters is known to measure."""
        failed_before = len(self.outcome.failed_runs)
        self.execute(definitions.get_inventory_job)
        self.outcome.inventory_failed = len(self.outcome.failed_runs) > failed_before
        self.key_range = _topic_range(self.instance, set(self._connections()))
        return self.key_range is not None

    def measure(self) -> None:
        """One run per day the window still lacks: every recommended day needs its whole window,
        so SAMPLING_DAYS - 1 more days are measured back."""
        settings, options = self.settings, self.options
        clusters = set(self._connections())
        multiprocess = measurement_run_config(
            min(len(clusters), settings.max_cluster_workers) * settings.max_workers_per_cluster
        )
        tags = {FORCE_TAG: FORCE_VALUE} if options.force else {}
        store = self.resources["store"]
        inventory = store.read_inventory()
        days = settings.sampling_days + options.backfill_days - 1
        for day in store.days_to_capture(options.end_day, days, options.force):
            pending = _pending(store, inventory, day, options.force)
            totals = {cluster_id: len(reads) for cluster_id, reads in pending.items()}
            # A day one chunk reads runs in this process: step processes cost more than they save.
            small = _records_to_read(store, inventory, day, pending) <= settings.records_per_chunk
            emit = options.progress
            with MeasurementProgress(self.instance, day.isoformat(), totals if emit else {}, emit=emit) as watch:
                self.execute(
                    definitions.get_measurement_job,
                    run_config=IN_PROCESS_RUN_CONFIG if options.in_process or small else multiprocess,
                    tags={**day_range_tags(day.isoformat(), self.key_range, clusters), **tags, **watch.tags},
                )
            self.outcome.measured_days.append(day.isoformat())

    def recommend(self) -> None:
        """The recommendations of each day asked for, then of earlier days whose window this
        command's measurements changed."""
        outcome = self.outcome
        for day in window_days(self.options.end_day, self.options.backfill_days):
            outcome.reports, changes = self.execute(
                definitions.get_recommendation_job, tags={"dagster/partition": day.isoformat()}
            )
            outcome.changes = changes or outcome.changes
            outcome.recommended_days.append(day.isoformat())
        store = self.resources["store"]
        for day in stale_days(self.instance, store, self.settings.sampling_days, utc_today()):
            if day.isoformat() not in outcome.recommended_days:
                self.execute(definitions.get_recommendation_job, tags={"dagster/partition": day.isoformat()})
                outcome.refreshed_days.append(day.isoformat())

    def _connections(self) -> dict:
        return self.resources["kafka"].connections()


def cause(result: dg.ExecuteJobResult) -> str:
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


def _interrupted(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a run ended because of an interrupt: Dagster says so in its failure events."""
    records = instance.get_records_for_run(run_id, of_type=INTERRUPT_EVENT_TYPES).records
    return any("interrupt" in (record.event_log_entry.message or "").lower() for record in records)


def _topic_range(instance: dg.DagsterInstance, clusters: set[str]) -> tuple[str, str] | None:
    """First and last topic keys: a run's range over the topic dimension covers them all."""
    keys = instance.get_dynamic_partitions(topics_partitions.name)
    if not any(split_topic_key(key)[0] in clusters for key in keys):
        return None
    return keys[0], keys[-1]


def _pending(store, inventory: pd.DataFrame, day: date, force: bool) -> dict[str, dict[str, int]]:
    """Per cluster, the topics of `day` the measurement run will capture (and where each starts)."""
    topics = {cluster_id: list(names) for cluster_id, names in inventory.groupby("cluster_id")["topic"]}
    return store.pending_reads(day, topics, force)


def _records_to_read(store, inventory: pd.DataFrame, day: date, pending: dict[str, dict[str, int]]) -> float:
    """About how many records measuring the pending topics of `day` reads (`topic_work`)."""
    work = topic_work(inventory, store.recent_reads(day.isoformat()))
    return sum(work.get(topic_key(cluster_id, topic), 0.0) for cluster_id, reads in pending.items() for topic in reads)
