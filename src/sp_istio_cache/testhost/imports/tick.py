"""``proxy_set_tick_period_milliseconds``: per ROOT context (a stream sets its root's period); the
timer (re)starts from now on the model's virtual clock; 0 stops it (Envoy ``Wasm::setTimerPeriod``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..abi import WasmResult
from ..vm import ImportSpec

if TYPE_CHECKING:
    from ..worker import Worker


def proxy_set_tick_period_milliseconds(w: Worker, caller: Any, period_ms: int) -> int:
    ctx = w.context()
    if ctx is None:
        return WasmResult.BAD_ARGUMENT
    w.set_tick_period(ctx.root, period_ms)
    return WasmResult.OK


ENV = {"proxy_set_tick_period_milliseconds": ImportSpec("i", "i", proxy_set_tick_period_milliseconds)}
