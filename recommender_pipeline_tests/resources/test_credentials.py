"""Credential paths end to end: AWS Secrets Manager (moto's server) with SCRAM on the real broker."""

import json
import uuid

import boto3
import pytest
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from recommender_pipeline.days import utc_today
from recommender_pipeline_testing.known_truth import records_in_hour
from recommender_pipeline_testing.workloads import create_topic, produce

REGION = "eu-west-1"


@pytest.fixture
def scram_user(kafka_bootstrap):
    """A real SCRAM-SHA-256 user on the broker, as a Kafka API key would be."""
    user, password = f"user-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex + "Pw!"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result()
    return user, password


@pytest.fixture
def aws(configure, secrets_manager_url, monkeypatch):
    """Configures the AWS path and returns a function that stores a secret in moto."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=secrets_manager_url)

    def put(name: str, value: str) -> dict:
        client.create_secret(Name=name, SecretString=value)
        return {"region_name": REGION, "secret_name": name}

    def apply(paths: list[dict], **variables):
        configure(
            USE_AWS_SECRETS_MANAGER="True",
            KAFKA_API_SECRET_PATHS=json.dumps(paths),
            AWS_SECRETS_MANAGER_ENDPOINT_URL=secrets_manager_url,
            KAFKA_CREDENTIALS="",
            **variables,
        )

    return put, apply


def test_aws_secrets_manager_path_measures_through_scram(
    aws, scram_user, sasl_bootstrap, kafka_bootstrap, pipeline, prefix
):
    put, apply = aws
    user, password = scram_user
    topic = f"{prefix}.orders"
    create_topic(kafka_bootstrap, topic, 2)
    day = utc_today()
    produce(kafka_bootstrap, topic, records_in_hour(day, 0, 40, lambda i: (None, b"a" * 25, []), partitions=2))
    secret = {
        "kafka_cluster_id": "lkc-aws",
        "bootstrap.servers": sasl_bootstrap,
        "sasl.username": user,
        "sasl.password": password,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
    }
    apply([put(f"kafka-{prefix}", json.dumps(secret))], TOPIC_FILTER=prefix, SAMPLING_DAYS=1)

    result = pipeline.inventory()
    assert result.success
    manifest = result.asset_materializations_for_node("credentials")[0].metadata["manifest"].value
    assert "aws_secrets_manager" in manifest and user in manifest and password not in manifest
    assert pipeline.topic_keys() == [f"lkc-aws/{topic}"]
    assert pipeline.measure(day).success
    row = pipeline.store.read_measurements(day.isoformat(), day.isoformat()).iloc[0]
    assert (row["cluster_id"], row["records"], row["bytes"]) == ("lkc-aws", 40, 1000)


def _failure_message(result) -> str:
    failures = [event for event in result.all_events if event.is_step_failure]
    assert failures, "expected a failed step"
    error, messages = failures[0].step_failure_data.error, []
    while error is not None:  # Dagster wraps the asset's exception: read the whole chain
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


def test_a_missing_secret_fails_with_its_name(aws, pipeline):
    _, apply = aws
    apply([{"region_name": REGION, "secret_name": "no-such-secret"}])
    result = pipeline.inventory()
    assert not result.success
    message = _failure_message(result)
    assert "no-such-secret" in message and "ResourceNotFoundException" in message
    assert "KAFKA_API_SECRET_PATHS" in message


def test_a_malformed_secret_fails_with_its_name(aws, pipeline, prefix):
    put, apply = aws
    apply([put(f"broken-{prefix}", "not json {")])
    message = _failure_message(pipeline.inventory())
    assert f"broken-{prefix}" in message and "is not a JSON object" in message

    apply([put(f"partial-{prefix}", json.dumps({"kafka_cluster_id": "x"}))])
    message = _failure_message(pipeline.inventory())
    assert f"partial-{prefix}" in message and "lacks bootstrap.servers" in message


@pytest.mark.timeout(120)
def test_a_wrong_scram_password_is_a_cluster_failure_not_a_hang(aws, scram_user, sasl_bootstrap, pipeline, prefix):
    put, apply = aws
    user, _ = scram_user
    secret = {
        "kafka_cluster_id": "lkc-wrong",
        "bootstrap.servers": sasl_bootstrap,
        "sasl.username": user,
        "sasl.password": "not-the-password",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
    }
    apply([put(f"wrong-{prefix}", json.dumps(secret))], TOPIC_FILTER=prefix)
    result = pipeline.inventory()
    assert not result.success
    message = _failure_message(result)
    assert "lkc-wrong" in message
    assert "not-the-password" not in message
