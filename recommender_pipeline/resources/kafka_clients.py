"""How every Kafka client of the pipeline is built and first reaches its cluster: quiet, bounded,
and saying at once what no retry mends (wrong credentials, TLS or DNS) with the client's reason.
`KafkaResource` and the provisioning of API keys both build their clients here."""

import logging
import re
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from recommender_pipeline.errors import ClusterUnreachableError


class FirstOfEachMessage(logging.Filter):
    """librdkafka repeats a failure every few milliseconds while it retries (580 identical lines
    in 30 s against a stopped broker): let each distinct line through once per process, digits
    (times, counts) aside, so the one useful line is not buried."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = re.sub(r"\d+", "#", f"{record.name}:{record.getMessage()}")
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


# The clients' own log lines go through Python logging (to stderr at warning level, each once).
CLIENT_LOG = logging.getLogger("recommender_pipeline.kafka_client")
CLIENT_LOG.addFilter(FirstOfEachMessage())
# Quiet, bounded clients: librdkafka logs at warning level and gives up on a dead cluster.
COMMON = {
    "log_level": 4,
    "logger": CLIENT_LOG,
    "socket.connection.setup.timeout.ms": 10_000,
    "enable.metrics.push": False,
}


# Client errors that waiting will not mend: credentials, TLS, a name that does not resolve. The
# client retries them for ever; the pipeline says them at once (librdkafka knows within a second).
DECISIVE = {KafkaError._AUTHENTICATION, KafkaError._RESOLVE, KafkaError._SSL}
PROBE_SECONDS = 30  # how long a cluster may take to answer its first metadata request (TLS, WAN)


class ClientErrors:
    """A client's `error_cb`: what librdkafka reported while it tried to reach the cluster."""

    def __init__(self) -> None:
        self.seen: list[KafkaError] = []

    def __call__(self, error: KafkaError) -> None:
        self.seen.append(error)

    def decisive(self) -> KafkaError | None:
        """The first error no retry mends, an SSL handshake that failed included."""
        for error in self.seen:
            if error.code() in DECISIVE or "SSL handshake failed" in error.str():
                return error
        return None

    def last(self) -> str:
        useful = [error for error in self.seen if error.code() != KafkaError._ALL_BROKERS_DOWN]
        return (useful or self.seen)[-1].str() if self.seen else "no answer"


def admin_client(properties: dict, errors: ClientErrors | None = None) -> AdminClient:
    """The one way an AdminClient is built: quiet, bounded, its errors collected when asked."""
    return AdminClient({**properties, **COMMON, **({"error_cb": errors} if errors is not None else {})})


def reached(admin: AdminClient, errors: ClientErrors, cluster_id: str, timeout_seconds: float | None = None) -> None:
    """Returns once the cluster answers a metadata request. Wrong credentials, SASL or TLS against
    the wrong listener and a name that does not resolve raise at once with the client's reason
    (never a secret: librdkafka's messages carry none); silence raises after `timeout_seconds`."""
    timeout_seconds = PROBE_SECONDS if timeout_seconds is None else timeout_seconds
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException:
            admin.poll(0)  # serves error_cb
        decisive = errors.decisive()
        if decisive is not None:
            raise ClusterUnreachableError(f"cluster {cluster_id}: {_short(decisive.str())}")
        if time.monotonic() > deadline:
            raise ClusterUnreachableError(
                f"cluster {cluster_id} unreachable: no answer within {timeout_seconds:.0f} s ({_short(errors.last())})"
            )


def _short(reason: str) -> str:
    """librdkafka's reason without its "after 301ms in state AUTH_REQ" tail."""
    return re.sub(r"\s*\(after \d+ms in state \w+\)\s*$", "", reason)
