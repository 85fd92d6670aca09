//! The filter ↔ backend wire format of docs/protocol.md (protocol version 2): every attribute
//! name, and the encoder of the one span of a lookup, store or invalidate call, as an OTLP
//! `TracesData`. The decoder of lookup answers is `lookup_answer.zig` (re-exported here). No
//! other file spells an attribute key.
const std = @import("std");
const pb = @import("protobuf.zig");
const entry = @import("entry.zig");
const lookup_answer = @import("lookup_answer.zig");

const Pair = entry.Pair;
const Entry = entry.Entry;

/// Every attribute key of docs/protocol.md ("Attributes"), and the resource attribute.
pub const attr = struct {
    /// `inject`, `extract` or `invalidate` (`SpanType`)
    pub const span_type = "sp.span.type";
    /// request method as sent
    pub const method = "http.request.method";
    /// `:scheme`
    pub const scheme = "url.scheme";
    /// `:path` as sent, query included
    pub const path = "url.path";
    /// `:authority` (or `host`) as sent
    pub const authority = "server.address";
    /// prefix of one array attribute per request header name
    pub const request_header_prefix = "http.request.header.";
    /// exact request body bytes
    pub const request_body = "http.request.body";
    /// plugin config `service_name`
    pub const service_name = "sp.service.name";
    /// plugin config `traffic_direction`
    pub const direction = "sp.traffic.direction";
    /// the `x-sp-session-id` request header, else empty
    pub const session_id = "sp.session.id";
    /// the primary cache key (fingerprint) of the request
    pub const cache_key = "sp.cache.key";
    /// response status (int)
    pub const status = "http.response.status_code";
    /// prefix of one array attribute per response header name
    pub const response_header_prefix = "http.response.header.";
    /// exact response body bytes
    pub const response_body = "http.response.body";
    /// variant hash of the stored response ("" without Vary)
    pub const variant = "sp.cache.variant";
    /// Unix ms the request was sent (RFC 9111 §4.2.3 request_time)
    pub const request_time_ms = "sp.cache.request_time_ms";
    /// Unix ms the response was received (RFC 9111 §4.2.3 response_time)
    pub const response_time_ms = "sp.cache.response_time_ms";
    /// seconds the backend keeps the entry
    pub const retain_seconds = "sp.cache.retain_seconds";
    /// keyed BLAKE2b-256 of the entry (entry.zig), 64 lower-case hex
    pub const signature = "sp.cache.signature";
    /// primary keys an invalidate call removes
    pub const invalidate_keys = "sp.cache.invalidate.keys";
    /// Resource attribute: plugin config `service_name`
    pub const resource_service_name = "service.name";
};

/// `sp.span.type` of the three calls; the tag name is the wire value.
pub const SpanType = enum { inject, extract, invalidate };

/// OTLP `Span.SpanKind` values the filter sends.
pub const SpanKind = enum(u32) { server = 2, client = 3 };

/// Decoder of lookup answers (see lookup_answer.zig).
pub const decodeLookupAnswer = lookup_answer.decode;
/// A decoded lookup answer.
pub const Answer = lookup_answer.Answer;
/// One candidate of a lookup answer: an entry, or why it is invalid.
pub const Candidate = lookup_answer.Candidate;
/// Errors that refuse a whole lookup answer.
pub const AnswerError = lookup_answer.Error;

/// Resource, scope, ids and times of a span.
pub const Envelope = struct {
    /// resource `service.name` and `sp.service.name`
    service_name: []const u8,
    scope_name: []const u8 = "sp-istio-cache",
    scope_version: []const u8,
    trace_id: [16]u8,
    /// distinct for every span the filter sends
    span_id: [8]u8,
    parent_span_id: ?[8]u8 = null,
    kind: SpanKind = .client,
    /// nanoseconds since the Unix epoch
    start_time_unix_nano: u64,
    /// nanoseconds since the Unix epoch
    end_time_unix_nano: u64,
};

/// The request half every span carries. Slices are borrowed; any bytes are accepted where the
/// wire allows them (each value goes out as `string_value` when UTF-8, else `bytes_value`).
pub const Request = struct {
    method: []const u8,
    scheme: []const u8,
    /// `:path` exactly as sent
    path: []const u8,
    authority: []const u8,
    /// the headers to send, already filtered (no pseudo, hop-by-hop, `x-envoy-*` or redacted
    /// headers) and grouped (`entry.groupHeaders`); names must be RFC 9110 tokens
    headers: []const Pair = &.{},
    body: []const u8 = "",
    /// plugin config `traffic_direction`
    direction: []const u8,
    session_id: []const u8 = "",
    /// primary cache key, 64 lower-case hex
    key: []const u8,
};

