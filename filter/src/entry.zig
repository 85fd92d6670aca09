//! The cached response as the filter stores, signs, checks and serves it (docs/protocol.md
//! "Entry signature"; docs/security.md). Pure: no host calls. The variant hash is http/vary.zig.
//!
//! An entry's `headers` are in the order of the span that carries them: grouped by name (every
//! value of one name adjacent, names in first-occurrence order), because a span holds one
//! attribute per header name. The signature covers them in that order; `groupHeaders` turns the
//! wire order of a response into it.
const std = @import("std");
const headers = @import("headers.zig");
const fingerprint = @import("fingerprint.zig");

const Blake2b256 = std.crypto.hash.blake2.Blake2b256;

/// One header: name and value bytes, borrowed.
pub const Pair = headers.Pair;

/// 64 lower-case hex characters.
pub const Hex = fingerprint.Hex;

/// Tag hashed first into every entry signature; changing the signed layout means changing it.
pub const signature_tag = "sp-istio-cache/entry/1";

/// Most variants (entries) kept for one key: the ceiling of plugin config `max_variants`, the most
/// spans a lookup answer may hold, the most entries of an L1 set.
pub const max_variants = 64;

/// Most header values one entry may carry; a candidate or an L1 record with more is refused.
pub const max_header_values = 2048;

/// `n` copies of byte `c`, made at compile time (test data: keys, signatures).
pub fn repeat(comptime c: u8, comptime n: usize) *const [n]u8 {
    const a: [n]u8 = comptime @splat(c);
    return &a;
}

/// A stored response and the metadata the filter signs. Every slice is borrowed.
pub const Entry = struct {
    /// primary cache key (`sp.cache.key`, 64 lower-case hex) the entry is stored under
    key: []const u8,
    /// `sp.cache.variant`: "" when the response has no Vary, else 64 lower-case hex
    variant: []const u8 = "",
    /// response status code
    status: u16,
    /// Unix ms: when the request that produced the response was sent (RFC 9111 §4.2.3)
    request_time_ms: u64,
    /// Unix ms: when the response (or the 304 that freshened it) was received (RFC 9111 §4.2.3)
    response_time_ms: u64,
    /// response headers, grouped by name (see the file comment)
    headers: []const Pair = &.{},
    /// exact response body bytes
    body: []const u8 = "",
    /// `sp.cache.signature` as carried (64 lower-case hex), "" when the entry carries none
    signature: []const u8 = "",
};

/// The MAC key derived from a signing key of any length: BLAKE2b-256 of it (keyed BLAKE2b takes
/// at most 64 key bytes, RFC 7693 §2.5).
pub fn macKey(signing_key: []const u8) [32]u8 {
    var k: [32]u8 = undefined;
    Blake2b256.hash(signing_key, &k, .{});
    return k;
}

/// Keyed BLAKE2b-256 of `e` (RFC 7693 keyed mode, a MAC) under `macKey(signing_key)`, exactly as
/// docs/protocol.md "Entry signature". `e.signature` is not part of it. BLAKE2b, not HMAC-SHA-256:
/// in wasm it hashes about 4x faster (540 vs 137 MB/s, 28 vs 100 instructions per byte measured in
/// wasmtime), and every store and every backend hit MACs the whole body.
pub fn signature(signing_key: []const u8, e: *const Entry) [32]u8 {
    const key = macKey(signing_key);
    var h = Blake2b256.init(.{ .key = &key });
    fingerprint.field(&h, signature_tag);
    fingerprint.field(&h, e.key);
    fingerprint.field(&h, e.variant);
    fingerprint.u64be(&h, e.status);
    fingerprint.u64be(&h, e.request_time_ms);
    fingerprint.u64be(&h, e.response_time_ms);
    fingerprint.u64be(&h, e.headers.len);
    for (e.headers) |p| {
        fingerprint.fieldLower(&h, p.name);
        fingerprint.field(&h, p.value);
    }
    fingerprint.field(&h, e.body);
    var out: [32]u8 = undefined;
    h.final(&out);
    return out;
}

/// `signature` written as 64 lower-case hex characters (the `sp.cache.signature` value).
pub fn signatureHex(signing_key: []const u8, e: *const Entry) Hex {
    return std.fmt.bytesToHex(signature(signing_key, e), .lower);
}

/// True when `e.signature` is the entry's signature under `signing_key`. The comparison takes the
/// same time whatever the carried signature holds (std.crypto.timing_safe); a carried signature
/// that is not 64 characters long is false at once (its length is no secret).
pub fn verify(signing_key: []const u8, e: *const Entry) bool {
    if (e.signature.len != 64) return false;
    const want = signatureHex(signing_key, e);
    return std.crypto.timing_safe.eql(Hex, want, e.signature[0..64].*);
}

