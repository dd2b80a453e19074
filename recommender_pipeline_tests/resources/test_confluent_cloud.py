"""Confluent Cloud paths against the local emulator: the Metrics API method, the REST client's
retries and paging, provisioned API keys and their cleanup, and that no secret leaks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recommender_pipeline.command import runs
from recommender_pipeline.days import day_start_ms, iso_utc, utc_today
from recommender_pipeline.errors import ConfluentApiError
from recommender_pipeline.measuring.measurement import TopicSpec
from recommender_pipeline.measuring.metrics_api import MetricsDayMeasurer
from recommender_pipeline.resources import build_resources
from recommender_pipeline.resources.confluent_cloud import ConfluentCloudResource
from recommender_pipeline_testing.ccloud_emulator import ConfluentCloudEmulator
from recommender_pipeline_testing.known_truth import records_in_hour
from recommender_pipeline_testing.pipeline import CONFIG_VARIABLES, command_env
from recommender_pipeline_testing.workloads import Record, create_topic, produce, send_records

CLOUD_KEY, CLOUD_SECRET = "CLOUDKEY12345678", "cloud-secret-" + "s" * 51
PRINCIPAL = "sa-recommender"

EGRESS_RATIO = 2.5


def cloud_variables(emulator: ConfluentCloudEmulator, **extra) -> dict:
    return {
        "CONFLUENT_CLOUD_CREDENTIAL": json.dumps(
            {"confluent_cloud_api_key": CLOUD_KEY, "confluent_cloud_api_secret": CLOUD_SECRET}
        ),
        "CONFLUENT_CLOUD_API_URL": emulator.url,
        "CONFLUENT_METRICS_API_URL": emulator.url,
        **extra,
    }


def start_emulator(kafka_bootstrap: str, sasl_bootstrap: str, environments: list[dict], **options):
    return ConfluentCloudEmulator(
        kafka_bootstrap,
        sasl_bootstrap,
        environments=environments,
        cloud_keys={CLOUD_KEY: CLOUD_SECRET},
        principals={PRINCIPAL},
        **options,
    ).start()


@pytest.fixture
def emulator(kafka_bootstrap, sasl_bootstrap, dataset):
    """One environment, one cluster `lkc-known` whose topics are the known-truth dataset."""
    environments = [
        {"id": "env-1", "display_name": "prod", "clusters": [{"id": "lkc-known", "topic_prefix": dataset.prefix}]}
    ]
    # Consumers read each record 2.5 times over, so egress cannot pass for ingress.
    server = start_emulator(kafka_bootstrap, sasl_bootstrap, environments, egress_ratio=EGRESS_RATIO)
    yield server
    server.stop()


def cloud_resource(tmp_path: Path, backoff: float = 0.05) -> ConfluentCloudResource:
    resources = build_resources(str(tmp_path / "no.env"))
    return ConfluentCloudResource(config=resources["config"], secrets=resources["secrets"], backoff_seconds=backoff)


@pytest.mark.parametrize("bucket", [300, 3600])
def test_metrics_api_method_agrees_with_record_sampling(
    dataset, emulator, configure, pipeline, kafka_bootstrap, specs, bucket
):
    """Both methods on the same days, at the same PEAK_BUCKET_SECONDS: the same busiest bucket,
    each at its truth (sampling: key + value + headers; the Metrics API: the wire size)."""
    cluster = json.dumps([{"kafka_cluster_id": "lkc-known", "bootstrap.servers": kafka_bootstrap}])
    common = {
        "TOPIC_FILTER": dataset.prefix,
        "KAFKA_CREDENTIALS": cluster,
        "SAMPLING_BATCH_SIZE": "",
        "PEAK_BUCKET_SECONDS": bucket,
    }
    d2, d1, _ = dataset.days
    configure(**common)
    assert pipeline.inventory().success
    for day in (d2, d1):
        assert pipeline.measure(day).success
    sampled = pipeline.store.read_measurements(d2.isoformat(), d1.isoformat()).set_index(["date", "topic"])

    configure(**common, **cloud_variables(emulator, USE_SAMPLE_RECORDS="false"))
    before = len(emulator.requests)
    for day in (d2, d1):
        result = pipeline.measure(day, force=True)  # the same days again, by the other method
        assert result.success
    by_metrics = pipeline.store.read_measurements(d2.isoformat(), d1.isoformat()).set_index(["date", "topic"])
    queries = emulator.requests[before:]
    assert len(queries) == 12  # 6 metric queries per day, for all topics at once
    for request in queries:  # the client's requests follow Confluent's published request schema
        specs.validate("metrics", "/components/schemas/QueryRequest", request["body"], write=True)
    for name, day in [("multi", d2), ("multi", d1), ("nulls", d1), ("wide", d1), ("short", d1)]:
        key = (day.isoformat(), dataset.topic(name))
        truth = dataset.day(name, day)
        metrics_row, sampled_row = by_metrics.loc[key], sampled.loc[key]
        assert metrics_row["method"] == "metrics_api" and sampled_row["method"] == "sampling_records"
        assert metrics_row["records"] == sampled_row["records"] == truth.records  # counts are exact
        # received_bytes is the records' size on the wire (v2 record format), not key + value +
        # headers: exact against the produced records, and above what record sampling counts.
        assert metrics_row["bytes"] == truth.wire_bytes
        assert sampled_row["bytes"] == truth.bytes < truth.wire_bytes
        assert metrics_row["mean_record_bytes"] == pytest.approx(truth.wire_bytes / truth.records, rel=1e-9)
        # One peak definition: the busiest bucket of the same width, at the same time, by both.
        sampled_peak, sampled_start = truth.peak(bucket)
        wire_peak, wire_start = truth.peak(bucket, wire=True)
        assert metrics_row["peak_ingress_bytes_per_sec"] == pytest.approx(wire_peak, rel=1e-9)
        assert sampled_row["peak_ingress_bytes_per_sec"] == pytest.approx(sampled_peak, rel=1e-9)
        assert metrics_row["bucket_seconds"] == sampled_row["bucket_seconds"] == bucket
        assert sampled_start == wire_start
        assert metrics_row["peak_bucket_start"] == sampled_row["peak_bucket_start"]
        assert metrics_row["peak_bucket_start"] == iso_utc(day_start_ms(day) + wire_start)
        partitions = max(truth.partition_wire_bytes) + 1
        assert json.loads(metrics_row["partition_bytes"])[:partitions] == [
            truth.partition_wire_bytes.get(p, 0) for p in range(partitions)
        ]
        mean = truth.wire_bytes / len(json.loads(metrics_row["partition_bytes"]))
        assert metrics_row["skew"] == pytest.approx(max(truth.partition_wire_bytes.values()) / mean, rel=1e-9)
    hot = by_metrics.loc[(d2.isoformat(), dataset.topic("multi"))]
    assert bool(hot["hot_partition_ingress"]) is True  # 900 records on partition 0 at 15:00
    assert bool(hot["hot_partition_egress"]) is True
    assert hot["egress_bytes"] == round(dataset.day("multi", d2).wire_bytes * EGRESS_RATIO)
    balanced = by_metrics.loc[(d1.isoformat(), dataset.topic("multi"))]  # 600 records dealt over 3 partitions
    assert bool(balanced["hot_partition_ingress"]) is False and bool(balanced["hot_partition_egress"]) is False


def test_metrics_api_days_beyond_its_retention_are_not_measurable(
    dataset, emulator, configure, pipeline, kafka_bootstrap
):
    cluster = json.dumps([{"kafka_cluster_id": "lkc-known", "bootstrap.servers": kafka_bootstrap}])
    configure(
        TOPIC_FILTER=f"{dataset.prefix}.multi",
        KAFKA_CREDENTIALS=cluster,
        **cloud_variables(emulator, USE_SAMPLE_RECORDS="false", SAMPLING_DAYS=10),
    )
    assert pipeline.inventory().success
    old = dataset.today.fromordinal(dataset.today.toordinal() - 8)
    assert pipeline.measure(old).success
    row = pipeline.measurement(old, dataset.topic("multi"))
    assert row["status"] == "not_measurable" and "7-day retention" in row["reason"]


def test_client_retries_429_with_and_without_headers_and_5xx(emulator, configure, tmp_path):
    configure(**cloud_variables(emulator))
    cloud = cloud_resource(tmp_path)
    emulator.fail_next(
        "/org/v2/environments",
        [
            (429, {"errors": [{"status": "429", "detail": "Too many requests"}]}, {"rateLimit-reset": "1"}),
            (429, {"errors": [{"status": "429", "detail": "Too many requests"}]}, {}),
            (503, None, {}),
        ],
    )
    started = time.monotonic()
    assert [e["id"] for e in cloud.environments()] == ["env-1"]
    assert time.monotonic() - started >= 1.0  # honoured rateLimit-reset: 1
    assert cloud.request_count() == 4


def test_client_gives_up_with_a_clear_error_and_no_secret(emulator, configure, tmp_path):
    wrong = json.dumps({"confluent_cloud_api_key": CLOUD_KEY, "confluent_cloud_api_secret": "wrong-secret-value"})
    configure(**{**cloud_variables(emulator), "CONFLUENT_CLOUD_CREDENTIAL": wrong})
    with pytest.raises(ConfluentApiError) as raised:
        cloud_resource(tmp_path).environments()
    assert raised.value.status == 401
    assert "GET /org/v2/environments" in str(raised.value) and "wrong-secret-value" not in str(raised.value)


def test_expired_page_token_restarts_the_query(emulator, configure, tmp_path, dataset):
    configure(**cloud_variables(emulator))
    cloud = cloud_resource(tmp_path)
    body = {
        "aggregations": [{"metric": "io.confluent.kafka.server/received_records"}],
        "filter": {"field": "resource.kafka.id", "op": "EQ", "value": "lkc-known"},
        "granularity": "P1D",
        "group_by": ["metric.topic"],
        "intervals": [f"{dataset.days[0].isoformat()}T00:00:00Z/{dataset.days[2].isoformat()}T00:00:00Z"],
        "limit": 2,
    }
    full = cloud.query_metrics(body)
    assert len({point["metric.topic"] for point in full}) > 2  # it took several pages
    original = cloud.metrics.request
    calls = []

    def expire_after_first_page(method, path, **kwargs):
        calls.append(kwargs.get("params"))
        if len(calls) == 2:
            emulator.expire_page_tokens()
        return original(method, path, **kwargs)

    cloud.metrics.request = expire_after_first_page
    again = cloud.query_metrics(body)
    assert sorted(map(json.dumps, again)) == sorted(map(json.dumps, full))
    assert calls[2] == {}  # restarted from the first page after the 400


def test_measuring_300_topics_by_metrics_takes_a_constant_number_of_requests(
    kafka_bootstrap, sasl_bootstrap, configure, tmp_path, prefix
):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    names = [f"{prefix}.t{i:03d}" for i in range(300)]
    for future in admin.create_topics([NewTopic(name, 1, 1) for name in names], operation_timeout=60).values():
        future.result()
    day = utc_today()
    for name in names[:30]:
        produce(kafka_bootstrap, name, records_in_hour(day, 0, 2, lambda i: (None, b"x", [])))
    environments = [{"id": "env-1", "clusters": [{"id": "lkc-many", "topic_prefix": prefix}]}]
    with start_emulator(kafka_bootstrap, sasl_bootstrap, environments) as server:
        configure(**cloud_variables(server))
        from recommender_pipeline.measuring.measurement import Status, TopicSpec
        from recommender_pipeline.measuring.metrics_api import MetricsDayMeasurer

        cloud = cloud_resource(tmp_path)
        rows = MetricsDayMeasurer(cloud.query_metrics, "lkc-many", day).measure(
            [TopicSpec("lkc-many", name, 1, None, False) for name in names]
        )
        requests = cloud.request_count()
    print(f"\n300 topics measured by the Metrics API in {requests} HTTP requests")
    assert requests == 6  # six queries; 300 topic-partitions fit one page (1,000 groups) each
    assert sum(row.records for row in rows) == 60
    assert sum(row.status is Status.MEASURED for row in rows) == 30


@pytest.fixture
def provisioning(kafka_bootstrap, sasl_bootstrap, configure, prefix, monkeypatch):
    """Two environments, three clusters over the broker's SASL listener, keys for PRINCIPAL."""
    day = utc_today()
    create_topic(kafka_bootstrap, f"{prefix}.payments", 3)
    produce(kafka_bootstrap, f"{prefix}.payments", records_in_hour(day, 0, 30, lambda i: (None, b"p" * 10, []), 3))
    environments = [
        {
            "id": "env-a",
            "display_name": "a",
            "clusters": [{"id": "lkc-a1", "topic_prefix": prefix}, {"id": "lkc-a2", "topic_prefix": prefix}],
        },
        {"id": "env-b", "display_name": "b", "clusters": [{"id": "lkc-b1", "topic_prefix": prefix}]},
    ]
    server = start_emulator(kafka_bootstrap, sasl_bootstrap, environments)
    secrets = []
    create = ConfluentCloudResource.create_api_key

    def recording_create(self, *args):
        key_id, secret = create(self, *args)
        secrets.append(secret)
        return key_id, secret

    monkeypatch.setattr(ConfluentCloudResource, "create_api_key", recording_create)
    configure(
        **cloud_variables(server),
        USE_CONFLUENT_CLOUD_API_KEY_TO_FETCH_KAFKA_CREDENTIALS="true",
        PRINCIPAL_ID=PRINCIPAL,
        PROVISIONED_KAFKA_PROPERTIES='{"sasl.mechanism": "SCRAM-SHA-256"}',
        API_KEY_READY_TIMEOUT_SECONDS=4,
        TOPIC_FILTER=prefix,
        SAMPLING_DAYS=1,
        KAFKA_CREDENTIALS="",
    )
    yield server, secrets, day
    server.stop()


