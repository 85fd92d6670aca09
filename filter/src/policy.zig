//! HTTP caching semantics (RFC 9111) as pure functions that return a reason, not a bool.
//! One enum value drives the counter name, the log line and the `x-sp-cache` value.
const std = @import("std");
const headers = @import("headers.zig");
const Config = @import("config.zig").Config;
const Pair = headers.Pair;

/// Whether a request may be looked up (and later stored), and if not, why.
pub const RequestDecision = enum {
    cacheable,
    bypass_disabled,
    bypass_method,
    bypass_authorization,
    bypass_no_store,
    bypass_no_cache,
    bypass_conditional,
    bypass_upgrade,
    bypass_grpc,
    bypass_request_too_large,

    /// Counter name from docs/protocol.md (`sp_cache.bypass_<reason>`); null for `cacheable`.
    pub fn metricName(self: RequestDecision) ?[]const u8 {
        return switch (self) {
            .cacheable => null,
            inline else => |tag| "sp_cache." ++ @tagName(tag),
        };
    }

    /// Value of `x-sp-cache` when no lookup is made.
    pub fn header(self: RequestDecision) []const u8 {
        return if (self == .cacheable) "MISS" else "BYPASS";
    }
};

/// Whether a response may be stored, and if not, why.
pub const ResponseDecision = enum {
    storable,
    skip_status,
    skip_no_store,
    skip_private,
    skip_set_cookie,
    skip_vary,
    skip_response_too_large,
    skip_head,
    skip_not_looked_up,

    /// Counter name from docs/protocol.md (`sp_cache.store_skipped_<reason>`); null for `storable`.
    pub fn metricName(self: ResponseDecision) ?[]const u8 {
        return switch (self) {
            .storable => null,
            inline else => |tag| "sp_cache.store_skipped_" ++ @tagName(tag)["skip_".len..],
        };
    }
};

/// Cache-Control directives this filter acts on (RFC 9111 §5.2).
pub const CacheControl = struct {
    no_store: bool = false,
    no_cache: bool = false,
    private: bool = false,
    public: bool = false,
    must_revalidate: bool = false,
    /// seconds
    max_age: ?u32 = null,
    /// seconds
    s_maxage: ?u32 = null,

    /// Parses every `cache-control` value in `pairs` (lists may span several header lines).
    pub fn parse(pairs: []const Pair) CacheControl {
        var cc: CacheControl = .{};
        for (pairs) |p| {
            if (!std.ascii.eqlIgnoreCase(p.name, "cache-control")) continue;
            var it = headers.ListIterator{ .rest = p.value };
            while (it.next()) |item| {
                const eq = std.mem.indexOfScalar(u8, item, '=');
                const name = std.mem.trim(u8, item[0 .. eq orelse item.len], " \t");
                const arg = if (eq) |e| std.mem.trim(u8, item[e + 1 ..], " \t\"") else "";
                if (std.ascii.eqlIgnoreCase(name, "no-store")) cc.no_store = true
                // no-cache="field" only restricts those fields; treat any form as no-cache
                else if (std.ascii.eqlIgnoreCase(name, "no-cache")) cc.no_cache = true
                else if (std.ascii.eqlIgnoreCase(name, "private")) cc.private = true
                else if (std.ascii.eqlIgnoreCase(name, "public")) cc.public = true
                else if (std.ascii.eqlIgnoreCase(name, "must-revalidate")) cc.must_revalidate = true
                else if (std.ascii.eqlIgnoreCase(name, "max-age")) cc.max_age = deltaSeconds(arg) orelse 0
                else if (std.ascii.eqlIgnoreCase(name, "s-maxage")) cc.s_maxage = deltaSeconds(arg) orelse 0;
            }
        }
        return cc;
    }
};

/// Parses delta-seconds (RFC 9111 §1.2.2); values past 2^31 clamp to 2^31. Null when invalid.
pub fn deltaSeconds(s: []const u8) ?u32 {
    if (s.len == 0) return null;
    var v: u64 = 0;
    for (s) |ch| {
        if (ch < '0' or ch > '9') return null;
        v = @min(v * 10 + (ch - '0'), 1 << 31);
    }
    return @intCast(v);
}

