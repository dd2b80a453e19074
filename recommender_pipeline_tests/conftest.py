"""Fixtures: the real local Kafka broker, an isolated configuration, and a Dagster instance.

The broker is `scripts/kafka-local` (KRaft, jars from Maven Central). `.ci/run` starts it and
exports KAFKA_BOOTSTRAP; a developer's pytest starts it on demand.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from recommender_pipeline.assets import credentials, inventory, measurements, recommendations, reports
from recommender_pipeline.checks import ALL_CHECKS
from recommender_pipeline.jobs import FORCE_TAG, FORCE_VALUE
from recommender_pipeline.partitions import topic_key, topics_partitions
from recommender_pipeline.resources import MeasurementStoreResource, build_resources
from recommender_pipeline.settings import Settings
from recommender_pipeline_tests.known_truth import Dataset, LogDataset, build_attribution_dataset, build_dataset
from recommender_pipeline_tests.openapi import SPEC_DIR, Specs

REPO = Path(__file__).resolve().parents[1]
CLUSTER_ID = "local"
ALL_ASSETS = [
    *dg.load_assets_from_modules([credentials, inventory, measurements, recommendations, reports]),
    *ALL_CHECKS,
]
# Variables a developer's shell might carry; tests set what they need and nothing else.
CONFIG_VARIABLES = [info.alias for info in Settings.model_fields.values() if info.alias] + [
    "USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS",
    "USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_RESOURCE_CREDENTIALS",
]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return os.environ["KAFKA_BOOTSTRAP"]
    port = os.environ.get("KAFKA_LOCAL_PORT", "19092")
    subprocess.run([str(REPO / "scripts" / "kafka-local"), "start"], check=True)
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def sasl_bootstrap(kafka_bootstrap: str) -> str:
    """The broker's SASL_PLAINTEXT / SCRAM-SHA-256 listener: KAFKA_SASL_BOOTSTRAP, or port + 2."""
    bootstrap = os.environ.get("KAFKA_SASL_BOOTSTRAP")
    if not bootstrap:
        host, port = kafka_bootstrap.split(",")[0].rsplit(":", 1)
        bootstrap = f"{host}:{int(port) + 2}"
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        pytest.fail(f"no SASL_PLAINTEXT listener on {bootstrap}: `scripts/kafka-local restart` adds it")
    return bootstrap


@pytest.fixture(scope="session")
def specs() -> Specs:
    """Confluent's OpenAPI specifications."""
    if not SPEC_DIR.is_dir():
        pytest.fail(f"Confluent's OpenAPI files are not at {SPEC_DIR} (set CCLOUD_OPENAPI_DIR)")
    return Specs(SPEC_DIR)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def secrets_manager_url() -> Iterator[str]:
    """moto's server mode: a real HTTP endpoint that boto3 talks to."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="session")
def dataset(kafka_bootstrap: str) -> Dataset:
    """The known-truth topics, produced once per session."""
    return build_dataset(kafka_bootstrap)


@pytest.fixture(scope="session")
def attribution(kafka_bootstrap: str) -> LogDataset:
    """Production-shaped logs (late event times, exactly-once, truncation, LogAppendTime, random
    sizes, compaction), produced once per session; the truth follows from the logs as produced."""
    return build_attribution_dataset(kafka_bootstrap)


@pytest.fixture
def prefix() -> str:
    """A unique topic-name prefix, so tests sharing the broker never see each other's topics."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Pipeline:
    """Runs the assets through Dagster on a test instance with the test's configuration."""

    instance: dg.DagsterInstance
    tmp_path: Path

    def resources(self) -> dict:
        return build_resources(str(self.tmp_path / "no.env"))

    @property
    def store(self) -> MeasurementStoreResource:
        return self.resources()["store"]

    @property
    def settings(self) -> Settings:
        return self.resources()["config"].settings

    def materialize(self, selection: list[str], **kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            ALL_ASSETS,
            selection=selection,
            instance=self.instance,
            resources=self.resources(),
            raise_on_error=False,
            **kwargs,
        )

    def inventory(self) -> dg.ExecuteInProcessResult:
        return self.materialize(["credentials", "cluster_inventory"])

    def topic_keys(self) -> list[str]:
        return self.instance.get_dynamic_partitions(topics_partitions.name)

    def measure(self, day: date, force: bool = False) -> dg.ExecuteInProcessResult:
        """One day of every known topic, as a single run over the topic range; `force`
        re-measures the topic-days already settled in the store."""
        keys = self.topic_keys()
        return self.materialize(
            ["topic_measurements"],
            tags={
                "dagster/asset_partition_range_start": f"{day.isoformat()}|{keys[0]}",
                "dagster/asset_partition_range_end": f"{day.isoformat()}|{keys[-1]}",
                **({FORCE_TAG: FORCE_VALUE} if force else {}),
            },
        )

    def recommend(self, day: date) -> dg.ExecuteInProcessResult:
        return self.materialize(["topic_recommendations", "reports"], partition_key=day.isoformat())

    def measurement(self, day: date, topic: str) -> pd.Series:
        rows = self.store.read_measurements(day.isoformat(), day.isoformat())
        match = rows[rows["topic"] == topic]
        assert len(match) == 1, f"expected one stored row for {topic} on {day}, found {len(match)}"
        return match.iloc[0]

    def is_materialized(self, day: date, topic: str) -> bool:
        key = dg.MultiPartitionKey({"date": day.isoformat(), "topic": topic_key(CLUSTER_ID, topic)})
        return key in self.instance.get_materialized_partitions(dg.AssetKey("topic_measurements"))


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, tmp_path: Path):
    """Sets the configuration variables for a test (the rest are unset)."""

    def apply(**variables: object) -> None:
        apply_configuration(monkeypatch, kafka_bootstrap, tmp_path, **variables)

    return apply


def apply_configuration(monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, tmp_path: Path, **variables) -> None:
    """Unsets every configuration variable, then sets the test defaults and `variables`."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    defaults = {
        "KAFKA_CREDENTIALS": f'[{{"kafka_cluster_id": "{CLUSTER_ID}", "bootstrap.servers": "{kafka_bootstrap}"}}]',
        "REPORTS_DIR": str(tmp_path / "reports"),
        "MEASUREMENT_STORE_PATH": str(tmp_path / "measurements.duckdb"),
        "SAMPLING_TIMEOUT_SECONDS": "1",
        "SAMPLING_MAX_CONSECUTIVE_NULLS": "20",
    }
    for name, value in {**defaults, **variables}.items():
        monkeypatch.setenv(name, str(value))


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield Pipeline(instance, tmp_path)
