"""One Envoy process running the plugin: N worker VMs (``--concurrency``) and what they share.

Shared by every VM, as in Envoy: the virtual clock, shared data and queues (keyed by ``vm_id``), the
custom stats (by name: a gauge moved by two workers is their sum), the clusters callouts may use.
Per VM: contexts, metric ids, callout tokens, tick timers (see :mod:`.worker`).

Configuration follows Envoy: every plugin configuration first runs on a throwaway clone of the VM
(the "canary", ``WasmHandleBase::canary``); only if ``proxy_on_configure`` accepts it do the
workers get a new root context each; a refused one changes nothing. An identical configuration
keeps the live root. A replaced root is torn down once its streams are gone.

Events happen when a test causes them: after each call into the model, posted events
(``proxy_on_queue_ready``), completed streams (their ``proxy_on_log``/``done``/``delete``) and, in
``callouts="upstream"`` mode, real callouts run until nothing is left (:meth:`EnvoyModel.pump`).
Time moves only through :meth:`EnvoyModel.advance` and callout timeouts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Literal

from .abi import LogLevel, MetricType
from .callouts import RESET_ANSWER, CalloutAnswer, CallState, HttpCall, UpstreamHttpClient
from .clock import DEFAULT_NOW_NS, VirtualClock
from .contexts import Plugin, config_bytes
from .errors import TestHostError
from .headermap import lower_pairs
from .log import LogBook
from .properties import EnvoyIdentity
from .shared_state import SharedData, SharedQueues
from .stats import StatsStore
from .stream import LocalResponse, Stream
from .vm import DEFAULT_FUEL_PER_CALL, CompiledModule, load_module
from .worker import Worker

ENVOY_BUFFER_LIMIT = 1024 * 1024  # per_connection_buffer_limit_bytes default


class EnvoyModel(LogBook):
    """An Envoy process with ``concurrency`` worker VMs running one plugin.

    Args:
        wasm: path or bytes of the module, or ``module=`` from :func:`load_module` (compile once).
        plugin_config: dict (sent as JSON), str or bytes for ``proxy_on_configure``.
        concurrency: worker VMs (Envoy's ``--concurrency``; 2 by default).
        clusters: cluster names callouts may target (others are BadArgument), or a mapping
            name -> ``(host, port)`` to let :meth:`perform_http_calls` send them for real.
        callouts: ``"manual"`` (tests answer with :meth:`respond_http_call` & co.) or
            ``"upstream"`` (callouts to clusters with an address are sent for real after every step).
        vm_config: ``vm_config.configuration`` bytes.
        env: environment variables for WASI ``environ_get`` (``vm_config.environment_variables``).
        allow_on_headers_stop_iteration: Envoy's Wasm PluginConfig flag (True in this project's
            Envoy config; False is Envoy's default and Istio's).
        buffer_limit: ``per_connection_buffer_limit_bytes``.
        properties: dotted property path -> raw bytes, answered before the modelled ones.
        identity: node and route facts ``proxy_get_property`` reveals.
        plugin_name, root_id, vm_id: the Wasm filter's ``config.name``, ``root_id`` and
            ``vm_config.vm_id`` (defaults: this project's ``envoy/envoy.yaml.j2``).
        seed: seeds WASI ``random_get`` (per worker).
        fuel_per_call: instructions one callback may run (more is a :class:`GuestTrap`).

    Raises:
        TestHostError / UnsupportedImport: the module cannot run here (no ABI export, unknown import).
        ValueError: a bad argument (names which).
    """

    def __init__(self, wasm: str | Path | bytes | None = None, plugin_config: dict | str | bytes | None = None, *,
                 module: CompiledModule | tuple | None = None, concurrency: int = 2,
                 clusters: Iterable[str] | Mapping[str, tuple[str, int] | None] = ("sp_cache_backend",),
                 callouts: Literal["manual", "upstream"] = "manual", vm_config: bytes = b"",
                 env: Mapping[str, str] | None = None, allow_on_headers_stop_iteration: bool = True,
                 buffer_limit: int = ENVOY_BUFFER_LIMIT, properties: Mapping[str, bytes] | None = None,
                 identity: EnvoyIdentity | None = None, seed: int = 0, now_ns: int = DEFAULT_NOW_NS,
                 fuel_per_call: int = DEFAULT_FUEL_PER_CALL, log_level: LogLevel = LogLevel.TRACE,
                 plugin_name: str = "sp_istio_cache", root_id: str = "sp_istio_cache", vm_id: str = "sp_istio_cache"):
        super().__init__()
        if module is None:
            if wasm is None:
                raise TestHostError("give wasm= (path or bytes) or module= (from load_module)")
            module = load_module(wasm)
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if callouts not in ("manual", "upstream"):
            raise ValueError(f"callouts must be 'manual' or 'upstream', got {callouts!r}")
        self.module = CompiledModule(*module)
        self.concurrency = concurrency
        addresses = dict(clusters) if isinstance(clusters, Mapping) else dict.fromkeys(clusters)
        self.clusters = set(addresses)
        self.upstream = UpstreamHttpClient({k: v for k, v in addresses.items() if v is not None})
        self.callouts = callouts
        self.vm_config = bytes(vm_config)
        self.env = dict(env or {})
        self.allow_on_headers_stop_iteration = allow_on_headers_stop_iteration
        self.buffer_limit = buffer_limit
        self.properties = dict(properties or {})
        self.identity = identity or EnvoyIdentity()
        self.seed = seed
        self.fuel_per_call = fuel_per_call
        self.log_level = log_level
        self.vm_id = vm_id
        self.plugin = Plugin(plugin_name, root_id, vm_id, config_bytes(plugin_config))
        self.clock = VirtualClock(now_ns)
        self.shared_data = SharedData()
        self.queues = SharedQueues()
        self.stats = StatsStore()
        self.workers: list[Worker] = []
        self.calls: list[HttpCall] = []
        self.local_replies: list[tuple[int, LocalResponse]] = []
        self.stdout = bytearray()
        self._canaries: dict[tuple, bool] = {}
        self._posted: deque[Callable[[], None]] = deque()
        self._completed: list[Stream] = []
        self._pumping = False

    # ------------------------------------------------------------------ plugin lifecycle

    def start(self) -> bool:
        """Start the workers with the plugin. False when the canary's ``proxy_on_configure`` (or
        ``proxy_on_vm_start``) refused it: Envoy then rejects the configuration.

        Raises:
            TestHostError: already started.
        """
        if self.workers:
            raise TestHostError("the model is already started; use reconfigure()")
        if not self._canary(self.plugin):
            return False
        self.workers = [Worker(self, i, self.module) for i in range(self.concurrency)]
        return self._install(self.plugin)

    def reconfigure(self, plugin_config: dict | str | bytes) -> bool:
        """Envoy's plugin configuration update: canary, then a new root context (new id) on every
        worker; new streams use it and each old root is torn down once its streams are gone.
        An identical configuration changes nothing. False: refused, the old configuration stays."""
        plugin = Plugin(self.plugin.name, self.plugin.root_id, self.vm_id, config_bytes(plugin_config))
        if plugin.key == self.plugin.key:
            return True
        if not self.workers:
            raise TestHostError("start() the model before reconfiguring it")
        if not self._canary(plugin):
            return False
        return self._install(plugin)

    def shutdown(self) -> None:
        """Envoy exits: every root context of every worker gets ``proxy_on_done`` (and
        ``proxy_on_delete`` when it returns true)."""
        for worker in self.workers:
            for root in list(worker.roots.values()):
                worker.shutdown_root(root)
        self.pump()

    def _canary(self, plugin: Plugin) -> bool:
        if plugin.key not in self._canaries:
            canary = Worker(self, -1, self.module)
            self._canaries[plugin.key] = canary.start_plugin(plugin) is not None
        return self._canaries[plugin.key]

    def _install(self, plugin: Plugin) -> bool:
        for worker in self.workers:
            root = worker.start_plugin(plugin)
            if root is None:
                return False
            worker.activate(root)
        self.plugin = plugin
        self.pump()
        return True

    # ------------------------------------------------------------------ streams and time

    def new_stream(self, worker: int = 0) -> Stream:
        """A new HTTP stream on worker ``worker`` (Envoy spreads connections over workers; tests
        pick one so they stay deterministic)."""
        if not self.workers:
            raise TestHostError("start() the model first")
        return self.workers[worker].new_stream()

    def advance(self, ms: float) -> int:
        """Move the virtual clock ``ms`` forward, firing due ticks and callout timeouts in time order
        on every worker; returns how many fired."""
        fired = self.clock.advance(ms, after_each=self.pump)
        self.pump()
        return fired

    @property
    def now_ns(self) -> int:
        """The virtual wall clock (ns since the epoch)."""
        return self.clock.now_ns

    def root_context_id(self, worker: int = 0) -> int:
        """Id of the root context new streams on ``worker`` use."""
        active = self.workers[worker].active
        if active is None:
            raise TestHostError(f"worker {worker} has no active root context")
        return active.id

    @property
    def streams(self) -> list[Stream]:
        """Live streams on every worker."""
        return [c for w in self.workers for c in w.contexts.values() if isinstance(c, Stream)]

    @property
    def hung_streams(self) -> list[Stream]:
        """Live streams stuck behind a StopAllIteration the filter never lifts (see ``Stream.hung``)."""
        return [s for s in self.streams if s.hung]

    # ------------------------------------------------------------------ callouts

    @property
    def pending_calls(self) -> list[HttpCall]:
        """Callouts not answered yet, in dispatch order."""
        return [c for c in self.calls if c.state == "pending"]

    def call(self, token: int, worker: int = 0) -> HttpCall:
        """The callout ``token`` of ``worker``.

        Raises:
            KeyError: no such callout.
        """
        for c in self.calls:
            if c.token == token and c.worker == worker:
                return c
        raise KeyError(f"no http call with token {token} on worker {worker}")

    def respond_http_call(self, call: HttpCall, status: int | Iterable[tuple[str, str]] = 200, body: bytes = b"",
                          trailers: Iterable[tuple[str, str]] = ()) -> None:
        """Answer ``call``: ``status`` is an int (``:status``) or the whole header list."""
        headers = [(":status", str(status))] if isinstance(status, int) else lower_pairs(status)
        self._deliver(call, CalloutAnswer(headers, bytes(body), lower_pairs(trailers)), "answered")

    def fail_http_call(self, call: HttpCall) -> None:
        """The callout was reset: delivered with zero headers (``proxy_get_status``: BrokenConnection)."""
        self._deliver(call, RESET_ANSWER, "failed")

    def timeout_http_call(self, call: HttpCall) -> None:
        """Move the clock to ``call``'s deadline (firing what is due before it); Envoy answers it
        504 ``upstream request timeout``.

        Raises:
            TestHostError: the call has no timeout (Envoy would wait forever) or is not pending.
        """
        if call.state != "pending" or call.deadline_ns is None:
            raise TestHostError(f"http call {call.token} is {call.state} with timeout {call.timeout_ms} ms")
        self.clock.run_until(call.deadline_ns, after_each=self.pump)
        self.pump()

    def perform_http_calls(self) -> int:
        """Send every pending callout whose cluster has an address to it for real and deliver
        Envoy's answer, until none is left (answers may dispatch more); returns how many."""
        sent = 0
        while True:
            ready = [c for c in self.pending_calls if self.upstream.can_send(c)]
            if not ready:
                return sent
            for call in ready:
                if call.state == "pending":
                    self._deliver(call, self.upstream.send(call), "answered")
                    sent += 1

    def _deliver(self, call: HttpCall, answer: CalloutAnswer, state: CallState) -> None:
        self.workers[call.worker].deliver(call, answer, state)
        self.pump()

    # ------------------------------------------------------------------ event loop

    def post(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the current event (Envoy's ``dispatcher.post``)."""
        self._posted.append(action)

    def complete_later(self, stream: Stream) -> None:
        """``stream`` completed: destroy it after the current event (Envoy's deferred delete)."""
        if stream not in self._completed:
            self._completed.append(stream)

    def pump(self) -> None:
        """Run posted events, destroy completed streams and (``callouts="upstream"``) send
        callouts, until nothing is left."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._posted or self._completed or (self.callouts == "upstream" and self._sendable()):
                while self._posted:
                    self._posted.popleft()()
                while self._completed:
                    stream = self._completed.pop(0)
                    stream.worker.destroy_stream(stream)
                if self.callouts == "upstream" and self._sendable():
                    call = self._sendable()[0]
                    self.workers[call.worker].deliver(call, self.upstream.send(call), "answered")
        finally:
            self._pumping = False

    def _sendable(self) -> list[HttpCall]:
        return [c for c in self.pending_calls if self.upstream.can_send(c)]

    # ------------------------------------------------------------------ observations

    @property
    def metrics(self) -> dict[str, int]:
        """Counter and gauge values by the name the plugin defined (Envoy shows ``wasmcustom.<name>``)."""
        return {s.name: s.value for s in self.stats.all() if s.type != MetricType.HISTOGRAM}

    def metric(self, name: str) -> int:
        """Value of counter or gauge ``name``.

        Raises:
            KeyError: not defined (the message lists what is).
        """
        for stat in self.stats.find(name):
            if stat.type != MetricType.HISTOGRAM:
                return stat.value
        raise KeyError(f"metric {name!r} is not defined; defined: {sorted(self.metrics)}")

    def histogram(self, name: str) -> list[int]:
        """Every value recorded into histogram ``name``, in order.

        Raises:
            KeyError: no histogram of that name.
        """
        for stat in self.stats.find(name):
            if stat.type == MetricType.HISTOGRAM:
                return list(stat.samples)
        raise KeyError(f"histogram {name!r} is not defined")

    @property
    def memory_bytes(self) -> int:
        """Linear memory of worker 0's VM in bytes."""
        return self.workers[0].vm.memory_bytes

    def memory_bytes_by_worker(self) -> list[int]:
        """Linear memory of each worker VM in bytes."""
        return [w.vm.memory_bytes for w in self.workers]

    @property
    def fuel_consumed(self) -> int:
        """Wasm instructions run by every worker's top-level callbacks."""
        return sum(w.vm.fuel_consumed for w in self.workers)

    def close(self) -> None:
        """Release the real HTTP client's connections."""
        self.upstream.close()

    def __enter__(self) -> EnvoyModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
