"""Stratified block sampling of a partition-day that holds more records than the budget, and the
busiest of noisy estimates (a day's hours, a window's days).

**Design** (`plan_blocks`). The day's offsets are cut at the broker's hour boundaries (plus the
skew tail after the day's end) into segments, one per hour. Neighbouring hours are merged into a
stratum until it gets `MIN_BLOCKS_PER_STRATUM` blocks; inside a stratum each hour is cut into its
own blocks of consecutive offsets (about budget / `TARGET_BLOCKS` each), so no block straddles an
hour edge, and a systematic sample of the stratum's blocks (evenly spaced from a random start, at
least two, in proportion to its offsets) gives every hour its proportional share of blocks, give
or take one: the same number of blocks, and of fetch rounds, as before. A stratum no bigger than
its share is read whole.

**Estimator** (`estimate`). Each sampled block contributes what it held *of the day*, by record
timestamp (records, bytes, bytes and records per hour), and its length in offsets. Each hour is
its own post-stratum: its total is its offsets times the ratio of what its own blocks held to the
offsets they spanned. Because a block is a fixed span of offsets, transaction markers, aborted
batches and compaction gaps thin it exactly as often as they thin the hour: no bias from gaps.
A segment smaller than the sampling interval may get no block at all: an hour then takes its
stratum's bytes and records per offset, and the skew tail (mostly the next day's records) is
expanded by its inclusion probability (Horvitz-Thompson, no bias). With a constant record size
and density every hour, and so the day, is exact.

**Variance.** Per hour, the ratio estimator's under simple random sampling (conservative for a
systematic sample) with the finite-population correction. An hour has only a few blocks, so the
block-to-block variance is pooled over its stratum's hours, with the whole day's pool added as a
prior worth `VARIANCE_PRIOR_DOF` degrees of freedom: blocks of one partition vary alike at any
hour, and the hours' standard errors then match their real spread (before: 2.6-3 times too big,
the hour's bytes estimated from a stratum of several hours). An hour's variance is its own
segment's (spread over the hours its records are stamped in, for out-of-order records); the day's
bytes are the sum of the 24 hours and their variance the sum of the hours' variances, so a day
stitched together from several captures recomputes its intervals from five stored numbers per
hour (`day_intervals`). The bytes interval is Student's t at Satterthwaite's degrees of freedom.

**The busiest hour** (`busiest`). The largest of 24 noisy estimates is biased up: it is the hour
whose noise was largest (+11 % per sampled partition-day with uniform record sizes, +13 % with
lognormal ones, +55 % with a heavy tail, +20 % for a week's busiest day, in benchmarks/estimator.py).
But the offsets per hour are known almost exactly, and a partition's bytes per offset rarely
differ much from hour to hour. So each hour's sampled bytes are shrunk toward its offsets times
the day's bytes per offset, by empirical Bayes: the between-hour variance of bytes per offset
(DerSimonian-Laird, its null expectation corrected for variances that are themselves estimated)
against the hour's own sampling variance. When the hours do not differ beyond their noise, the
busiest is the hour with the most offsets, and its noise is about the day's (bias now within
+-0.4 % in those cases). When they do differ they keep more of their own estimates; an hour that
alone stands out is still pulled toward the others (its records 30 % bigger than the other
hours': estimated 12 % low): at a few blocks an hour, one such hour among 24 looks like noise.
The interval is built to hold the true busiest hour either way:

- low: a parametric bootstrap of the whole estimator: the estimate minus the upper `LOW_TAIL`
  quantile of (estimate - true busiest value), the larger of two worlds', the shrinkage's
  posterior and the one where no hour differs beyond its noise (`_error_quantile`).
- high: the largest of the hours' own upper 97.5 % limits (direct estimate + t x its standard
  error). The true busiest hour's own limit holds it whatever the other hours are, so an hour
  whose records really are bigger, which the shrinkage pulls down, is still inside the interval.

Measured, the interval is 2.3-2.9 times as wide as 2 x 1.96 standard deviations of the estimate
(before: 4-17 times, the peak's interval running from about 0 to twice the peak) and holds the
truth 94-97.5 % of the time. `busiest_of` applies the same to a window's days (there the high end,
the largest day's, makes the interval 4.6 times the window estimate's spread).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri, stdtrit  # Student's t and normal quantiles, without scipy.stats' import time

from recommender_pipeline.days import HOUR_MS, HOURS_PER_DAY
from recommender_pipeline.measuring.attribution import DayTally

TARGET_BLOCKS = 96  # blocks read per sampled partition: each round of blocks is one fetch round trip
MIN_BLOCK_OFFSETS = 4
# Reading this many records costs about one round of blocks (a fetch round trip, 2-3 ms on a
# local broker, where a plain read runs at 600,000-900,000 records/s): below that many offsets per
# round, reading whole is cheaper. Rounded up, since at equal cost the exact read has no error.
RECORDS_PER_ROUND_TRIP = 2_000
EXACT_UP_TO = 2  # and never sample a day of less than twice the budget
MIN_BLOCKS_PER_STRATUM = 8
# A stratum's own blocks give a handful of degrees of freedom; the day's pool is added as a prior
# worth this many (two strata's worth), which made the hours' standard errors match their spread.
VARIANCE_PRIOR_DOF = 16
LEVEL = 0.95
# The busiest estimate's interval is two one-sided bounds (`busiest`): its high end holds the true
# busiest value 97.5 % of the time whatever the estimates are, and misses only when one of them
# really stands out, when the shrinkage has pulled the estimate down and the low end cannot miss.
# So the low end takes the whole 5 %; measured two-sided coverage: 0.94-0.975 (benchmarks/estimator.py).
LOW_TAIL = 0.05
# Fewer estimates than this say too little about how much they really differ: none is shrunk.
MIN_POOLED = 6
# Bootstrap draws, per world, for the low end of the busiest estimate's interval: about 6 ms a
# day, and the low end moves by about 4 % of its distance from the estimate from seed to seed.
DRAWS = 2_000
SECONDS_PER_HOUR = HOUR_MS / 1000


@dataclass(frozen=True)
class Block:
    """Consecutive offsets read whole: `start` to `end` (exclusive), in `stratum` and `segment`."""

    stratum: int
    start: int
    end: int
    segment: int = 0  # the interval of the plan's edges it lies in: its post-stratum


@dataclass(frozen=True)
class Segment:
    """The offsets between two consecutive edges of a plan: in a day plan one hour as the broker's
    time index sees it (`hour`), or the skew tail (`hour` None)."""

    index: int
    start: int
    end: int
    blocks: int  # how many blocks it is cut into
    hour: int | None = None

    @property
    def offsets(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Stratum:
    """Neighbouring segments sampled together: one systematic sample, one pool of variance."""

    start: int
    end: int
    blocks: int  # how many blocks the stratum is cut into: its segments' blocks
    segments: tuple[Segment, ...] = ()

    @property
    def offsets(self) -> int:
        return self.end - self.start


def block_length(budget: int) -> int:
    return max(MIN_BLOCK_OFFSETS, budget // TARGET_BLOCKS)


def worth_sampling(offsets: int, budget: int) -> bool:
    """Whether sampling a partition-day of `offsets` costs less than reading it whole: a
    partition is read exactly whenever that costs no more."""
    rounds = math.ceil(budget / block_length(budget))
    return offsets > max(EXACT_UP_TO * budget, rounds * RECORDS_PER_ROUND_TRIP)


def plan_blocks(
    edges: list[int], budget: int, rng: random.Random, hours: bool | None = None
) -> tuple[list[Stratum], list[Block]]:
    """Strata between consecutive `edges` (offsets, ascending) and the blocks to read in them.

    About `budget` offsets are read in all; a stratum whose share covers it is read whole.
    Neighbouring edges are merged until a stratum gets `MIN_BLOCKS_PER_STRATUM` blocks, for the
    systematic sample's spacing and its variance; each interval between edges is still cut into
    its own blocks, so the estimate can take each one on its own (an hour as its own post-stratum).
    `hours`: whether the intervals are the day's hours, 0-23 (a day plan: `[first, 23 hour
    boundaries, day end, stop]`); by default, when there are more intervals than hours.
    """
    if hours is None:
        hours = len(edges) - 1 > HOURS_PER_DAY
    total = edges[-1] - edges[0]
    length = block_length(budget)
    per_stratum = MIN_BLOCKS_PER_STRATUM * length * total / max(budget, 1)
    merged = [0]  # indices into edges
    for index in range(1, len(edges) - 1):
        if edges[index] - edges[merged[-1]] >= per_stratum and edges[-1] - edges[index] >= per_stratum:
            merged.append(index)
    merged.append(len(edges) - 1)
    strata: list[Stratum] = []
    blocks: list[Block] = []
    for number, (first, last) in enumerate(itertools.pairwise(merged)):
        segments, cuts = [], []
        for index in range(first, last):
            start, end = edges[index], edges[index + 1]
            span = end - start
            count = math.ceil(span / length) if span > 0 else 0
            hour = index if hours and index < HOURS_PER_DAY else None
            segments.append(Segment(index, start, end, count, hour))
            cuts += [(index, start + span * i // count, start + span * (i + 1) // count) for i in range(count)]
        count = len(cuts)
        strata.append(Stratum(edges[first], edges[last], count, tuple(segments)))
        if not count:
            continue
        offsets = edges[last] - edges[first]
        share = max(2, round(budget * offsets / total / length)) if total else count
        if share >= count:
            chosen: Iterable[int] = range(count)
        else:  # systematic: evenly spaced from a random start, so no part of the stratum is skipped
            start_at = rng.random()
            chosen = [int((i + start_at) * count / share) for i in range(share)]
        blocks += [Block(number, start, end, index) for index, start, end in (cuts[i] for i in chosen)]
    return strata, blocks


# Positions in the vectors: records, bytes, bytes per hour, records per hour, late records (what a
# block's tally holds); then, per hour, the offsets of sampled partitions between the broker's
# hour edges and the day's bytes estimated in them (what the busiest hour is shrunk with).
RECORDS, BYTES = 0, 1
HOURS = slice(2, 2 + HOURS_PER_DAY)
HOUR_RECORDS = slice(HOURS.stop, HOURS.stop + HOURS_PER_DAY)
LATE = HOUR_RECORDS.stop
TALLY_WIDTH = LATE + 1
HOUR_OFFSETS = slice(TALLY_WIDTH, TALLY_WIDTH + HOURS_PER_DAY)
HOUR_OFFSET_BYTES = slice(HOUR_OFFSETS.stop, HOUR_OFFSETS.stop + HOURS_PER_DAY)
WIDTH = HOUR_OFFSET_BYTES.stop


@dataclass(frozen=True)
class Busiest:
    """The busiest of several estimates: which one, its estimated value and a 95 % interval."""

    index: int
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class DayIntervals:
    """A day's bytes and busiest hour (bytes/s), each with its 95 % interval."""

    bytes: float
    bytes_low: float
    bytes_high: float
    peak_hour: int
    peak: float
    peak_low: float
    peak_high: float


def day_intervals(
    hour_bytes: Sequence[float],
    hour_variances: Sequence[float],
    hour_dof_terms: Sequence[float],
    hour_offsets: Sequence[float],
    hour_offset_bytes: Sequence[float],
    hours_read: Sequence[bool] | None = None,
) -> DayIntervals:
    """A topic-day's bytes and peak with their intervals, from its 24 hourly values alone.

    The arrays are an `Estimate`'s `hour_bytes`, `hour_variances`, `hour_dof_terms`,
    `hour_offsets` and `hour_offset_bytes`, summed over the topic's partitions (an exact
    partition adds its hour bytes and zeros): per hour, the bytes, their variance, its
    Satterthwaite term (variance^2 / degrees of freedom), the offsets of sampled partitions
    between the broker's hour edges and the bytes estimated in those offsets. A day stitched
    together from several captures passes each hour's five values from the capture that hour was
    kept from; `hours_read` limits the day to the hours read (the others count as nothing). The
    result is the `Estimate`'s own `intervals` when the arrays are its own.
    """
    read = np.ones(HOURS_PER_DAY, dtype=bool) if hours_read is None else np.asarray(hours_read, dtype=bool)
    values = np.asarray(hour_bytes, dtype=float) * read
    variances = np.maximum(np.asarray(hour_variances, dtype=float), 0.0) * read
    terms = np.maximum(np.asarray(hour_dof_terms, dtype=float), 0.0) * read
    total = float(values.sum())
    bytes_low, bytes_high = _sum_interval(values, variances, terms)
    peak = busiest(
        values,
        variances,
        terms,
        sizes=np.asarray(hour_offsets, dtype=float) * read,
        shrinkable=np.asarray(hour_offset_bytes, dtype=float) * read,
    )
    return DayIntervals(
        total,
        bytes_low,
        bytes_high,
        peak.index,
        peak.value / SECONDS_PER_HOUR,
        peak.low / SECONDS_PER_HOUR,
        peak.high / SECONDS_PER_HOUR,
    )


def busiest(
    values: Sequence[float],
    variances: Sequence[float],
    dof_terms: Sequence[float] | None = None,
    sizes: Sequence[float] | None = None,
    shrinkable: Sequence[float] | None = None,
    highs: Sequence[float] | None = None,
) -> Busiest:
    """The largest of several estimates, its bias from noise shrunk away, with a 95 % interval.

    `values[k]` is an unbiased estimate with `variances[k]` (and Satterthwaite terms
    variance^2 / degrees of freedom, `dof_terms`; None: known variances). Of each value,
    `shrinkable[k]` is an estimate over `sizes[k]` units (offsets) that is pulled toward
    `sizes[k]` x the pool's rate (sum of shrinkable / sum of sizes) as far as the estimates do
    not differ beyond their noise; the rest of the value is kept as it is (an exact partition's
    hour, records stamped in another hour's offsets). By default every estimate with a variance is
    one unit, wholly shrinkable: estimates of the same kind of thing (a window's days) are pulled
    toward their mean, and exact ones (no variance) stay as they are.

    Returns the index of the largest shrunk estimate, its value, and an interval: low from a
    parametric bootstrap of this very estimator (`_error_quantile`), high the largest of the
    estimates' own upper 97.5 % limits (value + t x standard error, or `highs` when given), which
    holds the true largest value whatever the others are. See the module's docstring.
    """
    values = np.asarray(values, dtype=float)
    if not len(values):
        return Busiest(0, 0.0, 0.0, 0.0)
    variances = np.maximum(np.asarray(variances, dtype=float), 0.0)
    if not variances.any():
        index = int(np.argmax(values))
        return Busiest(index, float(values[index]), float(values[index]), float(values[index]))
    terms = np.zeros_like(variances) if dof_terms is None else np.asarray(dof_terms, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = np.where(terms > 0, variances**2 / np.where(terms > 0, terms, 1.0), np.inf)
    sizes = (variances > 0).astype(float) if sizes is None else np.asarray(sizes, dtype=float)
    shrinkable = np.where(sizes > 0, values, 0.0) if shrinkable is None else np.asarray(shrinkable, dtype=float)
    shrinkage = _Shrinkage(variances, dof, sizes)
    estimates, fit = shrinkage.apply(values[None, :], shrinkable[None, :])
    index = int(np.argmax(estimates[0]))
    value = float(estimates[0, index])
    low = value - _error_quantile(shrinkage, values, shrinkable, fit)
    if highs is None:
        high = float(np.max(values + _t_quantile(variances, terms) * np.sqrt(variances)))
    else:
        high = float(np.max(np.where(variances > 0, np.asarray(highs, dtype=float), values)))
    return Busiest(index, value, max(min(low, value), 0.0), max(high, value))


def busiest_of(values: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> Busiest:
    """The busiest of estimates given with their intervals as `busiest` makes them: for a window,
    the busiest of its days. Meant to be called by topic_window.py with, per measured day of the
    window, `peak_ingress_bytes_per_sec`, `peak_ci_low` and `peak_ci_high` (a day without an
    interval, exact or stored before intervals existed, passes its peak as all three: it counts as
    exact and is not shrunk). The window's peak is then `.value`, its interval `.low`-`.high`,
    and `.index` the busiest day's position in the lists.

    A day's standard error is read from its interval's lower side, which `busiest` sets at the
    one-sided `LOW_TAIL` quantile of the estimator's own spread (its upper side is wider: it
    covers an hour that really stands out). The days are shrunk toward their mean as far as they
    do not differ beyond their noise (a week of equal days: +20 % before, about 0 % now; days that
    really differ keep their own peaks), the low end is bootstrapped, and the high end is the
    largest of the days' highs, each of which holds its own day's true peak.
    """
    values = np.asarray(values, dtype=float)
    lows, highs = np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)
    z = float(ndtri(1 - LOW_TAIL))  # the quantile a day's low end was set at (`busiest`)
    standard_errors = np.maximum(values - lows, 0.0) / z
    return busiest(values, standard_errors**2, highs=np.maximum(highs, values))


class _Shrinkage:
    """Empirical Bayes shrinkage of estimates' shrinkable parts toward their sizes x the pool's
    rate. Rows of values are shrunk independently (the bootstrap's draws); variances and sizes
    are the same for every row."""

    def __init__(self, variances: np.ndarray, dof: np.ndarray, sizes: np.ndarray):
        self.variances = variances
        self.pool = sizes > 0
        self.sizes = np.where(self.pool, sizes, 0.0)
        total = float(self.sizes.sum())
        share = self.sizes / total if total > 0 else self.sizes
        self.total = total
        # Var(s_k - share_k x sum of s): an estimate's deviation from its target shares the rate's noise.
        pooled = float(variances[self.pool].sum())
        self.deviation_variance = np.where(
            self.pool, np.maximum(variances * (1 - 2 * share) + share**2 * pooled, 0.0), 0.0
        )
        # With estimated variances a standardised deviation has E[z^2] = dof / (dof - 2), not 1:
        # without this, noise alone would look like a spread between the estimates.
        finite = np.where(np.isfinite(dof), dof, 1e12)
        self.inflation = np.where(finite > 4, finite / np.maximum(finite - 2, 1e-9), 2.0)

    def apply(self, values: np.ndarray, shrinkable: np.ndarray) -> tuple[np.ndarray, tuple]:
        """Rows of values -> rows of shrunk values, and the fit: (target, z, w, factor)."""
        rate = np.where(self.pool, shrinkable, 0.0).sum(axis=-1, keepdims=True) / max(self.total, 1e-300)
        target = self.sizes * rate
        with np.errstate(divide="ignore", invalid="ignore"):
            positive = target > 0
            z = np.where(positive, shrinkable / np.where(positive, target, 1.0) - 1, 0.0)
            w = np.where(positive, self.deviation_variance / np.where(positive, target, 1.0) ** 2, 0.0)
            usable = self.pool & positive & (w > 0)
            weight = np.where(usable, 1 / np.where(usable, w, 1.0), 0.0)
            sum_w = weight.sum(axis=-1, keepdims=True)
            mean = (weight * z).sum(axis=-1, keepdims=True) / sum_w
            q = (weight * (z - mean) ** 2).sum(axis=-1, keepdims=True)
            c = sum_w - (weight**2).sum(axis=-1, keepdims=True) / sum_w
            count = usable.sum(axis=-1, keepdims=True)
            expected = (count - 1) * np.where(usable, self.inflation, 0.0).sum(axis=-1, keepdims=True) / count
            tau2 = np.maximum((q - expected) / c, 0.0)  # between-estimate variance of the rates, relative
            factor = np.where(usable & (count >= MIN_POOLED), w / (w + tau2), 0.0)
        factor = np.nan_to_num(factor)
        return values - factor * z * target, (target, z, w, factor)


def _error_quantile(shrinkage: _Shrinkage, values: np.ndarray, shrinkable: np.ndarray, fit: tuple) -> float:
    """How far above the true largest value the shrunk estimate lands, at its upper `LOW_TAIL`
    quantile: a parametric bootstrap of the whole estimator, data drawn around truths with the
    estimates' variances, in two worlds, the larger quantile of the two:

    - the posterior's: each truth its shrunk value give or take sqrt((1 - B) w) of its target, as
      the shrinkage believes the estimates to differ;
    - the flat one: no estimate differs beyond its noise (every rate the pool's), where the
      largest estimate is the most inflated by noise. A few estimates (a week's days) say little
      about how much they differ, and the posterior's truths alone then spread too much.

    Drawn from a fixed seed: the same estimates give the same interval."""
    target, z, w, factor = (part[0] for part in fit)
    rng = np.random.default_rng(0)
    draws = rng.standard_normal((2, DRAWS, len(values)))
    spread = np.sqrt(np.maximum(1 - factor, 0.0) * w) * target
    believed = target * (1 + (1 - factor) * z) + spread * draws[0]
    flat = np.broadcast_to(target, believed.shape)
    true_part = np.where(shrinkage.pool, np.concatenate([believed, flat]), shrinkable)
    truth = values - shrinkable + true_part
    noise = np.tile(np.sqrt(shrinkage.variances) * draws[1], (2, 1))
    again, _ = shrinkage.apply(truth + noise, np.where(shrinkage.pool, true_part + noise, shrinkable))
    errors = (again.max(axis=1) - truth.max(axis=1)).reshape(2, DRAWS)
    return float(np.max(np.quantile(errors, 1 - LOW_TAIL, axis=1)))


def _sum_interval(values: np.ndarray, variances: np.ndarray, terms: np.ndarray) -> tuple[float, float]:
    """A 95 % interval of the sum of independent estimates: Student's t at Satterthwaite's degrees
    of freedom, since a stratum gives only a few blocks and a normal quantile would be too narrow."""
    total, variance = float(values.sum()), float(variances.sum())
    half = float(_t_quantile(variance, float(terms.sum()))) * math.sqrt(variance)
    return max(total - half, 0.0), total + half


def _t_quantile(variance: np.ndarray | float, terms: np.ndarray | float) -> np.ndarray:
    """Student's t at Satterthwaite's degrees of freedom (variance^2 / terms), for 95 % two-sided."""
    variance, terms = np.asarray(variance, dtype=float), np.asarray(terms, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = np.where(terms > 0, variance**2 / np.where(terms > 0, terms, 1.0), np.inf)
    return stdtrit(np.maximum(dof, 1.0), (1 + LEVEL) / 2)


@dataclass
class Estimate:
    """Estimated totals of one partition-day (records, bytes, bytes and records per hour, and per
    hour the sampled offsets and the bytes found in them) with their variances, and the sums of
    variance^2 / degrees of freedom that give Satterthwaite's degrees of freedom when hours and
    partitions are added up. Estimates add: a topic-day is the sum of its partitions'."""

    totals: np.ndarray
    variance: np.ndarray
    variance_terms: np.ndarray

    @classmethod
    def exact(cls, tally: DayTally) -> Estimate:
        totals = np.zeros(WIDTH)
        totals[:TALLY_WIDTH] = _vector(tally)
        return cls(totals, np.zeros(WIDTH), np.zeros(WIDTH))

    @classmethod
    def zero(cls) -> Estimate:
        return cls(np.zeros(WIDTH), np.zeros(WIDTH), np.zeros(WIDTH))

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(
            self.totals + other.totals, self.variance + other.variance, self.variance_terms + other.variance_terms
        )

    @property
    def records(self) -> float:
        return float(self.totals[RECORDS])

    @property
    def bytes(self) -> float:
        return float(self.totals[BYTES])

    @property
    def hour_bytes(self) -> np.ndarray:
        return self.totals[HOURS]

    @property
    def hour_records(self) -> np.ndarray:
        return self.totals[HOUR_RECORDS]

    @property
    def late(self) -> float:
        return float(self.totals[LATE])

    @property
    def hour_variances(self) -> np.ndarray:
        """The variance of each hour's bytes; they add up to the day's."""
        return self.variance[HOURS]

    @property
    def hour_dof_terms(self) -> np.ndarray:
        return self.variance_terms[HOURS]

    @property
    def hour_offsets(self) -> np.ndarray:
        """Per hour, the offsets of sampled partitions between the broker's hour edges."""
        return self.totals[HOUR_OFFSETS]

    @property
    def hour_offset_bytes(self) -> np.ndarray:
        """Per hour, the bytes of the day estimated in those offsets (out-of-order records
        included, whatever hour they are stamped in)."""
        return self.totals[HOUR_OFFSET_BYTES]

    def half_widths(self, tail: float = 0.025) -> np.ndarray:
        """Half-widths of two-sided intervals with `tail` outside on each side: Student's t at
        Satterthwaite's degrees of freedom, since a stratum gives only a few blocks and a normal
        quantile would make the intervals too narrow."""
        with np.errstate(divide="ignore", invalid="ignore"):
            dof = np.where(self.variance_terms > 0, self.variance**2 / self.variance_terms, np.inf)
        return stdtrit(np.maximum(dof, 1.0), 1 - tail) * np.sqrt(self.variance)

    def intervals(self, hours_read: np.ndarray | None = None) -> DayIntervals:
        """The day's bytes and peak with their 95 % intervals (`day_intervals` on its hours)."""
        return day_intervals(
            self.hour_bytes,
            self.hour_variances,
            self.hour_dof_terms,
            self.hour_offsets,
            self.hour_offset_bytes,
            hours_read,
        )

    def peak(self, hours_read: np.ndarray | None = None) -> tuple[int, float, float, float]:
        """(busiest hour, its bytes/s, and a 95 % interval of the busiest hour's bytes/s), over
        the hours in `hours_read` (all by default). See `busiest`."""
        day = self.intervals(hours_read)
        return day.peak_hour, day.peak, day.peak_low, day.peak_high

    def bytes_interval(self, hours_read: np.ndarray | None = None) -> tuple[float, float]:
        """A 95 % interval of the bytes of the hours in `hours_read` (all by default), as
        `intervals` gives it, without the busiest hour's bootstrap."""
        read = np.ones(HOURS_PER_DAY, dtype=bool) if hours_read is None else np.asarray(hours_read, dtype=bool)
        return _sum_interval(self.hour_bytes * read, self.hour_variances * read, self.hour_dof_terms * read)


def estimate(strata: list[Stratum], blocks: list[Block], tallies: list[DayTally]) -> Estimate:
    """Combines the sampled blocks' tallies (in `blocks`' order) into the partition-day's totals.

    A segment sure to get a block (its blocks x the stratum's sampling rate >= 1: the systematic
    sample gives it that many, give or take one) is its own post-stratum. One smaller than the
    sampling interval may get no block: an hour then takes its stratum's records, bytes and late
    records per offset, all stamped in that hour (exact at a constant size and density, where an
    expansion of its own block would not be); the skew tail, whose records are mostly the next
    day's, is expanded by its inclusion probability (Horvitz-Thompson: no bias).
    """
    sampled = _SampledBlocks.of(blocks, tallies)
    found: list[_Found] = []
    squares = np.zeros((len(strata), TALLY_WIDTH))  # residual sums of squares, pooled per stratum
    dofs = np.zeros(len(strata))
    for number, stratum in enumerate(strata):
        of_stratum, squares[number], dofs[number] = _estimate_stratum(number, stratum, sampled)
        found += of_stratum
    return _combine(found, _Pool.of(squares, dofs))


@dataclass(frozen=True)
class _SampledBlocks:
    """The sampled blocks as arrays, one row per block, so a stratum's or segment's are a mask away."""

    values: np.ndarray  # records, bytes, 24 hour bytes and records, late records
    lengths: np.ndarray  # in offsets
    stratum_of: np.ndarray
    segment_of: np.ndarray

    @classmethod
    def of(cls, blocks: list[Block], tallies: list[DayTally]) -> _SampledBlocks:
        """The arrays of `blocks` and their tallies, in the same order."""
        return cls(
            np.array([_vector(t) for t in tallies], dtype=float).reshape(len(tallies), TALLY_WIDTH),
            np.array([b.end - b.start for b in blocks], dtype=float),
            np.array([b.stratum for b in blocks], dtype=int),
            np.array([b.segment for b in blocks], dtype=int),
        )


@dataclass(frozen=True)
class _Found:
    """One segment's estimated totals, and how they were found: what its variance depends on."""

    stratum: int
    segment: Segment
    sampled: int  # blocks read in it; 0: borrowed from its stratum's hours; -1: expanded by inclusion
    totals: np.ndarray
    inclusion: float  # each of its stratum's blocks' chance to be read


@dataclass(frozen=True)
class _Pool:
    """Residual sums of squares and their degrees of freedom per stratum, and the day's."""

    squares: np.ndarray
    dofs: np.ndarray
    day_squares: np.ndarray
    day_dof: float

    @classmethod
    def of(cls, squares: np.ndarray, dofs: np.ndarray) -> _Pool:
        """The pool of the strata's residuals, the day's being their sum."""
        return cls(squares, dofs, squares.sum(axis=0), float(dofs.sum()))

    def pooled(self, number: int) -> tuple[np.ndarray | None, float]:
        """A stratum's block-to-block variance (None when the day has no residual to pool) and
        its degrees of freedom: its own blocks' with the day's pool added as a prior, since an
        hour has only a few blocks and blocks of one partition vary alike at any hour."""
        prior = min(VARIANCE_PRIOR_DOF, self.day_dof)
        pooled = (
            (self.squares[number] + prior * self.day_squares / self.day_dof) / (self.dofs[number] + prior)
            if self.day_dof > 0
            else None
        )
        return pooled, min(self.dofs[number] + prior, self.day_dof)


def _estimate_stratum(number: int, stratum: Stratum, sampled: _SampledBlocks) -> tuple[list[_Found], np.ndarray, float]:
    """Each segment of a stratum estimated from the blocks read in it (or borrowed, or expanded),
    and the residual sum of squares and degrees of freedom the stratum adds to the pool."""
    found: list[_Found] = []
    squares, dof = np.zeros(TALLY_WIDTH), 0.0
    in_stratum = sampled.stratum_of == number
    chosen = int(in_stratum.sum())
    hour_segments = [segment.index for segment in stratum.segments if segment.hour is not None]
    in_hours = in_stratum & np.isin(sampled.segment_of, hour_segments)
    for segment in stratum.segments if chosen else ():
        if not segment.offsets:
            continue
        mask = in_stratum & (sampled.segment_of == segment.index)
        read = int(mask.sum())
        y, span = sampled.values[mask], sampled.lengths[mask]
        inclusion = min(chosen / stratum.blocks, 1.0)  # each block's chance to be read
        if segment.blocks * inclusion >= 1 and read:
            ratio = y.sum(axis=0) / span.sum()
            if read >= 2:
                squares += ((y - np.outer(span, ratio)) ** 2).sum(axis=0)
                dof += read - 1
            found.append(_Found(number, segment, read, ratio * segment.offsets, inclusion))
        elif segment.hour is not None and in_hours.any():
            found.append(_Found(number, segment, 0, _borrowed(sampled, in_hours, segment), inclusion))
        else:
            found.append(_Found(number, segment, -1, y.sum(axis=0) / inclusion, inclusion))
    return found, squares, dof


def _borrowed(sampled: _SampledBlocks, in_hours: np.ndarray, segment: Segment) -> np.ndarray:
    """An hour without a block of its own: its stratum's records, bytes and late records per
    offset, all stamped in that hour (exact at a constant size and density)."""
    rate = sampled.values[in_hours].sum(axis=0) / sampled.lengths[in_hours].sum()
    totals = np.zeros(TALLY_WIDTH)
    for position, hours in ((RECORDS, HOUR_RECORDS), (BYTES, HOURS)):
        totals[position] = totals[hours.start + segment.hour] = rate[position] * segment.offsets
    totals[LATE] = rate[LATE] * segment.offsets
    return totals


def _combine(found: list[_Found], pool: _Pool) -> Estimate:
    """The partition-day's totals and variances: the segments' sums, the day's those of its hours."""
    result = Estimate.zero()
    for item in found:
        result.totals[:TALLY_WIDTH] += item.totals
        if item.sampled > 0 and item.segment.hour is not None:
            result.totals[HOUR_OFFSETS.start + item.segment.hour] += item.segment.offsets
            result.totals[HOUR_OFFSET_BYTES.start + item.segment.hour] += item.totals[BYTES]
        variance = _segment_variance(item, *pool.pooled(item.stratum))
        if variance is not None:
            _allocate(result, item.totals, *variance)
    # The day is its hours: its variance is theirs (out-of-order records' covariance left out).
    result.variance[RECORDS], result.variance[BYTES] = result.variance[HOUR_RECORDS].sum(), result.hour_variances.sum()
    result.variance_terms[RECORDS] = result.variance_terms[HOUR_RECORDS].sum()
    result.variance_terms[BYTES] = result.hour_dof_terms.sum()
    return result


def _segment_variance(item: _Found, pooled: np.ndarray | None, dof: float) -> tuple[np.ndarray, float] | None:
    """A segment's variance and its degrees of freedom, or None when it has none (read whole, or
    nothing to pool)."""
    segment, sampled = item.segment, item.sampled
    if sampled < 0:  # at most one block, read with probability pi: y^2 (1 - pi) / pi^2
        return item.totals**2 * (1 - item.inclusion), 1.0
    if pooled is None:
        return None
    if sampled == 0:  # borrowed: as uncertain as one block of its own
        return segment.blocks**2 * pooled, dof
    if sampled >= segment.blocks:
        return None
    return segment.blocks**2 * (1 - sampled / segment.blocks) / sampled * pooled, dof


def _allocate(result: Estimate, totals: np.ndarray, variance: np.ndarray, dof: float) -> None:
    """The segment's variance, spread over the hours its records are stamped in."""
    for position, hours in ((RECORDS, HOUR_RECORDS), (BYTES, HOURS)):
        if totals[position] > 0:
            allocated = variance[position] * totals[hours] / totals[position]
            result.variance[hours] += allocated
            result.variance_terms[hours] += allocated**2 / dof
    result.variance[LATE] += variance[LATE]
    result.variance_terms[LATE] += variance[LATE] ** 2 / dof


def _vector(tally: DayTally) -> np.ndarray:
    return np.array([tally.records, tally.bytes, *tally.hour_bytes, *tally.hour_records, tally.late], dtype=float)
