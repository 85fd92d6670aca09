"""sp_istio_cache.entry: variant hash, entry signature, replay checks and span building, against
the golden file shared with the Zig filter and with hypothesis."""

from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from sp_istio_cache.entry import (
    HOP_BY_HOP,
    Entry,
    Envelope,
    Request,
    encode_span,
    entry_signature,
    group_headers,
    replay_violation,
    signed_entry,
    span_name,
    store_body,
    traces_data,
    variant_hash,
    vary_names,
)
from sp_istio_cache.paths import FILTER_DIR

GOLDEN = json.loads((FILTER_DIR / "testdata" / "protocol_golden.json").read_text())
KEY = GOLDEN["signing_key"].encode()


def _pairs(items, name_hex=False):
    return [(bytes.fromhex(n) if name_hex else n, bytes.fromhex(v)) for n, v in items]


# ------------------------------------------------------------------------- golden vectors


@pytest.mark.parametrize("vector", GOLDEN["variant_vectors"], ids=[v["name"] for v in GOLDEN["variant_vectors"]])
def test_variant_vector(vector):
    headers = _pairs(vector["request_headers"])
    assert variant_hash(vector["vary"], headers) == vector["variant"]
    assert variant_hash(vector["names"], headers) == vector["variant"]
    assert vector["names"] == sorted({n.lower() for n in vector["vary"]})


def test_variant_vectors_show_the_rules():
    v = {x["name"]: x["variant"] for x in GOLDEN["variant_vectors"]}
    assert v["no_vary_is_empty"] == ""
    assert v["lines_joined"] == v["same_as_lines_joined"] == v["ows_around_commas_removed"]
    assert v["ows_at_line_ends_around_separator"] == v["same_as_lines_joined"]
    assert v["empty_value_is_not_absent"] != v["absent_header"]
    assert len({x for x in v.values()}) == len(v) - 3


@pytest.mark.parametrize("vector", GOLDEN["replay_vectors"], ids=[v["name"] for v in GOLDEN["replay_vectors"]])
def test_replay_vector(vector):
    headers = _pairs(vector["headers_hex"], name_hex=True)
    assert replay_violation(vector["status"], headers, bytes.fromhex(vector["body_hex"])) == vector["violation"]


def test_golden_candidates_signatures_and_violations():
    candidates = GOLDEN["lookup_answer"]["candidates"]
    assert [c["verifies"] for c in candidates] == [True, True, False]
    assert [c["violation"] for c in candidates] == [None, None, "bad_header_value"]
    for c in candidates:
        headers = _pairs(c["headers"])
        signature = entry_signature(c["key"], KEY, c["variant"], c["status"], c["request_time_ms"],
                                    c["response_time_ms"], headers, bytes.fromhex(c["body_hex"]))
        assert (signature == c["signature"]) is c["verifies"]
    # both variants of one key: same key, distinct variants
    assert candidates[0]["key"] == candidates[1]["key"] == GOLDEN["request"]["key"]
    assert candidates[0]["variant"] != candidates[1]["variant"]


def test_golden_store_span_carries_non_utf8_values_as_bytes():
    data = TracesData.FromString(bytes.fromhex(GOLDEN["spans"]["store"]["hex"]))
    span = data.resource_spans[0].scope_spans[0].spans[0]
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert span.name == "/caf%E9?q=1"
    assert attrs["url.path"].bytes_value == b"/caf\xe9?q=1"
    assert attrs["sp.session.id"].bytes_value == b"s\xff1"
    notes = attrs["http.response.header.x-note"].array_value.values
    assert [n.WhichOneof("value") for n in notes] == ["bytes_value", "string_value"]
    assert notes[0].bytes_value == b"caf\xe9"
    surrogate = attrs["http.request.header.x-surrogate"].array_value.values[0]
    assert surrogate.bytes_value == b"\xed\xa0\x80"  # UTF-8 forbids encoded surrogates
    accept = attrs["http.request.header.accept"].array_value.values
    assert [a.string_value for a in accept] == ["text/html", "application/json"]
    assert attrs["sp.cache.signature"].string_value == GOLDEN["spans"]["store"]["entry"]["signature"]
    assert span.span_id.hex() == GOLDEN["spans"]["store"]["span_id_hex"]
    ids = {GOLDEN["spans"][k]["span_id_hex"] for k in ("lookup", "store", "invalidate")}
    assert len(ids) == 3


# ------------------------------------------------------------------------------ variant hash

# no quote: a quote opens a quoted string, and commas in it do not split
values = st.binary(max_size=12).filter(lambda b: not any(c in b for c in (b",", b" ", b"\t", b"\"")))
ows = st.sampled_from([b"", b" ", b"\t", b" \t "])


