"""What a Metrics API query answer must be before its numbers are used.

Two checks, one per layer that can see the fault:

- ``parse_page``: each page against the shape Confluent publishes for ``POST
  /v2/metrics/{dataset}/query`` (``FlatQueryResponse`` of metrics-v2-openapi.yaml: ``data``, a list
  of points, each with a ``timestamp`` (date-time), a numeric ``value`` and one attribute per
  ``group_by`` label; ``meta.pagination.next_page_token`` when another page follows). The pipeline
  asks for the default FLAT format, so a GROUPED answer is invalid too. A pydantic model of only
  what the code relies on, so the product never needs the OpenAPI files or their validators.
- ``checked_points``: the values of a whole query (all its pages) against what a Kafka cluster can
  have carried in the requested interval: finite, not negative, below ``MAX_PER_SECOND`` times the
  bucket's seconds, timestamps inside [start, end), each group and time once.

Both raise ``InvalidAnswerError``, which is not retried: a well-formed answer of the wrong shape
or with impossible numbers is what the server means to say, and asking it again eight times over
about 90 s of backoff would bring the same. Failing the cluster-day leaves error rows, which the
next run measures again. What looks transient (a cut body, an empty or non-JSON 200, a 200
carrying ``{"errors": [...]}``) is retried by the HTTP client before a page gets here.
"""

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, ValidationError, field_validator

from recommender_pipeline.errors import InvalidAnswerError

PARTITION = "metric.partition"
# A bound no Kafka cluster comes near, per second of a bucket: 1e12 bytes (1 TB/s) or records.
# Confluent's largest Dedicated clusters carry tens of GB/s, so a real value is 30x below it; and
# a day of it (8.64e16) still fits the store's 64-bit columns (9.2e18), which 1e30 overflowed.
MAX_PER_SECOND = 1e12
GRANULARITY_SECONDS = {
    "PT1M": 60,
    "PT5M": 300,
    "PT15M": 900,
    "PT30M": 1800,
    "PT1H": 3600,
    "PT4H": 14_400,
    "PT6H": 21_600,
    "PT12H": 43_200,
    "P1D": 86_400,
}


def timestamp_ms(text: str) -> int:
    """An ISO 8601 date-time with its UTC offset ("2026-12-01T03:00:00Z") in ms since the epoch."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("a date-time without a UTC offset")
    return round(moment.timestamp() * 1000)


class QueryPoint(BaseModel):
    """One point of a FLAT answer: its time bucket, its value, and its labels as extra fields.

    Strict types: pydantic's lax mode would turn "12" into 12.0 and read a number as a Unix time,
    exactly the answers that must not pass. NaN and infinities pass here (Python's JSON reader
    accepts them) and are refused, with the point named, by ``checked_points``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    timestamp: StrictStr
    value: StrictFloat

    @field_validator("timestamp")
    @classmethod
    def _date_time(cls, text: str) -> str:
        timestamp_ms(text)  # raises ValueError, which pydantic reports with the field's place
        return text


class Pagination(BaseModel):
    """``meta.pagination``: only ``next_page_token`` is used; the spec's ``page_size`` is not needed."""

    model_config = ConfigDict(extra="allow")

    page_size: StrictInt | None = None
    next_page_token: StrictStr | None = None


class Meta(BaseModel):
    """``meta``: declared by the current spec, absent from the 2022 one's Flat schema, so optional."""

    model_config = ConfigDict(extra="allow")

    pagination: Pagination | None = None


class QueryPage(BaseModel):
    """One page of a FLAT query answer. ``data`` is required and a list: ``null``, a missing key or
    a bare list are not an empty answer but a broken one."""

    model_config = ConfigDict(extra="allow")

    data: list[QueryPoint]
    meta: Meta | None = None

    @property
    def next_page_token(self) -> str | None:
        pagination = self.meta.pagination if self.meta else None
        return (pagination.next_page_token or None) if pagination else None


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_problem(error: ValidationError) -> str:
    """The first validation problem as "data.3.value: Input should be a valid number, got '12'"."""
    problems = error.errors(include_url=False)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {first['msg']}, got {_short(first.get('input'))}{more}"


def parse_page(payload: Any, labels: Sequence[str], number: int) -> QueryPage:
    """Page `number` (from 1) of a query grouped by `labels`, checked against Confluent's published
    response shape: every point carries each label as a string (``metric.partition`` a partition
    number) so that the code never meets a missing key or a wrong type."""
    try:
        page = QueryPage.model_validate(payload)
    except ValidationError as error:
        raise InvalidAnswerError(
            f"page {number} is not Confluent's published query response: {_first_problem(error)}"
        ) from None
    for index, point in enumerate(page.data, start=1):
        extra = point.model_extra or {}
        for label in labels:
            value = extra.get(label)
            if label not in extra:
                raise InvalidAnswerError(f"page {number}, point {index} lacks the group_by label {label}")
            if not isinstance(value, str) or not value:
                raise InvalidAnswerError(
                    f"page {number}, point {index} has {label} {_short(value)}: not a non-empty string"
                )
            if label == PARTITION and not value.isdecimal():
                raise InvalidAnswerError(f"page {number}, point {index} has {label} {value!r}: not a partition number")
    return page


def _describe(point: dict, labels: Sequence[str]) -> str:
    names = ", ".join(f"{label}={point[label]}" for label in labels)
    return f"{names} at {point['timestamp']}" if names else str(point["timestamp"])


def checked_points(
    points: list[dict], metric: str, labels: Sequence[str], granularity: str, start_ms: int, end_ms: int
) -> list[dict]:
    """The points of one query (already shaped by ``parse_page``), each group and time once.

    Raises ``InvalidAnswerError`` naming the first point that cannot be true: a value that is not
    finite, negative, or above ``MAX_PER_SECOND`` x the bucket's seconds; a timestamp outside the
    requested [start_ms, end_ms) (counting it would move a day's bytes and peak into another day);
    or a group and time answered twice with different values. Confluent answers each group and
    time once, so a repeat means overlapping pages (a restarted paging): an identical repeat
    carries nothing new and is dropped, a conflicting one leaves no way to know the true value.
    """
    bound = MAX_PER_SECOND * GRANULARITY_SECONDS.get(granularity, GRANULARITY_SECONDS["P1D"])
    seen: dict[tuple, tuple[int, float]] = {}
    kept: list[dict] = []
    for number, point in enumerate(points, start=1):
        value, at = point["value"], timestamp_ms(point["timestamp"])
        where = f"point {number} of {metric} ({_describe(point, labels)})"
        if not math.isfinite(value):
            raise InvalidAnswerError(f"{where} has value {value}: not finite")
        if value < 0:
            raise InvalidAnswerError(f"{where} has value {value:g}: negative")
        if value > bound:
            raise InvalidAnswerError(
                f"{where} has value {value:g}: above {bound:g}, {MAX_PER_SECOND:g} per second of a {granularity} bucket"
            )
        if not start_ms <= at < end_ms:
            raise InvalidAnswerError(f"{where} is outside the requested interval {_utc(start_ms)}/{_utc(end_ms)}")
        key = (*(point[label] for label in labels), at)
        if key in seen:
            first, earlier = seen[key]
            if earlier != value:
                raise InvalidAnswerError(
                    f"points {first} and {number} of {metric} are both {_describe(point, labels)}, "
                    f"with values {earlier:g} and {value:g}: conflicting duplicates"
                )
            continue  # an identical repeat: counting it would double the group's bytes
        seen[key] = (number, value)
        kept.append(point)
    return kept
