//! Whether a shared cache may store a response (RFC 9111 §3, §3.5), as a reason rather than a
//! bool so that the caller can count and log it. Only the RFC's rules live here; the plugin's
//! own limits (sizes, Set-Cookie, configured statuses, `Vary: *`) belong to the storage policy.
const std = @import("std");
const headers = @import("../headers.zig");
const status_codes = @import("status.zig");
const ResponseDirectives = @import("cache_control.zig").ResponseDirectives;
const Pair = headers.Pair;

/// Why a response may or may not be stored.
pub const Storability = enum {
    storable,
    /// only responses to GET are stored: a HEAD response has no content, and other methods'
    /// responses are not reusable for GET without a Content-Location this cache does not track
    method,
    /// 1xx, or not a valid status (§3: the status must be final)
    status_not_final,
    /// 206 or 304, or must-understand with a status this cache does not understand (§3, §5.2.2.3)
    status_not_understood,
    /// no-store (§5.2.2.5), not overridden by must-understand
    no_store,
    /// unqualified private (§5.2.2.7)
    private,
    /// the request carried Authorization and the response has none of public, s-maxage,
    /// must-revalidate (§3.5)
    authorization,
    /// none of public, Expires, max-age, s-maxage, or a heuristically cacheable status (§3)
    no_explicit_permission,
};

/// Decides RFC 9111 §3 storability for a shared cache. `directives` are those the cache obeys
/// (Cache-Control, or a targeted field: then Expires does not count, RFC 9213 §2.1).
pub fn responseStorability(method: []const u8, status: u32, request_pairs: []const Pair, response_pairs: []const Pair, directives: *const ResponseDirectives) Storability {
    if (!std.mem.eql(u8, method, "GET")) return .method;
    if (!status_codes.isFinal(status)) return .status_not_final;
    const understood = status_codes.isUnderstood(status);
    if (status == 206 or status == 304 or (directives.must_understand and !understood)) return .status_not_understood;
    if (directives.no_store and !(directives.must_understand and understood)) return .no_store;
    if (directives.private) return .private;
    if (headers.get(request_pairs, "authorization") != null and
        !(directives.public or directives.s_maxage != null or directives.must_revalidate)) return .authorization;
    const has_expires = !directives.targeted and headers.get(response_pairs, "expires") != null;
    if (directives.public or has_expires or directives.max_age != null or directives.s_maxage != null or
        status_codes.isHeuristicallyCacheable(status)) return .storable;
    return .no_explicit_permission;
}

const t = std.testing;

fn pair(name: []const u8, value: []const u8) Pair {
    return .{ .name = name, .value = value };
}

test "RFC 9111 3 / 3.5: storability reasons, case by case" {
    const Case = struct { name: []const u8, method: []const u8 = "GET", status: u32 = 200, req: []const Pair = &.{}, resp: []const Pair = &.{}, want: Storability };
    const cases = [_]Case{
        .{ .name = "3 plain 200 (heuristically cacheable status)", .want = .storable },
        .{ .name = "3 HEAD", .method = "HEAD", .want = .method },
        .{ .name = "3 POST", .method = "POST", .resp = &.{pair("cache-control", "max-age=60")}, .want = .method },
        .{ .name = "3 interim", .status = 103, .want = .status_not_final },
        .{ .name = "3 out of range", .status = 600, .want = .status_not_final },
        .{ .name = "3 206", .status = 206, .resp = &.{pair("cache-control", "max-age=60")}, .want = .status_not_understood },
        .{ .name = "3 304", .status = 304, .want = .status_not_understood },
        .{ .name = "3 201 without explicit freshness", .status = 201, .want = .no_explicit_permission },
        .{ .name = "3 201 with max-age", .status = 201, .resp = &.{pair("cache-control", "max-age=60")}, .want = .storable },
        .{ .name = "3 599 with Expires", .status = 599, .resp = &.{pair("expires", "bad")}, .want = .storable },
        .{ .name = "3 599 with public", .status = 599, .resp = &.{pair("cache-control", "public")}, .want = .storable },
        .{ .name = "3 502 with s-maxage", .status = 502, .resp = &.{pair("cache-control", "s-maxage=5")}, .want = .storable },
        .{ .name = "5.2.2.5 no-store", .resp = &.{pair("cache-control", "max-age=10000, no-store")}, .want = .no_store },
        .{ .name = "5.2.2.3 must-understand with a known status ignores no-store", .resp = &.{pair("cache-control", "max-age=3600, no-store, must-understand")}, .want = .storable },
        .{ .name = "5.2.2.3 must-understand with 599", .status = 599, .resp = &.{pair("cache-control", "max-age=3600, no-store, must-understand")}, .want = .status_not_understood },
        .{ .name = "5.2.2.7 private", .resp = &.{pair("cache-control", "private, max-age=3600")}, .want = .private },
        .{ .name = "5.2.2.7 qualified private is storable", .resp = &.{pair("cache-control", "private=\"x\", max-age=3600")}, .want = .storable },
        .{ .name = "5.2.2.4 no-cache is storable", .resp = &.{pair("cache-control", "no-cache")}, .want = .storable },
        .{ .name = "3.5 Authorization", .req = &.{pair("authorization", "FOO")}, .resp = &.{pair("cache-control", "max-age=100000")}, .want = .authorization },
        .{ .name = "3.5 Authorization with public", .req = &.{pair("authorization", "FOO")}, .resp = &.{pair("cache-control", "max-age=3600, public")}, .want = .storable },
        .{ .name = "3.5 Authorization with must-revalidate", .req = &.{pair("authorization", "FOO")}, .resp = &.{pair("cache-control", "max-age=3600, must-revalidate")}, .want = .storable },
        .{ .name = "3.5 Authorization with s-maxage", .req = &.{pair("authorization", "FOO")}, .resp = &.{pair("cache-control", "s-maxage=3600")}, .want = .storable },
    };
    for (cases) |c| {
        const d = ResponseDirectives.parse(c.resp);
        const got = responseStorability(c.method, c.status, c.req, c.resp, &d);
        t.expectEqual(c.want, got) catch |e| {
            std.debug.print("case \"{s}\": got {s}\n", .{ c.name, @tagName(got) });
            return e;
        };
    }
}

test "RFC 9213 2.1: with targeted directives, Expires gives no permission" {
    const resp = [_]Pair{pair("expires", "Tue, 14 Nov 2023 22:13:20 GMT")};
    const d: ResponseDirectives = .{ .targeted = true };
    try t.expectEqual(Storability.no_explicit_permission, responseStorability("GET", 599, &.{}, &resp, &d));
    try t.expectEqual(Storability.storable, responseStorability("GET", 599, &.{}, &resp, &ResponseDirectives.parse(&resp)));
}
