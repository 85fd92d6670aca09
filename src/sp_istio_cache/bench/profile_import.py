"""Build a traffic profile from recorded traffic: an Envoy access log, a HAR file, or the spans
the cache backend stored.

Every source is reduced to exchanges (method, path, request body bytes, response body bytes,
status, Cache-Control); exchanges with the same method and path become one row whose weight is
their count, whose sizes are the medians and whose status and Cache-Control are the most
frequent ones.

Formats read:

- **Envoy access log, text**: Envoy's default format (``[%START_TIME%] "%REQ(:METHOD)%
  %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS%
  %BYTES_RECEIVED% %BYTES_SENT% ...``, Envoy docs "Access logging / Default format string") and
  Istio's default TEXT format (the same start, then ``%RESPONSE_CODE_DETAILS%
  %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%"`` before the two byte
  counts). ``%BYTES_RECEIVED%`` / ``%BYTES_SENT%`` are the request and response body bytes.
- **Envoy access log, JSON** (one object per line): Istio's JSON keys ``method``, ``path``,
  ``bytes_received``, ``bytes_sent``, ``response_code`` (as ``%REQ(:METHOD)%`` etc. in a
  ``json_format``); ``response_code`` 0 or ``-`` means no response.
- **HAR 1.2** (``log.entries[]``): ``request.method``, ``request.url`` (path and query),
  ``request.bodySize`` (or ``postData.text``), ``response.status``, ``response.bodySize`` (bytes
  on the wire; ``content.size`` when that is unknown), the ``Cache-Control`` response header.
- **The backend's SQLite database**, opened read-only: the storage interface
  (:class:`~sp_istio_cache.backend.storage.base.Storage`) has no way to list entries, so every
  BLOB column of every table is read and each value that decodes as an OTLP ``TracesData`` (or
  a single ``Span``) contributes its spans that carry ``http.request.method`` and ``url.path``:
  ``http.request.body`` and ``http.response.body`` (bytes) give the sizes,
  ``http.response.status_code`` the status, ``http.response.header.cache-control`` the
  Cache-Control. Attribute values may be strings or bytes (docs/protocol.md).
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .profile import ProfileError, ProfileRow, TrafficProfile

KINDS = ("envoy-log", "har", "backend")
_TEXT_HEAD = re.compile(r'^\[[^\]]*\] "(?P<method>[^ "]+) (?P<path>[^ "]+) [^"]*" '
                        r"(?P<status>\d+|-) (?P<flags>\S+) (?P<rest>.*)$")
_ENVOY_REST = re.compile(r"^(?P<received>\d+) (?P<sent>\d+) ")
_ISTIO_REST = re.compile(r'^\S+ \S+ "[^"]*" (?P<received>\d+) (?P<sent>\d+) ')


@dataclass(frozen=True)
class Exchange:
    """One recorded request and what is known of its response (None: unknown)."""

    method: str
    path: str
    request_body_bytes: int
    response_body_bytes: int | None
    status: int | None
    cache_control: str | None


def _status(value: Any) -> int | None:
    try:
        status = int(value)
    except (TypeError, ValueError):
        return None
    return status if 100 <= status <= 599 else None


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def envoy_log_exchanges(path: Path) -> Iterator[Exchange]:
    """Exchanges of an Envoy access log (text or JSON lines, see the module docstring).

    Raises:
        ProfileError: a non-empty line in neither format; names the file and line.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                yield _json_line(line, path, number)
                continue
            head = _TEXT_HEAD.match(line)
            rest = (_ENVOY_REST.match(head.group("rest") + " ") or _ISTIO_REST.match(head.group("rest") + " ")) \
                if head else None
            if head is None or rest is None:
                raise ProfileError(f"{path}:{number}: not Envoy's default access log format nor Istio's: "
                                   f"{line[:120]!r}")
            if head.group("path") == "-":
                continue
            yield Exchange(method=head.group("method"), path=head.group("path"),
                           request_body_bytes=int(rest.group("received")), response_body_bytes=int(rest.group("sent")),
                           status=_status(head.group("status")), cache_control=None)


def _json_line(line: str, path: Path, number: int) -> Exchange:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}:{number}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or not doc.get("method") or not doc.get("path"):
        raise ProfileError(f"{path}:{number}: a JSON access log line needs 'method' and 'path' "
                           "(Istio's JSON keys; docs/bench.md)")
    return Exchange(method=str(doc["method"]), path=str(doc["path"]),
                    request_body_bytes=_int(doc.get("bytes_received")) or 0,
                    response_body_bytes=_int(doc.get("bytes_sent")), status=_status(doc.get("response_code")),
                    cache_control=None)


