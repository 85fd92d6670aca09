//! Decoder of the backend's answer to a lookup (docs/protocol.md: a `TracesData` holding every
//! stored variant span of the key) into candidate entries. It reads from each span exactly the
//! attributes the filter uses, each at most once. A span that fails makes its own candidate
//! invalid; only broken framing of the `TracesData` itself (or no span, or too many) refuses the
//! whole answer. Total: any byte string gives candidates or an error, never a trap.
const std = @import("std");
const pb = @import("protobuf.zig");
const entry = @import("entry.zig");
const attr = @import("protocol.zig").attr;

const Entry = entry.Entry;
const Pair = entry.Pair;

/// Errors that refuse a whole answer: the framing of the `TracesData`, `ResourceSpans`,
/// `Resource` or `ScopeSpans` is broken (Truncated, Malformed: the reference protobuf decoder
/// would refuse the body too), it holds no span (NoSpan) or more than `entry.max_variants`
/// (TooManySpans).
pub const Error = error{ Truncated, Malformed, NoSpan, TooManySpans, OutOfMemory };

/// Why one candidate span cannot be used; the tag names are counter and log words.
pub const Invalid = enum {
    /// the span is not a valid protobuf `Span` (as the reference decoder would refuse it), or an
    /// attribute carries one field twice
    malformed,
    /// an attribute the filter reads appears twice (header names compared case-insensitively)
    repeated_key,
    /// `sp.cache.key`, `sp.cache.variant`, `http.response.status_code`,
    /// `sp.cache.request_time_ms`, `sp.cache.response_time_ms` or `sp.cache.signature` is absent
    missing_field,
    /// an attribute the filter reads has the wrong AnyValue type, or an int out of range
    /// (status outside 0..65535, a negative time)
    wrong_type,
    /// more than `entry.max_header_values` response header values
    too_many_headers,
};

/// One span of the answer: its entry (slices borrow the answer bytes), or why it is invalid.
pub const Candidate = union(enum) {
    entry: Entry,
    invalid: Invalid,
};

/// A decoded answer: one candidate per span, in answer order. Free with `deinit`.
pub const Answer = struct {
    candidates: []Candidate,
    /// storage of every candidate's headers
    pairs: []Pair,

    /// Frees the candidate and header arrays (not the answer bytes they borrow).
    pub fn deinit(self: *Answer, gpa: std.mem.Allocator) void {
        gpa.free(self.candidates);
        gpa.free(self.pairs);
    }
};

/// Visits every span of a TracesData (framing already validated).
fn collectSpans(bytes: []const u8, out: *[entry.max_variants][]const u8) Error!usize {
    var n: usize = 0;
    var traces: pb.Reader = .{ .buf = bytes };
    while (try traces.next()) |rs| {
        if (rs.num != 1 or rs.value != .bytes) continue;
        var resource_spans: pb.Reader = .{ .buf = rs.value.bytes };
        while (try resource_spans.next()) |ss| {
            if (ss.num != 2 or ss.value != .bytes) continue;
            var scope_spans: pb.Reader = .{ .buf = ss.value.bytes };
            while (try scope_spans.next()) |sp| {
                if (sp.num != 2 or sp.value != .bytes) continue;
                if (n == out.len) return error.TooManySpans;
                out[n] = sp.value.bytes;
                n += 1;
            }
        }
    }
    return n;
}

/// Decodes a lookup answer. Each candidate still has to pass `entry.verify`, a key check and
/// `entry.validateForReplay` before it may be served.
pub fn decode(gpa: std.mem.Allocator, bytes: []const u8) Error!Answer {
    try pb.validate(bytes, .traces_data, 0, true);
    var spans: [entry.max_variants][]const u8 = undefined;
    const n = try collectSpans(bytes, &spans);
    if (n == 0) return error.NoSpan;

    const candidates = try gpa.alloc(Candidate, n);
    errdefer gpa.free(candidates);
    // header storage of all candidates; each candidate remembers its range until the end
    var pairs: std.ArrayList(Pair) = .empty;
    errdefer pairs.deinit(gpa);
    var ranges: [entry.max_variants][2]usize = undefined;
    var names: entry.NameSet = .empty;
    defer names.deinit(gpa);
    for (spans[0..n], candidates, ranges[0..n]) |span, *c, *range| {
        const start = pairs.items.len;
        names.clearRetainingCapacity();
        c.* = try decodeSpan(gpa, span, &pairs, &names);
        if (c.* == .invalid) pairs.shrinkRetainingCapacity(start);
        range.* = .{ start, pairs.items.len };
    }
    const owned = try pairs.toOwnedSlice(gpa);
    for (candidates, ranges[0..n]) |*c, range| {
        if (c.* == .entry) c.entry.headers = owned[range[0]..range[1]];
    }
    return .{ .candidates = candidates, .pairs = owned };
}