def run_command(pipeline, tmp_path, day, in_process: bool = True):
    settings = pipeline.settings
    options = runs.CommandOptions(day, in_process=in_process, env_file=str(tmp_path / "no.env"))
    return runs.run_recommendations(pipeline.instance, settings, options)


def test_provisioned_keys_are_created_per_filtered_cluster_used_and_deleted(
    provisioning, pipeline, tmp_path, monkeypatch
):
    server, _, day = provisioning
    server.key_propagation_seconds = 1.5  # the key works only after a while: the pipeline must wait
    monkeypatch.setenv("ENVIRONMENT_FILTER", "env-a")
    monkeypatch.setenv("KAFKA_CLUSTER_FILTER", "lkc-a2,lkc-b1")
    started = time.monotonic()
    outcome = run_command(pipeline, tmp_path, day)
    assert outcome.success, outcome.failed_runs
    assert time.monotonic() - started >= 1.5
    assert [server.api_keys.get(k) for k in outcome.provisioning.created_keys] == [None]
    assert len(outcome.provisioning.created_keys) == 1 == len(server.deleted_keys)  # only lkc-a2
    created = [r for r in server.requests if r["method"] == "POST" and r["path"] == "/iam/v2/api-keys"]
    assert created[0]["body"]["spec"]["resource"]["id"] == "lkc-a2"
    assert not server.api_keys and not server.scram_users
    assert len(outcome.reports) == 3  # detail, summary and HTML
    manifest = pipeline.store.read_inventory()
    assert set(manifest["cluster_id"]) == {"lkc-a2"}
    # The cmk API's cluster type, which sets the cap and per-partition guidelines.
    assert set(manifest["cluster_type"]) == {"Standard"}


