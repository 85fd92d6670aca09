"""Synthetic run directories (run.json, cell.json, samples) for offline analysis tests."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from sp_istio_cache.analysis.results import write_results
from sp_istio_cache.bench import manifest
from sp_istio_cache.bench.samples import SampleRecorder
from sp_istio_cache.bench.sampler import ResourceSummary
from sp_istio_cache.bench.scenario import Matrix


def resources(rss: float = 50e6, cpu: float = 1.0) -> dict:
    return dataclasses.asdict(ResourceSummary(
        samples=4, rss_mean_bytes=rss, rss_max_bytes=rss, heap_allocated_max_bytes=math.nan,
        heap_size_max_bytes=math.nan, buffered_body_bytes_max=math.nan, backend_entries=math.nan,
        backend_bytes=math.nan, cpu_seconds=cpu, backend_cpu_seconds=math.nan, upstream_cpu_seconds=math.nan))


def write_run(run_dir: Path, cells: dict[str, dict], *, sizes=(1024,), ratios=(0.0,)) -> Path:
    """``cells``: {variant: {"latencies_us": [...], "outcome": "NONE", "rss": bytes}} -> a run dir.

    Each request is recorded 1 ms after the previous one ends (so rps is known), every request
    reached the upstream (outcome NONE/MISS/BYPASS) unless its outcome is HIT.
    """
    matrix = Matrix(variants=tuple(cells), payload_bytes=tuple(sizes), hit_ratios=tuple(ratios),
                    duration_s=1).validate()
    entries = []
    for cell in matrix.cells():
        spec = cells[cell.variant]
        cell_dir = run_dir / "cells" / cell.cell_id
        cell_dir.mkdir(parents=True)
        rec = SampleRecorder()
        t = 1_000_000.0
        for us in spec["latencies_us"]:
            t += us / 1e6
            rec.record(us, outcome=spec.get("outcome", "NONE"), status=200, kind="cold", end_unix=t)
            t += 0.001
        rec.write(cell_dir / "samples.json")
        n = len(spec["latencies_us"])
        upstream = 0 if spec.get("outcome") == "HIT" else n
        (cell_dir / "cell.json").write_text(json.dumps({
            "schema": "sp-istio-cache/cell/1", "cell_id": cell.cell_id, "cell": dataclasses.asdict(cell),
            "mode": cell.mode, "upstream_requests": upstream, "warmup_requests": 0, "store_wait_ms": 0.0,
            "locust_cpu_warning": False, "resources": resources(spec.get("rss", 50e6))}))
        entries.append({"cell_id": cell.cell_id, "dir": f"cells/{cell.cell_id}", "status": "done"})
    manifest.write(run_dir / "run.json", {"schema": manifest.SCHEMA, "status": "complete",
                                          "parameters": matrix.as_dict(), "cells": entries})
    write_results(run_dir)
    return run_dir