/// AnyValue forms the filter reads.
const AnyValue = union(enum) { string: []const u8, bytes: []const u8, int: i64, array: []const u8, other };

/// `Invalid` as an error set, so that span reading can use `try`.
const SpanError = error{ malformed, repeated_key, missing_field, wrong_type, too_many_headers };

fn decodeAnyValue(buf: []const u8) SpanError!AnyValue {
    var r: pb.Reader = .{ .buf = buf };
    var out: AnyValue = .other;
    var fields: usize = 0;
    while (r.next() catch return error.malformed) |f| {
        const v: AnyValue = switch (f.num) {
            1 => if (f.value == .bytes) .{ .string = f.value.bytes } else continue,
            3 => if (f.value == .varint) .{ .int = @bitCast(f.value.varint) } else continue,
            5 => if (f.value == .bytes) .{ .array = f.value.bytes } else continue,
            7 => if (f.value == .bytes) .{ .bytes = f.value.bytes } else continue,
            2, 4, 6, 8 => .other,
            else => continue,
        };
        fields += 1;
        out = v;
    }
    // one `value` oneof member, once: a second one would be "last wins" to protobuf
    if (fields > 1) return error.malformed;
    return out;
}

fn textOrBytes(v: AnyValue) SpanError![]const u8 {
    return switch (v) {
        .string, .bytes => |b| b,
        else => error.wrong_type,
    };
}

fn nonNegative(v: AnyValue) SpanError!u64 {
    if (v != .int or v.int < 0) return error.wrong_type;
    return @intCast(v.int);
}

/// The fields the filter reads, and which of them were seen.
const Fields = enum { key, variant, status, request_time_ms, response_time_ms, signature, body };

fn fieldOf(key: []const u8) ?Fields {
    const table = .{
        .{ attr.cache_key, Fields.key },
        .{ attr.variant, Fields.variant },
        .{ attr.status, Fields.status },
        .{ attr.request_time_ms, Fields.request_time_ms },
        .{ attr.response_time_ms, Fields.response_time_ms },
        .{ attr.signature, Fields.signature },
        .{ attr.response_body, Fields.body },
    };
    inline for (table) |row| if (std.mem.eql(u8, key, row[0])) return row[1];
    return null;
}

fn decodeSpan(gpa: std.mem.Allocator, span: []const u8, pairs: *std.ArrayList(Pair), names: *entry.NameSet) error{OutOfMemory}!Candidate {
    const e = readSpan(gpa, span, pairs, names) catch |err| switch (err) {
        error.OutOfMemory => return error.OutOfMemory,
        inline else => |tag| return .{ .invalid = @field(Invalid, @errorName(tag)) },
    };
    return .{ .entry = e };
}

const ReadError = SpanError || error{OutOfMemory};

