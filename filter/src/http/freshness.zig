//! Freshness for a shared cache (RFC 9111 §4.2): the freshness lifetime of a response (§4.2.1,
//! heuristics §4.2.2), its age (§4.2.3, `Age` parsing §5.1) and the reuse decision for a stored
//! response against a request (§4.2, §4.2.4, §5.2, RFC 5861). Lifetimes and header values are
//! whole seconds; clock readings and ages are Unix milliseconds, so that sub-second transit
//! time is not lost. Arithmetic saturates: no input can overflow or trap.
const std = @import("std");
const headers = @import("../headers.zig");
const dates = @import("dates.zig");
const status_codes = @import("status.zig");
const cache_control = @import("cache_control.zig");
const Pair = headers.Pair;
const ResponseDirectives = cache_control.ResponseDirectives;
const RequestDirectives = cache_control.RequestDirectives;

/// Heuristic freshness settings (RFC 9111 §4.2.2); pass null to `freshnessLifetime` to disable.
pub const Heuristic = struct {
    /// share of the time since Last-Modified, in per mille (100 = the RFC's typical 10 %)
    fraction_permille: u32 = 100,
    /// upper bound of a heuristic lifetime, seconds
    max_s: u32,
};

/// First valid `Date` of a response as Unix seconds, or null (absent or invalid, RFC 9110 §6.6.1).
/// `now_s` (Unix seconds) resolves two-digit years.
pub fn dateValue(pairs: []const Pair, now_s: i64) ?i64 {
    return dates.parseHttpDate(headers.get(pairs, "date") orelse return null, now_s);
}

/// Freshness lifetime in seconds of a response for a shared cache (RFC 9111 §4.2.1): s-maxage,
/// else max-age, else Expires minus Date (Date absent or invalid: the response time). An invalid
/// Expires, or several Expires lines that differ, means already expired (§5.3, §4.2.1). Expires is
/// ignored when `directives` came from a targeted field (RFC 9213). Without any of these, and when
/// `heuristic` is set, the status is heuristically cacheable (RFC 9110 §15.1) or `public` is
/// present: the configured share of Date minus Last-Modified, capped (§4.2.2). Else 0.
/// `response_time_s` is when the response was received, Unix seconds. Saturates at 2^31.
pub fn freshnessLifetime(status: u32, pairs: []const Pair, directives: *const ResponseDirectives, heuristic: ?Heuristic, response_time_s: i64) u32 {
    if (directives.s_maxage) |v| return v;
    if (directives.max_age) |v| return v;
    const date = dateValue(pairs, response_time_s) orelse response_time_s;
    if (!directives.targeted) {
        if (headers.get(pairs, "expires")) |first| {
            var lines = headers.ValueIterator{ .pairs = pairs, .name = "expires" };
            while (lines.next()) |line| if (!std.mem.eql(u8, line, first)) return 0;
            const expires = dates.parseHttpDate(first, response_time_s) orelse return 0;
            return clampSeconds(expires -| date);
        }
    }
    const h = heuristic orelse return 0;
    if (!status_codes.isHeuristicallyCacheable(status) and !directives.public) return 0;
    const lm = dates.parseHttpDate(headers.get(pairs, "last-modified") orelse return 0, response_time_s) orelse return 0;
    const since = @max(date -| lm, 0);
    return @min(clampSeconds(@divFloor(since *| @min(h.fraction_permille, 1000), 1000)), h.max_s);
}

fn clampSeconds(v: i64) u32 {
    return @intCast(std.math.clamp(v, 0, cache_control.delta_seconds_max));
}

/// The `Age` of a response in seconds (RFC 9111 §5.1), or null to ignore it. Only the first
/// member of the first `Age` line counts (as the suite's age-parse tests expect: `7200, 0` is
/// 7200 and lines `0` then `7200` are 0); it must be delta-seconds, so `-1`, `1.0`, `abc` and
/// `5;x=1` are ignored. Values past 2^31 read as 2^31.
pub fn parseAge(pairs: []const Pair) ?u32 {
    var it = headers.ListIterator{ .rest = headers.get(pairs, "age") orelse return null };
    return cache_control.deltaSeconds(it.next() orelse return null);
}

