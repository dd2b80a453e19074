"""Metrics API answers that are not what they seem (issue 18, case 10).

Through the pipeline (Dagster, the Metrics method, the emulator over the real broker): an answer
that looks transient (a body cut mid-stream, an empty 200, a 200 carrying Confluent's error shape)
is retried and the day ends measured at the truth computed from the records this module produced;
an answer of the wrong shape or with impossible values fails that cluster-day at once, as error
rows for every topic whose reason names the cluster, the metric and the day. Then the same checks
as fast unit tests on hand-written pages and answers, without a broker or a server.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import pandas as pd
import pytest
import requests

from recommender_pipeline.days import day_start_ms, iso_utc, utc_today
from recommender_pipeline.errors import ConfluentApiError, InvalidAnswerError
from recommender_pipeline.measuring.metrics_answers import MAX_PER_SECOND, checked_points, parse_page
from recommender_pipeline.resources.confluent_cloud import RestClient, _answer_problem
from recommender_pipeline_testing.ccloud_emulator import ConfluentCloudEmulator, CutBody, points
from recommender_pipeline_testing.known_truth import Dataset, records_in_hour
from recommender_pipeline_testing.workloads import create_topic
from recommender_pipeline_tests.resources.test_confluent_cloud import cloud_variables, start_emulator

CLUSTER = "lkc-answers"
QUERY = "/v2/metrics/cloud/query"
EGRESS_RATIO = 2.0  # egress cannot pass for ingress
TOPICS = {"orders": 3, "audit": 1, "idle": 2}  # idle: no record on the day, so an `empty` row
ERRORS_BODY = {"errors": [{"id": "x", "status": "500", "code": "internal_error", "detail": "backend unavailable"}]}


# ----- the known truth, produced once for the module


@pytest.fixture(scope="module")
def produced(kafka_bootstrap: str) -> Dataset:
    """Three topics; yesterday's records in three hours, the busiest at 17:00 on orders."""
    data = Dataset(f"ma{uuid.uuid4().hex[:8]}", utc_today())
    day = data.days[1]
    for name, partitions in TOPICS.items():
        create_topic(kafka_bootstrap, data.topic(name), partitions)
        data.partitions[data.topic(name)] = partitions
    data.add(
        kafka_bootstrap,
        "orders",
        day,
        records_in_hour(day, 4, 300, lambda i: (b"k%03d" % i, b"o" * (20 + i % 50), []), partitions=3)
        + records_in_hour(day, 17, 120, lambda i: (None, b"p" * 400, []), partitions=3),
    )
    data.add(kafka_bootstrap, "audit", day, records_in_hour(day, 9, 60, lambda i: (None, b"a" * 30, [("h", b"v")])))
    return data


@pytest.fixture
def emulator(kafka_bootstrap: str, sasl_bootstrap: str, produced: Dataset):
    """One cluster whose topics are the module's; each test injects its own answers."""
    environments = [{"id": "env-1", "clusters": [{"id": CLUSTER, "topic_prefix": produced.prefix}]}]
    server = start_emulator(kafka_bootstrap, sasl_bootstrap, environments, egress_ratio=EGRESS_RATIO)
    yield server
    server.stop()


@pytest.fixture
def measure(produced: Dataset, emulator: ConfluentCloudEmulator, configure, pipeline, kafka_bootstrap):
    """Takes the inventory, then runs the Metrics method for yesterday with the answers `inject`
    puts first in line; returns the stored rows by topic, the run's success and its queries."""

    def run(inject: list[tuple[int, Any, dict]]) -> tuple[pd.DataFrame, bool, list[dict]]:
        configure(
            TOPIC_FILTER=produced.prefix,
            KAFKA_CREDENTIALS=json.dumps([{"kafka_cluster_id": CLUSTER, "bootstrap.servers": kafka_bootstrap}]),
            PEAK_BUCKET_SECONDS=3600,
            **cloud_variables(emulator, USE_SAMPLE_RECORDS="false"),
        )
        assert pipeline.inventory().success
        before = len(emulator.requests)
        emulator.fail_next(QUERY, inject)
        result = pipeline.measure(day(produced))
        day_rows = pipeline.store.read_measurements(day(produced).isoformat(), day(produced).isoformat())
        queries = [r for r in emulator.requests[before:] if r["path"] == QUERY]
        return day_rows.set_index("topic"), result.success, queries

    return run