fn readSpan(gpa: std.mem.Allocator, span: []const u8, pairs: *std.ArrayList(Pair), names: *entry.NameSet) ReadError!Entry {
    pb.validate(span, .span, 3, false) catch return error.malformed;
    var seen: std.EnumSet(Fields) = .empty;
    var e: Entry = .{ .key = "", .status = 0, .request_time_ms = 0, .response_time_ms = 0 };
    var header_values: usize = 0;
    var r: pb.Reader = .{ .buf = span };
    while (r.next() catch return error.malformed) |f| {
        if (f.num != 9 or f.value != .bytes) continue;
        var kv: pb.Reader = .{ .buf = f.value.bytes };
        var key: ?[]const u8 = null;
        var raw_value: ?[]const u8 = null;
        while (kv.next() catch return error.malformed) |g| {
            if (g.value != .bytes) continue;
            const slot = switch (g.num) {
                1 => &key,
                2 => &raw_value,
                else => continue,
            };
            if (slot.* != null) return error.malformed; // "last wins" to protobuf: refused
            slot.* = g.value.bytes;
        }
        const k = key orelse "";
        if (fieldOf(k)) |which| {
            if (seen.contains(which)) return error.repeated_key;
            seen.insert(which);
            const v = try decodeAnyValue(raw_value orelse "");
            switch (which) {
                .key => e.key = try textOrBytes(v),
                .variant => e.variant = try textOrBytes(v),
                .signature => e.signature = try textOrBytes(v),
                .body => e.body = try textOrBytes(v),
                .request_time_ms => e.request_time_ms = try nonNegative(v),
                .response_time_ms => e.response_time_ms = try nonNegative(v),
                .status => {
                    const s = try nonNegative(v);
                    if (s > std.math.maxInt(u16)) return error.wrong_type;
                    e.status = @intCast(s);
                },
            }
        } else if (std.mem.startsWith(u8, k, attr.response_header_prefix)) {
            const name = k[attr.response_header_prefix.len..];
            if ((try names.getOrPut(gpa, name)).found_existing) return error.repeated_key;
            const v = try decodeAnyValue(raw_value orelse "");
            if (v != .array) return error.wrong_type;
            var items: pb.Reader = .{ .buf = v.array };
            while (items.next() catch return error.malformed) |item| {
                if (item.num != 1 or item.value != .bytes) continue;
                header_values += 1;
                if (header_values > entry.max_header_values) return error.too_many_headers;
                try pairs.append(gpa, .{ .name = name, .value = try textOrBytes(try decodeAnyValue(item.value.bytes)) });
            }
        }
    }
    const required = [_]Fields{ .key, .variant, .status, .request_time_ms, .response_time_ms, .signature };
    for (required) |which| if (!seen.contains(which)) return error.missing_field;
    return e;
}

/// Hand-made protobuf for the tests (the spans the filter's encoder would never write).
const mk = struct {
    var arena_state: std.heap.ArenaAllocator = undefined;

    fn a() std.mem.Allocator {
        return arena_state.allocator();
    }

    fn cat(parts: []const []const u8) []const u8 {
        return std.mem.concat(a(), u8, parts) catch @panic("test OOM");
    }

    fn ld(field: u8, payload: []const u8) []const u8 {
        var hdr: [11]u8 = undefined;
        var w: pb.Writer = .{ .buf = &hdr };
        w.header(field, payload.len);
        return cat(&.{ hdr[0..w.pos], payload });
    }

    fn vint(field: u8, v: u64) []const u8 {
        var buf: [11]u8 = undefined;
        var w: pb.Writer = .{ .buf = &buf };
        w.varintField(field, v);
        return cat(&.{buf[0..w.pos]});
    }

    fn str(v: []const u8) []const u8 {
        return ld(1, v);
    }
    fn byt(v: []const u8) []const u8 {
        return ld(7, v);
    }
    fn int(v: i64) []const u8 {
        return vint(3, @bitCast(v));
    }
    fn arr(items: []const []const u8) []const u8 {
        var parts: std.ArrayList([]const u8) = .empty;
        for (items) |item| parts.append(a(), ld(1, item)) catch @panic("test OOM");
        return ld(5, cat(parts.items));
    }
    /// a Span.attributes field
    fn kv(key: []const u8, value: []const u8) []const u8 {
        return ld(9, cat(&.{ ld(1, key), ld(2, value) }));
    }
    /// TracesData{ResourceSpans{ScopeSpans{spans}}}
    fn answer(spans: []const []const u8) []const u8 {
        var parts: std.ArrayList([]const u8) = .empty;
        for (spans) |s| parts.append(a(), ld(2, s)) catch @panic("test OOM");
        return ld(1, ld(2, cat(parts.items)));
    }
    /// the attributes every candidate needs
    fn required() []const u8 {
        return cat(&.{
            kv(attr.cache_key, str("k")),
            kv(attr.variant, str("")),
            kv(attr.status, int(200)),
            kv(attr.request_time_ms, int(1)),
            kv(attr.response_time_ms, int(2)),
            kv(attr.signature, str("s")),
        });
    }
};

/// The answer holding `span` alone; caller frees with `std.testing.allocator`.
fn decodeOne(span: []const u8) !Answer {
    return decode(std.testing.allocator, mk.answer(&.{span}));
}

