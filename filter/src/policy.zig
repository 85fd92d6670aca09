//! The cache's policy: RFC 9111 semantics (http/) combined with the plugin configuration, as pure
//! functions that return a reason, never a bool. The request flow asks here whether a request may
//! be looked up, whether a response may be stored, and what freshness lifetime a stored response
//! has; it never parses a header itself.
const std = @import("std");
const headers = @import("headers.zig");
const config = @import("config.zig");
const reason = @import("reason.zig");
const cache_control = @import("http/cache_control.zig");
const targeted = @import("http/targeted.zig");
const freshness = @import("http/freshness.zig");
const storable = @import("http/storable.zig");
const vary = @import("http/vary.zig");
const conditional = @import("http/conditional.zig");

const Pair = headers.Pair;
const Config = config.Config;
const Reason = reason.Reason;
const Event = reason.Event;

/// Methods that may carry a body the filter holds for a lookup.
pub fn bodiless(method: []const u8) bool {
    return std.mem.eql(u8, method, "GET") or std.mem.eql(u8, method, "HEAD");
}

/// Whether a request may be looked up: null when it may, else the bypass reason.
pub fn requestBypass(cfg: *const Config, method: []const u8, pairs: []const Pair) ?Reason {
    if (!cfg.cache_enabled) return .bypass_disabled;
    if (std.mem.eql(u8, method, "CONNECT") or headers.get(pairs, "upgrade") != null) return .bypass_upgrade;
    if (!cfg.lookupMethod(method)) return .bypass_method;
    if (headers.get(pairs, "content-type")) |ct| {
        if (std.ascii.startsWithIgnoreCase(ct, "application/grpc")) return .bypass_grpc;
    }
    if (headers.get(pairs, "authorization") != null and !cfg.cache_authorized_requests) return .bypass_authorization;
    if (headers.get(pairs, "range") != null) return .bypass_range;
    // RFC 9111 §5.2.1.5: nothing of this exchange may be stored; serving from storage is not
    // forbidden, but a client that says no-store expects the origin's answer (cache-tests
    // ccreq-no-store), so the request goes upstream untouched
    if (cache_control.RequestDirectives.parse(pairs).no_store) return .bypass_no_store;
    return null;
}

/// The response directives the cache obeys: CDN-Cache-Control when configured and present
/// (RFC 9213), else Cache-Control.
pub fn responseDirectives(cfg: *const Config, pairs: []const Pair) cache_control.ResponseDirectives {
    return targeted.effectiveDirectives(pairs, cfg.cdn_cache_control);
}

fn hasExplicitFreshness(pairs: []const Pair, d: *const cache_control.ResponseDirectives) bool {
    return d.max_age != null or d.s_maxage != null or (!d.targeted and headers.get(pairs, "expires") != null);
}

/// Freshness lifetime (seconds) of a stored response (RFC 9111 §4.2.1): explicit, else the
/// heuristic (§4.2.2) when `heuristic_freshness` is on, else `default_ttl_seconds` (the
/// dangerous opt-in), else 0. `response_time_s`: when it was received (Unix seconds).
pub fn lifetime(cfg: *const Config, status: u32, pairs: []const Pair, d: *const cache_control.ResponseDirectives, response_time_s: i64) u32 {
    const heuristic: ?freshness.Heuristic = if (cfg.heuristic_freshness) .{ .max_s = cfg.heuristic_max_seconds } else null;
    const l = freshness.freshnessLifetime(status, pairs, d, heuristic, response_time_s);
    if (l == 0 and cfg.default_ttl_seconds > 0 and !hasExplicitFreshness(pairs, d)) return cfg.default_ttl_seconds;
    return l;
}

/// True when a stored response carries a validator (ETag or Last-Modified, RFC 9110 §8.8).
pub fn hasValidator(pairs: []const Pair) bool {
    return conditional.validatorRequest(pairs, 0).any();
}

/// Whether a response may be stored: null when it may, else the `store_skipped_*` event.
/// `method` is the request's (HEAD responses are never stored: they carry no body); `lookup`
/// methods other than GET (POST opt-in) are stored like GET, keyed with their body.
pub fn storeSkip(
    cfg: *const Config,
    method: []const u8,
    status: u32,
    request_pairs: []const Pair,
    response_pairs: []const Pair,
    d: *const cache_control.ResponseDirectives,
    response_time_s: i64,
) ?Event {
    if (std.mem.eql(u8, method, "HEAD")) return .store_skipped_status;
    if (!cfg.cacheableStatus(status)) return .store_skipped_status;
    const as_method = if (cfg.lookupMethod(method)) "GET" else method;
    switch (storable.responseStorability(as_method, status, request_pairs, response_pairs, d)) {
        .storable => {},
        .method, .status_not_final, .status_not_understood => return .store_skipped_status,
        .no_store => return .store_skipped_no_store,
        .private => return .store_skipped_private,
        .authorization => return .store_skipped_authorization,
        .no_explicit_permission => if (cfg.default_ttl_seconds == 0) return .store_skipped_no_freshness,
    }
    if (headers.get(response_pairs, "set-cookie") != null and !cfg.store_set_cookie_responses) return .store_skipped_set_cookie;
    if (vary.VaryNames.parse(response_pairs).star) return .store_skipped_vary_star;
    const l = lifetime(cfg, status, response_pairs, d, response_time_s);
    if ((l == 0 or d.no_cache) and !hasValidator(response_pairs)) return .store_skipped_no_freshness;
    return null;
}

const t = std.testing;

fn p(name: []const u8, value: []const u8) Pair {
    return .{ .name = name, .value = value };
}

