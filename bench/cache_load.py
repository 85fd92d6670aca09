"""Locust load for the cache benchmark: a hot key set at a target hit ratio, the rest never seen.

Users only make requests. A listener on Locust's ``request`` event records every latency (µs)
into HdrHistograms split by cache outcome (``x-sp-cache``, or ``Age`` for Envoy's own cache) and
status, and writes them to ``--samples-out`` when Locust quits (format:
``sp_istio_cache.bench.samples``). Locust's own rounded percentiles are not used.

Request mix per user, deterministic: request i goes to a hot key when
``floor((i+1)·h) > floor(i·h)`` (h = ``--hit-ratio``), so every user sends exactly the target
share; hot keys are taken round-robin from ``k=hot-0 .. hot-(N-1)``, cold keys are
``k=<run-token>-<pid>-<user>-<i>`` and never repeat. URL:
``/bytes/<payload>?seed=<seed>&cache_control=<cc>&k=<key>`` (GET, or POST with
``--request-body-bytes`` of body).

Closed loop by default (each user sends the next request when the last one answered). With
``--rate R`` each user keeps its share R/users on a fixed schedule: latency is then measured
from the slot's due time (corrected for coordinated omission), and a slot sent more than
``--slot-tolerance-ms`` late counts as missed.

Run on its own against ``sp-istio-cache up``::

    locust -f bench/cache_load.py --headless -H http://127.0.0.1:PORT -u 10 -r 10 -t 20s \\
        --payload-bytes 1024 --hit-ratio 0.9 --warmup --samples-out /tmp/samples.json
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid
from pathlib import Path
import gevent
from locust import FastHttpUser, constant, events, runners, task

from sp_istio_cache.bench.keys import hot_key, is_hot, request_path
from sp_istio_cache.bench.samples import SampleRecorder, outcome_of

_state: dict = {"recorder": None}


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
                       help="Cache-Control the upstream sets (Envoy's cache needs one); '' for none.")
    group.add_argument("--run-token", default="", help="Prefix of never-seen keys (default: random).")
    group.add_argument("--rate", type=float, default=0.0,
                       help="Fixed arrival rate in requests/s over all users; 0 = closed loop.")
    group.add_argument("--slot-tolerance-ms", type=float, default=10.0,
                       help="Fixed-rate mode: a slot sent later than this is counted as missed.")
    group.add_argument("--warmup", action="store_true", default=False,
                       help="Before the users start, request every hot key once and poll until it is a HIT "
                            "(for standalone runs; the orchestrator warms up itself).")
    group.add_argument("--samples-out", default="", help="Where to write the samples JSON at exit.")


def _opts(environment):
    return environment.parsed_options


def _path(o, key: str) -> str:
    return request_path(o.payload_bytes, key, seed=o.payload_seed, cache_control=o.cache_control)


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    o = _opts(environment)
    if o is None:
        return
    if not 0.0 <= o.hit_ratio <= 1.0:
        raise SystemExit(f"--hit-ratio must be within 0..1, got {o.hit_ratio}")
    if o.payload_bytes < 0 or o.request_body_bytes < 0 or o.hot_keys < 1:
        raise SystemExit("--payload-bytes and --request-body-bytes must be >= 0, --hot-keys >= 1")
    if isinstance(environment.runner, runners.MasterRunner):
        return  # the master only coordinates; workers record
    if not o.run_token:
        o.run_token = uuid.uuid4().hex[:12]
    recorder = SampleRecorder(mode="rate" if o.rate > 0 else "closed", options={
        "payload_bytes": o.payload_bytes, "request_body_bytes": o.request_body_bytes,
        "hit_ratio": o.hit_ratio, "hot_keys": o.hot_keys, "rate": o.rate, "users": o.num_users,
        "cache_control": o.cache_control, "run_token": o.run_token})
    _state["recorder"] = recorder

    @environment.events.request.add_listener
    def _record(request_type, name, response_time, response_length, response=None, context=None,
                exception=None, **_kw):
        end = time.perf_counter()
        ctx = context or {}
        status = getattr(response, "status_code", 0) or 0
        if exception is not None and not status:
            status = 0
        headers = getattr(response, "headers", None) if response is not None else None
        intended = ctx.get("intended")
        latency_us = (end - intended) * 1e6 if intended is not None else response_time * 1000.0
        recorder.record(latency_us, outcome=outcome_of(headers) if status else "NONE", status=status,
                        kind=ctx.get("kind", ""), response_bytes=response_length or 0)

    @environment.events.cpu_warning.add_listener
    def _cpu_warning(**_kw):
        recorder.cpu_warning = True


@events.test_start.add_listener
def _on_test_start(environment, **_kw) -> None:
    o = _opts(environment)
    if o is None or not o.warmup or isinstance(environment.runner, runners.WorkerRunner):
        return
    _warm_up(environment.host, o)


def _warm_up(host: str, o, timeout_s: float = 10.0) -> None:
    """Request every hot key once, then re-request until each answers as a HIT (or time runs out)."""
    import urllib.request

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
    o = _opts(environment)
    if recorder is None or o is None or not o.samples_out:
        return
    out = Path(o.samples_out)
    if isinstance(environment.runner, runners.WorkerRunner):
        out = out.with_name(f"{out.stem}.worker-{os.getpid()}{out.suffix}")
    recorder.write(out)


class CacheUser(FastHttpUser):
    """One user: the hot/cold mix of ``--hit-ratio``, closed loop or on a fixed-rate schedule."""

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
        self.interval = 0.0
        self.next_due = 0.0
        if o.rate > 0:
            users = max(1, int(self.environment.runner.target_user_count or o.num_users or 1))
            self.interval = users / o.rate
            self.next_due = time.perf_counter() + random.uniform(0, self.interval)
            recorder = _state["recorder"]
            if recorder is not None:
                recorder.target_rate = o.rate

    @task
    def fetch(self) -> None:
        context: dict = {}
        if self.interval:
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
