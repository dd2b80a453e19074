"""The typed measurement of one topic on one UTC day: what both measuring methods produce.

The store's schema, the detail CSV's columns and the Dagster metadata all derive from
`Measurement`'s fields, so a new number is added in one place.
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from recommender_pipeline.days import HOUR_MS, day_end_ms, day_start_ms, iso_utc


class Status(StrEnum):
    MEASURED = "measured"  # records were found and counted
    EMPTY = "empty"  # the log shows that nothing was produced on the day
    NOT_MEASURABLE = "not_measurable"  # the day's records are gone (retention, truncation) or not yet there
    ERROR = "error"  # measuring failed; the reason says why


class Method(StrEnum):
    SAMPLING_RECORDS = "sampling_records"  # read from the log, every record or a stratified sample
    METRICS_API = "metrics_api"  # Confluent Cloud's broker counters


@dataclass(frozen=True)
class TopicSpec:
    """What the inventory knows about a topic when its measurement is planned."""

    cluster_id: str
    topic: str
    partitions: int
    retention_ms: int | None
    is_compacted: bool
    cleanup_policy: str = "delete"

    def retention_horizon(self, at_ms: int) -> int | None:
        """Time retention deletes only records older than this at `at_ms`; None when the topic has
        no time retention (`retention.ms` -1, or compaction alone)."""
        if self.retention_ms is None or self.retention_ms <= 0 or "delete" not in self.cleanup_policy.lower():
            return None
        return at_ms - self.retention_ms


@dataclass
class Measurement:
    """One (day, cluster, topic) row. Byte counts are keys + values + header keys and values when
    records are read, and Confluent's `received_bytes` (records as sent on the wire) from the Metrics API."""

    date: str
    cluster_id: str
    topic: str
    method: Method
    status: Status = Status.ERROR
    reason: str = ""
    partitions: int = 0
    is_compacted: bool = False
    retention_ms: int | None = None
    window_start: str = ""
    window_end: str = ""
    window_seconds: float = 0.0
    day_closed: bool = False
    exact: bool = True  # every record of the day was read
    estimated: bool = False  # some of the day's numbers come from a sample (SAMPLING_BATCH_SIZE)
    partial: bool = False  # part of the day was deleted from the log before it was measured
    records: int = 0
    bytes: int = 0
    offsets_in_window: int = 0
    sampled_records: int = 0  # records actually read
    retained_records: int = 0
    late_records: int = 0  # counted records that were appended after the next day had begun
    # Records read that no day can hold: stamped more than `records.PLAUSIBLE_AHEAD_MS` after the
    # measurement (a clock far ahead), or without a timestamp (-1: an old message format).
    future_records: int = 0
    untimestamped_records: int = 0
    mean_record_bytes: float = 0.0
    avg_ingress_bytes_per_sec: float = 0.0
    peak_ingress_bytes_per_sec: float = 0.0
    peak_bucket_start: str | None = None
    bucket_seconds: int = HOUR_MS // 1000
    # 95 % confidence intervals; equal to the value when exact, empty for the Metrics API.
    bytes_ci_low: float | None = None
    bytes_ci_high: float | None = None
    peak_ci_low: float | None = None
    peak_ci_high: float | None = None
    partition_bytes: str = "[]"  # JSON list, one entry per partition
    # JSON list per partition of its 24 hours' bytes, so that a day merged from several captures
    # keeps each partition's bytes of the hours it kept; empty for the Metrics API.
    partition_hour_bytes: str = ""
    # Hourly capture (`hours`): JSON lists of the 24 UTC hours' records and bytes, and one state
    # letter per hour; empty for the Metrics API.
    hour_records: str = ""
    hour_bytes: str = ""
    hours_captured: str = ""
    # Sampled days only (empty when every partition was read whole): per hour, the bytes' variance
    # and Satterthwaite term, the sampled offsets and the bytes estimated in them, so that a day
    # merged from several captures recomputes its intervals (`estimation.day_intervals`).
    hour_bytes_variance: str = ""
    hour_bytes_dof_terms: str = ""
    hour_offsets: str = ""
    hour_offset_bytes: str = ""
    # With PEAK_BUCKET_SECONDS under an hour and the day read whole: JSON {bucket index: bytes}.
    bucket_bytes: str = ""
    skew: float = 0.0
    egress_bytes: int | None = None
    hot_partition_ingress: bool | None = None
    hot_partition_egress: bool | None = None
    measured_at: str = ""
    stored_at: str = ""  # when the store wrote the row: a recommendation made before it is out of date
    duration_seconds: float = 0.0  # the topic's share (by partitions) of its chunk's measuring time

    @classmethod
    def planned(cls, spec: TopicSpec, day: date, measured_at: int, method: Method) -> Measurement:
        """The row of a topic-day before measuring: its window, and `error` until a method fills it."""
        start_ms = day_start_ms(day)
        closed = measured_at >= day_end_ms(day)
        window_end = day_end_ms(day) if closed else measured_at
        return cls(
            date=day.isoformat(),
            cluster_id=spec.cluster_id,
            topic=spec.topic,
            method=method,
            partitions=spec.partitions,
            is_compacted=spec.is_compacted,
            retention_ms=spec.retention_ms,
            window_start=iso_utc(start_ms),
            window_end=iso_utc(window_end),
            window_seconds=max(window_end - start_ms, 0) / 1000,
            day_closed=closed,
            measured_at=iso_utc(measured_at),
        )

    @classmethod
    def failed(cls, spec: TopicSpec, day: date, method: Method, reason: str) -> Measurement:
        row = cls.planned(spec, day, int(time.time() * 1000), method)
        row.status, row.reason = Status.ERROR, reason
        return row

    def as_row(self) -> dict:
        """Plain values (enums as their strings), in column order, for the store and CSVs."""
        row = dataclasses.asdict(self)
        row["method"], row["status"] = str(self.method), str(self.status)
        return row


def _sql_type(annotation: str) -> str:
    hint = typing.get_type_hints(Measurement)[annotation]
    if isinstance(hint, types.UnionType):  # `X | None`: the column's type is X's
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return {bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE"}.get(hint, "VARCHAR")


MEASUREMENT_KEY = ("date", "cluster_id", "topic")
# The store's columns, in the dataclass's order; "date" is a DATE, the partition count fits INTEGER.
MEASUREMENT_COLUMNS: dict[str, str] = {
    f.name: {"date": "DATE", "partitions": "INTEGER", "bucket_seconds": "INTEGER"}.get(f.name) or _sql_type(f.name)
    for f in dataclasses.fields(Measurement)
}