@given(items=st.lists(values, min_size=1, max_size=4), pads=st.lists(ows, min_size=8, max_size=8))
def test_variant_ignores_line_splits_and_ows_around_commas(items, pads):
    joined = variant_hash(["a"], [("a", b",".join(items))])
    padded = items[0]
    for i, item in enumerate(items[1:]):
        padded += pads[(2 * i) % 8] + b"," + pads[(2 * i + 1) % 8] + item
    assert joined == variant_hash(["a"], [("A", b" , ".join(items))])
    assert joined == variant_hash(["a"], [("a", item) for item in items])
    assert joined == variant_hash(["a"], [("a", padded)])
    assert joined != variant_hash(["a"], [("b", b",".join(items))])


@given(names=st.lists(st.sampled_from(["accept", "Accept-Language", "x-b", "X-B"]), max_size=5),
       value=st.binary(max_size=8))
def test_variant_names_order_case_and_duplicates_do_not_matter(names, value):
    headers = [(n.lower(), value) for n in names]
    assert variant_hash(names, headers) == variant_hash(list(reversed(names)) + names, headers)
    assert variant_hash(names, headers) == variant_hash([n.upper() for n in names], headers)


def test_vary_star_and_parsing():
    assert vary_names([("Vary", "Accept-Encoding, accept"), ("vary", " X-B ,,")]) == ["accept", "accept-encoding",
                                                                                     "x-b"]
    assert vary_names([("content-type", "a")]) == []
    with pytest.raises(ValueError, match="Vary: \\*"):
        vary_names([("vary", "accept, *")])
    with pytest.raises(ValueError):
        variant_hash(["*"], [])


# ---------------------------------------------------------------------------- signature

header_names = st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=8)
header_lists = st.lists(st.tuples(header_names, st.binary(max_size=8)), max_size=5)
u64 = st.integers(min_value=0, max_value=2**63 - 1)


@given(status=st.integers(200, 599), t1=u64, t2=u64, headers=header_lists, body=st.binary(max_size=32),
       which=st.sampled_from(["key", "variant", "status", "t1", "t2", "body", "header"]))
def test_signature_covers_every_field(status, t1, t2, headers, body, which):
    base = dict(key="k" * 64, variant="", status=status, request_time_ms=t1, response_time_ms=t2,
                headers=headers, body=body)
    changed = dict(base)
    if which == "key":
        changed["key"] = "j" * 64
    elif which == "variant":
        changed["variant"] = "v" * 64
    elif which == "status":
        changed["status"] = status + 1
    elif which in ("t1", "t2"):
        name = "request_time_ms" if which == "t1" else "response_time_ms"
        changed[name] = base[name] ^ 1
    elif which == "body":
        changed["body"] = body + b"x"
    else:
        changed["headers"] = headers + [("x", b"")]

    def sign(fields):
        return entry_signature(fields["key"], KEY, fields["variant"], fields["status"], fields["request_time_ms"],
                               fields["response_time_ms"], fields["headers"], fields["body"])

    assert sign(base) != sign(changed)
    assert re.fullmatch("[0-9a-f]{64}", sign(base))
    upper = dict(base, headers=[(n.upper(), v) for n, v in headers])
    assert sign(upper) == sign(base)  # names are signed lower-cased


def test_signature_refuses_negative_numbers():
    with pytest.raises(OverflowError):
        entry_signature("k", KEY, "", -1, 0, 0, [], b"")


# ---------------------------------------------------------------------------- replay checks

token = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=10)
safe_value = st.binary(max_size=16).filter(lambda b: not set(b) & {0, 10, 13})


@given(headers=st.lists(st.tuples(token, safe_value), max_size=6), status=st.integers(200, 599))
def test_clean_entries_pass(headers, status):
    headers = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP | {"content-length"}]
    assert replay_violation(status, headers, b"") is None


@given(before=st.binary(max_size=6), after=st.binary(max_size=6), bad=st.sampled_from([b"\r", b"\n", b"\x00"]),
       name=token)
def test_cr_lf_nul_in_a_value_or_name_is_refused(before, after, bad, name):
    value = before + bad + after
    assert replay_violation(200, [("x-ok", b"1"), ("x-a", value)], b"") == "bad_header_value"
    assert replay_violation(200, [(name.encode() + bad, b"1")], b"") == "bad_header_name"


@given(status=st.one_of(st.integers(-5, 199), st.integers(600, 70000)))
def test_status_outside_200_599_is_refused(status):
    assert replay_violation(status, [], b"") == "bad_status"


# ------------------------------------------------------------------------------ spans


