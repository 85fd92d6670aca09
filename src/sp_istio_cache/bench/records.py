"""The files a benchmark run writes, as typed models checked when written and when read.

``run.json`` (:class:`RunManifest`) and ``cells/<cell_id>/rep-<n>/cell.json`` (:class:`CellRecord`)
are the contract between the ``bench`` stage and every reader (the report, notebooks, ``compare``);
``docs/bench-files.md`` describes the layout and each field. Every field is required: a missing
key is an error naming the file and the key, never a NaN. ``None`` (JSON ``null``) is a value
with a stated meaning (e.g. "this runtime does not measure it"), listed per field.

This module imports pydantic and :mod:`sp_istio_cache.bench.scenario` only: no runtime, no
Locust, so a reader of the files never starts anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .scenario import Cell, LoadMode

CELL_SCHEMA: Final = "sp-istio-cache/cell/2"
RUN_SCHEMA: Final = "sp-istio-cache/run/2"
CELL_FILE = "cell.json"
RUN_FILE = "run.json"
PROFILE_FILE = "profile.json"


class RecordError(ValueError):
    """A run file is missing or does not match its schema; the message names the file and key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


FindingKind = Literal["envoy_died", "backend_died", "upstream_died", "upstream_faults", "backend_faults",
                      "stack_start_failed", "warmup_failed", "locust_failed", "samples_missing",
                      "stats_unavailable", "sampler_error"]
Phase = Literal["start", "warm-up", "load", "end"]
Component = Literal["envoy", "backend", "upstream", "locust", "sampler", "workbench"]
#: the status of one measured repetition in ``cell.json``
RecordStatus = Literal["measured", "failed"]
MemoryBasis = Literal["process_rss", "container_working_set"]


class Finding(_Model):
    """Something that went wrong during a cell, recorded instead of aborting the run.

    Attributes:
        kind: what happened (``envoy_died``, ``backend_died``, ``upstream_died``: the process
            ended; ``upstream_faults`` / ``backend_faults``: Envoy counted failed requests to that
            cluster; ``stack_start_failed``, ``warmup_failed``, ``locust_failed``,
            ``samples_missing``: the cell could not be measured; ``stats_unavailable``: an admin
            read failed; ``sampler_error``: a resource sample failed).
        component: ``envoy``, ``backend``, ``upstream``, ``locust``, ``sampler`` or ``workbench``.
        phase: where the cell was: ``start``, ``warm-up``, ``load``, ``end``.
        at_s: seconds into the load phase when it was first seen; None when not timed.
        detail: one line for people (exit code, error text).
        counts: the counters behind it (e.g. ``{"upstream_rq_5xx": 12}``), {} when none.
    """

    kind: FindingKind
    component: Component
    phase: Phase
    at_s: float | None
    detail: str
    counts: dict[str, int]


class EnvoyFate(_Model):
    """Whether Envoy ended during the cell: ``died``, ``oom_killed`` (the kernel's OOM killer;
    docker only, False locally), ``exit_code`` (None while alive), ``restart_count`` (docker),
    ``phase`` where it was found dead (None when alive)."""

    died: bool
    oom_killed: bool
    exit_code: int | None
    restart_count: int
    phase: Phase | None


class Quantiles(_Model):
    """P50/P90/P99 of one Envoy histogram over the measured phase (Envoy's ``interval``
    quantiles, interpolated within its buckets), in the histogram's unit (µs for ``*_us``)."""

    p50: float
    p90: float
    p99: float


class EnvoyStatsRecord(_Model):
    """Envoy's ``/stats`` read before and after the measured phase (never during it).

    Attributes:
        filter_counters: every ``wasmcustom.sp_cache.*`` counter's change over the measured phase,
            keyed without ``wasmcustom.`` (e.g. ``sp_cache.store_dropped``); {} without the filter.
        filter_gauges: every ``wasmcustom.sp_cache.*`` gauge at the end of the load.
        filter_histograms: every ``wasmcustom.sp_cache.*_us`` histogram that recorded samples in
            the measured phase; a cell whose filter defines none has {} (never zeros).
        clusters: per Envoy cluster (``upstream``, ``sp_cache_backend``), the change of its
            failure and request counters (``upstream_rq_total``, ``upstream_rq_5xx``,
            ``upstream_cx_connect_fail``, ``upstream_rq_timeout``, ``upstream_rq_rx_reset``,
            ``upstream_rq_tx_reset``, ``upstream_cx_destroy_remote_with_active_rq``).
        server: ``server.memory_allocated`` and ``server.memory_heap_size`` (bytes) at the end.
    """

    filter_counters: dict[str, int]
    filter_gauges: dict[str, int]
    filter_histograms: dict[str, Quantiles]
    clusters: dict[str, dict[str, int]]
    server: dict[str, int]


