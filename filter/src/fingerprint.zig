//! Request fingerprint (the primary cache key, BLAKE2b-256), exactly as docs/protocol.md "Request fingerprint"
//! (protocol version 2) says, and the length-prefixed field encoding that the variant hash and the
//! entry signature share. Checked against filter/testdata/fingerprint_vectors.json
//! (filter/golden.zig) and, on the Python side, src/sp_istio_cache/fingerprint.py.
const std = @import("std");

/// Version tag hashed first; changing the layout means changing the tag.
pub const version_tag = "sp-istio-cache/2";

/// 64 lower-case hex characters.
pub const Hex = [64]u8;

/// Method under which a request is keyed: HEAD reads the GET entry (RFC 9110 §9.3.2).
pub fn cacheMethod(method: []const u8) []const u8 {
    return if (std.mem.eql(u8, method, "HEAD")) "GET" else method;
}

/// Feeds `n` as 8 bytes big-endian into `h` (any hasher or MAC with `update([]const u8)`).
pub fn u64be(h: anytype, n: u64) void {
    var b: [8]u8 = undefined;
    std.mem.writeInt(u64, &b, n, .big);
    h.update(&b);
}

/// Feeds `field(data)` of docs/protocol.md into `h`: the 8-byte big-endian length, then the bytes.
pub fn field(h: anytype, data: []const u8) void {
    u64be(h, data.len);
    h.update(data);
}

/// Feeds `field(lower(data))` into `h`, lower-casing ASCII letters only (other bytes unchanged),
/// without allocating.
pub fn fieldLower(h: anytype, data: []const u8) void {
    u64be(h, data.len);
    var chunk: [64]u8 = undefined;
    var i: usize = 0;
    while (i < data.len) : (i += chunk.len) {
        const part = data[i..@min(data.len, i + chunk.len)];
        h.update(std.ascii.lowerString(chunk[0..part.len], part));
    }
}

/// Computes the primary cache key of a request. `path` is the `:path` exactly as sent (query
/// included, any bytes); `scheme` and `authority` are lower-cased here (ASCII only); `body` is the
/// exact request body (empty for bodiless requests). Returns 64 lower-case hex characters.
pub fn compute(method: []const u8, scheme: []const u8, authority: []const u8, path: []const u8, body: []const u8) Hex {
    var h = std.crypto.hash.blake2.Blake2b256.init(.{});
    field(&h, version_tag);
    field(&h, cacheMethod(method));
    fieldLower(&h, scheme);
    fieldLower(&h, authority);
    field(&h, path);
    field(&h, body);
    return std.fmt.bytesToHex(h.finalResult(), .lower);
}

/// The key material that addresses a request's slot in the in-proxy L1 (l1.zig), written into
/// `buf`: for a bodiless request the fields of the fingerprint themselves, length-prefixed (HEAD as
/// GET, scheme and authority lower-cased), so that a hit needs no hash; for a request with a body,
/// or one whose fields do not fit `buf`, "#" and the fingerprint (which the caller computes:
/// `fp`). Null when the fingerprint is needed and not given.
pub fn material(buf: []u8, method: []const u8, scheme: []const u8, authority: []const u8, path: []const u8, has_body: bool, fp: ?*const Hex) ?[]const u8 {
    const m = cacheMethod(method);
    const need = 1 + 4 * 2 + m.len + scheme.len + authority.len + path.len;
    if (!has_body and need <= buf.len) {
        var at: usize = 0;
        buf[0] = '=';
        at = 1;
        inline for (.{ m, scheme, authority, path }, 0..) |part, i| {
            std.mem.writeInt(u16, buf[at..][0..2], @intCast(@min(part.len, 0xffff)), .little);
            at += 2;
            const out = buf[at..][0..part.len];
            if (i == 1 or i == 2) _ = std.ascii.lowerString(out, part) else @memcpy(out, part);
            at += part.len;
        }
        if (m.len <= 0xffff and scheme.len <= 0xffff and authority.len <= 0xffff and path.len <= 0xffff) return buf[0..at];
    }
    const f = fp orelse return null;
    if (buf.len < 65) return null;
    buf[0] = '#';
    @memcpy(buf[1..65], f);
    return buf[0..65];
}

test "L1 material: the fields themselves for bodiless requests, the fingerprint otherwise" {
    var a: [256]u8 = undefined;
    var b: [256]u8 = undefined;
    const get = material(&a, "HEAD", "HTTP", "Svc:80", "/x?y", false, null).?;
    const head = material(&b, "GET", "http", "svc:80", "/x?y", false, null).?;
    try std.testing.expectEqualSlices(u8, get, head);
    var c: [256]u8 = undefined;
    const other = material(&c, "GET", "http", "svc:80", "/x?Y", false, null).?;
    try std.testing.expect(!std.mem.eql(u8, get, other));
    // field boundaries are length-prefixed: ("ab", "c") and ("a", "bc") differ
    var d: [256]u8 = undefined;
    var e: [256]u8 = undefined;
    try std.testing.expect(!std.mem.eql(u8, material(&d, "GET", "http", "ab", "c", false, null).?, material(&e, "GET", "http", "a", "bc", false, null).?));
    try std.testing.expect(material(&d, "POST", "http", "svc", "/rpc", true, null) == null);
    const fp = compute("POST", "http", "svc", "/rpc", "body");
    const posted = material(&d, "POST", "http", "svc", "/rpc", true, &fp).?;
    try std.testing.expectEqual(@as(usize, 65), posted.len);
    try std.testing.expectEqual(@as(u8, '#'), posted[0]);
    var small: [8]u8 = undefined;
    try std.testing.expect(material(&small, "GET", "http", "svc", "/a-long-path", false, null) == null);
}

test "HEAD is keyed as GET; scheme and authority are case-insensitive" {
    const a = compute("HEAD", "HTTP", "UpStream", "/x", "");
    const b = compute("GET", "http", "upstream", "/x", "");
    try std.testing.expectEqualStrings(&a, &b);
    const c = compute("POST", "http", "upstream", "/x", "");
    try std.testing.expect(!std.mem.eql(u8, &a, &c));
}

test "path case, body and scheme change the key" {
    const base = compute("GET", "http", "h", "/a", "");
    const keys = [_]Hex{
        compute("GET", "http", "h", "/A", ""),
        compute("GET", "https", "h", "/a", ""),
        compute("GET", "http", "h", "/a", "x"),
        compute("GET", "http", "", "/a", ""),
    };
    for (keys) |k| try std.testing.expect(!std.mem.eql(u8, &base, &k));
}

test "length prefixes keep field boundaries apart" {
    // "ab" + "c" and "a" + "bc" must not collide
    const a = compute("GET", "http", "ab", "c", "");
    const b = compute("GET", "http", "a", "bc", "");
    try std.testing.expect(!std.mem.eql(u8, &a, &b));
}

test "fieldLower equals field of the lowered bytes, across chunk boundaries" {
    var long: [200]u8 = undefined;
    for (&long, 0..) |*c, i| c.* = if (i % 3 == 0) 'A' + @as(u8, @intCast(i % 26)) else @as(u8, @intCast(i));
    var lowered: [200]u8 = undefined;
    _ = std.ascii.lowerString(&lowered, &long);
    var h1 = std.crypto.hash.blake2.Blake2b256.init(.{});
    fieldLower(&h1, &long);
    var h2 = std.crypto.hash.blake2.Blake2b256.init(.{});
    field(&h2, &lowered);
    try std.testing.expectEqual(h2.finalResult(), h1.finalResult());
}
