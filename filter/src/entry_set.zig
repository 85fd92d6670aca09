//! Compact binary form of the variant entries of one key, for the in-proxy L1 held in Envoy's
//! shared data. Cheap to decode: every slice of a decoded entry (key, variant, signature, header
//! names and values, body) borrows the input bytes; only the entry and header arrays are
//! allocated. The decoder is total: any byte string gives entries or an error, never a trap.
//!
//! Layout (all integers little-endian):
//!
//! ```
//! "SPCE" u8 version (1) u16 count (0..64)
//! count × entry:
//!   u16 status  u64 request_time_ms  u64 response_time_ms
//!   u32 len + key   u32 len + variant   u32 len + signature
//!   u32 header count (0..2048), then per header: u32 len + name, u32 len + value
//!   u32 len + body
//! ```
//! and nothing after the last entry.
const std = @import("std");
const entry = @import("entry.zig");

const Entry = entry.Entry;
const Pair = entry.Pair;

/// First bytes of every set.
pub const magic = "SPCE";

/// Layout version written after the magic; a set of another version is refused.
pub const version: u8 = 1;

const header_len = magic.len + 1 + 2;

/// Errors of encoding a set.
pub const EncodeError = error{ OutOfMemory, TooLarge };

/// Errors of decoding a set: BadMagic (not a set, or another layout version), Truncated (a length
/// runs past the end), Malformed (a count over its bound, or bytes after the last entry).
pub const DecodeError = error{ OutOfMemory, BadMagic, Truncated, Malformed };

fn entrySize(e: *const Entry) usize {
    var n: usize = 2 + 8 + 8 + 4 + e.key.len + 4 + e.variant.len + 4 + e.signature.len + 4 + 4 + e.body.len;
    for (e.headers) |p| n += 8 + p.name.len + p.value.len;
    return n;
}

fn fitsU32(n: usize) bool {
    return n <= std.math.maxInt(u32);
}

/// Bytes `writeSet` needs for `entries`; TooLarge when there are more than `entry.max_variants`
/// entries, an entry has more than `entry.max_header_values` headers, or a slice exceeds 4 GiB.
pub fn setSize(entries: []const Entry) error{TooLarge}!usize {
    if (entries.len > entry.max_variants) return error.TooLarge;
    var n: usize = header_len;
    for (entries) |*e| {
        if (e.headers.len > entry.max_header_values) return error.TooLarge;
        for ([_][]const u8{ e.key, e.variant, e.signature, e.body }) |s| if (!fitsU32(s.len)) return error.TooLarge;
        for (e.headers) |p| if (!fitsU32(p.name.len) or !fitsU32(p.value.len)) return error.TooLarge;
        n = std.math.add(usize, n, entrySize(e)) catch return error.TooLarge;
    }
    return n;
}

const Out = struct {
    buf: []u8,
    pos: usize = 0,

    fn int(o: *Out, comptime T: type, v: T) void {
        std.mem.writeInt(T, o.buf[o.pos..][0..@sizeOf(T)], v, .little);
        o.pos += @sizeOf(T);
    }

    fn slice(o: *Out, b: []const u8) void {
        o.int(u32, @intCast(b.len));
        @memcpy(o.buf[o.pos..][0..b.len], b);
        o.pos += b.len;
    }
};

/// Writes `entries` into `buf`, whose length must be exactly `setSize(entries)`.
pub fn writeSet(buf: []u8, entries: []const Entry) void {
    var o: Out = .{ .buf = buf };
    @memcpy(buf[0..magic.len], magic);
    o.pos = magic.len;
    o.int(u8, version);
    o.int(u16, @intCast(entries.len));
    for (entries) |e| {
        o.int(u16, e.status);
        o.int(u64, e.request_time_ms);
        o.int(u64, e.response_time_ms);
        o.slice(e.key);
        o.slice(e.variant);
        o.slice(e.signature);
        o.int(u32, @intCast(e.headers.len));
        for (e.headers) |p| {
            o.slice(p.name);
            o.slice(p.value);
        }
        o.slice(e.body);
    }
    std.debug.assert(o.pos == buf.len);
}