def test_keys_are_deleted_when_the_run_fails_midway_and_foreign_keys_survive(
    provisioning, pipeline, tmp_path, monkeypatch
):
    server, _, day = provisioning
    foreign = cloud_resource(tmp_path).create_api_key(PRINCIPAL, "lkc-b1", "someone else's", "not ours")[0]

    def fail_after_provisioning(*args, **kwargs):
        assert len(server.api_keys) == 4  # ours for three clusters, plus the foreign one
        raise RuntimeError("injected failure mid-run")

    monkeypatch.setattr(runs.CommandRuns, "inventory", fail_after_provisioning)
    with pytest.raises(RuntimeError, match="injected"):
        run_command(pipeline, tmp_path, day)
    assert list(server.api_keys) == [foreign]


def test_a_key_that_never_works_fails_its_cluster_clearly_and_is_deleted(provisioning, pipeline, tmp_path):
    server, _, day = provisioning
    server.unusable_clusters.add("lkc-b1")
    outcome = run_command(pipeline, tmp_path, day)
    assert not outcome.success
    assert any("lkc-b1" in failure and "did not authenticate within 4s" in failure for failure in outcome.failed_runs)
    assert not server.api_keys  # all three deleted, the unusable one too
    assert len(server.deleted_keys) == 3
    assert len(outcome.reports) == 6  # the two good clusters still got their three reports


