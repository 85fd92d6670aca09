"""Per-request CPU cost of the filter in the test host (no Envoy): wasm instructions and µs.

    python -m sp_istio_cache.testhost.bench [--wasm PATH] [--repeat N]

Instructions are wasmtime fuel (one unit per wasm instruction, host functions excluded). µs are
wall time per request on an engine without fuel metering and include this Python host's own
overhead (header/body copies, protobuf-free bookkeeping), so they are an upper bound for the
guest's share. Every scenario runs the whole exchange: request callbacks, lookup dispatch (span
encode + SHA-256 fingerprint over method, authority, path and request body), the backend's
answer, response callbacks, the store span (response body copied), stream end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sp_istio_cache.otlp import CachedResponse, encode_hit

from .build import build_for_tests
from .host import ProxyWasmHost, load_module

SIZES = {"1 KiB": 1024, "1 MiB": 1024 * 1024}
CONFIG = {"lookup_methods": ["GET", "POST"], "max_request_body_bytes": 4 * 1024 * 1024}
HEADERS = [(":authority", "svc.example:8080"), (":scheme", "http"), ("accept", "*/*"),
           ("user-agent", "bench/1"), ("x-request-id", "0f0e0d0c")]


def _exchange(host: ProxyWasmHost, scenario: str, size: int, payload: bytes, hit_body: bytes) -> None:
    s = host.new_stream()
    if scenario == "POST body lookup + miss + store":
        s.send_request_headers([(":method", "POST"), (":path", "/rpc"), *HEADERS], False)
        s.send_request_body(payload, True)
    else:
        s.send_request_headers([(":method", "GET"), (":path", f"/bytes/{size}"), *HEADERS], True)
    for call in list(host.pending_calls):
        if scenario == "GET hit":
            host.respond_http_call(call, 200, hit_body)
        else:
            host.respond_http_call(call, 404)
    if s.local_response is None:
        s.send_response_headers([(":status", "200"), ("content-type", "application/octet-stream"),
                                 ("content-length", str(size))], False)
        s.send_response_body(payload, True)
    s.done()
    for call in list(host.pending_calls):
        host.respond_http_call(call, 200)


SCENARIOS = ["GET miss + store", "GET hit", "POST body lookup + miss + store"]


def measure(wasm: Path, repeat: int = 20) -> list[dict]:
    fuel_module = load_module(wasm, fuel=True)
    time_module = load_module(wasm, fuel=False)
    rows = []
    for label, size in SIZES.items():
        payload = bytes(i % 251 for i in range(size))
        hit_body = encode_hit(CachedResponse(200, {"content-type": ["application/octet-stream"]}, payload), 1)
        for scenario in SCENARIOS:
            host = ProxyWasmHost(plugin_config=CONFIG, module=fuel_module)
            host.start()
            _exchange(host, scenario, size, payload, hit_body)  # warm-up
            before = host.fuel_consumed
            _exchange(host, scenario, size, payload, hit_body)
            instructions = host.fuel_consumed - before
            outcome = dict(host.metrics)
            thost = ProxyWasmHost(plugin_config=CONFIG, module=time_module)
            thost.start()
            _exchange(thost, scenario, size, payload, hit_body)
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                _exchange(thost, scenario, size, payload, hit_body)
                samples.append(time.perf_counter() - t0)
            us = statistics.median(samples) * 1e6
            rows.append({"body": label, "scenario": scenario, "instructions": instructions, "us_per_request": us,
                         "hit": outcome["sp_cache.hit"], "store_sent": outcome["sp_cache.store_sent"],
                         "bypass_request_too_large": outcome["sp_cache.bypass_request_too_large"]})
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
    print(f"{'body':<6} {'scenario':<34} {'wasm instructions':>18} {'median µs/req':>14}  counters (2 requests)")
    for r in rows:
        note = f"hit={r['hit']} store_sent={r['store_sent']} bypass_request_too_large={r['bypass_request_too_large']}"
        print(f"{r['body']:<6} {r['scenario']:<34} {r['instructions']:>18,} {r['us_per_request']:>14,.0f}  {note}")


if __name__ == "__main__":
    main()
