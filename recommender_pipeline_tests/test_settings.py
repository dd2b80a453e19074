"""Configuration: the original tool's variables and defaults, the fixes, and clear errors."""

import logging
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender_pipeline.errors import ConfigurationError
from recommender_pipeline.resources import build_resources
from recommender_pipeline.resources.kafka_clients import CLIENT_LOG
from recommender_pipeline.settings import (
    MIB,
    SECRET_VARIABLES,
    RecommendationModel,
    Settings,
    known_variables,
    load_settings,
    unknown_variable_warnings,
)
from recommender_pipeline_testing.pipeline import CONFIG_VARIABLES

CLUSTER = '[{"kafka_cluster_id": "local", "bootstrap.servers": "127.0.0.1:9092"}]'


@pytest.fixture
def env(configured_settings):
    return configured_settings


def test_defaults_are_the_original_tools(configure, tmp_path, monkeypatch):
    configure()
    monkeypatch.delenv("SAMPLING_TIMEOUT_SECONDS")
    monkeypatch.delenv("SAMPLING_MAX_CONSECUTIVE_NULLS")
    settings = load_settings(str(tmp_path / "absent.env"))
    assert settings.sampling_timeout_seconds == 2.0
    assert settings.min_recommended_partitions == 6
    assert settings.min_consumption_throughput == 10_485_760
    assert settings.required_throughput_factor == 3.0
    assert settings.use_sample_records is True
    assert settings.sampling_days == 7
    assert settings.sampling_batch_size == 10_000
    assert settings.sampling_max_consecutive_nulls == 50
    assert settings.sampling_max_continuous_failed_batches == 5
    assert (settings.max_cluster_workers, settings.max_workers_per_cluster) == (4, 8)
    assert settings.include_internal_topics is False
    assert settings.topic_filter == []
    assert settings.recommendation_model is RecommendationModel.CAPACITY
    assert settings.consumer_throughput_per_partition == 10 * MIB


def test_fixes_float_factor_lists_and_case_insensitive_booleans(env):
    settings = env(
        REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR="2.5",
        TOPIC_FILTER=" orders, payments ,",
        KAFKA_CLUSTER_FILTER="lkc-1,lkc-2",
        INCLUDE_INTERNAL_TOPICS="true",
        USE_SAMPLE_RECORDS="FALSE",
        SAMPLING_BATCH_SIZE="",
        RECOMMENDATION_MODEL="seed",
    )
    assert settings.required_throughput_factor == 2.5
    assert settings.topic_filter == ["orders", "payments"]
    assert settings.kafka_cluster_filter == ["lkc-1", "lkc-2"]
    assert settings.include_internal_topics is True
    assert settings.use_sample_records is False
    assert settings.sampling_batch_size is None  # read every record
    assert settings.recommendation_model is RecommendationModel.SEED


def test_a_cluster_entry_passes_any_librdkafka_property_and_masks_secrets(env):
    settings = env(
        KAFKA_CREDENTIALS='[{"kafka_cluster_id": "a", "bootstrap.servers": "h:9092", "sasl.username": "KEY1",'
        ' "sasl.password": "hunter2"}, {"kafka_cluster_id": "b", "bootstrap.servers": "h:9093",'
        ' "security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}]',
        KAFKA_CLUSTER_FILTER="a,b",
    )
    a, b = settings.kafka_connections()
    assert a.properties["security.protocol"] == "SASL_SSL"  # Confluent Cloud keys, as the original
    assert a.properties["sasl.mechanism"] == "PLAIN"
    assert a.key_id == "KEY1"
    assert "hunter2" not in repr(a) and "hunter2" not in str(a.public_properties())
    assert b.properties == {"bootstrap.servers": "h:9093", "security.protocol": "SSL", "ssl.ca.location": "/ca.pem"}
    local = env(KAFKA_CREDENTIALS=CLUSTER).kafka_connections()[0]
    assert local.properties == {"bootstrap.servers": "127.0.0.1:9092"}  # PLAINTEXT needs nothing else