/// Decides whether a request may be looked up (RFC 9111 §3 and the plugin config).
pub fn requestCacheability(cfg: *const Config, method: []const u8, pairs: []const Pair) RequestDecision {
    if (!cfg.cache_enabled) return .bypass_disabled;
    if (std.mem.eql(u8, method, "CONNECT") or headers.get(pairs, "upgrade") != null) return .bypass_upgrade;
    if (!cfg.lookupMethod(method)) return .bypass_method;
    if (headers.get(pairs, "content-type")) |ct| {
        if (ct.len >= 16 and std.ascii.eqlIgnoreCase(ct[0..16], "application/grpc")) return .bypass_grpc;
    }
    if (headers.get(pairs, "authorization") != null and !cfg.cache_authorized_requests) return .bypass_authorization;
    const cc = CacheControl.parse(pairs);
    if (cc.no_store) return .bypass_no_store;
    // the client asks for a response validated with the origin (RFC 9111 §5.2.1.4, §5.2.1.1
    // max-age=0, §5.4 Pragma): this cache cannot validate, so it does not answer from storage
    if (cc.no_cache or (cc.max_age != null and cc.max_age.? == 0)) return .bypass_no_cache;
    if (headers.get(pairs, "cache-control") == null) {
        if (headers.get(pairs, "pragma")) |pragma| {
            if (std.ascii.findIgnoreCase(pragma, "no-cache") != null) return .bypass_no_cache;
        }
    }
    const conditional = [_][]const u8{ "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range" };
    for (conditional) |name| if (headers.get(pairs, name) != null) return .bypass_conditional;
    return .cacheable;
}

/// Decides whether a response may be stored (RFC 9111 §3, §3.5, §4.1 and the plugin config).
/// `now_s` is the current Unix time in seconds (for Expires without Date).
pub fn responseStorability(
    cfg: *const Config,
    method: []const u8,
    request_pairs: []const Pair,
    status: u32,
    pairs: []const Pair,
    now_s: i64,
) ResponseDecision {
    if (std.mem.eql(u8, method, "HEAD")) return .skip_head;
    if (!cfg.cacheableStatus(status)) return .skip_status;
    const cc = CacheControl.parse(pairs);
    if (cc.no_store or cc.no_cache) return .skip_no_store;
    if (cc.private) return .skip_private;
    if (headers.get(request_pairs, "authorization") != null and !(cc.public or cc.s_maxage != null or cc.must_revalidate))
        return .skip_private;
    if (headers.get(pairs, "set-cookie") != null and !cfg.store_set_cookie_responses) return .skip_set_cookie;
    for (pairs) |p| {
        if (!std.ascii.eqlIgnoreCase(p.name, "vary")) continue;
        var it = headers.ListIterator{ .rest = p.value };
        while (it.next()) |name| {
            if (std.mem.eql(u8, name, "*") or !cfg.varies(name)) return .skip_vary;
        }
    }
    // a response that is stale on arrival cannot be served without revalidation
    if (freshnessLifetime(pairs, cfg.default_ttl_seconds, now_s) == 0) return .skip_no_store;
    return .storable;
}

