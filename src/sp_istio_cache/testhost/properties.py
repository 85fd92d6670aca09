"""``proxy_get_property`` paths a cache filter may read, answered as Envoy does
(``Context::getProperty`` over the CEL attributes of ``filters/common/expr/context.cc``).

A path is its segments joined by NUL (a trailing NUL is ignored). Serialization (Envoy's
``serializeValue``): strings and bytes raw; int64/uint64 8 bytes little-endian; timestamps as int64
nanoseconds since the epoch; maps as a header map (:func:`..abi.encode_pairs`), a multi-valued
header giving its values joined by ``,``.

Modelled (anything else is NotFound, unless the model's ``properties`` overrides it):

- ``plugin_name``, ``plugin_root_id``, ``plugin_vm_id``: strings, any context;
- ``xds.node.id``, ``xds.node.cluster``: strings from :class:`EnvoyIdentity`, any context;
- streams only: ``xds.cluster_name``, ``xds.route_name`` (strings), ``xds.listener_direction``
  (int64); ``request.path``, ``url_path``, ``query``, ``host``, ``scheme``, ``method``, ``id``
  (``x-request-id``), ``user_agent``, ``referer`` (strings from the request headers);
  ``request.headers`` (map) and ``request.headers.<name>`` (string); ``request.time`` (timestamp:
  the stream's start on the virtual clock); ``request.protocol`` (``HTTP/1.1``); ``response.code``
  (int64, upstream ``:status`` or the local reply's); ``response.code_details`` (``via_upstream`` or
  the local reply's details); ``response.headers`` / ``response.headers.<name>``;
  ``source.address``/``destination.address`` (``ip:port``) and ``.port`` (int64).

Header-based ``request.*`` and ``response.*`` values exist only while the filter can reach those
headers (during their callback, while it holds them, and in ``proxy_on_log``): Envoy reads them
through the Wasm context's own header pointers, which it drops once the headers are continued.
``node.id`` (no ``xds.`` prefix) is NotFound: Envoy 1.40 has no top-level ``node`` attribute.
A value set with ``proxy_set_property`` on a stream reads back under the same one-segment path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import headermap
from .abi import encode_pairs
from .headermap import Pairs
from .stream import Stream

if TYPE_CHECKING:
    from .worker import Context


@dataclass(frozen=True)
class EnvoyIdentity:
    """The facts about the proxy a property can reveal (defaults: this project's
    ``envoy/envoy.yaml.j2`` with the filter variant; an Istio sidecar's outbound listener would have
    ``node_id`` ``sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`` and direction 2)."""

    node_id: str = "sp-istio-cache-filter"
    node_cluster: str = "sp-istio-cache-workbench"
    cluster_name: str = "upstream"
    route_name: str = ""  # the route has no name there
    listener_direction: int = 0  # UNSPECIFIED (envoy.config.core.v3.TrafficDirection); OUTBOUND is 2
    source: tuple[str, int] = ("127.0.0.1", 50000)
    destination: tuple[str, int] = ("127.0.0.1", 10000)


def _i64(value: int) -> bytes:
    return struct.pack("<q", value)


def split_path(raw: bytes) -> list[str]:
    """Envoy's segment loop: split on NUL, a trailing NUL ends the path."""
    parts, start = [], 0
    while start < len(raw):
        end = raw.find(b"\0", start)
        end = len(raw) if end < 0 else end
        parts.append(raw[start:end].decode("utf-8", "surrogateescape"))
        start = end + 1
    return parts


def _header_map(pairs: Pairs) -> bytes:
    joined = [(k, ",".join(v for kk, v in pairs if kk == k)) for k, _ in pairs]
    return encode_pairs([(headermap.raw(k), headermap.raw(v)) for k, v in joined]) if joined else b""


def _request(stream: Stream, field: str, rest: list[str]) -> bytes | None:
    if field == "time":
        return _i64(stream.start_ns)
    if field == "protocol":
        return b"HTTP/1.1"
    headers = stream.decoder.headers if (stream.in_log or stream.decoder.map_live(False)) else None
    if headers is None:
        return None
    if field == "headers":
        if not rest:
            return _header_map(headers)
        values = [v for k, v in headers if k == rest[0].lower()]
        return headermap.raw(",".join(values)) if values and len(rest) == 1 else None
    path = headermap.first(headers, ":path")
    names = {"path": ":path", "host": ":authority", "scheme": ":scheme", "method": ":method", "id": "x-request-id",
             "user_agent": "user-agent", "referer": "referer"}
    simple = {field_: headermap.first(headers, name) for field_, name in names.items()}
    value = simple.get(field)
    if value is not None:
        return headermap.raw(value)
    if field in simple:
        return None
    if path is not None and field == "url_path":
        return headermap.raw(path.split("?", 1)[0])
    if path is not None and field == "query":
        return headermap.raw(path.split("?", 1)[1].split("#", 1)[0] if "?" in path else "")
    return None


def _response(stream: Stream, field: str, rest: list[str]) -> bytes | None:
    if field == "code":
        return None if stream.response_code is None else _i64(stream.response_code)
    if field == "code_details":
        return None if stream.response_code_details is None else stream.response_code_details.encode()
    if field != "headers":
        return None
    live = stream.encoder.map_live(False)
    headers = stream.encoder.headers if live else (stream.encoder.headers_out if stream.in_log else None)
    if headers is None:
        return None
    if not rest:
        return _header_map(headers)
    values = [v for k, v in headers if k == rest[0].lower()]
    return headermap.raw(",".join(values)) if values and len(rest) == 1 else None


def resolve(ctx: Context, parts: list[str], identity: EnvoyIdentity, vm_id: str) -> bytes | None:
    """The serialized value of property ``parts`` for ``ctx``, or None (NotFound)."""
    if not parts:
        return None
    top, rest = parts[0], parts[1:]
    plugin = ctx.root.plugin
    plugin_values = {"plugin_name": plugin.name, "plugin_root_id": plugin.root_id, "plugin_vm_id": vm_id}
    if top in plugin_values:
        return plugin_values[top].encode() if not rest else None
    stream = ctx if isinstance(ctx, Stream) else None
    if top == "xds" and rest:
        return _xds(rest, stream, identity)
    if stream is None:
        return None
    if top == "request" and rest:
        return _request(stream, rest[0], rest[1:])
    if top == "response" and rest:
        return _response(stream, rest[0], rest[1:])
    if top in ("source", "destination") and len(rest) == 1:
        address, port = identity.source if top == "source" else identity.destination
        return {"address": f"{address}:{port}".encode(), "port": _i64(port)}.get(rest[0])
    if not rest:
        return stream.filter_state.get(top.encode("utf-8", "surrogateescape"))
    return None


def _xds(rest: list[str], stream: Stream | None, identity: EnvoyIdentity) -> bytes | None:
    if rest[0] == "node" and len(rest) == 2:
        return {"id": identity.node_id, "cluster": identity.node_cluster}.get(rest[1], "").encode() or None
    if stream is None or len(rest) != 1:
        return None
    if rest[0] == "listener_direction":
        return _i64(identity.listener_direction)
    value = {"cluster_name": identity.cluster_name, "route_name": identity.route_name}.get(rest[0])
    return None if value is None else value.encode()