def test_kafka_cluster_filter_applies_to_env_credentials(env):
    two = '[{"kafka_cluster_id": "a", "bootstrap.servers": "x"}, {"kafka_cluster_id": "b", "bootstrap.servers": "y"}]'
    assert [c.cluster_id for c in env(KAFKA_CREDENTIALS=two, KAFKA_CLUSTER_FILTER="b").kafka_connections()] == ["b"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR", "lots", "REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR: Input should be"),
        ("REQUIRED_CONSUMPTION_THROUGHPUT_FACTOR", "0", "expected a number greater than 0"),
        ("MIN_RECOMMENDED_PARTITIONS", "0", "MIN_RECOMMENDED_PARTITIONS: Input should be greater than or equal to 1"),
        ("SAMPLING_DAYS", "seven", "SAMPLING_DAYS: Input should be a valid integer"),
        ("SAMPLING_BATCH_SIZE", "-5", "SAMPLING_BATCH_SIZE: must not be negative"),
        ("SAMPLING_TIMEOUT_SECONDS", "0", "SAMPLING_TIMEOUT_SECONDS: Input should be greater than 0"),
        ("INCLUDE_INTERNAL_TOPICS", "maybe", "INCLUDE_INTERNAL_TOPICS: Input should be a valid boolean"),
        ("USE_SAMPLE_RECORDS", "sometimes", "expected true or false"),
        ("RECOMMENDATION_MODEL", "magic", "RECOMMENDATION_MODEL: Input should be 'capacity' or 'seed'"),
        ("CONSUMER_THROUGHPUT_PER_PARTITION", "-1", "CONSUMER_THROUGHPUT_PER_PARTITION: Input should be greater"),
        ("MAX_WORKERS_PER_CLUSTER", "0", "MAX_WORKERS_PER_CLUSTER: Input should be greater than or equal to 1"),
        ("KAFKA_CREDENTIALS", '{"kafka_cluster_id": "a"}', "KAFKA_CREDENTIALS: expected a JSON array"),
        ("KAFKA_CREDENTIALS", "[{oops", "KAFKA_CREDENTIALS: Expecting property name"),
        ("KAFKA_CREDENTIALS", '[{"kafka_cluster_id": "a"}]', "KAFKA_CREDENTIALS entry 0 lacks bootstrap.servers"),
        ("KAFKA_CREDENTIALS", '[{"kafka_cluster_id": "a b", "bootstrap.servers": "x"}]', "may use only letters"),
        ("CONFLUENT_CLOUD_CREDENTIAL", "[1]", "CONFLUENT_CLOUD_CREDENTIAL: expected a JSON object"),
        ("KAFKA_API_SECRET_PATHS", "[1]", "KAFKA_API_SECRET_PATHS: every entry must be a JSON object"),
    ],
)
def test_each_malformed_variable_gets_its_own_message(env, variable, value, message):
    with pytest.raises(ConfigurationError) as raised:
        env(**{variable: value})
    text = str(raised.value)
    assert message in text
    assert text.count("\n") == 1  # exactly one line for the one bad variable


def test_all_bad_variables_are_reported_together_and_secrets_never_echoed(env):
    with pytest.raises(ConfigurationError) as raised:
        env(SAMPLING_DAYS="x", MAX_CLUSTER_WORKERS="y", KAFKA_CREDENTIALS='[{"sasl.password": "hunter2"')
    text = str(raised.value)
    assert "SAMPLING_DAYS" in text and "MAX_CLUSTER_WORKERS" in text and "KAFKA_CREDENTIALS" in text
    assert "hunter2" not in text


def test_dotenv_file_is_read_and_environment_wins(configure, tmp_path, monkeypatch):
    configure()
    monkeypatch.delenv("SAMPLING_DAYS", raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"SAMPLING_DAYS=3\nTOPIC_FILTER=a,b\nKAFKA_CREDENTIALS={CLUSTER}\n")
    monkeypatch.setenv("TOPIC_FILTER", "c")
    settings = load_settings(str(dotenv))
    assert settings.sampling_days == 3
    assert settings.topic_filter == ["c"]


