"""The Confluent Cloud emulator against the real local broker and Confluent's OpenAPI specifications.

Topics of known truth (explicit timestamps, sizes, keys, headers, partitions, an aborted
transaction) are produced once for the module; every Metrics API number is compared with what
was produced. API keys are checked as real SCRAM-SHA-256 users on the broker's SASL listener
(scripts/kafka-local: PLAINTEXT port + 2, or KAFKA_SASL_BOOTSTRAP).
"""

from __future__ import annotations

import http.client
import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import requests
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from recommender_pipeline_testing.ccloud_emulator import ConfluentCloudEmulator, CutBody, points
from recommender_pipeline_testing.openapi import Specs
from recommender_pipeline_testing.workloads import Record, create_topic, produce, send_records

AUTH = ("CLOUDKEY00000001", "cloud-secret-1")
OTHER_AUTH = ("CLOUDKEY00000002", "cloud-secret-2")
METRIC = "io.confluent.kafka.server/"
STEP_SECONDS = {"PT1M": 60, "PT5M": 300, "PT15M": 900, "PT30M": 1800, "PT1H": 3600, "P1D": 86400, "ALL": None}
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
EGRESS_RATIO = 0.5


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----- the broker and the known truth


def _producer(config: dict, failures: list[str]) -> Producer:
    def delivered(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error.str())

    return Producer({**config, "linger.ms": 5, "on_delivery": delivered})


def send(bootstrap: str, records: dict[str, list[Record]]) -> None:
    """Produces the records exactly once, in one go.

    `workloads.produce` makes one idempotent producer per topic, which waits about half a second
    for its producer id; a plain producer without retries cannot duplicate a record either.
    """
    failures: list[str] = []
    producer = _producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "retries": 0}, failures)
    for topic, batch in records.items():
        send_records(producer, topic, batch)
    assert producer.flush(30) == 0 and not failures, failures


def send_transactions(bootstrap: str, topic: str, transactions: list[tuple[list[Record], bool]], tx_id: str) -> None:
    """One transaction per (records, commit) pair, committed or aborted, through one producer."""
    failures: list[str] = []
    producer = _producer({"bootstrap.servers": bootstrap, "transactional.id": tx_id}, failures)
    producer.init_transactions(30)
    for batch, commit in transactions:
        producer.begin_transaction()
        send_records(producer, topic, batch)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    assert not failures, failures


@dataclass
class World:
    prefix: str
    start: int  # the produced traffic lies in [start, end), hours-aligned, 1-3 hours ago
    end: int
    records: dict[str, list[Record]]
    partitions: dict[str, int]

    @property
    def interval(self) -> str:
        return f"{iso(self.start)}/{iso(self.end)}"

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str) -> World:
    prefix = f"cce{uuid.uuid4().hex[:8]}."
    start = int(time.time() * 1000) // HOUR_MS * HOUR_MS - 3 * HOUR_MS
    orders, clicks, audit = f"{prefix}a.orders", f"{prefix}a.clicks", f"{prefix}b.audit"
    partitions = {orders: 3, clicks: 2, audit: 1}
    for topic, count in partitions.items():
        # retention.ms=-1: the 8-day-old record of clicks must stay in the log (the emulator hides it).
        create_topic(kafka_bootstrap, topic, count, {"retention.ms": "-1"})
    records: dict[str, list[Record]] = {}
    records[orders] = [
        Record(
            start + i * 53_000,
            None if i == 7 else b"o" * (20 + i % 17),
            key=f"k{i}".encode() if i % 4 else None,
            headers=([("trace", b"abc")] if i % 5 == 0 else []) + ([("h", None)] if i % 7 == 0 else []),
            partition=i % 3,
        )
        for i in range(120)
    ]
    # A burst on partition 0 makes it hot in the first hour (and in its minutes).
    records[orders] += [Record(start + 10 * MINUTE_MS + i * 2000, b"H" * 500, partition=0) for i in range(30)]
    records[clicks] = [
        Record(start + 30 * MINUTE_MS + i * 60_000, b"c" * (100 + i), key=b"user", partition=i % 2) for i in range(60)
    ]
    # Out of retention (8 days old): in the log, absent from every metric.
    old = Record(int(time.time() * 1000) - 8 * DAY_MS, b"old" * 50, partition=1)
    send(kafka_bootstrap, {orders: records[orders], clicks: [*records[clicks], old]})
    committed = [Record(start + 5 * MINUTE_MS + i * 1000, b"a" * (10 + i)) for i in range(10)]
    aborted = [Record(start + 65 * MINUTE_MS + i * 1000, b"x" * 40, key=b"k") for i in range(5)]
    send_transactions(kafka_bootstrap, audit, [(committed, True), (aborted, False)], f"{prefix}tx")
    records[audit] = committed + aborted  # read_uncommitted: ingress counts aborted records too
    return World(prefix, start, start + 2 * HOUR_MS, records, partitions)


