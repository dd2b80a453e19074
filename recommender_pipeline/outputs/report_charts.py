"""One topic's stored days as an SVG chart (log scale, bytes/s), for inlining in the HTML report.

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

import pandas as pd

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
    """Daily peak (with its 95 % interval where estimated) and average ingress over the topic's
    stored days, against capacity x current and x recommended partitions; `history` has the
    store's columns date, peak_ingress_bytes_per_sec, avg_ingress_bytes_per_sec, peak_ci_low,
    peak_ci_high (bytes/s).

    The y axis is logarithmic: a topic's traffic is often orders of magnitude below what its
    partitions take, and on a linear axis it would be a flat line on zero under the capacity."""
    # Imported here: matplotlib takes half a second to import, and only the reports draw.
    import matplotlib
    from matplotlib.dates import DateFormatter, DayLocator
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    matplotlib.use("Agg")  # never a GUI backend in a step process (pyplot is not used, but a caller may)
    with matplotlib.rc_context(SVG_STYLE):
        figure = Figure(figsize=(7.2, 2.6), dpi=72)
        axes = figure.add_subplot()
        if len(history):
            days = pd.to_datetime(history["date"])
            low = history["peak_ci_low"].astype(float)
            high = history["peak_ci_high"].astype(float)
            estimated = low.notna() & high.notna() & (high > low)
            if estimated.any():
                axes.fill_between(
                    days[estimated], low[estimated], high[estimated], color=PEAK, alpha=0.15, label="peak 95 % interval"
                )
            for column, color, size, label in (
                ("peak_ingress_bytes_per_sec", PEAK, 3, "daily peak"),
                ("avg_ingress_bytes_per_sec", AVERAGE, 2, "daily average"),
            ):
                axes.plot(
                    days,
                    history[column].astype(float),
                    color=color,
                    marker="o",
                    markersize=size,
                    linewidth=size / 2,
                    label=label,
                )
            first, last = days.min(), days.max()
        else:
            first = last = pd.Timestamp(lines.forecast_day or date.today())
        if lines.capacity_now > 0:
            axes.axhline(lines.capacity_now, color=NOW, linestyle="--", linewidth=1, label="capacity x now")
        if lines.capacity_recommended > 0 and not math.isclose(lines.capacity_recommended, lines.capacity_now):
            axes.axhline(
                lines.capacity_recommended,
                color=RECOMMENDED,
                linestyle=":",
                linewidth=1.5,
                label="capacity x recommended",
            )
        if lines.forecast_day is not None and lines.forecast_peak is not None and lines.forecast_peak > 0:
            forecast_day = pd.Timestamp(lines.forecast_day)
            axes.plot(
                [forecast_day],
                [lines.forecast_peak],
                color=FORECAST,
                marker="D",
                markersize=5,
                linestyle="none",
                label="forecast peak",
            )
            last = max(last, forecast_day)
        if any(y > 0 for line in axes.get_lines() for y in line.get_ydata()):
            # Set once everything is drawn, so that no line is placed on a log axis without data;
            # zero days (nothing produced) are left out, not drawn at -infinity.
            axes.set_yscale("log", nonpositive="mask")
        # Whole days only, half a day of margin either side, at most about 8 ticks.
        span = (last - first).days
        axes.set_xlim(first - timedelta(hours=12), last + timedelta(hours=12))
        axes.xaxis.set_major_locator(DayLocator(interval=max(1, math.ceil((span + 1) / 8))))
        axes.xaxis.set_major_formatter(DateFormatter("%b %d"))
        axes.yaxis.set_major_formatter(EngFormatter(unit="B/s"))  # 1 kB/s, 10 MB/s: decimal decades
        axes.set_title(title, loc="left", fontsize=9)
        axes.grid(axis="y", linewidth=0.4, alpha=0.5)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        # Fixed margins (the legend on the right): tight_layout would double a chart's drawing time.
        figure.subplots_adjust(left=0.11, right=0.76, bottom=0.12, top=0.88)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return _METADATA.sub("", _XML_PROLOGUE.sub("", buffer.getvalue(), count=1), count=1)
