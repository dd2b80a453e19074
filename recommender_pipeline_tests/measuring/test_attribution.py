"""Which UTC day and hour a record belongs to, on production-shaped logs on the real broker.

The `attribution` dataset keeps every topic's log as it was produced; `LogDataset.expect` applies
the measuring rules to it (see known_truth.py), and the pipeline's rows must agree. A few numbers
are also spelled out by hand, so the truth model itself is pinned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from recommender_pipeline.days import day_start_ms, iso_utc
from recommender_pipeline.measuring import estimation
from recommender_pipeline_testing.known_truth import Expected, LogDataset, in_interval, read_log
from recommender_pipeline_testing.pipeline import Pipeline, apply_configuration

Rows = dict[tuple[date, str], pd.Series]

pytestmark = pytest.mark.brokers  # run on every Kafka version of the matrix


def run_pipeline(bootstrap: str, tmp_path: Path, days: list[date], **variables: object) -> Rows:
    """Inventory and measurement of `days` through Dagster on a fresh instance; the stored rows by
    (day, topic). The sampler draws the same blocks for the same partitions whatever the topic's
    name, so a 95 % interval that missed its truth would fail every time, not one run in twenty."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as monkeypatch, dg.instance_for_test(temp_dir=str(home)) as instance:
        apply_configuration(monkeypatch, bootstrap, tmp_path, **variables)
        # The known-truth days are small enough that reading them whole is cheaper than sampling;
        # with SAMPLING_BATCH_SIZE set, sample them anyway.
        monkeypatch.setattr(estimation, "RECORDS_PER_ROUND_TRIP", 0)
        pipeline = Pipeline(instance, tmp_path)
        assert pipeline.inventory().success
        failed_runs = [day for day in days if not pipeline.measure(day).success]
        stored = pipeline.store.read_measurements(min(days).isoformat(), max(days).isoformat())
    rows = {(date.fromisoformat(str(row["date"])[:10]), row["topic"]): row for _, row in stored.iterrows()}
    errors = {key: row["reason"] for key, row in rows.items() if row["status"] == "error"}
    assert not errors and not failed_runs, f"measurement failed on {failed_runs}: {errors}"
    return rows


