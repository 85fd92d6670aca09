"""Terminal tables for a run summary and a comparison (rich; no plotting here)."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table

from .compare import Comparison


def _num(value: float, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def print_summary(frame: pd.DataFrame, console: Console) -> None:
    """One line per cell (its ``ALL`` row): latency in µs, ratios to baseline, hit ratios, flags."""
    table = Table(title="benchmark cells (ALL outcomes; latency in µs)")
    for col in ("variant", "payload B", "target h", "hit (hdr)", "hit (upstream)", "requests", "rps",
                "p50", "p99", "p99.9", "p50/base", "p99/base", "RSS MiB", "flags"):
        table.add_column(col, justify="left" if col in ("variant", "flags") else "right")
    for _, r in frame[frame["outcome"] == "ALL"].iterrows():
        flags = []
        if r["generator_limited"]:
            flags.append(f"generator_limited ({r['generator_reason']})")
        if r["upstream_mismatch"]:
            flags.append(f"upstream {r['upstream_requests']} != {r['expected_upstream_requests']}")
        if r["non_2xx"]:
            flags.append(f"{r['non_2xx']} non-2xx")
        if r.get("oom_killed", False):
            flags.append(f"[bold red]OOM-killed[/] (Envoy, {r.get('envoy_phase') or 'load'})")
        elif r.get("envoy_died", False):
            flags.append(f"[bold red]Envoy died[/] ({r.get('envoy_phase') or 'load'})")
        if r["missed_slots"]:
            flags.append(f"{r['missed_slots']}/{r['slots']} slots missed")
        table.add_row(r["variant"], f"{r['payload_bytes']:,}", f"{r['target_hit_ratio']:g}",
                      f"{r['achieved_hit_ratio']:.3f}", f"{r['achieved_hit_ratio_upstream']:.3f}",
                      f"{r['requests']:,}", _num(r["rps"]), _num(r["p50_us"]), _num(r["p99_us"]),
                      _num(r["p999_us"]), _num(r["p50_ratio"], "{:.2f}"), _num(r["p99_ratio"], "{:.2f}"),
                      _num(r["rss_mean_bytes"] / 2**20, "{:.1f}"), "; ".join(flags))
    _wide(console).print(table)


def _wide(console: Console) -> Console:
    """The same output, at least 170 columns wide (tables stay readable in logs and CI)."""
    if console.is_terminal and console.width >= 170:
        return console
    return Console(file=console.file, width=max(console.width, 170), highlight=False)


def print_comparison(result: Comparison, console: Console) -> None:
    """Per-cell ratios B/A; regressed cells marked, cells present in one run only listed."""
    table = Table(title=f"B / A per cell (tolerance {result.tolerance:.0%})")
    for col in ("cell", "p50 A", "p50 B", "p50", "p99", "rps", "RSS", "verdict"):
        table.add_column(col, justify="left" if col in ("cell", "verdict") else "right")
    for _, r in result.table.iterrows():
        table.add_row(r["cell"], _num(r["p50_a"]), _num(r["p50_b"]), _num(r["p50_ratio"], "{:.3f}"),
                      _num(r["p99_ratio"], "{:.3f}"), _num(r["rps_ratio"], "{:.3f}"),
                      _num(r["rss_ratio"], "{:.3f}"),
                      f"[red]REGRESSED: {r['why']}[/]" if r["regressed"] else "ok")
    _wide(console).print(table)
    for name, cells in (("only in A", result.only_in_a), ("only in B", result.only_in_b)):
        for cell in cells:
            console.print(f"{name}: {cell}", highlight=False)
    n = len(result.regressions)
    console.print(f"{n} of {len(result.table)} cells regressed" if n else
                  f"no regression in {len(result.table)} cells", highlight=False)
