"""proxy_get_property: the paths a cache filter reads, serialized as Envoy does."""

from __future__ import annotations

import struct

from sp_istio_cache.testhost import DEFAULT_NOW_NS, EnvoyIdentity, WasmResult, decode_pairs

from .fake_guest import FakeGuest, fake_model

REQUEST = [(":method", "GET"), (":path", "/items?id=7#frag"), (":authority", "svc:8080"), (":scheme", "http"),
           ("x-request-id", "rid-1"), ("accept", "a"), ("accept", "b")]


def _get(g: FakeGuest, ctx: int, *parts: str) -> bytes | None:
    path = b"\0".join(p.encode() for p in parts) + b"\0"
    ptr_ptr, size_ptr = g.slot(), g.slot()
    status = g.call("do_get_property", ctx, g.put(path), len(path), ptr_ptr, size_ptr)
    return g.returned(ptr_ptr, size_ptr) if status == WasmResult.OK else None


def test_plugin_and_node_properties_on_the_root_context():
    model = fake_model(concurrency=1, plugin_name="sp-cache", root_id="cache_root", vm_id="cache_vm",
                       identity=EnvoyIdentity(node_id="sidecar~10.0.0.1~app.ns~ns.svc.cluster.local"))
    g, root = FakeGuest(model), model.root_context_id()
    assert (_get(g, root, "plugin_name"), _get(g, root, "plugin_root_id"), _get(g, root, "plugin_vm_id")) == (
        b"sp-cache", b"cache_root", b"cache_vm")
    assert _get(g, root, "xds", "node", "id") == b"sidecar~10.0.0.1~app.ns~ns.svc.cluster.local"
    assert _get(g, root, "node", "id") is None  # no top-level node attribute in Envoy 1.40
    assert _get(g, root, "request", "path") is None and _get(g, root, "xds", "cluster_name") is None


def test_request_properties_while_the_filter_holds_the_headers():
    model = fake_model(concurrency=1)
    g = FakeGuest(model)
    g.knob("req_headers_status", 1)
    model.advance(5)
    s = model.new_stream()  # the stream's start time
    s.send_request_headers(REQUEST, end_of_stream=True)
    assert [_get(g, s.id, "request", f) for f in ("path", "url_path", "query", "method", "host", "scheme", "id")] == [
        b"/items?id=7#frag", b"/items", b"id=7", b"GET", b"svc:8080", b"http", b"rid-1"]
    assert _get(g, s.id, "request", "headers", "accept") == b"a,b"
    assert decode_pairs(_get(g, s.id, "request", "headers"))[-1] == (b"accept", b"a,b")
    assert _get(g, s.id, "request", "time") == struct.pack("<q", DEFAULT_NOW_NS + 5_000_000)
    assert (_get(g, s.id, "xds", "cluster_name"), _get(g, s.id, "xds", "route_name")) == (b"upstream", b"")
    assert _get(g, s.id, "xds", "listener_direction") == struct.pack("<q", 0)
    g.call("do_continue", model.root_context_id(), s.id, 0)
    assert _get(g, s.id, "request", "path") is None  # continued: Envoy dropped its header pointer
    s.send_response_headers([(":status", "203")], end_of_stream=False)
    assert _get(g, s.id, "response", "code") == struct.pack("<q", 203)
    assert _get(g, s.id, "response", "code_details") == b"via_upstream"


def test_overrides_win_and_unknown_paths_are_not_found():
    model = fake_model(concurrency=1, properties={"connection.mtls": b"\x01"})
    g, root = FakeGuest(model), model.root_context_id()
    assert _get(g, root, "connection", "mtls") == b"\x01"
    assert _get(g, root, "no", "such") is None