/// corrected_initial_age of RFC 9111 §4.2.3 in milliseconds: the larger of the apparent age
/// (response time minus Date, not below 0) and the received Age plus the response delay
/// (response time minus request time). `age_s` is `parseAge`, `date_s` is `dateValue` (seconds,
/// either may be null); `request_time_ms` and `response_time_ms` are Unix milliseconds.
pub fn initialAgeMs(age_s: ?u32, date_s: ?i64, request_time_ms: i64, response_time_ms: i64) u64 {
    const apparent: i64 = if (date_s) |d| @max(response_time_ms -| (d *| 1000), 0) else 0;
    const delay: i64 = @max(response_time_ms -| request_time_ms, 0);
    const corrected: i64 = @as(i64, age_s orelse 0) * 1000 +| delay;
    return @intCast(@max(apparent, corrected));
}

/// current_age of RFC 9111 §4.2.3 in milliseconds: `initial_age_ms` plus the time resident in
/// the cache since `response_time_ms` (Unix ms) up to `now_ms` (Unix ms; a clock that went back
/// adds nothing).
pub fn currentAgeMs(initial_age_ms: u64, response_time_ms: i64, now_ms: i64) u64 {
    const resident: u64 = @intCast(@max(now_ms -| response_time_ms, 0));
    return initial_age_ms +| resident;
}

/// The `Age` header value in seconds for a response of `current_age_ms` (RFC 9111 §5.1):
/// whole seconds, at most 2^31.
pub fn ageHeaderSeconds(current_age_ms: u64) u32 {
    return @intCast(@min(current_age_ms / 1000, cache_control.delta_seconds_max));
}

/// What a shared cache knows about one stored response.
pub const Stored = struct {
    /// `freshnessLifetime`, seconds
    lifetime_s: u32,
    /// `initialAgeMs`, milliseconds
    initial_age_ms: u64,
    /// when the response was received, Unix milliseconds
    response_time_ms: i64,
    /// the stored response's directives
    directives: ResponseDirectives,
};

/// How a stored response may answer a request. `fresh`, `stale_while_revalidate` and
/// `stale_max_stale` may be served (the second also asks for a background revalidation); every
/// `validate_*` needs a successful validation first (a request with only-if-cached then gets 504,
/// RFC 9111 §5.2.1.7).
pub const Verdict = enum {
    /// fresh and no directive asks for validation (§4.2)
    fresh,
    /// stale, within the response's stale-while-revalidate window (RFC 5861 §3)
    stale_while_revalidate,
    /// stale, within the request's max-stale (§5.2.1.2)
    stale_max_stale,
    /// stale, and no directive allows serving it stale (§4.2.4)
    validate_stale,
    /// the response has unqualified no-cache (§5.2.2.4)
    validate_response_no_cache,
    /// the request has no-cache, or Pragma: no-cache without Cache-Control (§5.2.1.4, §5.4)
    validate_request_no_cache,
    /// older than the request's max-age (§5.2.1.1)
    validate_request_max_age,
    /// fresh for less than the request's min-fresh (§5.2.1.3)
    validate_request_min_fresh,

    /// True when the stored response may be sent without contacting the origin first.
    pub fn servable(v: Verdict) bool {
        return switch (v) {
            .fresh, .stale_while_revalidate, .stale_max_stale => true,
            else => false,
        };
    }
};

/// The result of `evaluate`.
pub const Evaluation = struct {
    verdict: Verdict,
    /// current age, milliseconds (send `ageHeaderSeconds` of it as Age)
    current_age_ms: u64,
    /// freshness left, milliseconds (0 once stale)
    ttl_ms: u64,
    /// Unix ms up to which the stored response may answer this request when the origin fails
    /// (5xx, reset, timeout) per stale-if-error (RFC 5861 §4); null when not allowed
    stale_if_error_until_ms: ?i64,
};

