"""Write the golden files the Zig filter and the Python package are both tested against.

    python filter/testdata/make_golden.py          # rewrite both files
    python filter/testdata/make_golden.py --check  # exit 1 when a file is out of date

- ``fingerprint_vectors.json``: request fingerprints (docs/protocol.md "Request fingerprint");
- ``protocol_golden.json``: lookup / store / invalidate spans and a lookup answer of three
  candidate spans, encoded with opentelemetry-proto (sp_istio_cache.entry), the candidates'
  decoded fields, signatures, variant-hash vectors and replay-validation vectors.

Every byte string that may be outside UTF-8 is written as hex (``*_hex``); header lists are
``[name, value_hex]`` pairs, replay vectors ``[name_hex, value_hex]``. A body is
``bytes.fromhex(body_hex) * body_repeat``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from sp_istio_cache.entry import (
    Entry,
    Envelope,
    Request,
    encode_span,
    replay_violation,
    signed_entry,
    traces_data,
    variant_hash,
)
from sp_istio_cache.fingerprint import request_fingerprint, wire_bytes

HERE = Path(__file__).resolve().parent
SIGNING_KEY = b"golden-signing-key-0123456789abcdef"
OTHER_KEY = b"an-attacker-key-that-is-not-ours-000"


def _hex(value: str | bytes) -> str:
    return wire_bytes(value).hex()


def _pairs(headers) -> list[list[str]]:
    return [[name, _hex(value)] for name, value in headers]


# ------------------------------------------------------------------------------ fingerprints

FINGERPRINTS = [
    # name, method, scheme, authority, path, body, body_repeat
    ("get_minimal", "GET", "http", "upstream", "/bytes/65536", b"", 1),
    ("head_keyed_as_get", "HEAD", "http", "upstream", "/bytes/65536", b"", 1),
    ("scheme_upper_case", "GET", "HTTP", "upstream", "/bytes/65536", b"", 1),
    ("authority_upper_case_with_port", "GET", "http", "UpStream:8080", "/a?b=1", b"", 1),
    ("authority_lower_case_with_port", "GET", "http", "upstream:8080", "/a?b=1", b"", 1),
    ("https_is_another_key", "GET", "https", "upstream:8080", "/a?b=1", b"", 1),
    ("method_case_kept", "get", "http", "upstream", "/bytes/65536", b"", 1),
    ("path_case_kept", "GET", "http", "upstream", "/Bytes/65536", b"", 1),
    ("query_kept_verbatim", "GET", "http", "api.example", "/search?q=a%20b&x=", b"", 1),
    ("empty_authority", "GET", "http", "", "/", b"", 1),
    ("empty_path", "GET", "http", "h", "", b"", 1),
    ("non_utf8_path", "GET", "http", "h", b"/caf\xe9?q=\xff", b"", 1),
    ("non_ascii_authority_only_ascii_lowered", "GET", "http", "\u00c9X.example".encode(), "/", b"", 1),
    ("non_utf8_authority", "GET", "http", b"h\xff", "/", b"", 1),
    ("post_with_binary_body", "POST", "http", "h", "/rpc", b"\x00\x01binary\xff", 1),
    ("post_empty_body", "POST", "http", "h", "/rpc", b"", 1),
    ("large_body_over_64_kib", "POST", "http", "h", "/upload", bytes(range(256)), 273),
]


def fingerprint_vectors() -> dict:
    vectors = []
    for name, method, scheme, authority, path, body, repeat in FINGERPRINTS:
        vectors.append({
            "name": name,
            "method": method,
            "scheme": scheme,
            "authority_hex": _hex(authority),
            "path_hex": _hex(path),
            "body_hex": body.hex(),
            "body_repeat": repeat,
            "digest": request_fingerprint(method, scheme, authority, path, body * repeat),
        })
    return {
        "spec": "docs/protocol.md#request-fingerprint-the-primary-cache-key",
        "generator": "filter/testdata/make_golden.py",
        "version_tag": "sp-istio-cache/2",
        "vectors": vectors,
    }


# ---------------------------------------------------------------------------- protocol spans

ENVELOPE = dict(
    service_name="svc",
    scope_version="2.0.0",
    trace_id=bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736"),
    parent_span_id=bytes.fromhex("0102030405060708"),
    start_time_unix_nano=1_700_000_000_000_000_000,
    end_time_unix_nano=1_700_000_000_000_500_000,
)
SPAN_IDS = {
    "lookup": bytes.fromhex("00f067aa0ba902b7"),
    "store": bytes.fromhex("00f067aa0ba902b8"),
    "invalidate": bytes.fromhex("00f067aa0ba902b9"),
    "variant_fr": bytes.fromhex("00f067aa0ba902ba"),
    "planted": bytes.fromhex("00f067aa0ba902bb"),
}

REQUEST = Request(
    method="GET",
    scheme="http",
    authority="Upstream:8080",
    path=b"/caf\xe9?q=1",
    headers=(
        ("accept", "text/html"),
        ("accept-language", "de"),
        ("accept", "application/json"),
        ("x-note", b"caf\xe9"),
        ("x-surrogate", b"\xed\xa0\x80"),
    ),
    session_id=b"s\xff1",
)
RESPONSE = dict(
    status=200,
    headers=(
        ("content-type", "text/plain"),
        ("vary", "Accept-Language"),
        ("x-note", b"caf\xe9"),
        ("cache-control", "max-age=60"),
        ("x-note", "two"),
    ),
    body=b"hello \x00\xff",
)
TIMES = dict(request_time_ms=1_700_000_000_000, response_time_ms=1_700_000_000_250)
RETAIN_SECONDS = 660


def _envelope(span: str) -> Envelope:
    return Envelope(span_id=SPAN_IDS[span], **ENVELOPE)


def _request_json(request: Request) -> dict:
    return {
        "method": request.method,
        "scheme": request.scheme,
        "authority_hex": _hex(request.authority),
        "path_hex": _hex(request.path),
        "headers": _pairs(request.headers),
        "body_hex": request.body.hex(),
        "direction": request.direction,
        "session_id_hex": _hex(request.session_id),
        "key": request.key,
    }


def _entry_json(entry: Entry) -> dict:
    return {
        "key": entry.key,
        "variant": entry.variant,
        "status": entry.status,
        "request_time_ms": entry.request_time_ms,
        "response_time_ms": entry.response_time_ms,
        "headers": _pairs(entry.headers),
        "body_hex": entry.body.hex(),
        "signature": entry.signature,
    }


def _candidates() -> list[tuple[str, Request, Entry]]:
    """The stored entry, another variant of the same URI, and an entry planted straight through
    the backend API: a CR/LF header, signed with a key that is not the filter's."""
    stored = signed_entry(REQUEST, **RESPONSE, signing_key=SIGNING_KEY, **TIMES)
    fr_request = Request(**{**REQUEST.__dict__, "headers": (("accept-language", "fr"),)})
    fr = signed_entry(
        fr_request, 203, (("vary", "accept-language"), ("content-length", "0")), b"",
        SIGNING_KEY, request_time_ms=1_700_000_001_000, response_time_ms=1_700_000_001_100,
    )
    planted = signed_entry(
        REQUEST, 200, (("x-a", "a\r\nSet-Cookie: session=attacker"),), b"owned",
        OTHER_KEY, request_time_ms=1, response_time_ms=2,
    )
    return [("store", REQUEST, stored), ("variant_fr", fr_request, fr), ("planted", REQUEST, planted)]


