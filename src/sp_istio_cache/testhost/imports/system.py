"""Logging, time, randomness and the WASI functions Envoy provides (proxy-wasm-cpp-host
``exports.cc``): ``fd_write`` to fd 1/2 becomes an info/error log line (one trailing newline
dropped), the clocks read the model's virtual clock, ``random_get`` refuses more than 64 KiB,
``environ_*`` serve the model's ``env`` (Envoy's ``vm_config.environment_variables``), ``args_*``
are empty, and ``proc_exit`` only logs (the guest then traps on its own).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ..abi import LogLevel, WasiErrno, WasmResult
from ..vm import ImportSpec

if TYPE_CHECKING:
    from ..worker import Worker

RANDOM_GET_MAX_BYTES = 64 * 1024


def proxy_log(w: Worker, caller: Any, level: int, ptr: int, size: int) -> int:
    if level > LogLevel.CRITICAL:
        return WasmResult.BAD_ARGUMENT
    message = w.mem.read(caller, ptr, size)
    if message is None:
        return WasmResult.INVALID_MEMORY_ACCESS
    w.model.log(LogLevel(level), message, w)
    return WasmResult.OK


def proxy_get_log_level(w: Worker, caller: Any, ret: int) -> int:
    return WasmResult.OK if w.mem.write_u32(caller, ret, w.model.log_level) else WasmResult.INVALID_MEMORY_ACCESS


def proxy_get_current_time_nanoseconds(w: Worker, caller: Any, ret: int) -> int:
    return WasmResult.OK if w.mem.write_u64(caller, ret, w.model.clock.now_ns) else WasmResult.INVALID_MEMORY_ACCESS


def random_get(w: Worker, caller: Any, ptr: int, size: int) -> int:
    if size > RANDOM_GET_MAX_BYTES:
        return WasiErrno.INVAL
    return WasiErrno.SUCCESS if w.mem.write(caller, ptr, w.rng.randbytes(size)) else WasiErrno.FAULT


def fd_write(w: Worker, caller: Any, fd: int, iovs: int, iovs_len: int, nwritten_ptr: int) -> int:
    if fd not in (1, 2):
        return WasiErrno.BADF
    data = bytearray()
    for n in range(iovs_len):
        iov = w.mem.read(caller, iovs + 8 * n, 8)
        if iov is None:
            return WasiErrno.FAULT
        ptr, length = struct.unpack("<II", iov)
        if length:
            chunk = w.mem.read(caller, ptr, length)
            if chunk is None:
                return WasiErrno.FAULT
            data += chunk
    w.model.stdout += data
    if data:
        w.model.log(LogLevel.INFO if fd == 1 else LogLevel.ERROR, bytes(data).removesuffix(b"\n"), w)
    return WasiErrno.SUCCESS if w.mem.write_u32(caller, nwritten_ptr, len(data)) else WasiErrno.FAULT


def clock_time_get(w: Worker, caller: Any, clock_id: int, precision: int, ret: int) -> int:
    if clock_id not in (0, 1):
        return WasiErrno.NOTSUP
    now = w.model.clock.now_ns if clock_id == 0 else w.model.clock.monotonic_ns
    return WasiErrno.SUCCESS if w.mem.write_u64(caller, ret, now) else WasiErrno.FAULT


def clock_res_get(w: Worker, caller: Any, clock_id: int, ret: int) -> int:
    if clock_id not in (0, 1):
        return WasiErrno.NOTSUP
    return WasiErrno.SUCCESS if w.mem.write_u64(caller, ret, 1) else WasiErrno.FAULT


def _environ(w: Worker) -> list[bytes]:
    return [k.encode() + b"=" + v.encode() + b"\0" for k, v in w.model.env.items()]


def environ_sizes_get(w: Worker, caller: Any, count_ptr: int, size_ptr: int) -> int:
    entries = _environ(w)
    ok = w.mem.write_u32(caller, count_ptr, len(entries)) and w.mem.write_u32(caller, size_ptr, sum(map(len, entries)))
    return WasiErrno.SUCCESS if ok else WasiErrno.FAULT


def environ_get(w: Worker, caller: Any, array_ptr: int, buf_ptr: int) -> int:
    for entry in _environ(w):
        if not (w.mem.write_u32(caller, array_ptr, buf_ptr) and w.mem.write(caller, buf_ptr, entry)):
            return WasiErrno.FAULT
        array_ptr += 4
        buf_ptr += len(entry)
    return WasiErrno.SUCCESS


def args_sizes_get(w: Worker, caller: Any, argc_ptr: int, size_ptr: int) -> int:
    ok = w.mem.write_u32(caller, argc_ptr, 0) and w.mem.write_u32(caller, size_ptr, 0)
    return WasiErrno.SUCCESS if ok else WasiErrno.FAULT


def fd_fdstat_get(w: Worker, caller: Any, fd: int, stat_ptr: int) -> int:
    if fd not in (1, 2):
        return WasiErrno.BADF
    w.mem.write(caller, stat_ptr, struct.pack("<QQQ", 0, 64, 0))  # rights_base = FD_WRITE
    return WasiErrno.SUCCESS


def proc_exit(w: Worker, caller: Any, code: int) -> None:
    w.model.log(LogLevel.TRACE, f"wasi_unstable proc_exit({code})".encode(), w)


def _returns(value: int):
    def handler(w: Worker, caller: Any, *args: int) -> int:
        return value
    return handler


def _logs_and_returns_zero(name: str):
    def handler(w: Worker, caller: Any, *args: int) -> int:
        w.model.log(LogLevel.TRACE, f"wasi_unstable {name}".encode(), w)
        return WasiErrno.SUCCESS
    return handler


ENV = {
    "proxy_log": ImportSpec("iii", "i", proxy_log),
    "proxy_get_log_level": ImportSpec("i", "i", proxy_get_log_level),
    "proxy_get_current_time_nanoseconds": ImportSpec("i", "i", proxy_get_current_time_nanoseconds),
}

WASI = {
    "random_get": ImportSpec("ii", "i", random_get),
    "fd_write": ImportSpec("iiii", "i", fd_write),
    "fd_read": ImportSpec("iiii", "i", _returns(WasiErrno.NOSYS)),
    "fd_close": ImportSpec("i", "i", _logs_and_returns_zero("fd_close")),
    "fd_seek": ImportSpec("iIii", "i", _logs_and_returns_zero("fd_seek")),
    "fd_fdstat_get": ImportSpec("ii", "i", fd_fdstat_get),
    "fd_fdstat_set_flags": ImportSpec("ii", "i", _returns(WasiErrno.NOSYS)),
    "fd_prestat_get": ImportSpec("ii", "i", _returns(WasiErrno.BADF)),
    "fd_prestat_dir_name": ImportSpec("iii", "i", _returns(WasiErrno.NOSYS)),
    "fd_filestat_get": ImportSpec("ii", "i", _returns(WasiErrno.BADF)),
    "path_open": ImportSpec("iiiiiIIii", "i", _returns(WasiErrno.NOENT)),
    "clock_time_get": ImportSpec("iIi", "i", clock_time_get),
    "clock_res_get": ImportSpec("ii", "i", clock_res_get),
    "environ_sizes_get": ImportSpec("ii", "i", environ_sizes_get),
    "environ_get": ImportSpec("ii", "i", environ_get),
    "args_sizes_get": ImportSpec("ii", "i", args_sizes_get),
    "args_get": ImportSpec("ii", "i", _returns(WasiErrno.SUCCESS)),
    "sched_yield": ImportSpec("", "i", _returns(WasiErrno.SUCCESS)),
    "proc_exit": ImportSpec("i", "", proc_exit),
}