/// Decides how `stored` may answer a request with directives `request` at `now_ms` (Unix ms),
/// for a shared cache (RFC 9111 §4.2, §4.2.4, §5.2; RFC 5861). Checks, in order: request and
/// response no-cache, request max-age, request min-fresh, freshness; then for a stale response
/// must-revalidate, proxy-revalidate and s-maxage forbid stale reuse, else the
/// stale-while-revalidate window, else the request's max-stale.
pub fn evaluate(stored: *const Stored, request: RequestDirectives, now_ms: i64) Evaluation {
    const d = &stored.directives;
    const age = currentAgeMs(stored.initial_age_ms, stored.response_time_ms, now_ms);
    const lifetime_ms = @as(u64, stored.lifetime_s) * 1000;
    const ttl = lifetime_ms -| age;
    const staleness = age -| lifetime_ms;
    const forbids_stale = d.forbidsStale() or d.no_cache or request.no_cache;
    var until: ?i64 = null;
    if (d.stale_if_error) |sie| if (!forbids_stale) {
        const fresh_until = stored.response_time_ms +| @as(i64, @intCast(@min(lifetime_ms, std.math.maxInt(i64)))) -| @as(i64, @intCast(@min(stored.initial_age_ms, std.math.maxInt(i64))));
        until = fresh_until +| @as(i64, sie) * 1000;
    };
    const verdict: Verdict = blk: {
        if (request.no_cache) break :blk .validate_request_no_cache;
        if (d.no_cache) break :blk .validate_response_no_cache;
        if (request.max_age) |ma| if (age > @as(u64, ma) * 1000) break :blk .validate_request_max_age;
        if (request.min_fresh) |mf| if (ttl < @as(u64, mf) * 1000) break :blk .validate_request_min_fresh;
        if (ttl > 0) break :blk .fresh;
        if (forbids_stale) break :blk .validate_stale;
        if (d.stale_while_revalidate) |swr| if (staleness <= @as(u64, swr) * 1000) break :blk .stale_while_revalidate;
        if (request.max_stale) |ms| if (ms == RequestDirectives.unbounded or staleness <= @as(u64, ms) * 1000) break :blk .stale_max_stale;
        break :blk .validate_stale;
    };
    return .{ .verdict = verdict, .current_age_ms = age, .ttl_ms = ttl, .stale_if_error_until_ms = until };
}

const t = std.testing;
const T0: i64 = 1_700_000_000; // a response time, Unix seconds
const date_t0 = "Tue, 14 Nov 2023 22:13:20 GMT"; // = T0

fn lifetime(status: u32, pairs: []const Pair, heuristic: ?Heuristic) u32 {
    const d = ResponseDirectives.parse(pairs);
    return freshnessLifetime(status, pairs, &d, heuristic, T0);
}

