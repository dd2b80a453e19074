"""The sampled peak and bytes, before and after issue 18 case 7, on simulated partition-days: no broker.

    .venv/bin/python -m benchmarks.estimator [--seeds 200] [--budget 10000] [--logs 40] [--case lognormal ...]

"before" is the estimator as it was in git HEAD 9a6b7e0 (copied below, `Baseline`, the same logic
with its own constants); "after" is `recommender_pipeline.measuring.estimation`. Both see the same logs and sample
with the same seed.

A simulated partition-day (`simulate_day`) holds 300,000-1,000,000 offsets of data (a window's
days 600,000 each) on a daily cycle (quietest at 03:00, busiest at 15:00 at 2.5 times the night,
its neighbours close behind), in transactions of 10-50 records each followed by its commit marker,
5 % of them aborted, 5 % of the records compacted away, then a quarter hour of the next day's
records of which 2 % are late records of hour 23 (the skew tail). Record sizes: `uniform` 50-600 B,
`lognormal` median 200 B and sigma 1 (mean 330 B), `heavy` the lognormal with 0.2 % of records
100 kB. Blocks are read as records.py reads them: boundaries from `plan_blocks` on the edges
records.py builds (first offset, the broker's 23 hour answers - the first record stamped at or
after each hour -, the day's end, the stop), each block's tally counting records by their own
timestamp. The truth is summed from the whole log.

Figures, per case, over `--seeds` trials (trial i samples log i mod `--logs`, or for a window or
a topic the next 7 or 4 logs, each with its own seed derived from i):

- peak bias: the mean of (estimated peak / true peak - 1); the peak is the busiest hour's bytes / 3600
  (a window's: the busiest day's peak).
- spread: the standard deviation of that relative error across the trials.
- half-width: the mean of (interval high - low) / 2 / true peak.
- width / spread: mean interval width / (2 x 1.96 x spread); 1 is an interval as wide as a normal
  95 % interval of the estimator's real spread. 12 means the interval says nothing.
- hour SE est / real: for the truly busiest hour, the mean standard error the estimator gives its
  bytes / the standard deviation of its estimate across trials (the hourly variances' calibration).
- coverage: the share of trials whose 95 % interval holds the truth (peak, and the day's bytes).

Cases `uniform`, `lognormal` (the default budget's target), `heavy` and `window` (7 days of a
one-partition topic with the same traffic every day; before: the largest day peak and [largest
low, largest high] as topic_window.py has it; after: `estimation.busiest_of`) are the issue's.
`bigger` (the busiest hour's records 30 % bigger than the others'), `varying` (each hour's record
size off by a random 10 %) and `topic` (a 4-partition topic, hours summed over partitions) show
what the shrinkage toward the day's bytes per offset costs when hours really differ.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from recommender_pipeline.days import HOUR_MS, HOURS_PER_DAY
from recommender_pipeline.measuring import estimation
from recommender_pipeline.measuring.attribution import DayTally

DAY_START = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000
SECONDS_PER_HOUR = HOUR_MS / 1000
# The daily cycle: quietest at 03:00, busiest at 15:00 (2.5 times the night), its neighbours close behind.
DAILY_CYCLE = 1.0 + 0.75 * (1 + np.cos(2 * np.pi * (np.arange(HOURS_PER_DAY) - 15) / HOURS_PER_DAY))
Z95 = float(stats.norm.ppf(0.975))


# --- simulated partition-days --------------------------------------------------------------------


@dataclass
class SimulatedDay:
    """One partition-day's log as cumulative sums over offsets, so a block's tally is a few lookups."""

    bytes_cum: np.ndarray  # bytes of the day's records (in hour order) up to each offset
    records_cum: np.ndarray
    late_bytes_cum: np.ndarray  # records of hour 23 in the skew tail, after the next day's first record
    late_records_cum: np.ndarray
    data_edges: np.ndarray  # first offset of each hour's records, 0-23, and (24) the next day's first record
    stop: int  # the first record past the day's end plus the skew bound: the day's read ends here
    hour_bytes: np.ndarray  # the truth
    hour_records: np.ndarray

    @property
    def edges(self) -> list[int]:
        """As records.py builds them: first, the broker's 23 hour answers, the day's end, the stop."""
        hours = [int(edge) for edge in self.data_edges[1:HOURS_PER_DAY]]
        return [0, *hours, int(self.data_edges[HOURS_PER_DAY]), self.stop]

    def tallies(self, blocks: list) -> list[DayTally]:
        """What each block holds of the day, by record timestamp, as the reader would tally it."""
        starts = np.array([b.start for b in blocks])
        ends = np.array([b.end for b in blocks])
        low, high = self.data_edges[:-1], self.data_edges[1:]
        first, last = np.clip(starts[:, None], low, high), np.clip(ends[:, None], low, high)
        hour_bytes = self.bytes_cum[last] - self.bytes_cum[first]
        hour_records = self.records_cum[last] - self.records_cum[first]
        tail_first = np.maximum(starts, self.data_edges[-1])
        tail_last = np.maximum(ends, self.data_edges[-1])
        late = self.late_records_cum[tail_last] - self.late_records_cum[tail_first]
        hour_bytes[:, -1] += self.late_bytes_cum[tail_last] - self.late_bytes_cum[tail_first]
        hour_records[:, -1] += late
        return [
            DayTally(
                DAY_START,
                records=int(records.sum()),
                bytes=int(sizes.sum()),
                late=int(count),
                hour_bytes=sizes.tolist(),
                hour_records=records.tolist(),
            )
            for sizes, records, count in zip(hour_bytes, hour_records, late, strict=True)
        ]


def simulate_day(
    rng: np.random.Generator,
    records: int,
    sizes: str,
    weights: np.ndarray = DAILY_CYCLE,
    aborted_share: float = 0.05,
    compacted_share: float = 0.05,
    late_share: float = 0.02,
    size_factors: np.ndarray | None = None,
) -> SimulatedDay:
    """A day of `records` offsets of data (some aborted or compacted away) in transactions of 10-50
    records, each followed by its commit marker; hours follow `weights`, each hour's record sizes
    times `size_factors` (default 1); then the skew tail: the next day's first quarter hour, with
    `late_share` late records of hour 23 among its records."""
    lengths = rng.integers(10, 51, size=records // 10 + 10)
    count = int(np.searchsorted(np.cumsum(lengths), records)) + 1
    lengths = lengths[:count]
    lengths[-1] -= int(lengths.sum()) - records
    transaction = np.repeat(np.arange(count), lengths)
    aborted = rng.random(count) < aborted_share
    data = ~aborted[transaction] & (rng.random(records) >= compacted_share)
    hour = np.repeat(np.arange(HOURS_PER_DAY), rng.multinomial(records, weights / weights.sum()))
    size = draw_sizes(rng, sizes, records).astype(float)
    if size_factors is not None:
        size = np.round(size * size_factors[hour])
    size = np.where(data, size, 0).astype(np.int64)
    offset = np.arange(records) + transaction  # each transaction's marker follows its last record
    day_offsets = records + count
    tail = int(records * weights[0] / weights.sum() / 4)
    total = day_offsets + tail
    bytes_at, records_at = np.zeros(total, dtype=np.int64), np.zeros(total, dtype=np.int64)
    bytes_at[offset], records_at[offset] = size, data
    late_at, late_bytes_at = np.zeros(total, dtype=np.int64), np.zeros(total, dtype=np.int64)
    is_late = rng.random(tail) < late_share
    late_at[day_offsets:] = is_late
    late_bytes_at[day_offsets:] = np.where(is_late, draw_sizes(rng, sizes, tail), 0)
    data_offsets, data_hours = offset[data], hour[data]
    starts = np.searchsorted(data_hours, np.arange(HOURS_PER_DAY))
    edges = np.full(HOURS_PER_DAY + 1, day_offsets, dtype=np.int64)
    found = starts < len(data_offsets)
    edges[:HOURS_PER_DAY][found] = data_offsets[starts[found]]
    edges[0] = 0
    hour_bytes = np.bincount(hour, weights=size, minlength=HOURS_PER_DAY)
    hour_records = np.bincount(hour, weights=data, minlength=HOURS_PER_DAY)
    hour_bytes[-1] += late_bytes_at.sum()
    hour_records[-1] += late_at.sum()

    def cumulative(values: np.ndarray) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(values)])

    return SimulatedDay(
        cumulative(bytes_at),
        cumulative(records_at),
        cumulative(late_bytes_at),
        cumulative(late_at),
        edges,
        total,
        hour_bytes,
        hour_records,
    )


def draw_sizes(rng: np.random.Generator, kind: str, count: int) -> np.ndarray:
    """Record sizes in bytes: `uniform` 50-600, `lognormal` median 200 and sigma 1, `heavy` that
    lognormal with 0.2 % of records 100 kB."""
    if kind == "uniform":
        return rng.integers(50, 601, size=count)
    sizes = np.maximum(np.round(np.exp(rng.normal(math.log(200), 1.0, size=count))), 1)
    if kind == "heavy":
        sizes = np.where(rng.random(count) < 0.002, 100_000, sizes)
    return sizes.astype(np.int64)


# --- the baseline: the estimator as it was in git HEAD 9a6b7e0, before issue 18 case 7 ------------


class Baseline:
    """HEAD 9a6b7e0's `plan_blocks` and `estimate` (strata of merged hours, each hour's bytes from
    its stratum's blocks, a Bonferroni peak interval), copied with its constants so that "before"
    stays what it was whatever estimation.py becomes."""

    TARGET_BLOCKS, MIN_BLOCK_OFFSETS, MIN_BLOCKS_PER_STRATUM = 96, 4, 8
    BYTES, HOURS, WIDTH = 1, slice(2, 2 + HOURS_PER_DAY), 3 + 2 * HOURS_PER_DAY

    @staticmethod
    def vector(tally: DayTally) -> np.ndarray:
        return np.array([tally.records, tally.bytes, *tally.hour_bytes, *tally.hour_records, tally.late], dtype=float)

    @dataclass(frozen=True)
    class Block:
        stratum: int
        start: int
        end: int

    @dataclass(frozen=True)
    class Stratum:
        start: int
        end: int
        blocks: int

        @property
        def offsets(self) -> int:
            return self.end - self.start

    @dataclass
    class Estimate:
        totals: np.ndarray
        variance: np.ndarray
        variance_terms: np.ndarray

        def __add__(self, other: Baseline.Estimate) -> Baseline.Estimate:
            return Baseline.Estimate(
                self.totals + other.totals, self.variance + other.variance, self.variance_terms + other.variance_terms
            )

        @property
        def bytes(self) -> float:
            return float(self.totals[Baseline.BYTES])

        @property
        def hour_bytes(self) -> np.ndarray:
            return self.totals[Baseline.HOURS]

        @property
        def hour_variances(self) -> np.ndarray:
            return self.variance[Baseline.HOURS]

        def half_widths(self, tail: float = 0.025) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                dof = np.where(self.variance_terms > 0, self.variance**2 / self.variance_terms, np.inf)
            return stats.t.ppf(1 - tail, np.maximum(dof, 1.0)) * np.sqrt(self.variance)

        def peak(self) -> tuple[int, float, float, float]:
            hours, half = self.hour_bytes, self.half_widths()[Baseline.HOURS]
            contenders = int(np.sum(hours + half >= np.max(hours - half)))
            if contenders > 1:
                half = self.half_widths(0.025 / contenders)[Baseline.HOURS]
            hour = int(np.argmax(hours))
            low, high = float(np.max(np.maximum(hours - half, 0.0))), float(np.max(hours + half))
            return hour, float(hours[hour]) / SECONDS_PER_HOUR, low / SECONDS_PER_HOUR, high / SECONDS_PER_HOUR

        def bytes_interval(self) -> tuple[float, float]:
            half = float(self.half_widths()[Baseline.BYTES])
            return max(self.bytes - half, 0.0), self.bytes + half

    @classmethod
    def plan_blocks(cls, edges: list[int], budget: int, rng: random.Random) -> tuple[list, list]:
        total = edges[-1] - edges[0]
        length = max(cls.MIN_BLOCK_OFFSETS, budget // cls.TARGET_BLOCKS)
        per_stratum = cls.MIN_BLOCKS_PER_STRATUM * length * total / max(budget, 1)
        merged = [edges[0]]
        for edge in edges[1:-1]:
            if edge - merged[-1] >= per_stratum and edges[-1] - edge >= per_stratum:
                merged.append(edge)
        merged.append(edges[-1])
        strata, blocks = [], []
        for index, (start, end) in enumerate(itertools.pairwise(merged)):
            offsets = end - start
            count = max(1, math.ceil(offsets / length)) if offsets > 0 else 0
            strata.append(cls.Stratum(start, end, count))
            if not count:
                continue
            share = max(2, round(budget * offsets / total / length)) if total else count
            if share >= count:
                chosen: Iterable[int] = range(count)
            else:
                start_at = rng.random()
                chosen = [int((i + start_at) * count / share) for i in range(share)]
            blocks += [
                cls.Block(index, start + offsets * i // count, start + offsets * (i + 1) // count) for i in chosen
            ]
        return strata, blocks

    @classmethod
    def estimate(cls, strata: list, blocks: list, tallies: list[DayTally]) -> Baseline.Estimate:
        width = cls.WIDTH
        values = np.array([cls.vector(t) for t in tallies], dtype=float).reshape(len(tallies), width)
        lengths = np.array([b.end - b.start for b in blocks], dtype=float)
        which = np.array([b.stratum for b in blocks], dtype=int)
        result = cls.Estimate(np.zeros(width), np.zeros(width), np.zeros(width))
        for index, stratum in enumerate(strata):
            mask = which == index
            sampled = int(mask.sum())
            if not sampled:
                continue
            y, span = values[mask], lengths[mask]
            ratio = y.sum(axis=0) / span.sum()
            result.totals += ratio * stratum.offsets
            if sampled < stratum.blocks:
                residuals = y - np.outer(span, ratio)
                dof = max(sampled - 1, 1)
                variance = (
                    stratum.blocks**2 * (1 - sampled / stratum.blocks) * (residuals**2).sum(axis=0) / dof / sampled
                )
                result.variance += variance
                result.variance_terms += variance**2 / dof
        return result


# --- trials ----------------------------------------------------------------------------------------


@dataclass
class Trial:
    """One sampled day (or window) against its truth, as ratios to the truth."""

    peak: float  # estimate / truth - 1
    width: float  # (high - low) / truth
    covered: bool
    bytes_covered: bool = True
    hour_error: float = 0.0  # the truly busiest hour's estimate / its truth - 1
    hour_se: float = 0.0  # the standard error given for it / its truth


def sample(module: object, day: SimulatedDay, seed: int, budget: int):
    strata, blocks = module.plan_blocks(day.edges, budget, random.Random(seed))
    return module.estimate(strata, blocks, day.tallies(blocks))


def day_trial(days: list[SimulatedDay], seed: int, budget: int, after: bool) -> Trial:
    """A topic-day of `days` (its partitions), sampled with `seed`."""
    module = estimation if after else Baseline
    found = [sample(module, day, seed * 101 + number, budget) for number, day in enumerate(days)]
    total = found[0]
    for more in found[1:]:
        total = total + more
    hours = sum(day.hour_bytes for day in days)
    true_peak, true_bytes, busiest = hours.max() / SECONDS_PER_HOUR, hours.sum(), int(np.argmax(hours))
    if after:
        day = total.intervals()
        peak, low, high, bytes_low, bytes_high = day.peak, day.peak_low, day.peak_high, day.bytes_low, day.bytes_high
    else:
        _, peak, low, high = total.peak()
        bytes_low, bytes_high = total.bytes_interval()
    return Trial(
        peak / true_peak - 1,
        (high - low) / true_peak,
        low <= true_peak <= high,
        bytes_low <= true_bytes <= bytes_high,
        total.hour_bytes[busiest] / hours[busiest] - 1,
        math.sqrt(total.hour_variances[busiest]) / hours[busiest],
    )


def window_trial(days: list[SimulatedDay], seed: int, budget: int, after: bool) -> Trial:
    """The busiest day's peak of a window of `days` of a one-partition topic."""
    module = estimation if after else Baseline
    peaks = np.array([sample(module, day, seed * 101 + number, budget).peak()[1:] for number, day in enumerate(days)])
    true_peak = max(day.hour_bytes.max() for day in days) / SECONDS_PER_HOUR
    if after:
        found = estimation.busiest_of(peaks[:, 0], peaks[:, 1], peaks[:, 2])
        peak, low, high = found.value, found.low, found.high
    else:  # topic_window.py: the largest day peak, from the largest low to the largest high
        peak, low, high = peaks.max(axis=0)
    return Trial(peak / true_peak - 1, (high - low) / true_peak, low <= true_peak <= high)