@pytest.mark.parametrize("use_sample_records", ["true", "false"])
def test_no_secret_reaches_dagster_storage_logs_reports_or_errors(
    provisioning, pipeline, tmp_path, capfd, monkeypatch, use_sample_records
):
    """On the multiprocess executor, as the command runs it: the provisioned keys reach the step
    processes only through their environment, by record sampling and by the Metrics API."""
    server, secrets, day = provisioning
    monkeypatch.setenv("USE_SAMPLE_RECORDS", use_sample_records)
    server.unusable_clusters.add("lkc-a1")  # a failing path as well as successful ones
    outcome = run_command(pipeline, tmp_path, day, in_process=False)
    assert outcome.measured_days and outcome.reports
    assert len(secrets) == 3 and not server.api_keys
    captured = capfd.readouterr()
    haystacks = [captured.out, captured.err, "\n".join(outcome.failed_runs)]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            haystacks.append(path.read_bytes().decode("utf-8", "replace"))
    for run in pipeline.instance.get_runs():
        haystacks += [json.dumps(run.run_config), json.dumps(run.tags)]
        haystacks += [str(event) for event in pipeline.instance.all_logs(run.run_id)]
    store = pipeline.store  # queried, not only scanned as a file
    haystacks += [store.read_measurements("2000-01-01", "2100-01-01").to_csv(), store.read_inventory().to_csv()]
    for secret in [CLOUD_SECRET, *secrets]:
        assert not any(secret in text for text in haystacks), "a secret leaked"
    assert any("lkc-a1" in failure for failure in outcome.failed_runs)


