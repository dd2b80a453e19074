"""The Confluent Cloud Metrics API method: the same day x topic measurement, from the broker's own
counters instead of reading records.

Queries are batched per cluster and day, one per metric with `group_by` on the topic (and the
partition for skew), over an absolute interval (so page tokens stay valid): six queries plus
paging whatever the topic count.

No answer is used unchecked: the client checks each page's shape, and `_points` the values of a
whole query (`metrics_answers.checked_points`). Any failure fails the cluster-day with one line
naming the cluster, the metric and the day; the chunk turns it into error rows for its topics.
"""

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime

from recommender_pipeline.days import DAY_MS, day_end_ms, day_start_ms, iso_utc, unmeasurable_reason
from recommender_pipeline.errors import ConfluentApiError
from recommender_pipeline.measuring.measurement import Measurement, Method, Status, TopicSpec
from recommender_pipeline.measuring.metrics_answers import checked_points

METHOD = Method.METRICS_API
RETENTION_DAYS = 7  # the Metrics API keeps a week of data
# The Metrics API's granularity for each PEAK_BUCKET_SECONDS; PT1M is refused over a one-day
# interval (6 hours at most), so 60 s falls back to the finest a day allows, and the row says so.
GRANULARITY_FOR = {60: ("PT5M", 300), 300: ("PT5M", 300), 3600: ("PT1H", 3600)}
METRIC_PREFIX = "io.confluent.kafka.server/"
TOPIC, PARTITION = "metric.topic", "metric.partition"


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class _Window:
    """The stretch of the day the queries cover: all of it once closed, else up to a whole minute."""

    start_ms: int
    end_ms: int
    closed: bool

    @property
    def seconds(self) -> float:
        """The window's length: what the average ingress is over."""
        return (self.end_ms - self.start_ms) / 1000


@dataclasses.dataclass(frozen=True)
class _DayTotals:
    """The day's answers summed per topic, so each row is built from lookups alone."""

    buckets: dict[str, dict[str, float]]  # topic: {bucket start: received bytes}
    partition_bytes: dict[str, dict[int, float]]  # topic: {partition: received bytes}
    records: dict[str, float]
    egress: dict[str, float]
    hot_ingress: set[str]  # topics the API flagged with a hot partition
    hot_egress: set[str]