def day(produced: Dataset) -> date:
    return produced.days[1]


def assert_measured_at_truth(rows: pd.DataFrame, produced: Dataset) -> None:
    """Every topic's row equals what was produced: records, wire bytes, busiest hour, partitions, egress."""
    assert sorted(rows.index) == sorted(produced.topic(name) for name in TOPICS)
    for name, partitions in TOPICS.items():
        row, truth = rows.loc[produced.topic(name)], produced.day(name, day(produced))
        assert row["method"] == "metrics_api"
        assert row["status"] == ("measured" if truth.records else "empty"), row["reason"]
        assert (row["records"], row["bytes"]) == (truth.records, truth.wire_bytes)
        assert row["egress_bytes"] == round(truth.wire_bytes * EGRESS_RATIO)
        assert json.loads(row["partition_bytes"]) == [truth.partition_wire_bytes.get(p, 0) for p in range(partitions)]
        if truth.records:
            peak, start = truth.peak(3600, wire=True)
            assert row["peak_ingress_bytes_per_sec"] == pytest.approx(peak, rel=1e-9)
            assert row["peak_bucket_start"] == iso_utc(day_start_ms(day(produced)) + start)


def assert_failed_naming_cluster_metric_day(
    rows: pd.DataFrame, produced: Dataset, metric: str, *fragments: str
) -> None:
    """Every topic of the cluster-day is an error row whose one-line reason names the cluster,
    the metric and the day and says what was wrong; no number from the answer was stored."""
    assert sorted(rows.index) == sorted(produced.topic(name) for name in TOPICS)  # rows, even for 1e30
    prefix = (
        f"cluster {CLUSTER} could not be measured: Metrics API, cluster {CLUSTER}, metric {metric}, "
        f"day {day(produced)}: "
    )
    for topic, row in rows.iterrows():
        assert row["status"] == "error", (topic, row["status"], row["reason"])
        assert row["reason"].startswith(prefix), row["reason"]
        assert "\n" not in row["reason"]
        for fragment in fragments:
            assert fragment in row["reason"], row["reason"]
        for raw in ("AttributeError", "TypeError", "KeyError", "JSONDecodeError"):
            assert raw not in row["reason"], row["reason"]
        assert row["records"] == 0 and row["bytes"] == 0


# ----- answers that look transient: retried, then measured at the truth


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((200, CutBody(keep=20), {}), id="body-cut-mid-stream"),
        pytest.param((200, None, {}), id="empty-200"),
        pytest.param((200, ERRORS_BODY, {}), id="200-with-errors-body"),
    ],
)
def test_a_transient_looking_answer_is_retried_and_the_day_measured_at_truth(measure, produced, answer):
    """Before: a cut body (ChunkedEncodingError) and an empty 200 (JSONDecodeError) failed the
    cluster-day at the first request; a 200 with `{"errors": [...]}` was stored as measured with
    0 bytes. Now each is asked again and the numbers are the produced truth."""
    rows, success, queries = measure([answer])
    assert success
    assert len(queries) == 7  # six queries, the first one twice
    assert queries[0]["body"] == queries[1]["body"]
    assert_measured_at_truth(rows, produced)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        pytest.param((200, CutBody(keep=20), {}), "the answer broke off mid-body", id="body-cut-mid-stream"),
        pytest.param((200, None, {}), "HTTP 200 with an empty body", id="empty-200"),
        pytest.param((200, ERRORS_BODY, {}), "HTTP 200 with an error body: backend unavailable", id="errors-body"),
    ],
)
def test_a_transient_looking_answer_that_persists_fails_the_day_with_error_rows(
    measure, produced, monkeypatch, answer, problem
):
    monkeypatch.setattr(RestClient, "_wait", lambda self, response, attempt: 0.01)  # eight attempts, at once
    rows, success, queries = measure([answer] * RestClient.max_attempts)
    assert not success
    assert len(queries) == RestClient.max_attempts
    assert_failed_naming_cluster_metric_day(rows, produced, "received_bytes", "failed after 8 attempts", problem)