/// What follows the request half, by span type.
pub const Call = union(SpanType) {
    /// a lookup: the request only
    inject,
    /// a store: the signed entry (its `key` equal to the request's, its `signature` set, its
    /// headers grouped, filtered and token-named) and how long the backend keeps it
    extract: struct { entry: *const Entry, retain_seconds: u64 },
    /// an invalidate: the primary keys to remove
    invalidate: []const []const u8,
};

/// Errors of `encode`: a header name that is not a token (BadHeaderName), a header list whose
/// names are not grouped (HeadersNotGrouped), a store whose entry key differs from the request key
/// (KeyMismatch) or carries no 64-character signature (Unsigned).
pub const EncodeError = error{ OutOfMemory, BadHeaderName, HeadersNotGrouped, KeyMismatch, Unsigned };

/// AnyValue of one attribute.
const Value = union(enum) {
    /// always `string_value` (constants, hex)
    string: []const u8,
    int: i64,
    /// always `bytes_value`
    bytes: []const u8,
    /// `string_value` when valid UTF-8, else `bytes_value`
    wire: []const u8,
    /// one header name's run of values, each item as `.wire`
    run: []const Pair,
    /// array of `string_value`
    strings: []const []const u8,
};

/// One attribute; the key is `prefix ++ lower(name)` for headers, `key` otherwise.
const Attr = struct {
    prefix: []const u8 = "",
    key: []const u8,
    value: Value,
};

fn wireKind(b: []const u8) u32 {
    return if (std.unicode.utf8ValidateSlice(b)) 1 else 7; // string_value, bytes_value
}

fn anyValueSize(v: Value) usize {
    return switch (v) {
        .string, .bytes, .wire => |s| pb.lenField(s.len),
        .int => |i| 1 + pb.varintSize(@bitCast(i)),
        .run => |ps| pb.lenField(runSize(ps)),
        .strings => |ss| pb.lenField(stringsSize(ss)),
    };
}

fn runSize(ps: []const Pair) usize {
    var n: usize = 0;
    for (ps) |p| n += pb.lenField(pb.lenField(p.value.len));
    return n;
}

fn stringsSize(ss: []const []const u8) usize {
    var n: usize = 0;
    for (ss) |s| n += pb.lenField(pb.lenField(s.len));
    return n;
}

fn keyValueSize(a: Attr) usize {
    return pb.lenField(a.prefix.len + a.key.len) + pb.lenField(anyValueSize(a.value));
}

fn writeAnyValue(w: *pb.Writer, v: Value) void {
    switch (v) {
        .string => |s| w.bytes(1, s),
        .bytes => |s| w.bytes(7, s),
        .wire => |s| w.bytes(wireKind(s), s),
        .int => |i| w.varintField(3, @bitCast(i)),
        .run => |ps| {
            w.header(5, runSize(ps));
            for (ps) |p| {
                w.header(1, pb.lenField(p.value.len));
                w.bytes(wireKind(p.value), p.value);
            }
        },
        .strings => |ss| {
            w.header(5, stringsSize(ss));
            for (ss) |s| {
                w.header(1, pb.lenField(s.len));
                w.bytes(1, s);
            }
        },
    }
}

fn writeKeyValue(w: *pb.Writer, field: u32, a: Attr) void {
    w.header(field, keyValueSize(a));
    w.header(1, a.prefix.len + a.key.len);
    w.raw(a.prefix);
    w.rawLower(a.key);
    w.header(2, anyValueSize(a.value));
    writeAnyValue(w, a.value);
}

fn isPrintableAscii(c: u8) bool {
    return c >= 0x20 and c <= 0x7e;
}

/// Span name: the path, or when it is not UTF-8, the path with every byte outside printable ASCII
/// percent-encoded (upper-case hex, RFC 3986 §2.1).
fn nameSize(path: []const u8) usize {
    if (std.unicode.utf8ValidateSlice(path)) return path.len;
    var n: usize = 0;
    for (path) |c| n += if (isPrintableAscii(c)) 1 else 3;
    return n;
}