def test_a_misspelt_variable_is_warned_about_by_name_and_never_by_value(configure, tmp_path, monkeypatch):
    """`SAMPLNG_DAYS=2` and `REPORT_DIR=elsewhere` used to be ignored without a word (7 days
    measured, reports in ./reports): each is named with the variable it is close to."""
    configure()
    dotenv = tmp_path / ".env"
    dotenv.write_text("# the pipeline\nSAMPLNG_DAYS=2\nREPORT_DIR=elsewhere-hunter2\nexport TOPIC_FILTER=a\n")
    monkeypatch.setenv("KAFKA_CREDENTIAL", "hunter3")  # a missing S, in the environment
    monkeypatch.setenv("report_dir", "x")  # in lower case: fields' own names (`reports_dir`) are read too
    warnings = unknown_variable_warnings(str(dotenv))
    assert warnings == [
        "warning: KAFKA_CREDENTIAL in the environment is not a variable this pipeline reads; "
        "did you mean KAFKA_CREDENTIALS?",
        f"warning: REPORT_DIR in {dotenv} is not a variable this pipeline reads; did you mean REPORTS_DIR?",
        f"warning: SAMPLNG_DAYS in {dotenv} is not a variable this pipeline reads; did you mean SAMPLING_DAYS?",
        "warning: report_dir in the environment is not a variable this pipeline reads; did you mean REPORTS_DIR?",
    ]
    assert "hunter" not in "".join(warnings)
    assert load_settings(str(dotenv)).sampling_days == 7  # only warned about: the setting is not guessed


def test_other_programs_variables_are_never_warned_about():
    names = """PATH HOME USER SHELL LANG TERM PWD VIRTUAL_ENV PYTHONPATH JAVA_HOME KAFKA_BOOTSTRAP KAFKA_LOCAL_PORT
    KAFKA_VERSION KAFKA_HEAP_OPTS CCLOUD_OPENAPI_DIR REFRESH_SCREENSHOTS DAGSTER_PG_PASSWORD AWS_REGION
    AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY CONFLUENT_CLOUD_API_KEY CONFLUENT_CLOUD_API_SECRET
    CONFLUENT_CLOUD_EMAIL CELERY_BROKER KAFKA_CLUSTER_ID KAFKA_API_KEY KAFKA_API_SECRET"""
    assert unknown_variable_warnings(None, dict.fromkeys(names.split(), "x")) == []
    assert unknown_variable_warnings(None, dict.fromkeys(known_variables() | set(Settings.model_fields), "x")) == []


def test_the_names_read_outside_the_settings_are_known():
    from recommender_pipeline.orchestration.executors import EXECUTOR_CONFIG_VARIABLE, EXECUTOR_VARIABLE
    from recommender_pipeline.resources.kafka_credentials import PROVISIONED_VARIABLE

    names = {EXECUTOR_VARIABLE, EXECUTOR_CONFIG_VARIABLE, PROVISIONED_VARIABLE, "DAGSTER_HOME", "RECOMMENDER_ENV_FILE"}
    assert names | set(CONFIG_VARIABLES) <= known_variables()