fn expectInvalid(want: Invalid, span: []const u8) !void {
    var ans = try decodeOne(span);
    defer ans.deinit(std.testing.allocator);
    const got = ans.candidates[0];
    std.testing.expectEqual(Candidate{ .invalid = want }, got) catch |e| {
        std.debug.print("want {s}, got {any}\n", .{ @tagName(want), got });
        return e;
    };
}

test "candidate fields: strings or bytes accepted, minimal entry" {
    mk.arena_state = .init(std.testing.allocator);
    defer mk.arena_state.deinit();
    const gpa = std.testing.allocator;
    var ans = try decodeOne(mk.cat(&.{
        mk.required(),
        mk.kv(attr.response_body, mk.str("text body")),
        mk.kv(attr.response_header_prefix ++ "x-a", mk.arr(&.{ mk.byt("\xff"), mk.str("b") })),
        mk.kv("sp.cache.unknown", mk.int(5)),
        mk.kv("sp.cache.unknown", mk.int(6)), // keys the filter does not read may repeat
    }));
    defer ans.deinit(gpa);
    const e = ans.candidates[0].entry;
    try std.testing.expectEqualStrings("k", e.key);
    try std.testing.expectEqualStrings("s", e.signature);
    try std.testing.expectEqualStrings("text body", e.body);
    try std.testing.expectEqual(@as(u64, 2), e.response_time_ms);
    try std.testing.expectEqual(@as(usize, 2), e.headers.len);
    try std.testing.expectEqualStrings("\xff", e.headers[0].value);
    try std.testing.expectEqualStrings("x-a", e.headers[1].name);
    // the key as bytes_value instead of the first (string) attribute of `required`
    const rest = mk.required()[mk.kv(attr.cache_key, mk.str("k")).len..];
    var k = try decodeOne(mk.cat(&.{ mk.kv(attr.cache_key, mk.byt("\xfe")), rest }));
    defer k.deinit(gpa);
    try std.testing.expectEqualStrings("\xfe", k.candidates[0].entry.key);
}

test "each way a candidate is invalid" {
    mk.arena_state = .init(std.testing.allocator);
    defer mk.arena_state.deinit();
    const req = mk.required();
    const hdr = attr.response_header_prefix;
    try expectInvalid(.missing_field, mk.kv(attr.status, mk.int(200)));
    try expectInvalid(.repeated_key, mk.cat(&.{ req, mk.kv(attr.status, mk.int(200)) }));
    try expectInvalid(.repeated_key, mk.cat(&.{ req, mk.kv(hdr ++ "x-a", mk.arr(&.{mk.str("1")})), mk.kv(hdr ++ "X-A", mk.arr(&.{mk.str("2")})) }));
    try expectInvalid(.wrong_type, mk.cat(&.{ mk.kv(attr.status, mk.str("200")), req }));
    try expectInvalid(.wrong_type, mk.cat(&.{ mk.kv(attr.status, mk.int(70000)), req }));
    try expectInvalid(.wrong_type, mk.cat(&.{ mk.kv(attr.request_time_ms, mk.int(-1)), req }));
    try expectInvalid(.wrong_type, mk.cat(&.{ req, mk.kv(hdr ++ "x-a", mk.str("not an array")) }));
    try expectInvalid(.wrong_type, mk.cat(&.{ req, mk.kv(hdr ++ "x-a", mk.arr(&.{mk.int(1)})) }));
    try expectInvalid(.wrong_type, mk.cat(&.{ req, mk.kv(attr.response_body, mk.int(1)) }));
    try expectInvalid(.wrong_type, mk.cat(&.{ req, mk.kv(attr.response_body, "") })); // empty AnyValue
    // a KeyValue with two values, an AnyValue with two members
    try expectInvalid(.malformed, mk.cat(&.{ req, mk.ld(9, mk.cat(&.{ mk.ld(1, attr.response_body), mk.ld(2, mk.byt("a")), mk.ld(2, mk.byt("b")) })) }));
    try expectInvalid(.malformed, mk.cat(&.{ req, mk.kv(attr.response_body, mk.cat(&.{ mk.byt("a"), mk.str("b") })) }));
    // as protobuf: invalid UTF-8 in a string field, anywhere in the span
    try expectInvalid(.malformed, mk.cat(&.{ req, mk.kv(hdr ++ "x-a", mk.arr(&.{mk.str("caf\xe9")})) }));
    try expectInvalid(.malformed, mk.cat(&.{ req, mk.ld(5, "\xff") }));
    try expectInvalid(.malformed, mk.cat(&.{ req, mk.kv("caf\xe9", mk.int(1)) }));
    // more header values than the bound
    var many: [entry.max_header_values + 1][]const u8 = undefined;
    for (&many) |*m| m.* = mk.str("v");
    try expectInvalid(.too_many_headers, mk.cat(&.{ req, mk.kv(hdr ++ "x-a", mk.arr(&many)) }));
    var ok = try decodeOne(mk.cat(&.{ req, mk.kv(hdr ++ "x-a", mk.arr(many[1..])) }));
    defer ok.deinit(std.testing.allocator);
    try std.testing.expectEqual(entry.max_header_values, ok.candidates[0].entry.headers.len);
}