fn writeName(w: *pb.Writer, path: []const u8) void {
    const n = nameSize(path);
    if (n == 0) return; // proto3 leaves an empty string out
    w.header(5, n);
    if (n == path.len) return w.raw(path);
    for (path) |c| {
        if (isPrintableAscii(c)) {
            w.raw(&.{c});
        } else {
            const hex = "0123456789ABCDEF";
            w.raw(&.{ '%', hex[c >> 4], hex[c & 15] });
        }
    }
}

fn spanSize(env: *const Envelope, path: []const u8, attrs: []const Attr) usize {
    var n: usize = pb.lenField(16) + pb.lenField(8);
    if (env.parent_span_id != null) n += pb.lenField(8);
    const name = nameSize(path);
    if (name > 0) n += pb.lenField(name);
    n += 1 + pb.varintSize(@backingInt(env.kind));
    if (env.start_time_unix_nano != 0) n += 9;
    if (env.end_time_unix_nano != 0) n += 9;
    for (attrs) |a| n += pb.lenField(keyValueSize(a));
    return n;
}

fn optionalStringSize(s: []const u8) usize {
    return if (s.len == 0) 0 else pb.lenField(s.len);
}

fn scopeSize(env: *const Envelope) usize {
    return optionalStringSize(env.scope_name) + optionalStringSize(env.scope_version);
}

fn resourceAttr(env: *const Envelope) Attr {
    return .{ .key = attr.resource_service_name, .value = .{ .wire = env.service_name } };
}

/// Appends one `.run` attribute per run of equal (ASCII case-insensitive) names; refuses names
/// that are not tokens and names that come back after their run ended.
fn appendHeaderRuns(gpa: std.mem.Allocator, attrs: *std.ArrayList(Attr), prefix: []const u8, pairs: []const Pair) EncodeError!void {
    var seen: entry.NameSet = .empty;
    defer seen.deinit(gpa);
    var i: usize = 0;
    while (i < pairs.len) {
        const name = pairs[i].name;
        if (!entry.isToken(name)) return error.BadHeaderName;
        var end = i + 1;
        while (end < pairs.len and std.ascii.eqlIgnoreCase(pairs[end].name, name)) end += 1;
        if ((try seen.getOrPut(gpa, name)).found_existing) return error.HeadersNotGrouped;
        try attrs.append(gpa, .{ .prefix = prefix, .key = name, .value = .{ .run = pairs[i..end] } });
        i = end;
    }
}

/// The attributes of a span, in the order docs/protocol.md lists them (the golden bytes of
/// filter/testdata/protocol_golden.json pin that order).
fn buildAttrs(gpa: std.mem.Allocator, env: *const Envelope, req: *const Request, call: Call, attrs: *std.ArrayList(Attr)) EncodeError!void {
    try attrs.appendSlice(gpa, &.{
        .{ .key = attr.span_type, .value = .{ .string = @tagName(call) } },
        .{ .key = attr.method, .value = .{ .wire = req.method } },
        .{ .key = attr.scheme, .value = .{ .wire = req.scheme } },
        .{ .key = attr.path, .value = .{ .wire = req.path } },
        .{ .key = attr.authority, .value = .{ .wire = req.authority } },
    });
    try appendHeaderRuns(gpa, attrs, attr.request_header_prefix, req.headers);
    if (req.body.len > 0) try attrs.append(gpa, .{ .key = attr.request_body, .value = .{ .bytes = req.body } });
    try attrs.appendSlice(gpa, &.{
        .{ .key = attr.service_name, .value = .{ .wire = env.service_name } },
        .{ .key = attr.direction, .value = .{ .wire = req.direction } },
        .{ .key = attr.session_id, .value = .{ .wire = req.session_id } },
        .{ .key = attr.cache_key, .value = .{ .wire = req.key } },
    });
    switch (call) {
        .inject => {},
        .extract => |s| {
            const e = s.entry;
            if (!std.mem.eql(u8, e.key, req.key)) return error.KeyMismatch;
            if (e.signature.len != 64) return error.Unsigned;
            try attrs.append(gpa, .{ .key = attr.status, .value = .{ .int = e.status } });
            try appendHeaderRuns(gpa, attrs, attr.response_header_prefix, e.headers);
            if (e.body.len > 0) try attrs.append(gpa, .{ .key = attr.response_body, .value = .{ .bytes = e.body } });
            try attrs.appendSlice(gpa, &.{
                .{ .key = attr.variant, .value = .{ .wire = e.variant } },
                .{ .key = attr.request_time_ms, .value = .{ .int = @bitCast(e.request_time_ms) } },
                .{ .key = attr.response_time_ms, .value = .{ .int = @bitCast(e.response_time_ms) } },
                .{ .key = attr.retain_seconds, .value = .{ .int = @bitCast(s.retain_seconds) } },
                .{ .key = attr.signature, .value = .{ .wire = e.signature } },
            });
        },
        .invalidate => |keys| try attrs.append(gpa, .{ .key = attr.invalidate_keys, .value = .{ .strings = keys } }),
    }
}

