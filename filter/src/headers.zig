//! Proxy-wasm header-map wire format and small header helpers (pure, no host calls).
//!
//! Wire format (proxy-wasm ABI 0.2.1): u32le pair count, then per pair u32le name length and
//! u32le value length, then per pair the name bytes, a NUL, the value bytes, a NUL.
const std = @import("std");

/// One header as the host gives it: names are lower case in Envoy; slices borrow the map bytes.
pub const Pair = struct {
    name: []const u8,
    value: []const u8,
};

/// Errors from decoding a serialized header map.
pub const DecodeError = error{ Truncated, Malformed, OutOfMemory };

/// Decodes a serialized header map. The returned pairs borrow `bytes`; the caller frees the
/// returned slice with `gpa`. Total: any byte string gives pairs or an error.
pub fn decodeMap(gpa: std.mem.Allocator, bytes: []const u8) DecodeError![]Pair {
    if (bytes.len == 0) return try gpa.alloc(Pair, 0);
    if (bytes.len < 4) return error.Truncated;
    const n = std.mem.readInt(u32, bytes[0..4], .little);
    // each pair needs at least 8 bytes of sizes and 2 NULs
    if (n > (bytes.len - 4) / 10) return error.Malformed;
    const pairs = try gpa.alloc(Pair, n);
    errdefer gpa.free(pairs);
    var data: usize = 4 + @as(usize, n) * 8;
    for (pairs, 0..) |*p, i| {
        const off = 4 + i * 8;
        const nl = std.mem.readInt(u32, bytes[off..][0..4], .little);
        const vl = std.mem.readInt(u32, bytes[off + 4 ..][0..4], .little);
        if (nl > bytes.len or vl > bytes.len) return error.Truncated;
        if (bytes.len - data < @as(usize, nl) + vl + 2) return error.Truncated;
        p.name = bytes[data..][0..nl];
        data += nl;
        if (bytes[data] != 0) return error.Malformed;
        data += 1;
        p.value = bytes[data..][0..vl];
        data += vl;
        if (bytes[data] != 0) return error.Malformed;
        data += 1;
    }
    return pairs;
}

/// Encodes pairs into the proxy-wasm map format; caller frees with `gpa`.
pub fn encodeMap(gpa: std.mem.Allocator, pairs: []const Pair) error{OutOfMemory}![]u8 {
    var size: usize = 4 + pairs.len * 8;
    for (pairs) |p| size += p.name.len + p.value.len + 2;
    const out = try gpa.alloc(u8, size);
    std.mem.writeInt(u32, out[0..4], @intCast(pairs.len), .little);
    var data: usize = 4 + pairs.len * 8;
    for (pairs, 0..) |p, i| {
        std.mem.writeInt(u32, out[4 + i * 8 ..][0..4], @intCast(p.name.len), .little);
        std.mem.writeInt(u32, out[8 + i * 8 ..][0..4], @intCast(p.value.len), .little);
        @memcpy(out[data..][0..p.name.len], p.name);
        data += p.name.len;
        out[data] = 0;
        data += 1;
        @memcpy(out[data..][0..p.value.len], p.value);
        data += p.value.len;
        out[data] = 0;
        data += 1;
    }
    return out;
}

/// `map` (an encoded header map, as `encodeMap` writes it) with `extra` appended; caller frees
/// with `gpa`. Errors: `map` is not a well-formed map (Malformed), or no memory.
pub fn appendToMap(gpa: std.mem.Allocator, map: []const u8, extra: []const Pair) error{ OutOfMemory, Malformed }![]u8 {
    const n: usize = if (map.len < 4) 0 else std.mem.readInt(u32, map[0..4], .little);
    if ((map.len != 0 and map.len < 4) or n > (map.len -| 4) / 8) return error.Malformed;
    const sizes = if (map.len == 0) map[0..0] else map[4..][0 .. n * 8];
    const data = if (map.len == 0) map[0..0] else map[4 + n * 8 ..];
    var extra_len: usize = 0;
    for (extra) |p| extra_len += 8 + p.name.len + p.value.len + 2;
    const out = try gpa.alloc(u8, 4 + sizes.len + data.len + extra_len);
    std.mem.writeInt(u32, out[0..4], @intCast(n + extra.len), .little);
    @memcpy(out[4..][0..sizes.len], sizes);
    var at = 4 + sizes.len;
    for (extra) |p| {
        std.mem.writeInt(u32, out[at..][0..4], @intCast(p.name.len), .little);
        std.mem.writeInt(u32, out[at + 4 ..][0..4], @intCast(p.value.len), .little);
        at += 8;
    }
    @memcpy(out[at..][0..data.len], data);
    at += data.len;
    for (extra) |p| {
        @memcpy(out[at..][0..p.name.len], p.name);
        at += p.name.len;
        out[at] = 0;
        @memcpy(out[at + 1 ..][0..p.value.len], p.value);
        at += 1 + p.value.len;
        out[at] = 0;
        at += 1;
    }
    return out;
}