class MetricsDayMeasurer:
    """Measures the topics of one cluster for one UTC day through the Metrics API."""

    def __init__(
        self,
        query: Callable[[dict], list[dict]],
        cluster_id: str,
        day: date,
        log: Callable[[str], None] = lambda _: None,
        peak_bucket_seconds: int = 3600,
    ):
        self.query = query
        self.cluster_id = cluster_id
        self.day = day
        self.log = log
        self.peak_bucket_seconds = peak_bucket_seconds
        self.granularity, self.bucket_seconds = GRANULARITY_FOR[peak_bucket_seconds]
        self.queries = 0  # metric queries sent (each one request, or more when it pages)

    def _points(self, metric: str, granularity: str, group_by: list[str], start_ms: int, end_ms: int) -> list[dict]:
        """A query's points over [start_ms, end_ms), their values checked (each group and time
        once). Any failure, the client's or the checks', is one line naming the cluster, the metric
        and the day: the reason the chunk's error rows carry."""
        interval = f"{_utc(start_ms)}/{_utc(end_ms)}"
        body = {
            "aggregations": [{"metric": METRIC_PREFIX + metric}],
            "filter": {"field": "resource.kafka.id", "op": "EQ", "value": self.cluster_id},
            "granularity": granularity,
            "group_by": group_by,
            "intervals": [interval],
            "limit": 1000,
        }
        self.queries += 1
        try:
            return checked_points(self.query(body), metric, group_by, granularity, start_ms, end_ms)
        except ConfluentApiError as error:
            detail = " ".join(str(error).split())  # one line, whatever a server put in its error text
            raise ConfluentApiError(
                f"Metrics API, cluster {self.cluster_id}, metric {metric}, day {self.day}: {detail}", error.status
            ) from None

    def measure(self, topics: Iterable[TopicSpec]) -> list[Measurement]:
        topics = list(topics)
        measured_at = int(time.time() * 1000)
        start_ms, end_ms = day_start_ms(self.day), day_end_ms(self.day)
        closed = measured_at >= end_ms
        rows = {spec.topic: Measurement.planned(spec, self.day, measured_at, METHOD) for spec in topics}
        reason = _unmeasurable_reason(self.day, start_ms, measured_at)
        if reason:
            for row in rows.values():
                row.status, row.reason = Status.NOT_MEASURABLE, reason
            return list(rows.values())

        # Whole minutes only: the API's points are per minute, and an absolute end keeps tokens valid.
        window = _Window(start_ms, end_ms if closed else measured_at - measured_at % 60_000, closed)
        totals = self._day_totals(window)
        for spec in topics:
            rows[spec.topic] = self._row(rows[spec.topic], spec, totals, window)
        self.log(f"{self.cluster_id} {self.day}: {len(topics)} topics from {self.queries} metric queries")
        return list(rows.values())

    def _day_totals(self, window: _Window) -> _DayTotals:
        """The six queries of the day, sent in this order whatever the topic count, summed per topic."""
        start_ms, end_ms = window.start_ms, window.end_ms
        fine = self._points("received_bytes", self.granularity, [TOPIC], start_ms, end_ms)
        by_partition = self._points("received_bytes", "P1D", [TOPIC, PARTITION], start_ms, end_ms)
        records = self._points("received_records", "P1D", [TOPIC], start_ms, end_ms)
        egress = self._points("sent_bytes", "P1D", [TOPIC], start_ms, end_ms)
        hot_in = self._points("hot_partition_ingress", "PT1H", [TOPIC], start_ms, end_ms)
        hot_out = self._points("hot_partition_egress", "PT1H", [TOPIC], start_ms, end_ms)
        return _DayTotals(
            buckets=_per_topic_bucket(fine),
            partition_bytes=_per_topic_partition(by_partition),
            records=_per_topic(records),
            egress=_per_topic(egress),
            hot_ingress=_flagged(hot_in),
            hot_egress=_flagged(hot_out),
        )

    def _reasons(self, window: _Window) -> list[str]:
        """What every row of the day must say about how the Metrics API measured it."""
        reasons = ["received_bytes counts produce requests on the wire, not only keys, values and headers"]
        if not window.closed:
            reasons.append("day still open: measured up to " + iso_utc(window.end_ms))
        if self.bucket_seconds != self.peak_bucket_seconds:
            reasons.append(
                f"peak over {self.bucket_seconds} s buckets: the Metrics API allows no finer granularity than "
                f"{self.granularity} over a day (PEAK_BUCKET_SECONDS={self.peak_bucket_seconds})"
            )
        return reasons

    def _row(self, row: Measurement, spec: TopicSpec, totals: _DayTotals, window: _Window) -> Measurement:
        """The topic's row from the day's totals: the same fields the record sampler fills."""
        window_seconds = window.seconds
        topic_buckets = totals.buckets.get(spec.topic, {})
        total_bytes = sum(topic_buckets.values())
        count = round(totals.records.get(spec.topic, 0.0))
        per_partition = [totals.partition_bytes[spec.topic].get(p, 0.0) for p in range(spec.partitions)]
        mean_partition = sum(per_partition) / len(per_partition) if per_partition else 0.0
        peak_at = max(topic_buckets, key=topic_buckets.get) if topic_buckets else None
        return dataclasses.replace(
            row,
            status=Status.MEASURED if count > 0 else Status.EMPTY,
            reason="; ".join(self._reasons(window)),
            window_end=iso_utc(window.end_ms),
            window_seconds=window_seconds,
            records=count,
            bytes=round(total_bytes),
            offsets_in_window=count,
            mean_record_bytes=total_bytes / count if count else 0.0,
            avg_ingress_bytes_per_sec=total_bytes / window_seconds if window_seconds else 0.0,
            peak_ingress_bytes_per_sec=topic_buckets[peak_at] / self.bucket_seconds if peak_at else 0.0,
            peak_bucket_start=_same_format_as_sampling(peak_at),
            bucket_seconds=self.bucket_seconds,
            partition_bytes="[" + ",".join(str(round(b)) for b in per_partition) + "]",
            skew=max(per_partition) / mean_partition if mean_partition else 0.0,
            egress_bytes=round(totals.egress.get(spec.topic, 0.0)),
            hot_partition_ingress=spec.topic in totals.hot_ingress,
            hot_partition_egress=spec.topic in totals.hot_egress,
        )


def _unmeasurable_reason(day: date, start_ms: int, measured_at: int) -> str | None:
    """Why the day cannot be measured through the API (its retention first), or None."""
    if start_ms < measured_at - RETENTION_DAYS * DAY_MS:
        return "older than the Metrics API's 7-day retention"
    return unmeasurable_reason(day, measured_at)


def _per_topic_bucket(points: list[dict]) -> dict[str, dict[str, float]]:
    """Bytes per topic and bucket start: the peak is the busiest bucket."""
    buckets: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for point in points:
        buckets[point[TOPIC]][point["timestamp"]] += point["value"]
    return buckets


def _per_topic_partition(points: list[dict]) -> dict[str, dict[int, float]]:
    """Bytes per topic and partition: what skew is computed from."""
    partition_bytes: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for point in points:
        partition_bytes[point[TOPIC]][int(point[PARTITION])] += point["value"]
    return partition_bytes


def _per_topic(points: list[dict]) -> dict[str, float]:
    """A day-long metric summed per topic."""
    totals: dict[str, float] = defaultdict(float)
    for point in points:
        totals[point[TOPIC]] += point["value"]
    return totals


def _flagged(points: list[dict]) -> set[str]:
    """The topics with a non-zero point: a hot-partition flag raised at least once in the day."""
    return {point[TOPIC] for point in points if point["value"]}


def _same_format_as_sampling(timestamp: str | None) -> str | None:
    """The API's "2026-12-01T03:00:00Z" as the record sampler writes it ("...+00:00")."""
    return None if timestamp is None else iso_utc(int(datetime.fromisoformat(timestamp).timestamp() * 1000))