# ----- answers of the wrong shape or with impossible values: the cluster-day fails at once


def _drop_topic(index: int, point: dict) -> dict:
    return {k: v for k, v in point.items() if k != "metric.topic"} if index == 0 else point


def _outside(produced: Dataset) -> Callable[[int, dict], Any]:
    """A point an hour before the day, busier than any of the day: counted, it was the peak."""

    def change(index: int, point: dict) -> Any:
        if index:
            return point
        before = iso_utc(day_start_ms(day(produced)) - 3_600_000).replace("+00:00", "Z")
        return [{**point, "timestamp": before, "value": 10 * point["value"] + 1e6}, point]

    return change


INVALID = [
    # (id, injected payload (a callable receives the module's dataset), what the reason must say)
    ("bare-list", lambda produced: [], "page 1 is not Confluent's published query response: the body: Input should be"),
    ("data-null", lambda produced: {"data": None}, "page 1 is not Confluent's published query response: data: "),
    ("point-without-topic", lambda produced: points(_drop_topic), "lacks the group_by label metric.topic"),
    (
        "string-values",
        lambda produced: points(lambda i, p: {**p, "value": str(p["value"])}),
        "data.0.value: Input should be a valid number",
    ),
    (
        "null-values",
        lambda produced: points(lambda i, p: {**p, "value": None}),
        "data.0.value: Input should be a valid number, got None",
    ),
    ("negative-values", lambda produced: points(lambda i, p: {**p, "value": -p["value"]}), ": negative"),
    (
        "conflicting-duplicates",
        lambda produced: points(lambda i, p: [p, {**p, "value": p["value"] + 1}] if i == 0 else p),
        "conflicting duplicates",
    ),
    ("point-outside-the-day", lambda produced: points(_outside(produced)), "outside the requested interval"),
    ("value-1e30", lambda produced: points(lambda i, p: {**p, "value": 1e30} if i == 0 else p), "value 1e+30: above"),
]


@pytest.mark.parametrize(("payload", "fragment"), [pytest.param(p, f, id=i) for i, p, f in INVALID])
def test_an_invalid_answer_fails_the_cluster_day_at_once_with_error_rows(measure, produced, payload, fragment):
    """Before: `[]`, `{"data": null}` and a point without `metric.topic` raised a raw
    AttributeError, TypeError or KeyError; string or null values a TypeError; negative values were
    stored (negative bytes), a duplicate was counted twice, a point before the day moved the peak
    there, and 1e30 overflowed the store write so that no row at all was stored. Now each fails
    the cluster-day at the first answer (not retried: asking again brings the same), one error
    row per topic, the reason naming the cluster, the metric and the day and what was wrong."""
    rows, success, queries = measure([(200, payload(produced), {})])
    assert not success
    assert len(queries) == 1
    assert_failed_naming_cluster_metric_day(rows, produced, "received_bytes", fragment)


def test_identical_duplicate_points_are_counted_once(measure, produced):
    """Before: every point sent twice doubled the day's bytes. A repeat with the same value (pages
    that overlapped) carries nothing new: dropped, and the day is measured at the truth."""
    rows, success, queries = measure([(200, points(lambda i, p: [p, dict(p)]), {})])
    assert success and len(queries) == 6
    assert_measured_at_truth(rows, produced)


# ----- unit layer: the page shape, the values and the transport, without a broker or a server


T0 = "2026-12-01T00:00:00Z"
START = day_start_ms(date(2026, 12, 1))
END = START + 86_400_000  # a whole day


def page(*data: dict, **extra) -> dict:
    return {"data": list(data), **extra}


def point(value: Any = 10.0, timestamp: str = "2026-12-01T03:00:00Z", **labels) -> dict:
    return {"timestamp": timestamp, "value": value, **({"metric.topic": "orders"} | labels)}