/// Why an entry must not be replayed (docs/protocol.md "Entry signature", docs/security.md).
/// The tag names are the filter's counter and log words.
pub const Violation = enum {
    /// status outside 200..599 (1xx are interim, RFC 9110 §15.2)
    bad_status,
    /// a header with an empty name
    empty_header_name,
    /// a pseudo-header (`:status`, ...) among the stored headers (RFC 9113 §8.3)
    pseudo_header,
    /// a name that is not an RFC 9110 §5.1 token (this catches CR, LF, NUL, space, `:`)
    bad_header_name,
    /// a value holding CR, LF or NUL (RFC 9110 §5.5)
    bad_header_value,
    /// a hop-by-hop header (RFC 9110 §7.6.1), never forwarded from a cache
    hop_by_hop,
    /// a content-length that is not exactly the body length in decimal digits (RFC 9110 §8.6)
    content_length_mismatch,
    /// more than `max_replay_headers` header values
    too_many_headers,
};

/// True when `name` is an RFC 9110 §5.6.2 token: one or more tchar.
pub fn isToken(name: []const u8) bool {
    if (name.len == 0) return false;
    for (name) |c| if (!isTchar(c)) return false;
    return true;
}

fn isTchar(c: u8) bool {
    return switch (c) {
        'a'...'z', 'A'...'Z', '0'...'9' => true,
        '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~' => true,
        else => false,
    };
}

/// True when `value` may be sent as a field value: no CR, LF or NUL (obs-text bytes are allowed).
pub fn isSafeValue(value: []const u8) bool {
    return std.mem.indexOfAny(u8, value, "\r\n\x00") == null;
}

fn contentLengthMatches(value: []const u8, body_len: usize) bool {
    if (value.len == 0) return false;
    var n: u64 = 0;
    for (value) |c| {
        if (c < '0' or c > '9') return false;
        n = std.math.mul(u64, n, 10) catch return false;
        n = std.math.add(u64, n, c - '0') catch return false;
    }
    return n == body_len;
}

/// Most header values a replayed entry may carry: Envoy's Wasm host refuses a header map of more
/// than 1,024 pairs (the reply would then go out with no headers at all), and its codecs limit
/// responses to 100 headers by default (`max_headers_count`).
pub const max_replay_headers = 512;

/// The first reason `e` must not be replayed, or null when it may be. Checks, in order: status
/// 200..599, at most `max_replay_headers` headers; then per header: non-empty name, not a pseudo-header, a token, a value with no CR,
/// LF or NUL, not hop-by-hop, and every `content-length` equal to the body length.
pub fn validateForReplay(e: *const Entry) ?Violation {
    if (e.status < 200 or e.status > 599) return .bad_status;
    if (e.headers.len > max_replay_headers) return .too_many_headers;
    for (e.headers) |p| {
        if (p.name.len == 0) return .empty_header_name;
        if (p.name[0] == ':') return .pseudo_header;
        if (!isToken(p.name)) return .bad_header_name;
        if (!isSafeValue(p.value)) return .bad_header_value;
        if (headers.isHopByHop(p.name)) return .hop_by_hop;
        if (std.ascii.eqlIgnoreCase(p.name, "content-length") and !contentLengthMatches(p.value, e.body.len))
            return .content_length_mismatch;
    }
    return null;
}

/// `pairs` reordered as a span carries them: every value of one name (ASCII case-insensitive)
/// adjacent and in order, names in order of first occurrence. Caller frees with `gpa`. O(n).
pub fn groupHeaders(gpa: std.mem.Allocator, pairs: []const Pair) error{OutOfMemory}![]Pair {
    // group of each name, in order of first occurrence, and each group's size then write position
    var groups: std.HashMapUnmanaged([]const u8, usize, IgnoreCaseContext, std.hash_map.default_max_load_percentage) = .empty;
    defer groups.deinit(gpa);
    const group_of = try gpa.alloc(usize, pairs.len);
    defer gpa.free(group_of);
    var sizes: std.ArrayList(usize) = .empty;
    defer sizes.deinit(gpa);
    for (pairs, group_of) |p, *g| {
        const slot = try groups.getOrPut(gpa, p.name);
        if (!slot.found_existing) {
            slot.value_ptr.* = sizes.items.len;
            try sizes.append(gpa, 0);
        }
        g.* = slot.value_ptr.*;
        sizes.items[g.*] += 1;
    }
    var next: usize = 0;
    for (sizes.items) |*size| {
        const n = size.*;
        size.* = next;
        next += n;
    }
    const out = try gpa.alloc(Pair, pairs.len);
    for (pairs, group_of) |p, g| {
        out[sizes.items[g]] = p;
        sizes.items[g] += 1;
    }
    return out;
}