test "request bypass reasons" {
    const dflt: Config = .{};
    const cases = [_]struct { method: []const u8, pairs: []const Pair = &.{}, want: ?Reason }{
        .{ .method = "GET", .want = null },
        .{ .method = "HEAD", .want = null },
        .{ .method = "POST", .want = .bypass_method },
        .{ .method = "CONNECT", .want = .bypass_upgrade },
        .{ .method = "GET", .pairs = &.{p("upgrade", "websocket")}, .want = .bypass_upgrade },
        .{ .method = "GET", .pairs = &.{p("authorization", "Bearer x")}, .want = .bypass_authorization },
        .{ .method = "GET", .pairs = &.{p("cache-control", "no-store")}, .want = .bypass_no_store },
        .{ .method = "GET", .pairs = &.{p("cache-control", "no-cache")}, .want = null },
        .{ .method = "GET", .pairs = &.{p("if-none-match", "\"x\"")}, .want = null },
        .{ .method = "GET", .pairs = &.{p("range", "bytes=0-1")}, .want = .bypass_range },
        .{ .method = "GET", .pairs = &.{p("content-type", "Application/GRPC+proto")}, .want = .bypass_grpc },
    };
    for (cases) |c| try t.expectEqual(c.want, requestBypass(&dflt, c.method, c.pairs));
    const off: Config = .{ .cache_enabled = false };
    try t.expectEqual(@as(?Reason, .bypass_disabled), requestBypass(&off, "GET", &.{}));
    const auth: Config = .{ .cache_authorized_requests = true };
    try t.expectEqual(@as(?Reason, null), requestBypass(&auth, "GET", &.{p("authorization", "x")}));
}

test "store decisions: RFC 9111 defaults store only what asked to be stored" {
    const dflt: Config = .{};
    const ttl: Config = .{ .default_ttl_seconds = 300 };
    const heur: Config = .{ .heuristic_freshness = true };
    const cookies: Config = .{ .store_set_cookie_responses = true, .redact_headers = &.{"cookie"} };
    const Case = struct { cfg: *const Config = &dflt, method: []const u8 = "GET", status: u32 = 200, req: []const Pair = &.{}, resp: []const Pair, want: ?Event };
    const cases = [_]Case{
        .{ .resp = &.{p("cache-control", "max-age=60")}, .want = null },
        .{ .resp = &.{}, .want = .store_skipped_no_freshness },
        .{ .cfg = &ttl, .resp = &.{}, .want = null },
        .{ .cfg = &heur, .resp = &.{ p("date", "Sun, 06 Nov 1994 08:49:37 GMT"), p("last-modified", "Sun, 06 Nov 1993 08:49:37 GMT") }, .want = null },
        // stale on arrival but revalidatable: stored, and never served without the origin's 304
        .{ .resp = &.{p("etag", "\"a\"")}, .want = null },
        .{ .status = 201, .resp = &.{p("etag", "\"a\"")}, .want = .store_skipped_no_freshness },
        .{ .resp = &.{ p("cache-control", "max-age=0"), p("etag", "\"a\"") }, .want = null },
        .{ .resp = &.{p("cache-control", "max-age=0")}, .want = .store_skipped_no_freshness },
        .{ .resp = &.{ p("cache-control", "no-cache"), p("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT") }, .want = null },
        .{ .resp = &.{p("cache-control", "no-cache, max-age=60")}, .want = .store_skipped_no_freshness },
        .{ .resp = &.{p("cache-control", "no-store, max-age=60")}, .want = .store_skipped_no_store },
        .{ .resp = &.{p("cache-control", "private, max-age=60")}, .want = .store_skipped_private },
        .{ .req = &.{p("authorization", "x")}, .resp = &.{p("cache-control", "max-age=60")}, .want = .store_skipped_authorization },
        .{ .resp = &.{ p("cache-control", "max-age=60"), p("set-cookie", "a=b") }, .want = .store_skipped_set_cookie },
        .{ .cfg = &cookies, .resp = &.{ p("cache-control", "max-age=60"), p("set-cookie", "a=b") }, .want = null },
        .{ .resp = &.{ p("cache-control", "max-age=60"), p("vary", "*") }, .want = .store_skipped_vary_star },
        .{ .resp = &.{ p("cache-control", "max-age=60"), p("vary", "accept") }, .want = null },
        .{ .status = 500, .resp = &.{p("cache-control", "max-age=60")}, .want = null },
        .{ .status = 206, .resp = &.{p("cache-control", "max-age=60")}, .want = .store_skipped_status },
        .{ .method = "HEAD", .resp = &.{p("cache-control", "max-age=60")}, .want = .store_skipped_status },
        .{ .method = "POST", .resp = &.{p("cache-control", "max-age=60")}, .want = .store_skipped_status },
    };
    for (cases, 0..) |c, i| {
        const d = responseDirectives(c.cfg, c.resp);
        t.expectEqual(c.want, storeSkip(c.cfg, c.method, c.status, c.req, c.resp, &d, 784111777)) catch |e| {
            std.debug.print("case {d}\n", .{i});
            return e;
        };
    }
}

test "lifetime: explicit, heuristic opt-in, default TTL opt-in never overrides an explicit 0" {
    const ttl: Config = .{ .default_ttl_seconds = 300 };
    const d0 = responseDirectives(&ttl, &.{p("cache-control", "max-age=0")});
    try t.expectEqual(@as(u32, 0), lifetime(&ttl, 200, &.{p("cache-control", "max-age=0")}, &d0, 0));
    const none = responseDirectives(&ttl, &.{});
    try t.expectEqual(@as(u32, 300), lifetime(&ttl, 200, &.{}, &none, 0));
    const dflt: Config = .{};
    try t.expectEqual(@as(u32, 0), lifetime(&dflt, 200, &.{}, &none, 0));
}