@given(headers=st.lists(st.tuples(st.sampled_from(["a", "B", "b", "c"]), st.binary(max_size=3)), max_size=8))
def test_group_headers_is_a_stable_grouping(headers):
    grouped = group_headers(headers)
    assert sorted(grouped) == sorted(headers)
    names = [n.lower() for n, _ in grouped]
    runs = [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]
    assert len(runs) == len(set(runs))  # each name in one run
    for name in set(names):
        assert [v for n, v in grouped if n.lower() == name] == [v for n, v in headers if n.lower() == name]


@given(path=st.binary(max_size=24), values=st.lists(st.binary(max_size=12), min_size=1, max_size=4),
       body=st.binary(max_size=24), session=st.binary(max_size=6))
def test_no_byte_sequence_breaks_the_protobuf(path, values, body, session):
    request = Request("GET", "http", b"h\xff", path, headers=[("x-v", v) for v in values], session_id=session)
    entry = signed_entry(request, 200, [("x-r", v) for v in values], body, KEY, request_time_ms=1, response_time_ms=2)
    data = store_body(Envelope(), request, entry, retain_seconds=60)
    span = TracesData.FromString(data).resource_spans[0].scope_spans[0].spans[0]
    attrs = {kv.key: kv.value for kv in span.attributes}

    def raw(v):
        return v.bytes_value if v.WhichOneof("value") == "bytes_value" else v.string_value.encode()

    assert raw(attrs["url.path"]) == path
    assert raw(attrs["sp.session.id"]) == session
    assert [raw(v) for v in attrs["http.response.header.x-r"].array_value.values] == values
    assert attrs["http.response.body"].bytes_value == body if body else "http.response.body" not in attrs
    assert span.name == span_name(path)
    try:
        assert span.name == path.decode("utf-8")
    except UnicodeDecodeError:
        assert all(0x20 <= ord(c) <= 0x7E for c in span.name)


def test_span_name_percent_encodes_non_utf8_paths_only():
    assert span_name("/caf\u00e9") == "/caf\u00e9"
    assert span_name(b"/caf\xe9 x\x01") == "/caf%E9 x%01"


def test_signed_entry_takes_key_variant_and_grouping_from_request_and_response():
    request = Request("GET", "http", "h", "/x", headers=[("accept-language", "de")])
    entry = signed_entry(request, 200, [("vary", "Accept-Language"), ("x", "1"), ("y", "2"), ("X", "3")], b"b", KEY,
                         request_time_ms=5, response_time_ms=6)
    assert entry.key == request.key
    assert entry.variant == variant_hash(["accept-language"], [("accept-language", "de")])
    assert [n for n, _ in entry.headers] == ["vary", "x", "X", "y"]
    assert entry.signature == entry.expected_signature(KEY) != entry.expected_signature(b"other" * 8)


def test_encode_span_refuses_inconsistent_calls():
    request = Request("GET", "http", "h", "/x")
    unsigned = Entry(key=request.key, variant="", status=200, request_time_ms=1, response_time_ms=2)
    with pytest.raises(ValueError, match="not signed"):
        encode_span(Envelope(), request, entry=unsigned)
    with pytest.raises(ValueError, match="not the request's key"):
        encode_span(Envelope(), request, entry=Entry(key="x", variant="", status=200, request_time_ms=1,
                                                      response_time_ms=2, signature="0" * 64))
    with pytest.raises(ValueError, match="not both"):
        encode_span(Envelope(), request, entry=unsigned.signed(KEY), invalidate_keys=[])


def test_lookup_answer_holds_every_variant_span_in_order():
    request = Request("GET", "http", "h", "/x")
    env = Envelope()
    entries = [signed_entry(Request("GET", "http", "h", "/x", headers=[("a", str(i))]), 200, [("vary", "a")], b"",
                            KEY, request_time_ms=i, response_time_ms=i) for i in range(3)]
    data = traces_data([encode_span(env, request, entry=e, retain_seconds=1) for e in entries], env)
    spans = TracesData.FromString(data).resource_spans[0].scope_spans[0].spans
    variants = [next(kv.value.string_value for kv in s.attributes if kv.key == "sp.cache.variant") for s in spans]
    assert variants == [e.variant for e in entries] and len(set(variants)) == 3


def test_golden_files_are_what_the_generator_writes():
    """filter/testdata/*.json are regenerated from this package; a drift means a contract change
    that was not re-pinned (run ``python filter/testdata/make_golden.py``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_golden", FILTER_DIR / "testdata" / "make_golden.py")
    make_golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_golden)
    for name, text in make_golden.render().items():
        assert (FILTER_DIR / "testdata" / name).read_text() == text, name
    assert make_golden.main(["--check"]) == 0