/// Freshness lifetime in seconds (RFC 9111 §4.2.1): s-maxage, else max-age, else Expires minus
/// Date (or minus now), else `default_ttl`. An invalid Expires means already expired (0).
pub fn freshnessLifetime(pairs: []const Pair, default_ttl: u32, now_s: i64) u32 {
    const cc = CacheControl.parse(pairs);
    if (cc.s_maxage) |v| return v;
    if (cc.max_age) |v| return v;
    if (headers.get(pairs, "expires")) |e| {
        const expires = parseHttpDate(e) orelse return 0;
        const date = if (headers.get(pairs, "date")) |d| parseHttpDate(d) orelse now_s else now_s;
        if (expires <= date) return 0;
        return @intCast(@min(expires - date, 1 << 31));
    }
    return default_ttl;
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) to Unix seconds.
pub fn parseHttpDate(s: []const u8) ?i64 {
    if (s.len != 29 or s[3] != ',' or s[4] != ' ' or s[7] != ' ' or s[11] != ' ' or s[16] != ' ' or
        s[19] != ':' or s[22] != ':' or !std.mem.eql(u8, s[25..], " GMT")) return null;
    const months = [_][]const u8{ "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    const month: i64 = for (months, 1..) |m, i| {
        if (std.mem.eql(u8, m, s[8..11])) break @intCast(i);
    } else return null;
    const day = digits(s[5..7]) orelse return null;
    const year = digits(s[12..16]) orelse return null;
    const hh = digits(s[17..19]) orelse return null;
    const mm = digits(s[20..22]) orelse return null;
    const ss = digits(s[23..25]) orelse return null;
    if (day < 1 or day > 31 or hh > 23 or mm > 59 or ss > 60) return null;
    return daysFromCivil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss;
}

