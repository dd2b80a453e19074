"""A local emulator of the Confluent Cloud APIs the pipeline calls, backed by the real local broker.

Test and demo infrastructure, not product code. One HTTP server on 127.0.0.1 (a free port, a
background thread of the calling process) answers, in the shapes of Confluent's OpenAPI
specifications (vendored in confluent_openapi/, ccloud-sdk-go-v2 @ b5d63ec4):

- ``GET /org/v2/environments[/{id}]``                 environments, paged (page_size, page_token, metadata.next)
- ``GET /cmk/v2/clusters[/{id}]?environment=``        Kafka clusters, paged; the bootstrap endpoint is the
                                                        local broker's SASL_PLAINTEXT/SCRAM-SHA-256 listener
- ``POST|GET /iam/v2/api-keys``, ``GET|DELETE /iam/v2/api-keys/{id}``
                                                        API keys; a Kafka API key is a real SCRAM-SHA-256 user
                                                        on the broker (user = key id, password = secret)
- ``POST /v2/metrics/cloud/query``                     Metrics API v2, numbers computed from the records
                                                        really stored on the broker

Every endpoint takes HTTP Basic auth with a Cloud API key (``cloud_keys``: key id -> secret);
anything else answers 401 in Confluent's error shape. Usage::

    with ConfluentCloudEmulator(
        "127.0.0.1:19092",  # PLAINTEXT: the emulator reads records and manages SCRAM users here
        "127.0.0.1:19094",  # SASL_PLAINTEXT + SCRAM-SHA-256 (scripts/kafka-local: port + 2)
        environments=[{"id": "env-1", "display_name": "prod", "clusters": [
            {"id": "lkc-1", "display_name": "orders", "topic_prefix": "orders."},
        ]}],
        cloud_keys={"CLOUDKEY": "cloud-secret"},
        principals={"sa-1"},
    ) as emulator:
        requests.get(f"{emulator.url}/org/v2/environments", auth=("CLOUDKEY", "cloud-secret"))

Emulator assumptions and deviations (Confluent's behaviour where it is documented, else a choice):

- Clusters share the one broker; a cluster's topics are the broker's topics starting with its
  ``topic_prefix`` (every topic not starting with ``__`` when it has none).
- ``received_bytes`` / ``received_records`` are read from the log with a ``read_uncommitted``
  consumer: what producers wrote, aborted transactions included (as a broker's ingress counter
  would), control records excluded. Bytes per record = key + value + header keys and values (None
  counts 0), the record sampler's definition (``recommender_pipeline.measuring.reading``), bucketed per
  minute by record timestamp. ``sent_*`` (egress) = ``received_* x egress_ratio`` (nothing tracks
  real consumers). ``hot_partition_ingress`` / ``_egress`` is 1.0 for a (topic, partition, time
  bucket) whose bytes exceed ``hot_partition_factor`` (2) times the topic's mean partition bytes in
  that bucket, absent otherwise; its default aggregation across label groups is MAX (an
  indicator), the counters' is SUM. ``agg`` accepts SUM, MIN and MAX (the 2022 spec lists SUM only).
- Points are sums of the minutes of their time bucket; only non-zero points are returned, points
  older than 7 days are absent. Buckets are aligned to UTC (epoch) boundaries; a minute counts when
  its start lies in an interval; ``ALL`` is one bucket stamped with the earliest interval start.
- Points are ordered by ascending timestamp (Confluent's examples and live API; the spec's prose
  says descending). Groups are ordered lexicographically by their label values, except with
  ``ALL`` where ``order_by`` (default: the value, descending) ranks them and ``limit`` keeps the top.
  Label values are strings (``"metric.partition": "0"``); filters compare them lexicographically.
- Pagination of ``/query``: ``limit`` counts groups; a next page exists only with a non-empty
  ``group_by`` and a granularity other than ``ALL``; ``meta.pagination.next_page_token`` is passed
  back as the ``page_token`` query parameter (as the spec defines) with the identical body. A changed
  body, a token of a request whose intervals used ``now``, an unknown token or one invalidated by
  ``expire_page_tokens()`` answer 400. Unknown top-level body fields answer 400 (so a token put in
  the body is not silently ignored). ``meta.pagination`` (page_size, next_page_token) is present in
  every 200 although the 2022 spec's Flat/Grouped schemas do not declare it.
- ``/query`` rate limit: two scopes, each a sliding window of ``rate_limit_window_seconds`` (60):
  per client address (``rate_limit_per_minute``) and per organization, all clients together
  (``org_rate_limit_per_minute``, default 10 x the former). Every ``/query`` response carries the
  ``rateLimit-limit``, ``rateLimit-remaining`` and ``rateLimit-reset`` (seconds from now) headers once
  per scope, client scope first: the header appears twice, and clients such as ``requests`` see
  the two values joined, e.g. ``rateLimit-remaining: 299, 2999``. Over either limit: 429 with
  ``Retry-After`` and ``{"errors":[{"status":"429","detail":"Too many requests ..."}]}``.
- A Kafka API key authenticates on the broker after ``key_propagation_seconds`` (a timer thread),
  never for a cluster in ``unusable_clusters``. ``stop()`` deletes the SCRAM users it created.
- POST /iam/v2/api-keys with an unknown owner or cluster answers 400 (the spec lists no 404 for
  it); GET/DELETE of an unknown key 404. ``cmk`` with an unknown environment answers 403 (the
  spec lists 400/401/403 for the list). Page sizes above ``page_size_max`` (100) answer 400.
- ``http_endpoint`` of a cluster points at this server, which serves no Kafka REST API.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    OffsetSpec,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

ORGANIZATION_ID = "4ee0a2fa-0d5b-4e2c-9bb4-6b5c2d2d0001"
METRIC_PREFIX = "io.confluent.kafka.server/"
COUNTER_METRICS = {"received_bytes", "received_records", "sent_bytes", "sent_records"}
HOT_METRICS = {"hot_partition_ingress", "hot_partition_egress"}
MINUTE_MS = 60_000
GRANULARITY_MS = {
    "PT1M": MINUTE_MS,
    "PT5M": 5 * MINUTE_MS,
    "PT15M": 15 * MINUTE_MS,
    "PT30M": 30 * MINUTE_MS,
    "PT1H": 60 * MINUTE_MS,
    "PT4H": 240 * MINUTE_MS,
    "PT6H": 360 * MINUTE_MS,
    "PT12H": 720 * MINUTE_MS,
    "P1D": 1440 * MINUTE_MS,
    "ALL": None,
}
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MAX_INTERVAL_MS = {"PT1M": 6 * HOUR_MS, "PT5M": DAY_MS, "PT15M": 4 * DAY_MS, "PT30M": 7 * DAY_MS}
RETENTION_MS = 7 * DAY_MS
LABELS = ("resource.kafka.id", "metric.topic", "metric.partition")
QUERY_FIELDS = {"aggregations", "group_by", "granularity", "filter", "order_by", "intervals", "limit", "format"}
CLUSTER_KINDS = {"Basic", "Standard", "Enterprise", "Dedicated", "Freight"}
KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
READ_STALL_SECONDS = 30.0


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: tests read `ConfluentCloudEmulator.requests` instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _HttpError(Exception):
    """An error answer in one of Confluent's two error shapes."""

    def __init__(self, status: int, detail: str, code: str = "", source: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.code, self.source = status, detail, code, source


TITLES = {
    400: "Bad Request",
    401: "Authentication Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
CODES = {
    400: "invalid_request",
    401: "user_unauthenticated",
    403: "user_unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    429: "too_many_requests",
    500: "internal_error",
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_iso() -> str:
    return _iso(int(time.time() * 1000))


def record_size(key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None) -> int:
    """Key + value + header keys and values, in bytes; absent parts count as zero (as the product's)."""
    size = len(key or b"") + len(value or b"")
    for name, data in headers or ():
        size += len(name.encode()) + len(data or b"")
    return size


# ---------------------------------------------------------------------------------------------
# Broker traffic: per-minute ingress per partition, read from the log and cached.


@dataclass
class _PartitionLog:
    next_offset: int = 0
    minutes: dict[int, list[int]] = field(default_factory=dict)  # minute start ms -> [bytes, records]


class _BrokerTraffic:
    """Every record of the requested topics, bucketed per minute and partition.

    A topic is read once; later queries read only what a partition gained since (its high
    watermark moved). A partition whose high watermark went down (topic re-created) is re-read.
    """

    def __init__(self, bootstrap: str, admin: AdminClient):
        self.bootstrap = bootstrap
        self.admin = admin
        self.lock = threading.RLock()
        self.logs: dict[tuple[str, int], _PartitionLog] = {}
        self.records_read = 0
        self._consumer: Consumer | None = None
        self._known_topics: set[str] = set()

    def topics(self) -> dict[str, int]:
        """Partition counts of the broker's non-internal topics."""
        metadata = self.admin.list_topics(timeout=30)
        return {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None and not name.startswith("__")
        }

    def refresh(self, topics: dict[str, int]) -> None:
        """Brings the cache of these topics up to their current high watermarks (caller holds lock)."""
        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        if not tps:
            return
        futures = self.admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in tps},
            isolation_level=IsolationLevel.READ_UNCOMMITTED,
            request_timeout=30,
        )
        todo: dict[tuple[str, int], tuple[int, int]] = {}
        for tp, future in futures.items():
            try:
                high = future.result().offset
            except KafkaException:
                continue  # deleted meanwhile: no data
            key = (tp.topic, tp.partition)
            log = self.logs.setdefault(key, _PartitionLog())
            if high < log.next_offset:
                log = self.logs[key] = _PartitionLog()
            if high > log.next_offset:
                todo[key] = (log.next_offset, high)
        if todo:
            self._read(todo)

    def _consumer_for(self, topics: set[str]) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"ccloud-emulator-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_uncommitted",
                    "enable.partition.eof": False,
                }
            )
        if not topics <= self._known_topics:
            # Warm the metadata cache: an unknown topic would wait for the next periodic refresh.
            self._consumer.list_topics(timeout=30)
            self._known_topics |= topics
        return self._consumer

    def _read(self, todo: dict[tuple[str, int], tuple[int, int]]) -> None:
        consumer = self._consumer_for({t for t, _ in todo})
        pending = set(todo)
        assigned = [TopicPartition(t, p, todo[(t, p)][0]) for t, p in sorted(todo)]

        def finish(key: tuple[str, int]) -> None:
            self.logs[key].next_offset = todo[key][1]
            pending.discard(key)
            consumer.pause([TopicPartition(*key)])

        consumer.assign(assigned)
        last_progress = time.monotonic()
        try:
            while pending:
                messages = consumer.consume(10_000, timeout=0.05)
                if messages:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > READ_STALL_SECONDS:
                    raise RuntimeError(f"emulator: no progress reading {sorted(pending)}")
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(error)
                    key = (message.topic(), message.partition())
                    if key not in pending:
                        continue
                    offset, end = message.offset(), todo[key][1]
                    if offset >= end:
                        finish(key)
                        continue
                    minute = max(message.timestamp()[1], 0) // MINUTE_MS * MINUTE_MS
                    bucket = self.logs[key].minutes.setdefault(minute, [0, 0])
                    bucket[0] += record_size(message.key(), message.value(), message.headers())
                    bucket[1] += 1
                    self.records_read += 1
                    self.logs[key].next_offset = offset + 1
                    if offset == end - 1:
                        finish(key)
                if pending:
                    # Transaction markers and compaction gaps end a range without a record.
                    for tp in consumer.position([TopicPartition(*key) for key in pending]):
                        key = (tp.topic, tp.partition)
                        if tp.offset >= todo[key][1]:
                            finish(key)
        finally:
            consumer.resume(assigned)
            consumer.unassign()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