/// Hash-map context comparing header names ASCII case-insensitively.
pub const IgnoreCaseContext = struct {
    /// Hash of the lower-cased name.
    pub fn hash(_: IgnoreCaseContext, name: []const u8) u64 {
        var h = std.hash.Wyhash.init(0);
        var chunk: [64]u8 = undefined;
        var i: usize = 0;
        while (i < name.len) : (i += chunk.len) {
            const part = name[i..@min(name.len, i + chunk.len)];
            h.update(std.ascii.lowerString(chunk[0..part.len], part));
        }
        return h.final();
    }

    /// Names equal ignoring ASCII case.
    pub fn eql(_: IgnoreCaseContext, a: []const u8, b: []const u8) bool {
        return std.ascii.eqlIgnoreCase(a, b);
    }
};

/// A set of header names compared ASCII case-insensitively (unmanaged; pass the allocator).
pub const NameSet = std.HashMapUnmanaged([]const u8, void, IgnoreCaseContext, std.hash_map.default_max_load_percentage);

/// Fails the running test unless `got` equals `want` field by field, headers in order (tests).
pub fn expectEqualEntries(want: *const Entry, got: *const Entry) !void {
    const t = std.testing;
    try t.expectEqualStrings(want.key, got.key);
    try t.expectEqualStrings(want.variant, got.variant);
    try t.expectEqualStrings(want.signature, got.signature);
    try t.expectEqual(want.status, got.status);
    try t.expectEqual(want.request_time_ms, got.request_time_ms);
    try t.expectEqual(want.response_time_ms, got.response_time_ms);
    try t.expectEqualSlices(u8, want.body, got.body);
    try t.expectEqual(want.headers.len, got.headers.len);
    for (want.headers, got.headers) |w, g| {
        try t.expectEqualStrings(w.name, g.name);
        try t.expectEqualSlices(u8, w.value, g.value);
    }
}

const test_key = repeat('k', 32);

fn testEntry(hs: []const Pair, body: []const u8) Entry {
    return .{
        .key = repeat('a', 64),
        .variant = "",
        .status = 200,
        .request_time_ms = 1_700_000_000_000,
        .response_time_ms = 1_700_000_000_250,
        .headers = hs,
        .body = body,
    };
}

test "signature: every signed field changes it; verify is exact" {
    const hs = [_]Pair{ .{ .name = "content-type", .value = "text/plain" }, .{ .name = "x", .value = "caf\xe9" } };
    var e = testEntry(&hs, "hello");
    const hex = signatureHex(test_key, &e);
    e.signature = &hex;
    try std.testing.expect(verify(test_key, &e));
    try std.testing.expect(!verify(repeat('o', 40), &e));
    // header names are signed lower-cased: a case change alone keeps the signature
    const upper = [_]Pair{ .{ .name = "Content-Type", .value = "text/plain" }, .{ .name = "X", .value = "caf\xe9" } };
    var same = e;
    same.headers = &upper;
    try std.testing.expect(verify(test_key, &same));

    const changed_headers = [_]Pair{ .{ .name = "content-type", .value = "text/html" }, .{ .name = "x", .value = "caf\xe9" } };
    var variants = [_]Entry{ e, e, e, e, e, e, e, e, e };
    variants[0].key = repeat('b', 64);
    variants[1].variant = repeat('c', 64);
    variants[2].status = 203;
    variants[3].request_time_ms += 1;
    variants[4].response_time_ms += 1;
    variants[5].headers = &changed_headers;
    variants[6].headers = hs[0..1];
    variants[7].body = "hellO";
    variants[8].headers = &.{ hs[1], hs[0] }; // order is signed
    for (&variants) |*v| try std.testing.expect(!verify(test_key, v));

    var upper_hex = hex;
    _ = std.ascii.upperString(&upper_hex, &hex);
    e.signature = &upper_hex;
    try std.testing.expect(!verify(test_key, &e)); // lower-case hex only
    e.signature = hex[0..63];
    try std.testing.expect(!verify(test_key, &e));
    e.signature = "";
    try std.testing.expect(!verify(test_key, &e));
}

