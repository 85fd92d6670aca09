//! The L1's payload for one key: its variant entries *prepared* for the hit path. Everything a
//! fresh hit needs is computed when the entry is written — the freshness lifetime and initial age
//! (RFC 9111 §4.2), the directives that decide stale reuse, the reply's header map already in the
//! proxy-wasm wire format — so that serving it parses no header and hashes nothing. The full
//! entries (their headers as stored, for revalidation, 304s, Vary and the other slow paths) follow
//! in the entry_set format, without their bodies: each body is kept once, in the prepared part.
//!
//! Layout (integers little-endian):
//! ```
//! "SPP1" u8 version u16 count
//! count × { u16 status  u64 response_time_ms  u64 initial_age_ms  u32 lifetime_s  u32 cfg_tag
//!           u8 flags  u32 swr  u32 sie  (0xffffffff: none)  u32 map_len map  u32 body_len body }
//! u32 set_len  entry_set bytes (the same entries, same order, bodies empty)
//! ```
//! The decoders are total: any bytes give a value or an error, never a trap.
const std = @import("std");
const entry = @import("entry.zig");
const entry_set = @import("entry_set.zig");

const Entry = entry.Entry;
const magic = "SPP1";
const version: u8 = 1;
const none: u32 = 0xffff_ffff;
const fixed_entry_len = 2 + 8 + 8 + 4 + 4 + 1 + 4 + 4;

/// What the hit path reads of a response's directives (RFC 9111 §5.2.2).
pub const Flags = packed struct(u8) {
    /// must-revalidate, proxy-revalidate or s-maxage: never served stale
    forbids_stale: bool = false,
    /// unqualified no-cache: always revalidated
    no_cache: bool = false,
    /// the response has a Vary: variant selection needs the full entry
    has_vary: bool = false,
    /// the response has a Content-Encoding other than identity
    has_coding: bool = false,
    /// ETag or Last-Modified
    has_validator: bool = false,
    _pad: u3 = 0,
};

/// One prepared entry; `map` and `body` borrow the payload bytes.
pub const Fast = struct {
    status: u16,
    /// Unix ms (RFC 9111 §4.2.3 response_time)
    response_time_ms: u64,
    /// corrected initial age, ms
    initial_age_ms: u64,
    /// freshness lifetime, seconds
    lifetime_s: u32,
    /// the configuration these figures were computed under (`Root.cfg_tag`)
    cfg_tag: u32,
    flags: Flags,
    /// stale-while-revalidate / stale-if-error, seconds
    swr: ?u32,
    sie: ?u32,
    /// the reply's header fields (stored fields minus Content-Length, Age, x-sp-cache), encoded
    map: []const u8,
    body: []const u8,
};

/// Errors of decoding a payload.
pub const DecodeError = error{ BadMagic, Truncated, Malformed, OutOfMemory };

/// Bytes `encode` writes.
fn size(fast: []const Fast, set_len: usize) usize {
    var n: usize = 4 + 1 + 2 + 4 + set_len;
    for (fast) |f| n += fixed_entry_len + 4 + f.map.len + 4 + f.body.len;
    return n;
}

