"""One wasmtime instance of the filter module: link the host functions, instantiate, call exports
with a fuel budget, and turn traps into :class:`GuestTrap` (the VM is then dead, as in Envoy).

Module imports and exports are read through wasmtime's own API (``Module.imports`` /
``Module.exports``), never by parsing the binary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import wasmtime

from .errors import GuestTrap, TestHostError, UnsupportedImport
from .memory import GuestMemory

#: instructions one top-level callback may run before the host calls it a hang
DEFAULT_FUEL_PER_CALL = 4_000_000_000
ABI_EXPORT = "proxy_abi_version_0_2_1"
_VALTYPES = {"i": wasmtime.ValType.i32(), "I": wasmtime.ValType.i64()}

#: host functions Envoy lets a module call while ``_initialize``/``main`` run (proxy-wasm-cpp-host
#: ``WasmBase::startVm`` restricted callback list, limited to functions this host provides)
INITIALIZE_ALLOWED = frozenset({
    ("env", "proxy_log"), ("env", "emscripten_notify_memory_growth"),
    *((ns, fn) for ns in ("wasi_unstable", "wasi_snapshot_preview1") for fn in (
        "fd_write", "args_sizes_get", "args_get", "environ_sizes_get", "environ_get", "clock_time_get",
        "clock_res_get", "random_get", "poll_oneoff", "fd_fdstat_get", "fd_fdstat_set_flags", "fd_prestat_get",
        "fd_prestat_dir_name", "fd_filestat_get")),
})


class CompiledModule(NamedTuple):
    """A compiled module; compile once and share across VMs (compiling is the slow part)."""

    engine: wasmtime.Engine
    module: wasmtime.Module


@dataclass(frozen=True)
class ImportSpec:
    """A host function: wasm signature as letters (``i`` i32, ``I`` i64) and the Python handler,
    called as ``fn(host, caller, *args)``."""

    params: str
    results: str
    fn: Callable[..., Any]


class GuestExit(Exception):
    """Raised by a host function to kill the VM (WASI ``proc_exit``, a restricted call)."""


def load_module(wasm: str | Path | bytes, *, fuel: bool = True) -> CompiledModule:
    """Compile a module (path or bytes). ``fuel=False`` builds an engine without fuel metering
    (faster; for timing runs)."""
    cfg = wasmtime.Config()
    cfg.consume_fuel = fuel
    engine = wasmtime.Engine(cfg)
    if isinstance(wasm, (bytes, bytearray)):
        return CompiledModule(engine, wasmtime.Module(engine, bytes(wasm)))
    return CompiledModule(engine, wasmtime.Module.from_file(engine, str(wasm)))


class WasmVM:
    """One instance of ``compiled`` whose imports call ``host`` through ``imports``.

    Args:
        compiled: from :func:`load_module`.
        imports: ``(module, name) -> ImportSpec`` the host provides.
        host: first argument of every handler.
        fuel_per_call: instructions one top-level call may use (exhausting it is a trap).
        log_tail: the last log lines, quoted in :class:`GuestTrap` messages.

    Raises:
        UnsupportedImport: the module imports something not in ``imports`` or with another signature.
        TestHostError: no ``proxy_abi_version_0_2_1`` export, no memory or no allocator.
    """

    def __init__(self, compiled: CompiledModule, imports: Mapping[tuple[str, str], ImportSpec], host: Any, *,
                 fuel_per_call: int = DEFAULT_FUEL_PER_CALL, log_tail: Callable[[], Sequence[str]] = list):
        self.engine, self.module = compiled
        self.store = wasmtime.Store(self.engine)
        self.fuel_per_call = fuel_per_call
        self.fuel_enabled = True
        self.fuel_consumed = 0
        self.failed: GuestTrap | None = None
        self.restricted: frozenset[tuple[str, str]] | None = None
        self._log_tail = log_tail
        self._depth = 0
        linker = wasmtime.Linker(self.engine)
        for imp in self.module.imports:
            key = (imp.module, imp.name or "")
            spec = imports.get(key)
            if spec is None:
                raise UnsupportedImport(
                    f"the module imports {imp.module}.{imp.name}, which this test host does not implement")
            if not isinstance(imp.type, wasmtime.FuncType):
                raise UnsupportedImport(f"the module imports {imp.module}.{imp.name} as a non-function")
            ty = wasmtime.FuncType([_VALTYPES[c] for c in spec.params], [_VALTYPES[c] for c in spec.results])
            want = ([str(t) for t in ty.params], [str(t) for t in ty.results])
            got = ([str(t) for t in imp.type.params], [str(t) for t in imp.type.results])
            if want != got:
                raise UnsupportedImport(f"{imp.module}.{imp.name} is imported as {got}, the host provides {want}")
            linker.define_func(imp.module, key[1], ty, self._guard(key, spec, host), access_caller=True)
        self._set_fuel()
        instance = linker.instantiate(self.store, self.module)
        found = instance.exports(self.store)
        self.exports: dict[str, Any] = {e.name: found[e.name] for e in self.module.exports}
        abi = sorted(n for n in self.exports if n.startswith("proxy_abi_version_"))
        if abi != [ABI_EXPORT]:
            raise TestHostError(f"expected ABI {ABI_EXPORT}, the module exports {abi}")
        memory = self.exports.get("memory")
        allocator = self.exports.get("proxy_on_memory_allocate") or self.exports.get("malloc")
        if not isinstance(memory, wasmtime.Memory) or allocator is None:
            raise TestHostError("the module exports no memory or no proxy_on_memory_allocate/malloc")
        self.memory = GuestMemory(memory, partial(self._nested, allocator))

    # ------------------------------------------------------------------ calls

    def has(self, name: str) -> bool:
        """Whether the module exports ``name``."""
        return name in self.exports

    def call(self, name: str, *args: int) -> int | None:
        """Call export ``name`` (None when it is not exported, as Envoy skips missing callbacks).

        A top-level call gets a fresh fuel budget; its use is added to :attr:`fuel_consumed`.

        Raises:
            GuestTrap: the guest trapped or exited; the VM is dead from now on.
            TestHostError: the VM trapped earlier.
        """
        fn = self.exports.get(name)
        if fn is None:
            return None
        if self.failed is not None:
            raise TestHostError(f"the VM trapped earlier and is dead: {self.failed}")
        top = self._depth == 0
        if top:
            self._set_fuel()
        self._depth += 1
        try:
            return fn(self.store, *args)
        except (wasmtime.Trap, wasmtime.WasmtimeError, GuestExit) as exc:
            self.failed = GuestTrap(name, args, exc, self._log_tail())
            raise self.failed from exc
        finally:
            self._depth -= 1
            if top and self.fuel_enabled:
                self.fuel_consumed += self.fuel_per_call - self.store.get_fuel()

    def initialize(self) -> None:
        """Envoy's ``startVm``: ``_initialize`` (then ``main`` or ``__main_void``), or ``_start``,
        with only :data:`INITIALIZE_ALLOWED` host functions callable."""
        self.restricted = INITIALIZE_ALLOWED
        try:
            if self.has("_initialize"):
                self.call("_initialize")
                if self.has("main"):
                    self.call("main", 0, 0)
                elif self.has("__main_void"):
                    self.call("__main_void")
            elif self.has("_start"):
                self.call("_start")
        finally:
            self.restricted = None

    @property
    def memory_bytes(self) -> int:
        """Linear memory size in bytes (it only grows: a steady size over many requests means no leak)."""
        return self.memory.size(self.store)

    # ------------------------------------------------------------------ internals

    def _nested(self, fn: wasmtime.Func, caller: Any, *args: int) -> int:
        self._depth += 1
        try:
            return fn(caller, *args) or 0
        finally:
            self._depth -= 1

    def _guard(self, key: tuple[str, str], spec: ImportSpec, host: Any) -> Callable[..., Any]:
        """The function wasmtime calls: i32 arguments as u32 (wasmtime passes them signed), and
        Envoy's restriction while the VM starts."""
        fn = partial(spec.fn, host)
        unsigned = [i for i, c in enumerate(spec.params) if c == "i"]

        def host_function(caller: Any, *args: int) -> Any:
            if self.restricted is not None and key not in self.restricted:
                raise GuestExit(f"{key[0]}.{key[1]} called during VM start; Envoy allows only logging, "
                                f"WASI clock/random/environ/args there (restricted_callback trap)")
            values = list(args)
            for i in unsigned:
                values[i] &= 0xFFFFFFFF
            return fn(caller, *values)

        return host_function

    def _set_fuel(self) -> None:
        if not self.fuel_enabled:
            return
        try:
            self.store.set_fuel(self.fuel_per_call)
        except wasmtime.WasmtimeError:  # engine compiled without fuel metering (timing runs)
            self.fuel_enabled = False