/// First value of header `name` (case-insensitive), or null.
pub fn get(pairs: []const Pair, name: []const u8) ?[]const u8 {
    for (pairs) |p| if (std.ascii.eqlIgnoreCase(p.name, name)) return p.value;
    return null;
}

/// Number of values of header `name` (case-insensitive).
pub fn count(pairs: []const Pair, name: []const u8) usize {
    var n: usize = 0;
    for (pairs) |p| {
        if (std.ascii.eqlIgnoreCase(p.name, name)) n += 1;
    }
    return n;
}

/// True for hop-by-hop headers (RFC 9110 §7.6.1) and others that must never be replayed.
pub fn isHopByHop(name: []const u8) bool {
    const hop = [_][]const u8{
        "connection", "keep-alive", "proxy-connection",   "transfer-encoding",   "upgrade",
        "te",         "trailer",    "proxy-authenticate", "proxy-authorization",
    };
    for (hop) |h| if (std.ascii.eqlIgnoreCase(name, h)) return true;
    return false;
}

/// True if `name` appears (case-insensitively) in `list`.
pub fn inList(list: []const []const u8, name: []const u8) bool {
    for (list) |l| if (std.ascii.eqlIgnoreCase(l, name)) return true;
    return false;
}

/// Iterates comma-separated list elements of a header value (RFC 9110 §5.6.1), trimmed.
pub const ListIterator = struct {
    rest: []const u8,

    /// Next non-empty element, or null.
    pub fn next(self: *ListIterator) ?[]const u8 {
        while (self.rest.len > 0) {
            const comma = std.mem.indexOfScalar(u8, self.rest, ',') orelse self.rest.len;
            const item = std.mem.trim(u8, self.rest[0..comma], " \t");
            self.rest = if (comma < self.rest.len) self.rest[comma + 1 ..] else self.rest[self.rest.len..];
            if (item.len > 0) return item;
        }
        return null;
    }
};

/// Iterates the values of every field line named `name` (case-insensitive), in order.
pub const ValueIterator = struct {
    pairs: []const Pair,
    name: []const u8,
    i: usize = 0,

    /// Next value of a line named `name`, or null.
    pub fn next(self: *ValueIterator) ?[]const u8 {
        while (self.i < self.pairs.len) {
            const p = self.pairs[self.i];
            self.i += 1;
            if (std.ascii.eqlIgnoreCase(p.name, self.name)) return p.value;
        }
        return null;
    }
};

/// Like `ListIterator`, but a comma inside a quoted-string (RFC 9110 §5.6.4, with `\` escapes)
/// does not split. Elements are trimmed of SP/HTAB; empty elements are skipped.
pub const QuotedListIterator = struct {
    rest: []const u8,

    /// Next non-empty element, or null. An unterminated quoted-string runs to the end.
    pub fn next(self: *QuotedListIterator) ?[]const u8 {
        while (self.rest.len > 0) {
            var i: usize = 0;
            var quoted = false;
            while (i < self.rest.len) : (i += 1) {
                const ch = self.rest[i];
                if (quoted and ch == '\\') {
                    i += 1;
                } else if (ch == '"') {
                    quoted = !quoted;
                } else if (ch == ',' and !quoted) break;
            }
            const end = @min(i, self.rest.len);
            const item = std.mem.trim(u8, self.rest[0..end], " \t");
            self.rest = self.rest[@min(end + 1, self.rest.len)..];
            if (item.len > 0) return item;
        }
        return null;
    }
};

/// Iterates the list members (RFC 9110 §5.6.1) of every line of field `name`, in order, as if
/// the lines were one comma-joined value; commas inside quoted-strings do not split.
pub const MemberIterator = struct {
    lines: ValueIterator,
    current: QuotedListIterator = .{ .rest = "" },

    /// Members of field `name` (case-insensitive) in `pairs`.
    pub fn init(pairs: []const Pair, name: []const u8) MemberIterator {
        return .{ .lines = .{ .pairs = pairs, .name = name } };
    }

    /// Next non-empty member, or null.
    pub fn next(self: *MemberIterator) ?[]const u8 {
        while (true) {
            if (self.current.next()) |m| return m;
            self.current = .{ .rest = self.lines.next() orelse return null };
        }
    }
};