test "one invalid span spoils its own candidate only; headers stay with their entry" {
    mk.arena_state = .init(std.testing.allocator);
    defer mk.arena_state.deinit();
    const gpa = std.testing.allocator;
    const hdr = attr.response_header_prefix;
    const good_a = mk.cat(&.{ mk.required(), mk.kv(hdr ++ "a", mk.arr(&.{ mk.str("1"), mk.str("2") })) });
    const bad = mk.cat(&.{ mk.kv(hdr ++ "z", mk.arr(&.{mk.str("9")})), mk.kv(attr.status, mk.int(1)) });
    const good_b = mk.cat(&.{ mk.kv(hdr ++ "b", mk.arr(&.{mk.str("3")})), mk.required() });
    var ans = try decode(gpa, mk.answer(&.{ good_a, bad, good_b }));
    defer ans.deinit(gpa);
    try std.testing.expectEqual(@as(usize, 3), ans.candidates.len);
    try std.testing.expectEqual(Candidate{ .invalid = .missing_field }, ans.candidates[1]);
    const a = ans.candidates[0].entry.headers;
    const b = ans.candidates[2].entry.headers;
    try std.testing.expectEqual(@as(usize, 2), a.len);
    try std.testing.expectEqualStrings("2", a[1].value);
    try std.testing.expectEqual(@as(usize, 1), b.len);
    try std.testing.expectEqualStrings("b", b[0].name);
    try std.testing.expectEqual(@as(usize, 3), ans.pairs.len);
}

test "whole-answer errors: no span, too many spans, broken framing outside the spans" {
    mk.arena_state = .init(std.testing.allocator);
    defer mk.arena_state.deinit();
    const gpa = std.testing.allocator;
    try std.testing.expectError(error.NoSpan, decode(gpa, ""));
    try std.testing.expectError(error.NoSpan, decode(gpa, mk.ld(1, mk.ld(2, ""))));
    var spans: [entry.max_variants + 1][]const u8 = undefined;
    for (&spans) |*s| s.* = mk.required();
    try std.testing.expectError(error.TooManySpans, decode(gpa, mk.answer(&spans)));
    var ans = try decode(gpa, mk.answer(spans[1..]));
    ans.deinit(gpa);
    // Resource{attributes: KeyValue{key: "\xff"}}
    try std.testing.expectError(error.Malformed, decode(gpa, mk.cat(&.{ mk.answer(&.{mk.required()}), mk.ld(1, mk.ld(1, mk.ld(1, mk.ld(1, "\xff")))) })));
    try std.testing.expectError(error.Truncated, decode(gpa, "\x0a\x05\x01"));
    // a corrupt message nested in a field the filter skips is still refused
    try std.testing.expectError(error.Truncated, decode(gpa, "\x0a\x06\x0a\x04\x0a\x20\x0a\x00"));
}

fn decodeAndFree(bytes: []const u8) void {
    const gpa = std.testing.allocator;
    if (decode(gpa, bytes)) |ans| {
        var owned = ans;
        for (owned.candidates) |c| if (c == .entry) {
            _ = entry.validateForReplay(&c.entry);
        };
        owned.deinit(gpa);
    } else |_| {}
}

