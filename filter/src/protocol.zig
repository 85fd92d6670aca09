//! The protobuf subset of OTLP `TracesData` the filter speaks (docs/protocol.md):
//! encode one lookup/store span, decode the hit answer. The decoder is total: any byte string
//! yields a value or an error, never a trap.
const std = @import("std");
const Pair = @import("headers.zig").Pair;

/// AnyValue variants the filter sends.
pub const Value = union(enum) {
    string: []const u8,
    int: i64,
    bytes: []const u8,
    /// ArrayValue of string AnyValues
    strings: []const []const u8,
};

/// One span attribute; the key on the wire is `prefix ++ key` (saves allocating header keys).
pub const Attr = struct {
    prefix: []const u8 = "",
    key: []const u8,
    value: Value,
};

/// `SPAN_KIND_CLIENT`.
pub const span_kind_client: u32 = 3;

/// Everything needed to encode a `TracesData` with one ResourceSpans → ScopeSpans → Span.
pub const Span = struct {
    service_name: []const u8,
    scope_name: []const u8 = "sp-istio-cache",
    scope_version: []const u8,
    trace_id: [16]u8,
    span_id: [8]u8,
    parent_span_id: ?[8]u8 = null,
    name: []const u8,
    kind: u32 = span_kind_client,
    /// nanoseconds since the Unix epoch
    start_time_unix_nano: u64,
    /// nanoseconds since the Unix epoch
    end_time_unix_nano: u64,
    attrs: []const Attr,
};

const wt_varint = 0;
const wt_fixed64 = 1;
const wt_len = 2;
const wt_fixed32 = 5;

fn varintSize(v: u64) usize {
    var n: usize = 1;
    var x = v >> 7;
    while (x != 0) : (x >>= 7) n += 1;
    return n;
}

/// Size of a length-delimited field with a one-byte tag.
fn lenField(len: usize) usize {
    return 1 + varintSize(len) + len;
}

fn anyValueSize(v: Value) usize {
    return switch (v) {
        .string => |s| lenField(s.len),
        .bytes => |s| lenField(s.len),
        .int => |i| 1 + varintSize(@bitCast(i)),
        .strings => |ss| lenField(arrayValueSize(ss)),
    };
}

fn arrayValueSize(ss: []const []const u8) usize {
    var n: usize = 0;
    for (ss) |s| n += lenField(lenField(s.len));
    return n;
}

fn keyValueSize(a: Attr) usize {
    return lenField(a.prefix.len + a.key.len) + lenField(anyValueSize(a.value));
}

fn spanSize(s: *const Span) usize {
    var n: usize = lenField(16) + lenField(8) + lenField(s.name.len) + 9 + 9;
    if (s.parent_span_id != null) n += lenField(8);
    if (s.kind != 0) n += 1 + varintSize(s.kind);
    for (s.attrs) |a| n += lenField(keyValueSize(a));
    return n;
}

fn scopeSize(s: *const Span) usize {
    return lenField(s.scope_name.len) + lenField(s.scope_version.len);
}

fn resourceSize(s: *const Span) usize {
    return lenField(keyValueSize(.{ .key = "service.name", .value = .{ .string = s.service_name } }));
}

fn scopeSpansSize(s: *const Span) usize {
    return lenField(scopeSize(s)) + lenField(spanSize(s));
}

fn resourceSpansSize(s: *const Span) usize {
    return lenField(resourceSize(s)) + lenField(scopeSpansSize(s));
}