@dataclass
class Case:
    name: str
    title: str
    sizes: str
    trial: Callable[[list[SimulatedDay], int, int, bool], Trial] = day_trial
    days: int = 1  # partitions of a topic-day, or days of a window
    records: tuple[int, int] = (300_000, 1_000_000)
    options: dict = field(default_factory=dict)


CASES = [
    Case("uniform", "uniform sizes 50-600 B, per partition-day", "uniform"),
    Case("lognormal", "lognormal sizes (median 200 B, sigma 1), per partition-day", "lognormal"),
    Case("heavy", "heavy tail: 0.2 % of records 100 kB, per partition-day", "heavy"),
    Case(
        "window",
        "7-day window of a one-partition topic, lognormal, same traffic daily",
        "lognormal",
        window_trial,
        days=7,
        records=(600_000, 600_000),
    ),
    Case("bigger", "extra: the busiest hour's records 30 % bigger, lognormal", "lognormal", options={"bigger": 1.3}),
    Case("varying", "extra: each hour's record size off by a random 10 %", "lognormal", options={"varying": 0.1}),
    Case("topic", "extra: a 4-partition topic, lognormal", "lognormal", days=4),
]


def run_case(case: Case, seeds: int, budget: int, logs: int) -> dict[str, dict[str, float]]:
    """Before and after figures of one case over `seeds` trials on `logs` simulated logs."""
    rng = np.random.default_rng(sum(map(ord, case.name)))
    pool = []
    for _ in range(max(logs, case.days)):
        factors = None
        if "bigger" in case.options:
            factors = np.where(np.arange(HOURS_PER_DAY) == np.argmax(DAILY_CYCLE), case.options["bigger"], 1.0)
        if "varying" in case.options:
            factors = np.exp(rng.normal(0.0, case.options["varying"], HOURS_PER_DAY))
        records = int(rng.integers(case.records[0], case.records[1] + 1))
        pool.append(simulate_day(rng, records, case.sizes, size_factors=factors))
    figures = {}
    for after in (False, True):
        trials = [
            case.trial([pool[(seed * case.days + d) % len(pool)] for d in range(case.days)], seed, budget, after)
            for seed in range(seeds)
        ]
        figures["after" if after else "before"] = summarise(trials, case.trial is day_trial)
    return figures


