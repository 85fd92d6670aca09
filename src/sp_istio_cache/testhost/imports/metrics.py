"""Custom metrics (Envoy ``Context::defineMetric``/``incrementMetric``/``recordMetric``/``getMetric``);
see :mod:`..stats` for how ids map to the process-wide stats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..abi import MetricType, WasmResult
from ..vm import ImportSpec

if TYPE_CHECKING:
    from ..worker import Worker


def proxy_define_metric(w: Worker, caller: Any, t: int, nptr: int, nsize: int, id_ptr: int) -> int:
    name = w.mem.read(caller, nptr, nsize)
    if name is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    if t > MetricType.HISTOGRAM:
        return WasmResult.BAD_ARGUMENT
    mid = w.metric_ids.define(MetricType(t), name.decode("utf-8", "replace"))
    return WasmResult.OK if w.mem.write_u32(caller, id_ptr, mid) else WasmResult.INVALID_MEMORY_ACCESS


def proxy_increment_metric(w: Worker, caller: Any, mid: int, offset: int) -> int:
    kind = mid & 3
    if kind not in (MetricType.COUNTER, MetricType.GAUGE):
        return WasmResult.BAD_ARGUMENT
    stat = w.metric_ids.get(mid)
    if stat is None:
        return WasmResult.NOT_FOUND
    if kind == MetricType.COUNTER:
        if offset <= 0:
            return WasmResult.BAD_ARGUMENT
        stat.value += offset
        return WasmResult.OK
    stat.value += offset
    if stat.value < 0:
        w.model.violation(f"gauge {stat.name} went below zero ({stat.value}); Envoy's gauge is unsigned")
    return WasmResult.OK


def proxy_record_metric(w: Worker, caller: Any, mid: int, value: int) -> int:
    stat = w.metric_ids.get(mid)
    if stat is None or stat.type != mid & 3:
        return WasmResult.NOT_FOUND
    value &= 2**64 - 1
    if stat.type == MetricType.COUNTER:
        stat.value += value
    elif stat.type == MetricType.GAUGE:
        stat.value = value
    else:
        stat.samples.append(value)
    return WasmResult.OK


def proxy_get_metric(w: Worker, caller: Any, mid: int, ret: int) -> int:
    if mid & 3 not in (MetricType.COUNTER, MetricType.GAUGE):
        return WasmResult.BAD_ARGUMENT
    stat = w.metric_ids.get(mid)
    if stat is None:
        return WasmResult.NOT_FOUND
    return WasmResult.OK if w.mem.write_u64(caller, ret, stat.value) else WasmResult.INVALID_MEMORY_ACCESS


ENV = {
    "proxy_define_metric": ImportSpec("iiii", "i", proxy_define_metric),
    "proxy_increment_metric": ImportSpec("iI", "i", proxy_increment_metric),
    "proxy_record_metric": ImportSpec("iI", "i", proxy_record_metric),
    "proxy_get_metric": ImportSpec("ii", "i", proxy_get_metric),
}