def environments(world: World) -> list[dict]:
    return [
        {
            "id": "env-1",
            "display_name": "production",
            "clusters": [
                {"id": "lkc-a", "display_name": "a", "topic_prefix": world.topic("a.")},
                {"id": "lkc-b", "display_name": "b", "topic_prefix": world.topic("b."), "kind": "Dedicated"},
                {"id": "lkc-empty", "display_name": "empty", "topic_prefix": world.topic("none.")},
            ],
        },
        {
            "id": "env-2",
            "display_name": "staging",
            "clusters": [{"id": "lkc-c", "display_name": "c", "topic_prefix": world.topic("c."), "kind": "Basic"}],
        },
    ] + [{"id": f"env-{i}", "display_name": f"extra {i}", "clusters": []} for i in range(3, 6)]


def new_emulator(kafka_bootstrap: str, sasl_bootstrap: str, world: World, **options) -> ConfluentCloudEmulator:
    return ConfluentCloudEmulator(
        kafka_bootstrap,
        sasl_bootstrap,
        environments=environments(world),
        cloud_keys=dict([AUTH, OTHER_AUTH]),
        principals={"sa-1", "u-2"},
        **options,
    )


@pytest.fixture(scope="module")
def emulator(kafka_bootstrap: str, sasl_bootstrap: str, world: World) -> Iterator[ConfluentCloudEmulator]:
    with new_emulator(kafka_bootstrap, sasl_bootstrap, world, egress_ratio=EGRESS_RATIO) as running:
        yield running


# ----- helpers


def get(emulator: ConfluentCloudEmulator, path: str, auth: tuple | None = AUTH, **params) -> requests.Response:
    return requests.get(f"{emulator.url}{path}", params=params or None, auth=auth, timeout=30)


def query(
    emulator: ConfluentCloudEmulator, body: dict, token: str | None = None, auth: tuple | None = AUTH
) -> requests.Response:
    params = {"page_token": token} if token is not None else None
    return requests.post(f"{emulator.url}/v2/metrics/cloud/query", json=body, params=params, auth=auth, timeout=30)


def metrics_body(
    world: World,
    metric: str = "received_bytes",
    granularity: str = "PT1H",
    group_by: tuple[str, ...] = ("metric.topic", "metric.partition"),
    cluster: str = "lkc-a",
    **extra,
) -> dict:
    body = {
        "aggregations": [{"metric": METRIC + metric}],
        "filter": {"field": "resource.kafka.id", "op": "EQ", "value": cluster},
        "granularity": granularity,
        "group_by": list(group_by),
        "intervals": [world.interval],
        "limit": 1000,
    }
    return {**body, **extra}


def as_points(data: list[dict], group_by: tuple[str, ...]) -> dict[tuple, float]:
    points = {(*(p[g] for g in group_by), p["timestamp"]): p["value"] for p in data}
    assert len(points) == len(data), "a group and timestamp appear twice"
    return points


def truth(
    world: World,
    topics: list[str],
    metric: str,
    granularity: str,
    group_by: tuple[str, ...],
    start: int | None = None,
    end: int | None = None,
) -> dict[tuple, float]:
    """The expected points, from the produced records."""
    start, end = start or world.start, end or world.end
    step = STEP_SECONDS[granularity]
    per_partition: dict[tuple[str, int, int], list[int]] = defaultdict(lambda: [0, 0])
    for topic in topics:
        for record in world.records[topic]:
            minute = record.timestamp_ms // MINUTE_MS * MINUTE_MS
            if start <= minute < end:
                bucket = start if step is None else minute - minute % (step * 1000)
                per_partition[(topic, record.partition, bucket)][0] += record.wire_size
                per_partition[(topic, record.partition, bucket)][1] += 1
    values: dict[tuple[str, int, int], float] = {}
    if metric.startswith("hot_partition"):
        totals: dict[tuple[str, int], int] = defaultdict(int)
        for (topic, _, bucket), (size, _) in per_partition.items():
            totals[(topic, bucket)] += size
        for (topic, partition, bucket), (size, _) in per_partition.items():
            if size > 2 * totals[(topic, bucket)] / world.partitions[topic]:
                values[(topic, partition, bucket)] = 1.0
    else:
        scale = EGRESS_RATIO if metric.startswith("sent_") else 1.0
        index = 1 if metric.endswith("_records") else 0
        values = {key: counts[index] * scale for key, counts in per_partition.items()}
    expected: dict[tuple, float] = defaultdict(float)
    for (topic, partition, bucket), value in values.items():
        labels = {"metric.topic": topic, "metric.partition": str(partition)}
        key = (*(labels[g] for g in group_by), iso(bucket))
        expected[key] = max(expected[key], value) if metric.startswith("hot_partition") else expected[key] + value
    return {key: value for key, value in expected.items() if value}


def sasl_authenticates(bootstrap: str, user: str, password: str, timeout: float = 10.0) -> bool:
    """True when the credentials pass SCRAM-SHA-256 on the SASL listener, False when refused."""
    errors: list[KafkaError] = []
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": password,
            "error_cb": errors.append,
            "log_level": 0,  # refusals arrive through error_cb; keep librdkafka's log quiet
        }
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=0.1)
            return True
        except KafkaException:
            admin.poll(0)
            if any(error.code() == KafkaError._AUTHENTICATION for error in errors):
                return False
    raise AssertionError(f"{user}: neither authenticated nor refused within {timeout}s: {errors}")