/// Encodes `entries` as one set; the caller frees the result with `gpa`.
pub fn encodeSet(gpa: std.mem.Allocator, entries: []const Entry) EncodeError![]u8 {
    const buf = try gpa.alloc(u8, try setSize(entries));
    writeSet(buf, entries);
    return buf;
}

/// Decoded entries; every slice inside borrows the set's bytes. Free with `deinit`.
pub const Set = struct {
    entries: []Entry,
    pairs: []Pair,

    /// Frees the entry and header arrays (not the bytes they borrow).
    pub fn deinit(self: *Set, gpa: std.mem.Allocator) void {
        gpa.free(self.entries);
        gpa.free(self.pairs);
    }
};

const In = struct {
    buf: []const u8,
    pos: usize,

    fn int(in: *In, comptime T: type) error{Truncated}!T {
        if (in.buf.len - in.pos < @sizeOf(T)) return error.Truncated;
        const v = std.mem.readInt(T, in.buf[in.pos..][0..@sizeOf(T)], .little);
        in.pos += @sizeOf(T);
        return v;
    }

    fn slice(in: *In) error{Truncated}![]const u8 {
        const len = try in.int(u32);
        if (in.buf.len - in.pos < len) return error.Truncated;
        const b = in.buf[in.pos..][0..len];
        in.pos += len;
        return b;
    }
};

/// Reads one entry and returns it with its header count; when `pairs` is given (the rest of the
/// header array), the headers are stored at its start and `headers` points at them.
fn readEntry(in: *In, pairs: ?[]Pair) DecodeError!struct { Entry, usize } {
    var e: Entry = .{ .key = "", .status = try in.int(u16), .request_time_ms = try in.int(u64), .response_time_ms = try in.int(u64) };
    e.key = try in.slice();
    e.variant = try in.slice();
    e.signature = try in.slice();
    const n = try in.int(u32);
    if (n > entry.max_header_values) return error.Malformed;
    if (pairs) |ps| if (ps.len < n) return error.Malformed;
    for (0..n) |i| {
        const p: Pair = .{ .name = try in.slice(), .value = try in.slice() };
        if (pairs) |ps| ps[i] = p;
    }
    if (pairs) |ps| e.headers = ps[0..n];
    e.body = try in.slice();
    return .{ e, n };
}

/// Decodes a set written by `writeSet`. Two passes over the bytes: the first checks the framing
/// and counts the headers, the second fills one entry array and one header array.
pub fn decodeSet(gpa: std.mem.Allocator, bytes: []const u8) DecodeError!Set {
    if (bytes.len < header_len or !std.mem.eql(u8, bytes[0..magic.len], magic) or bytes[magic.len] != version)
        return error.BadMagic;
    const count = std.mem.readInt(u16, bytes[magic.len + 1 ..][0..2], .little);
    if (count > entry.max_variants) return error.Malformed;
    var in: In = .{ .buf = bytes, .pos = header_len };
    var total: usize = 0;
    for (0..count) |_| total += (try readEntry(&in, null))[1];
    if (in.pos != bytes.len) return error.Malformed;

    const entries = try gpa.alloc(Entry, count);
    errdefer gpa.free(entries);
    const pairs = try gpa.alloc(Pair, total);
    errdefer gpa.free(pairs);
    in.pos = header_len;
    var used: usize = 0;
    for (entries) |*e| {
        const got = try readEntry(&in, pairs[used..]);
        e.* = got[0];
        used += got[1];
    }
    return .{ .entries = entries, .pairs = pairs };
}