@pytest.fixture(scope="module")
def exact(attribution: LogDataset, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Rows:
    """Every attribution topic on D-3 .. today, every record read."""
    return run_pipeline(
        kafka_bootstrap,
        tmp_path_factory.mktemp("exact"),
        attribution.days,
        TOPIC_FILTER=attribution.prefix,
        SAMPLING_DAYS=4,
        SAMPLING_BATCH_SIZE="",
    )


@pytest.fixture(scope="module")
def sampled(attribution: LogDataset, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Rows:
    """The big D-1 topics with SAMPLING_BATCH_SIZE=2000 (their partition-days span 6,000-16,000 offsets)."""
    return run_pipeline(
        kafka_bootstrap,
        tmp_path_factory.mktemp("sampled"),
        [attribution.days[2]],
        TOPIC_FILTER=",".join(attribution.topic(name) for name in ("bulk", "varsize", "tombstones")),
        SAMPLING_BATCH_SIZE=2000,
    )


def mismatches(row: pd.Series, truth: Expected, day: date, *, sampled: bool = False) -> Iterator[str]:
    """How a stored row differs from what the rules make of the log."""
    exact = not sampled and truth.exact
    wanted = {"status": truth.status, "partial": truth.partial, "exact": exact}
    if not sampled:
        wanted |= {"records": truth.records, "bytes": truth.bytes, "late_records": truth.late}
    for column, value in wanted.items():
        got = bool(row[column]) if isinstance(value, bool) else row[column]
        if got != value:
            yield f"{column} {got!r} != {value!r}"
    if sampled:
        return
    if truth.status != "measured":  # nothing counted: nothing in any partition, no peak
        if any(json.loads(row["partition_bytes"])) or row["peak_ingress_bytes_per_sec"] != 0:
            yield f"a {truth.status} day shows {row['partition_bytes']}, peak {row['peak_ingress_bytes_per_sec']}"
        return
    if json.loads(row["partition_bytes"]) != truth.partition_bytes:
        yield f"partition_bytes {row['partition_bytes']} != {truth.partition_bytes}"
    if row["peak_ingress_bytes_per_sec"] != pytest.approx(truth.peak_bytes_per_sec, rel=1e-12):
        yield f"peak_ingress_bytes_per_sec {row['peak_ingress_bytes_per_sec']} != {truth.peak_bytes_per_sec}"
    peak_start = None if truth.peak_hour is None else iso_utc(day_start_ms(day) + truth.peak_hour * 3_600_000)
    if peak_start and row["peak_bucket_start"] != peak_start:
        yield f"peak_bucket_start {row['peak_bucket_start']} is not hour {truth.peak_hour}"
    intervals = [row[column] for column in ("bytes_ci_low", "bytes_ci_high", "peak_ci_low", "peak_ci_high")]
    values = [truth.bytes, truth.bytes, truth.peak_bytes_per_sec, truth.peak_bytes_per_sec]
    if exact and intervals != pytest.approx(values, rel=1e-12):
        yield f"exact row's intervals {intervals} are not its values {values}"


def test_the_broker_holds_the_logs_the_truth_is_computed_from(attribution, kafka_bootstrap):
    """The producers did what the truth assumes: a plain read_committed consumer receives exactly
    the committed, retained records, with their timestamps (append times on LogAppendTime topics)."""
    for topic, partitions in attribution.logs.items():
        received = read_log(kafka_bootstrap, topic, len(partitions))
        for p, entries in enumerate(partitions):
            kept = [e.record for e in entries[attribution.deleted[topic][p] :] if e.committed]
            assert [r.size for r in received[p]] == [r.size for r in kept], f"{topic}[{p}]"
            if topic in attribution.append_windows:
                first, last = attribution.append_windows[topic]
                assert all(first - 1000 <= r.timestamp_ms <= last + 1000 for r in received[p])
            else:
                assert [r.timestamp_ms for r in received[p]] == [r.timestamp_ms for r in kept], f"{topic}[{p}]"


def test_every_topic_day_follows_the_attribution_rules(attribution, exact):
    """Every topic on every day: status, records, bytes, late records, partial/exact, hourly peak,
    bytes per partition and (exact rows) intervals equal to the values."""
    problems = [
        f"{name} {day}: {problem}"
        for name in attribution.names
        for day in attribution.days
        for problem in mismatches(exact[(day, attribution.topic(name))], attribution.expect(name, day), day)
    ]
    assert not problems, "\n".join(problems)


def test_exactly_once_events_days_late_count_on_their_own_days(attribution, exact):
    """600 committed of 800 records stamped over D-3..D-1, produced now in transactions whose
    markers carry today's clock: the markers end no day early, aborted records count nowhere."""
    d3, d2, d1, d0 = attribution.days
    counted = 0
    for day in (d3, d2, d1):
        row, truth = exact[(day, attribution.topic("eos"))], attribution.expect("eos", day)
        assert (row["status"], bool(row["exact"])) == ("measured", True)
        assert (row["records"], row["bytes"], row["late_records"]) == (truth.records, truth.bytes, 0)
        assert row["peak_ingress_bytes_per_sec"] == pytest.approx(truth.peak_bytes_per_sec, rel=1e-12)
        assert 150 < truth.records < 250
        counted += row["records"]
    assert counted == 600
    today = exact[(d0, attribution.topic("eos"))]
    assert (today["status"], today["records"]) == ("empty", 0)  # only transaction markers today


def test_records_out_of_order_across_midnight_count_on_their_timestamps_day(attribution, exact):
    _, d2, d1, _ = attribution.days
    before = exact[(d2, attribution.topic("midnight"))]
    # 120 x 100 B on 08:00-20:00, plus the 50 x 80 B stamped 23:58-23:59:58 and the 500 B stamped
    # 12:00, all appended after D-1 began (the last one after D-1 00:15): late, but D-2's.
    assert (before["records"], before["bytes"], before["late_records"]) == (171, 16_500, 51)
    assert before["peak_ingress_bytes_per_sec"] == pytest.approx(4000 / 3600, rel=1e-12)
    assert before["peak_bucket_start"] == iso_utc(day_start_ms(d2) + 23 * 3_600_000)
    after = exact[(d1, attribution.topic("midnight"))]
    assert (after["records"], after["bytes"], after["late_records"]) == (370, 370 * 50, 0)
    assert after["peak_ingress_bytes_per_sec"] == pytest.approx(140 * 50 / 3600, rel=1e-12)  # 00:00-01:00
    assert exact[(attribution.today, attribution.topic("midnight"))]["records"] == 0


def test_log_append_time_topics_count_on_the_day_the_broker_stamped(attribution, exact):
    """Records sent with CreateTimes on D-2 and D-1 to a LogAppendTime topic belong to today."""
    _, d2, d1, d0 = attribution.days
    topic = attribution.topic("logappend")
    row, truth = exact[(d0, topic)], attribution.expect("logappend", d0)
    assert (row["status"], row["records"], row["bytes"]) == ("measured", 200, truth.bytes)
    first, _ = attribution.append_windows[topic]
    assert row["peak_bucket_start"] == iso_utc(first - first % 3_600_000)
    for day in (d2, d1):
        assert (exact[(day, topic)]["status"], exact[(day, topic)]["records"]) == ("empty", 0)


def test_deleted_log_head_makes_lost_days_not_measurable_and_the_cut_day_partial(attribution, exact):
    """DeleteRecords removed D-2's 100 records and D-1's first 40."""
    d3, d2, d1, d0 = attribution.days
    topic = attribution.topic("truncated")
    for day in (d3, d2):
        lost = exact[(day, topic)]
        assert (lost["status"], lost["records"], bool(lost["exact"])) == ("not_measurable", 0, False)
        assert "lost the day" in lost["reason"]
    cut = exact[(d1, topic)]
    assert (cut["status"], cut["records"], cut["bytes"]) == ("measured", 60, 60 * 40)
    assert (bool(cut["partial"]), bool(cut["exact"])) == (True, False)
    assert exact[(d0, topic)]["status"] == "empty"  # what remains began before today: nothing was lost


def test_random_sizes_headers_and_aborted_transactions_are_counted_exactly(attribution, exact):
    d1 = attribution.days[2]
    row, truth = exact[(d1, attribution.topic("varsize"))], attribution.expect("varsize", d1)
    assert (row["records"], row["bytes"]) == (truth.records, truth.bytes) == (30_000, truth.bytes)
    assert json.loads(row["partition_bytes"]) == truth.partition_bytes
    assert row["peak_ingress_bytes_per_sec"] == pytest.approx(truth.peak_bytes_per_sec, rel=1e-12)
    assert row["peak_bucket_start"] == iso_utc(day_start_ms(d1) + 18 * 3_600_000)
    assert bool(row["exact"]) is True
    assert (row["bytes_ci_low"], row["bytes_ci_high"]) == (truth.bytes, truth.bytes)


def test_sampled_day_is_within_one_percent_and_its_intervals_hold_the_truth(attribution, sampled):
    """bulk: 30,000 records of random sizes and headers, bursty hours, 3 uneven partitions, an
    aborted transaction at the day's end; about 2,000 of each partition's 6,000-15,000 are read."""
    d1 = attribution.days[2]
    row, truth = sampled[(d1, attribution.topic("bulk"))], attribution.expect("bulk", d1)
    assert list(mismatches(row, truth, d1, sampled=True)) == []  # measured, estimated, not partial
    assert "estimated" in row["reason"]
    assert 3 * 1000 < row["sampled_records"] < 3 * 3000
    assert row["records"] == pytest.approx(truth.records, rel=0.01)
    assert row["bytes"] == pytest.approx(truth.bytes, rel=0.01)
    assert in_interval(row, "bytes", truth.bytes)
    assert row["bytes_ci_low"] < row["bytes"] < row["bytes_ci_high"]
    assert in_interval(row, "peak", truth.peak_bytes_per_sec)
    assert row["peak_bucket_start"] == iso_utc(day_start_ms(d1) + 18 * 3_600_000)


def test_a_day_amid_late_stamped_markers_is_sampled_to_its_real_end(attribution, sampled):
    """varsize's transaction markers carry today's clock amid D-1's records, so the broker's
    offset for D-1's end + skew is no bound: probing the records and bisecting finds the day's
    real end, and the day is sampled within its budget, never cut at a marker nor read whole."""
    d1 = attribution.days[2]
    row, truth = sampled[(d1, attribution.topic("varsize"))], attribution.expect("varsize", d1)
    assert bool(row["exact"]) is False
    assert row["sampled_records"] < truth.records / 2
    assert row["offsets_in_window"] >= truth.records
    assert row["records"] == pytest.approx(truth.records, rel=0.02)
    assert in_interval(row, "bytes", truth.bytes)


def test_sampled_compacted_day_with_tombstones_holds_the_truth_in_its_interval(attribution, sampled):
    """tombstones: 3,918 records (some null values) left by compaction of 16,000 offsets."""
    d1 = attribution.days[2]
    row, truth = sampled[(d1, attribution.topic("tombstones"))], attribution.expect("tombstones", d1)
    assert list(mismatches(row, truth, d1, sampled=True)) == []
    assert in_interval(row, "bytes", truth.bytes)
    assert in_interval(row, "peak", truth.peak_bytes_per_sec)
    # The budget counts offsets: compaction gaps leave about a quarter of them as records to read.
    assert row["records"] == pytest.approx(truth.records, rel=0.10)
    assert row["bytes"] == pytest.approx(truth.bytes, rel=0.10)