class ResourceSummary(_Model):
    """What one cell cost, sampled in the orchestrator with psutil (local) or the docker stats
    API (docker) every ``interval_s``; Envoy's admin API is not polled. Bytes, seconds, cores.

    None means "not measured here": the container fields under ``local``, backend figures
    without a backend, upstream figures for an external upstream or the floor.

    Attributes:
        samples, interval_s: samples taken and their spacing.
        memory_basis: ``process_rss`` (local) or ``container_working_set`` (docker).
        rss_mean_bytes, rss_max_bytes: Envoy memory over the load, on ``memory_basis``.
        memory_anon_max_bytes: anonymous memory (heap and buffers): one meaning in both runtimes.
        memory_peak_bytes: the runtime's own peak (local ``VmHWM``; docker cgroup max usage).
        container_memory_max_bytes: docker: highest raw cgroup usage (what the limit acts on).
        memory_limit_bytes, cpu_limit_cores: docker limits.
        cpu_seconds: Envoy CPU time (user + system) over the load.
        cpu_throttled_seconds, cpu_throttled_periods, cpu_periods: docker CFS figures over the load.
        backend_cpu_seconds, backend_rss_max_bytes: the cache backend processes (CPU summed over the
            replicas, RSS the largest replica's).
        upstream_cpu_seconds: the test upstream process.
        envoy_running_at_end: False when Envoy had ended by the end of the load.
    """

    samples: int
    interval_s: float
    memory_basis: MemoryBasis
    rss_mean_bytes: float | None
    rss_max_bytes: float | None
    memory_anon_max_bytes: float | None
    memory_peak_bytes: float | None
    container_memory_max_bytes: float | None
    memory_limit_bytes: float | None
    cpu_limit_cores: float | None
    cpu_seconds: float | None
    cpu_throttled_seconds: float | None
    cpu_throttled_periods: float | None
    cpu_periods: float | None
    backend_cpu_seconds: float | None
    backend_rss_max_bytes: float | None
    upstream_cpu_seconds: float | None
    envoy_running_at_end: bool


class RuntimeRecord(_Model):
    """The Envoy runtime of a cell: ``name``, its ``options`` (docker limits as given),
    ``envoy_path`` (None: the default binary)."""

    name: str
    options: dict[str, Any]
    envoy_path: str | None


class UpstreamRecord(_Model):
    """What answered behind Envoy: ``test-app`` (the workbench's upstream, counted), ``external``
    (``--upstream``), or ``none`` (the floor's direct response); ``url`` (None for ``none``)."""

    kind: Literal["test-app", "external", "none"]
    url: str | None


class LocustRecord(_Model):
    """The load generator of a cell: command line (no interpreter), exit code, whether Locust
    warned about its CPU, the samples files it left (names in the cell directory), and the
    worker count (0: one process without master)."""

    argv: list[str]
    exit_code: int | None
    cpu_warning: bool
    samples_files: list[str]
    workers: int


class WarmupRecord(_Model):
    """Requests sent before the measured phase and the ms waited for the cache to hold them
    (None: no wait, e.g. variants without a cache)."""

    requests: int
    store_wait_ms: float | None


class CellRecord(_Model):
    """``cell.json``: one repetition of one cell.

    ``status`` is ``measured`` when Locust ran and left samples (findings may still say that a
    part died meanwhile), ``failed`` when no load could be measured (``error`` says why; the
    findings name the part). ``upstream_requests`` is the test upstream's own count over the
    measured phase (None: no test upstream, or it could not be read). ``plugin_config`` is the
    configuration the filter received (None for variants without it).
    """

    schema_: Literal["sp-istio-cache/cell/2"] = Field(alias="schema")
    cell_id: str
    repetition: int = Field(ge=1)
    status: RecordStatus
    error: str | None
    cell: Cell
    mode: LoadMode
    plugin_config: dict[str, Any] | None
    runtime: RuntimeRecord
    upstream: UpstreamRecord
    started_unix: float
    ended_unix: float
    load_seconds: float | None
    locust: LocustRecord | None
    warmup: WarmupRecord
    upstream_requests: int | None
    envoy: EnvoyFate
    envoy_stats: EnvoyStatsRecord | None
    backend_stats_before: dict[str, float] | None
    backend_stats_after: dict[str, float] | None
    resources: ResourceSummary | None
    findings: list[Finding]


