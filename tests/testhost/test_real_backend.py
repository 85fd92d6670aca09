"""The filter against the real backend (protocol v2), its callouts sent for real over loopback:
both sides agree on keys, spans, variants, signatures and invalidation, and a wrong key is a miss."""

from __future__ import annotations

import pytest

from sp_istio_cache.testhost import EnvoyModel

from ._support import STORE_BATCH_WAIT_MS, assert_healthy, config, req

pytestmark = pytest.mark.timeout(120)
CACHEABLE = [("cache-control", "max-age=60"), ("content-type", "text/plain")]


def _model(filter_module, port: int, **cfg) -> EnvoyModel:
    model = EnvoyModel(plugin_config=config(**cfg), module=filter_module, callouts="upstream",
                       clusters={"sp_cache_backend": ("127.0.0.1", port)})
    assert model.start()
    return model


def _get(model: EnvoyModel, path: str, *extra, worker: int = 0, origin=None):
    s = model.new_stream(worker=worker)
    s.send_request_headers(req("GET", path, *extra), True)
    if s.local_response is None:
        assert not s.request_paused
        s.respond(*(origin or (200, CACHEABLE, b"from origin")))
    s.done()
    model.advance(STORE_BATCH_WAIT_MS)  # the filter's queued store goes out on its tick
    return s


def test_miss_store_then_hits_from_the_backend_and_the_l1(filter_module, backend_port):
    with _model(filter_module, backend_port) as model, _model(filter_module, backend_port) as other:
        first = _get(model, "/real")
        assert (first.cache_status, first.downstream_body) == ("MISS", b"from origin")
        assert [(c.path, c.answer.headers[0][1]) for c in model.calls] == [("/v1/inject", "404"),
                                                                            ("/v1/traces", "200")]
        # another Envoy (its own, empty L1) finds it in the backend, then in its L1
        hit = _get(other, "/real", worker=1)
        again = _get(other, "/real")
        assert [(s.cache_status, s.downstream_body) for s in (hit, again)] == [("HIT", b"from origin")] * 2
        assert (other.metric("sp_cache.backend_hit"), other.metric("sp_cache.l1_hit")) == (1, 1)
        assert_healthy(model, first)
        assert_healthy(other, hit, again)


def test_variants_and_invalidation_through_the_backend(filter_module, backend_port):
    with _model(filter_module, backend_port, l1_max_bytes=0) as model:
        vary = [("cache-control", "max-age=60"), ("vary", "accept-language")]
        _get(model, "/v", ("accept-language", "de"), origin=(200, vary, b"de"))
        _get(model, "/v", ("accept-language", "fr"), origin=(200, vary, b"fr"))
        de = _get(model, "/v", ("accept-language", "de"))
        fr = _get(model, "/v", ("accept-language", "fr"))
        assert [(s.cache_status, s.downstream_body) for s in (de, fr)] == [("HIT", b"de"), ("HIT", b"fr")]
        post = model.new_stream()
        post.send_request_headers(req("POST", "/v"), True)
        post.respond(204, [])
        post.done()
        (call,) = [c for c in model.calls if c.path == "/v1/invalidate"]
        assert call.answer.headers[0] == (":status", "200")
        after = _get(model, "/v", ("accept-language", "de"), origin=(200, vary, b"new de"))
        assert (after.cache_status, after.downstream_body) == ("MISS", b"new de")


def test_a_wrong_backend_key_is_refused_and_a_miss(filter_module, backend_port):
    with _model(filter_module, backend_port, backend_key="not-the-backends-key") as model:
        s = _get(model, "/k")
        assert s.cache_status == "MISS" and model.calls[0].answer.headers[0] == (":status", "401")
        assert model.metric("sp_cache.lookup_error") == 1 and model.metric("sp_cache.store_failed") == 1