fn testEntries() [2]Entry {
    const hs1 = &[_]Pair{ .{ .name = "content-type", .value = "text/plain" }, .{ .name = "x-note", .value = "caf\xe9" } };
    return .{
        .{ .key = "k", .variant = "", .status = 200, .request_time_ms = 1, .response_time_ms = 2, .headers = hs1, .body = "hello", .signature = "sig" },
        .{ .key = "k", .variant = "v", .status = 404, .request_time_ms = std.math.maxInt(u64), .response_time_ms = 0, .headers = &.{}, .body = "" },
    };
}

test "set round trip; the body is a slice of the set bytes" {
    const gpa = std.testing.allocator;
    const in = testEntries();
    const bytes = try encodeSet(gpa, &in);
    defer gpa.free(bytes);
    var set = try decodeSet(gpa, bytes);
    defer set.deinit(gpa);
    try std.testing.expectEqual(@as(usize, 2), set.entries.len);
    for (&in, set.entries) |*want, *got| try entry.expectEqualEntries(want, got);
    const body = set.entries[0].body;
    try std.testing.expect(@intFromPtr(body.ptr) >= @intFromPtr(bytes.ptr) and @intFromPtr(body.ptr) < @intFromPtr(bytes.ptr) + bytes.len);

    var none: [header_len]u8 = undefined;
    writeSet(&none, &.{});
    var empty = try decodeSet(gpa, &none);
    defer empty.deinit(gpa);
    try std.testing.expectEqual(@as(usize, 0), empty.entries.len);
}

test "set decoder refuses other versions, trailing bytes and counts over bounds" {
    const gpa = std.testing.allocator;
    const in = testEntries();
    const bytes = try encodeSet(gpa, &in);
    defer gpa.free(bytes);
    const copy = try gpa.dupe(u8, bytes);
    defer gpa.free(copy);
    copy[4] = 2;
    try std.testing.expectError(error.BadMagic, decodeSet(gpa, copy));
    try std.testing.expectError(error.BadMagic, decodeSet(gpa, "SPC"));
    const longer = try std.mem.concat(gpa, u8, &.{ bytes, "x" });
    defer gpa.free(longer);
    try std.testing.expectError(error.Malformed, decodeSet(gpa, longer));
    try std.testing.expectError(error.Truncated, decodeSet(gpa, bytes[0 .. bytes.len - 1]));
    try std.testing.expectError(error.Malformed, decodeSet(gpa, "SPCE\x01\x41\x00"));
    var too_many: [entry.max_variants + 1]Entry = undefined;
    for (&too_many) |*e| e.* = in[1];
    try std.testing.expectError(error.TooLarge, encodeSet(gpa, &too_many));
}

test "set decoder is total: every truncation, random flips, random bytes" {
    const gpa = std.testing.allocator;
    const in = testEntries();
    const bytes = try encodeSet(gpa, &in);
    defer gpa.free(bytes);
    for (0..bytes.len) |n| {
        if (decodeSet(gpa, bytes[0..n])) |s| {
            var set = s;
            set.deinit(gpa);
            return error.TestUnexpectedResult; // a strict prefix is never a whole set
        } else |_| {}
    }
    var prng = std.Random.DefaultPrng.init(11);
    const r = prng.random();
    const copy = try gpa.dupe(u8, bytes);
    defer gpa.free(copy);
    for (0..20_000) |_| {
        @memcpy(copy, bytes);
        for (0..r.uintLessThan(usize, 4) + 1) |_| copy[r.uintLessThan(usize, copy.len)] = r.int(u8);
        if (decodeSet(gpa, copy)) |s| {
            var set = s;
            set.deinit(gpa);
        } else |_| {}
    }
    var buf: [96]u8 = undefined;
    for (0..20_000) |_| {
        const len = r.uintLessThan(usize, buf.len);
        r.bytes(buf[0..len]);
        if (len >= header_len and r.boolean()) {
            @memcpy(buf[0..4], magic);
            buf[4] = version;
            buf[5] = r.uintLessThan(u8, 3);
            buf[6] = 0;
        }
        if (decodeSet(gpa, buf[0..len])) |s| {
            var set = s;
            set.deinit(gpa);
        } else |_| {}
    }
}
