"""One day of measurements on the instance in DAGSTER_HOME, with whichever executor
RECOMMENDER_EXECUTOR chooses: the inventory run, then one measurement run over every topic key.

    python -m recommender_pipeline_testing.scale_out --day 2026-12-01 [--in-process] [--max-concurrent N] [--force]

Prints one JSON line: the measurement run's id and whether it succeeded. The scale-out tests and the
scale model's measurements run exactly this in their own process, so the executor chosen by the
environment is the one the code location loads (the tests' own process has loaded the default).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg

from recommender_pipeline import definitions
from recommender_pipeline.assets.partitions import split_topic_key, topics_partitions
from recommender_pipeline.assets.run_tags import FORCE_TAG, FORCE_VALUE, day_range_tags
from recommender_pipeline.orchestration.jobs import IN_PROCESS_RUN_CONFIG, measurement_run_config

BIN = Path(sys.executable).parent  # the environment's scripts: dagster-celery, celery


def measure_day(day: date, in_process: bool = False, max_concurrent: int = 0, force: bool = False) -> dict:
    """Inventories the clusters, then measures `day` of every known topic in one run (`force`:
    re-measures topic-days already in the store)."""
    instance = dg.DagsterInstance.get()
    with dg.execute_job(dg.reconstructable(definitions.get_inventory_job), instance=instance) as inventory:
        if not inventory.success:
            return {"run_id": inventory.run_id, "success": False, "failed": "inventory_job"}
    keys = instance.get_dynamic_partitions(topics_partitions.name)
    clusters = {split_topic_key(key)[0] for key in keys}
    run_config = IN_PROCESS_RUN_CONFIG if in_process else measurement_run_config(max_concurrent)
    with dg.execute_job(
        dg.reconstructable(definitions.get_measurement_job),
        instance=instance,
        run_config=run_config,
        tags={
            **day_range_tags(day.isoformat(), [keys[0], keys[-1]], clusters),
            **({FORCE_TAG: FORCE_VALUE} if force else {}),
        },
        raise_on_error=False,
    ) as result:
        return {"run_id": result.run_id, "success": result.success, "topics": len(keys)}


class Workers:
    """Celery workers started as the README says, each one chunk at a time, in its own session."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.processes = env, logs, {}

    def start(self, name: str) -> None:
        command = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app"]
        command += ["-y", self.env["RECOMMENDER_EXECUTOR_CONFIG"], "-i", "recommender_pipeline.definitions"]
        command += ["-n", name, "--", "--concurrency=1"]
        log = (self.logs / f"{name}.log").open("w")
        env = {**self.env, "PATH": f"{BIN}{os.pathsep}{self.env.get('PATH', '')}"}
        self.processes[name] = subprocess.Popen(
            command, env=env, cwd=self.logs, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for name in self.processes:
            while " ready." not in (self.logs / f"{name}.log").read_text():
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited:\n" + (self.logs / f"{name}.log").read_text()[-3000:])
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready after {timeout} s")
                time.sleep(0.2)

    def kill(self, name: str) -> None:
        """SIGKILL to the worker's whole session: the worker and its pool process die at once."""
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", type=date.fromisoformat, required=True)
    parser.add_argument("--in-process", action="store_true", help="one process (the embedded executor only)")
    parser.add_argument("--max-concurrent", type=int, default=0, help="multiprocess: chunk processes at once")
    parser.add_argument("--force", action="store_true", help="re-measure topic-days already in the store")
    args = parser.parse_args()
    # One planned event per run, as the command and the README's deployments set it.
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    print(json.dumps(measure_day(args.day, args.in_process, args.max_concurrent, args.force)))


if __name__ == "__main__":
    main()
