"""Traffic profiles offline: the file formats, the checked-in JSON Schema, the importers (Envoy
access log lines, HAR, a SQLite database of OTLP spans), and module identity refusals."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import jsonschema
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, TracesData
from typer.testing import CliRunner

from sp_istio_cache.bench.identity import ModuleIdentityError, verify_module
from sp_istio_cache.bench.profile import (
    SCHEMA_FILE,
    ProfileError,
    json_schema,
    load_profile,
    profile_requests,
    write_profile,
)
from sp_istio_cache.bench.profile_import import import_profile
from sp_istio_cache.cli import app


def test_csv_yaml_and_json_profiles_load_to_the_same_rows(tmp_path):
    (tmp_path / "shop.csv").write_text("method,path,response_body_bytes,weight,request_body_bytes\n"
                                      "get,/items?page=1,2048,30,\nPOST,/cart,512,5,300\n")
    csv_profile = load_profile(tmp_path / "shop.csv")
    assert csv_profile.name == "shop"
    assert [(r.method, r.path, r.request_body_bytes, r.response_body_bytes, r.weight) for r in csv_profile.rows] == \
        [("GET", "/items?page=1", 0, 2048, 30.0), ("POST", "/cart", 300, 512, 5.0)]
    for suffix in (".yaml", ".json", ".csv"):
        again = load_profile(write_profile(csv_profile, tmp_path / f"copy{suffix}"))
        assert again.rows == csv_profile.rows
    jsonschema.validate(json.loads((tmp_path / "copy.json").read_text()), json_schema())
    assert csv_profile.floor_body_bytes() == 2048  # weighted median of the response sizes


def test_the_checked_in_schema_is_the_model_s():
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema()


@pytest.mark.parametrize("text,message", [
    ("method,path,weight\nGET,/a,0\n", "row 1: weight: Input should be greater than 0"),
    ("method,path\nGET,no-slash\n", "row 1: path: 'no-slash': a path starts with '/'"),
    ("method,path\nGET,/a\nget,/a\n", "rows 1 and 2 are the same request"),
    ("verb,path\nGET,/a\n", "needs method and path"),
])
def test_bad_profile_rows_name_the_file_and_row(tmp_path, text, message):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_requests_against_the_test_upstream_keep_sizes_methods_and_freshness():
    profile = load_profile_from_rows([{"method": "PUT", "path": "/x", "request_body_bytes": 10,
                                       "response_body_bytes": 99, "cache_control": "max-age=5", "weight": 2}])
    assert profile_requests(profile, external=False, cache_control="max-age=600", delay_ms=20) == [
        {"method": "PUT", "path": "/bytes/99?seed=1&cache_control=max-age%3D5&delay_ms=20&k=row-0",
         "body_bytes": 10, "weight": 2.0}]
    assert profile_requests(profile, external=True, cache_control="max-age=600", delay_ms=0)[0]["path"] == "/x"


def load_profile_from_rows(rows):
    from sp_istio_cache.bench.profile import TrafficProfile

    return TrafficProfile(name="t", rows=rows)


def test_envoy_log_text_istio_text_and_json_lines(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(
        '[2026-12-02T08:09:31.415Z] "GET /a?x=1 HTTP/1.1" 200 - 0 300 2 1 "-" "ua" "id" "host" "127.0.0.1:1"\n'
        '[2026-12-02T08:09:31.416Z] "GET /a?x=1 HTTP/1.1" 200 - 0 500 2 1 "-" "ua" "id" "host" "127.0.0.1:1"\n'
        '[2026-12-02T08:09:31.417Z] "POST /b HTTP/1.1" 201 - via_upstream - "-" 7 20 3 2 "-" "ua" "id" "h" "u"\n'
        '{"method": "GET", "path": "/a?x=1", "bytes_received": 0, "bytes_sent": 400, "response_code": 200}\n')
    profile = import_profile(log, name="t")
    assert [(r.method, r.path, r.request_body_bytes, r.response_body_bytes, r.status, r.weight) for r in profile.rows] \
        == [("GET", "/a?x=1", 0, 400, 200, 3.0), ("POST", "/b", 7, 20, 201, 1.0)]
    log.write_text("not a log line\n")
    with pytest.raises(ProfileError, match=f"{log}:1: not Envoy's default access log format"):
        import_profile(log)


def test_har_entries(tmp_path):
    har = tmp_path / "s.har"
    entry = {"request": {"method": "GET", "url": "https://shop.example/items?page=2", "bodySize": 0},
             "response": {"status": 200, "bodySize": 1500, "content": {"size": 4000},
                          "headers": [{"name": "Cache-Control", "value": "max-age=60"}]}}
    post = {"request": {"method": "POST", "url": "https://shop.example/cart", "bodySize": -1,
                        "postData": {"text": "abcd"}},
            "response": {"status": 200, "bodySize": -1, "content": {"size": 12}, "headers": []}}
    har.write_text(json.dumps({"log": {"entries": [entry, entry, post]}}))
    rows = import_profile(har, name="shop").rows
    assert [(r.method, r.path, r.request_body_bytes, r.response_body_bytes, r.cache_control, r.weight)
            for r in rows] == [("GET", "/items?page=2", 0, 1500, "max-age=60", 2.0),
                               ("POST", "/cart", 4, 12, None, 1.0)]


def _span(method: str, path: str, body: bytes, cc: bytes) -> Span:
    def kv(key, **value):
        return KeyValue(key=key, value=AnyValue(**value))
    return Span(name=path, attributes=[
        kv("http.request.method", string_value=method), kv("url.path", bytes_value=path.encode()),
        kv("server.address", string_value="shop"), kv("http.response.status_code", int_value=200),
        kv("http.response.body", bytes_value=body),
        kv("http.response.header.cache-control", array_value=ArrayValue(values=[AnyValue(bytes_value=cc)]))])


def test_backend_spans_are_read_from_any_blob_column_read_only(tmp_path):
    """A stand-in database with the layout of a span store (the backend's own layout is its
    helper's): spans as TracesData blobs, one per row, plus a non-span blob column."""
    db = tmp_path / "cache.sqlite3"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE spans (key TEXT, span BLOB, other BLOB)")
    for method, path, body in (("GET", "/a", b"x" * 100), ("GET", "/a", b"x" * 300), ("GET", "/b", b"y" * 7)):
        traces = TracesData(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(
            spans=[_span(method, path, body, b"max-age=60")])])])
        con.execute("INSERT INTO spans VALUES (?, ?, ?)", ("k", traces.SerializeToString(), b"\x00\xff"))
    con.commit()
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    rows = import_profile(db, name="store").rows
    assert [(r.method, r.path, r.response_body_bytes, r.cache_control, r.weight) for r in rows] == \
        [("GET", "/a", 100, "max-age=60", 2.0), ("GET", "/b", 7, "max-age=60", 1.0)]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    empty = tmp_path / "empty.db"
    con = sqlite3.connect(empty)
    con.execute("CREATE TABLE entries (key TEXT, body BLOB)")
    con.execute("INSERT INTO entries VALUES ('k', x'00')")
    con.commit()
    con.close()
    with pytest.raises(ProfileError, match=r"no stored span carries http.request.method and url.path \(tables: "
                                           r"entries\(key, body\)\)"):
        import_profile(empty)


def test_the_bench_refuses_a_module_that_is_not_the_one_built(tmp_path):
    wasm = tmp_path / "m.wasm"
    wasm.write_bytes(b"\0asm\x01\0\0\0")
    good = hashlib.sha256(wasm.read_bytes()).hexdigest()
    (tmp_path / "m.wasm.sha256").write_text(f"{good}  m.wasm\n")
    assert verify_module(wasm) == good
    wasm.write_bytes(b"\0asm\x01\0\0\0tampered")
    bad = hashlib.sha256(wasm.read_bytes()).hexdigest()
    with pytest.raises(ModuleIdentityError) as info:
        verify_module(wasm)
    assert str(info.value) == (f"{wasm}: sha256 {bad} differs from its build record {tmp_path / 'm.wasm.sha256'} "
                               f"({good}); refusing to benchmark a module that is not the one built")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["bench", "--variants", "filter", "--wasm", str(wasm), "--out", str(out)],
                                terminal_width=400)
    assert result.exit_code == 2 and f"sha256 {bad} differs" in result.output and good in result.output
    assert not out.exists()
    (tmp_path / "m.wasm.sha256").unlink()
    with pytest.raises(ModuleIdentityError, match="no build record"):
        verify_module(wasm)
