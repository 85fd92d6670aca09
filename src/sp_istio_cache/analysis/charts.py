"""Charts of a benchmark run, drawn from its files (results table, per-cell samples).

Every function draws one PNG with matplotlib's object API (``Figure`` + the Agg canvas: no
pyplot state, no window, nothing shown) and returns the path it wrote. Latencies are in µs
(from the HDR histograms), sizes in bytes on a log₂ axis labelled in KiB/MiB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..bench import manifest
from ..bench.samples import load_samples

MIB = 1024 * 1024
#: chart file names written by :func:`write_benchmark_charts`, in order
BENCHMARK_CHARTS = ("latency_vs_size.png", "latency_ratio_vs_size.png", "overhead_vs_size.png",
                    "outcome_latency_cdf.png")
VARIANT_STYLE = {
    "baseline": {"color": "black", "linestyle": "-", "marker": "s"},
    "filter-off": {"color": "0.55", "linestyle": "-", "marker": "x"},
    "filter": {"linestyle": "-", "marker": "o"},
    "envoy-cache": {"linestyle": "--", "marker": "^"},
}
OUTCOME_COLORS = {"HIT": "tab:green", "MISS": "tab:red", "BYPASS": "tab:orange", "NONE": "black"}
HIT_RATIO_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")


class ChartError(ValueError):
    """The data cannot make this chart (e.g. no cell of a needed variant); names what is missing."""


def human_bytes(n: float, _pos: Any = None) -> str:
    """``1024`` → ``1 KiB``, ``1048576`` → ``1 MiB``, ``512`` → ``512 B``."""
    for unit, scale in (("MiB", MIB), ("KiB", 1024)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if float(value).is_integer() else f"{value:.1f} {unit}"
    return f"{n:.0f} B"


def _size_axis(ax: Any, sizes: Iterable[float]) -> None:
    sizes = sorted(set(float(s) for s in sizes if s > 0))
    if len(sizes) > 1 and sizes[-1] / sizes[0] >= 10:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.xaxis.set_major_formatter(FuncFormatter(human_bytes))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    ax.set_xlabel("response payload size")


def _all_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[(frame["outcome"] == "ALL") & (frame["request_body_bytes"] == 0)]
    if rows.empty:
        raise ChartError("results table has no ALL row with request_body_bytes == 0")
    return rows


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _series(rows: pd.DataFrame) -> Iterable[tuple[str, dict[str, Any], pd.DataFrame]]:
    """(label, style, rows sorted by size) per line: baseline once (median over hit ratios, which
    it ignores), filter-off once (likewise), filter and envoy-cache per hit ratio (× users when a
    run has several)."""
    ratios = sorted(rows["target_hit_ratio"].unique())
    several_users = rows["users"].nunique() > 1 if "users" in rows.columns else False
    for variant in ("baseline", "filter-off"):
        v = rows[rows["variant"] == variant]
        if not v.empty:
            agg = v.groupby("payload_bytes", as_index=False).median(numeric_only=True)
            yield variant, VARIANT_STYLE[variant], agg.sort_values("payload_bytes")
    for variant in ("filter", "envoy-cache"):
        v = rows[rows["variant"] == variant]
        for (ratio, users), g in v.groupby(["target_hit_ratio", "users"]):
            color = HIT_RATIO_COLORS[ratios.index(ratio) % len(HIT_RATIO_COLORS)]
            label = f"{variant} h={ratio:g}" + (f" u={users}" if several_users else "")
            yield label, {**VARIANT_STYLE[variant], "color": color}, g.sort_values("payload_bytes")


def latency_vs_size(frame: pd.DataFrame, path: Path) -> Path:
    """p50 and p99 latency (µs, log) vs payload size: filter per hit ratio, baseline and the
    envoy-cache anchor."""
    rows = _all_rows(frame)
    fig = Figure(figsize=(12, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, col, name in zip(axes, ("p50_us", "p99_us"), ("p50", "p99")):
        for label, style, g in _series(rows):
            ax.plot(g["payload_bytes"], g[col], label=label, **style)
        _size_axis(ax, rows["payload_bytes"])
        ax.set_yscale("log")
        ax.set_title(f"{name} latency vs payload size")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (µs, log scale)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Latency through Envoy, closed-loop Locust (all outcomes)")
    return _save(fig, path)


def latency_ratio_vs_size(frame: pd.DataFrame, path: Path) -> Path:
    """p50 and p99 latency as a ratio to the baseline cell of the same point vs payload size."""
    rows = _all_rows(frame)
    if rows["p99_ratio"].isna().all():
        raise ChartError("no ratio to the baseline: the run has no baseline cell")
    fig = Figure(figsize=(12, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, col, name in zip(axes, ("p50_ratio", "p99_ratio"), ("p50", "p99")):
        for label, style, g in _series(rows[rows["variant"] != "baseline"]):
            ax.plot(g["payload_bytes"], g[col], label=label, **style)
        ax.axhline(1.0, color="black", linewidth=1, label="baseline (= 1)")
        _size_axis(ax, rows["payload_bytes"])
        ax.set_title(f"{name} latency / baseline {name}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("ratio to baseline (×)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Latency relative to Envoy without the filter (below 1 = faster)")
    return _save(fig, path)


def overhead_vs_size(frame: pd.DataFrame, path: Path) -> Path:
    """Envoy memory (RSS over the baseline, MiB) and CPU (ms per request over the baseline) vs
    payload size, one line per variant × hit ratio (× users when the run varies it)."""
    rows = _all_rows(frame)
    rows = rows[rows["variant"] != "baseline"]
    if rows.empty or rows["rss_over_baseline_bytes"].isna().all():
        raise ChartError("no overhead over the baseline: the run needs baseline and another variant")
    fig = Figure(figsize=(12, 4.6))
    ax_mem, ax_cpu = fig.subplots(1, 2)
    for label, style, g in _series(rows):
        ax_mem.plot(g["payload_bytes"], g["rss_over_baseline_bytes"] / MIB, label=label, **style)
        # cpu_s_per_1k_requests is CPU-seconds per 1000 requests = CPU-ms per request
        ax_cpu.plot(g["payload_bytes"], g["cpu_s_per_1k_over_baseline"], label=label, **style)
    for ax in (ax_mem, ax_cpu):
        ax.axhline(0.0, color="black", linewidth=1)
        _size_axis(ax, rows["payload_bytes"])
        ax.grid(True, alpha=0.3)
    users = ", ".join(str(u) for u in sorted(rows["users"].unique()))
    ax_mem.set_title(f"Envoy memory over baseline ({users} concurrent users)")
    ax_mem.set_ylabel("RSS − baseline RSS (MiB, mean over the cell)")
    ax_cpu.set_title("Envoy CPU over baseline")
    ax_cpu.set_ylabel("CPU ms per request − baseline")
    ax_cpu.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Body-buffering overhead of the filter")
    return _save(fig, path)


def latency_cdf_frame(run_dir: Path, variants: Sequence[str] = ("filter", "baseline")) -> pd.DataFrame:
    """Per-outcome latency distributions of a run, from its per-cell HDR histograms.

    Histograms of every done cell of a variant and payload size (all hit ratios, GET cells) are
    merged per outcome. Columns: ``variant``, ``payload_bytes``, ``outcome``, ``latency_us``
    (bucket value), ``fraction`` (cumulative share of that group's requests), ``requests``.

    Raises:
        FileNotFoundError / ValueError / SamplesError: unreadable run or samples (names the file).
    """
    run_dir = Path(run_dir)
    run = manifest.read(run_dir)
    merged: dict[tuple[str, int, str], Any] = {}
    for entry in run["cells"]:
        if entry.get("status") != "done":
            continue
        cell_dir = run_dir / entry["dir"]
        cell = json.loads((cell_dir / "cell.json").read_text())["cell"]
        if cell["variant"] not in variants or cell["request_body_bytes"] != 0:
            continue
        samples = load_samples(sorted(cell_dir.glob("samples*.json")))
        if cell["variant"] == "envoy-cache":
            samples.relabel("NONE", "MISS")
        for outcome in samples.outcome_counts():
            key = (cell["variant"], int(cell["payload_bytes"]), outcome)
            hist = samples.histogram(outcome)
            if key in merged:
                merged[key].add(hist)
            else:
                merged[key] = hist
    rows = []
    for (variant, size, outcome), hist in sorted(merged.items()):
        total = hist.get_total_count()
        if total == 0:
            continue
        counts = np.ctypeslib.as_array(hist.counts)[:hist.counts_len]
        cum = 0
        for index in np.nonzero(counts)[0]:
            cum += int(counts[index])
            rows.append({"variant": variant, "payload_bytes": size, "outcome": outcome,
                         "latency_us": float(hist.get_highest_equivalent_value(hist.get_value_from_index(int(index)))),
                         "fraction": cum / total, "requests": total})
    return pd.DataFrame(rows, columns=["variant", "payload_bytes", "outcome", "latency_us", "fraction", "requests"])


def outcome_cdf(cdf: pd.DataFrame, path: Path) -> Path:
    """HIT / MISS / BYPASS latency CDFs of the filter, one panel per payload size, with the
    baseline (no filter) as the reference line."""
    filt = cdf[cdf["variant"] == "filter"]
    if filt.empty:
        raise ChartError("no filter cell samples: the CDF needs the filter variant")
    sizes = sorted(filt["payload_bytes"].unique())
    cols = min(len(sizes), 4)
    nrows = math.ceil(len(sizes) / cols)
    fig = Figure(figsize=(3.6 * cols + 1.5, 3.6 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols, sharey=True, squeeze=False)).ravel()
    for ax, size in zip(axes, sizes):
        for (variant, outcome), g in cdf[cdf["payload_bytes"] == size].groupby(["variant", "outcome"]):
            label = "baseline (no filter)" if variant == "baseline" else f"{outcome} (n={g['requests'].iloc[0]:,})"
            style = {"color": "0.5", "linestyle": ":"} if variant == "baseline" else \
                {"color": OUTCOME_COLORS.get(outcome, "tab:gray")}
            ax.step(g["latency_us"], g["fraction"], where="post", label=label, **style)
        ax.set_xscale("log")
        ax.set_title(f"{human_bytes(size)} responses")
        ax.set_xlabel("latency (µs, log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(sizes):]:
        ax.set_visible(False)
    axes[0].set_ylabel("fraction of requests ≤ latency")
    fig.suptitle("Latency distribution by cache outcome (filter variant, all hit ratios merged)", y=1.03)
    return _save(fig, path)


def write_benchmark_charts(frame: pd.DataFrame, run_dir: Path, charts_dir: Path) -> list[Path]:
    """The four benchmark charts (:data:`BENCHMARK_CHARTS`) into ``charts_dir``; returns the paths."""
    charts_dir = Path(charts_dir)
    names = iter(BENCHMARK_CHARTS)
    return [latency_vs_size(frame, charts_dir / next(names)),
            latency_ratio_vs_size(frame, charts_dir / next(names)),
            overhead_vs_size(frame, charts_dir / next(names)),
            outcome_cdf(latency_cdf_frame(run_dir), charts_dir / next(names))]


def tuning_chart(table: pd.DataFrame, *, limit: int | None, memory_budget_bytes: float,
                 p99_added_budget_us: float | None, p99_ratio_budget: float | None, concurrency: int,
                 path: Path, title: str = "max_response_body_bytes") -> Path:
    """Tuning evidence per size (from :func:`sp_istio_cache.analysis.tuning.evaluate`): the
    worst p99 added latency and the predicted worst-case memory, each with its budget line,
    and the chosen limit marked; generator-limited sizes drawn hollow."""
    if table.empty:
        raise ChartError("no tuning rows to chart")
    fig = Figure(figsize=(12, 4.6))
    ax_lat, ax_mem = fig.subplots(1, 2)
    limited = table["generator_limited"].astype(bool)
    use_ratio = p99_added_budget_us is None
    y = table["p99_ratio"] if use_ratio else table["p99_added_us"]
    budget = p99_ratio_budget if use_ratio else p99_added_budget_us
    ax_lat.plot(table["size"], y, color="tab:blue", marker="o", label="filter, worst hit ratio")
    ax_lat.scatter(table.loc[limited, "size"], y[limited], s=120, facecolors="none", edgecolors="red",
                   label="generator-limited", zorder=3)
    ax_lat.axhline(budget, color="tab:red", linestyle="--",
                   label=f"budget {'×' if use_ratio else '+'}{budget:g}{'' if use_ratio else ' µs'}")
    ax_lat.set_ylabel("p99 / baseline p99 (×)" if use_ratio else "p99 − baseline p99 (µs)")
    ax_lat.set_title("p99 latency added by the filter")
    ax_mem.plot(table["size"], table["predicted_memory_bytes"] / MIB, color="tab:purple", marker="o",
                label=f"predicted worst case, {concurrency} streams")
    ax_mem.plot(table["size"], table["rss_filter"] / MIB, color="0.5", marker="x", label="measured RSS (filter)")
    ax_mem.axhline(memory_budget_bytes / MIB, color="tab:red", linestyle="--",
                   label=f"budget {memory_budget_bytes / MIB:g} MiB")
    ax_mem.set_ylabel("Envoy memory (MiB)")
    ax_mem.set_title("Worst-case memory at the limit")
    for ax in (ax_lat, ax_mem):
        _size_axis(ax, table["size"])
        ax.set_xlabel(f"{title} candidate")
        if limit is not None:
            ax.axvline(limit, color="tab:green", linewidth=2, label=f"chosen limit {human_bytes(limit)}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Choosing {title}: largest size meeting both budgets"
                 + (f" → {human_bytes(limit)}" if limit is not None else " → none"))
    return _save(fig, path)


def bar_chart(labels: Sequence[str], values: Sequence[float], *, path: Path, title: str, xlabel: str,
              annotate: str = "{:,.1f}") -> Path:
    """A horizontal bar chart (used for the wasm module's sections and the smoke timings)."""
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
    return _save(fig, path)


def grouped_bar_chart(frame: pd.DataFrame, *, x: str, groups: str, value: str, path: Path, title: str,
                      ylabel: str, log: bool = False) -> Path:
    """Vertical bars of ``value`` per ``x`` category, one bar per ``groups`` value."""
    if frame.empty:
        raise ChartError(f"{title}: nothing to chart")
    cats = list(dict.fromkeys(frame[x]))
    keys = list(dict.fromkeys(frame[groups]))
    width = 0.8 / len(keys)
    fig = Figure(figsize=(max(6, 1.6 * len(cats) + 2), 4.2))
    ax = fig.subplots()
    for i, key in enumerate(keys):
        g = frame[frame[groups] == key].set_index(x).reindex(cats)
        ax.bar(np.arange(len(cats)) + i * width - 0.4 + width / 2, g[value], width,
               label=str(key), color=OUTCOME_COLORS.get(str(key)))
    ax.set_xticks(np.arange(len(cats)))
    ax.set_xticklabels([str(c) for c in cats])
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)
