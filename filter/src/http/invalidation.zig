//! Invalidation after unsafe methods (RFC 9111 §4.4): which exchanges invalidate, and which
//! same-origin target a `Location` or `Content-Location` value names. A value is resolved
//! against the request's scheme, authority and path as RFC 3986 §5.2 says (fragment dropped,
//! dot-segments removed); an absolute URI of another origin (scheme, host or port differ, or
//! it carries userinfo) yields nothing, since invalidating it would let one origin evict
//! another's entries. Origins compare host case-insensitively and with default ports (80 for
//! http, 443 for https) made explicit.
const std = @import("std");

/// True when a response with `status` to a request with `method` invalidates the target URI
/// (RFC 9111 §4.4): a non-error final status (2xx, 3xx) to a method not known to be safe
/// (safe: GET, HEAD, OPTIONS, TRACE, RFC 9110 §9.2.1; an unknown method counts as unsafe).
pub fn invalidates(method: []const u8, status: u32) bool {
    const safe = [_][]const u8{ "GET", "HEAD", "OPTIONS", "TRACE" };
    for (safe) |m| if (std.mem.eql(u8, method, m)) return false;
    return status >= 200 and status <= 399;
}

/// The path and query (as they would appear in a request to this origin) that `value`, a
/// `Location` or `Content-Location` field value of a response to a request for
/// `scheme`://`authority``request_path`, names; null when it names another origin or is not a
/// URI reference this cache can resolve (spaces, control bytes, other schemes). Caller frees
/// the result with `gpa`.
pub fn invalidationTarget(gpa: std.mem.Allocator, scheme: []const u8, authority: []const u8, request_path: []const u8, value: []const u8) error{OutOfMemory}!?[]u8 {
    var ref = std.mem.trim(u8, value, " \t");
    if (std.mem.findScalar(u8, ref, '#')) |hash| ref = ref[0..hash];
    for (ref) |c| if (c <= 0x20 or c == 0x7f) return null;
    if (schemeEnd(ref)) |colon| {
        if (!std.ascii.eqlIgnoreCase(ref[0..colon], scheme)) return null;
        ref = ref[colon + 1 ..];
        if (!std.mem.startsWith(u8, ref, "//")) return null;
    }
    const base = splitQuery(request_path);
    var path: []const u8 = undefined;
    var query: ?[]const u8 = undefined;
    var merge_dir: []const u8 = "";
    if (std.mem.startsWith(u8, ref, "//")) {
        const end = std.mem.findAny(u8, ref[2..], "/?") orelse ref.len - 2;
        if (!sameOrigin(scheme, ref[2..][0..end], authority)) return null;
        const rest = splitQuery(ref[2 + end ..]);
        path = rest.path;
        query = rest.query;
    } else if (ref.len == 0 or ref[0] == '?') {
        path = base.path;
        query = if (ref.len == 0) base.query else ref[1..];
    } else {
        const rest = splitQuery(ref);
        path = rest.path;
        query = rest.query;
        if (path.len == 0 or path[0] != '/') {
            const slash = std.mem.findScalarLast(u8, base.path, '/');
            merge_dir = if (slash) |s| base.path[0 .. s + 1] else "/";
        }
    }
    const out = try gpa.alloc(u8, merge_dir.len + path.len + 1 + (if (query) |q| q.len + 1 else 0));
    errdefer gpa.free(out);
    @memcpy(out[0..merge_dir.len], merge_dir);
    @memcpy(out[merge_dir.len..][0..path.len], path);
    var n = removeDotSegments(out[0 .. merge_dir.len + path.len]);
    if (n == 0 or out[0] != '/') {
        std.mem.copyBackwards(u8, out[1 .. n + 1], out[0..n]);
        out[0] = '/';
        n += 1;
    }
    if (query) |q| {
        out[n] = '?';
        @memcpy(out[n + 1 ..][0..q.len], q);
        n += q.len + 1;
    }
    return try gpa.realloc(out, n);
}