test "RFC 9111 4.2.1: freshness lifetime, explicit (suite cc-freshness / expires cases)" {
    const Case = struct { pairs: []const Pair, want: u32 };
    const cases = [_]Case{
        .{ .pairs = &.{}, .want = 0 },
        .{ .pairs = &.{.{ .name = "cache-control", .value = "max-age=3600" }}, .want = 3600 },
        .{ .pairs = &.{.{ .name = "cache-control", .value = "max-age=99999999999999" }}, .want = 1 << 31 },
        .{ .pairs = &.{.{ .name = "cache-control", .value = "max-age=3600, s-maxage=1" }}, .want = 1 },
        .{ .pairs = &.{ .{ .name = "cache-control", .value = "s-maxage=3600, max-age=0" }, .{ .name = "expires", .value = "Tue, 14 Nov 2023 22:13:10 GMT" } }, .want = 3600 },
        .{ .pairs = &.{ .{ .name = "cache-control", .value = "max-age=0" }, .{ .name = "date", .value = date_t0 }, .{ .name = "expires", .value = "Tue, 14 Nov 2023 23:13:20 GMT" } }, .want = 0 },
        .{ .pairs = &.{ .{ .name = "cache-control", .value = "max-age=3600" }, .{ .name = "expires", .value = "0" } }, .want = 3600 },
        .{ .pairs = &.{ .{ .name = "date", .value = date_t0 }, .{ .name = "expires", .value = "Tue, 14 Nov 2023 23:13:20 GMT" } }, .want = 3600 },
        .{ .pairs = &.{ .{ .name = "date", .value = date_t0 }, .{ .name = "expires", .value = date_t0 } }, .want = 0 },
        .{ .pairs = &.{ .{ .name = "date", .value = date_t0 }, .{ .name = "expires", .value = "Tue, 14 Nov 2023 21:13:20 GMT" } }, .want = 0 },
        .{ .pairs = &.{ .{ .name = "date", .value = date_t0 }, .{ .name = "expires", .value = "0" } }, .want = 0 },
        // Expires 300 s after now, Date 400 s after now: Expires older than Date
        .{ .pairs = &.{ .{ .name = "date", .value = "Tue, 14 Nov 2023 22:20:00 GMT" }, .{ .name = "expires", .value = "Tue, 14 Nov 2023 22:18:20 GMT" } }, .want = 0 },
        // invalid Date: the response time stands in
        .{ .pairs = &.{ .{ .name = "date", .value = "foo" }, .{ .name = "expires", .value = "Tue, 14 Nov 2023 22:13:30 GMT" } }, .want = 10 },
        .{ .pairs = &.{.{ .name = "expires", .value = "Sun, 21 Nov 2286 04:46:39 GMT" }}, .want = 1 << 31 },
        // several Expires lines: identical ones are one value, differing ones mean stale
        .{ .pairs = &.{ .{ .name = "expires", .value = "Tue, 14 Nov 2023 22:13:30 GMT" }, .{ .name = "Expires", .value = "Tue, 14 Nov 2023 22:13:30 GMT" } }, .want = 10 },
        .{ .pairs = &.{ .{ .name = "expires", .value = "Tue, 14 Nov 2023 22:13:30 GMT" }, .{ .name = "expires", .value = "Tue, 14 Nov 2023 22:13:31 GMT" } }, .want = 0 },
    };
    for (cases, 0..) |c, i| {
        t.expectEqual(c.want, lifetime(200, c.pairs, null)) catch |e| {
            std.debug.print("case {d}\n", .{i});
            return e;
        };
    }
}

test "RFC 9111 4.2.1 / RFC 9213: a targeted field's directives ignore Expires" {
    const pairs = [_]Pair{ .{ .name = "date", .value = date_t0 }, .{ .name = "expires", .value = "Tue, 14 Nov 2023 23:13:20 GMT" } };
    const d: ResponseDirectives = .{ .targeted = true };
    try t.expectEqual(@as(u32, 0), freshnessLifetime(200, &pairs, &d, null, T0));
}

test "RFC 9111 4.2.2: heuristic freshness only when enabled, for listed statuses or public" {
    const h: Heuristic = .{ .max_s = 86400 };
    const lm_day = [_]Pair{ .{ .name = "date", .value = date_t0 }, .{ .name = "last-modified", .value = "Mon, 13 Nov 2023 22:13:20 GMT" } };
    try t.expectEqual(@as(u32, 0), lifetime(200, &lm_day, null));
    try t.expectEqual(@as(u32, 8640), lifetime(200, &lm_day, h));
    try t.expectEqual(@as(u32, 8640), lifetime(404, &lm_day, h));
    try t.expectEqual(@as(u32, 0), lifetime(201, &lm_day, h));
    try t.expectEqual(@as(u32, 0), lifetime(599, &lm_day, h));
    try t.expectEqual(@as(u32, 600), lifetime(200, &lm_day, .{ .max_s = 600 }));
    try t.expectEqual(@as(u32, 86400), lifetime(200, &lm_day, .{ .max_s = 1 << 31, .fraction_permille = 5000 }));
    const public = lm_day ++ [_]Pair{.{ .name = "cache-control", .value = "public" }};
    try t.expectEqual(@as(u32, 8640), lifetime(599, &public, h));
    // explicit expiry, even invalid, forbids heuristics
    const bad_expires = lm_day ++ [_]Pair{.{ .name = "expires", .value = "soon" }};
    try t.expectEqual(@as(u32, 0), lifetime(200, &bad_expires, h));
    // Last-Modified after Date, or invalid, gives nothing
    const future = [_]Pair{ .{ .name = "date", .value = date_t0 }, .{ .name = "last-modified", .value = "Wed, 15 Nov 2023 22:13:20 GMT" } };
    try t.expectEqual(@as(u32, 0), lifetime(200, &future, h));
    // no Date: the response time stands in
    try t.expectEqual(@as(u32, 8640), lifetime(200, lm_day[1..], h));
}

