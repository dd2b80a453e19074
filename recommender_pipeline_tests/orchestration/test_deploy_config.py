"""The deployment files under deploy/ load through Dagster's own config validation.

The Kubernetes tier cannot run here (no cluster, no helm): its instance (deploy/k8s/dagster.yaml, what
the chart renders from values.yaml) and its executor config are checked against the schemas of
dagster-k8s itself, and values.yaml against the instance file, so the two cannot drift apart. The
PostgreSQL and Celery files are checked the same way (the scale-out tests run them for real).
No service is needed: this is the unit layer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config
from dagster_celery import celery_executor
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_postgres import DagsterPostgresStorage

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _instance(yaml_path: Path, tmp_path: Path) -> dict:
    """The instance file as Dagster loads it from DAGSTER_HOME (schema and concurrency rules)."""
    shutil.copy(yaml_path, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    return config


def _valid(config_schema, value: dict) -> dict:
    result = process_config(resolve_to_config_type(config_schema), value)
    assert result.success, [error.message for error in result.errors]
    return result.value


def _execution_config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["execution"]["config"]


@pytest.fixture
def deploy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the deploy files name ({env: ...}), with placeholder values."""
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://dagster:pw@127.0.0.1:5432/dagster")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "pw")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:16379/0")
    monkeypatch.setenv("CELERY_BACKEND_URL", "redis://127.0.0.1:16379/1")


def test_the_kubernetes_instance_validates_against_dagster_k8s_and_dagster_postgres(deploy_env, tmp_path):
    config = _instance(DEPLOY / "k8s" / "dagster.yaml", tmp_path)
    assert (config["run_launcher"]["module"], config["run_launcher"]["class"]) == ("dagster_k8s", "K8sRunLauncher")
    launcher = _valid(K8sRunLauncher.config_type(), config["run_launcher"]["config"])
    assert launcher["env_vars"] == ["RECOMMENDER_EXECUTOR=k8s"]
    assert launcher["load_incluster_config"] is True
    storage = _valid(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage["postgres_db"]["password"] == "pw"  # {env: DAGSTER_PG_PASSWORD}, resolved


def test_a_misspelt_run_launcher_field_fails_the_same_validation(deploy_env, tmp_path):
    config = _instance(DEPLOY / "k8s" / "dagster.yaml", tmp_path)["run_launcher"]["config"]
    result = process_config(resolve_to_config_type(K8sRunLauncher.config_type()), {**config, "job_namespce": "x"})
    assert not result.success and "job_namespce" in str([error.message for error in result.errors])


def test_the_kubernetes_executor_config_validates_against_k8s_job_executor():
    config = _valid(k8s_job_executor.config_schema.config_type, _execution_config(DEPLOY / "k8s" / "executor.yaml"))
    assert config["max_concurrent"] == 8
    # Step pods mount the volume the run launcher mounts: the step outputs are shared through it.
    instance = yaml.safe_load((DEPLOY / "k8s" / "dagster.yaml").read_text())
    assert config["volume_mounts"] == instance["run_launcher"]["config"]["volume_mounts"]
    assert config["volumes"] == instance["run_launcher"]["config"]["volumes"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(value):
    if isinstance(value, dict):
        return {_snake(key): _snake_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_snake_keys(item) for item in value]
    return value


def test_the_helm_values_say_what_the_checked_instance_says():
    """values.yaml's run launcher, storage and limits, in the instance's spelling, equal dagster.yaml's."""
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "k8s" / "dagster.yaml").read_text())
    launcher = instance["run_launcher"]["config"]
    chart = _snake_keys(values["runLauncher"]["config"]["k8sRunLauncher"])
    chart["env_config_maps"] = [item["name"] for item in chart["env_config_maps"]]
    chart["env_secrets"] = [item["name"] for item in chart["env_secrets"]]
    assert {key: launcher[key] for key in chart} == chart
    assert launcher["postgres_password_secret"] == values["global"]["postgresqlSecretName"]
    assert launcher["dagster_home"] == values["global"]["dagsterHome"]
    database = instance["storage"]["postgres"]["postgres_db"]
    postgres = values["postgresql"]
    assert (database["hostname"], database["username"], database["db_name"], database["port"]) == (
        postgres["postgresqlHost"],
        postgres["postgresqlUsername"],
        postgres["postgresqlDatabase"],
        postgres["service"]["port"],
    )
    assert database["params"] == postgres["postgresqlParams"]
    assert _snake_keys(values["concurrency"]["runs"]) == instance["concurrency"]["runs"]
    assert _snake_keys(values["concurrency"]["pools"]) == instance["concurrency"]["pools"]
    assert values["dagsterDaemon"]["runRetries"] == {"enabled": True, "maxRetries": 1}
    assert instance["run_retries"] == {"enabled": True, "max_retries": 1}