/// Writes into a buffer sized exactly beforehand.
const Writer = struct {
    buf: []u8,
    pos: usize = 0,

    fn varint(w: *Writer, v: u64) void {
        var x = v;
        while (x >= 0x80) : (x >>= 7) {
            w.buf[w.pos] = @as(u8, @truncate(x)) | 0x80;
            w.pos += 1;
        }
        w.buf[w.pos] = @truncate(x);
        w.pos += 1;
    }

    fn tag(w: *Writer, field: u32, wt: u3) void {
        w.varint((@as(u64, field) << 3) | wt);
    }

    fn raw(w: *Writer, b: []const u8) void {
        @memcpy(w.buf[w.pos..][0..b.len], b);
        w.pos += b.len;
    }

    fn bytes(w: *Writer, field: u32, b: []const u8) void {
        w.header(field, b.len);
        w.raw(b);
    }

    fn header(w: *Writer, field: u32, len: usize) void {
        w.tag(field, wt_len);
        w.varint(len);
    }

    fn fixed64(w: *Writer, field: u32, v: u64) void {
        w.tag(field, wt_fixed64);
        std.mem.writeInt(u64, w.buf[w.pos..][0..8], v, .little);
        w.pos += 8;
    }

    fn anyValue(w: *Writer, v: Value) void {
        switch (v) {
            .string => |s| w.bytes(1, s),
            .bytes => |s| w.bytes(7, s),
            .int => |i| {
                w.tag(3, wt_varint);
                w.varint(@bitCast(i));
            },
            .strings => |ss| {
                w.header(5, arrayValueSize(ss));
                for (ss) |s| {
                    w.header(1, lenField(s.len));
                    w.bytes(1, s);
                }
            },
        }
    }

    fn keyValue(w: *Writer, field: u32, a: Attr) void {
        w.header(field, keyValueSize(a));
        w.header(1, a.prefix.len + a.key.len);
        w.raw(a.prefix);
        w.raw(a.key);
        w.header(2, anyValueSize(a.value));
        w.anyValue(a.value);
    }
};

/// Encodes `span` as an OTLP `TracesData`; the caller frees the result with `gpa`.
pub fn encode(gpa: std.mem.Allocator, span: *const Span) error{OutOfMemory}![]u8 {
    const total = lenField(resourceSpansSize(span));
    const buf = try gpa.alloc(u8, total);
    var w: Writer = .{ .buf = buf };
    w.header(1, resourceSpansSize(span)); // TracesData.resource_spans
    w.header(1, resourceSize(span)); // ResourceSpans.resource
    w.keyValue(1, .{ .key = "service.name", .value = .{ .string = span.service_name } });
    w.header(2, scopeSpansSize(span)); // ResourceSpans.scope_spans
    w.header(1, scopeSize(span)); // ScopeSpans.scope
    w.bytes(1, span.scope_name);
    w.bytes(2, span.scope_version);
    w.header(2, spanSize(span)); // ScopeSpans.spans
    w.bytes(1, &span.trace_id);
    w.bytes(2, &span.span_id);
    if (span.parent_span_id) |p| w.bytes(4, &p);
    w.bytes(5, span.name);
    if (span.kind != 0) {
        w.tag(6, wt_varint);
        w.varint(span.kind);
    }
    w.fixed64(7, span.start_time_unix_nano);
    w.fixed64(8, span.end_time_unix_nano);
    for (span.attrs) |a| w.keyValue(9, a);
    std.debug.assert(w.pos == total);
    return buf;
}

/// Errors from decoding a hit answer.
pub const DecodeError = error{ Truncated, Malformed, NoSpan, MissingStatus, OutOfMemory };

/// A cached response carried by a hit answer. Slices borrow the decoded bytes; `headers` is
/// owned (free with `deinit`).
pub const Hit = struct {
    status: u32,
    /// names without the `http.response.header.` prefix, values in wire order
    headers: []Pair,
    body: []const u8,
    /// seconds
    age_seconds: u64 = 0,

    /// Frees the header list.
    pub fn deinit(self: *Hit, gpa: std.mem.Allocator) void {
        gpa.free(self.headers);
    }
};

const FieldValue = union(enum) { varint: u64, fixed64: u64, fixed32: u32, bytes: []const u8 };
const Field = struct { num: u64, value: FieldValue };

