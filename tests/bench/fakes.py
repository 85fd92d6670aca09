"""FAKE run directories for offline tests: run.json, cell.json and samples files written through
the real models (records checked at write), with latencies and resources the test chooses.
No Envoy ran: these test the readers (table, repetitions, gate, compare, charts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sp_istio_cache.bench.records import (
    CELL_SCHEMA,
    RUN_FILE,
    RUN_SCHEMA,
    CellRecord,
    Environment,
    EnvoyFate,
    EnvoyStatsRecord,
    LocustRecord,
    Quantiles,
    ResourceSummary,
    RunCell,
    RunManifest,
    RuntimeRecord,
    UpstreamRecord,
    WarmupRecord,
    rep_dir,
    write_model,
)
from sp_istio_cache.bench.samples import SampleRecorder
from sp_istio_cache.bench.scenario import Matrix, matrix_from

ENVIRONMENT = Environment(envoy_version="fake", wasm_path=None, wasm_sha256=None, cpu_model="fake", cpu_cores=2,
                          memory_bytes=1 << 30, kernel="fake", python="3.11", locust_version="fake",
                          git_commit=None, git_dirty=None)


def resources(rss: float = 50e6, cpu: float = 1.0) -> ResourceSummary:
    """A local-runtime resource summary with the given Envoy RSS (bytes) and CPU (s)."""
    return ResourceSummary(samples=4, interval_s=0.25, memory_basis="process_rss", rss_mean_bytes=rss,
                           rss_max_bytes=rss, memory_anon_max_bytes=rss / 2, memory_peak_bytes=rss,
                           container_memory_max_bytes=None, memory_limit_bytes=None, cpu_limit_cores=None,
                           cpu_seconds=cpu, cpu_throttled_seconds=None, cpu_throttled_periods=None, cpu_periods=None,
                           backend_cpu_seconds=None, backend_rss_max_bytes=None, upstream_cpu_seconds=None,
                           envoy_running_at_end=True)


def write_samples(path: Path, latencies_us: list[float], outcome: str = "NONE",
                  statuses: list[int] | None = None) -> None:
    """One samples file: request i takes latencies_us[i] µs and ends 1 ms after the previous one."""
    rec = SampleRecorder()
    t = 1_000_000.0
    for i, us in enumerate(latencies_us):
        t += us / 1e6
        status = statuses[i] if statuses else 200
        rec.record(us, outcome=outcome if status else "NONE", status=status, kind="cold", end_unix=t)
        t += 0.001
    rec.write(path)


def write_run(run_dir: Path, cells: dict[str, dict[str, Any]], *, sizes=(1024,), ratios=(0.0,),
              repetitions: int = 1, matrix: Matrix | None = None) -> Path:
    """A run directory. ``cells``: {variant: spec}; spec keys: ``latencies_us`` (a list, or a
    list per repetition under ``reps``), ``outcome`` (NONE), ``statuses`` (200 each), ``rss``,
    ``failed`` (an error: the repetition measured nothing), ``histograms`` ({name: (p50, p90, p99)}),
    ``counters`` ({name: delta}), ``samples`` (a function cell -> SampleRecorder). The floor is
    written when ``cells`` has a ``floor`` entry."""
    variants = [v for v in cells if v != "floor"]
    matrix = matrix or matrix_from({"variants": variants, "payload_bytes": list(sizes), "hit_ratios": list(ratios),
                                    "duration_s": 1, "repetitions": repetitions}, "fake")
    entries = []
    for cell, rep in matrix.schedule():
        if cell.variant not in cells:
            continue
        spec = cells[cell.variant]
        directory = run_dir / rep_dir(cell.cell_id, rep)
        directory.mkdir(parents=True, exist_ok=True)
        latencies = spec["reps"][rep - 1] if "reps" in spec else spec.get("latencies_us", [])
        failed = spec.get("failed")
        n = len(latencies)
        hits = n if spec.get("outcome") == "HIT" else 0
        if "samples" in spec:
            recorder = spec["samples"](cell)
            recorder.write(directory / "samples.json")
            n = recorder.requests
            hits = sum(g.count for (o, _), g in recorder.groups.items() if o == "HIT")
        elif not failed:
            write_samples(directory / "samples.json", latencies, spec.get("outcome", "NONE"), spec.get("statuses"))
        kind = "none" if cell.variant == "floor" else "test-app"
        stats = EnvoyStatsRecord(filter_counters=spec.get("counters", {}), filter_gauges={},
                                 filter_histograms={k: Quantiles(p50=a, p90=b, p99=c)
                                                    for k, (a, b, c) in spec.get("histograms", {}).items()},
                                 clusters={}, server={"memory_allocated": 1000, "memory_heap_size": 2000})
        rec = CellRecord(
            schema=CELL_SCHEMA, cell_id=cell.cell_id, repetition=rep, status="failed" if failed else "measured",
            error=failed, cell=cell, mode=cell.mode, plugin_config=cell.effective_plugin_config(),
            runtime=RuntimeRecord(name="local", options={}, envoy_path=None),
            upstream=UpstreamRecord(kind=kind, url=None), started_unix=1.0, ended_unix=2.0,
            load_seconds=None if failed else 1.0,
            locust=None if failed else LocustRecord(argv=[], exit_code=0, cpu_warning=False,
                                                    samples_files=["samples.json"], workers=0),
            warmup=WarmupRecord(requests=0, store_wait_ms=None),
            upstream_requests=None if failed or kind == "none" else n - hits,
            envoy=EnvoyFate(died=False, oom_killed=False, exit_code=None, restart_count=0, phase=None),
            envoy_stats=None if failed else stats, backend_stats_before=None, backend_stats_after=None,
            resources=None if failed else resources(spec.get("rss", 50e6)), findings=[])
        write_model(directory / "cell.json", rec)
        entries.append(RunCell(cell_id=cell.cell_id, repetition=rep, variant=cell.variant,
                               dir=rep_dir(cell.cell_id, rep), status=rec.status, seconds=1.0, findings=0))
    write_model(run_dir / RUN_FILE, RunManifest(
        schema=RUN_SCHEMA, status="complete", started_unix=1.0, ended_unix=2.0, wall_seconds=1.0, error=None,
        parameters=matrix.model_dump(mode="json"), profile=None, environment=ENVIRONMENT, cells=entries,
        findings=[]))
    return run_dir
