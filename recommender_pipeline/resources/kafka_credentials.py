"""Where each cluster's Kafka credentials come from: `.env`, AWS Secrets Manager, or API keys
created through the Confluent Cloud API for `PRINCIPAL_ID` and deleted when the work ends.

Provisioned secrets never touch Dagster storage: `provisioned_credentials` creates the keys in
the process that launches the runs and hands them to the run and its step processes through an
environment variable of that process only (`RECOMMENDER_PROVISIONED_CREDENTIALS`), which step
processes inherit and nothing persists; the keys are deleted on exit, on success and on failure.
"""

import atexit
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import KafkaException

from recommender_pipeline.connections import ClusterConnection, connection_from_entry
from recommender_pipeline.errors import ConfluentApiError, CredentialsError
from recommender_pipeline.resources.kafka_clients import admin_client
from recommender_pipeline.settings import Settings

PROVISIONED_VARIABLE = "RECOMMENDER_PROVISIONED_CREDENTIALS"
REQUIRED_SECRET_KEYS = ("kafka_cluster_id", "bootstrap.servers")


def aws_connections(settings: Settings, get_json: Callable[[dict, str], dict]) -> list[ClusterConnection]:
    """One cluster per `KAFKA_API_SECRET_PATHS` entry, each secret holding the original's JSON keys
    (`kafka_cluster_id`, `bootstrap.servers`, `sasl.username`, `sasl.password`) or, like a
    `KAFKA_CREDENTIALS` entry, any librdkafka properties."""
    connections = []
    for path in settings.kafka_api_secret_paths:
        secret = get_json(path, "KAFKA_API_SECRET_PATHS")
        missing = [key for key in REQUIRED_SECRET_KEYS if not secret.get(key)]
        if missing:
            raise CredentialsError(
                f"secret {path.get('secret_name')!r} (from KAFKA_API_SECRET_PATHS) lacks {', '.join(missing)}"
            )
        connections.append(connection_from_entry(secret, "aws_secrets_manager"))
    return settings.filter_clusters(connections)


def provisioned_connections() -> list[ClusterConnection] | None:
    """The keys the launching process provisioned, or None outside such a process."""
    text = os.environ.get(PROVISIONED_VARIABLE)
    if text is None:
        return None
    return [
        ClusterConnection(c["cluster_id"], c["properties"], "provisioned", c["environment_id"])
        for c in json.loads(text)
    ]


def kafka_connections(settings: Settings, get_json: Callable[[dict, str], dict]) -> list[ClusterConnection]:
    if settings.use_cloud_api_for_kafka_credentials:
        connections = provisioned_connections()
        if connections is None:
            raise CredentialsError(
                "USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS=true: Kafka API keys are created for the "
                "duration of `recommender-pipeline` (which launches the runs) and deleted after it; runs launched "
                "elsewhere have none. Use the command, or KAFKA_CREDENTIALS / KAFKA_API_SECRET_PATHS."
            )
        return connections
    if settings.use_aws_secrets_manager:
        return aws_connections(settings, get_json)
    return settings.kafka_connections()


def _bootstrap(endpoint: str) -> tuple[str, str]:
    """`SASL_SSL://host:9092` -> (host:9092, SASL_SSL); a bare host:port is Confluent's SASL_SSL."""
    scheme, _, rest = endpoint.partition("://")
    return (rest, scheme.upper()) if rest else (endpoint, "SASL_SSL")


def wait_until_usable(properties: dict[str, str], timeout_seconds: float, probe_timeout: float = 5.0) -> float:
    """Seconds until the key answered two metadata requests in a row; raises after the timeout.

    A new Confluent Cloud key can take minutes to propagate; the backoff doubles up to 10 s.
    """
    started = time.monotonic()
    delay, successes = 0.5, 0
    while True:
        admin = admin_client({**properties, "socket.connection.setup.timeout.ms": 5000})
        try:
            admin.list_topics(timeout=min(probe_timeout, timeout_seconds))
            successes += 1
        except KafkaException:
            successes = 0
        if successes >= 2:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_seconds:
            raise CredentialsError(f"the new API key did not authenticate within {timeout_seconds:.0f}s")
        time.sleep(0 if successes else delay)
        delay = min(delay * 2, 10.0)


def _named(key: dict) -> str:
    return (key.get("spec") or {}).get("display_name", "")


@dataclass
class Provisioning:
    """What a provisioning round did: the usable clusters, the failed ones, the keys it created."""

    connections: list[ClusterConnection] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    created_keys: list[str] = field(default_factory=list)
    deleted_keys: list[str] = field(default_factory=list)


