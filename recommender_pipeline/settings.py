"""Every configuration variable, read once from the environment or `.env` and validated up front.

The variable names are the original tool's, so an existing `.env` keeps working. A bad value fails
before any work with one line per variable that names it and the form it expects; values of
variables that carry secrets are never echoed.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from recommender_pipeline.connections import ClusterConnection, connection_from_entry
from recommender_pipeline.errors import ConfigurationError
from recommender_pipeline.profiling.keys import Partitioner

MIB = 1024 * 1024

CLUSTER_ID = re.compile(r"^[A-Za-z0-9._-]+$")


class RecommendationModel(StrEnum):
    CAPACITY = "capacity"
    SEED = "seed"


class PartitionRounding(StrEnum):
    """What a needed partition count is rounded up to: itself, a count every consumer group's
    size divides, or a multiple of the broker count (leaders spread evenly)."""

    NONE = "none"
    CONSUMERS = "consumers"
    BROKERS = "brokers"


# What each variable expects, quoted in error messages and the README's table.
EXPECTED_FORMS: dict[str, str] = {
    "KAFKA_CREDENTIALS": 'a JSON array of objects, each with "kafka_cluster_id" and "bootstrap.servers" '
    "plus any librdkafka property, e.g. "
    '[{"kafka_cluster_id": "local", "bootstrap.servers": "127.0.0.1:9092"}]',
    "CONFLUENT_CLOUD_CREDENTIAL": 'a JSON object {"confluent_cloud_api_key": "...", '
    '"confluent_cloud_api_secret": "..."}',
    "CONFLUENT_CLOUD_API_SECRET_PATH": 'a JSON object {"region_name": "...", "secret_name": "..."}',
    "KAFKA_API_SECRET_PATHS": 'a JSON array of {"region_name": "...", "secret_name": "..."} objects',
    "REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR": "a number greater than 0, e.g. 3 or 2.5",
    "MIN_CONSUMPTION_THROUGHPUT": "a number of bytes per second, 0 or more, e.g. 10485760",
    "CONSUMER_THROUGHPUT_PER_PARTITION": "a number of bytes per second greater than 0, e.g. 10485760",
    "MIN_RECOMMENDED_PARTITIONS": "a whole number, 1 or more",
    "SAMPLING_DAYS": "a whole number of days, 1 or more",
    "SAMPLING_BATCH_SIZE": "a whole number of records, 1 or more, or empty/0 to read every record",
    "SAMPLING_MAX_CONSECUTIVE_NULLS": "a whole number, 1 or more",
    "SAMPLING_TIMEOUT_SECONDS": "a number of seconds greater than 0, e.g. 2.0",
    "SAMPLING_MAX_CONTINUOUS_FAILED_BATCHES": "a whole number, 1 or more",
    "TIMESTAMP_SKEW_SECONDS": "a number of seconds, 0 or more, e.g. 900",
    "KAFKA_RETRY_TIMEOUT_SECONDS": "a number of seconds, 0 or more, e.g. 60",
    "MAX_CLUSTER_WORKERS": "a whole number, 1 or more",
    "MAX_WORKERS_PER_CLUSTER": "a whole number, 1 or more",
    "RECORDS_PER_CHUNK": "a whole number of records, 1 or more, e.g. 2000000",
    "RECOMMENDATION_MODEL": "one of: capacity, seed",
    "OVER_PROVISIONED_RATIO": "a number greater than 1, e.g. 2",
    "HOT_PARTITION_SKEW": "a number greater than 1, e.g. 2",
    "PRODUCER_THROUGHPUT_PER_PARTITION": "a number of bytes per second greater than 0, e.g. 10485760",
    "EGRESS_THROUGHPUT_PER_PARTITION": "a number of bytes per second greater than 0, e.g. 31457280",
    "PARTITION_ROUNDING": "one of: none, consumers, brokers",
    "PARTITIONER": "one of: murmur2, consistent_random, crc32",
    "PARTITION_BUDGET_PER_BROKER": "a whole number of partition replicas per broker, 1 or more, e.g. 4000",
    "KEY_SAMPLE_RECORDS": "a whole number of records, 0 (no key sample) or more, e.g. 10000",
    "FORECAST_DAYS": "a whole number of days, 0 (no forecast) or more, e.g. 30",
    "PEAK_BUCKET_SECONDS": "one of: 60, 300, 3600",
    "PROVISIONED_KAFKA_PROPERTIES": 'a JSON object of librdkafka properties, e.g. {"sasl.mechanism": "SCRAM-SHA-256"}',
    "API_KEY_READY_TIMEOUT_SECONDS": "a number of seconds greater than 0, e.g. 300",
    "REPORTS_URL": "an http:// or https:// URL where REPORTS_DIR is served, e.g. http://127.0.0.1:8070/, or empty",
    "MEASUREMENT_STORE_URL": "empty for the DuckDB file at MEASUREMENT_STORE_PATH, "
    "or postgresql://user:password@host:port/database",
    # Results to a Kafka topic
    "KAFKA_WRITER_TOPIC_NAME": "a Kafka topic name: 1-249 letters, digits, . _ -, not . or ..",
    "KAFKA_WRITER_TOPIC_PARTITION_COUNT": "a whole number, 1 or more",
    "KAFKA_WRITER_TOPIC_REPLICATION_FACTOR": "a whole number, 1 or more (at most the cluster's broker count)",
    "KAFKA_WRITER_TOPIC_DATA_RETENTION_IN_DAYS": "a whole number of days, 0 (keep for ever) or more",
}
BOOLEAN_FORM = "true or false (any case), also 1/0 or yes/no"
LIST_FORM = "a comma-separated list, e.g. a,b"
STORE_URL_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}
# Variables that can carry a credential: their values are never echoed in an error.
SECRET_VARIABLES = {
    "KAFKA_CREDENTIALS",
    "CONFLUENT_CLOUD_CREDENTIAL",
    "MEASUREMENT_STORE_URL",
    "PROVISIONED_KAFKA_PROPERTIES",
}

# Variables read outside `Settings`: the command's Dagster instance, the code location's env file,
# the executor choice, what the command hands its step processes, the deploy files'.
OTHER_VARIABLES = (
    "DAGSTER_HOME",
    "RECOMMENDER_ENV_FILE",
    "RECOMMENDER_EXECUTOR",
    "RECOMMENDER_EXECUTOR_CONFIG",
    "RECOMMENDER_PROVISIONED_CREDENTIALS",
    "RECOMMENDER_COMMAND_PID",
    "DAGSTER_PG_URL",
    "CELERY_BROKER_URL",
    "CELERY_BACKEND_URL",
)
# How alike (difflib's ratio) an unknown name must be to a known one to be warned about: a dropped,
# doubled or wrong letter or a missing S passes (SAMPLNG_DAYS 0.96, REPORT_DIR 0.95, PRINCIPLE_ID
# 0.92); PATH, HOME and other programs' variables do not (CONFLUENT_CLOUD_API_KEY 0.87, CELERY_BROKER
# 0.87), except these of the Confluent CLI and Terraform provider, which are let be by name.
TYPO_SIMILARITY = 0.9
FOREIGN_VARIABLES = frozenset({"CONFLUENT_CLOUD_API_KEY", "CONFLUENT_CLOUD_API_SECRET"})

CommaList = Annotated[list[str], NoDecode]
JsonList = Annotated[list[dict[str, Any]], NoDecode]
JsonObject = Annotated[dict[str, Any], NoDecode]


def _json(value: Any, shape: type) -> Any:
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else shape()
    if not isinstance(value, shape):
        raise ValueError(f"expected a JSON {'array' if shape is list else 'object'}")
    return value


class Settings(BaseSettings):
    """The validated configuration. Field aliases are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=True,
    )

    # Credentials and cluster discovery.
    use_cloud_api_for_kafka_credentials: bool = Field(
        False,
        validation_alias=AliasChoices(
            "USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS",
            "USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_RESOURCE_CREDENTIALS",
        ),
    )
    environment_filter: CommaList = Field(default_factory=list, alias="ENVIRONMENT_FILTER")
    kafka_cluster_filter: CommaList = Field(default_factory=list, alias="KAFKA_CLUSTER_FILTER")
    principal_id: str | None = Field(None, alias="PRINCIPAL_ID")
    confluent_cloud_credential: JsonObject = Field(default_factory=dict, alias="CONFLUENT_CLOUD_CREDENTIAL", repr=False)
    kafka_credentials: JsonList = Field(default_factory=list, alias="KAFKA_CREDENTIALS", repr=False)
    use_aws_secrets_manager: bool = Field(False, alias="USE_AWS_SECRETS_MANAGER")
    confluent_cloud_api_secret_path: JsonObject = Field(default_factory=dict, alias="CONFLUENT_CLOUD_API_SECRET_PATH")
    kafka_api_secret_paths: JsonList = Field(default_factory=list, alias="KAFKA_API_SECRET_PATHS")

    confluent_cloud_api_url: str = Field("https://api.confluent.cloud", alias="CONFLUENT_CLOUD_API_URL")
    confluent_metrics_api_url: str = Field("https://api.telemetry.confluent.cloud", alias="CONFLUENT_METRICS_API_URL")
    aws_secrets_manager_endpoint_url: str | None = Field(None, alias="AWS_SECRETS_MANAGER_ENDPOINT_URL")
    provisioned_kafka_properties: JsonObject = Field(
        default_factory=dict, alias="PROVISIONED_KAFKA_PROPERTIES", repr=False
    )
    api_key_ready_timeout_seconds: float = Field(300.0, gt=0, alias="API_KEY_READY_TIMEOUT_SECONDS")

    # Which topics.
    include_internal_topics: bool = Field(False, alias="INCLUDE_INTERNAL_TOPICS")
    topic_filter: CommaList = Field(default_factory=list, alias="TOPIC_FILTER")

    # The recommendation.
    recommendation_model: RecommendationModel = Field(RecommendationModel.CAPACITY, alias="RECOMMENDATION_MODEL")
    min_recommended_partitions: int = Field(6, ge=1, alias="MIN_RECOMMENDED_PARTITIONS")
    min_consumption_throughput: float = Field(10 * MIB, ge=0, alias="MIN_CONSUMPTION_THROUGHPUT")
    required_throughput_factor: float = Field(3.0, gt=0, alias="REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR")
    consumer_throughput_per_partition: float = Field(10 * MIB, gt=0, alias="CONSUMER_THROUGHPUT_PER_PARTITION")
    over_provisioned_ratio: float = Field(2.0, gt=1, alias="OVER_PROVISIONED_RATIO")
    hot_partition_skew: float = Field(2.0, gt=1, alias="HOT_PARTITION_SKEW")
    # Rao's max(t/p, t/c): what one partition takes from producers, and gives to all its readers.
    producer_throughput_per_partition: float = Field(10 * MIB, gt=0, alias="PRODUCER_THROUGHPUT_PER_PARTITION")
    egress_throughput_per_partition: float = Field(30 * MIB, gt=0, alias="EGRESS_THROUGHPUT_PER_PARTITION")
    partition_rounding: PartitionRounding = Field(PartitionRounding.NONE, alias="PARTITION_ROUNDING")
    partitioner: Partitioner = Field(Partitioner.MURMUR2, alias="PARTITIONER")
    # Self-managed clusters' partition cap: replicas a broker is expected to host.
    partition_budget_per_broker: int = Field(4000, ge=1, alias="PARTITION_BUDGET_PER_BROKER")
    key_sample_records: int = Field(10_000, ge=0, alias="KEY_SAMPLE_RECORDS")
    # The peak's bucket width, the same for both measuring methods (README, "One peak definition").
    peak_bucket_seconds: int = Field(3600, alias="PEAK_BUCKET_SECONDS")
    # How far ahead the daily peaks' trend is projected for a second, forecast recommendation.
    forecast_days: int = Field(30, ge=0, alias="FORECAST_DAYS")

    # Measuring.
    use_sample_records: bool = Field(True, alias="USE_SAMPLE_RECORDS")
    sampling_days: int = Field(7, ge=1, alias="SAMPLING_DAYS")
    sampling_batch_size: int | None = Field(10_000, alias="SAMPLING_BATCH_SIZE")
    sampling_max_consecutive_nulls: int = Field(50, ge=1, alias="SAMPLING_MAX_CONSECUTIVE_NULLS")
    sampling_timeout_seconds: float = Field(2.0, gt=0, alias="SAMPLING_TIMEOUT_SECONDS")
    sampling_max_continuous_failed_batches: int = Field(5, ge=1, alias="SAMPLING_MAX_CONTINUOUS_FAILED_BATCHES")
    # How long after its hour ends a record may still be appended: an hour settles only then.
    timestamp_skew_seconds: float = Field(900.0, ge=0, alias="TIMESTAMP_SKEW_SECONDS")
    # How long retriable Kafka errors (a leader moving, a broker restarting) are retried before a
    # topic is given up as in error, or a cluster that stopped answering as unreachable.
    kafka_retry_timeout_seconds: float = Field(60.0, ge=0, alias="KAFKA_RETRY_TIMEOUT_SECONDS")

    # Concurrency and outputs.
    max_cluster_workers: int = Field(4, ge=1, alias="MAX_CLUSTER_WORKERS")
    max_workers_per_cluster: int = Field(8, ge=1, alias="MAX_WORKERS_PER_CLUSTER")
    # The records one chunk (a step process, a Celery task) reads before another pays off.
    records_per_chunk: int = Field(2_000_000, ge=1, alias="RECORDS_PER_CHUNK")
    reports_dir: Path = Field(Path("reports"), alias="REPORTS_DIR")
    # Where a browser finds REPORTS_DIR over HTTP: the `reports` asset links each HTML report
    # under it. The default is the report server's own (`outputs/report_server.py`, 127.0.0.1
    # only); empty: no link, the preview only.
    reports_url: str = Field("http://127.0.0.1:8070/", alias="REPORTS_URL")
    measurement_store_path: Path = Field(Path(".local/measurements.duckdb"), alias="MEASUREMENT_STORE_PATH")
    # Empty: the DuckDB file above. A PostgreSQL URL carries a password: never shown (repr, errors).
    measurement_store_url: str | None = Field(None, alias="MEASUREMENT_STORE_URL", repr=False)

    # Results to a Kafka topic: one JSON record per analysed topic and day, on each analysed
    # cluster (`kafka_writer.py`). The topic is created when missing; 0 days keeps it for ever.
    use_kafka_writer: bool = Field(False, alias="USE_KAFKA_WRITER")
    kafka_writer_topic_name: str = Field("_kafka_partition_recommendations", alias="KAFKA_WRITER_TOPIC_NAME")
    kafka_writer_topic_partition_count: int = Field(6, ge=1, alias="KAFKA_WRITER_TOPIC_PARTITION_COUNT")
    kafka_writer_topic_replication_factor: int = Field(3, ge=1, alias="KAFKA_WRITER_TOPIC_REPLICATION_FACTOR")
    kafka_writer_topic_data_retention_in_days: int = Field(0, ge=0, alias="KAFKA_WRITER_TOPIC_DATA_RETENTION_IN_DAYS")

    @field_validator("kafka_writer_topic_name", mode="after")
    @classmethod
    def _kafka_topic_name(cls, value: str) -> str:
        # Kafka's own rule, checked here so a bad name fails before any run instead of at the end.
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value) or value in {".", ".."}:
            raise ValueError("is not a legal Kafka topic name")
        return value

    @field_validator("reports_url", mode="after")
    @classmethod
    def _reports_url(cls, value: str) -> str:
        # A link the UI can open: a browser refuses file:// from an http page.
        value = value.strip()
        if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("is not an http:// or https:// URL")
        return value if not value or value.endswith("/") else value + "/"

    @field_validator("peak_bucket_seconds", mode="after")
    @classmethod
    def _peak_bucket(cls, value: int) -> int:
        # Widths that divide an hour, that both measuring methods can bucket by.
        if value not in (60, 300, 3600):
            raise ValueError("is not one of 60, 300, 3600")
        return value

    @field_validator("environment_filter", "kafka_cluster_filter", "topic_filter", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> list[str]:
        if value is None:
            return []
        items = value if isinstance(value, list) else str(value).split(",")
        return [item.strip() for item in items if item.strip() and item.strip().lower() != "none"]

    @field_validator("kafka_credentials", "kafka_api_secret_paths", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> list:
        items = _json(value, list)
        if not all(isinstance(item, dict) for item in items):
            raise ValueError("every entry must be a JSON object")
        return items

    @field_validator(
        "confluent_cloud_credential", "confluent_cloud_api_secret_path", "provisioned_kafka_properties", mode="before"
    )
    @classmethod
    def _json_object(cls, value: Any) -> dict:
        return _json(value, dict)

    @field_validator("sampling_batch_size", mode="before")
    @classmethod
    def _optional_cap(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "0", "none", "all"}):
            return None
        if int(value) < 0:
            raise ValueError("must not be negative")
        return int(value) or None

    @field_validator("measurement_store_url", mode="before")
    @classmethod
    def _store_url(cls, value: Any) -> str | None:
        # The messages never quote the URL: it may hold a password.
        if value is None or not str(value).strip():
            return None
        value = str(value).strip()
        if "://" not in value:
            raise ValueError("is not a URL")
        scheme = value.split("://", 1)[0]
        if scheme.lower() not in STORE_URL_SCHEMES:
            shown = f" {scheme!r}" if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else ""
            raise ValueError(f"unsupported scheme{shown}: only PostgreSQL URLs are supported")
        try:
            url = make_url(value)
        except Exception:  # SQLAlchemy's messages may quote the URL
            raise ValueError("is not a well-formed URL (percent-encode special characters in the password)") from None
        if url.host and not re.fullmatch(r"[A-Za-z0-9._%:\[\]-]+", url.host):
            raise ValueError("is not a well-formed URL (percent-encode special characters in the password)")
        if not url.database:
            raise ValueError("names no database")
        return value

    @field_validator("principal_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _clusters_are_reachable(self) -> Settings:
        for index, entry in enumerate(self.kafka_credentials):
            missing = [key for key in ("kafka_cluster_id", "bootstrap.servers") if not entry.get(key)]
            if missing:
                raise ValueError(f"KAFKA_CREDENTIALS entry {index} lacks {', '.join(missing)}")
            if not CLUSTER_ID.match(str(entry["kafka_cluster_id"])):
                raise ValueError(
                    f"KAFKA_CREDENTIALS entry {index}: kafka_cluster_id may use only letters, digits, . _ -"
                )
        ids = [str(entry["kafka_cluster_id"]) for entry in self.kafka_credentials]
        duplicates = sorted({cid for cid in ids if ids.count(cid) > 1})
        if duplicates:
            raise ValueError(f"KAFKA_CREDENTIALS lists cluster {', '.join(duplicates)} more than once")
        return self

    def kafka_connections(self) -> list[ClusterConnection]:
        """Clusters from `KAFKA_CREDENTIALS`, after `KAFKA_CLUSTER_FILTER`."""
        return self.filter_clusters([connection_from_entry(entry, "env") for entry in self.kafka_credentials])

    def filter_clusters(self, connections: list[ClusterConnection]) -> list[ClusterConnection]:
        return [c for c in connections if not self.kafka_cluster_filter or c.cluster_id in self.kafka_cluster_filter]


def _variable_and_field(location: str) -> tuple[str, str | None]:
    for name, info in Settings.model_fields.items():
        aliases = info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else []
        if location in (name, info.alias, *aliases):
            return (info.alias or str(aliases[0])), name
    return location, None


def _describe(error: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a model-level check names its variable in its message
        return message
    variable, name = _variable_and_field(str(error["loc"][0]))
    annotation = Settings.model_fields[name].annotation if name else None
    expected = EXPECTED_FORMS.get(variable) or (
        BOOLEAN_FORM if annotation is bool else LIST_FORM if name and name.endswith("_filter") else ""
    )
    shown = "" if variable in SECRET_VARIABLES else f" (got {error.get('input')!r})"
    return f"{variable}: {message}{shown}" + (f"; expected {expected}" if expected else "")


def known_variables() -> set[str]:
    """Every variable name this pipeline reads: the settings' (and their old spellings) and `OTHER_VARIABLES`."""
    names = set(OTHER_VARIABLES)
    for info in Settings.model_fields.values():
        names.update([info.alias] if info.alias else [])
        if isinstance(info.validation_alias, AliasChoices):
            names.update(str(choice) for choice in info.validation_alias.choices)
    return names


def unknown_variable_warnings(env_file: str | None = ".env", environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per variable, in `env_file` or the environment, that this pipeline does not read
    but whose name is close to one it does (a typo, `SAMPLNG_DAYS`, is otherwise silently ignored).
    Names only, never a value (values may be secrets); other programs' variables are not named."""
    known = known_variables()
    sources = {name: "the environment" for name in (os.environ if environ is None else environ)}
    if env_file and Path(env_file).is_file():
        sources.update((name, str(env_file)) for name in dotenv_values(env_file, encoding="utf-8"))
    lines = []
    # Settings also reads its field names (`populate_by_name`), e.g. `sampling_days`.
    for name in sorted(set(sources) - known - set(Settings.model_fields) - FOREIGN_VARIABLES):
        match = difflib.get_close_matches(name.upper(), known, n=1, cutoff=TYPO_SIMILARITY)
        if match:
            lines.append(
                f"warning: {name} in {sources[name]} is not a variable this pipeline reads; did you mean {match[0]}?"
            )
    return lines


def _check_env_file_encoding(env_file: str | None) -> None:
    """A `.env` that is not UTF-8 (a Latin-1 `é` in a comment) is one line naming the file and
    where, instead of a `UnicodeDecodeError` from deep inside pydantic-settings."""
    if not env_file:
        return
    try:
        data = Path(env_file).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # pydantic-settings reads no file then
        return
    except OSError as error:
        raise ConfigurationError(f"{env_file}: cannot be read ({error.strerror})") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line = data.count(b"\n", 0, error.start) + 1
        column = len(data[line_start : error.start].decode("utf-8")) + 1
        raise ConfigurationError(
            f"{env_file}: not UTF-8 at line {line}, column {column} (byte offset {error.start}); "
            "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def load_settings(env_file: str | None = ".env") -> Settings:
    """Reads and validates the configuration; raises ConfigurationError listing every bad variable,
    or naming the env file when it is not UTF-8."""
    _check_env_file_encoding(env_file)
    try:
        return Settings(_env_file=env_file)
    except ValidationError as error:
        lines = [_describe(e) for e in error.errors(include_url=False)]
        raise ConfigurationError("Invalid configuration:\n  " + "\n  ".join(lines)) from None