// Index of the ':' ending a URI scheme (RFC 3986 §3.1) at the start of `ref`, or null.
fn schemeEnd(ref: []const u8) ?usize {
    for (ref, 0..) |c, i| {
        if (c == ':') return if (i > 0) i else null;
        if (!(std.ascii.isAlphabetic(c) or (i > 0 and (std.ascii.isDigit(c) or c == '+' or c == '-' or c == '.')))) return null;
    }
    return null;
}

const PathQuery = struct { path: []const u8, query: ?[]const u8 };

fn splitQuery(s: []const u8) PathQuery {
    const q = std.mem.findScalar(u8, s, '?') orelse return .{ .path = s, .query = null };
    return .{ .path = s[0..q], .query = s[q + 1 ..] };
}

// Same host (case-insensitive) and port (default port made explicit); no userinfo.
fn sameOrigin(scheme: []const u8, a: []const u8, b: []const u8) bool {
    if (std.mem.findScalar(u8, a, '@') != null or std.mem.findScalar(u8, b, '@') != null) return false;
    const default_port = if (std.ascii.eqlIgnoreCase(scheme, "https")) "443" else "80";
    const ha = hostPort(a, default_port);
    const hb = hostPort(b, default_port);
    return ha.host.len > 0 and std.ascii.eqlIgnoreCase(ha.host, hb.host) and std.mem.eql(u8, ha.port, hb.port);
}

fn hostPort(authority: []const u8, default_port: []const u8) struct { host: []const u8, port: []const u8 } {
    const after_host = if (std.mem.startsWith(u8, authority, "[")) (std.mem.findScalar(u8, authority, ']') orelse authority.len - 1) + 1 else 0;
    const colon = std.mem.findScalarPos(u8, authority, after_host, ':') orelse return .{ .host = authority, .port = default_port };
    const port = authority[colon + 1 ..];
    return .{ .host = authority[0..colon], .port = if (port.len == 0) default_port else port };
}

// RFC 3986 §5.2.4 in place; returns the new length.
fn removeDotSegments(buf: []u8) usize {
    var in: usize = 0;
    var out: usize = 0;
    while (in < buf.len) {
        const rest = buf[in..];
        if (std.mem.startsWith(u8, rest, "../")) {
            in += 3;
        } else if (std.mem.startsWith(u8, rest, "./")) {
            in += 2;
        } else if (std.mem.startsWith(u8, rest, "/./")) {
            in += 2;
        } else if (std.mem.eql(u8, rest, "/.")) {
            in += 1;
            buf[in] = '/';
        } else if (std.mem.startsWith(u8, rest, "/../") or std.mem.eql(u8, rest, "/..")) {
            in += 3;
            if (in == buf.len) {
                in -= 1;
                buf[in] = '/';
            }
            out = std.mem.findScalarLast(u8, buf[0..out], '/') orelse 0;
        } else if (std.mem.eql(u8, rest, ".") or std.mem.eql(u8, rest, "..")) {
            in = buf.len;
        } else {
            const start = in;
            const next = std.mem.findScalarPos(u8, buf, start + 1, '/') orelse buf.len;
            std.mem.copyForwards(u8, buf[out..][0 .. next - start], buf[start..next]);
            out += next - start;
            in = next;
        }
    }
    return out;
}

const t = std.testing;
const fuzz = @import("fuzz.zig");

test "RFC 9111 4.4: which exchanges invalidate (suite invalidation cases)" {
    try t.expect(invalidates("POST", 200) and invalidates("PUT", 201) and invalidates("DELETE", 204));
    try t.expect(invalidates("M-SEARCH", 200) and invalidates("PATCH", 303));
    try t.expect(!invalidates("POST", 500) and !invalidates("PUT", 404) and !invalidates("POST", 100));
    try t.expect(!invalidates("GET", 200) and !invalidates("HEAD", 200) and !invalidates("OPTIONS", 200) and !invalidates("TRACE", 200));
}

