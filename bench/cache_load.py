"""Locust load for the cache benchmark: synthetic (hot keys at a target hit ratio, the rest never
seen) or a traffic profile's weighted requests.

Users only make requests. A listener on Locust's ``request`` event records every latency (µs)
into HdrHistograms split by cache outcome (``x-sp-cache``, or ``Age`` for Envoy's own cache) and
status (format: ``sp_istio_cache.bench.samples``). Locust's own rounded percentiles are not used.

Synthetic mix per user, deterministic: request i goes to a hot key when
``floor((i+1)·h) > floor(i·h)`` (h = ``--hit-ratio``), so every user sends exactly the target
share; hot keys are taken round-robin from ``k=hot-0 .. hot-(N-1)``, cold keys are
``k=<run-token>-<pid>-<user>-<i>`` and never repeat. URL:
``/bytes/<payload>?seed=<seed>&cache_control=<cc>[&delay_ms=<d>]&k=<key>`` (GET, or POST with
``--request-body-bytes`` of body). Profile mix (``--requests-file``): each user draws requests in
proportion to their weights from a generator seeded with the run token and its user number.

Closed loop by default. With ``--rate R`` the users share R requests/s on a fixed schedule
(``--users-total`` tells each worker how many users share it): latency is then measured from
the slot's due time (no coordinated omission), and a slot sent more than
``--slot-tolerance-ms`` late counts as missed.

Distributed (``--processes N`` or remote ``--worker`` processes): when the master stops the
test it asks every worker for its samples (custom message ``sp_samples_request``); a worker
stops its users (each finishes the request in flight) and answers (``sp_samples``); the master
waits for every answer and writes ``samples.worker-<index>.json`` beside ``--samples-out``.
A single process writes ``--samples-out`` itself when it quits.

Run on its own against ``sp-istio-cache up``::

    locust -f bench/cache_load.py --headless -H http://127.0.0.1:PORT -u 10 -r 10 -t 20s \\
        --payload-bytes 1024 --hit-ratio 0.9 --warmup --samples-out /tmp/samples.json
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import time
import urllib.request
import uuid
from pathlib import Path

import gevent
from locust import FastHttpUser, constant, events, runners, task

from sp_istio_cache.bench.keys import hot_key, is_hot, request_path
from sp_istio_cache.bench.samples import SampleRecorder, outcome_of, write_samples_doc

#: seconds the master waits for the workers' samples once it stops the test (> --stop-timeout)
COLLECT_TIMEOUT_S = 45.0
_state: dict = {"recorder": None, "requests": None, "collected": {}}
log = logging.getLogger("sp_istio_cache.bench")


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    group = parser.add_argument_group("sp-istio-cache", "cache benchmark scenario")
    group.add_argument("--payload-bytes", type=int, default=1024, help="Response body size in bytes.")
    group.add_argument("--request-body-bytes", type=int, default=0,
                       help="Request body size in bytes; > 0 sends POST with that body.")
    group.add_argument("--hit-ratio", type=float, default=0.0, help="Share of requests to hot keys (0..1).")
    group.add_argument("--hot-keys", type=int, default=64, help="Size of the hot key set.")
    group.add_argument("--payload-seed", default="1", help="Upstream body seed (same seed, same bytes).")
    group.add_argument("--cache-control", default="max-age=600",
                       help="Cache-Control the upstream sets: explicit freshness, or the filter stores nothing.")
    group.add_argument("--upstream-delay-ms", type=float, default=0.0,
                       help="The test upstream waits this long before answering (origin latency).")
    group.add_argument("--requests-file", default="",
                       help="JSON [{method, path, body_bytes, weight}]: send these instead of the synthetic mix.")
    group.add_argument("--run-token", default="", help="Prefix of never-seen keys (default: random).")
    group.add_argument("--rate", type=float, default=0.0,
                       help="Fixed arrival rate in requests/s over all users; 0 = closed loop.")
    group.add_argument("--users-total", type=int, default=0,
                       help="Users sharing --rate over every worker (default: -u).")
    group.add_argument("--slot-tolerance-ms", type=float, default=10.0,
                       help="Fixed-rate mode: a slot sent later than this is counted as missed.")
    group.add_argument("--warmup", action="store_true", default=False,
                       help="Before the users start, request every hot key once and poll until it is a HIT "
                            "(for standalone runs; the orchestrator warms up itself).")
    group.add_argument("--samples-out", default="", help="Where to write the samples JSON at exit.")


def _path(o, key: str) -> str:
    return request_path(o.payload_bytes, key, seed=o.payload_seed, cache_control=o.cache_control,
                        delay_ms=o.upstream_delay_ms)


def _worker_file(samples_out: str, index: int) -> Path:
    out = Path(samples_out)
    return out.with_name(f"{out.stem}.worker-{index}{out.suffix}")


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    o = environment.parsed_options
    if o is None:
        return
    if not 0.0 <= o.hit_ratio <= 1.0:
        raise SystemExit(f"--hit-ratio must be within 0..1, got {o.hit_ratio}")
    if o.payload_bytes < 0 or o.request_body_bytes < 0 or o.hot_keys < 1:
        raise SystemExit("--payload-bytes and --request-body-bytes must be >= 0, --hot-keys >= 1")
    # The hub's cached clock is stale by however long the imports took since it last ran; Locust
    # arms its --run-time timer right after this event, from that clock: refresh it, or a 1 s
    # cell can end a few ms after it started.
    gevent.get_hub().loop.update_now()
    runner = environment.runner
    if isinstance(runner, runners.MasterRunner):
        _init_master(runner, o)
        return
    if o.requests_file:
        _state["requests"] = json.loads(Path(o.requests_file).read_text())
    if not o.run_token:
        o.run_token = uuid.uuid4().hex[:12]
    recorder = SampleRecorder(mode="rate" if o.rate > 0 else "closed", options={
        "payload_bytes": o.payload_bytes, "request_body_bytes": o.request_body_bytes,
        "hit_ratio": o.hit_ratio, "hot_keys": o.hot_keys, "rate": o.rate, "users": o.users_total or o.num_users,
        "cache_control": o.cache_control, "upstream_delay_ms": o.upstream_delay_ms,
        "requests_file": o.requests_file, "run_token": o.run_token})
    recorder.target_rate = o.rate
    _state["recorder"] = recorder
    if isinstance(runner, runners.WorkerRunner):
        def _answer(environment, msg, **_kw) -> None:
            # stop the users first: each finishes its request in flight (--stop-timeout), so every
            # request the upstream saw is in the samples, as in a single process
            runner.stop()
            runner.send_message("sp_samples", recorder.as_json(worker=str(msg.data["index"])))
        runner.register_message("sp_samples_request", _answer)

    @environment.events.request.add_listener
    def _record(request_type, name, response_time, response_length, response=None, context=None,
                exception=None, **_kw):
        end = time.perf_counter()
        ctx = context or {}
        status = getattr(response, "status_code", 0) or 0
        headers = getattr(response, "headers", None) if response is not None else None
        intended = ctx.get("intended")
        latency_us = (end - intended) * 1e6 if intended is not None else response_time * 1000.0
        recorder.record(latency_us, outcome=outcome_of(headers) if status else "NONE", status=status,
                        kind=ctx.get("kind", ""), response_bytes=response_length or 0)

    @environment.events.cpu_warning.add_listener
    def _cpu_warning(**_kw):
        recorder.cpu_warning = True


def _init_master(runner, o) -> None:
    """The master records nothing: when the test stops it collects the workers' samples."""
    collected = _state["collected"]

    def _on_samples(environment, msg, **_kw) -> None:
        collected[msg.node_id] = msg.data
    runner.register_message("sp_samples", _on_samples)

    @runner.environment.events.test_stopping.add_listener
    def _collect(**_kw) -> None:
        clients = list(runner.clients.all)
        for client in clients:
            runner.send_message("sp_samples_request", {"index": runner.get_worker_index(client.id)},
                                client_id=client.id)
        deadline = time.monotonic() + COLLECT_TIMEOUT_S
        while any(c.id not in collected for c in clients) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if not o.samples_out:
            return
        for client in clients:
            if client.id in collected:
                write_samples_doc(_worker_file(o.samples_out, runner.get_worker_index(client.id)),
                                  collected[client.id])
            else:
                log.error("worker %s sent no samples within %.0f s", client.id, COLLECT_TIMEOUT_S)