fn digits(s: []const u8) ?i64 {
    var v: i64 = 0;
    for (s) |ch| {
        if (ch < '0' or ch > '9') return null;
        v = v * 10 + (ch - '0');
    }
    return v;
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn daysFromCivil(y0: i64, m: i64, d: i64) i64 {
    const y = if (m <= 2) y0 - 1 else y0;
    const era = @divFloor(y, 400);
    const yoe = y - era * 400;
    const mp = @mod(m + 9, 12);
    const doy = @divFloor(153 * mp + 2, 5) + d - 1;
    const doe = yoe * 365 + @divFloor(yoe, 4) - @divFloor(yoe, 100) + doy;
    return era * 146097 + doe - 719468;
}

const t = std.testing;


test "request cacheability table" {
    const dflt: Config = .{};
    const cases = [_]struct { method: []const u8, pairs: []const Pair, want: RequestDecision }{
        .{ .method = "GET", .pairs = &.{}, .want = .cacheable },
        .{ .method = "HEAD", .pairs = &.{}, .want = .cacheable },
        .{ .method = "POST", .pairs = &.{}, .want = .bypass_method },
        .{ .method = "CONNECT", .pairs = &.{}, .want = .bypass_upgrade },
        .{ .method = "GET", .pairs = &.{.{ .name = "upgrade", .value = "websocket" }}, .want = .bypass_upgrade },
        .{ .method = "GET", .pairs = &.{.{ .name = "authorization", .value = "Bearer x" }}, .want = .bypass_authorization },
        .{ .method = "GET", .pairs = &.{.{ .name = "cache-control", .value = "max-age=0, no-store" }}, .want = .bypass_no_store },
        .{ .method = "GET", .pairs = &.{.{ .name = "cache-control", .value = "no-cache" }}, .want = .bypass_no_cache },
        .{ .method = "GET", .pairs = &.{.{ .name = "cache-control", .value = "max-age=0" }}, .want = .bypass_no_cache },
        .{ .method = "GET", .pairs = &.{.{ .name = "cache-control", .value = "max-age=60" }}, .want = .cacheable },
        .{ .method = "GET", .pairs = &.{.{ .name = "pragma", .value = "no-cache" }}, .want = .bypass_no_cache },
        .{ .method = "GET", .pairs = &.{ .{ .name = "pragma", .value = "no-cache" }, .{ .name = "cache-control", .value = "max-age=5" } }, .want = .cacheable },
        .{ .method = "GET", .pairs = &.{.{ .name = "if-none-match", .value = "\"x\"" }}, .want = .bypass_conditional },
        .{ .method = "GET", .pairs = &.{.{ .name = "if-modified-since", .value = "x" }}, .want = .bypass_conditional },
        .{ .method = "GET", .pairs = &.{.{ .name = "content-type", .value = "application/grpc+proto" }}, .want = .bypass_grpc },
    };
    for (cases) |c| try t.expectEqual(c.want, requestCacheability(&dflt, c.method, c.pairs));
    const off: Config = .{ .cache_enabled = false };
    try t.expectEqual(RequestDecision.bypass_disabled, requestCacheability(&off, "GET", &.{}));
    const auth: Config = .{ .cache_authorized_requests = true };
    try t.expectEqual(RequestDecision.cacheable, requestCacheability(&auth, "GET", &.{.{ .name = "authorization", .value = "x" }}));
    try t.expectEqualStrings("sp_cache.bypass_request_too_large", RequestDecision.bypass_request_too_large.metricName().?);
    try t.expectEqualStrings("BYPASS", RequestDecision.bypass_grpc.header());
}

test "response storability table" {
    const dflt: Config = .{};
    const vary_cfg: Config = .{ .vary_headers = &.{"accept-encoding"} };
    const cases = [_]struct { cfg: *const Config = &dflt, method: []const u8 = "GET", req: []const Pair = &.{}, status: u32 = 200, pairs: []const Pair = &.{}, want: ResponseDecision }{
        .{ .want = .storable },
        .{ .method = "HEAD", .want = .skip_head },
        .{ .status = 404, .want = .skip_status },
        .{ .pairs = &.{.{ .name = "cache-control", .value = "no-store" }}, .want = .skip_no_store },
        .{ .pairs = &.{.{ .name = "cache-control", .value = "no-cache" }}, .want = .skip_no_store },
        .{ .pairs = &.{.{ .name = "cache-control", .value = "max-age=0" }}, .want = .skip_no_store },
        .{ .pairs = &.{.{ .name = "cache-control", .value = "private, max-age=60" }}, .want = .skip_private },
        .{ .pairs = &.{.{ .name = "set-cookie", .value = "a=b" }}, .want = .skip_set_cookie },
        .{ .pairs = &.{.{ .name = "vary", .value = "*" }}, .want = .skip_vary },
        .{ .pairs = &.{.{ .name = "vary", .value = "Accept-Encoding" }}, .want = .skip_vary },
        .{ .cfg = &vary_cfg, .pairs = &.{.{ .name = "vary", .value = "Accept-Encoding" }}, .want = .storable },
        .{ .req = &.{.{ .name = "authorization", .value = "x" }}, .want = .skip_private },
        .{ .req = &.{.{ .name = "authorization", .value = "x" }}, .pairs = &.{.{ .name = "cache-control", .value = "public" }}, .want = .storable },
        .{ .pairs = &.{.{ .name = "expires", .value = "garbage" }}, .want = .skip_no_store },
    };
    for (cases) |c| try t.expectEqual(c.want, responseStorability(c.cfg, c.method, c.req, c.status, c.pairs, 1_700_000_000));
    try t.expectEqualStrings("sp_cache.store_skipped_response_too_large", ResponseDecision.skip_response_too_large.metricName().?);
    try t.expectEqualStrings("sp_cache.store_skipped_not_looked_up", ResponseDecision.skip_not_looked_up.metricName().?);
}

test "freshness lifetime" {
    try t.expectEqual(@as(u32, 300), freshnessLifetime(&.{}, 300, 0));
    try t.expectEqual(@as(u32, 10), freshnessLifetime(&.{.{ .name = "cache-control", .value = "max-age=10, s-maxage=10" }}, 300, 0));
    try t.expectEqual(@as(u32, 7), freshnessLifetime(&.{.{ .name = "cache-control", .value = "max-age=10, s-maxage=7" }}, 300, 0));
    try t.expectEqual(@as(u32, 1 << 31), freshnessLifetime(&.{.{ .name = "cache-control", .value = "max-age=99999999999999" }}, 300, 0));
    const exp = [_]Pair{ .{ .name = "date", .value = "Sun, 06 Nov 1994 08:49:37 GMT" }, .{ .name = "expires", .value = "Sun, 06 Nov 1994 08:50:37 GMT" } };
    try t.expectEqual(@as(u32, 60), freshnessLifetime(&exp, 300, 0));
    try t.expectEqual(@as(i64, 784111777), parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT").?);
    try t.expect(parseHttpDate("Sun, 06 Nov 1994 08:49:37 UTC") == null);
    try t.expect(deltaSeconds("12a") == null);
}