/// Bounds-checked protobuf field reader.
const Reader = struct {
    buf: []const u8,
    pos: usize = 0,

    fn varint(r: *Reader) DecodeError!u64 {
        var v: u64 = 0;
        var shift: u7 = 0;
        while (true) {
            if (r.pos >= r.buf.len) return error.Truncated;
            const b = r.buf[r.pos];
            r.pos += 1;
            if (shift == 63 and b > 1) return error.Malformed;
            v |= @as(u64, b & 0x7f) << @intCast(shift);
            if (b & 0x80 == 0) return v;
            shift += 7;
            if (shift > 63) return error.Malformed;
        }
    }

    fn next(r: *Reader) DecodeError!?Field {
        if (r.pos >= r.buf.len) return null;
        const key = try r.varint();
        const num = key >> 3;
        if (num == 0) return error.Malformed;
        const value: FieldValue = switch (@as(u3, @truncate(key))) {
            wt_varint => .{ .varint = try r.varint() },
            wt_fixed64 => blk: {
                if (r.buf.len - r.pos < 8) return error.Truncated;
                const v = std.mem.readInt(u64, r.buf[r.pos..][0..8], .little);
                r.pos += 8;
                break :blk .{ .fixed64 = v };
            },
            wt_fixed32 => blk: {
                if (r.buf.len - r.pos < 4) return error.Truncated;
                const v = std.mem.readInt(u32, r.buf[r.pos..][0..4], .little);
                r.pos += 4;
                break :blk .{ .fixed32 = v };
            },
            wt_len => blk: {
                const len = try r.varint();
                if (len > r.buf.len - r.pos) return error.Truncated;
                const b = r.buf[r.pos..][0..@intCast(len)];
                r.pos += @intCast(len);
                break :blk .{ .bytes = b };
            },
            else => return error.Malformed, // groups (3, 4) and 6, 7
        };
        return .{ .num = num, .value = value };
    }
};

const AnyValue = union(enum) { string: []const u8, int: i64, bytes: []const u8, array: []const u8, other };

fn decodeAnyValue(buf: []const u8) DecodeError!AnyValue {
    var r: Reader = .{ .buf = buf };
    var out: AnyValue = .other;
    while (try r.next()) |f| {
        switch (f.num) {
            1, 5, 7 => {
                if (f.value != .bytes) return error.Malformed;
                out = switch (f.num) {
                    1 => .{ .string = f.value.bytes },
                    5 => .{ .array = f.value.bytes },
                    else => .{ .bytes = f.value.bytes },
                };
            },
            3 => {
                if (f.value != .varint) return error.Malformed;
                out = .{ .int = @bitCast(f.value.varint) };
            },
            else => out = .other,
        }
    }
    return out;
}

/// Message types of trace.proto / common.proto / resource.proto that a lookup answer may hold.
const MsgKind = enum {
    traces_data,
    resource_spans,
    resource,
    scope_spans,
    scope,
    span,
    event,
    link,
    status,
    key_value,
    any_value,
    array_value,
    kv_list,
};

/// How a length-delimited field of a known message must be read: a nested message, a UTF-8
/// string (proto3 rejects invalid UTF-8 in `string` fields), or opaque bytes.
const FieldKind = union(enum) { message: MsgKind, string, bytes };

fn fieldKind(kind: MsgKind, num: u64) FieldKind {
    return switch (kind) {
        .traces_data => if (num == 1) .{ .message = .resource_spans } else .bytes,
        .resource_spans => switch (num) {
            1 => .{ .message = .resource },
            2 => .{ .message = .scope_spans },
            3 => .string,
            else => .bytes,
        },
        .resource => if (num == 1) .{ .message = .key_value } else .bytes,
        .scope_spans => switch (num) {
            1 => .{ .message = .scope },
            2 => .{ .message = .span },
            3 => .string,
            else => .bytes,
        },
        .scope => switch (num) {
            1, 2 => .string,
            3 => .{ .message = .key_value },
            else => .bytes,
        },
        .span => switch (num) {
            3, 5 => .string,
            9 => .{ .message = .key_value },
            11 => .{ .message = .event },
            13 => .{ .message = .link },
            15 => .{ .message = .status },
            else => .bytes,
        },
        .event => switch (num) {
            2 => .string,
            3 => .{ .message = .key_value },
            else => .bytes,
        },
        .link => switch (num) {
            3 => .string,
            4 => .{ .message = .key_value },
            else => .bytes,
        },
        .status => if (num == 2) .string else .bytes,
        .key_value => switch (num) {
            1 => .string,
            2 => .{ .message = .any_value },
            else => .bytes,
        },
        .any_value => switch (num) {
            1 => .string,
            5 => .{ .message = .array_value },
            6 => .{ .message = .kv_list },
            else => .bytes,
        },
        .array_value => if (num == 1) .{ .message = .any_value } else .bytes,
        .kv_list => if (num == 1) .{ .message = .key_value } else .bytes,
    };
}