test "RFC 9111 5.1: Age parsing (suite age-parse cases)" {
    const Case = struct { lines: []const []const u8, want: ?u32 };
    const cases = [_]Case{
        .{ .lines = &.{"7200"}, .want = 7200 },             .{ .lines = &.{"abc"}, .want = null },
        .{ .lines = &.{"-7200"}, .want = null },            .{ .lines = &.{"7200.0"}, .want = null },
        .{ .lines = &.{"2147483647"}, .want = 2147483647 }, .{ .lines = &.{"2147483648"}, .want = 1 << 31 },
        .{ .lines = &.{"2147483649"}, .want = 1 << 31 },    .{ .lines = &.{"7200, 0"}, .want = 7200 },
        .{ .lines = &.{"0, 7200"}, .want = 0 },             .{ .lines = &.{ "7200", "0" }, .want = 7200 },
        .{ .lines = &.{ "0", "7200" }, .want = 0 },         .{ .lines = &.{"7200;foo=bar"}, .want = null },
        .{ .lines = &.{""}, .want = null },                 .{ .lines = &.{}, .want = null },
        .{ .lines = &.{" 30 "}, .want = 30 },
    };
    for (cases) |c| {
        var pairs: [2]Pair = undefined;
        for (c.lines, 0..) |l, i| pairs[i] = .{ .name = "Age", .value = l };
        try t.expectEqual(c.want, parseAge(pairs[0..c.lines.len]));
    }
}

test "RFC 9111 4.2.3: corrected initial age and current age" {
    const rt: i64 = T0 * 1000;
    // apparent age wins: Date 7200 s before the response time
    try t.expectEqual(@as(u64, 7_200_000), initialAgeMs(null, T0 - 7200, rt - 50, rt));
    // Age plus response delay wins
    try t.expectEqual(@as(u64, 30_250), initialAgeMs(30, T0, rt - 250, rt));
    // a Date in the future gives no negative age; a request time after the response none either
    try t.expectEqual(@as(u64, 15_000), initialAgeMs(15, T0 + 10, rt + 5, rt));
    try t.expectEqual(@as(u64, 0), initialAgeMs(null, null, rt, rt));
    // saturation
    try t.expectEqual(@as(u64, 2_147_483_648_000), initialAgeMs(1 << 31, null, 0, 0));
    try t.expectEqual(@as(u64, std.math.maxInt(i64)), initialAgeMs(1 << 31, std.math.minInt(i64), 0, std.math.maxInt(i64)));
    try t.expectEqual(@as(u64, 2_147_483_648_000), initialAgeMs(1 << 31, std.math.maxInt(i64), std.math.maxInt(i64), std.math.minInt(i64)));
    try t.expectEqual(@as(u64, 31_000), currentAgeMs(1_000, rt, rt + 30_000));
    try t.expectEqual(@as(u64, 1_000), currentAgeMs(1_000, rt, rt - 30_000));
    try t.expectEqual(std.math.maxInt(u64), currentAgeMs(std.math.maxInt(u64), 0, 5));
    try t.expectEqual(@as(u32, 31), ageHeaderSeconds(31_999));
    try t.expectEqual(@as(u32, 1 << 31), ageHeaderSeconds(std.math.maxInt(u64)));
}

