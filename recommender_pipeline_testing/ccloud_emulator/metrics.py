"""The Metrics API v2 (``POST /v2/metrics/cloud/query``): the query engine that parses a query
(metric, aggregation, intervals, granularity, group_by, filter, order, limit, format), checks the
rate limit, turns the broker's per-minute traffic into points per group and pages through them.

Its own module because it is the emulator's largest API and the only one whose answers are
computed from the broker's records (``traffic.py``) rather than from the emulator's own state.

Emulator assumptions and deviations (Confluent's behaviour where it is documented, else a choice):

- Clusters share the one broker; a cluster's topics are the broker's topics starting with its
  ``topic_prefix`` (every topic not starting with ``__`` when it has none).
- ``sent_*`` (egress) = ``received_* x egress_ratio`` (nothing tracks real consumers).
  ``hot_partition_ingress`` / ``_egress`` is 1.0 for a (topic, partition, time bucket) whose bytes
  exceed ``hot_partition_factor`` (2) times the topic's mean partition bytes in that bucket, absent
  otherwise; its default aggregation across label groups is MAX (an indicator), the counters' is
  SUM. ``agg`` accepts SUM, MIN and MAX (the 2022 spec lists SUM only).
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

``received_*`` themselves are read from the broker's log: see ``traffic.py``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from recommender_pipeline_testing.ccloud_emulator.rate_limit import RateLimitMixin, with_rate_headers
from recommender_pipeline_testing.ccloud_emulator.responses import HttpError, error_response, iso, json_response
from recommender_pipeline_testing.ccloud_emulator.traffic import MINUTE_MS, BrokerTraffic, PartitionLog

METRIC_PREFIX = "io.confluent.kafka.server/"
COUNTER_METRICS = {"received_bytes", "received_records", "sent_bytes", "sent_records"}
HOT_METRICS = {"hot_partition_ingress", "hot_partition_egress"}
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
        raise HttpError(400, f"Invalid interval timestamp '{text}'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000), False


def _parse_interval(text: Any, now_ms: int) -> tuple[int, int, bool]:
    if not isinstance(text, str) or text.count("/") != 1:
        raise HttpError(
            400, f"Invalid interval {text!r}: expected <start>/<end>, <start>/<duration> or <duration>/<end>"
        )
    first, second = text.split("/")
    if first.startswith("P"):
        duration = _parse_duration(first)
        end, uses_now = _parse_instant(second, now_ms)
        if duration is None:
            raise HttpError(400, f"Invalid interval duration '{first}'")
        start = end - duration
    elif second.startswith("P"):
        duration = _parse_duration(second)
        start, uses_now = _parse_instant(first, now_ms)
        if duration is None:
            raise HttpError(400, f"Invalid interval duration '{second}'")
        end = start + duration
    else:
        start, now_start = _parse_instant(first, now_ms)
        end, now_end = _parse_instant(second, now_ms)
        uses_now = now_start or now_end
    if end <= start:
        raise HttpError(400, f"Invalid interval '{text}': the end must be after the start")
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
        raise HttpError(400, f"{where}: a filter must be an object")
    op = node.get("op")
    if op in ("AND", "OR"):
        filters = node.get("filters")
        if not isinstance(filters, list) or not filters:
            raise HttpError(400, f"{where}: {op} needs a non-empty 'filters' list")
        return _Compound(op, tuple(_parse_filter(f, f"{where}.filters[{i}]") for i, f in enumerate(filters)))
    if op == "NOT":
        return _Not(_parse_filter(node.get("filter"), f"{where}.filter"))
    if op in ("EQ", "GT", "GTE"):
        name, value = node.get("field"), node.get("value")
        if name not in LABELS:
            raise HttpError(400, f"{where}: unsupported filter field {name!r}; supported: {', '.join(LABELS)}")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise HttpError(400, f"{where}: 'value' must be a string or an integer")
        return _Leaf(name, op, str(value))
    raise HttpError(400, f"{where}: unsupported filter op {op!r}")


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
        raise HttpError(400, "The request body must be a JSON object")
    unknown = sorted(set(body) - QUERY_FIELDS)
    if unknown:
        raise HttpError(400, f"Unrecognized field(s) in the request body: {', '.join(unknown)}")
    aggregations = body.get("aggregations")
    if not isinstance(aggregations, list) or len(aggregations) != 1 or not isinstance(aggregations[0], dict):
        raise HttpError(400, "'aggregations' must hold exactly one aggregation (one metric per request)")
    metric_name = aggregations[0].get("metric")
    metric = metric_name[len(METRIC_PREFIX) :] if isinstance(metric_name, str) else ""
    if (
        not isinstance(metric_name, str)
        or not metric_name.startswith(METRIC_PREFIX)
        or (metric not in COUNTER_METRICS | HOT_METRICS)
    ):
        raise HttpError(400, f"Unknown metric {metric_name!r}")
    agg = aggregations[0].get("agg", "MAX" if metric in HOT_METRICS else "SUM")
    if agg not in ("SUM", "MIN", "MAX"):
        raise HttpError(400, f"Unsupported aggregation function {agg!r}")
    granularity = body.get("granularity")
    if granularity not in GRANULARITY_MS:
        raise HttpError(400, f"Invalid granularity {granularity!r}")
    raw_intervals = body.get("intervals")
    if not isinstance(raw_intervals, list) or not raw_intervals:
        raise HttpError(400, "'intervals' must be a non-empty list")
    parsed = [_parse_interval(text, now_ms) for text in raw_intervals]
    limit_ms = MAX_INTERVAL_MS.get(granularity)
    for (start, end, _), text in zip(parsed, raw_intervals, strict=True):
        if limit_ms is not None and end - start > limit_ms:
            raise HttpError(
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
        raise HttpError(400, f"Invalid group_by {group_by!r}; supported labels: {', '.join(LABELS)}")
    if "filter" not in body:
        raise HttpError(400, "A filter on resource.kafka.id is required")
    query_filter = _parse_filter(body["filter"])
    if _evaluate(query_filter, {"resource.kafka.id": "\0"}) is not False:
        raise HttpError(400, "The filter must restrict resource.kafka.id (e.g. an EQ on it, or an OR of them)")
    limit = body.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise HttpError(400, "'limit' must be an integer from 1 to 1000")
    response_format = body.get("format", "FLAT")
    if response_format not in ("FLAT", "GROUPED"):
        raise HttpError(400, f"Invalid format {response_format!r}")
    if response_format == "GROUPED" and not group_by:
        raise HttpError(400, "format GROUPED is only allowed with a non-empty group_by")
    order_desc = True
    if "order_by" in body:
        order_by = body["order_by"]
        if granularity != "ALL":
            raise HttpError(400, "order_by is only valid with granularity ALL")
        if not isinstance(order_by, list) or not order_by or not isinstance(order_by[0], dict):
            raise HttpError(400, "'order_by' must be a non-empty list of objects")
        order = order_by[0].get("order", "DESCENDING")
        if order not in ("ASCENDING", "DESCENDING"):
            raise HttpError(400, f"Invalid order {order!r}")
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
# The endpoint: rate limit, authentication, the query's groups and points, paging.


@dataclass
class PageToken:
    body: str
    after: tuple
    uses_now: bool
    valid: bool = True


class MetricsApiMixin(RateLimitMixin):
    """The ``/v2/metrics/`` endpoints. Part of ``ConfluentCloudEmulator``, whose ``__init__`` sets the
    state below and which provides ``admin`` and ``_authenticate``."""

    clusters: dict[str, dict]
    kafka_bootstrap: str
    egress_ratio: float
    hot_partition_factor: float
    _query_tokens: dict[str, PageToken]
    _traffic: BrokerTraffic | None

    def _metrics(self, request: Request, body: Any, body_error: bool) -> Response:
        match = re.fullmatch(r"/v2/metrics/([^/]+)/query/?", request.path)
        if match is None:
            raise HttpError(404, f"No such resource: {request.path}")
        if request.method != "POST":
            raise HttpError(405, f"{request.method} is not allowed on {request.path}")
        limits, allowed = self._rate_limit(request.remote_addr or "unknown")
        try:
            if not allowed:
                reset = max(reset for _, remaining, reset in limits if remaining == 0)
                response = error_response(
                    HttpError(429, f"Too many requests: the limit is {self.rate_limit_per_minute} per minute"),
                    metrics=True,
                )
                response.headers["Retry-After"] = str(reset)
                return with_rate_headers(response, limits)
            self._authenticate(request, metrics=True)
            if match.group(1) != "cloud":
                raise HttpError(404, f"Unknown dataset '{match.group(1)}'; the only dataset is 'cloud'")
            if body_error:
                raise HttpError(400, "The request body is not valid JSON")
            return with_rate_headers(json_response(self._query(body, request.args.get("page_token"))), limits)
        except HttpError as error:
            return with_rate_headers(error_response(error, metrics=True), limits)

    def _query(self, body: Any, page_token: str | None) -> dict:
        now_ms = int(time.time() * 1000)
        query = _parse_query(body, now_ms)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        paged = bool(query.group_by) and query.granularity != "ALL"
        after: tuple | None = None
        if page_token is not None:
            if not paged:
                raise HttpError(400, "Pagination is only supported with a non-empty group_by and granularity != ALL")
            with self._lock:
                token = self._query_tokens.get(page_token)
            if token is None or not token.valid:
                raise HttpError(400, "Invalid or expired page token; restart from the first page")
            if token.body != canonical:
                raise HttpError(400, "The request body must be identical on every page of a query")
            if token.uses_now:
                raise HttpError(400, "Page token is invalid for intervals relative to 'now'; use absolute timestamps")
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
            points = [{"timestamp": iso(ts), "value": float(v)} for ts, v in sorted(groups[key].items())]
            if query.format == "GROUPED":
                data.append({**labels, "points": points})
            else:
                data.extend({**point, **labels} for point in points)
        pagination: dict[str, Any] = {"page_size": query.limit}
        if more:
            next_token = secrets.token_urlsafe(24)
            with self._lock:
                self._query_tokens[next_token] = PageToken(canonical, keys[-1], query.uses_now)
            pagination["next_page_token"] = next_token
        return {"data": data, "meta": {"pagination": pagination}}

    def _topics_of(self, cluster_id: str, broker_topics: dict[str, int]) -> list[str]:
        prefix = self.clusters[cluster_id].get("topic_prefix") or ""
        return sorted(t for t in broker_topics if t.startswith(prefix))

    def _compute(self, query: _Query, now_ms: int) -> dict[tuple, dict[int, float]]:
        """Group label values -> {bucket start ms: value}, non-zero points only."""
        unknown = sorted(_cluster_ids_named(query.filter) - set(self.clusters))
        if unknown:
            raise HttpError(403, f"Not authorized to access resource.kafka.id {', '.join(unknown)}")
        clusters = [c for c in self.clusters if _evaluate(query.filter, {"resource.kafka.id": c}) is not False]
        with self._lock:
            if self._traffic is None:
                self._traffic = BrokerTraffic(self.kafka_bootstrap, self.admin)
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
    def _buckets(log: PartitionLog | None, query: _Query, now_ms: int) -> dict[int, list[int]]:
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
