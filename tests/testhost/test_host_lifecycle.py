"""Root contexts over a plugin's life: start, reconfigure (new root, old one torn down once its
streams end), proxy_on_done/proxy_done, the canary, and memory over many reconfigurations."""

from __future__ import annotations

from sp_istio_cache.testhost import EnvoyModel, WasmResult
from sp_istio_cache.testhost.soak import soak

from .fake_guest import REFUSED_CONFIG, FakeGuest, events, fake_guest_module, fake_model

GET = [(":method", "GET"), (":path", "/"), (":authority", "svc"), (":scheme", "http")]


def _lifecycle(model: EnvoyModel) -> list[tuple[str, int]]:
    return [e for e in events(model) if e[0] in ("root_create", "vm_start", "configure", "done", "delete")]


def test_start_creates_then_starts_then_configures_one_root_per_vm_after_the_canary():
    model = fake_model()
    first = [("root_create", 1), ("vm_start", 1), ("configure", 1)]
    assert _lifecycle(model) == first * 3  # the canary VM, then workers 0 and 1
    assert [r.worker for r in model.logs] == [] and model.root_context_id(0) == model.root_context_id(1) == 1


def test_reconfigure_makes_a_new_root_and_tears_the_old_one_down_when_its_streams_end():
    model = fake_model(concurrency=1)
    old = model.root_context_id()
    s = model.new_stream()
    s.send_request_headers(GET, end_of_stream=True)
    assert model.reconfigure({"generation": 2}) is True
    new = model.root_context_id()
    assert new not in (old, s.id)
    assert [e for e in _lifecycle(model) if e[1] == old and e[0] in ("done", "delete")] == []  # s still holds it
    assert model.new_stream().root.id == new
    s.respond(200, [], b"x")  # the response ends the stream; then the old root goes
    assert s.deleted
    assert _lifecycle(model)[-7:] == [("root_create", new), ("vm_start", new), ("configure", new),
                                      ("done", s.id), ("delete", s.id), ("done", old), ("delete", old)]
    assert old not in model.workers[0].contexts


def test_identical_configuration_keeps_the_root_and_a_refused_one_changes_nothing():
    model = fake_model(concurrency=1, plugin_config={"a": 1})
    root = model.root_context_id()
    assert model.reconfigure({"a": 1}) is True and model.root_context_id() == root
    before = len(events(model))
    assert model.reconfigure(REFUSED_CONFIG) is False
    assert model.root_context_id() == root
    assert [e[0] for e in events(model)[before:]] == ["root_create", "vm_start", "configure"]  # the canary only
    assert EnvoyModel(module=fake_guest_module(), plugin_config=REFUSED_CONFIG).start() is False


def test_on_done_false_waits_for_proxy_done_then_deletes_after_the_vm_call():
    model = fake_model(concurrency=1)
    g = FakeGuest(model)
    old = model.root_context_id()
    g.knob("done_result", 0)
    model.reconfigure({"generation": 2})
    assert model.workers[0].contexts[old].state == "pending_done"
    assert g.call("do_done", model.root_context_id()) == WasmResult.NOT_FOUND  # the new root is not closing
    assert g.call("do_done", old) == WasmResult.OK
    assert _lifecycle(model)[-2:] == [("done", old), ("delete", old)]
    assert old not in model.workers[0].contexts


def test_shutdown_closes_every_root():
    model = fake_model()
    model.shutdown()
    assert [e for e in _lifecycle(model) if e[0] in ("done", "delete")] == [("done", 1), ("delete", 1)] * 2


def test_soak_reconfigures_and_samples_memory_per_vm():
    model = fake_model(module=fake_guest_module(fuel=False))
    result = soak(model, [{"v": 1}, {"v": 2}], reconfigurations=40, requests=200)
    assert len(result.samples) == 21 and all(len(s) == 2 for s in result.samples)
    assert result.growth == 0.0  # the fake guest allocates nothing per request
    assert model.root_context_id(0) > 40 and len([c for c in model.workers[0].contexts]) == 1
