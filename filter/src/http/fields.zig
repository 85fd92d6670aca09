//! Which header fields a shared cache keeps when it stores a response (RFC 9111 §3.1): never
//! the connection-specific fields of RFC 9110 §7.6.1 (and the proxy authentication fields of
//! §11.7, which belong to one hop), never a field the `Connection` header lists, and never a
//! field a qualified `no-cache` or `private` names (RFC 9111 §5.2.2.4, §5.2.2.7). Everything
//! else, Set-Cookie included, is kept: whether a response with such a field is stored at all is
//! the storage policy's decision. Pseudo-header fields (`:status`) are kept untouched.
const std = @import("std");
const headers = @import("../headers.zig");
const ResponseDirectives = @import("cache_control.zig").ResponseDirectives;
const Pair = headers.Pair;

/// True for fields that only describe one connection or one hop and are never stored or
/// replayed (RFC 9110 §7.6.1, §11.7; the suite's headers-store-* "must not store" cases), and
/// `Trailer`: a stored response is replayed without its trailers, so announcing them would lie.
pub fn isConnectionSpecific(name: []const u8) bool {
    const names = [_][]const u8{
        "connection",                "keep-alive", "proxy-connection",   "te",
        "transfer-encoding",         "upgrade",    "proxy-authenticate", "proxy-authorization",
        "proxy-authentication-info", "trailer",
    };
    for (names) |n| if (std.ascii.eqlIgnoreCase(name, n)) return true;
    return false;
}

/// True when a `Connection` line of `pairs` lists `name` as a connection option (RFC 9110 §7.6.1).
pub fn listedInConnection(pairs: []const Pair, name: []const u8) bool {
    var it = headers.MemberIterator.init(pairs, "connection");
    while (it.next()) |option| if (std.ascii.eqlIgnoreCase(option, name)) return true;
    return false;
}

/// True when a shared cache must not store field `name` of the response `pairs` whose
/// directives are `directives` (RFC 9111 §3.1).
pub fn excludedFromStorage(pairs: []const Pair, directives: *const ResponseDirectives, name: []const u8) bool {
    if (name.len > 0 and name[0] == ':') return false;
    return isConnectionSpecific(name) or listedInConnection(pairs, name) or directives.withholdsField(name);
}

/// The fields of response `pairs` a shared cache stores, in their original order (RFC 9111
/// §3.1). The returned slice is owned by the caller (free with `gpa`); its pairs borrow `pairs`.
pub fn storedFields(gpa: std.mem.Allocator, pairs: []const Pair, directives: *const ResponseDirectives) error{OutOfMemory}![]Pair {
    var out: std.ArrayList(Pair) = .empty;
    errdefer out.deinit(gpa);
    for (pairs) |p| {
        if (!excludedFromStorage(pairs, directives, p.name)) try out.append(gpa, p);
    }
    return out.toOwnedSlice(gpa);
}

const t = std.testing;

test "RFC 9111 3.1: connection-specific, Connection-listed and qualified no-cache/private fields are not stored" {
    const pairs = [_]Pair{
        .{ .name = ":status", .value = "200" },
        .{ .name = "Connection", .value = "a, B" },
        .{ .name = "a", .value = "1" },
        .{ .name = "b", .value = "2" },
        .{ .name = "c", .value = "3" },
        .{ .name = "cache-control", .value = "private=\"x-user\", no-cache=\"x-token\", max-age=60" },
        .{ .name = "x-user", .value = "u" },
        .{ .name = "X-Token", .value = "t" },
        .{ .name = "Keep-Alive", .value = "timeout=5" },
        .{ .name = "Proxy-Authenticate", .value = "Basic" },
        .{ .name = "Proxy-Authentication-Info", .value = "x" },
        .{ .name = "Proxy-Authorization", .value = "x" },
        .{ .name = "Proxy-Connection", .value = "close" },
        .{ .name = "TE", .value = "trailers" },
        .{ .name = "Transfer-Encoding", .value = "chunked" },
        .{ .name = "Upgrade", .value = "h2c" },
        .{ .name = "set-cookie", .value = "a=b" },
        .{ .name = "content-length", .value = "36" },
    };
    const d = ResponseDirectives.parse(&pairs);
    const got = try storedFields(t.allocator, &pairs, &d);
    defer t.allocator.free(got);
    const want = [_][]const u8{ ":status", "c", "cache-control", "set-cookie", "content-length" };
    try t.expectEqual(want.len, got.len);
    for (want, got) |w, g| try t.expectEqualStrings(w, g.name);
}

test "storedFields is total and leak-free on random field names" {
    var prng = std.Random.DefaultPrng.init(21);
    const r = prng.random();
    const names = [_][]const u8{ "connection", "a", "te", "cache-control", ":x", "b" };
    const values = [_][]const u8{ "a, b", "private=\"a\"", "", ",,", "no-cache=\"b", "x" };
    var pairs: [8]Pair = undefined;
    for (0..2000) |_| {
        const n = r.uintLessThan(usize, pairs.len);
        for (pairs[0..n]) |*p| p.* = .{ .name = names[r.uintLessThan(usize, names.len)], .value = values[r.uintLessThan(usize, values.len)] };
        const d = ResponseDirectives.parse(pairs[0..n]);
        const got = try storedFields(t.allocator, pairs[0..n], &d);
        t.allocator.free(got);
    }
}
