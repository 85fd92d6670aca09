"""Issue 11 #7, the soak: plugin reconfigurations and requests through one model, each worker VM's
linear memory flat within ±5 % between a sample after a warm-up and the end.

The requests mix what allocates differently: L1 misses and stores, L1 hits, hit-for-pass on a
no-store endpoint, POST invalidations, a header value that is not UTF-8. The CI variant runs
1,000 reconfigurations and 10,000 requests; ``pytest -m soak`` adds the full 10,000 and 100,000
of the issue (2.5 to 3.5 minutes wall on the shared 2-core machine).
"""

from __future__ import annotations

import pytest

from sp_istio_cache.testhost import EnvoyModel, load_module
from sp_istio_cache.testhost.headermap import text
from sp_istio_cache.testhost.soak import SoakResult, soak

from ._support import config, req

CONFIGS = [config(lookup_timeout_ms=200), config(lookup_timeout_ms=201)]


def mixed_exchange(model: EnvoyModel, i: int) -> None:
    """Request ``i``: every 8th a POST invalidating a stored path, every 8th (+1) a GET of a
    no-store endpoint, the rest GETs of 256 paths (misses, then L1 hits); lookups answered 404,
    stores and invalidations 200; one virtual ms per request."""
    kind = i % 8
    s = model.new_stream(worker=i % model.concurrency)
    if kind == 0:
        s.send_request_headers(req("POST", f"/soak/{(i // 8) % 256}"), end_of_stream=False)
        s.send_request_body(b"{}", True)
    else:
        path = f"/dyn/{i % 16}" if kind == 1 else f"/soak/{i % 256}"
        s.send_request_headers(req("GET", path, ("x-note", text(b"caf\xe9"))), end_of_stream=True)
    for call in model.pending_calls:
        model.respond_http_call(call, 404)
    if not s.deleted and s.local_response is None:
        if kind == 0:
            s.respond(204, [])
        else:
            cc = "no-store" if kind == 1 else "max-age=60"
            s.respond(200, [("cache-control", cc)], b"s" * ((i % 7) * 100 + 1))
    s.done()
    for call in model.pending_calls:
        model.respond_http_call(call, 200)
    model.advance(1)
    if len(model.calls) > 256:  # the model keeps every call; pending_calls scans them all
        model.calls[:] = model.pending_calls
        model.local_replies.clear()


def run_soak(wasm, reconfigurations: int, requests: int) -> tuple[EnvoyModel, SoakResult]:
    model = EnvoyModel(plugin_config=config(), module=load_module(wasm, fuel=False))
    assert model.start()
    # warm-up: the allocator reaches its working set (every path stored once, every kind seen)
    soak(model, CONFIGS, reconfigurations=100, requests=2_000, exchange=mixed_exchange)
    result = soak(model, CONFIGS, reconfigurations=reconfigurations, requests=requests, exchange=mixed_exchange)
    return model, result


def _check(model: EnvoyModel, result: SoakResult, requests: int) -> None:
    first, last = result.samples[0], result.samples[-1]
    for worker, (a, b) in enumerate(zip(first, last, strict=True)):
        assert abs(b - a) <= 0.05 * a, f"worker {worker}: linear memory {a} -> {b} bytes ({(b - a) / a:+.1%})"
    assert model.violations == [] and model.metric("sp_cache.buffered_body_bytes") == 0
    outcomes = sum(model.metric(f"sp_cache.{o}") for o in ("hit", "bypass"))
    assert outcomes > requests // 2 and model.metric("sp_cache.l1_hit") > 0
    assert model.metric("sp_cache.invalidate_sent") > 0 and model.metric("sp_cache.hit_for_pass") > 0
    assert all(len(w.roots) == 1 for w in model.workers)  # replaced roots were torn down


@pytest.mark.timeout(300)
def test_memory_is_flat_over_1000_reconfigurations_and_10000_requests(filter_wasm):
    model, result = run_soak(filter_wasm, 1_000, 10_000)
    _check(model, result, 10_000)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_memory_is_flat_over_10000_reconfigurations_and_100000_requests(filter_wasm):
    model, result = run_soak(filter_wasm, 10_000, 100_000)
    print(f"\nsoak: linear memory per worker {result.samples[0]} -> {result.samples[-1]} bytes "
          f"over {result.reconfigurations} reconfigurations and {result.requests} requests")
    _check(model, result, 100_000)