@events.test_start.add_listener
def _on_test_start(environment, **_kw) -> None:
    o = environment.parsed_options
    if o is None or not o.warmup or isinstance(environment.runner, runners.WorkerRunner):
        return
    _warm_up(environment.host, o)


def _warm_up(host: str, o, timeout_s: float = 10.0) -> None:
    """Request every hot key once, then re-request until each answers as a HIT (or time runs out)."""
    body = b"x" * o.request_body_bytes if o.request_body_bytes else None
    method = "POST" if body else "GET"
    pending = list(range(o.hot_keys))
    deadline = time.monotonic() + timeout_s
    first = True
    while pending and time.monotonic() < deadline:
        still = []
        for i in pending:
            req = urllib.request.Request(host.rstrip("/") + _path(o, hot_key(i)), data=body, method=method)
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
                if first or outcome_of(r.headers) != "HIT":
                    still.append(i)
        pending = still
        first = False
        if pending:
            gevent.sleep(0.05)


@events.quitting.add_listener
def _on_quitting(environment, **_kw) -> None:
    recorder: SampleRecorder | None = _state["recorder"]
    o = environment.parsed_options
    if recorder is None or o is None or not o.samples_out or isinstance(environment.runner, runners.WorkerRunner):
        return  # workers hand their samples to the master
    recorder.write(Path(o.samples_out))