def test_the_image_serves_the_module_the_chart_names():
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    dockerfile = (DEPLOY / "k8s" / "Dockerfile").read_text()
    command = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))
    assert command[command.index("-m") :] == deployment["dagsterApiGrpcArgs"]
    assert str(command[command.index("-p") + 1]) == str(deployment["port"])
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            if path.startswith("dist/"):  # the wheel, built by scripts/wheel-smoke before the image
                assert path == "dist/recommender_pipeline-*.whl"
                continue
            assert (REPO / path).exists(), f"the Dockerfile copies {path}, which is not in the repository"
    assert "RECOMMENDER_EXECUTOR_CONFIG=/opt/dagster/app/deploy/k8s/executor.yaml" in dockerfile


@pytest.mark.parametrize("name", ["postgres/dagster.yaml", "dagster.yaml"])
def test_the_local_instances_load(deploy_env, tmp_path, name):
    config = _instance(DEPLOY / name, tmp_path)
    if name.startswith("postgres"):
        storage = _valid(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
        assert storage["postgres_url"].startswith("postgresql+psycopg2://")
    else:
        assert "storage" not in config  # the embedded default: SQLite under DAGSTER_HOME


def test_the_celery_executor_config_validates_and_acknowledges_late(deploy_env):
    config = _valid(celery_executor.config_schema.config_type, _execution_config(DEPLOY / "celery" / "executor.yaml"))
    source = config["config_source"]
    assert source["task_acks_late"] is True and source["task_reject_on_worker_lost"] is True
    assert source["worker_prefetch_multiplier"] == 1


@pytest.mark.parametrize("executor", ["k8s", "celery"])
def test_the_measurement_job_loads_with_the_chosen_executor(executor):
    """The code location in a process of its own, as a code server with RECOMMENDER_EXECUTOR loads it;
    the job's run config (empty, as the command and the UI send it) validates."""
    script = (
        "import json, dagster as dg\n"
        "from recommender_pipeline.definitions import defs\n"
        "job = defs.resolve_job_def('measurement_job')\n"
        "execution = dg.validate_run_config(job, {})['execution']\n"
        "print(json.dumps({'executor': job.executor_def.name, 'execution': sorted(execution)}))\n"
    )
    env = {**os.environ, "RECOMMENDER_EXECUTOR": executor, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    env["CELERY_BACKEND_URL"] = "redis://127.0.0.1:1/1"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {"executor": executor, "execution": [executor]}


def test_an_unknown_executor_stops_the_code_location_naming_the_choices(monkeypatch):
    from recommender_pipeline.orchestration.executors import executor_name

    monkeypatch.setenv("RECOMMENDER_EXECUTOR", "dask")
    with pytest.raises(ValueError, match="RECOMMENDER_EXECUTOR='dask': expected one of multiprocess, celery, k8s"):
        executor_name()
    monkeypatch.setenv("RECOMMENDER_EXECUTOR", "")
    assert executor_name() == "multiprocess"
    assert dg.multi_or_in_process_executor.name == "multi_or_in_process_executor"