/// Deepest nesting accepted (AnyValue arrays can nest); deeper answers are refused as Malformed.
const max_depth = 32;

/// Checks that `buf` is a well-formed `kind` message all the way down: every nested message of a
/// known field parses, every `string` field is UTF-8. Unknown fields are skipped by wire type, as
/// protobuf does. A hit is served only from an answer the reference protobuf decoder would accept
/// too, so a backend that sends corrupt bytes is a lookup error, never a response.
fn validate(buf: []const u8, kind: MsgKind, depth: u32) DecodeError!void {
    if (depth > max_depth) return error.Malformed;
    var r: Reader = .{ .buf = buf };
    while (try r.next()) |f| {
        if (f.value != .bytes) continue;
        switch (fieldKind(kind, f.num)) {
            .message => |sub| try validate(f.value.bytes, sub, depth + 1),
            .string => if (!std.unicode.utf8ValidateSlice(f.value.bytes)) return error.Malformed,
            .bytes => {},
        }
    }
}

const response_header_prefix = "http.response.header.";

/// The one span of a `TracesData` (across every ResourceSpans and ScopeSpans); NoSpan when there
/// is none, Malformed when there are several (the contract is exactly one).
fn onlySpan(bytes: []const u8) DecodeError![]const u8 {
    var found: ?[]const u8 = null;
    var traces: Reader = .{ .buf = bytes };
    while (try traces.next()) |rs| {
        if (rs.num != 1) continue;
        if (rs.value != .bytes) return error.Malformed;
        var resource_spans: Reader = .{ .buf = rs.value.bytes };
        while (try resource_spans.next()) |ss| {
            if (ss.num != 2) continue;
            if (ss.value != .bytes) return error.Malformed;
            var scope_spans: Reader = .{ .buf = ss.value.bytes };
            while (try scope_spans.next()) |sp| {
                if (sp.num != 2) continue;
                if (sp.value != .bytes) return error.Malformed;
                if (found != null) return error.Malformed;
                found = sp.value.bytes;
            }
        }
    }
    return found orelse error.NoSpan;
}