def test_client_waits_out_the_metrics_rate_limit_from_its_headers(
    kafka_bootstrap, sasl_bootstrap, configure, tmp_path, dataset
):
    environments = [{"id": "env-1", "clusters": [{"id": "lkc-known", "topic_prefix": dataset.prefix}]}]
    with start_emulator(
        kafka_bootstrap, sasl_bootstrap, environments, rate_limit_per_minute=2, rate_limit_window_seconds=2.0
    ) as server:
        configure(**cloud_variables(server))
        cloud = cloud_resource(tmp_path)
        body = {
            "aggregations": [{"metric": "io.confluent.kafka.server/received_records"}],
            "filter": {"field": "resource.kafka.id", "op": "EQ", "value": "lkc-known"},
            "granularity": "P1D",
            "intervals": [f"{dataset.days[1].isoformat()}T00:00:00Z/P1D"],
        }
        started = time.monotonic()
        totals = [cloud.query_metrics(body)[0]["value"] for _ in range(3)]
        statuses = [r["status"] for r in server.requests]
    assert statuses.count(429) >= 1 and statuses[-1] == 200  # the third call was limited, then retried
    assert time.monotonic() - started >= 1.0  # it waited for the window, per rateLimit-reset
    assert totals[0] == totals[1] == totals[2] > 0


def test_metrics_method_with_every_credential_from_aws_secrets_manager(
    dataset, emulator, configure, pipeline, kafka_bootstrap, secrets_manager_url, monkeypatch, prefix
):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("secretsmanager", region_name="us-east-2", endpoint_url=secrets_manager_url)
    cloud_secret = json.dumps({"confluent_cloud_api_key": CLOUD_KEY, "confluent_cloud_api_secret": CLOUD_SECRET})
    kafka_secret = json.dumps({"kafka_cluster_id": "lkc-known", "bootstrap.servers": kafka_bootstrap})
    client.create_secret(Name=f"cloud-{prefix}", SecretString=cloud_secret)
    client.create_secret(Name=f"kafka-{prefix}", SecretString=kafka_secret)
    configure(
        USE_AWS_SECRETS_MANAGER="true",
        AWS_SECRETS_MANAGER_ENDPOINT_URL=secrets_manager_url,
        CONFLUENT_CLOUD_API_SECRET_PATH=json.dumps({"region_name": "us-east-2", "secret_name": f"cloud-{prefix}"}),
        KAFKA_API_SECRET_PATHS=json.dumps([{"region_name": "us-east-2", "secret_name": f"kafka-{prefix}"}]),
        KAFKA_CREDENTIALS="",
        CONFLUENT_METRICS_API_URL=emulator.url,
        USE_SAMPLE_RECORDS="false",
        TOPIC_FILTER=f"{dataset.prefix}.multi",
    )
    assert pipeline.inventory().success
    d2 = dataset.days[0]
    assert pipeline.measure(d2).success
    row = pipeline.measurement(d2, dataset.topic("multi"))
    truth = dataset.day("multi", d2)
    assert (row["method"], row["records"], row["bytes"]) == ("metrics_api", 1200, truth.wire_bytes)
    assert {r["auth_key"] for r in emulator.requests} == {CLOUD_KEY}


