"""Which Dagster executor runs the measurement chunks: one setting, `RECOMMENDER_EXECUTOR`.

- `multiprocess` (default): the chunk steps run as processes on the machine of the run.
- `celery`: each chunk step is a Celery task (Redis broker); whichever worker is free runs it.
- `k8s`: each chunk step is a Kubernetes Job (`k8s_job_executor`).

The executor is part of a job's definition, not of its run config, so the choice is read when the
code location loads. A distributed executor's configuration is a YAML file that its workers read
too (`RECOMMENDER_EXECUTOR_CONFIG`, default `deploy/<executor>/executor.yaml`), so the run that
sends the tasks and the workers that take them never disagree on the broker or the retry rules.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import yaml

EXECUTOR_VARIABLE = "RECOMMENDER_EXECUTOR"
EXECUTOR_CONFIG_VARIABLE = "RECOMMENDER_EXECUTOR_CONFIG"
EXECUTORS = ("multiprocess", "celery", "k8s")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def executor_name() -> str:
    """The chosen executor; an unknown name stops the code location with what is allowed."""
    name = os.environ.get(EXECUTOR_VARIABLE, "").strip().lower() or "multiprocess"
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_VARIABLE}={name!r}: expected one of {', '.join(EXECUTORS)}")
    return name


def executor_config_path(name: str) -> Path:
    return Path(os.environ.get(EXECUTOR_CONFIG_VARIABLE) or DEPLOY / name / "executor.yaml")


def executor_config(name: str) -> dict:
    """The `execution: config:` block of the executor's YAML (the form `dagster-celery worker
    start -y` reads); values may be `{env: VARIABLE}`, resolved when a run starts."""
    path = executor_config_path(name)
    document = yaml.safe_load(path.read_text()) or {}
    return document.get("execution", {}).get("config", {}) or {}


def measurement_executor() -> dg.ExecutorDefinition:
    """The measurement job's executor. The distributed ones are imported only when chosen, so the
    embedded default never loads Celery or the Kubernetes client."""
    name = executor_name()
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(executor_config(name), name="celery")
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(executor_config(name), name="k8s")
    return dg.multi_or_in_process_executor


def is_multiprocess() -> bool:
    """Whether runs take the multiprocess run config (`max_concurrent`, forkserver)."""
    return executor_name() == "multiprocess"