def create_key(emulator: ConfluentCloudEmulator, owner: str, cluster: str, auth: tuple = AUTH) -> requests.Response:
    body = {
        "spec": {
            "display_name": f"recommender {cluster}",
            "description": "read-only access for partition recommendations",
            "owner": {"id": owner},
            "resource": {"id": cluster},
        }
    }
    return requests.post(f"{emulator.url}/iam/v2/api-keys", json=body, auth=auth, timeout=30)


# ----- control plane


def test_environments_are_paged_through_metadata_next(emulator: ConfluentCloudEmulator, specs: Specs):
    url, seen, pages = f"{emulator.url}/org/v2/environments?page_size=2", [], 0
    while url:
        response = requests.get(url, auth=AUTH, timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()
        specs.response("org", "/org/v2/environments", "get", 200, page)
        assert page["api_version"] == "org/v2" and page["kind"] == "EnvironmentList"
        assert page["metadata"]["total_size"] == 5 and len(page["data"]) <= 2
        seen += [e["id"] for e in page["data"]]
        url, pages = page["metadata"].get("next"), pages + 1
    assert seen == ["env-1", "env-2", "env-3", "env-4", "env-5"] and pages == 3

    single = get(emulator, "/org/v2/environments/env-2")
    specs.response("org", "/org/v2/environments/{id}", "get", 200, single.json())
    assert single.json()["display_name"] == "staging"
    specs.failure("org", get(emulator, "/org/v2/environments", page_size=101), 400)
    specs.failure("org", get(emulator, "/org/v2/environments", page_token="forged"), 400)
    specs.failure("org", get(emulator, "/org/v2/environments/env-404"), 404)


def test_clusters_are_paged_per_environment_with_the_sasl_bootstrap(
    emulator: ConfluentCloudEmulator, specs: Specs, sasl_bootstrap: str
):
    first = get(emulator, "/cmk/v2/clusters", environment="env-1", page_size=2)
    assert first.status_code == 200, first.text
    specs.response("cmk", "/cmk/v2/clusters", "get", 200, first.json())
    second = requests.get(first.json()["metadata"]["next"], auth=AUTH, timeout=30)
    specs.response("cmk", "/cmk/v2/clusters", "get", 200, second.json())
    assert "next" not in second.json()["metadata"]
    clusters = first.json()["data"] + second.json()["data"]
    assert [c["id"] for c in clusters] == ["lkc-a", "lkc-b", "lkc-empty"]
    for cluster in clusters:
        assert cluster["spec"]["kafka_bootstrap_endpoint"] == f"SASL_PLAINTEXT://{sasl_bootstrap}"
        assert cluster["spec"]["environment"]["id"] == "env-1"
        assert cluster["status"]["phase"] == "PROVISIONED"
    assert clusters[1]["spec"]["config"] == {"kind": "Dedicated", "cku": 1}

    other = get(emulator, "/cmk/v2/clusters", environment="env-2")
    specs.response("cmk", "/cmk/v2/clusters", "get", 200, other.json())
    assert [c["id"] for c in other.json()["data"]] == ["lkc-c"]
    single = get(emulator, "/cmk/v2/clusters/lkc-c", environment="env-2")
    specs.response("cmk", "/cmk/v2/clusters/{id}", "get", 200, single.json())
    specs.failure("cmk", get(emulator, "/cmk/v2/clusters", environment="env-404"), 403)
    specs.failure("cmk", get(emulator, "/cmk/v2/clusters"), 400)


def test_every_endpoint_wants_a_cloud_api_key(emulator: ConfluentCloudEmulator, specs: Specs, world: World):
    kafka_key = create_key(emulator, "sa-1", "lkc-a").json()
    kafka_auth = (kafka_key["id"], kafka_key["spec"]["secret"])
    calls = [
        ("org", "GET", "/org/v2/environments", None),
        ("cmk", "GET", "/cmk/v2/clusters?environment=env-1", None),
        ("iam", "GET", "/iam/v2/api-keys", None),
        ("iam", "POST", "/iam/v2/api-keys", {"spec": {"owner": {"id": "sa-1"}, "resource": {"id": "lkc-a"}}}),
        ("iam", "GET", f"/iam/v2/api-keys/{kafka_key['id']}", None),
        ("iam", "DELETE", f"/iam/v2/api-keys/{kafka_key['id']}", None),
        ("metrics", "POST", "/v2/metrics/cloud/query", metrics_body(world)),
    ]
    keys_before = set(emulator.api_keys)
    for api, method, path, body in calls:
        for auth in (None, (AUTH[0], "wrong-secret"), ("NOSUCHKEY", "x"), kafka_auth):
            response = requests.request(method, f"{emulator.url}{path}", json=body, auth=auth, timeout=30)
            if api == "metrics":
                specs.metrics_error(response, 401)
            else:
                specs.failure(api, response, 401)
            assert "WWW-Authenticate" in response.headers
    assert set(emulator.api_keys) == keys_before, "no unauthenticated call may change state"
    assert (
        requests.delete(f"{emulator.url}/iam/v2/api-keys/{kafka_key['id']}", auth=AUTH, timeout=30).status_code == 204
    )


def test_api_key_lifecycle_is_a_real_scram_user(emulator: ConfluentCloudEmulator, specs: Specs, sasl_bootstrap: str):
    request_body = {"spec": {"display_name": "k", "owner": {"id": "sa-1"}, "resource": {"id": "lkc-a"}}}
    specs.validate(
        "iam", "/paths/~1iam~1v2~1api-keys/post/requestBody/content/application~1json/schema", request_body, write=True
    )
    created = create_key(emulator, "sa-1", "lkc-a")
    assert created.status_code == 202, created.text
    specs.response("iam", "/iam/v2/api-keys", "post", 202, created.json())
    key_id, secret = created.json()["id"], created.json()["spec"]["secret"]
    assert re.fullmatch(r"[A-Z0-9]{16}", key_id) and len(secret) == 64
    assert created.headers["Location"] == f"{emulator.url}/iam/v2/api-keys/{key_id}"
    assert emulator.api_keys[key_id]["secret"] == secret
    assert emulator.api_keys[key_id]["created_by_cloud_key"] == AUTH[0]
    other = create_key(emulator, "u-2", "lkc-b", auth=OTHER_AUTH).json()

    fetched = get(emulator, f"/iam/v2/api-keys/{key_id}")
    specs.response("iam", "/iam/v2/api-keys/{id}", "get", 200, fetched.json())
    assert "secret" not in fetched.json()["spec"]
    assert fetched.json()["spec"]["owner"]["id"] == "sa-1" and fetched.json()["spec"]["resource"]["id"] == "lkc-a"

    listed = get(emulator, "/iam/v2/api-keys", **{"spec.owner": "sa-1", "spec.resource": "lkc-a"})
    specs.response("iam", "/iam/v2/api-keys", "get", 200, listed.json())
    assert [k["id"] for k in listed.json()["data"]] == [key_id]
    assert all("secret" not in k["spec"] for k in listed.json()["data"])
    by_resource = get(emulator, "/iam/v2/api-keys", **{"spec.resource": "lkc-b"}).json()["data"]
    assert [k["id"] for k in by_resource] == [other["id"]]
    url, paged = f"{emulator.url}/iam/v2/api-keys?page_size=1", []
    while url:
        page = requests.get(url, auth=AUTH, timeout=30).json()
        specs.response("iam", "/iam/v2/api-keys", "get", 200, page)
        paged += [k["id"] for k in page["data"]]
        url = page["metadata"].get("next")
    assert paged == list(emulator.api_keys)

    assert sasl_authenticates(sasl_bootstrap, key_id, secret)
    assert not sasl_authenticates(sasl_bootstrap, key_id, secret[:-1] + ("A" if secret[-1] != "A" else "B"))

    deleted = requests.delete(f"{emulator.url}/iam/v2/api-keys/{key_id}", auth=AUTH, timeout=30)
    assert deleted.status_code == 204 and deleted.content == b""
    assert key_id in emulator.deleted_keys and key_id not in emulator.api_keys
    specs.failure("iam", get(emulator, f"/iam/v2/api-keys/{key_id}"), 404)
    specs.failure("iam", requests.delete(f"{emulator.url}/iam/v2/api-keys/{key_id}", auth=AUTH, timeout=30), 404)
    assert not sasl_authenticates(sasl_bootstrap, key_id, secret)
    assert sasl_authenticates(sasl_bootstrap, other["id"], other["spec"]["secret"])
    requests.delete(f"{emulator.url}/iam/v2/api-keys/{other['id']}", auth=AUTH, timeout=30)

    assert specs.failure("iam", create_key(emulator, "sa-404", "lkc-a"), 400)["source"] == {"pointer": "/spec/owner/id"}
    assert specs.failure("iam", create_key(emulator, "sa-1", "lkc-404"), 400)["source"] == {
        "pointer": "/spec/resource/id"
    }
    specs.failure("iam", requests.post(f"{emulator.url}/iam/v2/api-keys", json={}, auth=AUTH, timeout=30), 400)


def test_kafka_keys_work_only_after_propagation_and_never_on_unusable_clusters(
    kafka_bootstrap: str, sasl_bootstrap: str, world: World
):
    with new_emulator(kafka_bootstrap, sasl_bootstrap, world) as emulator:
        emulator.key_propagation_seconds = 1.0
        emulator.unusable_clusters.add("lkc-b")
        created_at = time.monotonic()
        usable = create_key(emulator, "sa-1", "lkc-a").json()
        unusable = create_key(emulator, "sa-1", "lkc-b").json()
        assert not sasl_authenticates(sasl_bootstrap, usable["id"], usable["spec"]["secret"])
        while not sasl_authenticates(sasl_bootstrap, usable["id"], usable["spec"]["secret"]):
            assert time.monotonic() - created_at < 15, "the key never became usable"
        assert time.monotonic() - created_at >= 1.0
        assert not sasl_authenticates(sasl_bootstrap, unusable["id"], unusable["spec"]["secret"])
        assert unusable["id"] in emulator.api_keys and unusable["id"] not in emulator.scram_users
    # stop() removed the SCRAM users the emulator created.
    assert not sasl_authenticates(sasl_bootstrap, usable["id"], usable["spec"]["secret"])


# ----- Metrics API


@pytest.mark.parametrize("granularity", ["PT1M", "PT5M", "PT1H", "ALL"])
@pytest.mark.parametrize("metric", ["received_bytes", "received_records"])
def test_metrics_equal_the_produced_truth(
    emulator: ConfluentCloudEmulator, specs: Specs, world: World, granularity: str, metric: str
):
    topics = [world.topic("a.orders"), world.topic("a.clicks")]
    for group_by in [("metric.topic", "metric.partition"), ("metric.topic",), ()]:
        body = metrics_body(world, metric, granularity, group_by)
        if not group_by:
            del body["limit"]
        specs.validate("metrics", "/components/schemas/QueryRequest", body, write=True)
        response = query(emulator, body)
        assert response.status_code == 200, response.text
        specs.validate("metrics", "/components/schemas/FlatQueryResponse", response.json())
        assert "next_page_token" not in response.json()["meta"]["pagination"]
        got = as_points(response.json()["data"], group_by)
        assert got == truth(world, topics, metric, granularity, group_by), (metric, granularity, group_by)
        if not group_by:
            timestamps = [p["timestamp"] for p in response.json()["data"]]
            assert timestamps == sorted(timestamps), "points come in ascending time"


def test_metrics_count_aborted_transactions_and_hide_points_older_than_seven_days(
    emulator: ConfluentCloudEmulator, world: World
):
    audit = world.topic("b.audit")
    response = query(emulator, metrics_body(world, "received_records", "ALL", ("metric.topic",), cluster="lkc-b"))
    assert response.json()["data"] == [{"timestamp": iso(world.start), "value": 15.0, "metric.topic": audit}]

    def daily(intervals: list[str]) -> list[dict]:
        body = metrics_body(world, "received_bytes", "P1D", ("metric.topic",), intervals=intervals)
        return query(emulator, body).json()["data"]

    clicks = world.topic("a.clicks")
    recent = sum(r.wire_size for r in world.records[clicks])
    # The 8-day-old record of clicks is in the log but outside the 7 days of retention.
    assert sum(p["value"] for p in daily(["now-10d/now"]) if p["metric.topic"] == clicks) == recent
    assert daily(["now-10d/now-7d"]) == []


def test_egress_and_hot_partitions(emulator: ConfluentCloudEmulator, world: World):
    topics = [world.topic("a.orders"), world.topic("a.clicks")]
    for metric in ["sent_bytes", "sent_records", "hot_partition_ingress", "hot_partition_egress"]:
        for granularity in ["PT5M", "PT1H"]:
            for group_by in [("metric.topic", "metric.partition"), ("metric.topic",)]:
                response = query(emulator, metrics_body(world, metric, granularity, group_by))
                assert response.status_code == 200, response.text
                got = as_points(response.json()["data"], group_by)
                assert got == truth(world, topics, metric, granularity, group_by), (metric, granularity, group_by)
    hot = query(emulator, metrics_body(world, "hot_partition_ingress", "PT1H")).json()["data"]
    assert {(p["metric.topic"], p["metric.partition"], p["timestamp"]) for p in hot} >= {
        (world.topic("a.orders"), "0", iso(world.start))
    }
    assert all(p["value"] == 1.0 for p in hot)


def test_grouped_format_and_aggregations(emulator: ConfluentCloudEmulator, specs: Specs, world: World):
    group_by = ("metric.topic", "metric.partition")
    flat = query(emulator, metrics_body(world, "received_bytes", "PT5M")).json()
    grouped = query(emulator, metrics_body(world, "received_bytes", "PT5M", format="GROUPED"))
    assert grouped.status_code == 200, grouped.text
    specs.validate("metrics", "/components/schemas/GroupedQueryResponse", grouped.json())
    regrouped = {}
    for group in grouped.json()["data"]:
        timestamps = [p["timestamp"] for p in group["points"]]
        assert timestamps == sorted(timestamps)
        for point in group["points"]:
            regrouped[(group["metric.topic"], group["metric.partition"], point["timestamp"])] = point["value"]
    assert regrouped == as_points(flat["data"], group_by)
    assert [tuple(g[k] for k in group_by) for g in grouped.json()["data"]] == sorted(
        tuple(g[k] for k in group_by) for g in grouped.json()["data"]
    )

    per_partition = truth(world, [world.topic("a.orders")], "received_bytes", "ALL", group_by)
    for agg, combine in [("SUM", sum), ("MAX", max), ("MIN", min)]:
        body = metrics_body(world, "received_bytes", "ALL", ("metric.topic",))
        body["aggregations"][0]["agg"] = agg
        data = query(emulator, body).json()["data"]
        value = next(p["value"] for p in data if p["metric.topic"] == world.topic("a.orders"))
        assert value == combine(per_partition.values()), agg
    specs.metrics_error(query(emulator, metrics_body(world, format="GROUPED", group_by=())), 400)


def test_filters_select_topics_and_partitions(emulator: ConfluentCloudEmulator, specs: Specs, world: World):
    orders, clicks = world.topic("a.orders"), world.topic("a.clicks")
    group_by = ("metric.topic", "metric.partition")
    everything = truth(world, [orders, clicks], "received_bytes", "PT1H", group_by)
    cluster = {"field": "resource.kafka.id", "op": "EQ", "value": "lkc-a"}

    def run(extra: dict) -> dict:
        body = metrics_body(world, filter={"op": "AND", "filters": [cluster, extra]})
        specs.validate("metrics", "/components/schemas/QueryRequest", body, write=True)
        response = query(emulator, body)
        assert response.status_code == 200, response.text
        return as_points(response.json()["data"], group_by)

    assert run({"field": "metric.topic", "op": "EQ", "value": clicks}) == {
        k: v for k, v in everything.items() if k[0] == clicks
    }
    assert run({"op": "NOT", "filter": {"field": "metric.topic", "op": "EQ", "value": clicks}}) == {
        k: v for k, v in everything.items() if k[0] == orders
    }
    for value in ("1", 1):
        assert run({"field": "metric.partition", "op": "EQ", "value": value}) == {
            k: v for k, v in everything.items() if k[1] == "1"
        }
    assert run({"field": "metric.partition", "op": "GTE", "value": "1"}) == {
        k: v for k, v in everything.items() if k[1] >= "1"
    }
    assert run(
        {
            "op": "OR",
            "filters": [
                {"field": "metric.partition", "op": "GT", "value": "1"},
                {"field": "metric.topic", "op": "EQ", "value": clicks},
            ],
        }
    ) == {k: v for k, v in everything.items() if k[1] > "1" or k[0] == clicks}
    both = {"op": "OR", "filters": [cluster, {"field": "resource.kafka.id", "op": "EQ", "value": "lkc-b"}]}
    response = query(emulator, metrics_body(world, group_by=("resource.kafka.id",), filter=both))
    assert {p["resource.kafka.id"] for p in response.json()["data"]} == {"lkc-a", "lkc-b"}
    assert query(emulator, metrics_body(world, cluster="lkc-empty")).json()["data"] == []

    no_cluster = {"field": "metric.topic", "op": "EQ", "value": orders}
    specs.metrics_error(query(emulator, metrics_body(world, filter=no_cluster)), 400)
    specs.metrics_error(query(emulator, metrics_body(world, filter={"op": "NOT", "filter": cluster})), 400)
    specs.metrics_error(query(emulator, metrics_body(world, cluster="lkc-404")), 403)
    without_filter = metrics_body(world)
    del without_filter["filter"]
    specs.metrics_error(query(emulator, without_filter), 400)


def test_query_pagination(emulator: ConfluentCloudEmulator, specs: Specs, world: World):
    group_by = ("metric.topic", "metric.partition")
    body = metrics_body(world, "received_bytes", "PT15M", limit=2)
    pages, token = [], None
    while True:
        response = query(emulator, body, token)
        assert response.status_code == 200, response.text
        specs.validate("metrics", "/components/schemas/FlatQueryResponse", response.json())
        assert response.json()["meta"]["pagination"]["page_size"] == 2
        pages.append(as_points(response.json()["data"], group_by))
        token = response.json()["meta"]["pagination"].get("next_page_token")
        if token is None:
            break
    assert [len({k[:2] for k in page}) for page in pages] == [2, 2, 1]
    assert {k: v for page in pages for k, v in page.items()} == truth(
        world, [world.topic("a.orders"), world.topic("a.clicks")], "received_bytes", "PT15M", group_by
    )
    with_token = [r for r in emulator.requests if r["path"] == "/v2/metrics/cloud/query" and "page_token" in r["query"]]
    assert len(with_token) >= 2 and all(r["body"] == body for r in with_token[-2:])

    first = query(emulator, body).json()["meta"]["pagination"]["next_page_token"]
    specs.metrics_error(query(emulator, {**body, "limit": 3}, first), 400)  # the body must not change
    specs.metrics_error(query(emulator, {**body, "page_token": first}), 400)  # the token is a query parameter
    assert query(emulator, body, first).status_code == 200  # and stays valid after misuse
    emulator.expire_page_tokens()
    specs.metrics_error(query(emulator, body, first), 400)
    specs.metrics_error(query(emulator, body, "forged"), 400)

    relative = {**body, "intervals": ["now-4h|h/now-1h|h"]}
    relative_token = query(emulator, relative).json()["meta"]["pagination"]["next_page_token"]
    specs.metrics_error(query(emulator, relative, relative_token), 400)

    ranked = query(emulator, metrics_body(world, "received_bytes", "ALL", limit=2)).json()
    everything = truth(world, [world.topic("a.orders"), world.topic("a.clicks")], "received_bytes", "ALL", group_by)
    assert [p["value"] for p in ranked["data"]] == sorted(everything.values(), reverse=True)[:2]
    assert "next_page_token" not in ranked["meta"]["pagination"]
    specs.metrics_error(query(emulator, metrics_body(world, "received_bytes", "ALL", limit=2), "any"), 400)


@pytest.mark.parametrize(
    ("granularity", "interval", "status"),
    [
        ("PT1M", "now-6h/now", 200),
        ("PT1M", "now-361m/now", 400),
        ("PT5M", "PT24H/now", 200),
        ("PT5M", "now-25h/now", 400),
        ("PT15M", "now-4d/now", 200),
        ("PT15M", "now-97h/now", 400),
        ("PT30M", "now-7d/now", 200),
        ("PT30M", "now-8d/now", 400),
        ("PT1H", "now-30d/now", 200),
        ("P1D", "2026-01-01T00:00:00Z/P90D", 200),
    ],
)
def test_granularity_limits_the_interval(
    emulator: ConfluentCloudEmulator, specs: Specs, world: World, granularity: str, interval: str, status: int
):
    response = query(emulator, metrics_body(world, granularity=granularity, intervals=[interval]))
    if status == 200:
        assert response.status_code == 200, response.text
        specs.validate("metrics", "/components/schemas/FlatQueryResponse", response.json())
    else:
        specs.metrics_error(response, 400)


def test_interval_forms_and_invalid_requests(emulator: ConfluentCloudEmulator, specs: Specs, world: World):
    group_by = ("metric.topic", "metric.partition")
    expected = as_points(query(emulator, metrics_body(world)).json()["data"], group_by)
    hours_ago = (int(time.time() * 1000) - world.start) // HOUR_MS + 1
    forms = [
        f"{iso(world.start)}/PT2H",
        f"PT2H/{iso(world.end)}",
        f"{iso(world.start)[:-1]}.000Z/{iso(world.end)}",
        f"{iso(world.start)[:-1]}+00:00/{iso(world.end)}",
    ]
    for interval in forms:
        response = query(emulator, metrics_body(world, intervals=[interval]))
        assert as_points(response.json()["data"], group_by) == expected, interval
    recent = query(emulator, metrics_body(world, intervals=[f"now-{hours_ago}h|h/now"])).json()["data"]
    assert as_points(recent, group_by) == expected

    invalid = [
        metrics_body(world, aggregations=[]),
        metrics_body(world, aggregations=[{"metric": METRIC + "received_bytes"}, {"metric": METRIC + "sent_bytes"}]),
        metrics_body(world, aggregations=[{"metric": METRIC + "no_such_metric"}]),
        metrics_body(world, aggregations=[{"metric": METRIC + "received_bytes", "agg": "AVG"}]),
        metrics_body(world, granularity="PT2M"),
        metrics_body(world, intervals=["yesterday/today"]),
        metrics_body(world, intervals=[f"{iso(world.end)}/{iso(world.start)}"]),
        metrics_body(world, intervals=[]),
        metrics_body(world, limit=0),
        metrics_body(world, limit=1001),
        metrics_body(world, group_by=["metric.client_id"]),
        metrics_body(world, order_by=[{"metric": METRIC + "received_bytes"}]),
    ]
    for body in invalid:
        specs.metrics_error(query(emulator, body), 400)
    not_json = requests.post(
        f"{emulator.url}/v2/metrics/cloud/query", data="{", auth=AUTH, timeout=30, headers={"Content-Type": "x"}
    )
    specs.metrics_error(not_json, 400)


def test_metrics_follow_new_records_and_cache_the_rest(
    kafka_bootstrap: str, emulator: ConfluentCloudEmulator, world: World
):
    topic = world.topic("c.late")
    create_topic(kafka_bootstrap, topic, 2)
    body = metrics_body(world, "received_records", "ALL", ("metric.topic",), cluster="lkc-c")
    assert query(emulator, body).json()["data"] == []
    send(kafka_bootstrap, {topic: [Record(world.start + i * 1000, b"v", partition=i % 2) for i in range(40)]})
    before = emulator.records_read
    assert query(emulator, body).json()["data"] == [
        {"timestamp": iso(world.start), "value": 40.0, "metric.topic": topic}
    ]
    assert emulator.records_read == before + 40
    started = time.monotonic()
    for _ in range(5):
        query(emulator, body)
    assert emulator.records_read == before + 40, "unchanged partitions are not read again"
    assert time.monotonic() - started < 2
    produce(kafka_bootstrap, topic, [Record(world.start + 5000, b"w", partition=1)])  # workloads' producer too
    assert query(emulator, body).json()["data"][0]["value"] == 41.0
    assert emulator.records_read == before + 41


def test_rate_limit_answers_429_with_headers_for_both_scopes(
    kafka_bootstrap: str, sasl_bootstrap: str, specs: Specs, world: World
):
    options = {"rate_limit_per_minute": 3, "org_rate_limit_per_minute": 50, "rate_limit_window_seconds": 1.0}
    with new_emulator(kafka_bootstrap, sasl_bootstrap, world, **options) as emulator:
        body = metrics_body(world, cluster="lkc-empty")
        remaining = []
        for _ in range(3):
            response = query(emulator, body)
            assert response.status_code == 200, response.text
            assert response.headers["rateLimit-limit"] == "3, 50"
            remaining.append(response.headers["rateLimit-remaining"])
            assert response.headers["rateLimit-reset"] == "1, 1"  # seconds, rounded up
        assert remaining == ["2, 49", "1, 48", "0, 47"]
        limited = query(emulator, body)
        error = specs.metrics_error(limited, 429)
        assert error["detail"].startswith("Too many requests")
        assert limited.headers["rateLimit-remaining"] == "0, 47" and int(limited.headers["Retry-After"]) >= 1
        assert query(emulator, body, auth=None).status_code == 429  # the window counts clients, not keys
        time.sleep(1.05)
        unauthenticated = query(emulator, body, auth=None)
        specs.metrics_error(unauthenticated, 401)
        assert unauthenticated.headers["rateLimit-remaining"] == "2, 49"  # both windows moved on
        assert query(emulator, body).status_code == 200
        assert get(emulator, "/org/v2/environments").status_code == 200  # the control plane is not limited here


def test_fail_next_injects_answers_by_path_prefix(emulator: ConfluentCloudEmulator, world: World):
    body = metrics_body(world, cluster="lkc-empty")
    too_many = {"errors": [{"status": "429", "detail": "Too many requests (injected)"}]}
    emulator.fail_next("/v2/metrics/", [(503, None, {}), (429, too_many, {"rateLimit-reset": "7", "Retry-After": "7"})])
    emulator.fail_next("/iam/v2/api-keys", [(500, {"errors": [{"status": "500", "detail": "boom"}]}, {})])
    count = len(emulator.requests)
    first, second, third = query(emulator, body), query(emulator, body), query(emulator, body)
    assert first.status_code == 503 and first.content == b""
    assert second.status_code == 429 and second.json() == too_many and second.headers["rateLimit-reset"] == "7"
    assert third.status_code == 200
    keys = set(emulator.api_keys)
    assert create_key(emulator, "sa-1", "lkc-a").status_code == 500
    assert set(emulator.api_keys) == keys
    assert get(emulator, "/org/v2/environments").status_code == 200
    statuses = [(r["path"], r["status"], r["auth_key"]) for r in emulator.requests[count:]]
    assert statuses == [
        ("/v2/metrics/cloud/query", 503, AUTH[0]),
        ("/v2/metrics/cloud/query", 429, AUTH[0]),
        ("/v2/metrics/cloud/query", 200, AUTH[0]),
        ("/iam/v2/api-keys", 500, AUTH[0]),
        ("/org/v2/environments", 200, AUTH[0]),
    ]


def test_fail_next_rewrites_the_real_answer_or_cuts_its_body(emulator: ConfluentCloudEmulator, world: World):
    """The Metrics answers that are not what they seem: the real answer bent (a value negated, a
    point left out), a bare list, and a body that breaks off mid-stream, real or given."""
    body = metrics_body(world, group_by=("metric.topic",))
    real = query(emulator, body).json()
    assert len(real["data"]) > 1
    emulator.fail_next(
        "/v2/metrics/",
        [
            (200, points(lambda i, p: {**p, "value": -p["value"]}), {}),
            (200, points(lambda i, p: None if i else [p, p]), {"X-Injected": "yes"}),
            (200, [], {}),
            (200, CutBody(keep=10), {}),
            (200, CutBody(keep=5, payload={"data": []}), {}),
        ],
    )
    negated = query(emulator, body)
    assert negated.json() == {**real, "data": [{**p, "value": -p["value"]} for p in real["data"]]}
    assert negated.headers["rateLimit-limit"] == "300, 3000"  # the real answer's headers, each scope's
    duplicated = query(emulator, body)
    assert duplicated.json()["data"] == [real["data"][0]] * 2 and duplicated.headers["X-Injected"] == "yes"
    assert query(emulator, body).json() == []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        query(emulator, body)
    connection = http.client.HTTPConnection(emulator.url.removeprefix("http://"), timeout=30)
    connection.request("POST", "/v2/metrics/cloud/query", json.dumps(body), {"Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 200 and answer.getheader("Transfer-Encoding") == "chunked"
    with pytest.raises(http.client.IncompleteRead) as cut:
        answer.read()
    assert cut.value.partial == b'{"dat'
    connection.close()
    assert [r["status"] for r in emulator.requests[-6:]] == [200] * 6
    assert query(emulator, body).json() == real  # five answers injected, five used
