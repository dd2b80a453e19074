"""Stratified block sampling of a partition-day that holds more records than the budget.

The day's offsets are cut into strata at the broker's hour boundaries (plus the skew tail after
the day's end), and each stratum into blocks of consecutive offsets of (nearly) equal length. A
systematic sample of blocks (evenly spaced, from a random start) is read from every stratum, at
least two, in proportion to its offsets; a stratum no bigger than its share is read whole.

Each sampled block contributes what it held *of the day*, by record timestamp (records, bytes,
bytes per hour), and its length in offsets. Within a stratum the total is the offsets times the
ratio of what the sampled blocks held to the offsets they spanned. Because a block is a fixed
span of offsets, not "the next N records", transaction markers, aborted batches and compaction
gaps thin it exactly as often as they thin the stratum: the estimator has no bias from gaps (the
old per-slice ratio stopped on a data record and overstated dense slices).

The variance is the ratio estimator's under simple random sampling (conservative for a
systematic sample of a trending log), with the finite-population correction; strata add. The
95 % interval is the estimate +/- Student's t (at Satterthwaite's degrees of freedom) standard
errors. The peak is the busiest estimated hour;
its interval runs from the largest hourly low to the largest hourly high.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from recommender_pipeline.measuring.attribution import DayTally
from recommender_pipeline.measuring.days import HOUR_MS, HOURS_PER_DAY

TARGET_BLOCKS = 96  # blocks read per sampled partition: each round of blocks is one fetch round trip
MIN_BLOCK_OFFSETS = 4
# Reading this many records costs about one round of blocks (a fetch round trip, 2-3 ms on a
# local broker, where a plain read runs at 600,000-900,000 records/s): below that many offsets per
# round, reading whole is cheaper. Rounded up, since at equal cost the exact read has no error.
RECORDS_PER_ROUND_TRIP = 2_000
EXACT_UP_TO = 2  # and never sample a day of less than twice the budget
MIN_BLOCKS_PER_STRATUM = 8


@dataclass(frozen=True)
class Block:
    stratum: int
    start: int
    end: int


@dataclass(frozen=True)
class Stratum:
    start: int
    end: int
    blocks: int  # how many blocks the stratum is cut into

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


def plan_blocks(edges: list[int], budget: int, rng: random.Random) -> tuple[list[Stratum], list[Block]]:
    """Strata between consecutive `edges` (offsets, ascending) and the blocks to read in them.

    About `budget` offsets are read in all; a stratum whose share covers it is read whole.
    Neighbouring edges are merged until a stratum gets `MIN_BLOCKS_PER_STRATUM` blocks: its
    variance is estimated from its own blocks, and two or three would make that guess wild.
    """
    total = edges[-1] - edges[0]
    length = block_length(budget)
    per_stratum = MIN_BLOCKS_PER_STRATUM * length * total / max(budget, 1)
    merged = [edges[0]]
    for edge in edges[1:-1]:
        if edge - merged[-1] >= per_stratum and edges[-1] - edge >= per_stratum:
            merged.append(edge)
    merged.append(edges[-1])
    strata, blocks = [], []
    for index, (start, end) in enumerate(itertools.pairwise(merged)):
        offsets = end - start
        count = max(1, math.ceil(offsets / length)) if offsets > 0 else 0
        strata.append(Stratum(start, end, count))
        if not count:
            continue
        share = max(2, round(budget * offsets / total / length)) if total else count
        if share >= count:
            chosen: Iterable[int] = range(count)
        else:  # systematic: evenly spaced from a random start, so no part of the stratum is skipped
            start_at = rng.random()
            chosen = [int((i + start_at) * count / share) for i in range(share)]
        blocks += [Block(index, start + offsets * i // count, start + offsets * (i + 1) // count) for i in chosen]
    return strata, blocks


# Positions in the vectors: records, bytes, bytes per hour, records per hour, late records.
RECORDS, BYTES = 0, 1
HOURS = slice(2, 2 + HOURS_PER_DAY)
HOUR_RECORDS = slice(HOURS.stop, HOURS.stop + HOURS_PER_DAY)
LATE = HOUR_RECORDS.stop
WIDTH = LATE + 1


@dataclass
class Estimate:
    """Estimated totals of one partition-day (records, bytes, bytes and records per hour) with their
    variances, and the sums of variance^2 / degrees of freedom that give Satterthwaite's degrees
    of freedom when strata and partitions are added up."""

    totals: np.ndarray
    variance: np.ndarray
    variance_terms: np.ndarray

    @classmethod
    def exact(cls, tally: DayTally) -> Estimate:
        return cls(_vector(tally), np.zeros(WIDTH), np.zeros(WIDTH))

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

    def half_widths(self, tail: float = 0.025) -> np.ndarray:
        """Half-widths of two-sided intervals with `tail` outside on each side: Student's t at
        Satterthwaite's degrees of freedom, since a stratum gives only a few blocks and a normal
        quantile would make the intervals too narrow."""
        with np.errstate(divide="ignore", invalid="ignore"):
            dof = np.where(self.variance_terms > 0, self.variance**2 / self.variance_terms, np.inf)
        return stats.t.ppf(1 - tail, np.maximum(dof, 1.0)) * np.sqrt(self.variance)

    def peak(self, hours_read: np.ndarray | None = None) -> tuple[int, float, float, float]:
        """(busiest hour, its bytes/s, and a 95 % interval of the busiest hour's bytes/s).

        The true peak is the largest true hour, whichever it is: when every hour's interval holds
        its truth, the largest of the lows and the largest of the highs hold the peak. Only hours
        that could be the busiest matter, so their intervals are widened together (Bonferroni)
        to hold all at once 95 % of the time. (The busiest estimate alone is biased up: it is
        the hour whose noise was largest.) `hours_read` limits it to the hours a capture read.
        """
        read = np.ones(HOURS_PER_DAY, dtype=bool) if hours_read is None else hours_read
        hours, half = self.hour_bytes * read, self.half_widths()[HOURS] * read
        contenders = int(np.sum(read & (hours + half >= np.max(hours - half))))
        if contenders > 1:
            half = self.half_widths(0.025 / contenders)[HOURS] * read
        hour = int(np.argmax(hours))
        seconds = HOUR_MS / 1000
        low = float(np.max(np.maximum(hours - half, 0.0)))
        high = float(np.max(hours + half))
        return hour, float(hours[hour]) / seconds, low / seconds, high / seconds

    def bytes_interval(self) -> tuple[float, float]:
        half = float(self.half_widths()[BYTES])
        return max(self.bytes - half, 0.0), self.bytes + half


def estimate(strata: list[Stratum], blocks: list[Block], tallies: list[DayTally]) -> Estimate:
    """Combines the sampled blocks' tallies (in `blocks`' order) into the partition-day's totals."""
    # One row per block: records, bytes, 24 hour bytes and records, late records; and its length in offsets.
    values = np.array([_vector(t) for t in tallies], dtype=float).reshape(len(tallies), WIDTH)
    lengths = np.array([b.end - b.start for b in blocks], dtype=float)
    which = np.array([b.stratum for b in blocks], dtype=int)
    result = Estimate.zero()
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
            variance = stratum.blocks**2 * (1 - sampled / stratum.blocks) * (residuals**2).sum(axis=0) / dof / sampled
            result.variance += variance
            result.variance_terms += variance**2 / dof
    return result


def _vector(tally: DayTally) -> np.ndarray:
    return np.array([tally.records, tally.bytes, *tally.hour_bytes, *tally.hour_records, tally.late], dtype=float)
