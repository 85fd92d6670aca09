"""Per-request CPU cost of the filter in the test host (no Envoy): wasm instructions and µs.

    python -m sp_istio_cache.testhost.bench [--wasm PATH] [--repeat N]

Instructions are wasmtime fuel (one unit per wasm instruction, host functions excluded): the same
count on every run of the same module, whatever else the machine does, so they compare builds
and code changes exactly. µs are wall time per request on an engine without fuel metering and
include this Python host's own overhead, so they are an upper bound for the guest's share.

Scenarios (each runs the whole exchange, request callbacks to stream end): a miss that is stored
(backend lookup answered 404, store span encoded and signed), an L1 hit (served from shared data,
no callout), a backend hit (L1 disabled: the backend's answer decoded and its signature
verified), and a POST whose body is held and looked up, then stored.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sp_istio_cache import entry as ref

from .build import build_for_tests
from .envoy import EnvoyModel
from .vm import load_module

SIGNING_KEY = b"bench-signing-key-0123456789abcdef"
SIZES = {"1 KiB": 1024, "64 KiB": 65536, "1 MiB": 1024 * 1024}
MAX_REQUEST_BODY_BYTES = 983040
CONFIG = {"lookup_methods": ["GET", "HEAD", "POST"], "max_request_body_bytes": MAX_REQUEST_BODY_BYTES,
          "max_response_body_bytes": 8388608, "signing_key": SIGNING_KEY.decode(), "coalesce_timeout_ms": 0}
HEADERS = [(":authority", "svc.example:8080"), (":scheme", "http"), ("accept", "*/*"),
           ("user-agent", "bench/1"), ("x-request-id", "0f0e0d0c")]
RESPONSE = [("content-type", "application/octet-stream"), ("cache-control", "max-age=600")]
SCENARIOS = ["GET miss + store", "GET L1 hit", "GET backend hit (L1 off)", "POST body lookup + miss + store"]
#: the filter counters that say how each exchange ended (reported per scenario)
_OUTCOME_COUNTERS = ("sp_cache.l1_hit", "sp_cache.backend_hit", "sp_cache.not_found", "sp_cache.miss")


def _answer(size: int, payload: bytes) -> bytes:
    """A backend answer holding the signed entry of ``GET /bytes/<size>``."""
    request = ref.Request("GET", "http", "svc.example:8080", f"/bytes/{size}",
                          headers=[("accept", "*/*"), ("user-agent", "bench/1"), ("x-request-id", "0f0e0d0c")])
    now = int(time.time() * 1000)
    e = ref.signed_entry(request, 200, [*RESPONSE, ("content-length", str(size))], payload, SIGNING_KEY,
                         request_time_ms=now, response_time_ms=now)
    envelope = ref.Envelope()
    return ref.traces_data([ref.encode_span(envelope, request, entry=e, retain_seconds=600)], envelope)


def _exchange(host: EnvoyModel, scenario: str, size: int, payload: bytes, answer: bytes) -> None:
    s = host.new_stream()
    if scenario.startswith("POST"):
        s.send_request_headers([(":method", "POST"), (":path", "/rpc"), *HEADERS], False)
        s.send_request_body(payload, True)
    else:
        s.send_request_headers([(":method", "GET"), (":path", f"/bytes/{size}"), *HEADERS], True)
    for call in list(host.pending_calls):
        if scenario.startswith("GET backend hit"):
            host.respond_http_call(call, 200, answer)
        else:
            host.respond_http_call(call, 404)
    if s.local_response is None:
        s.send_response_headers([(":status", "200"), *RESPONSE, ("content-length", str(size))], False)
        s.send_response_body(payload, True)
    s.done()
    for call in list(host.pending_calls):
        host.respond_http_call(call, 200)


def _model(module, scenario: str) -> EnvoyModel:
    config = dict(CONFIG, l1_max_bytes=0) if "L1 off" in scenario else dict(CONFIG, l1_max_bytes=64 * 1048576)
    if scenario == "GET miss + store" or scenario.startswith("POST"):
        config["l1_max_bytes"] = 0  # every exchange a miss
    host = EnvoyModel(plugin_config=config, module=module, concurrency=1)
    assert host.start(), host.log_messages()
    return host


def measure(wasm: Path, repeat: int = 20) -> list[dict]:
    """Fuel and µs per request of every scenario and size; rows of dicts."""
    fuel_module = load_module(wasm, fuel=True)
    time_module = load_module(wasm, fuel=False)
    rows = []
    for label, size in SIZES.items():
        payload = bytes(i % 251 for i in range(size))
        answer = _answer(size, payload)
        for scenario in SCENARIOS:
            if scenario.startswith("POST") and size > MAX_REQUEST_BODY_BYTES:
                continue
            host = _model(fuel_module, scenario)
            _exchange(host, scenario, size, payload, answer)  # warm-up (and the L1 fill)
            before = host.fuel_consumed
            _exchange(host, scenario, size, payload, answer)
            instructions = host.fuel_consumed - before
            outcome = dict(host.metrics)
            thost = _model(time_module, scenario)
            _exchange(thost, scenario, size, payload, answer)
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                _exchange(thost, scenario, size, payload, answer)
                samples.append(time.perf_counter() - t0)
            rows.append({"body": label, "scenario": scenario, "instructions": instructions,
                         "us_per_request": statistics.median(samples) * 1e6,
                         "reasons": {k.removeprefix("sp_cache."): v for k, v in outcome.items()
                                     if k in _OUTCOME_COUNTERS}})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", type=Path, help="built filter (default: build filter/src now, ReleaseSafe)")
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wasm = args.wasm or build_for_tests(Path(tmp))
        print(f"filter: {wasm} ({wasm.stat().st_size} bytes)")
        rows = measure(wasm, args.repeat)
    print(f"{'body':<7} {'scenario':<34} {'wasm instructions':>18} {'median µs/req':>14}  reasons (2 requests)")
    for r in rows:
        print(f"{r['body']:<7} {r['scenario']:<34} {r['instructions']:>18,} {r['us_per_request']:>14,.0f}  "
              f"{r['reasons']}")


if __name__ == "__main__":
    main()
