"""The block-sampling estimator and the attribution rules on simulated logs: no broker needed.

Two kinds of simulated log. `simulated_log` is a list of offsets, each a data record (timestamp,
size) or a gap (a marker, an aborted record, a compacted-away record), read block by block as the
reader would. `SimulatedDay` is the same kind of day held as cumulative sums over offsets, so that
a hundred and more sampled days cost about a second: the statistical tests use it. Either way the truth is
summed from the whole log, and the estimator sees only the blocks it asks for, tallied by record
timestamp, with hour edges where the broker's time index would put them (the first record stamped
at or after each hour).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest

from recommender_pipeline.days import HOUR_MS, HOURS_PER_DAY
from recommender_pipeline.measuring import estimation
from recommender_pipeline.measuring.attribution import DayTally, LogBounds, Retention, day_retention

DAY_START = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000
Log = list[tuple[int, int] | None]  # (timestamp, size) per offset, None for a gap


def simulated_log(rng: random.Random, records: int, aborted_share: float, compacted_share: float) -> Log:
    """A day of records with a busy afternoon, variable sizes, aborted transactions of 10-50
    records between commit markers, and compaction holes."""
    log: Log = []
    weights = [1 + (2 if 13 <= h <= 17 else 0) for h in range(24)]
    hours = rng.choices(range(24), weights=weights, k=records)
    hours.sort()
    index = 0
    while index < records:
        size = rng.randint(10, 50)
        aborted = rng.random() < aborted_share
        for _ in range(size):
            if index >= records:
                break
            timestamp = DAY_START + hours[index] * HOUR_MS + rng.randrange(HOUR_MS)
            if aborted or rng.random() < compacted_share:
                log.append(None)
            else:
                log.append((timestamp, rng.randint(50, 600)))
            index += 1
        log.append(None)  # the transaction's marker
    return log


def truth(log: Log) -> DayTally:
    tally = DayTally(DAY_START)
    for entry in log:
        if entry is not None:
            tally.add(*entry)
    return tally


def hour_edges(log: Log) -> list[int]:
    """Offsets where each hour starts, as the broker's time index would answer, then the end twice
    (no skew tail in these logs)."""
    edges = [0]
    for hour in range(1, 24):
        bound = DAY_START + hour * HOUR_MS
        edges.append(next((i for i, e in enumerate(log) if e is not None and e[0] >= bound), len(log)))
    return [*edges, len(log), len(log)]


def sampled_estimate(log: Log, budget: int, seed: int):
    strata, blocks = estimation.plan_blocks(hour_edges(log), budget, random.Random(seed))
    tallies = []
    for block in blocks:
        tally = DayTally(DAY_START)
        for entry in log[block.start : block.end]:
            if entry is not None:
                tally.add(*entry)
        tallies.append(tally)
    read = sum(t.records for t in tallies)
    return estimation.estimate(strata, blocks, tallies), read


# A daily cycle: quietest at 03:00, busiest at 15:00 (2.5 times the night), its neighbours close behind.
DAILY_CYCLE = 1.0 + 0.75 * (1 + np.cos(2 * np.pi * (np.arange(HOURS_PER_DAY) - 15) / HOURS_PER_DAY))


@dataclass
class SimulatedDay:
    """A partition-day as cumulative sums over offsets: its records in hour order, in transactions
    of 10-50 records each followed by its commit marker, some aborted, some compacted away; then a
    skew tail of the next day's records holding a few late records of hour 23."""

    bytes_cum: np.ndarray
    records_cum: np.ndarray
    late_bytes_cum: np.ndarray
    late_cum: np.ndarray
    starts: np.ndarray  # first offset of each hour's records, and (24) of the next day's
    stop: int
    hour_bytes: np.ndarray  # the truth

    @classmethod
    def simulate(
        cls,
        rng: np.random.Generator,
        records: int,
        sizes: str = "lognormal",
        aborted_share: float = 0.05,
        compacted_share: float = 0.05,
        hour_factors: np.ndarray | None = None,
    ) -> SimulatedDay:
        lengths = rng.integers(10, 51, size=records // 10 + 10)
        count = int(np.searchsorted(np.cumsum(lengths), records)) + 1
        lengths = lengths[:count]
        lengths[-1] -= int(lengths.sum()) - records
        transaction = np.repeat(np.arange(count), lengths)
        data = ~(rng.random(count) < aborted_share)[transaction] & (rng.random(records) >= compacted_share)
        hour = np.repeat(np.arange(HOURS_PER_DAY), rng.multinomial(records, DAILY_CYCLE / DAILY_CYCLE.sum()))
        size = _sizes(rng, sizes, records) * (1.0 if hour_factors is None else hour_factors[hour])
        size = np.where(data, np.round(size), 0).astype(np.int64)
        offset = np.arange(records) + transaction  # each transaction's marker follows its last record
        day_end = records + count
        total = day_end + records // 100
        bytes_at, records_at = np.zeros(total, dtype=np.int64), np.zeros(total, dtype=np.int64)
        bytes_at[offset], records_at[offset] = size, data
        late = np.zeros(total, dtype=np.int64)
        late[day_end:] = rng.random(total - day_end) < 0.02
        late_bytes = np.where(late > 0, _sizes(rng, sizes, total), 0).astype(np.int64)
        data_offsets, first = offset[data], np.searchsorted(hour[data], np.arange(HOURS_PER_DAY))
        starts = np.full(HOURS_PER_DAY + 1, day_end)
        found = first < len(data_offsets)
        starts[:HOURS_PER_DAY][found] = data_offsets[first[found]]
        starts[0] = 0
        hour_bytes = np.bincount(hour, weights=size, minlength=HOURS_PER_DAY)
        hour_bytes[-1] += late_bytes.sum()
        sums = [np.concatenate([[0], np.cumsum(values)]) for values in (bytes_at, records_at, late_bytes, late)]
        return cls(*sums, starts, total, hour_bytes)

    @property
    def edges(self) -> list[int]:
        """As records.py builds them: the first offset, the broker's 23 hour answers, the day's end, the stop."""
        return [0, *(int(start) for start in self.starts[1:]), self.stop]

    def sample(self, budget: int, seed: int) -> estimation.Estimate:
        strata, blocks = estimation.plan_blocks(self.edges, budget, random.Random(seed))
        starts, ends = np.array([b.start for b in blocks]), np.array([b.end for b in blocks])
        low, high = (
            np.clip(starts[:, None], self.starts[:-1], self.starts[1:]),
            np.clip(ends[:, None], self.starts[:-1], self.starts[1:]),
        )
        hour_bytes, hour_records = (
            self.bytes_cum[high] - self.bytes_cum[low],
            self.records_cum[high] - self.records_cum[low],
        )
        tail_low, tail_high = np.maximum(starts, self.starts[-1]), np.maximum(ends, self.starts[-1])
        late = self.late_cum[tail_high] - self.late_cum[tail_low]
        hour_bytes[:, -1] += self.late_bytes_cum[tail_high] - self.late_bytes_cum[tail_low]
        hour_records[:, -1] += late
        tallies = [
            DayTally(DAY_START, int(r.sum()), int(b.sum()), int(n), b.tolist(), r.tolist())
            for b, r, n in zip(hour_bytes, hour_records, late, strict=True)
        ]
        return estimation.estimate(strata, blocks, tallies)


def _sizes(rng: np.random.Generator, kind: str, count: int) -> np.ndarray:
    if kind == "uniform":
        return rng.integers(50, 601, size=count).astype(float)
    return np.maximum(np.round(np.exp(rng.normal(math.log(200), 1.0, size=count))), 1.0)


@dataclass
class Trials:
    """Sampled days against their truth, as relative errors, over seeds."""

    peak_errors: np.ndarray
    peak_widths: np.ndarray  # interval width / true peak
    peak_covered: np.ndarray
    bytes_errors: np.ndarray
    bytes_covered: np.ndarray

    @property
    def spread(self) -> float:
        """The peak estimate's real spread: the standard deviation of its relative error across seeds."""
        return float(self.peak_errors.std(ddof=1))

    @property
    def width_ratio(self) -> float:
        """The mean interval width over that of a normal 95 % interval of the real spread."""
        return float(self.peak_widths.mean() / (2 * 1.96 * self.spread))


def sampled_days(
    seeds: int,
    records: int,
    budget: int,
    sizes: str = "lognormal",
    hour_factors: np.ndarray | None = None,
    log_seed: int = 7,
) -> Trials:
    """`seeds` trials, each sampling one of `seeds // 4` simulated days with its own seed."""
    rng = np.random.default_rng(log_seed)
    days = [SimulatedDay.simulate(rng, records, sizes, hour_factors=hour_factors) for _ in range(seeds // 4)]
    rows = []
    for seed in range(seeds):
        day = days[seed % len(days)]
        found = day.sample(budget, seed).intervals()
        true_peak, true_bytes = day.hour_bytes.max() / 3600, day.hour_bytes.sum()
        rows.append(
            (
                found.peak / true_peak - 1,
                (found.peak_high - found.peak_low) / true_peak,
                found.peak_low <= true_peak <= found.peak_high,
                found.bytes / true_bytes - 1,
                found.bytes_low <= true_bytes <= found.bytes_high,
            )
        )
    columns = np.array(rows, dtype=float).T
    return Trials(columns[0], columns[1], columns[2] > 0, columns[3], columns[4] > 0)


@pytest.mark.parametrize("budget", [500, 48])  # 48: most hours too small to be sure of a block
def test_constant_density_and_size_gives_exact_totals(budget):
    log: Log = [(DAY_START + i * 8_640, 100) for i in range(10_000)]  # one record every 8.64 s, 100 B
    result, read = sampled_estimate(log, budget=budget, seed=1)
    expected = truth(log)
    assert read < 10_000 * 0.1
    assert result.records == pytest.approx(10_000, rel=1e-9)
    assert result.bytes == pytest.approx(1_000_000, rel=1e-9)
    # Each hour is its own post-stratum: exact too, with nothing left to doubt.
    assert list(result.hour_bytes) == pytest.approx(expected.hour_bytes, rel=1e-9)
    assert not result.hour_variances.any()
    _, peak, low, high = result.peak()
    assert peak == pytest.approx(max(expected.hour_bytes) / 3600, rel=1e-9)
    assert low == pytest.approx(peak) and high == pytest.approx(peak)


def test_a_budget_that_covers_the_day_reads_it_whole_with_no_uncertainty():
    log = simulated_log(random.Random(3), 2_000, aborted_share=0.2, compacted_share=0.1)
    result, read = sampled_estimate(log, budget=100_000, seed=1)
    expected = truth(log)
    assert read == expected.records
    assert (result.records, result.bytes) == pytest.approx((expected.records, expected.bytes), rel=1e-12)
    assert list(result.hour_bytes) == pytest.approx(expected.hour_bytes, rel=1e-12)
    assert not result.variance.any()


def test_blocks_keep_to_their_hours_and_cost_what_they_did():
    """Post-stratifying by hour needs blocks that never straddle an hour edge, and it must not add
    rounds of reading: still about budget / block length blocks."""
    day = SimulatedDay.simulate(np.random.default_rng(1), 400_000)
    edges, budget = day.edges, 10_000
    strata, blocks = estimation.plan_blocks(edges, budget, random.Random(5))
    for block in blocks:
        assert edges[block.segment] <= block.start < block.end <= edges[block.segment + 1]
    assert abs(len(blocks) - estimation.TARGET_BLOCKS) <= len(strata)
    assert sum(b.end - b.start for b in blocks) <= budget * 1.1
    hours = [segment.hour for stratum in strata for segment in stratum.segments]
    assert hours == [*range(HOURS_PER_DAY), None]  # the 24 hours, then the skew tail
    # A plan that is not a day's hours (the log after the day, sampled for stragglers) has none.
    tail_strata, _ = estimation.plan_blocks([edges[-2], edges[-1]], budget // 8, random.Random(5))
    assert [s.hour for stratum in tail_strata for s in stratum.segments] == [None]


def test_estimator_is_unbiased_on_gaps_and_its_bytes_interval_covers_the_truth():
    """20 % aborted transactions and 10 % compaction holes: the old per-slice ratio overstated
    such logs by +2.4 % on average. Over seeded trials the mean error must be near zero and the
    95 % interval must hold the truth 90-99 % of the time."""
    rng = np.random.default_rng(11)
    days = [SimulatedDay.simulate(rng, 60_000, "uniform", aborted_share=0.2, compacted_share=0.1) for _ in range(30)]
    errors, covered, trials = [], 0, 150
    for seed in range(trials):
        day = days[seed % len(days)]
        result = day.sample(2_000, seed)
        errors.append(result.bytes / day.hour_bytes.sum() - 1)
        low, high = result.bytes_interval()
        covered += low <= day.hour_bytes.sum() <= high
    bias, spread = float(np.mean(errors)), float(np.std(errors))
    assert abs(bias) < 3 * spread / math.sqrt(trials), f"mean error {bias:+.4f}, spread {spread:.4f}"
    assert 0.90 <= covered / trials <= 0.99, f"bytes interval covered the truth in {covered}/{trials} trials"


def test_sampled_peak_has_no_bias_from_noise_and_an_interval_as_wide_as_its_spread():
    """Issue 18 case 7. The busiest of 24 noisy hours was biased up (+11 % at the default budget
    with lognormal sizes) and its interval was 12 times wider than the estimate's real spread.
    Spread here: the standard deviation of (estimated peak / true peak - 1) across seeds; the
    interval's width is compared with 2 x 1.96 of it, and must be no more than 4 times that.
    Smaller days and budget than the default keep it fast (about a second): 160 seeds over 40
    days of 60,000 records, 2,000 read (the same 96 blocks, of 20 offsets), so each hour is noisier
    than at the default. benchmarks/estimator.py has the default's figures."""
    trials = sampled_days(seeds=160, records=60_000, budget=2_000)
    bias, half_width = float(trials.peak_errors.mean()), float(trials.peak_widths.mean() / 2)
    assert trials.width_ratio <= 4, f"interval {trials.width_ratio:.1f} times as wide as the spread"
    assert 0.90 <= trials.peak_covered.mean() <= 0.99, f"peak coverage {trials.peak_covered.mean():.3f}"
    assert abs(bias) <= 0.02 and abs(bias) < half_width, f"peak bias {bias:+.4f}, half-width {half_width:.4f}"
    assert 0.90 <= trials.bytes_covered.mean() <= 0.99, f"bytes coverage {trials.bytes_covered.mean():.3f}"


def test_an_hour_whose_records_really_are_bigger_stays_inside_the_peak_interval():
    """The shrinkage toward the day's bytes per offset pulls an hour that really differs toward
    the others; the interval's high end, the hours' own limits, must still hold it."""
    factors = np.where(np.arange(HOURS_PER_DAY) == 15, 1.3, 1.0)
    trials = sampled_days(seeds=60, records=60_000, budget=2_000, hour_factors=factors)
    assert trials.peak_covered.mean() >= 0.90, f"peak coverage {trials.peak_covered.mean():.3f}"


def test_a_day_rebuilt_from_its_hours_gives_the_same_intervals():
    """The store keeps five numbers per hour; a day recomputed from them, whole or stitched
    together from the hours of two captures, gets its intervals from them alone."""
    rng = np.random.default_rng(3)
    sampled, whole = SimulatedDay.simulate(rng, 200_000), SimulatedDay.simulate(rng, 20_000)
    exact = estimation.Estimate.exact(
        DayTally(DAY_START, hour_bytes=[int(b) for b in whole.hour_bytes], bytes=int(whole.hour_bytes.sum()))
    )
    first, second = sampled.sample(4_000, 1) + exact, sampled.sample(4_000, 2) + exact

    def hours(found: estimation.Estimate) -> list[np.ndarray]:
        return [
            found.hour_bytes,
            found.hour_variances,
            found.hour_dof_terms,
            found.hour_offsets,
            found.hour_offset_bytes,
        ]

    assert estimation.day_intervals(*hours(first)) == first.intervals()
    read = np.arange(HOURS_PER_DAY) < 20
    assert estimation.day_intervals(*hours(first), read) == first.intervals(read)
    assert first.bytes == pytest.approx(first.hour_bytes.sum()) and first.variance[estimation.BYTES] == pytest.approx(
        first.hour_variances.sum()
    )
    morning = np.arange(HOURS_PER_DAY) < 12
    stitched = [np.where(morning, a, b) for a, b in zip(hours(first), hours(second), strict=True)]
    day = estimation.day_intervals(*stitched)
    true_bytes = sampled.hour_bytes.sum() + whole.hour_bytes.sum()
    assert day.bytes == pytest.approx(stitched[0].sum())
    assert day.bytes_low < true_bytes < day.bytes_high
    true_peak = (sampled.hour_bytes + whole.hour_bytes).max() / 3600
    assert day.peak_low <= true_peak <= day.peak_high


def test_the_busiest_of_noisy_days_loses_the_bias_of_their_maximum():
    """`busiest_of`, for a window's busiest day: seven days of the same true peak, each estimated
    with noise and an interval as `day_intervals` gives it (its low end a one-sided 95 % limit,
    its high end a 97.5 % one). The largest estimate is biased up by its noise; the shrunk one must
    lose most of that bias, and its interval must hold the true peak 90-99 % of the time."""
    rng = np.random.default_rng(4)
    truth_, error = 1000.0, 30.0
    plain, shrunk, covered, trials = [], [], 0, 200
    for _ in range(trials):
        values = truth_ + error * rng.standard_normal(7)
        found = estimation.busiest_of(values, values - 1.645 * error, values + 1.96 * error)
        plain.append(values.max() - truth_)
        shrunk.append(found.value - truth_)
        covered += found.low <= truth_ <= found.high
    assert abs(np.mean(shrunk)) < np.mean(plain) / 3, (np.mean(shrunk), np.mean(plain))
    assert 0.90 <= covered / trials <= 0.99, f"covered {covered}/{trials}"
    exact = estimation.busiest_of([5.0, 7.0, 6.0], [5.0, 7.0, 6.0], [5.0, 7.0, 6.0])
    assert (exact.index, exact.value, exact.low, exact.high) == (1, 7.0, 7.0, 7.0)


def test_records_of_other_days_in_a_block_are_not_counted():
    tally = DayTally(DAY_START)
    tally.add(DAY_START - 1, 10)  # yesterday's straggler
    tally.add(DAY_START, 20)
    tally.add(DAY_START + 86_400_000, 40)  # tomorrow: the next day has begun
    tally.add(DAY_START + 86_399_999, 80)  # today's, appended after tomorrow's: late
    assert (tally.records, tally.bytes, tally.late) == (2, 100, 1)
    assert tally.hour_bytes[0] == 20 and tally.hour_bytes[23] == 80
    assert tally.first_timestamp == DAY_START - 1


@pytest.mark.parametrize(
    ("log_start", "day_first", "first_timestamp", "expected"),
    [
        (0, 0, DAY_START + 5, Retention.WHOLE),  # nothing was ever deleted
        (100, 250, DAY_START + 5, Retention.WHOLE),  # older records are retained before the day
        (100, 100, DAY_START + 3_600_000, Retention.PARTIAL),  # the head was deleted inside the day
        (100, 100, DAY_START + 86_400_000, Retention.LOST),  # deleted past the day's end
        (100, 100, None, Retention.LOST),  # the whole log was deleted
    ],
)
def test_truncation_is_judged_from_the_log(log_start, day_first, first_timestamp, expected):
    bounds = LogBounds(log_start, day_first, stable=1_000, first_timestamp=first_timestamp)
    assert day_retention(bounds, DAY_START, DAY_START + 86_400_000, retention_horizon=None) is expected
