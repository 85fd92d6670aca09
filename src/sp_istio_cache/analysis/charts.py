"""Chart building blocks: units on axes, saving, simple bar charts (module sections, smoke).

Every chart is drawn with matplotlib's object API (``Figure`` + the Agg canvas: no pyplot state,
no window, nothing shown) and written as a PNG whose path is returned. Sizes are labelled in
B/KiB/MiB, latencies in µs/ms. The benchmark and tuning charts are in
:mod:`sp_istio_cache.analysis.bench_charts` and :mod:`sp_istio_cache.analysis.tuning_charts`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

MIB = 1024 * 1024
VARIANT_STYLE = {
    "baseline": {"color": "black", "linestyle": "-", "marker": "s"},
    "filter-off": {"color": "0.55", "linestyle": "-", "marker": "x"},
    "filter": {"linestyle": "-", "marker": "o"},
    "envoy-cache": {"linestyle": "--", "marker": "^"},
    "floor": {"color": "0.35", "linestyle": ":", "marker": ""},
}
OUTCOME_COLORS = {"HIT": "tab:green", "MISS": "tab:red", "BYPASS": "tab:orange", "NONE": "black"}
SERIES_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:cyan")


class ChartError(ValueError):
    """The data cannot make this chart (e.g. no cell of a needed variant); names what is missing."""


def human_bytes(n: float, _pos: Any = None) -> str:
    """``1024`` → ``1 KiB``, ``1048576`` → ``1 MiB``, ``512`` → ``512 B``, ``1536`` → ``1.5 KiB``."""
    for unit, scale in (("MiB", MIB), ("KiB", 1024)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if float(value).is_integer() else f"{value:.1f} {unit}"
    return f"{n:.0f} B"


def human_us(us: float, _pos: Any = None) -> str:
    """Microseconds for people: ``850`` → ``850 µs``, ``1500`` → ``1.5 ms``, ``2e6`` → ``2 s``."""
    if us is None or (isinstance(us, float) and math.isnan(us)):
        return "–"
    for unit, scale in (("s", 1e6), ("ms", 1e3)):
        if abs(us) >= scale:
            value = us / scale
            return f"{value:,.0f} {unit}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.3g} {unit}"
    return f"{us:,.0f} µs"


def size_axis(ax: Any, sizes: Iterable[float], label: str = "response payload size") -> None:
    """Sizes on the x axis: log₂ when they span a decade, ticks at the measured sizes."""
    sizes = sorted({float(s) for s in sizes if s and s > 0})
    if len(sizes) > 1 and sizes[-1] / sizes[0] >= 10:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.xaxis.set_major_formatter(FuncFormatter(human_bytes))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(sizes) > 6:
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel(label)


def latency_axis(ax: Any, values: Iterable[float], *, log: bool = True) -> None:
    """A latency y axis with µs/ms labels. On a log scale the limits are whole decades around the
    data (bars start at the lower decade, never cut off) with 1-2-5 ticks."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v)) and float(v) > 0]
    ax.yaxis.set_major_formatter(FuncFormatter(human_us))
    if not log or not vals:
        return
    ax.set_yscale("log")
    low = 10 ** math.floor(math.log10(min(vals)))
    high = 10 ** math.ceil(math.log10(max(vals) * 1.05))
    ax.set_ylim(low, high if high > low else low * 10)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(human_us))
    ax.yaxis.set_minor_formatter(NullFormatter())


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def error_bars(frame: pd.DataFrame, metric: str) -> np.ndarray:
    """``yerr`` for ``ax.errorbar`` from ``<metric>_median`` / ``_ci_low`` / ``_ci_high`` columns."""
    med = frame[f"{metric}_median"].to_numpy(dtype=float)
    low = np.nan_to_num(med - frame[f"{metric}_ci_low"].to_numpy(dtype=float))
    high = np.nan_to_num(frame[f"{metric}_ci_high"].to_numpy(dtype=float) - med)
    return np.vstack([np.clip(low, 0, None), np.clip(high, 0, None)])


def bar_chart(labels: Sequence[str], values: Sequence[float], *, path: Path, title: str, xlabel: str,
              annotate: str = "{:,.1f}") -> Path:
    """A horizontal bar chart (the wasm module's sections)."""
    if not labels:
        raise ChartError(f"{title}: nothing to chart")
    fig = Figure(figsize=(8, 0.45 * len(labels) + 1.6))
    ax = fig.subplots()
    bars = ax.barh(list(labels), list(values), color="tab:blue")
    for bar, value in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + annotate.format(value),
                va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    return save(fig, path)


def grouped_bar_chart(frame: pd.DataFrame, *, x: str, groups: str, value: str, path: Path, title: str,
                      ylabel: str, log: bool = False, high: str | None = None) -> Path:
    """Vertical bars of ``value`` (µs) per ``x`` category, one bar per ``groups`` value, each
    labelled with its value; ``high`` (a column) adds a whisker up to it (e.g. the max). On a log
    scale the axis spans whole decades around the data, so no bar is cut off."""
    if frame.empty:
        raise ChartError(f"{title}: nothing to chart")
    cats = list(dict.fromkeys(frame[x]))
    keys = list(dict.fromkeys(frame[groups]))
    width = 0.8 / len(keys)
    fig = Figure(figsize=(max(6, 1.8 * len(cats) + 2), 4.4))
    ax = fig.subplots()
    for i, key in enumerate(keys):
        g = frame[frame[groups] == key].set_index(x).reindex(cats)
        xs = np.arange(len(cats)) + i * width - 0.4 + width / 2
        yerr = None
        if high is not None:
            yerr = np.vstack([np.zeros(len(g)), np.clip(g[high].to_numpy(float) - g[value].to_numpy(float), 0, None)])
        bars = ax.bar(xs, g[value], width, yerr=yerr, capsize=3, label=str(key), color=OUTCOME_COLORS.get(str(key)),
                      error_kw={"elinewidth": 0.8, "ecolor": "0.3"})
        ax.bar_label(bars, labels=[human_us(v) for v in g[value]], fontsize=7, padding=2)
    ax.set_xticks(np.arange(len(cats)))
    ax.set_xticklabels([str(c) for c in cats])
    shown = list(frame[value]) + (list(frame[high]) if high else [])
    latency_axis(ax, shown, log=log)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(True, axis="y", which="major", alpha=0.3)
    return save(fig, path)
