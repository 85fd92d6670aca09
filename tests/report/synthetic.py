"""Synthetic results tables and run directories with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sp_istio_cache.bench import manifest
from sp_istio_cache.bench.samples import SampleRecorder

MIB = 1024 * 1024


def row(variant: str, size: int, h: float, p99: float, *, rss: float = 60 * MIB, limited: bool = False,
        body: int = 0, p50: float | None = None, outcome: str = "ALL") -> dict:
    cell_id = f"{variant}-p{size}-b{body}-h{h:g}-u10"
    return {"cell_id": cell_id, "variant": variant, "payload_bytes": size, "request_body_bytes": body,
            "target_hit_ratio": h, "mode": "closed", "users": 10, "target_rate": 0.0, "outcome": outcome,
            "requests": 1000, "p50_us": p50 if p50 is not None else p99 / 3, "p99_us": p99, "rps": 300.0,
            "rss_max_bytes": rss, "rss_mean_bytes": rss, "generator_limited": limited,
            "upstream_mismatch": False, "buffered_body_bytes_max": float(size),
            "cpu_s_per_1k_requests": 0.5}


def table(spec: dict[int, tuple[float, float]], *, base_p99: float = 1000.0, base_rss: float = 60 * MIB,
          filter_rss: float = 90 * MIB, limited: set[tuple[str, int]] = frozenset(),
          hit_ratios=(0.0, 0.9)) -> pd.DataFrame:
    """``spec``: {size: (filter p99 at h=0, filter p99 at h=0.9)}; baseline p99 is ``base_p99``."""
    rows = []
    for size, p99s in spec.items():
        for h, p99 in zip(hit_ratios, p99s):
            rows.append(row("baseline", size, h, base_p99, rss=base_rss, limited=("baseline", size) in limited))
            rows.append(row("filter", size, h, p99, rss=filter_rss, limited=("filter", size) in limited))
    frame = pd.DataFrame(rows)
    from sp_istio_cache.analysis.results import add_baseline_ratios

    return add_baseline_ratios(frame)


def run_dir(path: Path, sizes=(1024, 65536), variants=("baseline", "filter-off", "filter", "envoy-cache"),
            hit_ratios=(0.0, 0.9)) -> tuple[Path, pd.DataFrame]:
    """A run directory with cell.json + samples.json per cell (deterministic latencies) and its
    results table, as the bench would write them."""
    path.mkdir(parents=True, exist_ok=True)
    cells, rows = [], []
    for size in sizes:
        for h in hit_ratios:
            for variant in variants:
                cell_id = f"{variant}-p{size}-b0-h{h:g}-u10"
                cell_dir = path / "cells" / cell_id
                cell_dir.mkdir(parents=True, exist_ok=True)
                rec = SampleRecorder()
                base = 1000 + size / 100
                for i in range(200):
                    hit = variant in ("filter", "envoy-cache") and i % 10 < h * 10
                    if variant == "baseline":
                        outcome = "NONE"
                    elif variant == "filter-off":
                        outcome = "BYPASS"
                    elif variant == "envoy-cache":
                        outcome = "HIT" if hit else "NONE"
                    else:
                        outcome = "HIT" if hit else "MISS"
                    factor = {"baseline": 1.0, "filter-off": 1.1, "filter": 0.6 if hit else 1.8,
                              "envoy-cache": 0.5 if hit else 1.05}[variant]
                    rec.record(base * factor + i, outcome=outcome, status=200, kind="hot" if hit else "cold")
                rec.write(cell_dir / "samples.json")
                (cell_dir / "cell.json").write_text(json.dumps({
                    "schema": "sp-istio-cache/cell/1", "cell_id": cell_id,
                    "cell": {"variant": variant, "payload_bytes": size, "request_body_bytes": 0,
                             "target_hit_ratio": h}}))
                cells.append({"cell_id": cell_id, "dir": f"cells/{cell_id}", "status": "done"})
                p99 = base * {"baseline": 1.0, "filter-off": 1.1, "filter": 1.8, "envoy-cache": 1.05}[variant]
                r = row(variant, size, h, p99, rss=(60 + (30 if "filter" in variant else 0)) * MIB)
                rows.append(r)
                if variant == "filter":
                    rows.append({**r, "outcome": "HIT", "p99_us": base * 0.6})
                    rows.append({**r, "outcome": "MISS"})
    manifest.write(path / "run.json", {"schema": manifest.SCHEMA, "cells": cells,
                                       "parameters": {"variants": list(variants), "users": 10, "duration_s": 3},
                                       "environment": {"cpu_cores": 2, "cpu_model": "test"}})
    from sp_istio_cache.analysis.results import add_baseline_ratios

    frame = add_baseline_ratios(pd.DataFrame(rows))
    return path, frame
