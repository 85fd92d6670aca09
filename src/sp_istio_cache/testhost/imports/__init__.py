"""The host functions a filter module imports, grouped by area, each beside Envoy's semantics.

Every handler is called as ``handler(worker, caller, *wasm_args)`` and returns the ABI status (or
WASI errno). :func:`import_table` joins the groups into ``(module, name) -> ImportSpec`` for the VM;
WASI functions are offered under both ``wasi_snapshot_preview1`` and ``wasi_unstable``, as
proxy-wasm-cpp-host registers them.
"""

from __future__ import annotations

from ..vm import ImportSpec
from . import callouts, http, metrics, properties, shared, stream, system, tick

_GROUPS = (system, http, stream, callouts, metrics, properties, shared, tick)


def import_table() -> dict[tuple[str, str], ImportSpec]:
    """Every host function this test host provides."""
    table: dict[tuple[str, str], ImportSpec] = {}
    for group in _GROUPS:
        table.update({("env", name): spec for name, spec in getattr(group, "ENV", {}).items()})
        for namespace in ("wasi_snapshot_preview1", "wasi_unstable"):
            table.update({(namespace, name): spec for name, spec in getattr(group, "WASI", {}).items()})
    return table