fn eval(cc: []const u8, lifetime_s: u32, initial_age_ms: u64, req_cc: []const u8, elapsed_ms: i64) Evaluation {
    const resp = [_]Pair{.{ .name = "cache-control", .value = cc }};
    const req = [_]Pair{.{ .name = "cache-control", .value = req_cc }};
    const stored: Stored = .{ .lifetime_s = lifetime_s, .initial_age_ms = initial_age_ms, .response_time_ms = T0 * 1000, .directives = ResponseDirectives.parse(&resp) };
    return evaluate(&stored, RequestDirectives.parse(&req), T0 * 1000 + elapsed_ms);
}

test "RFC 9111 4.2 / 4.2.4 / 5.2 / RFC 5861: evaluate, case by case" {
    const Case = struct { name: []const u8, cc: []const u8, life: u32, age0: u64 = 0, req: []const u8 = "", at: i64, want: Verdict };
    const cases = [_]Case{
        .{ .name = "4.2 fresh", .cc = "max-age=10", .life = 10, .at = 9_999, .want = .fresh },
        .{ .name = "4.2 stale at exactly the lifetime", .cc = "max-age=10", .life = 10, .at = 10_000, .want = .validate_stale },
        .{ .name = "4.2.3 received Age counts", .cc = "max-age=3600", .life = 3600, .age0 = 7_200_000, .at = 0, .want = .validate_stale },
        .{ .name = "5.2.2.4 response no-cache, even fresh", .cc = "max-age=100, no-cache", .life = 100, .at = 0, .want = .validate_response_no_cache },
        .{ .name = "5.2.2.4 qualified no-cache does not force validation", .cc = "no-cache=\"a\", max-age=100", .life = 100, .at = 0, .want = .fresh },
        .{ .name = "5.2.1.4 request no-cache", .cc = "max-age=100", .life = 100, .req = "no-cache", .at = 0, .want = .validate_request_no_cache },
        .{ .name = "5.2.1.1 request max-age=0", .cc = "max-age=100", .life = 100, .req = "max-age=0", .at = 1, .want = .validate_request_max_age },
        .{ .name = "5.2.1.1 request max-age met", .cc = "max-age=100", .life = 100, .req = "max-age=5", .at = 5_000, .want = .fresh },
        .{ .name = "5.2.1.1 request max-age vs Age", .cc = "max-age=100000", .life = 100000, .age0 = 1_800_000, .req = "max-age=600", .at = 0, .want = .validate_request_max_age },
        .{ .name = "5.2.1.3 min-fresh not met", .cc = "max-age=1500", .life = 1500, .req = "min-fresh=2000", .at = 0, .want = .validate_request_min_fresh },
        .{ .name = "5.2.1.3 min-fresh with Age", .cc = "max-age=1500", .life = 1500, .age0 = 1_000_000, .req = "min-fresh=1000", .at = 0, .want = .validate_request_min_fresh },
        .{ .name = "5.2.1.3 min-fresh met", .cc = "max-age=1500", .life = 1500, .req = "min-fresh=1000", .at = 0, .want = .fresh },
        .{ .name = "5.2.1.2 max-stale within", .cc = "max-age=2", .life = 2, .req = "max-stale=1000", .at = 3_000, .want = .stale_max_stale },
        .{ .name = "5.2.1.2 max-stale with Age", .cc = "max-age=1500", .life = 1500, .age0 = 2_000_000, .req = "max-stale=1000", .at = 0, .want = .stale_max_stale },
        .{ .name = "5.2.1.2 max-stale exceeded", .cc = "max-age=2", .life = 2, .req = "max-stale=1", .at = 3_001, .want = .validate_stale },
        .{ .name = "5.2.1.2 max-stale unbounded", .cc = "max-age=2", .life = 2, .req = "max-stale", .at = 99_999_999, .want = .stale_max_stale },
        .{ .name = "5.2.2.2 must-revalidate beats max-stale", .cc = "max-age=2, must-revalidate", .life = 2, .req = "max-stale", .at = 3_000, .want = .validate_stale },
        .{ .name = "5.2.2.8 proxy-revalidate beats max-stale", .cc = "max-age=2, proxy-revalidate", .life = 2, .req = "max-stale", .at = 3_000, .want = .validate_stale },
        .{ .name = "5.2.2.10 s-maxage implies proxy-revalidate", .cc = "max-age=2, s-maxage=2", .life = 2, .req = "max-stale", .at = 3_000, .want = .validate_stale },
        .{ .name = "RFC 5861 3 within stale-while-revalidate", .cc = "max-age=1, stale-while-revalidate=4", .life = 1, .at = 3_000, .want = .stale_while_revalidate },
        .{ .name = "RFC 5861 3 edge of the window", .cc = "max-age=1, stale-while-revalidate=4", .life = 1, .at = 5_000, .want = .stale_while_revalidate },
        .{ .name = "RFC 5861 3 after the window", .cc = "max-age=1, stale-while-revalidate=4", .life = 1, .at = 5_001, .want = .validate_stale },
        .{ .name = "RFC 5861 3 must-revalidate forbids the window", .cc = "max-age=1, stale-while-revalidate=4, must-revalidate", .life = 1, .at = 2_000, .want = .validate_stale },
        .{ .name = "RFC 5861 3 request no-cache beats the window", .cc = "max-age=1, stale-while-revalidate=4", .life = 1, .req = "no-cache", .at = 2_000, .want = .validate_request_no_cache },
        .{ .name = "4.2.4 zero lifetime", .cc = "", .life = 0, .at = 0, .want = .validate_stale },
    };
    for (cases) |c| {
        const got = eval(c.cc, c.life, c.age0, c.req, c.at);
        t.expectEqual(c.want, got.verdict) catch |e| {
            std.debug.print("case \"{s}\": got {s}\n", .{ c.name, @tagName(got.verdict) });
            return e;
        };
    }
    try t.expect(Verdict.stale_max_stale.servable() and Verdict.fresh.servable() and !Verdict.validate_stale.servable());
}