test "map round trip" {
    const gpa = std.testing.allocator;
    const in = [_]Pair{ .{ .name = ":status", .value = "200" }, .{ .name = "a", .value = "" }, .{ .name = "a", .value = "x" } };
    const bytes = try encodeMap(gpa, &in);
    defer gpa.free(bytes);
    const out = try decodeMap(gpa, bytes);
    defer gpa.free(out);
    try std.testing.expectEqual(@as(usize, 3), out.len);
    try std.testing.expectEqualStrings("200", out[0].value);
    try std.testing.expectEqualStrings("x", out[2].value);
    try std.testing.expectEqual(@as(usize, 2), count(out, "A"));
}

test "appendToMap equals encoding the pairs and the extra together" {
    const gpa = std.testing.allocator;
    const in = [_]Pair{ .{ .name = "a", .value = "1" }, .{ .name = "bb", .value = "" } };
    const extra = [_]Pair{ .{ .name = "age", .value = "7" }, .{ .name = "x", .value = "HIT" } };
    const all = [_]Pair{ in[0], in[1], extra[0], extra[1] };
    const map = try encodeMap(gpa, &in);
    defer gpa.free(map);
    const got = try appendToMap(gpa, map, &extra);
    defer gpa.free(got);
    const want = try encodeMap(gpa, &all);
    defer gpa.free(want);
    try std.testing.expectEqualSlices(u8, want, got);
    const empty = try appendToMap(gpa, "", &extra);
    defer gpa.free(empty);
    const want2 = try encodeMap(gpa, &extra);
    defer gpa.free(want2);
    try std.testing.expectEqualSlices(u8, want2, empty);
    try std.testing.expectError(error.Malformed, appendToMap(gpa, "\x09\x00\x00\x00", &extra));
}

test "decodeMap is total on garbage" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(42);
    var buf: [64]u8 = undefined;
    for (0..2000) |_| {
        const len = prng.random().uintLessThan(usize, buf.len);
        prng.random().bytes(buf[0..len]);
        if (len >= 4 and prng.random().boolean()) std.mem.writeInt(u32, buf[0..4], prng.random().uintLessThan(u32, 4), .little);
        if (decodeMap(gpa, buf[0..len])) |p| gpa.free(p) else |_| {}
    }
}

test "list iterator" {
    var it = ListIterator{ .rest = " no-cache, ,max-age=5 ," };
    try std.testing.expectEqualStrings("no-cache", it.next().?);
    try std.testing.expectEqualStrings("max-age=5", it.next().?);
    try std.testing.expect(it.next() == null);
}

test "quoted list iterator keeps commas inside quotes" {
    var it = QuotedListIterator{ .rest = "no-cache=\"a, b\", ,x=\"q\\\"r,s\", y, \"open," };
    try std.testing.expectEqualStrings("no-cache=\"a, b\"", it.next().?);
    try std.testing.expectEqualStrings("x=\"q\\\"r,s\"", it.next().?);
    try std.testing.expectEqualStrings("y", it.next().?);
    try std.testing.expectEqualStrings("\"open,", it.next().?);
    try std.testing.expect(it.next() == null);
    var trailing = QuotedListIterator{ .rest = "a\\" };
    try std.testing.expectEqualStrings("a\\", trailing.next().?);
}

test "value iterator walks every line of one field" {
    const pairs = [_]Pair{ .{ .name = "Vary", .value = "a" }, .{ .name = "x", .value = "y" }, .{ .name = "vary", .value = "b" } };
    var it = ValueIterator{ .pairs = &pairs, .name = "vary" };
    try std.testing.expectEqualStrings("a", it.next().?);
    try std.testing.expectEqualStrings("b", it.next().?);
    try std.testing.expect(it.next() == null);
}

test "member iterator spans lines" {
    const pairs = [_]Pair{ .{ .name = "Vary", .value = "a, \"b,c\"" }, .{ .name = "x", .value = "y" }, .{ .name = "vary", .value = "" }, .{ .name = "vary", .value = " d " } };
    var it = MemberIterator.init(&pairs, "VARY");
    try std.testing.expectEqualStrings("a", it.next().?);
    try std.testing.expectEqualStrings("\"b,c\"", it.next().?);
    try std.testing.expectEqualStrings("d", it.next().?);
    try std.testing.expect(it.next() == null);
}