# ---------------------------------------------------------------------------------------------
# Metrics query parsing.

_DURATION = re.compile(r"^P(?!$)(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_NOW = re.compile(r"^now((?:[+-]\d+[mhd])*)(?:\|([mhd]))?$")
_OFFSET = re.compile(r"([+-])(\d+)([mhd])")
_UNIT_MS = {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}


def _parse_duration(text: str) -> int | None:
    match = _DURATION.match(text)
    if not match:
        return None
    weeks, days, hours, minutes, seconds = match.groups()
    return int(
        (int(weeks or 0) * 7 + int(days or 0)) * DAY_MS
        + int(hours or 0) * HOUR_MS
        + int(minutes or 0) * MINUTE_MS
        + float(seconds or 0) * 1000
    )


def _parse_instant(text: str, now_ms: int) -> tuple[int, bool]:
    match = _NOW.match(text)
    if match:
        ms = now_ms
        for sign, amount, unit in _OFFSET.findall(match.group(1)):
            ms += (1 if sign == "+" else -1) * int(amount) * _UNIT_MS[unit]
        if match.group(2):
            ms -= ms % _UNIT_MS[match.group(2)]
        return ms, True
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _HttpError(400, f"Invalid interval timestamp '{text}'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000), False


def _parse_interval(text: Any, now_ms: int) -> tuple[int, int, bool]:
    if not isinstance(text, str) or text.count("/") != 1:
        raise _HttpError(
            400, f"Invalid interval {text!r}: expected <start>/<end>, <start>/<duration> or <duration>/<end>"
        )
    first, second = text.split("/")
    if first.startswith("P"):
        duration = _parse_duration(first)
        end, uses_now = _parse_instant(second, now_ms)
        if duration is None:
            raise _HttpError(400, f"Invalid interval duration '{first}'")
        start = end - duration
    elif second.startswith("P"):
        duration = _parse_duration(second)
        start, uses_now = _parse_instant(first, now_ms)
        if duration is None:
            raise _HttpError(400, f"Invalid interval duration '{second}'")
        end = start + duration
    else:
        start, now_start = _parse_instant(first, now_ms)
        end, now_end = _parse_instant(second, now_ms)
        uses_now = now_start or now_end
    if end <= start:
        raise _HttpError(400, f"Invalid interval '{text}': the end must be after the start")
    return start, end, uses_now


@dataclass(frozen=True)
class _Leaf:
    field: str
    op: str
    value: str


@dataclass(frozen=True)
class _Compound:
    op: str  # AND | OR
    filters: tuple


@dataclass(frozen=True)
class _Not:
    filter: Any


def _parse_filter(node: Any, where: str = "filter") -> _Leaf | _Compound | _Not:
    if not isinstance(node, dict):
        raise _HttpError(400, f"{where}: a filter must be an object")
    op = node.get("op")
    if op in ("AND", "OR"):
        filters = node.get("filters")
        if not isinstance(filters, list) or not filters:
            raise _HttpError(400, f"{where}: {op} needs a non-empty 'filters' list")
        return _Compound(op, tuple(_parse_filter(f, f"{where}.filters[{i}]") for i, f in enumerate(filters)))
    if op == "NOT":
        return _Not(_parse_filter(node.get("filter"), f"{where}.filter"))
    if op in ("EQ", "GT", "GTE"):
        name, value = node.get("field"), node.get("value")
        if name not in LABELS:
            raise _HttpError(400, f"{where}: unsupported filter field {name!r}; supported: {', '.join(LABELS)}")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _HttpError(400, f"{where}: 'value' must be a string or an integer")
        return _Leaf(name, op, str(value))
    raise _HttpError(400, f"{where}: unsupported filter op {op!r}")


def _evaluate(node: _Leaf | _Compound | _Not, labels: dict[str, str]) -> bool | None:
    """Three-valued: None when the labels given do not decide the filter."""
    if isinstance(node, _Leaf):
        actual = labels.get(node.field)
        if actual is None:
            return None
        if node.op == "EQ":
            return actual == node.value
        if node.op == "GT":
            return actual > node.value
        return actual >= node.value
    if isinstance(node, _Not):
        inner = _evaluate(node.filter, labels)
        return None if inner is None else not inner
    results = [_evaluate(f, labels) for f in node.filters]
    if node.op == "AND":
        if False in results:
            return False
        return True if all(r is True for r in results) else None
    if True in results:
        return True
    return False if all(r is False for r in results) else None


def _cluster_ids_named(node: _Leaf | _Compound | _Not) -> set[str]:
    if isinstance(node, _Leaf):
        return {node.value} if node.field == "resource.kafka.id" and node.op == "EQ" else set()
    if isinstance(node, _Not):
        return _cluster_ids_named(node.filter)
    return set().union(*(_cluster_ids_named(f) for f in node.filters))


@dataclass
class _Query:
    metric: str
    agg: str
    granularity: str
    intervals: list[tuple[int, int]]
    uses_now: bool
    group_by: list[str]
    filter: Any
    limit: int
    format: str
    order_desc: bool


def _parse_query(body: Any, now_ms: int) -> _Query:
    if not isinstance(body, dict):
        raise _HttpError(400, "The request body must be a JSON object")
    unknown = sorted(set(body) - QUERY_FIELDS)
    if unknown:
        raise _HttpError(400, f"Unrecognized field(s) in the request body: {', '.join(unknown)}")
    aggregations = body.get("aggregations")
    if not isinstance(aggregations, list) or len(aggregations) != 1 or not isinstance(aggregations[0], dict):
        raise _HttpError(400, "'aggregations' must hold exactly one aggregation (one metric per request)")
    metric_name = aggregations[0].get("metric")
    metric = metric_name[len(METRIC_PREFIX) :] if isinstance(metric_name, str) else ""
    if (
        not isinstance(metric_name, str)
        or not metric_name.startswith(METRIC_PREFIX)
        or (metric not in COUNTER_METRICS | HOT_METRICS)
    ):
        raise _HttpError(400, f"Unknown metric {metric_name!r}")
    agg = aggregations[0].get("agg", "MAX" if metric in HOT_METRICS else "SUM")
    if agg not in ("SUM", "MIN", "MAX"):
        raise _HttpError(400, f"Unsupported aggregation function {agg!r}")
    granularity = body.get("granularity")
    if granularity not in GRANULARITY_MS:
        raise _HttpError(400, f"Invalid granularity {granularity!r}")
    raw_intervals = body.get("intervals")
    if not isinstance(raw_intervals, list) or not raw_intervals:
        raise _HttpError(400, "'intervals' must be a non-empty list")
    parsed = [_parse_interval(text, now_ms) for text in raw_intervals]
    limit_ms = MAX_INTERVAL_MS.get(granularity)
    for (start, end, _), text in zip(parsed, raw_intervals, strict=True):
        if limit_ms is not None and end - start > limit_ms:
            raise _HttpError(
                400,
                f"Interval '{text}' is longer than the {limit_ms // HOUR_MS} hours allowed for granularity "
                f"{granularity}; use a coarser granularity",
            )
    group_by = body.get("group_by", [])
    if (
        not isinstance(group_by, list)
        or any(label not in LABELS for label in group_by)
        or (len(set(group_by)) != len(group_by))
    ):
        raise _HttpError(400, f"Invalid group_by {group_by!r}; supported labels: {', '.join(LABELS)}")
    if "filter" not in body:
        raise _HttpError(400, "A filter on resource.kafka.id is required")
    query_filter = _parse_filter(body["filter"])
    if _evaluate(query_filter, {"resource.kafka.id": "\0"}) is not False:
        raise _HttpError(400, "The filter must restrict resource.kafka.id (e.g. an EQ on it, or an OR of them)")
    limit = body.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise _HttpError(400, "'limit' must be an integer from 1 to 1000")
    response_format = body.get("format", "FLAT")
    if response_format not in ("FLAT", "GROUPED"):
        raise _HttpError(400, f"Invalid format {response_format!r}")
    if response_format == "GROUPED" and not group_by:
        raise _HttpError(400, "format GROUPED is only allowed with a non-empty group_by")
    order_desc = True
    if "order_by" in body:
        order_by = body["order_by"]
        if granularity != "ALL":
            raise _HttpError(400, "order_by is only valid with granularity ALL")
        if not isinstance(order_by, list) or not order_by or not isinstance(order_by[0], dict):
            raise _HttpError(400, "'order_by' must be a non-empty list of objects")
        order = order_by[0].get("order", "DESCENDING")
        if order not in ("ASCENDING", "DESCENDING"):
            raise _HttpError(400, f"Invalid order {order!r}")
        order_desc = order == "DESCENDING"
    return _Query(
        metric=metric,
        agg=agg,
        granularity=granularity,
        intervals=[(s, e) for s, e, _ in parsed],
        uses_now=any(n for _, _, n in parsed),
        group_by=group_by,
        filter=query_filter,
        limit=limit,
        format=response_format,
        order_desc=order_desc,
    )


# ---------------------------------------------------------------------------------------------
# Rate limiting.


class _SlidingWindow:
    def __init__(self, limit: int, window_seconds: float):
        self.limit, self.window = limit, window_seconds
        self.hits: deque[float] = deque()

    def prune(self, now: float) -> None:
        while self.hits and self.hits[0] <= now - self.window:
            self.hits.popleft()

    def headers(self, now: float) -> tuple[int, int, int]:
        reset = math.ceil(self.hits[0] + self.window - now) if self.hits else 0
        return self.limit, max(0, self.limit - len(self.hits)), max(reset, 0)


# ---------------------------------------------------------------------------------------------


@dataclass
class _PageToken:
    body: str
    after: tuple
    uses_now: bool
    valid: bool = True


class ConfluentCloudEmulator:
    """The Confluent Cloud control plane, API keys and Metrics API v2 over the local broker.

    ``environments``: ``[{"id", "display_name", "clusters": [{"id", "display_name", "topic_prefix"?,
    "kind"? (Basic, Standard (default), Enterprise, Dedicated, Freight), "cloud"?, "region"?}]}]``.

    State tests read or set: ``url``; ``requests`` (every request: method, path, query, body,
    auth_key, and the answer's status and the time); ``api_keys`` (live keys by id: id, secret,
    owner, resource, created_at, created_by_cloud_key, display_name, description);
    ``deleted_keys``; ``key_propagation_seconds`` and ``unusable_clusters`` (read when a key is
    created); ``scram_users`` (SCRAM users created and not yet deleted) and ``scram_errors``;
    ``records_read`` (records the Metrics API read from the broker: the cache keeps it flat).
    Controls: ``fail_next(path_prefix, [(status, json body or None, headers), ...])`` and
    ``expire_page_tokens()``. Options beyond the brief: ``egress_ratio`` (sent_* = received_* x it),
    ``org_rate_limit_per_minute`` and ``rate_limit_window_seconds`` (the second rate-limit scope
    and the window length, so tests need not wait a minute), ``hot_partition_factor``.
    """

    def __init__(
        self,
        kafka_bootstrap: str,
        sasl_bootstrap: str,
        *,
        environments: list[dict],
        cloud_keys: dict[str, str],
        principals: set[str],
        rate_limit_per_minute: int = 300,
        page_size_max: int = 100,
        egress_ratio: float = 1.0,
        org_rate_limit_per_minute: int | None = None,
        rate_limit_window_seconds: float = 60.0,
        hot_partition_factor: float = 2.0,
    ):
        self.kafka_bootstrap = kafka_bootstrap
        self.sasl_bootstrap = sasl_bootstrap
        self.environments = environments
        self.cloud_keys = dict(cloud_keys)
        self.principals = set(principals)
        self.rate_limit_per_minute = rate_limit_per_minute
        self.org_rate_limit_per_minute = org_rate_limit_per_minute or 10 * rate_limit_per_minute
        self.rate_limit_window_seconds = rate_limit_window_seconds
        self.page_size_max = page_size_max
        self.egress_ratio = egress_ratio
        self.hot_partition_factor = hot_partition_factor
        self.clusters: dict[str, dict] = {}
        self.cluster_environment: dict[str, str] = {}
        for environment in environments:
            for cluster in environment.get("clusters", []):
                self.clusters[cluster["id"]] = cluster
                self.cluster_environment[cluster["id"]] = environment["id"]

        self.url = ""
        self.requests: list[dict] = []
        self.api_keys: dict[str, dict] = {}
        self.deleted_keys: list[str] = []
        self.key_propagation_seconds = 0.0
        self.unusable_clusters: set[str] = set()
        self.scram_users: set[str] = set()  # SCRAM users this emulator created and has not deleted
        self.scram_errors: dict[str, str] = {}

        self._created_at = _now_iso()
        self._lock = threading.RLock()
        self._injections: list[tuple[str, deque]] = []
        self._list_tokens: dict[str, tuple[str, int]] = {}
        self._query_tokens: dict[str, _PageToken] = {}
        self._client_windows: dict[str, _SlidingWindow] = {}
        self._org_window = _SlidingWindow(self.org_rate_limit_per_minute, rate_limit_window_seconds)
        self._timers: dict[str, threading.Timer] = {}
        self._admin: AdminClient | None = None
        self._traffic: _BrokerTraffic | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle

    def start(self) -> ConfluentCloudEmulator:
        if self._server is not None:
            return self
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="ccloud-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            users = sorted(self.scram_users)
        for user in users:
            self._delete_scram(user)
        if self._traffic is not None:
            with self._traffic.lock:
                self._traffic.close()

    def __enter__(self) -> ConfluentCloudEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----- test controls

    def fail_next(self, path_prefix: str, responses: list[tuple[int, dict | None, dict[str, str]]]) -> None:
        """The next len(responses) requests whose path starts with path_prefix get these answers instead."""
        with self._lock:
            self._injections.append((path_prefix, deque(responses)))

    def expire_page_tokens(self) -> None:
        """Every outstanding /query page token becomes invalid (400 on use)."""
        with self._lock:
            for token in self._query_tokens.values():
                token.valid = False

    @property
    def records_read(self) -> int:
        """Records the Metrics API has read from the broker so far (the cache makes re-reads rare)."""
        return self._traffic.records_read if self._traffic else 0

    # ----- plumbing

    @property
    def admin(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient({"bootstrap.servers": self.kafka_bootstrap})
            return self._admin

    def _wsgi(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        return self._handle(request)(environ, start_response)

    def _handle(self, request: Request) -> Response:
        raw = request.get_data(cache=True)
        body: Any = None
        body_error = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body_error = True
        auth = request.authorization
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.args.to_dict(),
            "body": body,
            "auth_key": auth.username if auth is not None and auth.type == "basic" else None,
            "status": None,
            "time": time.time(),
        }
        with self._lock:
            self.requests.append(entry)
        metrics = request.path.startswith("/v2/metrics/")
        try:
            response = self._injected(request.path)
            if response is None:
                if metrics:
                    response = self._metrics(request, body, body_error)
                else:
                    response = self._control_plane(request, body, body_error)
        except _HttpError as error:
            response = self._error(error, metrics)
        except Exception as error:  # an emulator bug or a broker failure: answer, never hang the client
            response = self._error(_HttpError(500, f"emulator error: {type(error).__name__}: {error}"), metrics)
        response.headers.setdefault("X-Request-Id", uuid.uuid4().hex)
        entry["status"] = response.status_code
        return response

    def _injected(self, path: str) -> Response | None:
        with self._lock:
            for prefix, queue in self._injections:
                if path.startswith(prefix) and queue:
                    status, payload, headers = queue.popleft()
                    break
            else:
                return None
            self._injections = [(p, q) for p, q in self._injections if q]
        response = Response(
            b"" if payload is None else json.dumps(payload),
            status=status,
            mimetype="application/json" if payload is not None else None,
        )
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    @staticmethod
    def _json(payload: Any, status: int = 200) -> Response:
        return Response(json.dumps(payload), status=status, mimetype="application/json")

    def _error(self, error: _HttpError, metrics: bool) -> Response:
        item: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "status": str(error.status),
            "code": error.code or CODES.get(error.status, "error"),
            "detail": error.detail,
        }
        if not metrics:
            item["title"] = TITLES.get(error.status, "Error")
            if error.source:
                item["source"] = error.source
        response = self._json({"errors": [item]}, error.status)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = (
                'Basic realm="Confluent Cloud", error="invalid_key", error_description="The API Key is invalid"'
            )
        return response

    def _authenticate(self, request: Request, metrics: bool) -> str:
        auth = request.authorization
        if auth is None or auth.type != "basic" or not auth.username:
            raise _HttpError(401, "Valid authentication credentials must be provided")
        with self._lock:
            if self.cloud_keys.get(auth.username) == auth.password:
                return auth.username
            kafka_key = self.api_keys.get(auth.username)
        if kafka_key is not None and kafka_key["secret"] == auth.password:
            api = "the Metrics API" if metrics else "Confluent Cloud APIs"
            raise _HttpError(
                401, f"Cluster (Kafka) API keys cannot be used with {api}; use a Cloud API key", "invalid_key_type"
            )
        raise _HttpError(401, "Valid authentication credentials must be provided")

    # ----- control plane

    def _control_plane(self, request: Request, body: Any, body_error: bool) -> Response:
        path, method = request.path.rstrip("/") or "/", request.method
        routes: list[tuple[str, dict[str, Any]]] = [
            (r"/org/v2/environments", {"GET": self._list_environments}),
            (r"/org/v2/environments/(?P<id>[^/]+)", {"GET": self._get_environment}),
            (r"/cmk/v2/clusters", {"GET": self._list_clusters}),
            (r"/cmk/v2/clusters/(?P<id>[^/]+)", {"GET": self._get_cluster}),
            (r"/iam/v2/api-keys", {"GET": self._list_keys, "POST": self._create_key}),
            (r"/iam/v2/api-keys/(?P<id>[^/]+)", {"GET": self._get_key, "DELETE": self._delete_key}),
        ]
        for pattern, handlers in routes:
            match = re.fullmatch(pattern, path)
            if match is None:
                continue
            if method not in handlers:
                raise _HttpError(405, f"{method} is not allowed on {path}")
            cloud_key = self._authenticate(request, metrics=False)
            if body_error:
                raise _HttpError(400, "The request body is not valid JSON", "invalid_json")
            return handlers[method](request, body, cloud_key, **match.groupdict())
        raise _HttpError(404, f"No such resource: {path}")

    def _page(self, request: Request, items: list[dict], filters: dict[str, str]) -> tuple[list[dict], dict]:
        """One page of a collection and its ListMeta (first, next, total_size)."""
        size_text = request.args.get("page_size", str(min(10, self.page_size_max)))  # the spec's default: 10
        try:
            page_size = int(size_text)
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= self.page_size_max:
            raise _HttpError(
                400,
                f"page_size must be an integer from 1 to {self.page_size_max}",
                "invalid_page_size",
                {"parameter": "page_size"},
            )
        signature = json.dumps([request.path, filters], sort_keys=True)
        offset = 0
        token = request.args.get("page_token")
        if token is not None:
            with self._lock:
                stored = self._list_tokens.get(token)
            if stored is None or stored[0] != signature:
                raise _HttpError(400, "Invalid page_token", "invalid_page_token", {"parameter": "page_token"})
            offset = stored[1]
        page = items[offset : offset + page_size]
        base = f"{self.url}{request.path}"
        metadata: dict[str, Any] = {
            "first": f"{base}?{urlencode({**filters, 'page_size': page_size})}",
            "total_size": len(items),
        }
        if offset + page_size < len(items):
            next_token = secrets.token_urlsafe(15)
            with self._lock:
                self._list_tokens[next_token] = (signature, offset + page_size)
            metadata["next"] = f"{base}?{urlencode({**filters, 'page_size': page_size, 'page_token': next_token})}"
        return page, metadata

    def _environment_json(self, environment: dict) -> dict:
        env_id = environment["id"]
        return {
            "api_version": "org/v2",
            "kind": "Environment",
            "id": env_id,
            "metadata": {
                "self": f"{self.url}/org/v2/environments/{env_id}",
                "resource_name": f"crn://confluent.cloud/organization={ORGANIZATION_ID}/environment={env_id}",
                "created_at": self._created_at,
                "updated_at": self._created_at,
            },
            "display_name": environment.get("display_name", env_id),
            "stream_governance_config": {"package": "ESSENTIALS"},
        }

    def _environment_ref(self, env_id: str) -> dict:
        return {
            "id": env_id,
            "related": f"{self.url}/org/v2/environments/{env_id}",
            "resource_name": f"crn://confluent.cloud/organization={ORGANIZATION_ID}/environment={env_id}",
        }

    def _cluster_json(self, cluster: dict) -> dict:
        cluster_id = cluster["id"]
        env_id = self.cluster_environment[cluster_id]
        kind = cluster.get("kind", "Standard")
        if kind not in CLUSTER_KINDS:
            kind = "Standard"
        config: dict[str, Any] = {"kind": kind}
        status: dict[str, Any] = {"phase": "PROVISIONED"}
        if kind == "Dedicated":
            config["cku"] = status["cku"] = int(cluster.get("cku", 1))
        bootstrap = f"SASL_PLAINTEXT://{self.sasl_bootstrap}"
        http_endpoint = f"{self.url}/kafka/{cluster_id}"
        return {
            "api_version": "cmk/v2",
            "kind": "Cluster",
            "id": cluster_id,
            "metadata": {
                "self": f"{self.url}/cmk/v2/clusters/{cluster_id}",
                "resource_name": (
                    f"crn://confluent.cloud/organization={ORGANIZATION_ID}/environment={env_id}"
                    f"/cloud-cluster={cluster_id}"
                ),
                "created_at": self._created_at,
                "updated_at": self._created_at,
            },
            "spec": {
                "display_name": cluster.get("display_name", cluster_id),
                "availability": "SINGLE_ZONE",
                "cloud": cluster.get("cloud", "AWS"),
                "region": cluster.get("region", "us-east-1"),
                "config": config,
                "kafka_bootstrap_endpoint": bootstrap,
                "http_endpoint": http_endpoint,
                "api_endpoint": http_endpoint,
                "endpoints": {
                    "PUBLIC": {
                        "kafka_bootstrap_endpoint": bootstrap,
                        "http_endpoint": http_endpoint,
                        "connection_type": "PUBLIC",
                    }
                },
                "environment": self._environment_ref(env_id),
            },
            "status": status,
        }

    def _list_environments(self, request: Request, body: Any, cloud_key: str) -> Response:
        items = [self._environment_json(e) for e in self.environments]
        page, metadata = self._page(request, items, {})
        return self._json({"api_version": "org/v2", "kind": "EnvironmentList", "metadata": metadata, "data": page})

    def _get_environment(self, request: Request, body: Any, cloud_key: str, id: str) -> Response:
        for environment in self.environments:
            if environment["id"] == id:
                return self._json(self._environment_json(environment))
        raise _HttpError(404, f"Environment '{id}' not found")

    def _environment_param(self, request: Request) -> dict:
        env_id = request.args.get("environment")
        if not env_id:
            raise _HttpError(
                400, "The 'environment' query parameter is required", "invalid_filter", {"parameter": "environment"}
            )
        for environment in self.environments:
            if environment["id"] == env_id:
                return environment
        raise _HttpError(403, f"Forbidden Access: environment '{env_id}' does not exist or is not accessible")

    def _list_clusters(self, request: Request, body: Any, cloud_key: str) -> Response:
        environment = self._environment_param(request)
        items = [self._cluster_json(c) for c in environment.get("clusters", [])]
        page, metadata = self._page(request, items, {"environment": environment["id"]})
        return self._json({"api_version": "cmk/v2", "kind": "ClusterList", "metadata": metadata, "data": page})

    def _get_cluster(self, request: Request, body: Any, cloud_key: str, id: str) -> Response:
        environment = self._environment_param(request)
        for cluster in environment.get("clusters", []):
            if cluster["id"] == id:
                return self._json(self._cluster_json(cluster))
        raise _HttpError(404, f"Cluster '{id}' not found in environment '{environment['id']}'")

    # ----- API keys

    def _owner_ref(self, principal: str) -> dict:
        service_account = principal.startswith("sa-")
        collection = "service-accounts" if service_account else "users"
        kind = "ServiceAccount" if service_account else "User"
        return {
            "id": principal,
            "related": f"{self.url}/iam/v2/{collection}/{principal}",
            "resource_name": f"crn://confluent.cloud/organization={ORGANIZATION_ID}/{kind.lower()}={principal}",
            "api_version": "iam/v2",
            "kind": kind,
        }

    def _cluster_ref(self, cluster_id: str) -> dict:
        env_id = self.cluster_environment[cluster_id]
        return {
            "id": cluster_id,
            "environment": env_id,
            "related": f"{self.url}/cmk/v2/clusters/{cluster_id}",
            "resource_name": (
                f"crn://confluent.cloud/organization={ORGANIZATION_ID}/environment={env_id}/cloud-cluster={cluster_id}"
            ),
            "api_version": "cmk/v2",
            "kind": "Cluster",
        }

    def _key_json(self, key: dict, with_secret: bool = False) -> dict:
        spec: dict[str, Any] = {
            "display_name": key["display_name"],
            "description": key["description"],
            "owner": self._owner_ref(key["owner"]),
            "resource": self._cluster_ref(key["resource"]),
            "resources": [self._cluster_ref(key["resource"])],
        }
        if with_secret:
            spec = {"secret": key["secret"], **spec}
        return {
            "api_version": "iam/v2",
            "kind": "ApiKey",
            "id": key["id"],
            "metadata": {
                "self": f"{self.url}/iam/v2/api-keys/{key['id']}",
                "resource_name": f"crn://confluent.cloud/organization={ORGANIZATION_ID}/api-key={key['id']}",
                "created_at": key["created_at"],
                "updated_at": key["created_at"],
            },
            "spec": spec,
        }

    def _create_key(self, request: Request, body: Any, cloud_key: str) -> Response:
        spec = body.get("spec") if isinstance(body, dict) else None
        if not isinstance(spec, dict):
            raise _HttpError(
                400, "The request body must be an object with a 'spec'", "invalid_body", {"pointer": "/spec"}
            )
        owner = spec.get("owner")
        owner_id = owner.get("id") if isinstance(owner, dict) else None
        if not isinstance(owner_id, str) or owner_id not in self.principals:
            raise _HttpError(
                400,
                f"Owner {owner_id!r} is not a known user or service account",
                "invalid_owner",
                {"pointer": "/spec/owner/id"},
            )
        resource = spec.get("resource")
        resource_id = resource.get("id") if isinstance(resource, dict) else None
        if not isinstance(resource_id, str) or resource_id not in self.clusters:
            raise _HttpError(
                400,
                f"Resource {resource_id!r} is not a Kafka cluster",
                "invalid_resource",
                {"pointer": "/spec/resource/id"},
            )
        for name in ("display_name", "description"):
            if name in spec and not isinstance(spec[name], str):
                raise _HttpError(400, f"spec.{name} must be a string", "invalid_body", {"pointer": f"/spec/{name}"})
        with self._lock:
            key_id = "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))
            while key_id in self.api_keys or key_id in self.cloud_keys:
                key_id = "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))
            key = {
                "id": key_id,
                "secret": "".join(secrets.choice(SECRET_ALPHABET) for _ in range(64)),
                "owner": owner_id,
                "resource": resource_id,
                "created_at": _now_iso(),
                "created_by_cloud_key": cloud_key,
                "display_name": spec.get("display_name", ""),
                "description": spec.get("description", ""),
            }
            self.api_keys[key_id] = key
            delay = self.key_propagation_seconds
            usable = resource_id not in self.unusable_clusters
            if usable and delay > 0:
                timer = threading.Timer(delay, self._propagate, args=(key_id,))
                timer.daemon = True
                self._timers[key_id] = timer
                timer.start()
        if usable and delay <= 0:
            self._propagate(key_id)
        response = self._json(self._key_json(key, with_secret=True), 202)
        response.headers["Location"] = f"{self.url}/iam/v2/api-keys/{key_id}"
        return response

    def _propagate(self, key_id: str) -> None:
        """Creates the key's SCRAM-SHA-256 user on the broker, if the key still exists."""
        with self._lock:
            self._timers.pop(key_id, None)
            key = self.api_keys.get(key_id)
            if key is None:
                return
            secret = key["secret"]
        try:
            futures = self.admin.alter_user_scram_credentials(
                [
                    UserScramCredentialUpsertion(
                        key_id, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), secret.encode()
                    )
                ],
                request_timeout=30,
            )
            futures[key_id].result()
        except Exception as error:
            with self._lock:
                self.scram_errors[key_id] = str(error)
            return
        with self._lock:
            self.scram_users.add(key_id)
            deleted_meanwhile = key_id not in self.api_keys
        if deleted_meanwhile:
            self._delete_scram(key_id)

    def _delete_scram(self, user: str) -> None:
        try:
            futures = self.admin.alter_user_scram_credentials(
                [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_256)], request_timeout=30
            )
            futures[user].result()
        except Exception as error:
            with self._lock:
                self.scram_errors[user] = str(error)
        with self._lock:
            self.scram_users.discard(user)

    def _list_keys(self, request: Request, body: Any, cloud_key: str) -> Response:
        filters = {name: request.args[name] for name in ("spec.owner", "spec.resource") if name in request.args}
        with self._lock:
            keys = list(self.api_keys.values())
        keys = [
            k
            for k in keys
            if k["owner"] == filters.get("spec.owner", k["owner"])
            and k["resource"] == filters.get("spec.resource", k["resource"])
        ]
        page, metadata = self._page(request, [self._key_json(k) for k in keys], filters)
        return self._json({"api_version": "iam/v2", "kind": "ApiKeyList", "metadata": metadata, "data": page})

    def _get_key(self, request: Request, body: Any, cloud_key: str, id: str) -> Response:
        with self._lock:
            key = self.api_keys.get(id)
        if key is None:
            raise _HttpError(404, f"API key '{id}' not found")
        return self._json(self._key_json(key))

    def _delete_key(self, request: Request, body: Any, cloud_key: str, id: str) -> Response:
        with self._lock:
            key = self.api_keys.pop(id, None)
            if key is None:
                raise _HttpError(404, f"API key '{id}' not found")
            self.deleted_keys.append(id)
            timer = self._timers.pop(id, None)
            if timer is not None:
                timer.cancel()
            created = id in self.scram_users
        if created:
            self._delete_scram(id)
        return Response(status=204)

    # ----- Metrics API

    def _metrics(self, request: Request, body: Any, body_error: bool) -> Response:
        match = re.fullmatch(r"/v2/metrics/([^/]+)/query/?", request.path)
        if match is None:
            raise _HttpError(404, f"No such resource: {request.path}")
        if request.method != "POST":
            raise _HttpError(405, f"{request.method} is not allowed on {request.path}")
        limits, allowed = self._rate_limit(request.remote_addr or "unknown")
        try:
            if not allowed:
                reset = max(reset for _, remaining, reset in limits if remaining == 0)
                response = self._error(
                    _HttpError(429, f"Too many requests: the limit is {self.rate_limit_per_minute} per minute"),
                    metrics=True,
                )
                response.headers["Retry-After"] = str(reset)
                return self._with_rate_headers(response, limits)
            self._authenticate(request, metrics=True)
            if match.group(1) != "cloud":
                raise _HttpError(404, f"Unknown dataset '{match.group(1)}'; the only dataset is 'cloud'")
            if body_error:
                raise _HttpError(400, "The request body is not valid JSON")
            return self._with_rate_headers(self._json(self._query(body, request.args.get("page_token"))), limits)
        except _HttpError as error:
            return self._with_rate_headers(self._error(error, metrics=True), limits)

    def _rate_limit(self, client: str) -> tuple[list[tuple[int, int, int]], bool]:
        now = time.monotonic()
        with self._lock:
            window = self._client_windows.setdefault(
                client, _SlidingWindow(self.rate_limit_per_minute, self.rate_limit_window_seconds)
            )
            scopes = [window, self._org_window]
            for scope in scopes:
                scope.prune(now)
            allowed = all(len(scope.hits) < scope.limit for scope in scopes)
            if allowed:
                for scope in scopes:
                    scope.hits.append(now)
            return [scope.headers(now) for scope in scopes], allowed

    @staticmethod
    def _with_rate_headers(response: Response, limits: list[tuple[int, int, int]]) -> Response:
        for limit, remaining, reset in limits:
            response.headers.add("rateLimit-limit", str(limit))
            response.headers.add("rateLimit-remaining", str(remaining))
            response.headers.add("rateLimit-reset", str(reset))
        return response

    def _query(self, body: Any, page_token: str | None) -> dict:
        now_ms = int(time.time() * 1000)
        query = _parse_query(body, now_ms)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        paged = bool(query.group_by) and query.granularity != "ALL"
        after: tuple | None = None
        if page_token is not None:
            if not paged:
                raise _HttpError(400, "Pagination is only supported with a non-empty group_by and granularity != ALL")
            with self._lock:
                token = self._query_tokens.get(page_token)
            if token is None or not token.valid:
                raise _HttpError(400, "Invalid or expired page token; restart from the first page")
            if token.body != canonical:
                raise _HttpError(400, "The request body must be identical on every page of a query")
            if token.uses_now:
                raise _HttpError(400, "Page token is invalid for intervals relative to 'now'; use absolute timestamps")
            after = token.after

        groups = self._compute(query, now_ms)
        if query.granularity == "ALL" and query.group_by:
            sign = -1 if query.order_desc else 1  # ALL has one bucket per group: rank by its value
            ranked = sorted(groups, key=lambda k: (sign * next(iter(groups[k].values())), k))
            keys, more = ranked[: query.limit], False
        else:
            ordered = sorted(groups)
            if after is not None:
                ordered = [k for k in ordered if k > after]
            keys = ordered[: query.limit] if query.group_by else ordered
            more = paged and len(ordered) > query.limit

        data: list[dict] = []
        for key in keys:
            labels = dict(zip(query.group_by, key, strict=True))
            points = [{"timestamp": _iso(ts), "value": float(v)} for ts, v in sorted(groups[key].items())]
            if query.format == "GROUPED":
                data.append({**labels, "points": points})
            else:
                data.extend({**point, **labels} for point in points)
        pagination: dict[str, Any] = {"page_size": query.limit}
        if more:
            next_token = secrets.token_urlsafe(24)
            with self._lock:
                self._query_tokens[next_token] = _PageToken(canonical, keys[-1], query.uses_now)
            pagination["next_page_token"] = next_token
        return {"data": data, "meta": {"pagination": pagination}}

    def _topics_of(self, cluster_id: str, broker_topics: dict[str, int]) -> list[str]:
        prefix = self.clusters[cluster_id].get("topic_prefix") or ""
        return sorted(t for t in broker_topics if t.startswith(prefix))

    def _compute(self, query: _Query, now_ms: int) -> dict[tuple, dict[int, float]]:
        """Group label values -> {bucket start ms: value}, non-zero points only."""
        unknown = sorted(_cluster_ids_named(query.filter) - set(self.clusters))
        if unknown:
            raise _HttpError(403, f"Not authorized to access resource.kafka.id {', '.join(unknown)}")
        clusters = [c for c in self.clusters if _evaluate(query.filter, {"resource.kafka.id": c}) is not False]
        with self._lock:
            if self._traffic is None:
                self._traffic = _BrokerTraffic(self.kafka_bootstrap, self.admin)
            traffic = self._traffic
        with traffic.lock:
            broker_topics = traffic.topics()
            wanted: dict[tuple[str, str], int] = {}
            for cluster_id in clusters:
                for topic in self._topics_of(cluster_id, broker_topics):
                    labels = {"resource.kafka.id": cluster_id, "metric.topic": topic}
                    if _evaluate(query.filter, labels) is not False:
                        wanted[(cluster_id, topic)] = broker_topics[topic]
            traffic.refresh({topic: n for (_, topic), n in wanted.items()})
            per_partition = {
                (topic, p): self._buckets(traffic.logs.get((topic, p)), query, now_ms)
                for (_, topic), n in wanted.items()
                for p in range(n)
            }

        counters = query.metric in COUNTER_METRICS
        scale = self.egress_ratio if query.metric.startswith("sent_") or query.metric.endswith("egress") else 1.0
        index = 1 if query.metric.endswith("_records") else 0
        groups: dict[tuple, dict[int, float]] = {}
        for (cluster_id, topic), n in wanted.items():
            values: dict[int, dict[int, float]] = {}  # partition -> bucket -> value
            if counters:
                for p in range(n):
                    values[p] = {b: v[index] * scale for b, v in per_partition[(topic, p)].items()}
            else:
                totals: dict[int, float] = {}
                for p in range(n):
                    for b, v in per_partition[(topic, p)].items():
                        totals[b] = totals.get(b, 0.0) + v[0] * scale
                for p in range(n):
                    values[p] = {
                        b: 1.0
                        for b, v in per_partition[(topic, p)].items()
                        if v[0] * scale > self.hot_partition_factor * totals[b] / n
                    }
            for p in range(n):
                labels = {"resource.kafka.id": cluster_id, "metric.topic": topic, "metric.partition": str(p)}
                if _evaluate(query.filter, labels) is not True:
                    continue
                key = tuple(labels[g] for g in query.group_by)
                points = groups.setdefault(key, {})
                for b, v in values[p].items():
                    if v == 0:
                        continue
                    if b not in points:
                        points[b] = v
                    elif query.agg == "SUM":
                        points[b] += v
                    elif query.agg == "MIN":
                        points[b] = min(points[b], v)
                    else:
                        points[b] = max(points[b], v)
        return {key: {b: v for b, v in points.items() if v != 0} for key, points in groups.items() if points}

    @staticmethod
    def _buckets(log: _PartitionLog | None, query: _Query, now_ms: int) -> dict[int, list[int]]:
        """A partition's [bytes, records] per time bucket of the query, inside its intervals and retention."""
        if log is None:
            return {}
        oldest = (now_ms - RETENTION_MS) // MINUTE_MS * MINUTE_MS
        step = GRANULARITY_MS[query.granularity]
        all_start = min(start for start, _ in query.intervals)
        buckets: dict[int, list[int]] = {}
        for minute, (size, count) in log.minutes.items():
            if minute < oldest or not any(start <= minute < end for start, end in query.intervals):
                continue
            bucket = all_start if step is None else minute - minute % step
            totals = buckets.setdefault(bucket, [0, 0])
            totals[0] += size
            totals[1] += count
        return buckets