test "validateForReplay: one row per rule" {
    const Row = struct { status: u16 = 200, name: []const u8 = "x-a", value: []const u8 = "v", body: []const u8 = "", want: ?Violation };
    const rows = [_]Row{
        .{ .want = null },
        .{ .value = "caf\xe9 \x80\xff\t", .want = null }, // obs-text, SP and HTAB are allowed
        .{ .value = "", .want = null },
        .{ .status = 199, .want = .bad_status },
        .{ .status = 100, .want = .bad_status },
        .{ .status = 600, .want = .bad_status },
        .{ .status = 0, .want = .bad_status },
        .{ .status = 599, .want = null },
        .{ .name = "", .want = .empty_header_name },
        .{ .name = ":status", .value = "200", .want = .pseudo_header },
        .{ .name = "a\r\nSet-Cookie: x", .want = .bad_header_name },
        .{ .name = "x a", .want = .bad_header_name },
        .{ .name = "x\x00", .want = .bad_header_name },
        .{ .name = "caf\xc3\xa9", .want = .bad_header_name },
        .{ .name = "x:y", .want = .bad_header_name },
        .{ .value = "a\r\nSet-Cookie: session=attacker\r\n\r\n", .want = .bad_header_value },
        .{ .value = "a\nb", .want = .bad_header_value },
        .{ .value = "a\rb", .want = .bad_header_value },
        .{ .value = "a\x00b", .want = .bad_header_value },
        .{ .name = "Transfer-Encoding", .value = "chunked", .want = .hop_by_hop },
        .{ .name = "connection", .value = "close", .want = .hop_by_hop },
        .{ .name = "upgrade", .value = "h2c", .want = .hop_by_hop },
        .{ .name = "content-length", .value = "5", .body = "hello", .want = null },
        .{ .name = "Content-Length", .value = "005", .body = "hello", .want = null },
        .{ .name = "content-length", .value = "4", .body = "hello", .want = .content_length_mismatch },
        .{ .name = "content-length", .value = "+5", .body = "hello", .want = .content_length_mismatch },
        .{ .name = "content-length", .value = "5, 5", .body = "hello", .want = .content_length_mismatch },
        .{ .name = "content-length", .value = "", .want = .content_length_mismatch },
        .{ .name = "content-length", .value = "99999999999999999999999", .want = .content_length_mismatch },
    };
    for (rows) |row| {
        const hs = [_]Pair{.{ .name = row.name, .value = row.value }};
        var e = testEntry(&hs, row.body);
        e.status = row.status;
        std.testing.expectEqual(row.want, validateForReplay(&e)) catch |err| {
            std.debug.print("row name={s} value={s} status={d}\n", .{ row.name, row.value, row.status });
            return err;
        };
    }
    var none = testEntry(&.{}, "");
    try std.testing.expectEqual(@as(?Violation, null), validateForReplay(&none));
}

test "groupHeaders keeps first-occurrence order and value order" {
    const gpa = std.testing.allocator;
    const in = [_]Pair{
        .{ .name = "a", .value = "1" }, .{ .name = "b", .value = "2" }, .{ .name = "A", .value = "3" },
        .{ .name = "c", .value = "4" }, .{ .name = "b", .value = "5" },
    };
    const out = try groupHeaders(gpa, &in);
    defer gpa.free(out);
    const want = [_][]const u8{ "1", "3", "2", "5", "4" };
    for (want, out) |w, p| try std.testing.expectEqualStrings(w, p.value);
}

test "groupHeaders equals the naive stable grouping on random lists" {
    const gpa = std.testing.allocator;
    var prng = std.Random.DefaultPrng.init(5);
    const r = prng.random();
    const names = [_][]const u8{ "a", "A", "b", "c", "C", "d" };
    var in: [12]Pair = undefined;
    for (0..500) |_| {
        const n = r.uintLessThan(usize, in.len + 1);
        // each value a distinct one-byte slice, so that a pair is known by its value's address
        const ids = "0123456789ab";
        for (in[0..n], 0..) |*p, i| p.* = .{ .name = names[r.uintLessThan(usize, names.len)], .value = ids[i..][0..1] };
        const got = try groupHeaders(gpa, in[0..n]);
        defer gpa.free(got);
        var want: [12]Pair = undefined;
        var placed: [12]bool = @splat(false);
        var k: usize = 0;
        for (in[0..n], 0..) |p, i| {
            if (placed[i]) continue;
            for (in[i..n], i..) |q, j| if (!placed[j] and std.ascii.eqlIgnoreCase(p.name, q.name)) {
                want[k] = q;
                k += 1;
                placed[j] = true;
            };
        }
        for (want[0..n], got) |w, g| {
            try std.testing.expectEqual(w.name.ptr, g.name.ptr);
            try std.testing.expectEqual(w.value.ptr, g.value.ptr);
        }
    }
}

test "NameSet compares names case-insensitively" {
    const gpa = std.testing.allocator;
    var set: NameSet = .empty;
    defer set.deinit(gpa);
    try std.testing.expect(!(try set.getOrPut(gpa, "Content-Type")).found_existing);
    try std.testing.expect((try set.getOrPut(gpa, "content-type")).found_existing);
    try std.testing.expect(!(try set.getOrPut(gpa, "content-typf")).found_existing);
}