/// Decodes a lookup answer (`TracesData`) into the cached response it carries. Accepts exactly
/// what the backend's reference decoder accepts, or less: one span, every key once, needs
/// `http.response.status_code` (200..599) and `sp.cache.age_seconds`. String and bytes values
/// are accepted for the body.
pub fn decodeHit(gpa: std.mem.Allocator, bytes: []const u8) DecodeError!Hit {
    try validate(bytes, .traces_data, 0);
    const span = try onlySpan(bytes);
    var list: std.ArrayList(Pair) = .empty;
    errdefer list.deinit(gpa);
    var keys: std.ArrayList([]const u8) = .empty;
    defer keys.deinit(gpa);
    var have_age = false;
    var hit: Hit = .{ .status = 0, .headers = &.{}, .body = "" };
    var r: Reader = .{ .buf = span };
    while (try r.next()) |f| {
        if (f.num != 9) continue;
        if (f.value != .bytes) return error.Malformed;
        var kv: Reader = .{ .buf = f.value.bytes };
        var key: []const u8 = "";
        var value: AnyValue = .other;
        while (try kv.next()) |g| {
            if (g.num != 1 and g.num != 2) continue;
            if (g.value != .bytes) return error.Malformed;
            if (g.num == 1) key = g.value.bytes else value = try decodeAnyValue(g.value.bytes);
        }
        // a key given twice is ambiguous: refused, as the backend's reference decoder does
        for (keys.items) |k| if (std.mem.eql(u8, k, key)) return error.Malformed;
        try keys.append(gpa, key);
        if (std.mem.eql(u8, key, "http.response.status_code")) {
            // 1xx are interim responses, never a stored final response (RFC 9110 §15.2)
            if (value != .int or value.int < 200 or value.int > 599) return error.Malformed;
            hit.status = @intCast(value.int);
        } else if (std.mem.eql(u8, key, "http.response.body")) {
            hit.body = switch (value) {
                .bytes, .string => |b| b,
                else => return error.Malformed,
            };
        } else if (std.mem.eql(u8, key, "sp.cache.age_seconds")) {
            if (value != .int) return error.Malformed;
            hit.age_seconds = if (value.int < 0) 0 else @intCast(value.int);
            have_age = true;
        } else if (std.mem.startsWith(u8, key, response_header_prefix) and key.len > response_header_prefix.len) {
            const name = key[response_header_prefix.len..];
            switch (value) {
                .string => |s| try list.append(gpa, .{ .name = name, .value = s }),
                .array => |arr| {
                    var ar: Reader = .{ .buf = arr };
                    while (try ar.next()) |e| {
                        if (e.num != 1) continue;
                        if (e.value != .bytes) return error.Malformed;
                        const item = try decodeAnyValue(e.value.bytes);
                        if (item != .string) return error.Malformed;
                        try list.append(gpa, .{ .name = name, .value = item.string });
                    }
                },
                else => return error.Malformed,
            }
        }
    }
    if (hit.status == 0) return error.MissingStatus;
    if (!have_age) return error.Malformed; // docs/protocol.md: a hit carries sp.cache.age_seconds
    hit.headers = try list.toOwnedSlice(gpa);
    return hit;
}

/// The span the golden-bytes test (and filter/testdata/protocol_golden.json) pins.
pub const golden_span: Span = .{
    .service_name = "svc",
    .scope_version = "0.1.0",
    .trace_id = .{ 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 },
    .span_id = .{ 0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 },
    .parent_span_id = .{ 1, 2, 3, 4, 5, 6, 7, 8 },
    .name = "/bytes/16?x=1",
    .start_time_unix_nano = 1_700_000_000_000_000_000,
    .end_time_unix_nano = 1_700_000_000_000_500_000,
    .attrs = &.{
        .{ .key = "sp.span.type", .value = .{ .string = "extract" } },
        .{ .key = "http.request.method", .value = .{ .string = "GET" } },
        .{ .prefix = "http.request.header.", .key = "accept", .value = .{ .strings = &.{ "a", "b" } } },
        .{ .key = "http.request.body", .value = .{ .bytes = "\x00\xff" } },
        .{ .key = "http.response.status_code", .value = .{ .int = 200 } },
        .{ .key = "sp.cache.ttl_seconds", .value = .{ .int = 300 } },
        .{ .key = "http.response.header.content-type", .value = .{ .strings = &.{"text/plain"} } },
        .{ .key = "http.response.body", .value = .{ .bytes = "hello" } },
    },
};

/// `golden_span` as the backend answers a lookup: the same attributes plus the entry's age.
fn testHitSpan(attrs: []Attr) Span {
    var span = golden_span;
    @memcpy(attrs[0..golden_span.attrs.len], golden_span.attrs);
    attrs[golden_span.attrs.len] = .{ .key = "sp.cache.age_seconds", .value = .{ .int = 7 } };
    span.attrs = attrs;
    return span;
}

