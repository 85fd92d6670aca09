"""The virtual clock: ticks per root context on every VM, WASI clocks, callout timeouts."""

from __future__ import annotations

import pytest

from sp_istio_cache.testhost import DEFAULT_NOW_NS, EnvoyModel, WasmResult

from .fake_guest import FakeGuest, events, fake_guest_module, fake_model

T0_MS = DEFAULT_NOW_NS // 1_000_000


def _ticking_model(period_ms: int, **kw):
    model = EnvoyModel(module=fake_guest_module(), **kw)
    model.start()  # the canary also configures, but its VM is thrown away: no timer survives it
    for worker in range(model.concurrency):
        g = FakeGuest(model, worker)
        assert g.call("do_set_tick", model.root_context_id(worker), period_ms) == WasmResult.OK
    return model


def test_ticks_fire_in_time_order_on_each_vm():
    model = _ticking_model(100)
    assert model.advance(99) == 0
    assert model.advance(151) == 4  # 100 and 200 on both workers
    ticks = [e for e in events(model) if e[0] == "tick"]
    assert ticks == [("tick", T0_MS + 100)] * 2 + [("tick", T0_MS + 200)] * 2
    assert model.now_ns == DEFAULT_NOW_NS + 250_000_000
    model.advance(50)
    assert [e for e in events(model) if e[0] == "tick"][-2:] == [("tick", T0_MS + 300)] * 2


def test_period_is_per_root_restarts_from_now_and_zero_stops():
    model = _ticking_model(100, concurrency=1)
    g = FakeGuest(model)
    model.advance(30)
    g.call("do_set_tick", model.root_context_id(), 50)  # re-armed from now: next at 80
    model.advance(60)
    g.call("do_set_tick", model.root_context_id(), 0)
    model.advance(1000)
    assert [v for e, v in events(model) if e == "tick"] == [T0_MS + 80]


def test_a_stream_sets_its_roots_period():
    model = fake_model(concurrency=1)
    s = model.new_stream()
    s.send_request_headers([(":method", "GET"), (":path", "/"), (":authority", "a")], True)
    assert FakeGuest(model).call("do_set_tick", s.id, 10) == WasmResult.OK
    assert model.workers[0].active.tick_period_ms == 10
    assert model.advance(25) == 2


def test_ticks_stop_when_the_root_is_deleted():
    model = _ticking_model(100, concurrency=1)
    assert model.reconfigure({"v": 2}) is True  # the old root has no streams: deleted at once
    model.advance(500)
    assert [e for e in events(model) if e[0] == "tick"] == []


def test_wasi_clocks_read_the_virtual_clock():
    model = fake_model(concurrency=1)
    g = FakeGuest(model)
    root = model.root_context_id()
    model.advance(1500)
    out = g.slot()
    assert g.call("do_clock_time_get", root, 0, out) == 0 and g.u64(out) == DEFAULT_NOW_NS + 1_500_000_000
    assert g.call("do_clock_time_get", root, 1, out) == 0 and g.u64(out) == 1_500_000_000
    assert g.call("do_clock_time_get", root, 2, out) == 58  # ENOTSUP: no cputime clocks


def test_advance_refuses_going_back():
    model = fake_model(concurrency=1)
    with pytest.raises(ValueError, match="ms >= 0"):
        model.advance(-1)
