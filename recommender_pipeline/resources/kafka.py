"""Kafka clients (confluent-kafka) for every configured cluster."""

import uuid

import dagster as dg
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from pydantic import PrivateAttr

from recommender_pipeline.connections import ClusterConnection
from recommender_pipeline.errors import ConfigurationError
from recommender_pipeline.resources.aws_secrets import AwsSecretsResource
from recommender_pipeline.resources.kafka_clients import COMMON, ClientErrors, admin_client, reached
from recommender_pipeline.resources.kafka_credentials import kafka_connections
from recommender_pipeline.resources.settings import SettingsResource


class KafkaResource(dg.ConfigurableResource):
    """Builds AdminClients and Consumers from each cluster's connection properties.

    Clients are created on demand (no network at import or definition time) and the secrets in
    the properties never leave this process.
    """

    config: dg.ResourceDependency[SettingsResource]
    secrets: dg.ResourceDependency[AwsSecretsResource]
    _connections: dict | None = PrivateAttr(default=None)

    def connections(self) -> dict[str, ClusterConnection]:
        """Every cluster to analyse, from `.env`, AWS Secrets Manager or provisioned keys."""
        if self._connections is None:
            found = kafka_connections(self.config.settings, self.secrets.get_json)
            self._connections = {c.cluster_id: c for c in found}
        return self._connections

    def connection(self, cluster_id: str) -> ClusterConnection:
        try:
            return self.connections()[cluster_id]
        except KeyError:
            raise ConfigurationError(
                f"cluster {cluster_id!r} has no credentials (not in KAFKA_CREDENTIALS / KAFKA_API_SECRET_PATHS, "
                "not provisioned, or excluded by KAFKA_CLUSTER_FILTER)"
            ) from None

    def admin(self, cluster_id: str) -> AdminClient:
        """An AdminClient of a cluster that answered: a cluster it cannot reach raises
        `ClusterUnreachableError`, at once for credentials, TLS or DNS (`reached`)."""
        errors = ClientErrors()
        client = admin_client(self.connection(cluster_id).properties, errors)
        reached(client, errors, cluster_id)
        return client

    def consumer(self, cluster_id: str, overrides: dict | None = None) -> Consumer:
        """A consumer that only reads assigned ranges: it never joins a group or commits."""
        return Consumer(
            {
                **self.connection(cluster_id).properties,
                **COMMON,
                "group.id": f"recommender-pipeline-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "error",
                "enable.partition.eof": False,
                "fetch.max.bytes": 52_428_800,
                # Reading history never needs the broker to hold a fetch open; a short wait keeps
                # the switch from one topic's assignment to the next quick.
                "fetch.wait.max.ms": 50,
                "queued.max.messages.kbytes": 262_144,
                **(overrides or {}),
            }
        )

    def producer(self, cluster_id: str, overrides: dict | None = None) -> Producer:
        """An idempotent producer (acks=all, no duplicates on retry) for the results topic; a
        delivery that cannot be made within two minutes fails instead of blocking the run."""
        return Producer(
            {
                **self.connection(cluster_id).properties,
                **COMMON,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "compression.type": "lz4",
                "delivery.timeout.ms": 120_000,
                **(overrides or {}),
            }
        )