class _CreatedKeys:
    """The keys one provisioning round created, kept so that every one of them can be deleted."""

    def __init__(self, settings: Settings, cloud, log: Callable[[str], None], outcome: Provisioning):
        self.settings = settings
        self.cloud = cloud
        self.log = log
        self.outcome = outcome
        self.unanswered: list[tuple[str, str]] = []  # (cluster, display name) of creations whose answer never came
        self.run_nonce = os.urandom(4).hex()

    def delete_created(self) -> None:
        """Deletes every key this run made. A creation whose answer was lost (a timeout, a 5xx, or
        an interrupt that arrived while the request was in flight) may still have made a key: it is
        found by its display name, unique to this run, and deleted too."""
        while self.unanswered:
            cluster_id, name = self.unanswered[-1]
            found = self._named_keys(cluster_id, name)
            self.outcome.created_keys += [k for k in found if k not in self.outcome.created_keys]
            self.unanswered.pop()
        for key_id in [k for k in self.outcome.created_keys if k not in self.outcome.deleted_keys]:
            try:
                self.cloud.delete_api_key(key_id)
                self.outcome.deleted_keys.append(key_id)
            except ConfluentApiError as error:
                self.log(f"could not delete API key {key_id}: {error} -- delete it by hand")

    def _named_keys(self, cluster_id: str, name: str) -> list[str]:
        """The ids of the principal's keys on the cluster with this display name: an unanswered
        creation's key, if it was made; none (and a line to check by hand) when the lookup fails."""
        try:
            return [k["id"] for k in self.cloud.api_keys(self.settings.principal_id, cluster_id) if _named(k) == name]
        except ConfluentApiError as error:
            self.log(f"cluster {cluster_id}: could not look for the key named {name!r}: {error} -- check by hand")
            return []

    def create(self, cluster_id: str, environment_id: str) -> tuple[str, str]:
        """A new key for the cluster, recorded for deletion. Until its answer is in hand, the
        creation counts as unanswered, so an error or an interrupt mid-request leaves no key behind."""
        name = f"recommender-pipeline {cluster_id} {self.run_nonce}"
        self.unanswered.append((cluster_id, name))
        try:
            key_id, secret = self.cloud.create_api_key(
                self.settings.principal_id,
                cluster_id,
                name,
                f"Temporary key for the partition recommender on {cluster_id} ({environment_id}); "
                "deleted when the run ends.",
            )
        except ConfluentApiError as error:
            if not error.ambiguous:  # refused outright: no key was made
                self.unanswered.remove((cluster_id, name))
            raise
        self.outcome.created_keys.append(key_id)
        self.unanswered.remove((cluster_id, name))
        return key_id, secret


def _selected_clusters(settings: Settings, cloud) -> Iterator[tuple[dict, dict]]:
    """(environment, cluster) for every cluster the filters keep, asked for lazily so each
    environment's clusters are listed only when its turn comes."""
    for environment in cloud.environments():
        if settings.environment_filter and environment["id"] not in settings.environment_filter:
            continue
        for cluster in cloud.clusters(environment["id"]):
            if settings.kafka_cluster_filter and cluster["id"] not in settings.kafka_cluster_filter:
                continue
            yield environment, cluster


def _key_properties(settings: Settings, bootstrap: str, protocol: str, key_id: str, secret: str) -> dict[str, str]:
    """The librdkafka properties that connect to a cluster with a provisioned key."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": protocol,
        "sasl.mechanism": "PLAIN",
        "sasl.username": key_id,
        "sasl.password": secret,
        **{k: str(v) for k, v in settings.provisioned_kafka_properties.items()},
    }


def _provision_cluster(keys: _CreatedKeys, environment: dict, cluster: dict) -> None:
    """Gives one cluster a working key, or records why it has none: a cluster that fails does not
    stop the others."""
    settings, outcome, log = keys.settings, keys.outcome, keys.log
    cluster_id = cluster["id"]
    bootstrap, protocol = _bootstrap(cluster["spec"]["kafka_bootstrap_endpoint"])
    try:
        key_id, secret = keys.create(cluster_id, environment["id"])
    except ConfluentApiError as error:  # this cluster fails; the others go on
        outcome.failed[cluster_id] = f"creating its API key failed: {error}"
        log(f"cluster {cluster_id}: {outcome.failed[cluster_id]}")
        return
    properties = _key_properties(settings, bootstrap, protocol, key_id, secret)
    try:
        waited = wait_until_usable(properties, settings.api_key_ready_timeout_seconds)
    except CredentialsError as error:
        outcome.failed[cluster_id] = f"API key {key_id}: {error}"
        log(f"cluster {cluster_id}: {outcome.failed[cluster_id]}")
        return
    log(f"cluster {cluster_id}: API key {key_id} usable after {waited:.1f}s")
    outcome.connections.append(ClusterConnection(cluster_id, properties, "provisioned", environment["id"]))


def _expose(connections: list[ClusterConnection]) -> None:
    """Hands the keys to the step processes through this process's environment only: never stored."""
    os.environ[PROVISIONED_VARIABLE] = json.dumps(
        [
            {"cluster_id": c.cluster_id, "properties": c.properties, "environment_id": c.environment_id}
            for c in connections
        ]
    )


@contextlib.contextmanager
def provisioned_credentials(settings: Settings, cloud, log: Callable[[str], None] = print) -> Iterator[Provisioning]:
    """Creates one Kafka API key per discovered cluster, waits until each works, exposes them to
    child processes, and deletes every key it created when the block ends, whatever happens.

    `cloud` is a ConfluentCloudResource. Keys it did not create are never touched.
    """
    if not settings.principal_id:
        raise CredentialsError("PRINCIPAL_ID is required to create Kafka API keys (a u-... or sa-... id)")
    keys = _CreatedKeys(settings, cloud, log, Provisioning())
    delete_created = keys.delete_created  # one bound method, so unregister finds what was registered
    atexit.register(delete_created)  # a hard exit of the interpreter still cleans up
    try:
        for environment, cluster in _selected_clusters(settings, cloud):
            _provision_cluster(keys, environment, cluster)
        _expose(keys.outcome.connections)
        yield keys.outcome
    finally:
        os.environ.pop(PROVISIONED_VARIABLE, None)
        delete_created()
        atexit.unregister(delete_created)