def _decoded_candidates(answer: bytes) -> list[dict]:
    """Each span of ``answer`` read back with opentelemetry-proto, as the filter should read it."""
    out = []
    spans = TracesData.FromString(answer).resource_spans[0].scope_spans[0].spans
    for span in spans:
        attrs = {kv.key: kv.value for kv in span.attributes}
        headers = []
        for key, value in attrs.items():
            if key.startswith("http.response.header."):
                for item in value.array_value.values:
                    raw = item.bytes_value if item.WhichOneof("value") == "bytes_value" else item.string_value.encode()
                    headers.append((key.removeprefix("http.response.header."), raw))
        entry = Entry(
            key=attrs["sp.cache.key"].string_value,
            variant=attrs["sp.cache.variant"].string_value,
            status=attrs["http.response.status_code"].int_value,
            request_time_ms=attrs["sp.cache.request_time_ms"].int_value,
            response_time_ms=attrs["sp.cache.response_time_ms"].int_value,
            headers=tuple(headers),
            body=attrs["http.response.body"].bytes_value if "http.response.body" in attrs else b"",
            signature=attrs["sp.cache.signature"].string_value,
        )
        record = _entry_json(entry)
        record["verifies"] = entry.expected_signature(SIGNING_KEY) == entry.signature
        record["violation"] = replay_violation(entry.status, entry.headers, entry.body)
        out.append(record)
    return out


VARIANTS = [
    # name, Vary names as a response lists them, request headers
    ("no_vary_is_empty", [], [("accept", "a")]),
    ("single_present", ["Accept"], [("accept", "text/html")]),
    ("absent_header", ["accept"], [("x", "y")]),
    ("empty_value_is_not_absent", ["accept"], [("accept", "")]),
    ("lines_joined", ["accept"], [("accept", "a"), ("x", "y"), ("Accept", "b")]),
    ("same_as_lines_joined", ["accept"], [("accept", "a,b")]),
    ("ows_around_commas_removed", ["accept"], [("accept", "a \t, b")]),
    ("ows_at_line_ends_around_separator", ["accept"], [("accept", "a \t"), ("accept", "\t b")]),
    ("ows_not_at_commas_kept", ["accept"], [("accept", " a b ")]),
    ("empty_elements_kept", ["accept"], [("accept", "a, ,b,,")]),
    ("names_sorted_lowered_deduplicated", ["X-B", "accept", "x-b"], [("x-b", "2"), ("accept", "1")]),
    ("non_utf8_value", ["x-note"], [("x-note", b"caf\xe9")]),
]

