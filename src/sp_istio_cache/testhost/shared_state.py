"""Process-wide proxy-wasm state shared by every VM of one Envoy: shared data and shared queues,
as proxy-wasm-cpp-host implements them (``src/shared_data.cc``, ``src/shared_queue.cc``).

Shared data: one map per ``vm_id``; ``get`` returns (value, cas); ``set`` with cas 0 writes
unconditionally, with a cas that differs from the key's current one answers CasMismatch, and on a
key that does not exist yet always writes. Every successful write takes the next value of ONE
process-wide cas counter (starting at 1, never 0). ABI 0.2.1 has no delete: keys live forever,
so any cache kept there must budget its own memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .abi import WasmResult


class SharedData:
    """Key/value store with compare-and-swap, shared by all VMs of a process."""

    def __init__(self) -> None:
        self._data: dict[str, dict[bytes, tuple[bytes, int]]] = {}
        self._cas = 1

    def get(self, vm_id: str, key: bytes) -> tuple[bytes, int] | None:
        """(value, cas) or None (NotFound)."""
        return self._data.get(vm_id, {}).get(bytes(key))

    def set(self, vm_id: str, key: bytes, value: bytes, cas: int) -> WasmResult:
        """Write ``value``; OK, or CAS_MISMATCH when ``cas`` is non-zero and stale."""
        entries = self._data.setdefault(vm_id, {})
        current = entries.get(bytes(key))
        if current is not None and cas != 0 and cas != current[1]:
            return WasmResult.CAS_MISMATCH
        entries[bytes(key)] = (bytes(value), self._next_cas())
        return WasmResult.OK

    def keys(self, vm_id: str) -> list[bytes]:
        """Every key ever written under ``vm_id``."""
        return list(self._data.get(vm_id, {}))

    def bytes_used(self, vm_id: str) -> int:
        """Key plus value bytes held for ``vm_id``."""
        return sum(len(k) + len(v) for k, (v, _) in self._data.get(vm_id, {}).items())

    def _next_cas(self) -> int:
        cas = self._cas
        self._cas = (self._cas + 1) & 0xFFFFFFFF or 1  # 0 is not a valid cas
        return cas


@dataclass
class _Queue:
    items: deque[bytes] = field(default_factory=deque)
    context_id: int = 0
    notify: Callable[[int, int], None] | None = None  # (context_id, token) -> post proxy_on_queue_ready


class SharedQueues:
    """Named queues shared by all VMs of a process; tokens are process-wide (from 1)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, bytes], int] = {}
        self._queues: dict[int, _Queue] = {}
        self._next = 1

    def register(self, vm_id: str, name: bytes, context_id: int, notify: Callable[[int, int], None]) -> int:
        """Create (or take over) queue ``name``: later enqueues notify ``context_id`` through ``notify``.
        Data already queued is kept."""
        key = (vm_id, bytes(name))
        token = self._tokens.get(key)
        if token is None:
            token = self._tokens[key] = self._next
            self._next += 1
            self._queues[token] = _Queue()
        queue = self._queues[token]
        queue.context_id, queue.notify = context_id, notify
        return token

    def resolve(self, vm_id: str, name: bytes) -> int | None:
        """The token of queue ``name`` or None."""
        return self._tokens.get((vm_id, bytes(name)))

    def dequeue(self, token: int) -> tuple[WasmResult, bytes]:
        """(OK, item) | (EMPTY, b"") | (NOT_FOUND, b"")."""
        queue = self._queues.get(token)
        if queue is None:
            return WasmResult.NOT_FOUND, b""
        if not queue.items:
            return WasmResult.EMPTY, b""
        return WasmResult.OK, queue.items.popleft()

    def enqueue(self, token: int, value: bytes) -> WasmResult:
        """Append and post ``proxy_on_queue_ready`` to the registering context's worker."""
        queue = self._queues.get(token)
        if queue is None:
            return WasmResult.NOT_FOUND
        queue.items.append(bytes(value))
        if queue.notify is not None:
            queue.notify(queue.context_id, token)
        return WasmResult.OK