test "encode then decode round trip" {
    const gpa = std.testing.allocator;
    var attrs: [golden_span.attrs.len + 1]Attr = undefined;
    const span = testHitSpan(&attrs);
    const bytes = try encode(gpa, &span);
    defer gpa.free(bytes);
    var hit = try decodeHit(gpa, bytes);
    defer hit.deinit(gpa);
    try std.testing.expectEqual(@as(u64, 7), hit.age_seconds);
    try std.testing.expectEqual(@as(u32, 200), hit.status);
    try std.testing.expectEqualStrings("hello", hit.body);
    try std.testing.expectEqual(@as(usize, 1), hit.headers.len);
    try std.testing.expectEqualStrings("content-type", hit.headers[0].name);
}

test "a hit without its age, or with a key given twice, is refused" {
    const gpa = std.testing.allocator;
    const no_age = try encode(gpa, &golden_span);
    defer gpa.free(no_age);
    try std.testing.expectError(error.Malformed, decodeHit(gpa, no_age));
    var attrs: [golden_span.attrs.len + 1]Attr = undefined;
    var span = testHitSpan(&attrs);
    attrs[0] = attrs[golden_span.attrs.len]; // sp.cache.age_seconds twice
    span.attrs = &attrs;
    const twice = try encode(gpa, &span);
    defer gpa.free(twice);
    try std.testing.expectError(error.Malformed, decodeHit(gpa, twice));
}

test "decoder is total: truncations and random bytes" {
    const gpa = std.testing.allocator;
    const bytes = try encode(gpa, &golden_span);
    defer gpa.free(bytes);
    for (0..bytes.len) |n| {
        if (decodeHit(gpa, bytes[0..n])) |h| {
            var hh = h;
            hh.deinit(gpa);
        } else |_| {}
    }
    var prng = std.Random.DefaultPrng.init(7);
    const copy = try gpa.dupe(u8, bytes);
    defer gpa.free(copy);
    for (0..5000) |_| {
        @memcpy(copy, bytes);
        const flips = prng.random().uintLessThan(usize, 4) + 1;
        for (0..flips) |_| copy[prng.random().uintLessThan(usize, copy.len)] = prng.random().int(u8);
        if (decodeHit(gpa, copy)) |h| {
            var hh = h;
            hh.deinit(gpa);
        } else |_| {}
    }
    var buf: [128]u8 = undefined;
    for (0..5000) |_| {
        const len = prng.random().uintLessThan(usize, buf.len);
        prng.random().bytes(buf[0..len]);
        if (decodeHit(gpa, buf[0..len])) |h| {
            var hh = h;
            hh.deinit(gpa);
        } else |_| {}
    }
    try std.testing.expectError(error.NoSpan, decodeHit(gpa, ""));
    try std.testing.expectError(error.Truncated, decodeHit(gpa, "\x0a\x05\x01"));
}

test "a corrupt message nested in a field the filter skips is still refused" {
    const gpa = std.testing.allocator;
    // TracesData{ResourceSpans{resource: Resource whose KeyValue claims 32 bytes but holds 2}}
    const bad = "\x0a\x06\x0a\x04\x0a\x20\x0a\x00";
    try std.testing.expectError(error.Truncated, decodeHit(gpa, bad));
}

test "invalid UTF-8 in a string field is refused, as protobuf does" {
    const gpa = std.testing.allocator;
    // TracesData{ResourceSpans{ScopeSpans{Span{name: "\xff"}}}}
    const bad = "\x0a\x07\x12\x05\x12\x03\x2a\x01\xff";
    try std.testing.expectError(error.Malformed, decodeHit(gpa, bad));
}

test "an interim 1xx status is never served" {
    const gpa = std.testing.allocator;
    var span = golden_span;
    const attrs = [_]Attr{.{ .key = "http.response.status_code", .value = .{ .int = 100 } }};
    span.attrs = &attrs;
    const bytes = try encode(gpa, &span);
    defer gpa.free(bytes);
    try std.testing.expectError(error.Malformed, decodeHit(gpa, bytes));
}