test "decoder is total: truncations, random flips, random bytes, random attribute soups" {
    mk.arena_state = .init(std.testing.allocator);
    defer mk.arena_state.deinit();
    const gpa = std.testing.allocator;
    const hdr = attr.response_header_prefix;
    const pool = [_][]const u8{
        mk.kv(attr.cache_key, mk.str("k")),                           mk.kv(attr.variant, mk.byt("")),
        mk.kv(attr.status, mk.int(200)),                              mk.kv(attr.status, mk.int(-5)),
        mk.kv(attr.request_time_ms, mk.int(1)),                       mk.kv(attr.response_time_ms, mk.int(2)),
        mk.kv(attr.signature, mk.str("s")),                           mk.kv(attr.response_body, mk.byt("\x00\r\n")),
        mk.kv(hdr ++ "a", mk.arr(&.{ mk.str("1"), mk.byt("\r\n") })), mk.kv(hdr ++ "A", mk.arr(&.{})),
        mk.kv(hdr, mk.arr(&.{mk.str("")})),                           mk.kv("x", mk.arr(&.{mk.arr(&.{mk.int(1)})})),
        mk.ld(5, "name"),                                             mk.vint(9, 3),
    };
    const base = mk.answer(&.{ mk.cat(&pool), mk.required() });
    for (0..base.len) |n| decodeAndFree(base[0..n]);
    var prng = std.Random.DefaultPrng.init(7);
    const r = prng.random();
    const copy = try gpa.dupe(u8, base);
    defer gpa.free(copy);
    for (0..20_000) |_| {
        @memcpy(copy, base);
        for (0..r.uintLessThan(usize, 4) + 1) |_| copy[r.uintLessThan(usize, copy.len)] = r.int(u8);
        decodeAndFree(copy);
    }
    var buf: [128]u8 = undefined;
    for (0..20_000) |_| {
        const len = r.uintLessThan(usize, buf.len);
        r.bytes(buf[0..len]);
        decodeAndFree(buf[0..len]);
    }
    var soup: [6][]const u8 = undefined;
    var spans: [3][]const u8 = undefined;
    for (0..3_000) |_| {
        for (&spans) |*s| {
            for (&soup) |*x| x.* = pool[r.uintLessThan(usize, pool.len)];
            s.* = mk.cat(&soup);
        }
        decodeAndFree(mk.answer(spans[0 .. r.uintLessThan(usize, 3) + 1]));
    }
}

test "random entries survive encode → decode byte for byte, and their signatures verify" {
    const gpa = std.testing.allocator;
    const protocol = @import("protocol.zig");
    var prng = std.Random.DefaultPrng.init(2024);
    const r = prng.random();
    var bytes: [256]u8 = undefined;
    var hs: [8]Pair = undefined;
    var lowered: [8]Pair = undefined;
    // names as sent, and as the span carries them (lower-cased)
    const names = [_][2][]const u8{ .{ "a", "a" }, .{ "B", "b" }, .{ "x-note", "x-note" }, .{ "Content-Type", "content-type" } };
    for (0..2_000) |_| {
        r.bytes(&bytes); // values are any bytes: UTF-8 or not, CR/LF/NUL included
        var n: usize = 0;
        for (names) |name| for (0..r.uintLessThan(usize, 3)) |_| {
            const off = r.uintLessThan(usize, 200);
            hs[n] = .{ .name = name[0], .value = bytes[off..][0..r.uintLessThan(usize, 40)] };
            lowered[n] = .{ .name = name[1], .value = hs[n].value };
            n += 1;
        };
        var sig: entry.Hex = undefined;
        var e = protocol.testing.signedEntry(&sig);
        e.headers = hs[0..n];
        e.body = bytes[0..r.uintLessThan(usize, bytes.len)];
        e.status = r.int(u16);
        e.response_time_ms = r.int(u63);
        sig = entry.signatureHex(protocol.testing.signing_key, &e);
        const span = try protocol.encode(gpa, &protocol.testing.envelope, &protocol.testing.request, .{ .extract = .{ .entry = &e, .retain_seconds = r.int(u32) } });
        defer gpa.free(span);
        var ans = try decode(gpa, span);
        defer ans.deinit(gpa);
        const got = ans.candidates[0].entry;
        e.headers = lowered[0..n];
        try entry.expectEqualEntries(&e, &got);
        try std.testing.expect(entry.verify(protocol.testing.signing_key, &got));
    }
}
