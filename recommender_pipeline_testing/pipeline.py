"""Running the pipeline's assets through Dagster on a test instance, with a test's configuration."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from recommender_pipeline.assets.checks import ALL_CHECKS
from recommender_pipeline.assets.partitions import topic_key, topics_partitions
from recommender_pipeline.assets.run_tags import FORCE_TAG, FORCE_VALUE, day_range_tags
from recommender_pipeline.definitions import defs
from recommender_pipeline.resources import MeasurementStoreResource, build_resources
from recommender_pipeline.settings import Settings

REPO = Path(__file__).resolve().parents[1]  # the repository, for its scripts and deploy files
CLUSTER_ID = "local"
ALL_ASSETS = [*defs.assets, *ALL_CHECKS]  # every asset of the code location, as it defines them
# Variables a developer's shell might carry; tests set what they need and nothing else.
CONFIG_VARIABLES = [info.alias for info in Settings.model_fields.values() if info.alias] + [
    "USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS",
    "USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_RESOURCE_CREDENTIALS",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
                **day_range_tags(day.isoformat(), keys, {CLUSTER_ID}),
                **({FORCE_TAG: FORCE_VALUE} if force else {}),
            },
        )

    def profile(self, day: date) -> dg.ExecuteInProcessResult:
        """A snapshot of every topic's consumer groups and keys, stored for `day`."""
        return self.materialize(["topic_profiles"], partition_key=day.isoformat())

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


def command_env(bootstrap: str, tmp_path: Path, **variables: str) -> dict[str, str]:
    """The environment for `recommender-pipeline` in its own process: this one without any
    configuration variable, then one local cluster, the test's folders and `variables`."""
    env = {key: value for key, value in os.environ.items() if key not in CONFIG_VARIABLES}
    env.update(
        DAGSTER_HOME=str(tmp_path / "home"),
        KAFKA_CREDENTIALS=f'[{{"kafka_cluster_id": "{CLUSTER_ID}", "bootstrap.servers": "{bootstrap}"}}]',
        REPORTS_DIR=str(tmp_path / "reports"),
        MEASUREMENT_STORE_PATH=str(tmp_path / "measurements.duckdb"),
    )
    return {**env, **variables}
