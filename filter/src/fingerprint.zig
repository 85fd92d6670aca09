//! Request fingerprint (the cache key), exactly as docs/protocol.md "Request fingerprint" says.
//! Checked against filter/testdata/fingerprint_vectors.json (see filter/tests.zig).
const std = @import("std");
const headers = @import("headers.zig");

/// Version tag hashed first; changing the layout means changing the tag.
pub const version_tag = "sp-istio-cache/1";

/// 64 lower-case hex characters.
pub const Hex = [64]u8;

/// Method under which a request is keyed: HEAD reads the GET entry.
pub fn cacheMethod(method: []const u8) []const u8 {
    return if (std.mem.eql(u8, method, "HEAD")) "GET" else method;
}

fn field(h: *std.crypto.hash.sha2.Sha256, data: []const u8) void {
    u64be(h, data.len);
    h.update(data);
}

fn u64be(h: *std.crypto.hash.sha2.Sha256, n: u64) void {
    var len: [8]u8 = undefined;
    std.mem.writeInt(u64, &len, n, .big);
    h.update(&len);
}

/// Computes the fingerprint. `vary` must already be lower-case, de-duplicated and sorted (the
/// config does this); `pairs` are the request headers in order; `authority` is lower-cased here.
pub fn compute(
    method: []const u8,
    authority: []const u8,
    path: []const u8,
    pairs: []const headers.Pair,
    vary: []const []const u8,
    body: []const u8,
) Hex {
    var h = std.crypto.hash.sha2.Sha256.init(.{});
    field(&h, version_tag);
    field(&h, cacheMethod(method));
    u64be(&h, authority.len);
    var chunk: [64]u8 = undefined;
    var i: usize = 0;
    while (i < authority.len) : (i += chunk.len) {
        const part = authority[i..@min(authority.len, i + chunk.len)];
        h.update(std.ascii.lowerString(chunk[0..part.len], part));
    }
    field(&h, path);
    for (vary) |name| {
        field(&h, name);
        u64be(&h, headers.count(pairs, name));
        for (pairs) |p| {
            if (std.ascii.eqlIgnoreCase(p.name, name)) field(&h, p.value);
        }
    }
    field(&h, body);
    return std.fmt.bytesToHex(h.finalResult(), .lower);
}

test "HEAD is keyed as GET" {
    const a = compute("HEAD", "Upstream", "/x", &.{}, &.{}, "");
    const b = compute("GET", "upstream", "/x", &.{}, &.{}, "");
    try std.testing.expectEqualStrings(&a, &b);
}

test "body and vary values change the key" {
    const p1 = [_]headers.Pair{.{ .name = "accept", .value = "a" }};
    const p2 = [_]headers.Pair{.{ .name = "accept", .value = "b" }};
    const v = [_][]const u8{"accept"};
    const a = compute("GET", "h", "/", &p1, &v, "");
    const b = compute("GET", "h", "/", &p2, &v, "");
    const c = compute("GET", "h", "/", &p1, &.{}, "");
    const d = compute("GET", "h", "/", &p2, &.{}, "");
    try std.testing.expect(!std.mem.eql(u8, &a, &b));
    try std.testing.expectEqualStrings(&c, &d);
    const e = compute("POST", "h", "/", &.{}, &.{}, "x");
    const f = compute("POST", "h", "/", &.{}, &.{}, "y");
    try std.testing.expect(!std.mem.eql(u8, &e, &f));
}
