"""Render the Envoy bootstrap for one benchmark variant from ``envoy/envoy.yaml.j2``.

Variants (DESIGN.md §5): ``baseline`` (no filter), ``filter-off`` (filter loaded, cache disabled:
pure overhead), ``filter`` (cache on), ``envoy-cache`` (Envoy's native
``envoy.filters.http.cache`` with its in-memory SimpleHttpCache, the in-proxy anchor), ``floor``
(a ``direct_response`` route answering ``direct_response_bytes`` deterministic bytes: no upstream,
no filter; the load generator's floor).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from . import pluginconfig
from .paths import ENVOY_DIR

VARIANTS = ("baseline", "filter-off", "filter", "envoy-cache", "floor")
BACKEND_CLUSTER = "sp_cache_backend"
#: ``--fail-strategy`` -> Envoy's Wasm ``PluginConfig.failure_policy`` (envoy.extensions.wasm.v3.FailurePolicy,
#: Envoy 1.40 API); what each does to traffic is measured in tests/istio/test_fail_strategy.py (docs/deploy.md)
FAIL_STRATEGIES = {"open": "FAIL_OPEN", "closed": "FAIL_CLOSED", "reload": "FAIL_RELOAD"}


@dataclass(frozen=True)
class EnvoyConfig:
    """Inputs of one rendered bootstrap.

    Ports of 0 are chosen by Envoy at bind time and read back from the admin API.
    ``per_connection_buffer_limit_bytes`` of None keeps Envoy's default (1 MiB).
    ``validate_plugin_config=False`` hands the plugin config to the filter unchecked, to prove
    the filter's own refusal in ``proxy_on_configure``. ``fail_strategy``: a key of
    ``FAIL_STRATEGIES`` (what Envoy does when the Wasm VM fails).
    ``direct_response_bytes``: the body size
    of the ``floor`` variant. An external upstream: ``upstream_host`` a name resolved by DNS
    (``upstream_dns``), ``upstream_tls`` (TLS with SNI = the host), ``upstream_authority`` the
    Host the upstream gets (None: as the client sent it). ``listener_address``: where the
    listener binds when it is not ``bind_address`` (remote load generators); the admin API
    stays on ``bind_address``.
    ``allow_on_headers_stop_iteration``: the Wasm filter's field of that name (Envoy 1.40); Istio's
    WasmPlugin leaves it unset (false), so the tests run the filter both ways.
    """

    variant: str
    upstream_port: int
    backend_port: int = 0
    #: one backend endpoint per replica (load-balanced); empty: ``(backend_port,)``
    backend_ports: tuple[int, ...] = ()
    wasm_path: Path | None = None
    plugin_config: dict[str, Any] = field(default_factory=dict)
    bind_address: str = "127.0.0.1"
    upstream_host: str = "127.0.0.1"
    backend_host: str = "127.0.0.1"
    listener_port: int = 0
    admin_port: int = 0
    route_timeout_s: int = 60
    per_connection_buffer_limit_bytes: int | None = None
    validate_plugin_config: bool = True
    fail_strategy: str = "open"
    direct_response_bytes: int = 0
    upstream_tls: bool = False
    upstream_dns: bool = False
    upstream_authority: str | None = None
    listener_address: str | None = None
    allow_on_headers_stop_iteration: bool = True

    def effective_plugin_config(self) -> dict[str, Any]:
        """The plugin config sent to the filter: the backend cluster pinned, cache off for
        ``filter-off``; validated against the schema (raises PluginConfigError)."""
        cfg = {"backend_cluster": BACKEND_CLUSTER, **self.plugin_config}
        if self.variant == "filter-off":
            cfg["cache_enabled"] = False
        return pluginconfig.validate(cfg) if self.validate_plugin_config else cfg


def render(cfg: EnvoyConfig) -> str:
    """Return the Envoy bootstrap YAML for ``cfg``.

    Raises:
        ValueError: unknown variant or fail strategy, or a filter variant without ``wasm_path``.
        PluginConfigError: the plugin config fails the schema.
    """
    if cfg.variant not in VARIANTS:
        raise ValueError(f"unknown variant {cfg.variant!r}; known: {', '.join(VARIANTS)}")
    wasm_filter = cfg.variant in ("filter", "filter-off")
    if wasm_filter and cfg.wasm_path is None:
        raise ValueError(f"variant {cfg.variant!r} needs the filter's wasm_path (run `sp-istio-cache build`)")
    if cfg.fail_strategy not in FAIL_STRATEGIES:
        raise ValueError(f"fail strategy {cfg.fail_strategy!r}: choose one of {', '.join(FAIL_STRATEGIES)}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ENVOY_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("envoy.yaml.j2")
    return template.render(
        variant=cfg.variant,
        bind_address=cfg.bind_address,
        listener_address=cfg.listener_address,
        admin_port=cfg.admin_port,
        listener_port=cfg.listener_port,
        upstream_host=cfg.upstream_host,
        upstream_port=cfg.upstream_port,
        backend_host=cfg.backend_host,
        backend_ports=cfg.backend_ports or (cfg.backend_port,),
        backend_cluster=BACKEND_CLUSTER,
        wasm_filter=wasm_filter,
        envoy_cache_filter=cfg.variant == "envoy-cache",
        wasm_path=str(cfg.wasm_path) if cfg.wasm_path else "",
        plugin_config_json=json.dumps(cfg.effective_plugin_config(), separators=(",", ":"), sort_keys=True)
        if wasm_filter
        else "",
        route_timeout_s=cfg.route_timeout_s,
        failure_policy=FAIL_STRATEGIES[cfg.fail_strategy],
        allow_on_headers_stop_iteration="true" if cfg.allow_on_headers_stop_iteration else "false",
        per_connection_buffer_limit_bytes=cfg.per_connection_buffer_limit_bytes,
        direct_response_b64=_floor_body(cfg.direct_response_bytes) if cfg.variant == "floor" else None,
        direct_response_bytes=cfg.direct_response_bytes,
        upstream_tls=cfg.upstream_tls,
        upstream_dns=cfg.upstream_dns,
        upstream_authority=cfg.upstream_authority,
    )


def _floor_body(size: int) -> str:
    """Base64 of the floor's response body: the test upstream's bytes for ``size`` (seed "1")."""
    from .upstream.payload import generate

    return base64.b64encode(generate(size, "1")).decode("ascii")