class Environment(_Model):
    """The machine, tools and module of a run (None: could not be determined)."""

    envoy_version: str | None
    wasm_path: str | None
    wasm_sha256: str | None
    cpu_model: str
    cpu_cores: int | None
    memory_bytes: int
    kernel: str
    python: str
    locust_version: str | None
    git_commit: str | None
    git_dirty: bool | None


CellStatus = Literal["pending", "running", "measured", "failed", "interrupted"]


class RunCell(_Model):
    """One scheduled (cell, repetition) of a run, in run order: ``dir`` relative to the run
    directory, ``status``, wall ``seconds`` (None until it ran), ``findings`` count."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    cell_id: str
    repetition: int = Field(ge=1)
    variant: str
    dir: str
    status: CellStatus
    seconds: float | None
    findings: int


class RunManifest(_Model):
    """``run.json``: parameters, environment and progress of a run (rewritten after every cell).

    ``status``: ``running``, ``complete`` (every scheduled cell ran, measured or failed),
    ``failed`` (the run stopped on an error: ``error``), ``interrupted`` (Ctrl-C / SIGTERM).
    ``parameters`` is the validated matrix (``Matrix.model_dump(mode="json")``); ``profile`` the
    run-relative path of the normalised traffic profile (None without one); ``findings`` one line
    per finding of any cell.
    """

    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)

    schema_: Literal["sp-istio-cache/run/2"] = Field(alias="schema")
    status: Literal["running", "complete", "failed", "interrupted"]
    started_unix: float
    ended_unix: float | None
    wall_seconds: float | None
    error: str | None
    parameters: dict[str, Any]
    profile: str | None
    environment: Environment
    cells: list[RunCell]
    findings: list[str]


# -- reading and writing --------------------------------------------------------------------------
M = TypeVar("M", bound=BaseModel)


def _describe(exc: ValidationError, path: Path) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        key = ".".join(str(p) for p in err["loc"]) or "(document)"
        what = "missing" if err["type"] == "missing" else err["msg"]
        parts.append(f"{key}: {what}")
    return f"{path}: does not match its schema: " + "; ".join(parts)


def write_model(path: Path, model: BaseModel) -> Path:
    """Validate ``model`` again and write it as JSON, atomically (temp file + rename)."""
    path = Path(path)
    type(model).model_validate(model.model_dump(by_alias=True))  # a model built with model_construct is checked too
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(model.model_dump_json(by_alias=True, indent=2))
    os.replace(tmp, path)
    return path


def read_model(path: Path, model: type[M], missing: str) -> M:
    """Read and validate one JSON document.

    Raises:
        RecordError: missing file (message ends with ``missing``), not JSON, or a field that is
            missing or of the wrong type; names the file and the key.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: {missing}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RecordError(_describe(exc, path)) from None


def read_cell(rep_dir: Path) -> CellRecord:
    """``<rep_dir>/cell.json``. Raises RecordError naming the file and key."""
    return read_model(Path(rep_dir) / CELL_FILE, CellRecord, "missing (the cell did not finish)")


def read_run(run_dir: Path) -> RunManifest:
    """``<run_dir>/run.json``. Raises RecordError naming the file and key."""
    return read_model(Path(run_dir) / RUN_FILE, RunManifest,
                      f"no run manifest (is {run_dir} a benchmark run directory?)")


def rep_dir(cell_id: str, repetition: int) -> str:
    """The run-relative directory of one repetition of a cell."""
    return f"cells/{cell_id}/rep-{repetition}"


def finished_cells(run_dir: Path) -> list[tuple[RunCell, CellRecord]]:
    """Every (manifest entry, cell record) that ran (``measured`` or ``failed``), in run order.

    Raises:
        RecordError: the manifest or a record of a finished cell is missing or malformed.
    """
    run_dir = Path(run_dir)
    out = []
    for entry in read_run(run_dir).cells:
        if entry.status in ("measured", "failed"):
            out.append((entry, read_cell(run_dir / entry.dir)))
    return out


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schemas of the run files, generated from the models (for docs and other tools)."""
    return {"run.json": RunManifest.model_json_schema(by_alias=True),
            "cell.json": CellRecord.model_json_schema(by_alias=True)}