def test_a_metrics_answer_that_is_not_json_is_retried_and_a_final_failure_names_cluster_metric_day(
    emulator, configure, tmp_path
):
    configure(**cloud_variables(emulator))
    cloud = cloud_resource(tmp_path, backoff=0.01)
    html = (200, "<html><body>502 Bad Gateway</body></html>", {})
    day = utc_today().fromordinal(utc_today().toordinal() - 1)
    spec = TopicSpec("lkc-known", "orders", 1, None, False)
    emulator.fail_next("/v2/metrics/cloud/query", [html, (200, '{"data": [', {})])  # HTML, then a cut-off body
    rows = MetricsDayMeasurer(cloud.query_metrics, "lkc-known", day).measure([spec])
    assert rows[0].status in {"measured", "empty"}  # the third attempt answered
    assert cloud.request_count() == 6 + 2

    emulator.fail_next("/v2/metrics/cloud/query", [html] * 8)
    with pytest.raises(ConfluentApiError) as raised:
        MetricsDayMeasurer(cloud.query_metrics, "lkc-known", day).measure([spec])
    message = str(raised.value)
    assert f"cluster lkc-known, metric received_bytes, day {day}" in message
    assert "not JSON" in message and "8 attempts" in message


def test_a_refused_key_fails_only_its_cluster_and_a_lost_answer_leaves_no_key_behind(
    provisioning, pipeline, tmp_path, monkeypatch
):
    server, _, day = provisioning
    monkeypatch.setenv("KAFKA_CLUSTER_FILTER", "lkc-a1,lkc-a2,lkc-b1")
    # lkc-a1: 403, nothing created. lkc-a2: created, but the answer is lost (a gateway timeout).
    forbidden = {"errors": [{"status": "403", "detail": "Forbidden Access"}]}
    server.fail_next("/iam/v2/api-keys", [(403, forbidden, {})])
    server.lose_next_answer("POST", "/iam/v2/api-keys")
    outcome = run_command(pipeline, tmp_path, day)
    assert set(outcome.provisioning.failed) == {"lkc-a1", "lkc-a2"}
    assert "HTTP 403" in outcome.provisioning.failed["lkc-a1"]
    assert "HTTP 504" in outcome.provisioning.failed["lkc-a2"]
    posts = [r for r in server.requests if r["method"] == "POST" and r["path"] == "/iam/v2/api-keys"]
    assert [r["status"] for r in posts] == [403, 504, 202]  # never retried: a retry could make a second key
    # lkc-b1 went on and was measured; the key behind the lost answer was found and deleted.
    assert set(pipeline.store.read_inventory()["cluster_id"]) == {"lkc-b1"}
    assert len(outcome.provisioning.created_keys) == 2 == len(server.deleted_keys)
    assert not server.api_keys and not server.scram_users
    assert not outcome.success and len(outcome.reports) == 3


