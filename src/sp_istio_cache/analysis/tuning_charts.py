"""The evidence behind a size limit, as charts (from a :class:`~sp_istio_cache.analysis.tuning.Choice`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from .charts import MIB, ChartError, human_bytes, human_us, save, size_axis
from .tuning import Budget, Choice

STATUS_COLORS = {"pass": "tab:green", "fail": "tab:red", "undecided": "tab:orange"}


def tuning_chart(choice: Choice, budget: Budget, path: Path, *, floor_p50_us: float | None = None) -> Path:
    """Per measured size: the worst cell's added p99 over the baseline (median of the paired
    repetitions, interval bars, coloured by pass/fail/undecided) with the budget and the
    generator floor; and the predicted worst-case memory with the memory budget. The chosen
    limit is the vertical green line."""
    table = choice.table
    if table.empty:
        raise ChartError(f"{choice.key}: no size was measured")
    fig = Figure(figsize=(12.5, 4.8))
    ax_lat, ax_mem = fig.subplots(1, 2)
    use_ratio = budget.p99_added_us is None
    metric, stem, budget_value = (("p99_ratio", "p99_ratio", float(budget.p99_ratio or 0)) if use_ratio
                                  else ("p99_added_us", "p99_added", float(budget.p99_added_us or 0)))
    med = table[metric].to_numpy(float)
    yerr = np.vstack([np.clip(med - table[f"{stem}_ci_low"].to_numpy(float), 0, None),
                      np.clip(table[f"{stem}_ci_high"].to_numpy(float) - med, 0, None)])
    ax_lat.plot(table["size"], med, color="tab:blue", linewidth=1, zorder=1)
    for status, color in STATUS_COLORS.items():
        pick = (table["status"] == status).to_numpy()
        if pick.any():
            ax_lat.errorbar(table["size"][pick], med[pick], yerr=yerr[:, pick], fmt="o", color=color, capsize=4,
                            label=f"{status} (worst cell, interval of repetitions)")
    ax_lat.axhline(budget_value, color="tab:red", linestyle="--",
                   label=f"budget {'×' + format(budget_value, 'g') if use_ratio else '+' + human_us(budget_value)}")
    if floor_p50_us and not use_ratio:
        ax_lat.axhline(floor_p50_us, color="0.35", linestyle=":", label=f"generator floor p50 {human_us(floor_p50_us)}")
    ax_lat.axhline(0 if not use_ratio else 1, color="black", linewidth=0.8)
    if not use_ratio:
        ax_lat.yaxis.set_major_formatter(FuncFormatter(human_us))
    ax_lat.set_ylabel("p99 / baseline p99 (×)" if use_ratio else "p99 − baseline p99, same repetition")
    ax_lat.set_title("p99 latency the filter adds (worst hit ratio)")
    ax_mem.plot(table["size"], table["predicted_memory_bytes"] / MIB, color="tab:purple", marker="o",
                label=f"predicted worst case, {budget.concurrency} streams × {budget.copies_per_stream:g} copies")
    ax_mem.plot(table["size"], table["rss_filter"] / MIB, color="0.5", marker="x",
                label="measured Envoy memory (filter)")
    ax_mem.axhline(budget.memory_bytes / MIB, color="tab:red", linestyle="--",
                   label=f"budget {budget.memory_bytes / MIB:g} MiB")
    ax_mem.set_ylabel("Envoy memory (MiB)")
    ax_mem.set_title("Worst-case memory at each limit")
    for ax in (ax_lat, ax_mem):
        size_axis(ax, table["size"], f"{choice.key} candidate")
        if choice.limit is not None:
            ax.axvline(choice.limit, color="tab:green", linewidth=2, alpha=0.6,
                       label=f"chosen limit {human_bytes(choice.limit)}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Choosing {choice.key}: the largest size that, with every smaller one, passes both budgets"
                 + (f" → {human_bytes(choice.limit)}" if choice.limit is not None else " → none"))
    return save(fig, path)


def profile_chart(choice: Choice, budget: Budget, path: Path, *, concurrency: float | None) -> Path:
    """Per candidate limit: the share of the profile's requests (and response bytes) cacheable
    under it, and the predicted memory at the observed concurrency with the budget."""
    table: pd.DataFrame = choice.table
    if table.empty or "cacheable_share" not in table:
        raise ChartError(f"{choice.key}: no profile candidate to chart")
    fig = Figure(figsize=(12.5, 4.8))
    ax_share, ax_mem = fig.subplots(1, 2)
    ax_share.plot(table["size"], table["cacheable_share"], marker="o", label="requests (by weight)")
    ax_share.plot(table["size"], table["cacheable_bytes_share"], marker="s", label="response bytes")
    ax_share.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_share.set_ylim(0, 1.05)
    ax_share.set_ylabel("share cacheable under the limit")
    ax_share.set_title("What each limit lets the cache hold")
    streams = f"{concurrency:,.1f} observed in flight" if concurrency else f"{budget.concurrency} streams"
    ax_mem.plot(table["size"], table["predicted_memory_bytes"] / MIB, marker="o", color="tab:purple",
                label=f"predicted worst case, {streams}")
    ax_mem.axhline(budget.memory_bytes / MIB, color="tab:red", linestyle="--",
                   label=f"budget {budget.memory_bytes / MIB:g} MiB")
    ax_mem.set_ylabel("Envoy memory (MiB)")
    ax_mem.set_title("Worst-case memory at each limit, your traffic")
    for ax in (ax_share, ax_mem):
        size_axis(ax, table["size"], "max_response_body_bytes candidate")
        if choice.limit is not None:
            ax.axvline(choice.limit, color="tab:green", linewidth=2, alpha=0.6,
                       label=f"chosen limit {human_bytes(choice.limit)}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Limits for your traffic profile" + (f" → {human_bytes(choice.limit)}" if choice.limit else " → none"))
    return save(fig, path)
