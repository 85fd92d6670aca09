"""The host itself: wire formats, import checking, ABI bookkeeping."""

from __future__ import annotations

import pytest

from sp_istio_cache.testhost import EnvoyModel, UnsupportedImport, decode_pairs, encode_pairs, load_module
from sp_istio_cache.testhost.abi import envoy_pairs

from ._support import config, req
from .fake_guest import guest_module


def test_header_map_wire_format_is_exact():
    data = encode_pairs([(":path", "/a"), ("x", "")])
    assert data == (b"\x02\x00\x00\x00" b"\x05\x00\x00\x00\x02\x00\x00\x00" b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    b":path\x00/a\x00x\x00\x00")
    assert decode_pairs(data) == [(b":path", b"/a"), (b"x", b"")]
    with pytest.raises(ValueError, match="truncated"):
        decode_pairs(data[:-1])
    with pytest.raises(ValueError, match="trailing"):
        decode_pairs(data + b"\0")


def test_malformed_map_becomes_empty_as_in_envoy():
    data = encode_pairs([("a", "b")])
    assert envoy_pairs(data) == [(b"a", b"b")]
    assert envoy_pairs(b"") == []
    assert envoy_pairs(data[:-1]) is None  # PairsUtil::toPairs gives an empty map
    assert envoy_pairs(b"\x01\x04\x00\x00") is None  # 1025 pairs declared: over the limit


def test_unknown_import_fails_instantiation_naming_it():
    module = guest_module('(import "env" "proxy_teleport" (func (param i32) (result i32)))')
    with pytest.raises(UnsupportedImport, match=r"env\.proxy_teleport"):
        EnvoyModel(module=module).start()


def test_import_with_wrong_signature_is_refused():
    module = guest_module('(import "env" "proxy_log" (func (param i32) (result i32)))')
    with pytest.raises(UnsupportedImport, match=r"env\.proxy_log is imported as"):
        EnvoyModel(module=module).start()


def test_filter_imports_are_all_provided(filter_wasm):
    compiled = load_module(filter_wasm)
    names = {(i.module, i.name) for i in compiled.module.imports}
    assert ("env", "proxy_http_call") in names
    host = EnvoyModel(module=compiled, plugin_config=config())  # the filter requires a signing key
    assert host.start() is True  # would raise UnsupportedImport otherwise
    assert host.memory_bytes > 0 and len(host.memory_bytes_by_worker()) == 2


def test_metric_ids_carry_their_type_and_step_by_four_per_vm(host):
    ids = host.workers[0].metric_ids.ids
    counters = sorted(mid for mid, stat in ids.items() if stat.type == 0)
    gauges = sorted(mid for mid, stat in ids.items() if stat.type == 1)
    assert counters[:3] == [4, 8, 12] and gauges == [5, 9, 13]  # the filter's three gauges
    assert host.workers[1].metric_ids.ids.keys() == ids.keys()  # each VM its own table, same stats
    assert ids[5] is host.workers[1].metric_ids.ids[5]


def test_random_get_is_deterministic_per_seed(make_host):
    def first_trace(seed):
        h = make_host(config(inject_traceparent=True), seed=seed)  # traceparent injection is opt-in
        s = h.new_stream()
        s.send_request_headers(req(), end_of_stream=True)
        return [v for k, v in s.request_headers if k == "traceparent"]

    assert first_trace(1) == first_trace(1)
    assert first_trace(1) != first_trace(2)