def test_more_than_1000_topic_partitions_page_the_partition_query_once_more(
    kafka_bootstrap, sasl_bootstrap, configure, tmp_path, prefix
):
    """350 topics x 3 partitions, each partition with traffic: the per-partition query has 1,050
    groups, two pages at 1,000 groups per page; the five per-topic queries fit one page each."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    names = [f"{prefix}.p{i:03d}" for i in range(350)]
    for future in admin.create_topics([NewTopic(name, 3, 1) for name in names], operation_timeout=120).values():
        future.result()
    day = utc_today()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for name in names:  # one producer for all: a producer per topic would take minutes
        send_records(producer, name, records_in_hour(day, 0, 3, lambda i: (None, b"xy", []), partitions=3))
    assert producer.flush(60) == 0
    environments = [{"id": "env-1", "clusters": [{"id": "lkc-paged", "topic_prefix": prefix}]}]
    try:
        with start_emulator(kafka_bootstrap, sasl_bootstrap, environments) as server:
            configure(**cloud_variables(server))
            cloud = cloud_resource(tmp_path)
            rows = MetricsDayMeasurer(cloud.query_metrics, "lkc-paged", day).measure(
                [TopicSpec("lkc-paged", name, 3, None, False) for name in names]
            )
            assert cloud.request_count() == 7
            wire = Record(0, b"xy").wire_size  # 9 bytes: 2 of value, 7 of record framing
            assert [json.loads(row.partition_bytes) for row in rows] == [[wire] * 3] * 350
            assert sum(row.records for row in rows) == 1_050
    finally:
        admin.delete_topics(names, operation_timeout=120)


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _terminate_at_the_first_key(server, env: dict[str, str], tmp_path) -> tuple[int, str]:
    """Runs the command, sends it SIGTERM once the emulator holds its first key, and waits."""
    command = subprocess.Popen(
        [sys.executable, "-m", "recommender_pipeline.command.cli", "--in-process"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: len(server.api_keys) == 1, 60, "the first key")
        command.send_signal(signal.SIGTERM)
        output, _ = command.communicate(timeout=60)
    finally:
        command.kill()
    return command.returncode, output


def test_a_key_whose_answer_an_interrupt_cut_off_is_found_by_its_name_and_deleted(
    provisioning, kafka_bootstrap, tmp_path
):
    """SIGTERM while the key-creation request is in flight: the key exists on the server but the
    command never learnt its id. It is found by its run-unique name and deleted; exit 130."""
    server, _, _ = provisioning
    server.hold_next_answer("POST", "/iam/v2/api-keys", 30)
    configured = {name: os.environ[name] for name in CONFIG_VARIABLES if name in os.environ}
    env = command_env(kafka_bootstrap, tmp_path, **configured)
    returncode, output = _terminate_at_the_first_key(server, env, tmp_path)
    assert returncode == 130, output[-3000:]
    assert len(server.deleted_keys) == 1 and not server.api_keys, output[-3000:]
    posts = [r for r in server.requests if r["method"] == "POST" and r["path"] == "/iam/v2/api-keys"]
    assert len(posts) == 1  # the lost key was looked up, never created again


def test_keys_are_deleted_when_the_command_is_terminated_or_the_interpreter_exits_inside_the_block(
    provisioning, kafka_bootstrap, tmp_path
):
    """SIGTERM while the command waits for its keys to work: every created key is deleted, exit
    130. Then a process that exits with the provisioning block still open: atexit deletes them."""
    server, _, _ = provisioning
    server.key_propagation_seconds = 60  # the keys never work in time: the command is still waiting
    configured = {name: os.environ[name] for name in CONFIG_VARIABLES if name in os.environ}
    env = command_env(kafka_bootstrap, tmp_path, **{**configured, "API_KEY_READY_TIMEOUT_SECONDS": "120"})
    returncode, output = _terminate_at_the_first_key(server, env, tmp_path)
    assert returncode == 130, output[-3000:]
    assert len(server.deleted_keys) == 1 and not server.api_keys and not server.scram_users

    server.key_propagation_seconds = 0
    script = (
        "import sys\n"
        "from recommender_pipeline.resources.kafka_credentials import provisioned_credentials\n"
        "from recommender_pipeline.resources import build_resources\n"
        "from recommender_pipeline.settings import load_settings\n"
        "resources = build_resources('no.env')\n"
        "block = provisioned_credentials(load_settings(), resources['cloud'], log=lambda line: None)\n"
        "provisioning = block.__enter__()  # never left: the interpreter exits inside the block\n"
        "print('created', len(provisioning.created_keys), flush=True)\n"
        "sys.exit(3)\n"
    )
    deleted_before = len(server.deleted_keys)
    finished = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 3 and "created 3" in finished.stdout, finished.stdout + finished.stderr
    assert len(server.deleted_keys) - deleted_before == 3 and not server.api_keys