def summarise(trials: list[Trial], hourly: bool) -> dict[str, float]:
    errors = np.array([t.peak for t in trials])
    spread = float(errors.std(ddof=1))
    widths = np.array([t.width for t in trials])
    summary = {
        "peak bias": float(errors.mean()),
        "peak spread (SD)": spread,
        "peak half-width": float(widths.mean() / 2),
        "width / (3.92 x spread)": float(widths.mean() / (2 * Z95 * spread)) if spread else math.nan,
        "peak coverage": float(np.mean([t.covered for t in trials])),
    }
    if hourly:
        hour_errors = np.array([t.hour_error for t in trials])
        summary["hour SE est / real"] = float(np.mean([t.hour_se for t in trials]) / hour_errors.std(ddof=1))
        summary["bytes coverage"] = float(np.mean([t.bytes_covered for t in trials]))
    return summary


PERCENT = {"peak bias", "peak spread (SD)", "peak half-width"}


def render(name: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    if name in PERCENT:
        return f"{value * 100:+.1f} %" if name == "peak bias" else f"{value * 100:.1f} %"
    if "coverage" in name:
        return f"{value:.3f}"
    return f"{value:.2f}x"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200, help="trials per case (default 200)")
    parser.add_argument("--budget", type=int, default=10_000, help="SAMPLING_BATCH_SIZE (default 10000)")
    parser.add_argument("--logs", type=int, default=40, help="distinct simulated logs per case (default 40)")
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES], help="only these cases")
    args = parser.parse_args(argv)
    print(
        f"Sampled peak and bytes, {args.seeds} seeds per case, SAMPLING_BATCH_SIZE={args.budget} "
        f"({estimation.TARGET_BLOCKS} blocks of {estimation.block_length(args.budget)} offsets), {args.logs} logs "
        "of 300,000-1,000,000 offsets (window: 7 days of 600,000)."
    )
    print("before: git HEAD 9a6b7e0's estimator; after: recommender_pipeline.measuring.estimation.")
    standard_error = math.sqrt(0.95 * 0.05 / args.seeds)
    print(f"A coverage of 0.95 over {args.seeds} trials is measured give or take {standard_error:.3f} (one SE).\n")
    print(f"{'case / figure':<34}{'before':>12}{'after':>12}")
    for case in CASES:
        if args.case and case.name not in args.case:
            continue
        started = time.monotonic()
        figures = run_case(case, args.seeds, args.budget, args.logs)
        print(f"{case.name}: {case.title} ({time.monotonic() - started:.0f} s)")
        for name in figures["after"]:
            before, after = figures["before"][name], figures["after"][name]
            print(f"  {name:<32}{render(name, before):>12}{render(name, after):>12}")


if __name__ == "__main__":
    main()
