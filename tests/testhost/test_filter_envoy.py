"""The filter under Envoy facts the model adds: metrics shared by name across workers, root
contexts replaced on reconfiguration, answers of a deleted root cancelled, and the metrics
docs/metrics.md promises (one outcome per request, histograms in µs)."""

from __future__ import annotations

from ._cache import Cache
from ._support import assert_healthy, config, req


def test_every_request_moves_exactly_one_outcome_counter(make_host):
    cache = Cache(make_host(config()))
    cache.fetch("/a")  # not_found
    cache.fetch("/a")  # l1_hit
    cache.fetch("/a", method="POST", origin=(204, [], b""))  # bypass_method
    m = cache.model
    assert (m.metric("sp_cache.hit"), m.metric("sp_cache.miss"), m.metric("sp_cache.bypass")) == (1, 1, 1)
    assert m.metric("sp_cache.not_found") == 1


def test_outcome_counters_sum_the_reasons_that_do_not_share_their_name(make_host):
    cache = Cache(make_host(config(l1_max_bytes=0)))
    cache.fetch("/a", origin=(200, [("cache-control", "max-age=1"), ("etag", '"1"')], b"x"))
    cache.model.advance(2_000)
    cache.fetch("/a", origin=(304, [("etag", '"1"')], b""))  # revalidated: hit
    cache.model.advance(2_000)
    cache.fetch("/a", origin=(200, [("cache-control", "max-age=1")], b"y"))  # miss_changed: miss
    cache.fetch("/a", ("authorization", "x"))  # bypass_authorization
    m = cache.model
    assert (m.metric("sp_cache.revalidated"), m.metric("sp_cache.miss_changed"),
            m.metric("sp_cache.bypass_authorization")) == (1, 1, 1)
    assert m.metric("sp_cache.hit") == 1 and m.metric("sp_cache.bypass") == 1


def test_histograms_record_microseconds(make_host):
    """Every lookup round trip is recorded; the callback time of one stream in 16 (the clock is a
    host call, so only a sample of requests pays it)."""
    cache = Cache(make_host(config()))
    for i in range(16):
        s = cache.model.new_stream()
        s.send_request_headers(req("GET", f"/h{i}"), True)
        cache.model.advance(3)
        cache.backend.serve()
        s.respond(200, [("cache-control", "max-age=60")], b"x")
        s.done()
    assert cache.model.histogram("sp_cache.lookup_duration_us") == [3000] * 16
    callbacks = cache.model.histogram("sp_cache.callback_duration_us")
    assert len(callbacks) == 1 and callbacks[0] >= 0


def test_a_gauge_moved_on_two_workers_is_their_sum(make_host):
    model = make_host(config(lookup_methods=["POST"], max_request_body_bytes=4096))
    a, b = model.new_stream(worker=0), model.new_stream(worker=1)
    for stream, size in ((a, 700), (b, 300)):
        stream.send_request_headers(req("POST", "/rpc"), end_of_stream=False)
        stream.send_request_body(b"x" * size, end_of_stream=False)
    assert model.metric("sp_cache.buffered_body_bytes") == 1000
    for stream in (a, b):
        stream.done()
    assert model.metric("sp_cache.buffered_body_bytes") == 0


def test_the_old_roots_answers_are_cancelled_when_it_is_deleted(make_host):
    model = make_host(config())
    s = model.new_stream()
    s.send_request_headers(req(), end_of_stream=True)
    model.respond_http_call(model.pending_calls[0], 404)
    s.respond(200, [("cache-control", "max-age=60")], b"v")
    model.advance(5)  # the queued store goes out on the tick (filter/src/root.zig batch_wait_ms)
    (store,) = model.pending_calls
    assert model.reconfigure(config(default_ttl_seconds=61)) is True  # the old root has no stream left
    assert store.state == "cancelled"
    model.respond_http_call(store, 200)  # Envoy cancelled it: nothing is delivered
    assert model.metric("sp_cache.store_failed") == 0


def test_a_reconfiguration_applies_to_new_streams_and_keeps_the_l1(make_host):
    cache = Cache(make_host(config()))
    cache.fetch("/k", origin=(200, [("cache-control", "max-age=60")], b"kept"))
    assert cache.model.reconfigure(config(lookup_timeout_ms=99)) is True
    hit = cache.fetch("/k")
    assert (hit.cache_status, hit.downstream_body) == ("HIT", b"kept")  # shared data outlives the root
    s = cache.model.new_stream()
    s.send_request_headers(req("GET", "/other"), True)
    assert cache.model.pending_calls[0].timeout_ms == 99
    assert_healthy(cache.model)


def test_cache_disabled_only_observes(make_host):
    model = make_host(config(cache_enabled=False))
    cache = Cache(model)
    s = cache.fetch("/a")
    assert (s.cache_status, model.calls, model.metric("sp_cache.bypass_disabled")) == ("BYPASS", [], 1)