def test_a_page_of_the_published_shape_parses_with_its_labels_and_next_token():
    parsed = parse_page(
        page(
            point(5),
            point(7, **{"metric.partition": "2"}),
            meta={"pagination": {"page_size": 2, "next_page_token": "t"}},
        ),
        ["metric.topic"],
        1,
    )
    assert parsed.data[0].model_dump() == point(5.0)
    assert parsed.next_page_token == "t"
    assert parse_page(page(), ["metric.topic"], 1).next_page_token is None  # no meta: the 2022 spec's shape
    assert parse_page(page(point(3)), [], 1).data[0].value == 3.0  # an integer is a number


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "page 2 is not Confluent's published query response: the body: Input should be a valid dictionary"),
        ({"data": None}, "data: Input should be a valid list, got None"),
        (ERRORS_BODY, "data: Field required"),
        (page(point("12")), "data.0.value: Input should be a valid number, got '12'"),
        (page(point(None)), "data.0.value: Input should be a valid number, got None"),
        (page(point(True)), "data.0.value: Input should be a valid number, got True"),
        (page(point(1, timestamp=1_796_083_200)), "data.0.timestamp: Input should be a valid string"),
        (page(point(1, timestamp="yesterday")), "data.0.timestamp: Value error"),
        (page(point(1, timestamp="2026-12-01T03:00:00")), "a date-time without a UTC offset"),
        (page({"metric.topic": "orders", "points": [point()]}), "data.0.timestamp: Field required"),  # GROUPED
        (page(point(), {"timestamp": T0, "value": 1}), "page 2, point 2 lacks the group_by label metric.topic"),
        (page(point(**{"metric.topic": None})), "has metric.topic None: not a non-empty string"),
        (page(point(**{"metric.partition": "p1"})), "has metric.partition 'p1': not a partition number"),
        (page(meta={"pagination": {"next_page_token": 5}}), "meta.pagination.next_page_token: Input should be"),
    ],
)
def test_a_page_of_another_shape_is_an_invalid_answer(payload, message):
    labels = ["metric.topic", "metric.partition"] if "metric.partition" in json.dumps(payload) else ["metric.topic"]
    with pytest.raises(InvalidAnswerError) as raised:
        parse_page(payload, labels, 2)
    assert message in str(raised.value)
    assert raised.value.status == 200 and "\n" not in str(raised.value)


def check(*data: dict, granularity: str = "PT1H") -> list[dict]:
    return checked_points(list(data), "received_bytes", ["metric.topic"], granularity, START, END)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            [point(-125_400)],
            "point 1 of received_bytes (metric.topic=orders at 2026-12-01T03:00:00Z) has value -125400: negative",
        ),
        ([point(1), point(float("nan"))], "point 2 of received_bytes"),
        ([point(float("nan"))], "has value nan: not finite"),
        ([point(float("inf"))], "has value inf: not finite"),
        ([point(1e30)], "has value 1e+30: above 3.6e+15, 1e+12 per second of a PT1H bucket"),
        (
            [point(timestamp="2026-11-30T23:00:00Z")],
            "is outside the requested interval 2026-12-01T00:00:00Z/2026-12-02T00:00:00Z",
        ),
        ([point(timestamp="2026-12-02T00:00:00Z")], "is outside the requested interval"),
        (
            [point(5), point(7)],
            "points 1 and 2 of received_bytes are both metric.topic=orders at 2026-12-01T03:00:00Z, "
            "with values 5 and 7: conflicting",
        ),
        ([point(5), point(7, timestamp="2026-12-01T03:00:00+00:00")], "conflicting duplicates"),  # the same instant
    ],
)
def test_impossible_values_are_an_invalid_answer_naming_the_point(data, message):
    with pytest.raises(InvalidAnswerError) as raised:
        check(*data)
    assert message in str(raised.value)


def test_possible_values_pass_and_identical_repeats_are_dropped():
    day_bound = MAX_PER_SECOND * 86_400
    assert check(point(0), point(3600e12, timestamp=T0)) == [point(0), point(3600e12, timestamp=T0)]  # at the bound
    assert check(point(day_bound), granularity="P1D") == [point(day_bound)]
    assert check(point(5), point(5), point(5, **{"metric.topic": "audit"})) == [
        point(5),
        point(5, **{"metric.topic": "audit"}),
    ]
    assert check(point(5, timestamp="2026-12-01T23:59:00Z")) == [point(5, timestamp="2026-12-01T23:59:00Z")]
    assert day_bound < 2**63  # a day of the bound still fits the store's BIGINT columns