/// Encodes prepared entries and their full entries (same order; the full entries' bodies are
/// dropped, the prepared ones keep them). Caller frees with `gpa`.
pub fn encode(gpa: std.mem.Allocator, fast: []const Fast, full: []const Entry) (entry_set.EncodeError || error{Mismatch})![]u8 {
    if (fast.len != full.len or fast.len > entry.max_variants) return error.Mismatch;
    const bodiless = try gpa.alloc(Entry, full.len);
    defer gpa.free(bodiless);
    for (full, bodiless) |e, *b| {
        b.* = e;
        b.body = "";
    }
    const set_len = try entry_set.setSize(bodiless);
    const out = try gpa.alloc(u8, size(fast, set_len));
    var w: usize = 0;
    @memcpy(out[0..4], magic);
    out[4] = version;
    std.mem.writeInt(u16, out[5..7], @intCast(fast.len), .little);
    w = 7;
    for (fast) |f| {
        std.mem.writeInt(u16, out[w..][0..2], f.status, .little);
        std.mem.writeInt(u64, out[w + 2 ..][0..8], f.response_time_ms, .little);
        std.mem.writeInt(u64, out[w + 10 ..][0..8], f.initial_age_ms, .little);
        std.mem.writeInt(u32, out[w + 18 ..][0..4], f.lifetime_s, .little);
        std.mem.writeInt(u32, out[w + 22 ..][0..4], f.cfg_tag, .little);
        out[w + 26] = @bitCast(f.flags);
        std.mem.writeInt(u32, out[w + 27 ..][0..4], f.swr orelse none, .little);
        std.mem.writeInt(u32, out[w + 31 ..][0..4], f.sie orelse none, .little);
        w += fixed_entry_len;
        w = putBytes(out, w, f.map);
        w = putBytes(out, w, f.body);
    }
    std.mem.writeInt(u32, out[w..][0..4], @intCast(set_len), .little);
    w += 4;
    entry_set.writeSet(out[w..][0..set_len], bodiless);
    std.debug.assert(w + set_len == out.len);
    return out;
}

fn putBytes(out: []u8, at: usize, b: []const u8) usize {
    std.mem.writeInt(u32, out[at..][0..4], @intCast(b.len), .little);
    @memcpy(out[at + 4 ..][0..b.len], b);
    return at + 4 + b.len;
}

/// Walks the prepared entries of a payload without allocating.
pub const Iterator = struct {
    buf: []const u8,
    pos: usize,
    left: u16,

    /// The next prepared entry, null after the last; an error on malformed bytes.
    pub fn next(it: *Iterator) DecodeError!?Fast {
        if (it.left == 0) return null;
        it.left -= 1;
        const b = it.buf;
        if (b.len - it.pos < fixed_entry_len) return error.Truncated;
        const p = it.pos;
        var f: Fast = .{
            .status = std.mem.readInt(u16, b[p..][0..2], .little),
            .response_time_ms = std.mem.readInt(u64, b[p + 2 ..][0..8], .little),
            .initial_age_ms = std.mem.readInt(u64, b[p + 10 ..][0..8], .little),
            .lifetime_s = std.mem.readInt(u32, b[p + 18 ..][0..4], .little),
            .cfg_tag = std.mem.readInt(u32, b[p + 22 ..][0..4], .little),
            .flags = @bitCast(b[p + 26]),
            .swr = opt(std.mem.readInt(u32, b[p + 27 ..][0..4], .little)),
            .sie = opt(std.mem.readInt(u32, b[p + 31 ..][0..4], .little)),
            .map = undefined,
            .body = undefined,
        };
        it.pos = p + fixed_entry_len;
        f.map = try it.bytes();
        f.body = try it.bytes();
        return f;
    }

    fn bytes(it: *Iterator) DecodeError![]const u8 {
        if (it.buf.len - it.pos < 4) return error.Truncated;
        const n = std.mem.readInt(u32, it.buf[it.pos..][0..4], .little);
        it.pos += 4;
        if (n > it.buf.len - it.pos) return error.Truncated;
        defer it.pos += n;
        return it.buf[it.pos..][0..n];
    }
};

fn opt(v: u32) ?u32 {
    return if (v == none) null else v;
}

/// An iterator over the prepared entries of `payload`.
pub fn iterate(payload: []const u8) DecodeError!Iterator {
    if (payload.len < 7 or !std.mem.eql(u8, payload[0..4], magic) or payload[4] != version) return error.BadMagic;
    const count = std.mem.readInt(u16, payload[5..7], .little);
    if (count > entry.max_variants) return error.Malformed;
    return .{ .buf = payload, .pos = 7, .left = count };
}