test "RFC 9111 4.4 / RFC 3986 5.2: Location and Content-Location targets" {
    const Case = struct { v: []const u8, want: ?[]const u8, scheme: []const u8 = "http", path: []const u8 = "/a/b/c?x=1" };
    const cases = [_]Case{
        .{ .v = "/d", .want = "/d" },
        .{ .v = "/d?q#frag", .want = "/d?q" },
        .{ .v = "d", .want = "/a/b/d" },
        .{ .v = "location_target", .path = "/test/123", .want = "/test/location_target" },
        .{ .v = "./d/", .want = "/a/b/d/" },
        .{ .v = "../d", .want = "/a/d" },
        .{ .v = "../../../../d", .want = "/d" },
        .{ .v = "/a/./b/../e", .want = "/a/e" },
        .{ .v = "..", .want = "/a/" },
        .{ .v = ".", .want = "/a/b/" },
        .{ .v = "?y=2", .want = "/a/b/c?y=2" },
        .{ .v = "", .want = "/a/b/c?x=1" },
        .{ .v = "#f", .want = "/a/b/c?x=1" },
        .{ .v = "d", .path = "", .want = "/d" },
        .{ .v = "http://Example.COM/x?y", .want = "/x?y" },
        .{ .v = "HTTP://example.com:80/x", .want = "/x" },
        .{ .v = "http://example.com", .want = "/" },
        .{ .v = "//example.com/x", .want = "/x" },
        .{ .v = "https://example.com/x", .want = null },
        .{ .v = "https://example.com/x", .scheme = "https", .want = "/x" },
        .{ .v = "https://example.com:80/x", .scheme = "https", .want = null },
        .{ .v = "http://other.example/x", .want = null },
        .{ .v = "http://example.com:8080/x", .want = null },
        .{ .v = "http://user@example.com/x", .want = null },
        .{ .v = "//other.example/x", .want = null },
        .{ .v = "mailto:a@example.com", .want = null },
        .{ .v = "http:x", .want = null },
        .{ .v = "/a b", .want = null },
        .{ .v = "/a\r\nx: y", .want = null },
    };
    for (cases, 0..) |c, i| {
        const got = try invalidationTarget(t.allocator, c.scheme, "example.com", c.path, c.v);
        defer if (got) |g| t.allocator.free(g);
        if (c.want) |w| {
            t.expectEqualStrings(w, got orelse "<null>") catch |e| {
                std.debug.print("case {d}\n", .{i});
                return e;
            };
        } else if (got) |g| {
            std.debug.print("case {d}: got {s}\n", .{ i, g });
            return error.TestUnexpectedResult;
        }
    }
    const https = (try invalidationTarget(t.allocator, "https", "example.com:443", "/", "https://EXAMPLE.com/z")).?;
    defer t.allocator.free(https);
    try t.expectEqualStrings("/z", https);
    const v6 = (try invalidationTarget(t.allocator, "http", "[::1]:8000", "/", "http://[::1]:8000/z")).?;
    defer t.allocator.free(v6);
    try t.expectEqualStrings("/z", v6);
    try t.expect(try invalidationTarget(t.allocator, "http", "[::1]:8000", "/", "http://[::2]:8000/z") == null);
}

test "invalidationTarget is total and leak-free on random input" {
    var prng = std.Random.DefaultPrng.init(31);
    const r = prng.random();
    const alphabet = "/.?#:@[]ab:80http";
    var vb: [24]u8 = undefined;
    var pb: [16]u8 = undefined;
    var ab: [12]u8 = undefined;
    for (0..20000) |_| {
        const v = fuzz.text(r, &vb, alphabet);
        const p = fuzz.text(r, &pb, alphabet);
        const a = fuzz.text(r, &ab, alphabet);
        if (try invalidationTarget(t.allocator, "http", a, p, v)) |got| {
            try t.expect(got.len > 0 and got[0] == '/');
            t.allocator.free(got);
        }
    }
}