/// Encodes one span as a `TracesData` (one ResourceSpans → one ScopeSpans → the span), sized
/// first and written once. Fields equal to their proto3 default are left out, as the reference
/// encoder does. The caller frees the result with `gpa`.
pub fn encode(gpa: std.mem.Allocator, env: *const Envelope, req: *const Request, call: Call) EncodeError![]u8 {
    var attrs: std.ArrayList(Attr) = .empty;
    defer attrs.deinit(gpa);
    try buildAttrs(gpa, env, req, call, &attrs);

    const span_size = spanSize(env, req.path, attrs.items);
    const resource_size = pb.lenField(keyValueSize(resourceAttr(env)));
    const scope_spans_size = pb.lenField(scopeSize(env)) + pb.lenField(span_size);
    const resource_spans_size = pb.lenField(resource_size) + pb.lenField(scope_spans_size);
    const total = pb.lenField(resource_spans_size);

    const buf = try gpa.alloc(u8, total);
    var w: pb.Writer = .{ .buf = buf };
    w.header(1, resource_spans_size); // TracesData.resource_spans
    w.header(1, resource_size); // ResourceSpans.resource
    writeKeyValue(&w, 1, resourceAttr(env)); // Resource.attributes
    w.header(2, scope_spans_size); // ResourceSpans.scope_spans
    w.header(1, scopeSize(env)); // ScopeSpans.scope
    if (env.scope_name.len > 0) w.bytes(1, env.scope_name);
    if (env.scope_version.len > 0) w.bytes(2, env.scope_version);
    w.header(2, span_size); // ScopeSpans.spans
    w.bytes(1, &env.trace_id);
    w.bytes(2, &env.span_id);
    if (env.parent_span_id) |p| w.bytes(4, &p);
    writeName(&w, req.path);
    w.varintField(6, @backingInt(env.kind));
    if (env.start_time_unix_nano != 0) w.fixed64(7, env.start_time_unix_nano);
    if (env.end_time_unix_nano != 0) w.fixed64(8, env.end_time_unix_nano);
    for (attrs.items) |a| writeKeyValue(&w, 9, a);
    std.debug.assert(w.pos == total);
    return buf;
}

/// A store span used by the tests here and in lookup_answer.zig: the request half and a signed
/// entry whose `x-note` value is not UTF-8.
pub const testing = struct {
    /// signing key of the test entries
    pub const signing_key = "0123456789abcdef0123456789abcdef";
    /// envelope of the test spans
    pub const envelope: Envelope = .{
        .service_name = "svc",
        .scope_version = "2.0.0",
        .trace_id = .{ 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 },
        .span_id = .{ 0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 },
        .start_time_unix_nano = 1_700_000_000_000_000_000,
        .end_time_unix_nano = 1_700_000_000_000_500_000,
    };
    /// request half of the test spans
    pub const request: Request = .{
        .method = "GET",
        .scheme = "http",
        .path = "/caf\xe9?q=1",
        .authority = "upstream:8080",
        .headers = &.{ .{ .name = "accept", .value = "a" }, .{ .name = "accept", .value = "b\xff" } },
        .direction = "outbound",
        .key = "5" ++ entry.repeat('0', 63),
    };
    /// response headers of the test entry
    pub const response_headers = [_]Pair{
        .{ .name = "content-type", .value = "text/plain" },
        .{ .name = "x-note", .value = "caf\xe9" },
        .{ .name = "x-note", .value = "two" },
    };

    /// The test entry, signed into `sig`.
    pub fn signedEntry(sig: *entry.Hex) Entry {
        var e: Entry = .{
            .key = request.key,
            .variant = "",
            .status = 200,
            .request_time_ms = 1_700_000_000_000,
            .response_time_ms = 1_700_000_000_250,
            .headers = &response_headers,
            .body = "hello",
        };
        sig.* = entry.signatureHex(signing_key, &e);
        e.signature = sig;
        return e;
    }

    /// The test entry encoded as a store span; caller frees.
    pub fn storeSpan(gpa: std.mem.Allocator) ![]u8 {
        var sig: entry.Hex = undefined;
        const e = signedEntry(&sig);
        return encode(gpa, &envelope, &request, .{ .extract = .{ .entry = &e, .retain_seconds = 600 } });
    }
};