test "RFC 5861 4: stale-if-error deadline, and what forbids it" {
    // fresh until T0+10 s (initial age 2 s, lifetime 12 s), then 60 s of stale-if-error
    const stored: Stored = .{ .lifetime_s = 12, .initial_age_ms = 2_000, .response_time_ms = T0 * 1000, .directives = .{ .stale_if_error = 60 } };
    const e = evaluate(&stored, .{}, T0 * 1000 + 4_000);
    try t.expectEqual(Verdict.fresh, e.verdict);
    try t.expectEqual(@as(u64, 6_000), e.current_age_ms);
    try t.expectEqual(@as(u64, 6_000), e.ttl_ms);
    try t.expectEqual(@as(?i64, T0 * 1000 + 70_000), e.stale_if_error_until_ms);
    try t.expectEqual(@as(?i64, null), evaluate(&stored, .{ .no_cache = true }, T0 * 1000).stale_if_error_until_ms);
    const forbidding = [_][]const u8{ "must-revalidate", "proxy-revalidate", "s-maxage=12", "no-cache" };
    for (forbidding) |f| {
        const resp = [_]Pair{.{ .name = "cache-control", .value = f }};
        var s = stored;
        s.directives = ResponseDirectives.parse(&resp);
        s.directives.stale_if_error = 60;
        try t.expectEqual(@as(?i64, null), evaluate(&s, .{}, T0 * 1000).stale_if_error_until_ms);
    }
    try t.expectEqual(@as(?i64, null), evaluate(&.{ .lifetime_s = 12, .initial_age_ms = 0, .response_time_ms = 0, .directives = .{} }, .{}, 0).stale_if_error_until_ms);
}

test "evaluate saturates on extreme inputs" {
    var prng = std.Random.DefaultPrng.init(3);
    const r = prng.random();
    for (0..5000) |_| {
        const stored: Stored = .{ .lifetime_s = r.int(u32), .initial_age_ms = r.int(u64), .response_time_ms = r.int(i64), .directives = .{ .stale_if_error = r.int(u32), .stale_while_revalidate = r.int(u32) } };
        _ = evaluate(&stored, .{ .max_age = r.int(u32), .min_fresh = r.int(u32), .max_stale = r.int(u32) }, r.int(i64));
        _ = initialAgeMs(r.int(u32), r.int(i64), r.int(i64), r.int(i64));
    }
}
