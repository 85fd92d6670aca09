"""Synthetic benchmark run directories with known answers, written through the bench file
contract's own models (``RunManifest``, ``CellRecord``, ``SampleRecorder``): the report's readers
meet exactly the files the engine writes, with latencies chosen by the test.

A FAKE run: nothing here started Envoy or Locust. Latencies per repetition are exact: of
``REQUESTS`` requests, 97 % take ``p50`` µs and 3 % take ``p99`` µs, so HdrHistogram's p50 and
p99 are those values (below 32 768 µs it keeps values exactly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sp_istio_cache.bench.records import (
    CELL_SCHEMA,
    RUN_SCHEMA,
    CellRecord,
    Environment,
    EnvoyFate,
    EnvoyStatsRecord,
    Finding,
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
from sp_istio_cache.bench.samples import SampleRecorder, write_samples_doc
from sp_istio_cache.bench.scenario import Cell, Matrix, RuntimeOptions

MIB = 1024 * 1024
KIB = 1024
REQUESTS = 200
DURATION_S = 2.0
START = 1_700_000_000.0


@dataclass
class Spec:
    """One cell of a synthetic run. Per-repetition values are lists (one per repetition) or a
    scalar used for every repetition."""

    variant: str
    payload: int | None = 1024
    hit: float | None = 0.0
    body: int | None = 0
    delay: float = 0.0
    p50: Any = 1000.0
    p99: Any = 2000.0
    errors: Any = 0                 # non-2xx responses (status 503) per repetition
    limited: Any = False            # Locust CPU warning in that repetition
    rss: Any = 60 * MIB
    failed: Any = False             # the repetition measured nothing (status failed)
    oom: bool = False
    histograms: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    profile: str | None = None
    users: int = 10

    def at(self, name: str, rep: int) -> Any:
        value = getattr(self, name)
        return value[rep - 1] if isinstance(value, (list, tuple)) else value

    def cell(self) -> Cell:
        floor = self.variant == "floor"
        profile = self.profile is not None
        return Cell(variant=self.variant, traffic="profile" if profile else "synthetic",
                    payload_bytes=None if profile and not floor else self.payload,
                    request_body_bytes=None if profile else self.body,
                    target_hit_ratio=None if floor or profile else self.hit,
                    upstream_delay_ms=0.0 if floor else self.delay, hot_keys=None if floor or profile else 64,
                    users=self.users, spawn_rate=0.0, rate=0.0, duration_s=DURATION_S, processes=1,
                    envoy_concurrency=2, listen_address="127.0.0.1", runtime="local",
                    runtime_options=RuntimeOptions(), envoy_path="",
                    storage="sqlite", cache_control="max-age=600", plugin_config={}, upstream_url=None,
                    profile_name=self.profile, profile_sha256="0" * 64 if profile else None)


def _outcome(variant: str, i: int, hit: float | None) -> str:
    hot = hit is not None and i % 10 < round(hit * 10)
    if variant in ("baseline", "floor"):
        return "NONE"
    if variant == "filter-off":
        return "BYPASS"
    if variant == "envoy-cache":
        return "HIT" if hot else "NONE"
    return "HIT" if hot else "MISS"


def _samples(spec: Spec, rep: int, path: Path) -> None:
    rec = SampleRecorder()
    p50, p99, errors = spec.at("p50", rep), spec.at("p99", rep), spec.at("errors", rep)
    slow = REQUESTS - int(REQUESTS * 0.97)
    for i in range(REQUESTS):
        latency = p99 if i >= REQUESTS - slow else p50
        status = 503 if i < errors else 200
        end = START + DURATION_S * (i + 1) / REQUESTS
        rec.record(latency, outcome=_outcome(spec.variant, i, spec.hit), status=status,
                   kind="hot" if _outcome(spec.variant, i, spec.hit) == "HIT" else "cold",
                   response_bytes=spec.payload or 0, end_unix=end)
    doc = rec.as_json()
    doc.update(cpu_seconds=0.2, wall_seconds=DURATION_S, cpu_warning=bool(spec.at("limited", rep)))
    write_samples_doc(path, doc)


def _resources(rss: float) -> ResourceSummary:
    return ResourceSummary(samples=8, interval_s=0.25, memory_basis="process_rss", rss_mean_bytes=rss,
                           rss_max_bytes=rss, memory_anon_max_bytes=rss / 2, memory_peak_bytes=rss,
                           container_memory_max_bytes=None, memory_limit_bytes=None, cpu_limit_cores=None,
                           cpu_seconds=0.4, cpu_throttled_seconds=None, cpu_throttled_periods=None, cpu_periods=None,
                           backend_cpu_seconds=0.1, backend_rss_max_bytes=30 * MIB, upstream_cpu_seconds=0.1,
                           envoy_running_at_end=True)


def _record(spec: Spec, rep: int, directory: Path) -> CellRecord:
    cell = spec.cell()
    failed = bool(spec.at("failed", rep))
    uses_filter = spec.variant in ("filter", "filter-off")
    hits = 0
    if not failed:
        _samples(spec, rep, directory / "samples.json")
        hits = sum(1 for i in range(REQUESTS) if _outcome(spec.variant, i, spec.hit) == "HIT")
    stats = None
    if not failed:
        stats = EnvoyStatsRecord(
            filter_counters=dict(spec.counters) if uses_filter else {},
            filter_gauges=dict(spec.gauges) if uses_filter else {},
            filter_histograms={k: Quantiles(p50=v[0], p90=v[1], p99=v[2]) for k, v in spec.histograms.items()}
            if uses_filter else {},
            clusters={},
            server={"memory_allocated": int(spec.at("rss", rep) / 2), "memory_heap_size": int(spec.at("rss", rep))})
    floor = spec.variant == "floor"
    return CellRecord(
        schema=CELL_SCHEMA, cell_id=cell.cell_id, repetition=rep, status="failed" if failed else "measured",
        error="Envoy did not start" if failed else None, cell=cell, mode="closed",
        plugin_config={} if uses_filter else None,
        runtime=RuntimeRecord(name="local", options={}, envoy_path=None),
        upstream=UpstreamRecord(kind="none" if floor else "test-app", url=None if floor else "http://127.0.0.1:1"),
        started_unix=START, ended_unix=START + DURATION_S, load_seconds=None if failed else DURATION_S,
        locust=None if failed else LocustRecord(argv=["locust"], exit_code=0, cpu_warning=False,
                                                 samples_files=["samples.json"], workers=0),
        warmup=WarmupRecord(requests=0, store_wait_ms=None),
        upstream_requests=None if floor or failed else REQUESTS - hits,
        envoy=EnvoyFate(died=spec.oom or failed, oom_killed=spec.oom, exit_code=137 if spec.oom else None,
                        restart_count=0, phase="load" if spec.oom else ("start" if failed else None)),
        envoy_stats=stats, backend_stats_before=None, backend_stats_after=None,
        resources=None if failed else _resources(spec.at("rss", rep)),
        findings=list(spec.findings) + ([Finding(kind="stack_start_failed", component="envoy", phase="start",
                                                 at_s=None, detail="Envoy did not start", counts={})]
                                        if failed else []))


def _environment(wasm_path: str | None, wasm_sha256: str | None) -> Environment:
    return Environment(envoy_version="1.40.0", wasm_path=wasm_path, wasm_sha256=wasm_sha256, cpu_model="test cpu",
                       cpu_cores=2, memory_bytes=8 << 30, kernel="test", python="3.11", locust_version="2.0",
                       git_commit=None, git_dirty=None)


def write_run(path: Path, specs: list[Spec], *, repetitions: int = 3, status: str = "complete",
              wasm_path: str | None = "/tmp/sp_istio_cache.wasm", wasm_sha256: str | None = "a" * 64,
              parameters: dict[str, Any] | None = None, profile_doc: dict[str, Any] | None = None) -> Path:
    """Write a run directory: ``run.json`` and, per spec and repetition (interleaved like the
    engine), ``cell.json`` + ``samples.json``."""
    path = Path(path)
    entries = []
    for rep in range(1, repetitions + 1):
        for spec in specs:
            cell_id = spec.cell().cell_id
            directory = path / rep_dir(cell_id, rep)
            rec = _record(spec, rep, directory)
            write_model(directory / "cell.json", rec)
            entries.append(RunCell(cell_id=cell_id, repetition=rep, variant=spec.variant, dir=rep_dir(cell_id, rep),
                                   status=rec.status, seconds=DURATION_S, findings=len(rec.findings)))
    params = parameters if parameters is not None else Matrix(repetitions=repetitions).model_dump(mode="json")
    if profile_doc is not None:
        (path / "profile.json").write_text(json.dumps(profile_doc))
    manifest = RunManifest(schema=RUN_SCHEMA, status=status, started_unix=START, ended_unix=START + 60,
                           wall_seconds=60.0, error=None, parameters=params,
                           profile="profile.json" if profile_doc is not None else None,
                           environment=_environment(wasm_path, wasm_sha256), cells=entries, findings=[])
    write_model(path / "run.json", manifest)
    return path


def sized_run(path: Path, spec: dict[int, tuple[float, float]], *, base_p99: float = 1000.0,
              base_p50: float = 600.0, floor_p50: float = 300.0, floor_p99: float = 500.0,
              base_rss: float = 60 * MIB, filter_rss: float = 90 * MIB, jitter: float = 0.0,
              limited: set[tuple[str, int]] = frozenset(), errors: dict[tuple[str, int], int] | None = None,
              repetitions: int = 3, hit_ratios=(0.0, 0.9), floor: bool = True, oom: set[int] = frozenset(),
              histograms: dict[str, tuple[float, float, float]] | None = None, **kw: Any) -> Path:
    """A run over payload sizes: ``spec`` is {size: (filter p99 at h=0, filter p99 at h=0.9)} µs,
    the baseline p99 ``base_p99`` everywhere, a floor per size. ``jitter``: repetition r of a
    filter cell has p99 × (1 + jitter × (r − 2)) (so the interval of 3 repetitions is ±jitter).
    ``limited``/``errors`` name (variant, size) cells whose repetition 2 is generator-limited /
    has that many 503s."""
    errors = errors or {}
    specs: list[Spec] = []
    for size, p99s in spec.items():
        if floor:
            specs.append(Spec("floor", payload=size, hit=None, p50=floor_p50, p99=floor_p99, rss=40 * MIB))
        for h, p99 in zip(hit_ratios, p99s):
            reps = [p99 * (1 + jitter * (r - 2)) for r in range(1, repetitions + 1)]

            def flag(variant: str, size: int = size) -> list[bool]:
                return [r == 2 and (variant, size) in limited for r in range(1, repetitions + 1)]

            def errs(variant: str, size: int = size) -> list[int]:
                return [errors.get((variant, size), 0) if r == 2 else 0 for r in range(1, repetitions + 1)]

            specs.append(Spec("baseline", payload=size, hit=h, p50=base_p50, p99=base_p99, rss=base_rss,
                              limited=flag("baseline"), errors=errs("baseline")))
            specs.append(Spec("filter", payload=size, hit=h, p50=min(p99, base_p50 * p99 / base_p99), p99=reps,
                              rss=filter_rss, limited=flag("filter"), errors=errs("filter"), oom=size in oom,
                              histograms=dict(histograms or {})))
    return write_run(path, specs, repetitions=repetitions, **kw)


PROFILE_ROWS = [
    {"method": "GET", "path": "/a", "response_body_bytes": 1024, "status": 200, "cache_control": "max-age=60",
     "weight": 50},
    {"method": "GET", "path": "/b", "response_body_bytes": 48 * 1024, "weight": 30},
    {"method": "GET", "path": "/c", "response_body_bytes": 300 * 1024, "weight": 15},
    {"method": "GET", "path": "/d", "response_body_bytes": 2 * 1024 * 1024, "cache_control": "no-store", "weight": 4},
    {"method": "POST", "path": "/e", "request_body_bytes": 512, "response_body_bytes": 2048, "weight": 1},
]


def profile_run(path: Path, *, base_p50: float = 600.0, base_p99: float = 1000.0, added_p99: float = 800.0,
                filter_rss: float = 90 * MIB, **kw: Any) -> Path:
    """A run driven by the traffic profile ``shop`` (:data:`PROFILE_ROWS`): floor, baseline and
    filter cells of profile traffic, 3 repetitions, ``profile.json`` written by the model."""
    from sp_istio_cache.bench.profile import TrafficProfile

    profile = TrafficProfile(name="shop", source="test rows", rows=PROFILE_ROWS)
    specs = [Spec("floor", payload=profile.floor_body_bytes(), hit=None, profile="shop", p50=300, p99=500),
             Spec("baseline", profile="shop", p50=base_p50, p99=base_p99),
             Spec("filter", profile="shop", p50=base_p50, p99=base_p99 + added_p99, rss=filter_rss)]
    return write_run(path, specs, profile_doc=profile.model_dump(by_alias=True), **kw)
