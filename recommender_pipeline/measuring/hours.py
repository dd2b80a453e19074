"""A topic-day captured hour by hour: what each capture saw of each UTC hour, and how captures merge.

A topic that keeps less than a day (`retention.ms` of hours) loses its morning before the day
closes, so one read after midnight cannot measure it. Captured every hour instead, each hour is
read while it is still in the log, and the day's row is the sum of its best-captured hours.
The same rule keeps a stored day from being downgraded: an hour is only ever replaced by a
capture that saw it at least as completely.

Each capture stores, per hour, its records, its bytes and one state letter (`hours_captured`):

    c  complete: the hour had ended when it was read, and no partition had deleted any of it
    o  open: read while the hour was still running (more may arrive)
    p  partial: some of the hour had been deleted from the log when it was read
    x  lost: all of the hour had been deleted before any capture read it
    -  not read by this capture (before where it started reading, or not begun)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date

from recommender_pipeline.days import HOUR_MS, HOURS_PER_DAY, day_start_ms, iso_utc
from recommender_pipeline.measuring.estimation import day_intervals
from recommender_pipeline.values import stored_flag

COMPLETE, OPEN, PARTIAL, LOST, NOT_READ = "c", "o", "p", "x", "-"
# Which capture of an hour wins: the more completely seen one; a tie of open or partial
# captures goes to the one that counted more records, a tie of complete ones to the newer.
RANK = {NOT_READ: 0, LOST: 1, OPEN: 2, PARTIAL: 2, COMPLETE: 3}
GOOD = {"measured", "empty"}
WORSE = {"not_measurable", "error"}


def hour_states(day_start: int, read_from: int, retained_from: int, measured_at: int, settle_ms: int = 0) -> str:
    """The state of each hour of the day for one capture.

    `read_from`: where this capture started reading (an hour boundary); `retained_from`: the
    time from which every partition still held all its records (the log's deletions end there);
    `settle_ms` (TIMESTAMP_SKEW_SECONDS): how long after an hour ends records stamped in it may
    still be appended, so an hour is complete only once that long has passed, and open until then.
    """
    states = []
    for hour in range(HOURS_PER_DAY):
        start, end = day_start + hour * HOUR_MS, day_start + (hour + 1) * HOUR_MS
        if start < read_from or start >= measured_at:
            states.append(NOT_READ)
        elif retained_from >= end:
            states.append(LOST)
        elif end + settle_ms > measured_at:
            states.append(OPEN)
        elif retained_from > start:
            states.append(PARTIAL)
        else:
            states.append(COMPLETE)
    return "".join(states)


def read_from_ms(stored: dict | None, day_start: int, force: bool = False) -> int | None:
    """Where the next capture of a topic-day should start reading, or None when nothing is left.

    A day stored without hours (the Metrics API, or an older version) is done once it was
    measured after it closed. With hours, the read starts at the first hour that is neither
    complete nor beyond recovery (partly or wholly deleted), so an hourly capture reads only
    what arrived since the last one; a closed day whose hours are all settled is done.
    """
    if force or stored is None or stored.get("status") == "error":
        return day_start
    states = stored.get("hours_captured") or ""
    if len(states) != HOURS_PER_DAY:
        return None if stored_flag(stored.get("day_closed")) else day_start
    for hour, state in enumerate(states):
        if state in (OPEN, NOT_READ):
            return day_start + hour * HOUR_MS
    return None


def merge(stored: dict | None, new: dict) -> dict | None:
    """The row to store when `new` arrives for a key holding `stored`; None keeps `stored`.

    Rows with hours merge hour by hour. Without hours on either side (the Metrics API), the
    whole row is kept or replaced: a measured or empty row is never replaced by one that is not
    measurable, in error, or covers less of the day.
    """
    if stored is None:
        return new
    if len(stored.get("hours_captured") or "") != HOURS_PER_DAY or len(new.get("hours_captured") or "") != (
        HOURS_PER_DAY
    ):
        return None if _downgrade(stored, new) else new
    if new["status"] == "error" or (new["status"] == "not_measurable" and stored["status"] in GOOD):
        return None
    old_states, new_states = stored["hours_captured"], new["hours_captured"]
    old_records, new_records = _hours(stored, "hour_records"), _hours(new, "hour_records")
    old_bytes, new_bytes = _hours(stored, "hour_bytes"), _hours(new, "hour_bytes")
    old_exact, new_exact = stored_flag(stored.get("exact")), stored_flag(new.get("exact"))
    take_new = [
        RANK[b] > RANK[a] or (RANK[a] == RANK[b] and _newer_wins(a, old_exact, new_exact, orc, nr))
        for a, b, orc, nr in zip(old_states, new_states, old_records, new_records, strict=True)
    ]
    if all(take_new):
        return new
    if not any(take_new):
        return None
    merged = dict(new)
    kept = [hour for hour, new_wins in enumerate(take_new) if not new_wins]
    states = "".join(b if t else a for a, b, t in zip(old_states, new_states, take_new, strict=True))
    records = [n if t else o for o, n, t in zip(old_records, new_records, take_new, strict=True)]
    hour_bytes = [n if t else o for o, n, t in zip(old_bytes, new_bytes, take_new, strict=True)]
    fill_day(merged, states, records, hour_bytes)
    _merge_buckets(merged, stored, new, take_new)
    exact = stored_flag(stored.get("exact")) and stored_flag(new.get("exact"))
    merged["exact"] = exact
    merged["estimated"] = stored_flag(stored.get("estimated")) or stored_flag(new.get("estimated"))
    if exact:  # every hour read whole: the day's intervals are its values
        merged["bytes_ci_low"] = merged["bytes_ci_high"] = float(merged["bytes"])
        merged["peak_ci_low"] = merged["peak_ci_high"] = float(merged["peak_ingress_bytes_per_sec"])
    else:
        _merge_intervals(merged, stored, new, take_new)
    _merge_partitions(merged, stored, new, take_new)
    for name in ("late_records", "future_records", "untimestamped_records"):
        merged[name] = max(int(stored.get(name) or 0), int(new.get(name) or 0))
    merged["sampled_records"] = int(stored.get("sampled_records") or 0) + int(new.get("sampled_records") or 0)
    merged["reason"] = "; ".join(
        part
        for part in (new.get("reason"), f"hours {_spans(kept)} UTC from the capture at {stored['measured_at']}")
        if part
    )
    return merged


def _newer_wins(state: str, old_exact: bool, new_exact: bool, old_records: float, new_records: float) -> bool:
    """Between two captures that saw an hour equally completely: an exact count beats an estimate;
    two exact counts of a complete hour differ only when records left the log in between
    (retention, DeleteRecords, compaction), so the larger one, which saw them, stays; two
    estimates of it go to the newer (a re-measure after changing SAMPLING_BATCH_SIZE); an open
    or partial hour goes to the capture that counted more."""
    if state != COMPLETE:
        return new_records > old_records
    if old_exact != new_exact:
        return new_exact
    return new_records >= old_records if new_exact else True


def fill_day(row: dict, states: str, hour_records: Sequence[float], hour_bytes: Sequence[float]) -> None:
    """Sets a row's day totals from its hours: records and bytes are their sums, the peak is the
    busiest hour, and the day is partial when a settled hour was deleted before it was read."""
    row["hours_captured"] = states
    row["hour_records"] = json.dumps([round(value) for value in hour_records])
    row["hour_bytes"] = json.dumps([round(value) for value in hour_bytes])
    records, total = round(sum(hour_records)), round(sum(hour_bytes))
    row["records"], row["bytes"] = records, total
    row["mean_record_bytes"] = total / records if records else 0.0
    row["avg_ingress_bytes_per_sec"] = total / float(row["window_seconds"]) if row["window_seconds"] else 0.0
    peak_hour = max(range(HOURS_PER_DAY), key=lambda hour: hour_bytes[hour])
    row["peak_ingress_bytes_per_sec"] = hour_bytes[peak_hour] / (HOUR_MS / 1000)
    day_start = day_start_ms(_date(row["date"]))
    row["peak_bucket_start"] = iso_utc(day_start + peak_hour * HOUR_MS) if total else None
    row["partial"] = any(state in (PARTIAL, LOST) for state in states) and records > 0
    if records:
        row["status"] = "measured"
    elif row["status"] == "measured":
        row["status"] = "empty"


def fine_peak(buckets: dict[int, int], bucket_seconds: int, day_start: int) -> tuple[float, str | None, str]:
    """The busiest of the day's buckets of `bucket_seconds` ({index: bytes}): its rate, its start,
    and the buckets as the row's `bucket_bytes` JSON."""
    if not buckets:
        return 0.0, None, json.dumps({})
    busiest = max(sorted(buckets), key=lambda index: buckets[index])
    start = iso_utc(day_start + busiest * bucket_seconds * 1000)
    return buckets[busiest] / bucket_seconds, start, json.dumps({str(k): v for k, v in sorted(buckets.items())})


def _merge_buckets(merged: dict, stored: dict, new: dict, take_new: list[bool]) -> None:
    """Fine peak buckets merge like their hours: each from the capture whose hour was kept. When
    either capture lacks them (a sampled day, another width), the merged day keeps the hourly peak."""
    width = new.get("bucket_seconds")
    old_text, new_text = stored.get("bucket_bytes") or "", new.get("bucket_bytes") or ""
    if not old_text or not new_text or stored.get("bucket_seconds") != width or not width or width >= 3600:
        merged["bucket_bytes"], merged["bucket_seconds"] = "", HOUR_MS // 1000
        return
    per_hour = 3600 // int(width)
    chosen = {
        int(index): size
        for source, wins in ((json.loads(old_text), False), (json.loads(new_text), True))
        for index, size in source.items()
        if take_new[int(index) // per_hour] == wins
    }
    day_start = day_start_ms(_date(merged["date"]))
    merged["peak_ingress_bytes_per_sec"], merged["peak_bucket_start"], merged["bucket_bytes"] = fine_peak(
        chosen, int(width), day_start
    )
    if not merged["records"]:
        merged["peak_bucket_start"] = None


SAMPLING_HOURS = ("hour_bytes_variance", "hour_bytes_dof_terms", "hour_offsets", "hour_offset_bytes")


def _merge_intervals(merged: dict, stored: dict, new: dict, take_new: list[bool]) -> None:
    """A sampled day's intervals, and its peak with the sampling noise shrunk away, from each
    hour's numbers of the capture that hour was kept from (`estimation.day_intervals`): hours are
    estimated apart, so their variances add. A capture without them (read whole, or stored by an
    older version) adds none."""
    chosen = {}
    for name in SAMPLING_HOURS:
        old, fresh = _hours(stored, name), _hours(new, name)
        chosen[name] = [n if t else o for o, n, t in zip(old, fresh, take_new, strict=True)]
        merged[name] = json.dumps(chosen[name]) if any(chosen[name]) else ""
    read = [state != NOT_READ for state in merged["hours_captured"]]
    day = day_intervals(_hours(merged, "hour_bytes"), *(chosen[name] for name in SAMPLING_HOURS), hours_read=read)
    merged["bytes_ci_low"], merged["bytes_ci_high"] = day.bytes_low, day.bytes_high
    merged["peak_ci_low"], merged["peak_ci_high"] = day.peak_low, day.peak_high
    if int(merged.get("bucket_seconds") or 3600) >= 3600:  # finer buckets keep their own exact peak
        merged["peak_ingress_bytes_per_sec"] = day.peak
        start = day_start_ms(_date(merged["date"])) + day.peak_hour * HOUR_MS
        merged["peak_bucket_start"] = iso_utc(start) if merged["records"] else None


def _merge_partitions(merged: dict, stored: dict, new: dict, take_new: list[bool]) -> None:
    """Each partition's bytes from the hours kept of each capture, and the skew they give. A row
    from before per-partition hours were stored keeps the fuller capture's partition bytes."""
    old_text, new_text = stored.get("partition_hour_bytes") or "", new.get("partition_hour_bytes") or ""
    old, fresh = (json.loads(old_text) if old_text else []), (json.loads(new_text) if new_text else [])
    if not old or not fresh:
        if float(stored.get("bytes") or 0) > float(new.get("bytes") or 0):
            merged["partition_bytes"], merged["skew"] = stored["partition_bytes"], stored["skew"]
        return
    old += [[0] * HOURS_PER_DAY] * (len(fresh) - len(old))  # partitions added since the older capture
    fresh += [[0] * HOURS_PER_DAY] * (len(old) - len(fresh))
    per_partition = [
        [n if t else o for o, n, t in zip(before, after, take_new, strict=True)]
        for before, after in zip(old, fresh, strict=True)
    ]
    totals = [sum(hours) for hours in per_partition]
    mean = sum(totals) / len(totals) if totals else 0.0
    merged["partition_hour_bytes"] = json.dumps(per_partition)
    merged["partition_bytes"] = json.dumps(totals, separators=(",", ":"))
    merged["skew"] = max(totals) / mean if mean else 0.0


def missing_hours(states: str) -> list[int]:
    """Hours a closed day never had complete: deleted before any capture read them whole."""
    return [hour for hour, state in enumerate(states) if state in (PARTIAL, LOST)]


def _spans(hours: list[int]) -> str:
    """[0, 1, 2, 5] as "00-02, 05"."""
    spans: list[list[int]] = []
    for hour in hours:
        if spans and hour == spans[-1][-1] + 1:
            spans[-1].append(hour)
        else:
            spans.append([hour])
    return ", ".join(f"{s[0]:02d}" if len(s) == 1 else f"{s[0]:02d}-{s[-1]:02d}" for s in spans)


def describe_missing(states: str) -> str:
    """A reason fragment naming the hours never captured whole, or ""."""
    hours = missing_hours(states)
    return f"hours {_spans(hours)} UTC were deleted before they were captured whole" if hours else ""


def _downgrade(stored: dict, new: dict) -> bool:
    if stored.get("status") not in GOOD:
        return False
    return new["status"] in WORSE or float(new.get("window_seconds") or 0) < float(stored.get("window_seconds") or 0)


def _hours(row: dict, name: str) -> list[float]:
    text = row.get(name) or ""
    return json.loads(text) if text else [0.0] * HOURS_PER_DAY


def _date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def pending_reads(stored: Iterable[dict], day: date, topics: Iterable[str], force: bool = False) -> dict[str, int]:
    """The topics of a cluster-day that still need a capture, each with where its read starts.

    `stored` holds the day's stored rows of the cluster. A topic-day that is settled (measured
    after it closed, every hour complete or beyond recovery) costs nothing: re-measuring a day
    reads only what is missing, open or in error, unless `force`.
    """
    by_topic = {row["topic"]: row for row in stored}
    start = day_start_ms(day)
    reads = {topic: read_from_ms(by_topic.get(topic), start, force) for topic in topics}
    return {topic: at for topic, at in reads.items() if at is not None}
