"""WASI as Envoy provides it: environment variables, args, randomness limits."""

from __future__ import annotations

import pytest

from sp_istio_cache.testhost import EnvoyModel, GuestTrap

from .fake_guest import FakeGuest, fake_guest_module, fake_model


def test_environ_get_serves_the_models_env_as_key_value_nul():
    model = fake_model(concurrency=1, env={"SP_CACHE_SIGNING_KEY": "s3cr3t", "A": ""})
    g = FakeGuest(model)
    root = model.root_context_id()
    count_ptr, size_ptr = g.slot(), g.slot()
    assert g.call("do_environ_sizes_get", root, count_ptr, size_ptr) == 0
    count, size = g.u32(count_ptr), g.u32(size_ptr)
    assert (count, size) == (2, len(b"SP_CACHE_SIGNING_KEY=s3cr3t\0A=\0"))
    array, buf = g.slot(4 * count), g.slot(size)
    assert g.call("do_environ_get", root, array, buf) == 0
    assert [g.u32(array), g.u32(array + 4)] == [buf, buf + len(b"SP_CACHE_SIGNING_KEY=s3cr3t\0")]
    assert g.read(buf, size) == b"SP_CACHE_SIGNING_KEY=s3cr3t\0A=\0"


def test_empty_environment():
    model = fake_model(concurrency=1)
    g = FakeGuest(model)
    count_ptr, size_ptr = g.slot(), g.slot()
    g.call("do_environ_sizes_get", model.root_context_id(), count_ptr, size_ptr)
    assert (g.u32(count_ptr), g.u32(size_ptr)) == (0, 0)


def test_only_logging_and_wasi_may_run_during_initialize():
    reads_env = '''(func (export "_initialize")
        (drop (call $environ_sizes_get (i32.const 4096) (i32.const 4100))))'''
    assert EnvoyModel(module=fake_guest_module(extra=reads_env)).start() is True
    writes_shared_data = '''(func (export "_initialize")
        (drop (call $set_shared (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))))'''
    with pytest.raises(GuestTrap, match="restricted_callback"):
        EnvoyModel(module=fake_guest_module(extra=writes_shared_data)).start()


def test_random_get_is_seeded_per_worker_and_capped_at_64_kib():
    model = fake_model(seed=7)
    vm0, vm1 = FakeGuest(model, 0), FakeGuest(model, 1)
    a, b = vm0.slot(16), vm1.slot(16)
    assert vm0.call("do_random_get", model.root_context_id(0), a, 16) == 0
    assert vm1.call("do_random_get", model.root_context_id(1), b, 16) == 0
    assert vm0.read(a, 16) != vm1.read(b, 16) and vm0.read(a, 16) != bytes(16)
    again = fake_model(seed=7)
    c = FakeGuest(again, 0).slot(16)
    FakeGuest(again, 0).call("do_random_get", again.root_context_id(0), c, 16)
    assert FakeGuest(again, 0).read(c, 16) == vm0.read(a, 16)
    assert vm0.call("do_random_get", model.root_context_id(0), a, 65537) == 28  # EINVAL
