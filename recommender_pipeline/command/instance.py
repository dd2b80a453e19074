"""The Dagster instance the one command runs on: created safely, its errors in one line, and the
runs of a command that died marked failed.

Two commands started together on a `DAGSTER_HOME` that does not exist yet (two cron entries, one
per cluster filter) would both create Dagster's SQLite schemas at once: one dies with "table jobs
already exists", or both leave Alembic with "more than one head" and every later command fails.
Creating and migrating the instance under a file lock makes the second wait for the first.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from filelock import FileLock, Timeout

from recommender_pipeline.command.orphans import alive
from recommender_pipeline.errors import RecommenderError

DEFAULT_DAGSTER_HOME = Path(".local/dagster_home")


# A new instance: no telemetry, and the SQLite event log that writes a chunk's materializations
# in one transaction (`sqlite_events.py`; `deploy/dagster.yaml` names it too).
def instance_yaml(home: Path) -> str:
    """A new instance's dagster.yaml: no telemetry, and the SQLite event log that writes a chunk's
    materializations in one transaction (`orchestration/sqlite_events.py`), its folder named too
    for tools that open the instance by its path alone."""
    return (
        "telemetry:\n  enabled: false\n"
        "event_log_storage:\n"
        "  module: recommender_pipeline.orchestration.sqlite_events\n"
        "  class: BatchingSqliteEventLogStorage\n"
        f"  config:\n    base_dir: {json.dumps(str(home.resolve() / 'history' / 'runs'))}\n"
    )


LOCK_SECONDS = 120  # how long a second command waits for the first to create the instance
COMMAND_TAG = "recommender/command"  # host/pid of the command that runs a run in its own process
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


class InstanceError(RecommenderError):
    """The Dagster instance in DAGSTER_HOME cannot be opened; the message says what to do."""


def command_tags() -> dict[str, str]:
    """The tag every run of this command carries, so that the next command can tell its runs
    from runs a daemon or another machine runs."""
    return {COMMAND_TAG: f"{socket.gethostname()}/{os.getpid()}"}


@contextmanager
def open_instance(log=print) -> Iterator[dg.DagsterInstance]:
    """The instance in DAGSTER_HOME (created under .local with telemetry off when unset), its
    storages created or migrated under a lock; then the runs of a command that died are failed."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(DEFAULT_DAGSTER_HOME.resolve())
    home = Path(os.environ["DAGSTER_HOME"])
    try:
        home.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(home / ".instance.lock"), timeout=LOCK_SECONDS)
        with lock:
            if not (home / "dagster.yaml").exists():
                (home / "dagster.yaml").write_text(instance_yaml(home))
            instance = dg.DagsterInstance.get()
            # Touch every storage while holding the lock: SQLite storages create their tables and
            # stamp their schema version on first use.
            instance.get_runs(limit=1)
            instance.fetch_materializations(dg.AssetKey("topic_measurements"), limit=1)
            instance.all_instigator_state()
    except Timeout:
        raise InstanceError(
            f"Dagster instance in DAGSTER_HOME={home}: another command has held {home / '.instance.lock'} for "
            f"{LOCK_SECONDS} s while creating it; if none runs, delete that file and run again"
        ) from None
    except RecommenderError:
        raise
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InstanceError(
            f"Dagster instance in DAGSTER_HOME={home} cannot be opened ({type(error).__name__}: {first}); "
            f"`dagster instance migrate` may repair it, or move {home} aside (it holds only run history: the "
            "measurements are in the measurement store) and run again"
        ) from None
    with instance:
        failed = fail_runs_of_dead_commands(instance)
        if failed:
            log(f"marked {len(failed)} run(s) failed: the command that ran them died ({', '.join(failed)})")
        yield instance


def fail_runs_of_dead_commands(instance: dg.DagsterInstance) -> list[str]:
    """Marks failed the in-flight runs that a command on this host ran in its own process and
    that died with it (`kill -9`, the OOM killer): no process will ever finish them."""
    host = socket.gethostname()
    failed = []
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT)):
        owner = run.tags.get(COMMAND_TAG, "")
        owner_host, _, pid = owner.rpartition("/")
        if owner_host != host or not pid.isdecimal() or int(pid) == os.getpid() or alive(int(pid)):
            continue
        instance.report_run_failed(run, message=f"the command that ran it (pid {pid} on {host}) died")
        failed.append(run.run_id[:8])
    return failed
