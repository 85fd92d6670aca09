"""Guest linear memory as the host functions see it: bounds-checked reads and writes, and buffers
handed to the guest through its allocator (proxy-wasm-cpp-host ``WasmBase::allocMemory`` and
``copyToPointerSize``).

Every method takes the wasmtime ``caller`` (or the store) of the host call in progress; pointers and
sizes are u32 (wasm32).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import wasmtime

from .abi import WasmResult

U32 = 0xFFFFFFFF


class GuestMemory:
    """Reads and writes one instance's exported ``memory``; allocates through ``allocate``.

    Args:
        memory: the instance's exported memory.
        allocate: calls the guest allocator (``proxy_on_memory_allocate`` or ``malloc``) with
            ``(caller, size)`` and returns its pointer (0: out of memory).
    """

    def __init__(self, memory: wasmtime.Memory, allocate: Callable[[Any, int], int]):
        self._memory = memory
        self._allocate = allocate
        self.allocations = 0
        self.allocated_bytes = 0

    def size(self, store: Any) -> int:
        """Linear memory size in bytes (it only grows)."""
        return self._memory.data_len(store)

    def read(self, caller: Any, ptr: int, size: int) -> bytes | None:
        """``size`` bytes at ``ptr``; None when the range is outside memory (InvalidMemoryAccess)."""
        ptr, size = ptr & U32, size & U32
        if ptr + size > self._memory.data_len(caller):
            return None
        if size == 0:
            return b""
        return bytes(self._memory.read(caller, ptr, ptr + size))

    def write(self, caller: Any, ptr: int, data: bytes) -> bool:
        """Write ``data`` at ``ptr``; False when it does not fit."""
        ptr &= U32
        if ptr + len(data) > self._memory.data_len(caller):
            return False
        if data:
            self._memory.write(caller, data, ptr)
        return True

    def write_u32(self, caller: Any, ptr: int, value: int) -> bool:
        """Little-endian u32 (``setWord`` / ``setDatatype<uint32_t>`` on wasm32)."""
        return self.write(caller, ptr, struct.pack("<I", value & U32))

    def write_u64(self, caller: Any, ptr: int, value: int) -> bool:
        """Little-endian u64 (``setDatatype<uint64_t>``)."""
        return self.write(caller, ptr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def alloc(self, caller: Any, size: int) -> int:
        """A guest buffer of ``size`` bytes, or 0 when the allocator fails or answers a pointer
        outside memory (``allocMemory`` returns nullptr then)."""
        ptr = self._allocate(caller, size) & U32
        self.allocations += 1
        self.allocated_bytes += size
        if ptr == 0 or ptr + size > self._memory.data_len(caller):
            return 0
        return ptr

    def return_bytes(self, caller: Any, data: bytes, ptr_ptr: int, size_ptr: int) -> WasmResult:
        """``copyToPointerSize``: copy ``data`` into a fresh guest buffer and write its pointer and
        size to ``ptr_ptr``/``size_ptr``. Empty data writes pointer 0 and size 0 and allocates
        nothing. The guest owns (frees) the buffer."""
        pointer = 0
        if data:
            pointer = self.alloc(caller, len(data))
            if pointer == 0 or not self.write(caller, pointer, data):
                return WasmResult.INVALID_MEMORY_ACCESS
        if not (self.write_u32(caller, ptr_ptr, pointer) and self.write_u32(caller, size_ptr, len(data))):
            return WasmResult.INVALID_MEMORY_ACCESS
        return WasmResult.OK