def test_a_dotenv_that_is_not_utf8_is_one_line_naming_the_file_and_where(configure, tmp_path):
    """A Latin-1 `é` in a comment used to be a 55-line UnicodeDecodeError that did not name the file."""
    configure()
    dotenv = tmp_path / ".env"
    dotenv.write_bytes("SAMPLING_DAYS=3\n# café\n".encode("latin-1"))
    with pytest.raises(ConfigurationError) as raised:
        load_settings(str(dotenv))
    assert str(raised.value) == (
        f"{dotenv}: not UTF-8 at line 2, column 6 (byte offset 21); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )
    dotenv.write_bytes("SAMPLING_DAYS=3\n# café\n".encode())
    assert load_settings(str(dotenv)).sampling_days == 3


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PROVISIONED_KAFKA_PROPERTIES", '{"ssl.key.password": "hunter2", bad'),
        ("CONFLUENT_CLOUD_CREDENTIAL", '{"confluent_cloud_api_secret": "hunter2"'),
        ("MEASUREMENT_STORE_URL", "mysql://user:hunter2@127.0.0.1/db"),
    ],
)
def test_a_malformed_credential_bearing_variable_is_named_never_echoed(env, variable, value):
    with pytest.raises(ConfigurationError) as raised:
        env(**{variable: value})
    assert variable in str(raised.value) and "hunter2" not in str(raised.value)


def test_the_settings_repr_carries_no_secret(env):
    settings = env(
        KAFKA_CREDENTIALS='[{"kafka_cluster_id": "c", "bootstrap.servers": "h:1", "sasl.password": "hunter2"}]',
        CONFLUENT_CLOUD_CREDENTIAL='{"confluent_cloud_api_key": "k", "confluent_cloud_api_secret": "hunter3"}',
        PROVISIONED_KAFKA_PROPERTIES='{"ssl.key.password": "hunter4"}',
        MEASUREMENT_STORE_URL="postgresql://u:hunter5@127.0.0.1/db",
    )
    assert not any(secret in repr(settings) for secret in ("hunter2", "hunter3", "hunter4", "hunter5"))


def test_a_dead_clusters_client_logs_each_distinct_line_once(env, caplog):
    settings = env(KAFKA_CREDENTIALS='[{"kafka_cluster_id": "dead", "bootstrap.servers": "127.0.0.1:9"}]')
    resources = build_resources("absent.env")
    assert settings.kafka_credentials[0]["kafka_cluster_id"] == "dead"
    # The filter lets each distinct line through once per process: start from a process that has
    # seen none (an earlier test may have talked to a dead cluster on the same port).
    for log_filter in CLIENT_LOG.filters:
        log_filter.seen.clear()
    consumer = resources["kafka"].consumer("dead")
    with caplog.at_level(logging.WARNING, logger=CLIENT_LOG.name):
        for _ in range(30):  # librdkafka retries the connection about every 50-100 ms meanwhile
            consumer.poll(0.1)
    consumer.close()
    lines = [record.getMessage() for record in caplog.records if record.name == CLIENT_LOG.name]
    assert lines and any("Connection refused" in line for line in lines)
    assert len(lines) == len({re.sub(r"\d+", "#", line) for line in lines})  # no repeats


VARIABLES = sorted(info.alias for info in Settings.model_fields.values() if info.alias)
VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
    st.sampled_from(["", "0", "-1", "1e309", "true", "[]", "{}", "[{}]", '{"a": 1}', "nan", "7", "a,b"]),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(VARIABLES), VALUES, max_size=6))
def test_any_values_give_settings_or_one_line_per_bad_variable_never_a_traceback(values):
    """Fuzzed across every variable: a valid configuration, or ConfigurationError with one line
    per bad variable, naming it; a credential-bearing value is never echoed."""
    saved = {name: os.environ.pop(name) for name in CONFIG_VARIABLES if name in os.environ}
    os.environ.update(values)
    try:
        load_settings(None)
    except ConfigurationError as error:
        lines = str(error).splitlines()[1:]
        assert lines and all(line.startswith("  ") for line in lines)
        named = [line.strip().split(":")[0].split(" ")[0] for line in lines]
        assert all(name in VARIABLES for name in named), lines
        assert len(named) == len(set(named)) or "KAFKA_CREDENTIALS" in named
        shown = {value for name, value in values.items() if name not in SECRET_VARIABLES}
        for name in SECRET_VARIABLES & set(values):
            if len(values[name]) >= 4 and values[name] not in shown:
                assert repr(values[name]) not in str(error)
    finally:
        for name in values:
            os.environ.pop(name, None)
        os.environ.update(saved)
