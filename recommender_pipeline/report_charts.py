"""One topic's stored days as an SVG chart, for inlining in the HTML report.

The report must open with no network, so each chart is matplotlib's SVG text placed in the page
(no image files, no script). Text stays text (`svg.fonttype: none`), which keeps a chart to a few
tens of kB, and the hash salt is fixed, so the same data always gives the same bytes. The figure
is built without pyplot: pyplot keeps global state and is not safe in a multi-threaded step.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from datetime import date, timedelta

import matplotlib
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from recommender_pipeline.model import to_mib

matplotlib.use("Agg")  # never a GUI backend in a step process (pyplot is not used, but a caller may)

SVG_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "recommender-pipeline", "font.size": 8}
PEAK, AVERAGE, NOW, RECOMMENDED, FORECAST = "#c0392b", "#2874a6", "#7f8c8d", "#1e8449", "#8e44ad"
_XML_PROLOGUE = re.compile(r"\A.*?(?=<svg)", re.DOTALL)
# matplotlib's RDF block: a page of namespace URLs per chart, and nothing a reader sees.
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)


@dataclass(frozen=True)
class ChartLines:
    """The horizontal lines and the forecast point drawn over a topic's days, in bytes/s."""

    capacity_now: float  # the peak the current partitions take under the model
    capacity_recommended: float  # the peak the recommended partitions take
    forecast_day: date | None = None
    forecast_peak: float | None = None


def topic_chart_svg(history: pd.DataFrame, lines: ChartLines, title: str) -> str:
    """Daily peak (with its 95 % interval where estimated) and average ingress in MiB/s over the
    topic's stored days, against capacity x current and x recommended partitions; `history` has
    the store's columns date, peak_ingress_bytes_per_sec, avg_ingress_bytes_per_sec, peak_ci_low,
    peak_ci_high."""
    with matplotlib.rc_context(SVG_STYLE):
        figure = Figure(figsize=(7.2, 2.6), dpi=72)
        axes = figure.add_subplot()
        days = pd.to_datetime(history["date"]) if len(history) else pd.Series([], dtype="datetime64[ns]")
        peak = history["peak_ingress_bytes_per_sec"].astype(float).map(to_mib) if len(history) else []
        average = history["avg_ingress_bytes_per_sec"].astype(float).map(to_mib) if len(history) else []
        if len(history):
            low = history["peak_ci_low"].astype(float).map(to_mib)
            high = history["peak_ci_high"].astype(float).map(to_mib)
            estimated = low.notna() & high.notna()
            if estimated.any():
                axes.fill_between(
                    days[estimated], low[estimated], high[estimated], color=PEAK, alpha=0.15, label="peak 95 % interval"
                )
            axes.plot(days, peak, color=PEAK, marker="o", markersize=3, linewidth=1.5, label="daily peak")
            axes.plot(days, average, color=AVERAGE, marker="o", markersize=2, linewidth=1, label="daily average")
        axes.axhline(to_mib(lines.capacity_now), color=NOW, linestyle="--", linewidth=1, label="capacity x now")
        if not math.isclose(lines.capacity_recommended, lines.capacity_now):
            axes.axhline(
                to_mib(lines.capacity_recommended),
                color=RECOMMENDED,
                linestyle=":",
                linewidth=1.5,
                label="capacity x recommended",
            )
        if lines.forecast_day is not None and lines.forecast_peak is not None and not pd.isna(lines.forecast_peak):
            axes.plot(
                [pd.Timestamp(lines.forecast_day)],
                [to_mib(lines.forecast_peak)],
                color=FORECAST,
                marker="D",
                markersize=5,
                linestyle="none",
                label="forecast peak",
            )
        if len(history) == 1:  # one day: give the axis a day either side instead of a point-wide range
            only = pd.Timestamp(history["date"].iloc[0])
            axes.set_xlim(only - timedelta(days=1), only + timedelta(days=1))
        locator = AutoDateLocator(maxticks=8)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes.set_ylim(bottom=0)
        axes.set_ylabel("MiB/s")
        axes.set_title(title, loc="left", fontsize=9)
        axes.grid(axis="y", linewidth=0.4, alpha=0.5)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        # Fixed margins (the legend on the right): tight_layout would double a chart's drawing time.
        figure.subplots_adjust(left=0.08, right=0.76, bottom=0.14, top=0.88)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return _METADATA.sub("", _XML_PROLOGUE.sub("", buffer.getvalue(), count=1), count=1)