class CacheUser(FastHttpUser):
    """One user: the synthetic hot/cold mix or the profile's weighted requests, closed loop or on
    a fixed-rate schedule."""

    wait_time = constant(0)
    _ids = itertools.count()

    def on_start(self) -> None:
        o = self.environment.parsed_options
        self.o = o
        self.user_id = next(CacheUser._ids)
        self.i = random.randrange(1000)  # phase, so users do not all send their cold request together
        self.hot_cursor = random.randrange(o.hot_keys)
        self.body = b"x" * o.request_body_bytes if o.request_body_bytes else None
        self.prefix = f"{o.run_token}-{os.getpid()}-{self.user_id}"
        self.requests = _state["requests"]
        if self.requests:
            self.rng = random.Random(f"{o.run_token}-{os.getpid()}-{self.user_id}")
            self.weights = list(itertools.accumulate(r["weight"] for r in self.requests))
            self.bodies = {n: b"x" * n for n in {r["body_bytes"] for r in self.requests} if n}
        self.interval = 0.0
        self.next_due = 0.0
        if o.rate > 0:
            self.interval = max(1, o.users_total or o.num_users or 1) / o.rate
            self.next_due = time.perf_counter() + random.uniform(0, self.interval)

    def _due(self, context: dict) -> None:
        now = time.perf_counter()
        if now < self.next_due:
            gevent.sleep(self.next_due - now)
            now = time.perf_counter()
        late = now - self.next_due
        recorder = _state["recorder"]
        if recorder is not None:
            recorder.slot(missed=late * 1000 > self.o.slot_tolerance_ms, lag_us=late * 1e6)
        context["intended"] = self.next_due
        self.next_due += self.interval

    @task
    def fetch(self) -> None:
        context: dict = {}
        if self.interval:
            self._due(context)
        if self.requests:
            req = self.rng.choices(self.requests, cum_weights=self.weights)[0]
            context["kind"] = "profile"
            self.client.request(req["method"], req["path"], name=f"{req['method']} profile",
                                data=self.bodies.get(req["body_bytes"]), context=context)
            return
        if is_hot(self.i, self.o.hit_ratio):
            key = hot_key(self.hot_cursor % self.o.hot_keys)
            self.hot_cursor += 1
            context["kind"] = "hot"
        else:
            key = f"{self.prefix}-{self.i}"
            context["kind"] = "cold"
        self.i += 1
        path = _path(self.o, key)
        name = f"/bytes/{self.o.payload_bytes}"
        if self.body is None:
            self.client.get(path, name=name, context=context)
        else:
            self.client.post(path, data=self.body, name=name, context=context)
