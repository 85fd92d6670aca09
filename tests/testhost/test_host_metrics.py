"""Custom metrics as Envoy keeps them: ids per VM, stats per process by name."""

from __future__ import annotations

from sp_istio_cache.testhost import MetricType, WasmResult

from .fake_guest import FakeGuest, fake_model


def _define(g: FakeGuest, ctx: int, mtype: int, name: bytes) -> tuple[int, int]:
    out = g.slot()
    status = g.call("do_define_metric", ctx, mtype, g.put(name), len(name), out)
    return status, g.u32(out)


def test_ids_per_vm_values_per_process():
    model = fake_model()
    vm0, vm1 = FakeGuest(model, 0), FakeGuest(model, 1)
    r0, r1 = model.root_context_id(0), model.root_context_id(1)
    assert _define(vm0, r0, MetricType.GAUGE, b"l1_bytes") == (WasmResult.OK, 5)
    assert _define(vm0, r0, MetricType.GAUGE, b"l1_bytes") == (WasmResult.OK, 9)  # a new id, the same stat
    _, gauge1 = _define(vm1, r1, MetricType.GAUGE, b"l1_bytes")
    assert vm0.call("do_increment_metric", r0, 5, 300) == WasmResult.OK
    assert vm1.call("do_increment_metric", r1, gauge1, 200) == WasmResult.OK
    assert vm0.call("do_increment_metric", r0, 9, -100) == WasmResult.OK
    assert model.metric("l1_bytes") == 400
    out = vm1.slot()
    assert vm1.call("do_get_metric", r1, gauge1, out) == WasmResult.OK and vm1.u64(out) == 400
    assert vm1.call("do_record_metric", r1, gauge1, 7) == WasmResult.OK and model.metric("l1_bytes") == 7


def test_counters_refuse_non_positive_increments_and_add_records():
    model = fake_model(concurrency=1)
    g, root = FakeGuest(model), model.root_context_id()
    _, counter = _define(g, root, MetricType.COUNTER, b"l1_hit")
    assert counter & 3 == 0
    assert g.call("do_increment_metric", root, counter, 0) == WasmResult.BAD_ARGUMENT
    assert g.call("do_increment_metric", root, counter, -1) == WasmResult.BAD_ARGUMENT
    assert g.call("do_increment_metric", root, counter, 2) == WasmResult.OK
    assert g.call("do_record_metric", root, counter, 3) == WasmResult.OK
    assert model.metric("l1_hit") == 5 and model.metrics["l1_hit"] == 5
    assert g.call("do_increment_metric", root, counter + 400, 1) == WasmResult.NOT_FOUND


def test_histograms_keep_every_sample_and_cannot_be_read_back():
    model = fake_model()
    vm0, vm1 = FakeGuest(model, 0), FakeGuest(model, 1)
    r0, r1 = model.root_context_id(0), model.root_context_id(1)
    _, h0 = _define(vm0, r0, MetricType.HISTOGRAM, b"lookup_us")
    _, h1 = _define(vm1, r1, MetricType.HISTOGRAM, b"lookup_us")
    assert h0 & 3 == 2
    for g, ctx, mid, value in ((vm0, r0, h0, 120), (vm1, r1, h1, 80), (vm0, r0, h0, 2**40)):
        assert g.call("do_record_metric", ctx, mid, value) == WasmResult.OK
    assert model.histogram("lookup_us") == [120, 80, 2**40]
    assert vm0.call("do_get_metric", r0, h0, vm0.slot()) == WasmResult.BAD_ARGUMENT
    assert vm0.call("do_increment_metric", r0, h0, 1) == WasmResult.BAD_ARGUMENT
    assert "lookup_us" not in model.metrics
    assert model.stats.find("lookup_us")[0].envoy_name == "wasmcustom.lookup_us"


def test_a_gauge_below_zero_is_a_violation():
    model = fake_model(concurrency=1)
    g, root = FakeGuest(model), model.root_context_id()
    _, gauge = _define(g, root, MetricType.GAUGE, b"in_flight")
    g.call("do_increment_metric", root, gauge, -1)
    assert model.violations == ["gauge in_flight went below zero (-1); Envoy's gauge is unsigned"]


def test_undefined_type_is_bad_argument():
    model = fake_model(concurrency=1)
    assert _define(FakeGuest(model), model.root_context_id(), 3, b"x")[0] == WasmResult.BAD_ARGUMENT
