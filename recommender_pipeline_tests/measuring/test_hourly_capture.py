"""Hourly capture of a topic that keeps hours, not days, on the real broker with an injected clock.

The topic holds a whole day, produced up front. Before each capture, DeleteRecords removes what a
7-hour `retention.ms` would have deleted by the capture's (injected) time, so each capture sees
the log as it would be at that hour. The truth is what was produced.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from recommender_pipeline.days import DAY_MS, HOUR_MS, day_start_ms, utc_today
from recommender_pipeline.measuring import estimation, hours
from recommender_pipeline.measuring.measurement import TopicSpec
from recommender_pipeline.measuring.records import DayMeasurer, SamplingLimits
from recommender_pipeline.resources import build_resources
from recommender_pipeline_testing.untidy_logs import wait_until_emptied
from recommender_pipeline_testing.workloads import Record, create_topic, produce

pytestmark = pytest.mark.brokers  # run on every Kafka version of the matrix

RETENTION_MS = 7 * HOUR_MS
PARTITIONS = 2


def day_records(day: date) -> list[Record]:
    """Hour h carries 3 + (7h mod 11) records per partition of 10 + h bytes, evenly spread."""
    records = []
    for hour in range(24):
        count = 3 + (7 * hour) % 11
        for i in range(count):
            at = day_start_ms(day) + hour * HOUR_MS + i * (HOUR_MS // count)
            records += [Record(at, b"v" * (10 + hour), partition=p) for p in range(PARTITIONS)]
    return records


class Capturer:
    """Captures one topic-day as the hourly schedule would: the store says where to read from."""

    def __init__(self, bootstrap: str, topic: str, day: date, records: list[Record], store):
        self.bootstrap, self.topic, self.day, self.records, self.store = bootstrap, topic, day, records, store
        self.spec = TopicSpec("local", topic, PARTITIONS, RETENTION_MS, False)
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def age_out(self, now_ms: int) -> None:
        """Deletes what retention would have deleted by `now_ms` (records are in time order)."""
        cutoff = now_ms - RETENTION_MS
        offsets = [
            TopicPartition(self.topic, p, sum(1 for r in self.records if r.partition == p and r.timestamp_ms < cutoff))
            for p in range(PARTITIONS)
        ]
        if any(tp.offset for tp in offsets):
            for future in self.admin.delete_records(offsets, operation_timeout=30).values():
                future.result()

    def capture(self, now_ms: int) -> dict | None:
        self.age_out(now_ms)
        stored = self.store.read_measurements(self.day.isoformat(), self.day.isoformat()).to_dict("records")
        reads = hours.pending_reads(stored, self.day, [self.topic])
        if not reads:
            return None
        consumer_config = {"bootstrap.servers": self.bootstrap, "group.id": "capture", "enable.auto.commit": False}
        measurer = DayMeasurer(
            self.admin,
            lambda overrides: Consumer({**consumer_config, **overrides}),
            self.day,
            SamplingLimits(None, 1.0, 20),
            clock=lambda: now_ms / 1000,
        )
        self.store.write_measurements(measurer.measure([self.spec], reads))
        return self.store.read_measurements(self.day.isoformat(), self.day.isoformat()).iloc[0].to_dict()


@pytest.fixture
def store(configure, tmp_path: Path):
    configure()
    return build_resources(str(tmp_path / "no.env"))["store"]


def produced(kafka_bootstrap: str, prefix: str, name: str) -> tuple[str, date, list[Record]]:
    topic = f"{prefix}.{name}"
    day = utc_today() - timedelta(days=3)
    records = day_records(day)
    create_topic(kafka_bootstrap, topic, PARTITIONS)
    produce(kafka_bootstrap, topic, records)
    return topic, day, records


def test_hourly_captures_measure_a_7_hour_retention_topic_whole(kafka_bootstrap, prefix, store):
    topic, day, records = produced(kafka_bootstrap, prefix, "hourly")
    start = day_start_ms(day)
    capturer = Capturer(kafka_bootstrap, topic, day, records, store)
    row = None
    for hour in (6, 12, 18):
        row = capturer.capture(start + hour * HOUR_MS + 30 * 60_000)
        assert row is not None and row["hours_captured"] == "c" * hour + "o" + "-" * (23 - hour)
    row = capturer.capture(start + DAY_MS + 30 * 60_000)  # the day closed at midnight
    truth_bytes = [sum(r.size for r in records if (r.timestamp_ms - start) // HOUR_MS == h) for h in range(24)]
    assert row is not None and row["hours_captured"] == "c" * 24
    assert (row["records"], row["bytes"]) == (len(records), sum(truth_bytes))
    assert row["peak_ingress_bytes_per_sec"] == pytest.approx(max(truth_bytes) / 3600, rel=1e-12)
    assert (row["status"], bool(row["partial"]), bool(row["exact"]), bool(row["day_closed"])) == (
        "measured",
        False,
        True,
        True,
    )
    # Settled: the next capture, like the 00:30 daily run, reads nothing more.
    assert capturer.capture(start + DAY_MS + 90 * 60_000) is None


def test_one_read_after_the_day_closed_says_which_hours_retention_took(kafka_bootstrap, prefix, store):
    topic, day, records = produced(kafka_bootstrap, prefix, "daily")
    start = day_start_ms(day)
    now = start + DAY_MS + 30 * 60_000
    row = Capturer(kafka_bootstrap, topic, day, records, store).capture(now)
    kept = [r for r in records if r.timestamp_ms >= now - RETENTION_MS]
    assert row is not None and row["hours_captured"] == "x" * 17 + "p" + "c" * 6
    assert (row["records"], row["bytes"]) == (len(kept), sum(r.size for r in kept))
    assert bool(row["partial"]) is True
    assert "hours 00-17 UTC were deleted before they were captured whole" in row["reason"]


def capture(
    kafka_bootstrap: str,
    store,
    spec: TopicSpec,
    day: date,
    now_ms: int,
    skew_seconds: int = 900,
    budget: int | None = None,
) -> dict:
    """One capture at `now_ms` of what the store says is left to read, merged into the store."""
    stored = store.read_measurements(day.isoformat(), day.isoformat()).to_dict("records")
    reads = hours.pending_reads(stored, day, [spec.topic])
    consumer_config = {"bootstrap.servers": kafka_bootstrap, "group.id": "capture", "enable.auto.commit": False}
    measurer = DayMeasurer(
        AdminClient({"bootstrap.servers": kafka_bootstrap}),
        lambda overrides: Consumer({**consumer_config, "isolation.level": "read_committed", **overrides}),
        day,
        SamplingLimits(budget, 1.0, 20, skew_ms=skew_seconds * 1000),
        clock=lambda: now_ms / 1000,
    )
    store.write_measurements(measurer.measure([spec], reads))
    return store.read_measurements(day.isoformat(), day.isoformat()).iloc[0].to_dict()


def hour_truth(records: list[Record], start: int) -> tuple[list[int], list[int]]:
    counts, sizes = [0] * 24, [0] * 24
    for record in records:
        hour = (record.timestamp_ms - start) // HOUR_MS
        if 0 <= hour < 24:
            counts[hour] += 1
            sizes[hour] += record.size
    return counts, sizes


def test_an_idle_partition_emptied_by_retention_does_not_break_the_hourly_capture(kafka_bootstrap, prefix, store):
    """Partition 2 held only records stamped 9 days ago, which retention deleted (log start = log
    end > 0); partitions 0 and 1 carry the day. Three captures during the day and one after it
    store every hour whole, as for the same topic without the idle partition."""
    topic, day = f"{prefix}.idle", utc_today() - timedelta(days=3)
    create_topic(kafka_bootstrap, topic, 3, {"retention.ms": str(7 * DAY_MS)})
    produce(
        kafka_bootstrap, topic, [Record(day_start_ms(day) - 6 * DAY_MS + i, b"old", partition=2) for i in range(20)]
    )
    records = [replace(r, partition=r.partition % 2) for r in day_records(day)]
    produce(kafka_bootstrap, topic, records)
    wait_until_emptied(kafka_bootstrap, [topic], lambda tp: tp.partition == 2)
    spec = TopicSpec("local", topic, 3, 7 * DAY_MS, False)
    start = day_start_ms(day)
    counts, sizes = hour_truth(records, start)
    for hour in (7, 13, 19):
        row = capture(kafka_bootstrap, store, spec, day, start + hour * HOUR_MS + 30 * 60_000)
        assert json.loads(row["hour_records"])[:hour] == counts[:hour]
        assert row["hours_captured"] == "c" * hour + "o" + "-" * (23 - hour)
    row = capture(kafka_bootstrap, store, spec, day, start + DAY_MS + 30 * 60_000)
    assert row["hours_captured"] == "c" * 24
    assert json.loads(row["hour_records"]) == counts
    assert (row["records"], row["bytes"], bool(row["exact"]), bool(row["partial"])) == (
        sum(counts),
        sum(sizes),
        True,
        False,
    )


def test_an_hour_is_settled_only_after_the_skew_bound_so_records_appended_late_count(kafka_bootstrap, prefix, store):
    """A producer 10 minutes late: hour 07's last records arrive after 08:05. With
    TIMESTAMP_SKEW_SECONDS=900 the 08:05 capture leaves hour 07 open and the 09:05 one reads them."""
    topic, day = f"{prefix}.late", utc_today() - timedelta(days=3)
    create_topic(kafka_bootstrap, topic, 1)
    start = day_start_ms(day)
    records = [Record(start + 7 * HOUR_MS + i * 3_400, b"x" * (10 + i % 7)) for i in range(1_059)]
    on_time = [r for r in records if r.timestamp_ms < start + 7 * HOUR_MS + 55 * 60_000]
    produce(kafka_bootstrap, topic, on_time)
    spec = TopicSpec("local", topic, 1, 7 * DAY_MS, False)
    first = capture(kafka_bootstrap, store, spec, day, start + 8 * HOUR_MS + 5 * 60_000)
    assert first["hours_captured"][7] == "o"
    produce(kafka_bootstrap, topic, records[len(on_time) :])  # appended 08:05-08:10
    second = capture(kafka_bootstrap, store, spec, day, start + 9 * HOUR_MS + 5 * 60_000)
    assert second["hours_captured"][:9] == "c" * 8 + "o"  # hour 08 settles at 09:15
    assert json.loads(second["hour_records"])[7] == len(records) == 1_059
    assert second["bytes"] == sum(r.size for r in records)


def test_a_day_merged_from_captures_keeps_the_whole_days_intervals_and_partition_bytes(kafka_bootstrap, prefix, store):
    """Captured at 06:30, 12:30 and 18:30 and after midnight, every record read: the merged day is
    exact, so its intervals are its values, and its bytes per partition cover every hour."""
    topic, records = produced(kafka_bootstrap, prefix, "merged")[0::2]
    day = utc_today() - timedelta(days=3)
    spec = TopicSpec("local", topic, PARTITIONS, 7 * DAY_MS, False)
    start = day_start_ms(day)
    for now in (6, 12, 18, 24):
        row = capture(kafka_bootstrap, store, spec, day, start + now * HOUR_MS + 30 * 60_000)
    total = sum(r.size for r in records)
    per_partition = [sum(r.size for r in records if r.partition == p) for p in range(PARTITIONS)]
    peak = max(hour_truth(records, start)[1]) / 3600
    assert (bool(row["exact"]), row["bytes"]) == (True, total)
    assert (row["bytes_ci_low"], row["bytes_ci_high"]) == (total, total)
    assert (row["peak_ci_low"], row["peak_ci_high"]) == pytest.approx((peak, peak), rel=1e-12)
    assert json.loads(row["partition_bytes"]) == per_partition
    assert row["skew"] == pytest.approx(max(per_partition) / (total / PARTITIONS), rel=1e-12)


def test_a_sampled_day_merged_from_captures_recomputes_its_intervals_from_its_hours(
    kafka_bootstrap, prefix, store, monkeypatch
):
    """Each capture samples what it reads (a budget far below the day); the merged day's bytes
    and peak intervals come from the kept hours' own numbers and hold the truth."""
    monkeypatch.setattr(estimation, "RECORDS_PER_ROUND_TRIP", 0)  # sample days this small anyway
    topic, day = f"{prefix}.sampled", utc_today() - timedelta(days=3)
    create_topic(kafka_bootstrap, topic, 1)
    start = day_start_ms(day)
    records = [Record(start + i * 4_320, b"x" * (40 + (i * 7919) % 200)) for i in range(20_000)]
    produce(kafka_bootstrap, topic, records)
    spec = TopicSpec("local", topic, 1, 7 * DAY_MS, False)
    rows = [
        capture(kafka_bootstrap, store, spec, day, start + now * HOUR_MS + 30 * 60_000, budget=1_000)
        for now in (12, 24)
    ]
    first, merged = rows
    assert bool(first["estimated"]) and first["hours_captured"] == "c" * 12 + "o" + "-" * 11
    assert merged["hours_captured"] == "c" * 24 and bool(merged["exact"]) is False
    total = sum(r.size for r in records)
    assert merged["bytes_ci_low"] <= total <= merged["bytes_ci_high"]
    assert merged["bytes_ci_high"] - merged["bytes_ci_low"] < 0.1 * total
    peak = max(hour_truth(records, start)[1]) / 3600
    assert merged["peak_ci_low"] <= peak <= merged["peak_ci_high"]
    assert merged["peak_ingress_bytes_per_sec"] == pytest.approx(peak, rel=0.05)
