"""Fixtures: the real local Kafka broker, an isolated configuration, and a Dagster instance.

The broker is `scripts/kafka-local` (KRaft, jars from Maven Central). `.ci/run` starts it and
exports KAFKA_BOOTSTRAP; a developer's pytest starts it on demand.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from recommender_pipeline.settings import load_settings
from recommender_pipeline_testing.known_truth import Dataset, LogDataset, build_attribution_dataset, build_dataset
from recommender_pipeline_testing.openapi import SPEC_DIR, Specs
from recommender_pipeline_testing.pipeline import REPO, Pipeline, apply_configuration, free_port

# A test whose fixtures start one of these services is an integration test; the rest are the unit
# layer (`scripts/test --unit`): no Java, no broker, no server.
SERVICE_FIXTURES = {"kafka_bootstrap", "secrets_manager_url", "postgres_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        if SERVICE_FIXTURES & set(item.fixturenames) or "postgresql" in params.values():
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def bootstrap_address() -> str:
    """Where the local broker is, or would be: configuring alone never starts it."""
    return os.environ.get("KAFKA_BOOTSTRAP") or f"127.0.0.1:{os.environ.get('KAFKA_LOCAL_PORT', '19092')}"


@pytest.fixture(scope="session")
def kafka_version(bootstrap_address: str) -> tuple[int, ...]:
    """The broker's Apache Kafka version: KAFKA_VERSION (the broker matrix), else the version that
    scripts/kafka-local started on the bootstrap's port, else the pinned one."""
    pinned = re.search(r"<kafka.version>(.+)</kafka.version>", (REPO / "kafka-local" / "pom.xml").read_text())
    home = Path(os.environ.get("KAFKA_LOCAL_HOME") or REPO / ".local" / "kafka")
    port = bootstrap_address.split(",")[0].rsplit(":", 1)[-1]
    started = home / f"kafka-{port}.version"
    local = started.read_text().strip() if started.is_file() and (home / f"kafka-{port}.pid").is_file() else ""
    text = os.environ.get("KAFKA_VERSION") or local or (pinned.group(1) if pinned else "0")
    return tuple(int(part) for part in text.split("."))


@pytest.fixture(scope="session")
def kafka_bootstrap(bootstrap_address: str) -> str:
    """The running broker: `.ci/run` and `scripts/test` start it; a developer's pytest starts it here."""
    if not os.environ.get("KAFKA_BOOTSTRAP"):
        subprocess.run([str(REPO / "scripts" / "kafka-local"), "start"], check=True)
    return bootstrap_address


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


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, bootstrap_address: str, tmp_path: Path):
    """Sets the configuration variables for a test (the rest are unset); a test that talks to
    the broker asks for `kafka_bootstrap` as well."""

    def apply(**variables: object) -> None:
        apply_configuration(monkeypatch, bootstrap_address, tmp_path, **variables)

    return apply


@pytest.fixture
def configured_settings(configure, tmp_path: Path):
    """Sets variables (the others unset) and loads the settings, with no .env file."""

    def load(**variables):
        configure(**variables)
        return load_settings(str(tmp_path / "absent.env"))

    return load


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield Pipeline(instance, tmp_path)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """POSTGRES_URL, or the local server (started here, and stopped at the end if it was not running)."""
    if os.environ.get("POSTGRES_URL"):
        yield os.environ["POSTGRES_URL"]
        return
    script = str(REPO / "scripts" / "postgres-local")
    was_running = subprocess.run([script, "status"], stdout=subprocess.DEVNULL).returncode == 0
    started = subprocess.run([script, "start"], check=True, stdout=subprocess.PIPE, text=True)
    yield started.stdout.strip().splitlines()[-1]
    if not was_running:
        subprocess.run([script, "stop"], check=True, stdout=subprocess.DEVNULL)