/// Finds `needle` in `hay` (tests).
fn contains(hay: []const u8, needle: []const u8) bool {
    return std.mem.indexOf(u8, hay, needle) != null;
}

test "store span: non-UTF-8 values go as bytes_value, the name is percent-encoded, it decodes back" {
    const gpa = std.testing.allocator;
    const bytes = try testing.storeSpan(gpa);
    defer gpa.free(bytes);
    // span name (field 5) "/caf%E9?q=1"; url.path as bytes_value (field 7 of AnyValue)
    try std.testing.expect(contains(bytes, "\x2a\x0b/caf%E9?q=1"));
    try std.testing.expect(contains(bytes, "\x3a\x09/caf\xe9?q=1"));
    // one array per header name, items chosen per item: "a" as string, "b\xff" as bytes
    try std.testing.expect(contains(bytes, "\x0a\x03\x0a\x01a\x0a\x04\x3a\x02b\xff"));
    try std.testing.expect(contains(bytes, "\x0a\x06\x3a\x04caf\xe9\x0a\x05\x0a\x03two"));

    var answer = try decodeLookupAnswer(gpa, bytes);
    defer answer.deinit(gpa);
    try std.testing.expectEqual(@as(usize, 1), answer.candidates.len);
    const e = answer.candidates[0].entry;
    try std.testing.expect(entry.verify(testing.signing_key, &e));
    var sig: entry.Hex = undefined;
    try entry.expectEqualEntries(&testing.signedEntry(&sig), &e);
}

test "encode refuses what would break the contract" {
    const gpa = std.testing.allocator;
    const env = testing.envelope;
    var req = testing.request;
    req.headers = &.{.{ .name = "a\r\nb", .value = "x" }};
    try std.testing.expectError(error.BadHeaderName, encode(gpa, &env, &req, .inject));
    req.headers = &.{ .{ .name = "a", .value = "1" }, .{ .name = "b", .value = "2" }, .{ .name = "A", .value = "3" } };
    try std.testing.expectError(error.HeadersNotGrouped, encode(gpa, &env, &req, .inject));
    req = testing.request;
    var sig: entry.Hex = undefined;
    var e = testing.signedEntry(&sig);
    e.key = "other";
    try std.testing.expectError(error.KeyMismatch, encode(gpa, &env, &req, .{ .extract = .{ .entry = &e, .retain_seconds = 1 } }));
    e = testing.signedEntry(&sig);
    e.signature = "";
    try std.testing.expectError(error.Unsigned, encode(gpa, &env, &req, .{ .extract = .{ .entry = &e, .retain_seconds = 1 } }));
}

test "lookup and invalidate spans; a lookup span is no candidate" {
    const gpa = std.testing.allocator;
    const lookup = try encode(gpa, &testing.envelope, &testing.request, .inject);
    defer gpa.free(lookup);
    try std.testing.expect(contains(lookup, "\x0a\x0csp.span.type\x12\x08\x0a\x06inject"));
    try std.testing.expect(!contains(lookup, attr.status));
    var answer = try decodeLookupAnswer(gpa, lookup);
    defer answer.deinit(gpa);
    try std.testing.expectEqual(Candidate{ .invalid = .missing_field }, answer.candidates[0]);

    const keys = [_][]const u8{ entry.repeat('1', 64), entry.repeat('2', 64) };
    const inval = try encode(gpa, &testing.envelope, &testing.request, .{ .invalidate = &keys });
    defer gpa.free(inval);
    try std.testing.expect(contains(inval, attr.invalidate_keys));
    try std.testing.expect(contains(inval, "\x0a\x42\x0a\x40" ++ entry.repeat('2', 64)));
}

test "encode is exact for every size of value (varint length boundaries)" {
    const gpa = std.testing.allocator;
    var body: [300]u8 = undefined;
    @memset(&body, 'x');
    for ([_]usize{ 0, 1, 126, 127, 128, 129, 300 }) |n| {
        var req = testing.request;
        req.body = body[0..n];
        req.path = body[0..n];
        const bytes = try encode(gpa, &testing.envelope, &req, .inject); // asserts the size
        gpa.free(bytes);
    }
}
