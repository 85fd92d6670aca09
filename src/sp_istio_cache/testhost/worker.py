"""One Envoy worker thread's Wasm VM: its contexts, the dispatch of ``proxy_on_*`` callbacks, the
after-VM-call actions, and the VM's callouts and tick timers (proxy-wasm-cpp-host ``WasmBase`` and
Envoy's ``Wasm``).

- context ids come from one counter per VM, from 1 (0 is the VM context of ``_initialize`` and
  the allocator), shared by root and stream contexts;
- during a callback the current context is the one called; ``proxy_set_effective_context`` changes
  which context later host calls act on until the callback returns;
- actions a callback asks for (continue, local reply, ``proxy_done``) run when the VM call has
  returned (``addAfterVmCallAction``), in order;
- ticks are per root context: ``proxy_set_tick_period_milliseconds`` (re)arms a timer from now,
  each tick re-arms it with the current period, 0 stops it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .callouts import TIMEOUT_ANSWER, CalloutAnswer, CallState, HttpCall
from .contexts import Plugin, RootContext
from .errors import TestHostError
from .imports import import_table
from .stats import MetricIds
from .stream import Stream
from .vm import CompiledModule, WasmVM

if TYPE_CHECKING:
    from .envoy import EnvoyModel

Context = RootContext | Stream


class Worker:
    """A worker VM of ``model``; ``index`` -1 is the configuration canary."""

    def __init__(self, model: EnvoyModel, index: int, compiled: CompiledModule):
        self.model = model
        self.index = index
        self.contexts: dict[int, Context] = {}
        self.roots: dict[tuple, RootContext] = {}
        self.pending_done: dict[tuple, RootContext] = {}
        self.active: RootContext | None = None
        self.metric_ids = MetricIds(model.stats)
        self.calls: dict[int, HttpCall] = {}
        self.rng = random.Random(f"{model.seed}/{index}")
        self._next_context = 1
        self._next_call = 0
        self._current = 0
        self._effective = 0
        self._after_vm_call: deque[Callable[[], None]] = deque()
        self.stop_next_iteration = False
        self.vm = WasmVM(compiled, import_table(), self, fuel_per_call=model.fuel_per_call,
                         log_tail=lambda: model.log_messages()[-5:])
        self.mem = self.vm.memory
        self.vm.initialize()

    # ------------------------------------------------------------------ calls into the VM

    def callback(self, name: str, context_id: int, *args: int) -> tuple[int | None, bool]:
        """Call ``name(context_id, *args)`` with ``context_id`` current; then run the after-VM-call
        actions. Returns (raw result, whether the filter sent a local reply meanwhile)."""
        saved = self._current, self._effective
        self._current, self._effective = context_id, 0
        try:
            result = self.vm.call(name, context_id, *args)
        except BaseException:
            self._after_vm_call.clear()
            raise
        finally:
            self._current, self._effective = saved
        stopped, self.stop_next_iteration = self.stop_next_iteration, False
        self.run_after_vm_call()
        return result, stopped

    def after_vm_call(self, action: Callable[[], None]) -> None:
        """Queue ``action`` until the running VM call returns (Envoy's ``addAfterVmCallAction``)."""
        self._after_vm_call.append(action)

    def run_after_vm_call(self) -> None:
        """Run queued actions in order (each may call into the VM again)."""
        while self._after_vm_call:
            self._after_vm_call.popleft()()

    def context(self) -> Context | None:
        """The effective context (else the current one) of the running host call; None in the VM
        context (``_initialize``, the allocator)."""
        if self._effective:
            found = self.contexts.get(self._effective)
            if found is not None:
                return found
        return self.contexts.get(self._current)

    @property
    def effective_id(self) -> int:
        """Id of :meth:`context` (0: VM context)."""
        ctx = self.context()
        return ctx.id if ctx is not None else 0

    def set_effective(self, context_id: int) -> bool:
        """``proxy_set_effective_context``: False when no such context exists in this VM."""
        if context_id not in self.contexts:
            return False
        self._effective = context_id
        return True

    # ------------------------------------------------------------------ plugins and root contexts

    def start_plugin(self, plugin: Plugin) -> RootContext | None:
        """Envoy's ``WasmBase::start`` + ``configure``: the live root for ``plugin.key`` if there is
        one, else a new root (``proxy_on_context_create(id, 0)``, ``proxy_on_vm_start``,
        ``proxy_on_configure``). None when vm_start or configure refused."""
        existing = self.roots.get(plugin.key)
        if existing is not None:
            return existing
        root = RootContext(self, self._alloc_id(), plugin)
        self.contexts[root.id] = root
        self.roots[plugin.key] = root
        root.configuring = True
        try:
            self.callback("proxy_on_context_create", root.id, 0)
        finally:
            root.configuring = False
        started, _ = self.callback("proxy_on_vm_start", root.id, len(self.model.vm_config))
        if started == 0:
            return None
        root.configuring = True
        try:
            configured, _ = self.callback("proxy_on_configure", root.id, len(plugin.configuration))
        finally:
            root.configuring = False
        return None if configured == 0 else root

    def activate(self, root: RootContext) -> None:
        """New streams use ``root``; the previous root drains (torn down once its streams end)."""
        old, self.active = self.active, root
        root.state = "active"
        if old is not None and old is not root:
            old.state = "draining"
            if not old.streams:
                self.shutdown_root(old)

    def shutdown_root(self, root: RootContext) -> None:
        """``WasmBase::startShutdown(key)``: ``proxy_on_done``; ``proxy_on_delete`` if it returned
        true, else once the plugin calls ``proxy_done()``."""
        self.roots.pop(root.plugin.key, None)
        if self.active is root:
            self.active = None
        done, _ = self.callback("proxy_on_done", root.id)
        if done is None or done != 0:
            self.delete_root(root)
        else:
            root.state = "pending_done"
            self.pending_done[root.plugin.key] = root

    def plugin_done(self, ctx: Context) -> bool:
        """``proxy_done``: finish the shutdown of the caller's root; False when it is not pending."""
        root = self.pending_done.pop(ctx.root.plugin.key, None)
        if root is None:
            return False
        self.after_vm_call(lambda: self.delete_root(root))
        return True

    def delete_root(self, root: RootContext) -> None:
        """``proxy_on_delete`` on ``root``; its pending callouts are cancelled, its ticks stop."""
        self.callback("proxy_on_delete", root.id)
        root.state = "deleted"
        self.contexts.pop(root.id, None)
        self.model.clock.cancel(("tick", self.index, root.id))
        for call in [c for c in self.calls.values() if c.root_context == root.id]:
            self._close_call(call, "cancelled", None)

    # ------------------------------------------------------------------ streams

    def new_stream(self) -> Stream:
        """A stream context under the active root (its in-VM creation waits for the first callback).

        Raises:
            TestHostError: the model is not started (no active root).
        """
        if self.active is None:
            raise TestHostError("no active plugin on this worker: call EnvoyModel.start() first")
        stream = Stream(self, self._alloc_id(), self.active)
        self.contexts[stream.id] = stream
        self.active.streams.add(stream.id)
        return stream

    def destroy_stream(self, stream: Stream) -> None:
        """Envoy's end of stream: access log (``proxy_on_log``), then ``onDestroy``
        (``proxy_on_done``, ``proxy_on_delete``); a draining root whose last stream this was is
        torn down."""
        if stream.deleted:
            return
        stream.deleted = True
        stream.decoder.finish()
        stream.encoder.finish()
        stream.ensure_created()
        stream.in_log = True
        try:
            self.callback("proxy_on_log", stream.id)
        finally:
            stream.in_log = False
        self.callback("proxy_on_done", stream.id)
        self.callback("proxy_on_delete", stream.id)
        self.contexts.pop(stream.id, None)
        root = stream.root
        root.streams.discard(stream.id)
        if root.state == "draining" and not root.streams:
            self.shutdown_root(root)

    # ------------------------------------------------------------------ callouts and ticks

    def dispatch_http_call(self, root: RootContext, cluster: str, headers, body: bytes, trailers,
                           timeout_ms: int) -> int:
        """Record a callout owned by ``root``; returns its token. Arms its timeout."""
        self._next_call = (self._next_call + 4) & 0xFFFFFFFF
        call = HttpCall(self._next_call, self.index, cluster, headers, body, trailers, timeout_ms,
                        self.effective_id, root.id, self.model.clock.now_ns)
        self.calls[call.token] = call
        self.model.calls.append(call)
        if timeout_ms:
            self.model.clock.arm(("callout", self.index, call.token), timeout_ms,
                                 lambda: self.deliver(call, TIMEOUT_ANSWER, "timed_out"))
        return call.token

    def deliver(self, call: HttpCall, answer: CalloutAnswer, state: CallState) -> None:
        """``onHttpCallSuccess``/``onHttpCallFailure`` on the call's root context.

        Raises:
            TestHostError: the call was already answered.
        """
        if call.state == "cancelled":
            return
        if call.state != "pending":
            raise TestHostError(f"http call {call.token} is already {call.state}")
        self._close_call(call, state, answer)
        root = self.contexts.get(call.root_context)
        if not isinstance(root, RootContext):
            return
        root.http_call_response = answer
        if answer.failure:
            root.status = (11, b"reset")  # BrokenConnection
        self.after_vm_call(lambda: self._clear_call_response(root))
        self.callback("proxy_on_http_call_response", root.id, call.token, len(answer.headers), len(answer.body),
                      len(answer.trailers))

    def set_tick_period(self, root: RootContext, period_ms: int) -> None:
        """Envoy's ``Wasm::setTimerPeriod`` for ``root``."""
        root.tick_period_ms = period_ms
        key = ("tick", self.index, root.id)
        if period_ms > 0:
            self.model.clock.arm(key, period_ms, lambda: self._tick(root))
        else:
            self.model.clock.cancel(key)

    def queue_ready(self, context_id: int, token: int) -> None:
        """A posted ``proxy_on_queue_ready`` (dropped when the context is gone)."""
        if context_id in self.contexts:
            self.callback("proxy_on_queue_ready", context_id, token)

    # ------------------------------------------------------------------ internals

    def _tick(self, root: RootContext) -> None:
        if root.state == "deleted" or self.vm.failed is not None:
            return
        self.callback("proxy_on_tick", root.id)
        if root.tick_period_ms > 0 and root.state != "deleted":
            self.model.clock.arm(("tick", self.index, root.id), root.tick_period_ms, lambda: self._tick(root))

    def _close_call(self, call: HttpCall, state: CallState, answer: CalloutAnswer | None) -> None:
        call.state = state
        call.answer = answer
        self.calls.pop(call.token, None)
        self.model.clock.cancel(("callout", self.index, call.token))

    @staticmethod
    def _clear_call_response(root: RootContext) -> None:
        root.http_call_response = None
        root.status = (root.status[0], b"")

    def _alloc_id(self) -> int:
        cid = self._next_context
        self._next_context += 1
        return cid