def har_exchanges(path: Path) -> Iterator[Exchange]:
    """Exchanges of a HAR file (see the module docstring).

    Raises:
        ProfileError: not JSON, or no ``log.entries``; names the file (and entry).
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = doc["log"]["entries"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ProfileError(f"{path}: not a HAR file (needs log.entries): {exc}") from None
    for i, entry in enumerate(entries):
        try:
            req, resp = entry["request"], entry["response"]
            url = urlsplit(req["url"])
            method = req["method"]
        except (KeyError, TypeError) as exc:
            raise ProfileError(f"{path}: entry {i + 1}: missing {exc}") from None
        body = _int(req.get("bodySize"))
        if body is None:
            body = len(((req.get("postData") or {}).get("text") or "").encode())
        sent = _int(resp.get("bodySize"))
        if not sent:
            sent = _int((resp.get("content") or {}).get("size"))
        cc = [h.get("value") for h in resp.get("headers", []) if str(h.get("name", "")).lower() == "cache-control"]
        yield Exchange(method=method, path=(url.path or "/") + (f"?{url.query}" if url.query else ""),
                       request_body_bytes=body, response_body_bytes=sent, status=_status(resp.get("status")),
                       cache_control=", ".join(cc) if cc else None)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def span_exchange(span: Any) -> Exchange | None:
    """The exchange recorded in one OTLP span (None: the span lacks method or path)."""
    attrs = {kv.key: _value(kv.value) for kv in span.attributes}
    method, path = _text(attrs.get("http.request.method")), _text(attrs.get("url.path"))
    if not method or not path:
        return None
    body = attrs.get("http.response.body")
    cc = attrs.get("http.response.header.cache-control")
    return Exchange(method=method, path=path, request_body_bytes=len(attrs.get("http.request.body") or b""),
                    response_body_bytes=len(body) if isinstance(body, (bytes, str)) else None,
                    status=_status(attrs.get("http.response.status_code")),
                    cache_control=", ".join(_text(v) or "" for v in cc) if isinstance(cc, list) and cc else None)


def _spans(blob: bytes) -> list[Any]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

    try:
        traces = TracesData.FromString(blob)
        spans = [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
        if spans:
            return spans
    except DecodeError:
        pass
    try:
        return [Span.FromString(blob)]
    except DecodeError:
        return []


def backend_exchanges(path: Path) -> Iterator[Exchange]:
    """Exchanges of the spans stored in the backend's SQLite database (read-only).

    Raises:
        ProfileError: not a SQLite database, or it holds no span with method and path.
    """
    path = Path(path)
    if not path.exists():
        raise ProfileError(f"{path}: no such database")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ProfileError(f"{path}: cannot open read-only: {exc}") from None
    found = 0
    layout = []
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            layout.append(f"{table}({', '.join(columns)})")
            for column in columns:
                rows = db.execute(f'SELECT "{column}" FROM "{table}" WHERE typeof("{column}") = \'blob\'')
                for (blob,) in rows:
                    for span in _spans(blob):
                        exchange = span_exchange(span)
                        if exchange is not None:
                            found += 1
                            yield exchange
    except sqlite3.DatabaseError as exc:
        raise ProfileError(f"{path}: not a readable SQLite database: {exc}") from None
    finally:
        db.close()
    if not found:
        raise ProfileError(f"{path}: no stored span carries http.request.method and url.path "
                           f"(tables: {'; '.join(layout) or 'none'})")


def build_profile(exchanges: Iterable[Exchange], *, name: str, source: str) -> TrafficProfile:
    """Group exchanges by (method, path) into weighted rows (see the module docstring).

    Raises:
        ProfileError: no exchange, or a row the profile model refuses (names it).
    """
    groups: dict[tuple[str, str], list[Exchange]] = defaultdict(list)
    for ex in exchanges:
        groups[(ex.method.upper(), ex.path)].append(ex)
    if not groups:
        raise ProfileError(f"{source}: no request found")

    def most(values: list[Any]) -> Any:
        known = [v for v in values if v is not None]
        return Counter(known).most_common(1)[0][0] if known else None

    rows = []
    for (method, path), group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        sizes = [e.response_body_bytes for e in group if e.response_body_bytes is not None]
        try:
            rows.append(ProfileRow(method=method, path=path,
                                   request_body_bytes=int(statistics.median_low([e.request_body_bytes for e in group])),
                                   response_body_bytes=int(statistics.median_low(sizes)) if sizes else None,
                                   status=most([e.status for e in group]),
                                   cache_control=most([e.cache_control for e in group]), weight=len(group)))
        except ValueError as exc:
            raise ProfileError(f"{source}: {method} {path[:80]}: {exc}") from None
    total = sum(len(g) for g in groups.values())
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:64] or "profile"
    return TrafficProfile(name=safe, source=f"{source} ({total} requests)", rows=rows)


def detect_kind(path: Path) -> str:
    """``har`` for .har, ``backend`` for .sqlite/.sqlite3/.db, else ``envoy-log``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".har":
        return "har"
    if suffix in (".sqlite", ".sqlite3", ".db"):
        return "backend"
    return "envoy-log"


def import_profile(path: Path, *, kind: str = "auto", name: str = "profile") -> TrafficProfile:
    """A profile from ``path`` read as ``kind`` (``envoy-log``, ``har``, ``backend``, ``auto``).

    Raises:
        ProfileError: unknown kind, unreadable or unusable source; names the file.
    """
    path = Path(path)
    kind = detect_kind(path) if kind == "auto" else kind
    readers = {"envoy-log": envoy_log_exchanges, "har": har_exchanges, "backend": backend_exchanges}
    if kind not in readers:
        raise ProfileError(f"unknown source kind {kind!r}; known: {', '.join(KINDS)}, auto")
    if not path.exists():
        raise ProfileError(f"{path}: no such file")
    return build_profile(readers[kind](path), name=name, source=f"{kind}:{path.name}")
