"""The terminal table of a comparison between two runs (rich; no plotting here). A run's own
summary table is :mod:`sp_istio_cache.bench.summary`."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from .compare import Comparison


def _num(value: float, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


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