/// The full entries of `payload`, bodies put back from the prepared part; slices borrow the
/// payload. Free with `Set.deinit`.
pub fn decodeFull(gpa: std.mem.Allocator, payload: []const u8) DecodeError!entry_set.Set {
    var it = try iterate(payload);
    var bodies: [entry.max_variants][]const u8 = undefined;
    var n: usize = 0;
    while (try it.next()) |f| : (n += 1) bodies[n] = f.body;
    if (payload.len - it.pos < 4) return error.Truncated;
    const set_len = std.mem.readInt(u32, payload[it.pos..][0..4], .little);
    const at = it.pos + 4;
    if (set_len != payload.len - at) return error.Malformed;
    var set = entry_set.decodeSet(gpa, payload[at..]) catch |e| return switch (e) {
        error.OutOfMemory => error.OutOfMemory,
        error.BadMagic => error.BadMagic,
        error.Truncated => error.Truncated,
        error.Malformed => error.Malformed,
    };
    if (set.entries.len != n) {
        set.deinit(gpa);
        return error.Malformed;
    }
    for (set.entries, bodies[0..n]) |*e, body| e.body = body;
    return set;
}

const t = std.testing;

test "encode, iterate the fast part, decode the full entries with their bodies" {
    const hs = [_]entry.Pair{ .{ .name = "content-type", .value = "text/plain" }, .{ .name = "etag", .value = "\"a\"" } };
    const full = [_]Entry{
        .{ .key = "k", .variant = "", .status = 200, .request_time_ms = 1, .response_time_ms = 2, .headers = &hs, .body = "hello", .signature = "s" },
        .{ .key = "k", .variant = "v", .status = 404, .request_time_ms = 3, .response_time_ms = 4, .body = "" },
    };
    const fast = [_]Fast{
        .{ .status = 200, .response_time_ms = 2, .initial_age_ms = 7, .lifetime_s = 60, .cfg_tag = 9, .flags = .{ .has_validator = true }, .swr = null, .sie = 30, .map = "MAP", .body = "hello" },
        .{ .status = 404, .response_time_ms = 4, .initial_age_ms = 0, .lifetime_s = 0, .cfg_tag = 9, .flags = .{ .has_vary = true }, .swr = 5, .sie = null, .map = "", .body = "" },
    };
    const bytes = try encode(t.allocator, &fast, &full);
    defer t.allocator.free(bytes);
    var it = try iterate(bytes);
    const a = (try it.next()).?;
    try t.expectEqual(@as(u32, 60), a.lifetime_s);
    try t.expectEqual(@as(?u32, 30), a.sie);
    try t.expect(a.flags.has_validator and !a.flags.has_vary);
    try t.expectEqualStrings("MAP", a.map);
    try t.expectEqualStrings("hello", a.body);
    const b = (try it.next()).?;
    try t.expectEqual(@as(?u32, 5), b.swr);
    try t.expect((try it.next()) == null);
    var set = try decodeFull(t.allocator, bytes);
    defer set.deinit(t.allocator);
    try t.expectEqual(@as(usize, 2), set.entries.len);
    try t.expectEqualStrings("hello", set.entries[0].body);
    try t.expectEqualStrings("\"a\"", set.entries[0].headers[1].value);
    try t.expectEqual(@as(u16, 404), set.entries[1].status);
}

test "decoders are total on truncations and random bytes" {
    const full = [_]Entry{.{ .key = "k", .status = 200, .request_time_ms = 1, .response_time_ms = 2, .body = "xyz" }};
    const fast = [_]Fast{.{ .status = 200, .response_time_ms = 2, .initial_age_ms = 0, .lifetime_s = 1, .cfg_tag = 0, .flags = .{}, .swr = null, .sie = null, .map = "m", .body = "xyz" }};
    const bytes = try encode(t.allocator, &fast, &full);
    defer t.allocator.free(bytes);
    for (0..bytes.len) |n| {
        if (decodeFull(t.allocator, bytes[0..n])) |s| {
            var set = s;
            set.deinit(t.allocator);
        } else |_| {}
        if (iterate(bytes[0..n])) |i| {
            var it = i;
            while (it.next() catch null) |_| {}
        } else |_| {}
    }
    var prng = std.Random.DefaultPrng.init(3);
    const copy = try t.allocator.dupe(u8, bytes);
    defer t.allocator.free(copy);
    for (0..3000) |_| {
        @memcpy(copy, bytes);
        copy[prng.random().uintLessThan(usize, copy.len)] = prng.random().int(u8);
        if (decodeFull(t.allocator, copy)) |s| {
            var set = s;
            set.deinit(t.allocator);
        } else |_| {}
    }
}
