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
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SVG_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "recommender-pipeline", "font.size": 8}
PEAK, AVERAGE, NOW, RECOMMENDED, FORECAST = "#c0392b", "#2874a6", "#7f8c8d", "#1e8449", "#8e44ad"
EGRESS = "#d35400"
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
    # When fan-out binds: the reads of each byte (every group's), drawn as the daily peak times
    # it, against capacity lines in egress terms, so the chart shows the series the need came from.
    fan_out: float | None = None
    capacity_label: str = "capacity"


def binary_ticks(low: float, high: float) -> list[float]:
    """Tick values on a log axis from `low` to `high` in round binary units: 1, 10 and 100 B/s,
    KiB/s, MiB/s..., with 2 and 5 of each added while fewer than three fall inside."""
    for multiples in ((1, 10, 100), (1, 2, 5, 10, 20, 50, 100, 200, 500)):
        ticks = [m * 1024.0**n for n in range(5) for m in multiples if low <= m * 1024.0**n <= high]
        if len(ticks) >= 3:
            break
    return ticks


def axis_rate(value: float, _position: object = None) -> str:
    """A tick label in the panel's binary units: 512 B/s, 1 KiB/s, 97.7 KiB/s, 1.5 MiB/s."""
    for unit, size in (("GiB/s", 1024**3), ("MiB/s", 1024**2), ("KiB/s", 1024)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.3g} B/s"


def topic_chart_svg(history: pd.DataFrame, lines: ChartLines, title: str) -> str:
    """Daily peak (with its 95 % interval where estimated) and average ingress over the topic's
    stored days, against capacity x current and x recommended partitions; `history` has the
    store's columns date, peak_ingress_bytes_per_sec, avg_ingress_bytes_per_sec, peak_ci_low,
    peak_ci_high (bytes/s).

    The y axis is logarithmic: a topic's traffic is often orders of magnitude below what its
    partitions take, and on a linear axis it would be a flat line on zero under the capacity."""
    # Imported here: matplotlib takes half a second to import, and only the reports draw.
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.use("Agg")  # never a GUI backend in a step process (pyplot is not used, but a caller may)
    with matplotlib.rc_context(SVG_STYLE):
        figure = Figure(figsize=(7.2, 2.6), dpi=72)
        axes = figure.add_subplot()
        if len(history):
            first, last = _draw_history(axes, history, lines)
        else:
            first = last = pd.Timestamp(lines.forecast_day or date.today())
        _draw_capacity(axes, lines)
        last = _draw_forecast(axes, lines, last)
        _format_axes(axes, first, last, title)
        # Fixed margins (the legend on the right): tight_layout would double a chart's drawing time.
        figure.subplots_adjust(left=0.11, right=0.76, bottom=0.12, top=0.88)
        svg = _svg_text(figure)
    return _METADATA.sub("", _XML_PROLOGUE.sub("", svg, count=1), count=1)


def _draw_history(axes: Axes, history: pd.DataFrame, lines: ChartLines) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Draws the stored days (interval band, peak, average, egress) and returns their first and
    last day, which bound the x axis."""
    days = pd.to_datetime(history["date"])
    low = history["peak_ci_low"].astype(float)
    high = history["peak_ci_high"].astype(float)
    estimated = low.notna() & high.notna() & (high > low)
    if estimated.any():
        axes.fill_between(
            days[estimated], low[estimated], high[estimated], color=PEAK, alpha=0.15, label="peak 95 % interval"
        )
    series = [
        (history["peak_ingress_bytes_per_sec"].astype(float), PEAK, 3, "daily peak"),
        (history["avg_ingress_bytes_per_sec"].astype(float), AVERAGE, 2, "daily average"),
    ]
    if lines.fan_out:
        egress = history["peak_ingress_bytes_per_sec"].astype(float) * lines.fan_out
        series.insert(0, (egress, EGRESS, 3, f"daily peak x fan-out {lines.fan_out:g} (egress)"))
    for values, color, size, label in series:
        axes.plot(
            days,
            values,
            color=color,
            marker="o",
            markersize=size,
            linewidth=size / 2,
            label=label,
        )
    return days.min(), days.max()


def _draw_capacity(axes: Axes, lines: ChartLines) -> None:
    """Draws the capacity lines; the recommended one only where it differs from now's."""
    if lines.capacity_now > 0:
        axes.axhline(lines.capacity_now, color=NOW, linestyle="--", linewidth=1, label=f"{lines.capacity_label} x now")
    if lines.capacity_recommended > 0 and not math.isclose(lines.capacity_recommended, lines.capacity_now):
        axes.axhline(
            lines.capacity_recommended,
            color=RECOMMENDED,
            linestyle=":",
            linewidth=1.5,
            label=f"{lines.capacity_label} x recommended",
        )


def _draw_forecast(axes: Axes, lines: ChartLines, last: pd.Timestamp) -> pd.Timestamp:
    """Draws the forecast point, if any, and returns the last day the x axis must reach."""
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
    return last


def _format_axes(axes: Axes, first: pd.Timestamp, last: pd.Timestamp, title: str) -> None:
    """Scales, ticks and labels the axes once everything is drawn on them."""
    from matplotlib.dates import DateFormatter, DayLocator
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    if any(y > 0 for line in axes.get_lines() for y in line.get_ydata()):
        # Set once everything is drawn, so that no line is placed on a log axis without data;
        # zero days (nothing produced) are left out, not drawn at -infinity.
        axes.set_yscale("log", nonpositive="mask")
    # Whole days only, half a day of margin either side, at most about 8 ticks.
    span = (last - first).days
    axes.set_xlim(first - timedelta(hours=12), last + timedelta(hours=12))
    axes.xaxis.set_major_locator(DayLocator(interval=max(1, math.ceil((span + 1) / 8))))
    axes.xaxis.set_major_formatter(DateFormatter("%b %d"))
    # Binary units as in the panel beside it (KiB/s, MiB/s): ticks at 1, 10, 100 of each unit
    # (2 and 5 too on a narrow axis), never "1 kB/s" beside "4x10^2".
    if axes.get_yscale() == "log":
        axes.yaxis.set_major_locator(FixedLocator(binary_ticks(*axes.get_ylim())))
        axes.yaxis.set_minor_formatter(NullFormatter())
    axes.yaxis.set_major_formatter(FuncFormatter(axis_rate))
    axes.set_title(title, loc="left", fontsize=9)
    axes.grid(axis="y", linewidth=0.4, alpha=0.5)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)


def _svg_text(figure: Figure) -> str:
    """The figure as SVG text, with no date or creator so the same data gives the same bytes."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()
