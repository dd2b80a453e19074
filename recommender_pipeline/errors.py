"""One exception type per kind of failure a user can act on; each message names what is at fault."""


class RecommenderError(Exception):
    """Base of every error this pipeline raises on purpose."""


class ConfigurationError(RecommenderError):
    """A configuration variable is missing or malformed: fix the named variable."""


class TopicMeasurementError(RecommenderError):
    """One topic could not be measured for one day; the other topics are unaffected."""


class StoreError(RecommenderError):
    """The measurement store cannot be opened, read or written; the message names it (never its password)."""


class ReportWriteError(RecommenderError):
    """A report set could not be written (a full disk, a folder made read-only): the message names
    `REPORTS_DIR`, the file and the cause; nothing of that set was kept."""


class CredentialsError(RecommenderError):
    """Credentials could not be obtained (a missing or malformed secret, a key that never works)."""


class ConfluentApiError(RecommenderError):
    """A Confluent Cloud API call failed after its retries; the message names the call."""

    def __init__(self, message: str, status: int | None = None, ambiguous: bool = False):
        super().__init__(message)
        self.status = status
        self.ambiguous = ambiguous  # the call may have been carried out although it failed


class InvalidAnswerError(ConfluentApiError):
    """A Confluent Cloud API answered with success, but its body is not the shape Confluent publishes
    or holds numbers that cannot be true. Asking again would bring the same answer, so it is not
    retried: the cluster-day fails with error rows, and the next run measures it again."""

    def __init__(self, message: str):
        super().__init__(message, status=200)


class ClusterUnreachableError(RecommenderError):
    """A Kafka cluster did not answer: wrong credentials, TLS or name resolution (said at once, with
    the client library's reason), or no answer within the metadata timeout."""
