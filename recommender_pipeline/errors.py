"""One exception type per kind of failure a user can act on; each message names what is at fault."""


class RecommenderError(Exception):
    """Base of every error this pipeline raises on purpose."""


class ConfigurationError(RecommenderError):
    """A configuration variable is missing or malformed: fix the named variable."""


class TopicMeasurementError(RecommenderError):
    """One topic could not be measured for one day; the other topics are unaffected."""


class StoreError(RecommenderError):
    """The measurement store cannot be opened, read or written; the message names it (never its password)."""


class CredentialsError(RecommenderError):
    """Credentials could not be obtained (a missing or malformed secret, a key that never works)."""


class ConfluentApiError(RecommenderError):
    """A Confluent Cloud API call failed after its retries; the message names the call."""

    def __init__(self, message: str, status: int | None = None, ambiguous: bool = False):
        super().__init__(message)
        self.status = status
        self.ambiguous = ambiguous  # the call may have been carried out although it failed