REPLAYS = [
    # name, status, headers, body
    ("plain", 200, [("content-type", "text/plain")], b""),
    ("obs_text_sp_htab_allowed", 200, [("x-note", b"caf\xe9 \x80\xff\t")], b""),
    ("status_599", 599, [], b""),
    ("status_199", 199, [], b""),
    ("status_100", 100, [], b""),
    ("status_600", 600, [], b""),
    ("crlf_in_value", 200, [("x-a", "a\r\nSet-Cookie: session=attacker\r\n\r\n")], b""),
    ("lf_in_value", 200, [("x-a", "a\nb")], b""),
    ("nul_in_value", 200, [("x-a", b"a\x00b")], b""),
    ("crlf_in_name", 200, [("a\r\nSet-Cookie: x", "1")], b""),
    ("space_in_name", 200, [("x a", "1")], b""),
    ("nul_in_name", 200, [(b"x\x00", "1")], b""),
    ("non_ascii_name", 200, [(b"caf\xc3\xa9", "1")], b""),
    ("empty_name", 200, [("", "1")], b""),
    ("pseudo_header", 200, [(":status", "200")], b""),
    ("hop_by_hop", 200, [("Transfer-Encoding", "chunked")], b""),
    ("content_length_matches", 200, [("content-length", "5")], b"hello"),
    ("content_length_leading_zeros", 200, [("Content-Length", "005")], b"hello"),
    ("content_length_mismatch", 200, [("content-length", "4")], b"hello"),
    ("content_length_list", 200, [("content-length", "5, 5")], b"hello"),
    ("content_length_empty", 200, [("content-length", "")], b""),
    ("first_violation_wins", 200, [("x-a", "a\rb"), ("connection", "close")], b""),
]


def protocol_golden() -> dict:
    candidates = _candidates()
    stored = candidates[0][2]
    spans = {
        "lookup": {"span_id_hex": SPAN_IDS["lookup"].hex()},
        "store": {"span_id_hex": SPAN_IDS["store"].hex(), "retain_seconds": RETAIN_SECONDS,
                  "entry": _entry_json(stored)},
        "invalidate": {"span_id_hex": SPAN_IDS["invalidate"].hex(),
                       "keys": [REQUEST.key, request_fingerprint("GET", "http", "upstream:8080", "/other")]},
    }
    spans["lookup"]["hex"] = traces_data([encode_span(_envelope("lookup"), REQUEST)], _envelope("lookup")).hex()
    spans["store"]["hex"] = traces_data(
        [encode_span(_envelope("store"), REQUEST, entry=stored, retain_seconds=RETAIN_SECONDS)], _envelope("store")
    ).hex()
    spans["invalidate"]["hex"] = traces_data(
        [encode_span(_envelope("invalidate"), REQUEST, invalidate_keys=spans["invalidate"]["keys"])],
        _envelope("invalidate"),
    ).hex()
    answer = traces_data(
        [encode_span(_envelope(name), request, entry=entry, retain_seconds=RETAIN_SECONDS)
         for name, request, entry in candidates],
        _envelope("store"),
    )
    return {
        "spec": "docs/protocol.md",
        "generator": "filter/testdata/make_golden.py (opentelemetry-proto)",
        "signing_key": SIGNING_KEY.decode(),
        "envelope": {
            "service_name": ENVELOPE["service_name"],
            "scope_name": "sp-istio-cache",
            "scope_version": ENVELOPE["scope_version"],
            "trace_id_hex": ENVELOPE["trace_id"].hex(),
            "parent_span_id_hex": ENVELOPE["parent_span_id"].hex(),
            "kind": 3,
            "start_time_unix_nano": ENVELOPE["start_time_unix_nano"],
            "end_time_unix_nano": ENVELOPE["end_time_unix_nano"],
        },
        "request": _request_json(REQUEST),
        "spans": spans,
        "lookup_answer": {"hex": answer.hex(), "candidates": _decoded_candidates(answer)},
        "variant_vectors": [
            {"name": name, "vary": vary, "names": sorted({n.lower() for n in vary}),
             "request_headers": _pairs(headers), "variant": variant_hash(vary, headers)}
            for name, vary, headers in VARIANTS
        ],
        "replay_vectors": [
            {"name": name, "status": status,
             "headers_hex": [[_hex(n), _hex(v)] for n, v in headers], "body_hex": body.hex(),
             "violation": replay_violation(status, headers, body)}
            for name, status, headers, body in REPLAYS
        ],
    }


def render() -> dict[str, str]:
    """File name -> exact text of every golden file."""
    return {
        "fingerprint_vectors.json": json.dumps(fingerprint_vectors(), indent=1) + "\n",
        "protocol_golden.json": json.dumps(protocol_golden(), indent=1) + "\n",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    for name in stale:
        print(f"{HERE / name} is out of date: run python {Path(__file__).name}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
