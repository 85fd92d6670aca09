"""Charts of a benchmark run, drawn from its files through :class:`~sp_istio_cache.analysis.results.RunData`.

Every point is the **median over the repetitions** with its order-statistic interval as an
error bar (75 % coverage with 3 repetitions); ratios are taken per repetition, then summarised.
The generator floor (Locust against an Envoy answering by itself) is drawn on the latency
charts: a point at or below it is the load generator's latency, not Envoy's, and is drawn
hollow. Effects below the floor are shown from the filter's own histograms in Envoy's
``/stats`` (:func:`filter_histograms`).
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

from ..bench.records import finished_cells
from ..bench.table import cell_samples
from .charts import (
    MIB,
    OUTCOME_COLORS,
    SERIES_COLORS,
    VARIANT_STYLE,
    ChartError,
    error_bars,
    human_bytes,
    human_us,
    latency_axis,
    save,
    size_axis,
)
from .results import RunData

#: chart file names written by :func:`write_benchmark_charts`, in order
BENCHMARK_CHARTS = ("latency_vs_size.png", "latency_ratio_vs_size.png", "overhead_vs_size.png",
                    "outcome_latency_cdf.png", "filter_histograms.png")
PROFILE_CHARTS = ("profile_latency.png", "outcome_latency_cdf.png", "filter_histograms.png")


def get_rows(run: RunData) -> pd.DataFrame:
    """The ``ALL`` summary rows of synthetic GET cells (request body 0)."""
    cells = run.cells
    rows = cells[(cells["outcome"] == "ALL") & (cells["traffic"] == "synthetic")
                 & (cells["request_body_bytes"].fillna(0) == 0)]
    if rows.empty:
        raise ChartError("the run has no measured GET cell of synthetic traffic")
    return rows


def series(rows: pd.DataFrame, variants: Sequence[str] = ("baseline", "filter-off", "filter", "envoy-cache")
           ) -> Iterable[tuple[str, dict[str, Any], pd.DataFrame]]:
    """(label, style, rows sorted by payload) per line: one per variant × hit ratio × origin
    delay × users (baseline and filter-off do not depend on the hit ratio: the h=0 cells, or
    the lowest measured, stand for them)."""
    delays = sorted(rows["upstream_delay_ms"].unique())
    users = sorted(rows["users"].unique())
    color = iter(SERIES_COLORS * 4)
    for variant in variants:
        v = rows[rows["variant"] == variant]
        if v.empty:
            continue
        if variant in ("baseline", "filter-off"):
            v = v[v["target_hit_ratio"] == v["target_hit_ratio"].min()]
        for (ratio, delay, n), g in v.groupby(["target_hit_ratio", "upstream_delay_ms", "users"]):
            label = variant if variant in ("baseline", "filter-off") else f"{variant} h={ratio:g}"
            label += (f" delay {delay:g} ms" if len(delays) > 1 else "") + (f" u={n}" if len(users) > 1 else "")
            style = dict(VARIANT_STYLE[variant])
            if variant in ("filter", "envoy-cache"):
                style["color"] = next(color)
            yield label, style, g.sort_values("payload_bytes")


def _floor(rows: pd.DataFrame, cells: pd.DataFrame, metric: str) -> pd.DataFrame:
    floor = cells[(cells["variant"] == "floor") & (cells["outcome"] == "ALL") & (cells["traffic"] == "synthetic")
                  & (cells["request_body_bytes"].fillna(0) == 0)]
    return floor[floor["payload_bytes"].isin(rows["payload_bytes"])].sort_values("payload_bytes")


def _plot(ax: Any, g: pd.DataFrame, metric: str, style: dict[str, Any], label: str,
          hollow: pd.Series | None = None) -> None:
    ax.errorbar(g["payload_bytes"], g[f"{metric}_median"], yerr=error_bars(g, metric), label=label, capsize=3,
                **style)
    if hollow is not None and hollow.any():
        ax.scatter(g.loc[hollow, "payload_bytes"], g.loc[hollow, f"{metric}_median"], s=90, facecolors="white",
                   edgecolors=style.get("color", "tab:blue"), zorder=4)


def latency_vs_size(run: RunData, path: Path) -> Path:
    """p50 and p99 (median over repetitions, interval bars, µs/ms on a log axis) vs payload
    size per variant, with the generator floor; points at or below the floor hollow."""
    rows = get_rows(run)
    floor = _floor(rows, run.cells, "p50_us")
    fig = Figure(figsize=(12.5, 4.8))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, metric, name in zip(axes, ("p50_us", "p99_us"), ("p50", "p99")):
        for label, style, g in series(rows):
            at_floor = g[f"{metric}_median"] <= g[f"floor_{metric}_median"] if metric == "p50_us" else None
            _plot(ax, g, metric, style, label, at_floor)
        if not floor.empty:
            _plot(ax, floor, metric, VARIANT_STYLE["floor"], "generator floor (Envoy answers by itself)")
        latency_axis(ax, list(rows[f"{metric}_ci_low"]) + list(rows[f"{metric}_ci_high"]))
        size_axis(ax, rows["payload_bytes"])
        ax.set_title(f"{name} latency vs payload size")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("latency (median of repetitions; bars: interval)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Latency through Envoy, all outcomes (hollow: at or below the generator floor)")
    return save(fig, path)


def latency_ratio_vs_size(run: RunData, path: Path) -> Path:
    """p50 and p99 as a ratio to the baseline of the same point and repetition (median of the
    per-repetition ratios, interval bars) vs payload size."""
    rows = get_rows(run)
    if rows["p99_ratio_median"].isna().all():
        raise ChartError("no ratio to the baseline: the run has no baseline cell")
    fig = Figure(figsize=(12.5, 4.8))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, metric, name in zip(axes, ("p50_ratio", "p99_ratio"), ("p50", "p99")):
        for label, style, g in series(rows, ("filter-off", "filter", "envoy-cache")):
            at_floor = g["p50_us_median"] <= g["floor_p50_us_median"]
            _plot(ax, g, metric, style, label, at_floor)
        ax.axhline(1.0, color="black", linewidth=1, label="baseline (= 1)")
        size_axis(ax, rows["payload_bytes"])
        ax.set_title(f"{name} / baseline {name} (same repetition)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("ratio to the baseline (×)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Latency relative to Envoy without the filter (below 1 = faster; hollow: at the generator floor)")
    return save(fig, path)


def overhead_vs_size(run: RunData, path: Path) -> Path:
    """Envoy memory (mean RSS over the baseline's, MiB) and CPU per request (× the baseline's)
    vs payload size; medians of the per-repetition differences and ratios, with intervals."""
    rows = get_rows(run)
    rows = rows[rows["variant"] != "baseline"]
    if rows.empty or rows["rss_over_baseline_bytes_median"].isna().all():
        raise ChartError("no overhead over the baseline: the run needs the baseline and another variant")
    fig = Figure(figsize=(12.5, 4.8))
    ax_mem, ax_cpu = fig.subplots(1, 2)
    for label, style, g in series(rows, ("filter-off", "filter", "envoy-cache")):
        mib = g.assign(**{f"m_{k}": g[f"rss_over_baseline_bytes_{k}"] / MIB for k in ("median", "ci_low", "ci_high")})
        _plot(ax_mem, mib, "m", style, label)
        _plot(ax_cpu, g, "cpu_s_per_1k_ratio", style, label)
    ax_mem.axhline(0.0, color="black", linewidth=1)
    ax_cpu.axhline(1.0, color="black", linewidth=1, label="baseline (= 1)")
    for ax in (ax_mem, ax_cpu):
        size_axis(ax, rows["payload_bytes"])
        ax.grid(True, alpha=0.3)
    users = ", ".join(str(u) for u in sorted(rows["users"].unique()))
    basis = "container working set" if (rows["memory_basis"] == "container_working_set").any() else "process RSS"
    ax_mem.set_title(f"Envoy memory over the baseline ({users} concurrent users)")
    ax_mem.set_ylabel(f"{basis} − baseline (MiB, mean over the load)")
    ax_cpu.set_title("Envoy CPU per request, relative to the baseline")
    ax_cpu.set_ylabel("CPU time per request / baseline's (×)")
    ax_cpu.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("What the filter costs the sidecar (median of repetitions; bars: interval)")
    return save(fig, path)


def latency_cdf_frame(run_dir: Path, variants: Sequence[str] = ("filter", "baseline")) -> pd.DataFrame:
    """Per-outcome latency distributions from the HDR histograms of every measured repetition of
    a variant and payload size (GET cells; all hit ratios, delays and repetitions merged).
    Columns: ``variant``, ``payload_bytes`` (-1 for profile traffic), ``outcome``, ``latency_us``,
    ``fraction`` (cumulative share of that group's requests), ``requests``.

    Raises:
        RecordError / SamplesError: unreadable run or samples (names the file).
    """
    run_dir = Path(run_dir)
    merged: dict[tuple[str, int, str], Any] = {}
    for entry, rec in finished_cells(run_dir):
        cell = rec.cell
        if rec.status != "measured" or cell.variant not in variants or (cell.request_body_bytes or 0) != 0:
            continue
        samples = cell_samples(run_dir / entry.dir, rec)
        size = -1 if cell.traffic == "profile" else int(cell.payload_bytes or 0)
        for outcome in samples.outcome_counts():
            key = (cell.variant, size, outcome)
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
    fig = Figure(figsize=(3.8 * cols + 1.5, 3.8 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols, sharey=True, squeeze=False)).ravel()
    for ax, size in zip(axes, sizes):
        for (variant, outcome), g in cdf[cdf["payload_bytes"] == size].groupby(["variant", "outcome"]):
            label = "baseline (no filter)" if variant == "baseline" else f"{outcome} (n={g['requests'].iloc[0]:,})"
            style = {"color": "0.5", "linestyle": ":"} if variant == "baseline" else \
                {"color": OUTCOME_COLORS.get(outcome, "tab:gray")}
            ax.step(g["latency_us"], g["fraction"], where="post", label=label, **style)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(human_us))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_ylim(0, 1.02)
        ax.set_title("profile traffic" if size < 0 else f"{human_bytes(size)} responses")
        ax.set_xlabel("latency (log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(sizes):]:
        ax.set_visible(False)
    axes[0].set_ylabel("share of requests ≤ latency")
    fig.suptitle("Latency distribution by cache outcome (filter variant; hit ratios and repetitions merged)", y=1.03)
    return save(fig, path)


def histogram_frame(run: RunData) -> pd.DataFrame:
    """The filter's own histograms per cell: median over the repetitions of each quantile, with
    the cell's point (payload, hit ratio) and its floor's p50. Columns: ``cell_id``, ``name``,
    ``quantile``, ``value`` (the histogram's unit: µs for ``*_us``), ``payload_bytes``,
    ``target_hit_ratio``, ``traffic``, ``floor_p50_us_median``."""
    m = run.metrics
    hist = m[(m["kind"] == "histogram") & (m["variant"] == "filter")]
    if hist.empty:
        return pd.DataFrame(columns=["cell_id", "name", "quantile", "value", "payload_bytes", "target_hit_ratio",
                                     "traffic", "floor_p50_us_median"])
    med = hist.groupby(["cell_id", "name", "quantile"], as_index=False)["value"].median()
    info = run.cells[run.cells["outcome"] == "ALL"].set_index("cell_id")
    for col in ("payload_bytes", "target_hit_ratio", "traffic", "floor_p50_us_median"):
        med[col] = med["cell_id"].map(info[col])
    return med


def filter_histograms(run: RunData, path: Path) -> Path:
    """P50 and P99 of each ``sp_cache.*_us`` histogram of the filter (Envoy's ``/stats``,
    recorded per repetition) vs payload size per hit ratio, with the generator floor's p50 as a
    reference: what the filter costs below the resolution Locust has."""
    frame = histogram_frame(run)
    if frame.empty:
        raise ChartError("the filter recorded no histogram in this run (no sp_cache.*_us in Envoy's /stats)")
    names = sorted(frame["name"].unique())
    fig = Figure(figsize=(6.2 * len(names), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)).ravel()
    profile = (frame["traffic"] == "profile").all()
    for ax, name in zip(axes, names):
        g = frame[frame["name"] == name]
        color = iter(SERIES_COLORS)
        for ratio, h in g.groupby(g["target_hit_ratio"].fillna(-1)):
            c = next(color)
            label = "profile" if ratio < 0 else f"h={ratio:g}"
            for q, style in (("p50", "-"), ("p99", "--")):
                pts = h[h["quantile"] == q].sort_values("payload_bytes")
                x = np.arange(len(pts)) if profile else pts["payload_bytes"]
                ax.plot(x, pts["value"], linestyle=style, marker="o", color=c, label=f"{label} {q}")
        floor = g.drop_duplicates("payload_bytes").sort_values("payload_bytes")
        if floor["floor_p50_us_median"].notna().any():
            ax.axhline(floor["floor_p50_us_median"].median(), color="0.35", linestyle=":",
                       label="generator floor p50 (Locust's own latency)")
        latency_axis(ax, list(g["value"]) + list(floor["floor_p50_us_median"].dropna()))
        if not profile:
            size_axis(ax, g["payload_bytes"])
        ax.set_title(name)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("The filter's own timings (Envoy /stats, median of repetitions): costs below the generator floor")
    return save(fig, path)


def profile_latency(run: RunData, path: Path) -> Path:
    """Profile traffic: p50 and p99 per variant (median, interval bars), one group per origin
    delay, with the generator floor."""
    cells = run.cells
    rows = cells[(cells["outcome"] == "ALL") & (cells["traffic"] == "profile")]
    if rows.empty:
        raise ChartError("the run has no profile cell")
    fig = Figure(figsize=(12.5, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    order = [v for v in ("floor", "baseline", "filter-off", "filter", "envoy-cache") if v in set(rows["variant"])]
    for ax, metric, name in zip(axes, ("p50_us", "p99_us"), ("p50", "p99")):
        for i, (delay, g) in enumerate(rows.groupby("upstream_delay_ms")):
            g = g.set_index("variant").reindex(order).dropna(subset=[f"{metric}_median"])
            xs = np.arange(len(g)) + i * 0.25
            ax.bar(xs, g[f"{metric}_median"], 0.25, yerr=error_bars(g, metric), capsize=3,
                   label=f"origin delay {delay:g} ms")
            ax.set_xticks(np.arange(len(g)))
            ax.set_xticklabels(list(g.index))
        latency_axis(ax, list(rows[f"{metric}_ci_low"]) + list(rows[f"{metric}_ci_high"]))
        ax.set_title(f"{name} latency, profile {rows['profile_name'].dropna().iloc[0]}")
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle("Your traffic through Envoy (median of repetitions; bars: interval)")
    return save(fig, path)


def write_benchmark_charts(run: RunData, charts_dir: Path) -> tuple[list[Path], list[str]]:
    """Every chart the run's data can make into ``charts_dir``: (paths written, one note per
    chart that could not be drawn and why). Synthetic runs get :data:`BENCHMARK_CHARTS`, profile
    runs :data:`PROFILE_CHARTS`.

    Raises:
        ChartError: not a single chart could be drawn.
    """
    charts_dir = Path(charts_dir)
    makers = {"latency_vs_size.png": latency_vs_size, "latency_ratio_vs_size.png": latency_ratio_vs_size,
              "overhead_vs_size.png": overhead_vs_size, "profile_latency.png": profile_latency,
              "outcome_latency_cdf.png": lambda r, p: outcome_cdf(latency_cdf_frame(r.run_dir), p),
              "filter_histograms.png": filter_histograms}
    names = PROFILE_CHARTS if run.profile is not None else BENCHMARK_CHARTS
    paths, notes = [], []
    for name in names:
        try:
            paths.append(makers[name](run, charts_dir / name))
        except ChartError as exc:
            notes.append(f"{name}: not drawn: {exc}")
    if not paths:
        raise ChartError("no benchmark chart could be drawn: " + "; ".join(notes))
    return paths, notes