def response(status: int, body: bytes, content_type: str = "application/json") -> requests.Response:
    made = requests.Response()
    made.status_code, made._content = status, body
    made.headers["Content-Type"] = content_type
    return made


@pytest.mark.parametrize(
    ("status", "method", "body", "problem"),
    [
        (200, "POST", b"", "HTTP 200 with an empty body"),
        (200, "GET", b"", "HTTP 200 with an empty body"),
        (204, "DELETE", b"", None),
        (200, "DELETE", b"", None),
        (200, "POST", b"<html>502</html>", "HTTP 200 with a body that is not JSON: '<html>502</html>'"),
        (200, "POST", json.dumps(ERRORS_BODY).encode(), "HTTP 200 with an error body: backend unavailable"),
        (404, "DELETE", json.dumps(ERRORS_BODY).encode(), None),  # an expected 404 carries errors by design
        (200, "POST", b"[]", None),  # JSON: its shape is the caller's to check (parse_page)
        (200, "POST", b'{"data": []}', None),
    ],
)
def test_which_answers_of_an_expected_status_are_retried(status, method, body, problem):
    assert _answer_problem(response(status, body), method) == problem


class ScriptedSession:
    """A requests.Session stand-in: raises or answers from a script, one step per request."""

    def __init__(self, *steps: Exception | requests.Response):
        self.steps, self.calls = list(steps), 0

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        self.calls += 1
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def client(session: ScriptedSession) -> RestClient:
    return RestClient("http://127.0.0.1:9", "key", "secret", backoff_seconds=0.001, session=session)


def test_a_body_cut_mid_stream_is_retried_for_idempotent_requests_and_ambiguous_for_a_create():
    cut = requests.exceptions.ChunkedEncodingError("Response ended prematurely")
    good = response(200, b'{"data": []}')
    session = ScriptedSession(cut, requests.exceptions.ContentDecodingError("bad gzip"), response(200, b""), good)
    metrics = client(session)
    assert metrics.request("POST", QUERY, json={}) is good
    assert session.calls == 4 and metrics.request_count == 4  # every answer that began to arrive counts

    create = client(ScriptedSession(cut))
    with pytest.raises(ConfluentApiError) as raised:
        create.request("POST", "/iam/v2/api-keys", json={}, expected=(202,), idempotent=False)
    assert raised.value.ambiguous and "broke off mid-body (ChunkedEncodingError)" in str(raised.value)

    errors = response(200, json.dumps(ERRORS_BODY).encode())
    with pytest.raises(ConfluentApiError) as raised:
        client(ScriptedSession(errors)).request("POST", "/iam/v2/api-keys", expected=(200,), idempotent=False)
    assert raised.value.ambiguous and "error body" in str(raised.value)


def test_points_of_a_day_still_open_must_lie_before_its_measured_end():
    now = START + 5 * 3_600_000
    assert checked_points([point(timestamp="2026-12-01T04:00:00Z")], "m", ["metric.topic"], "PT1H", START, now)
    with pytest.raises(InvalidAnswerError, match="outside"):
        checked_points([point(timestamp="2026-12-01T05:00:00Z")], "m", ["metric.topic"], "PT1H", START, now)


@pytest.mark.parametrize(
    "payload",
    [
        page(point(5), point(7), meta={"pagination": {"page_size": 2, "next_page_token": "t"}}),
        page(),
        {"data": None},
        {"meta": {}},
        page(point("12")),
        page(point(None)),
        page({"metric.topic": "orders", "value": 3.0}),
    ],
)
def test_the_page_model_accepts_exactly_what_confluents_published_flat_response_accepts(specs, payload):
    """The product checks pages with a pydantic model, not the OpenAPI files: it must agree with
    the published `FlatQueryResponse` (vendored, confluent_openapi/metrics-v2-openapi.yaml)."""
    try:
        specs.validate("metrics", "/components/schemas/FlatQueryResponse", payload)
        published = True
    except AssertionError:
        published = False
    try:
        parse_page(payload, [], 1)
        modelled = True
    except InvalidAnswerError:
        modelled = False
    assert modelled == published
