//! The cache session: everything one exchange does with the cache's tiers, apart from the
//! callback flow (filter.zig) and the pure semantics (policy.zig, http/). Envoy's
//! `cache_sessions` is the model: find the stored variants of a key (L1, then the backend's
//! answer, verified), choose the variant a request selects and judge it, build and sign an entry
//! from a response, write it to the L1 and the backend, and invalidate keys.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const headers = @import("headers.zig");
const config = @import("config.zig");
const policy = @import("policy.zig");
const entry = @import("entry.zig");
const prepared = @import("prepared.zig");
const protocol = @import("protocol.zig");
const metrics = @import("metrics.zig");
const freshness = @import("http/freshness.zig");
const cache_control = @import("http/cache_control.zig");
const vary = @import("http/vary.zig");
const fields = @import("http/fields.zig");

const Pair = headers.Pair;
const Entry = entry.Entry;
const Config = config.Config;
const gpa = host.gpa;
const m = &metrics.global;

/// The stored variants of one key, as found in the L1 or in a backend answer; every entry
/// borrows `bytes`. Owned: free with `deinit`. An L1 read keeps its prepared payload and
/// decodes the full entries only when a slow path asks (`full`).
pub const Found = struct {
    bytes: []u8 = &.{},
    /// the L1's prepared payload (prepared.zig), a slice of `bytes`; empty for a backend answer
    payload: []const u8 = &.{},
    /// `entries` hold the full entries (always, for a backend answer)
    decoded: bool = true,
    /// bytes came from the host (free with host.free) rather than from `gpa`
    host_owned: bool = true,
    /// the usable entries (a prefix of `storage`)
    entries: []Entry = &.{},
    storage: []Entry = &.{},
    pairs: []Pair = &.{},
    /// when the key was last invalidated (Unix ms; 0: never, as far as the L1 knows)
    invalidated_at_ms: u64 = 0,
    /// a backend answer whose framing could not be decoded at all (a lookup error, not a
    /// rejected entry)
    undecodable: bool = false,

    /// Frees the arrays and the bytes.
    pub fn deinit(f: *Found) void {
        gpa.free(f.storage);
        gpa.free(f.pairs);
        if (f.host_owned) host.free(f.bytes) else if (f.bytes.len > 0) gpa.free(f.bytes);
        f.* = .{};
    }
};

/// The full entries (decoded from an L1 payload on first use, replay-validated: the L1 holds
/// only verified entries, and validation is cheap, so every tier's entries pass it alike).
pub fn full(f: *Found) []Entry {
    if (f.decoded) return f.entries;
    f.decoded = true;
    var set = prepared.decodeFull(gpa, f.payload) catch {
        m.event(.entry_rejected_malformed, 1);
        return f.entries;
    };
    var n: usize = 0;
    for (set.entries) |e| {
        if (entry.validateForReplay(&e) != null) {
            m.event(.entry_rejected_syntax, 1);
            continue;
        }
        set.entries[n] = e;
        n += 1;
    }
    f.entries = set.entries[0..n];
    f.storage = set.entries;
    f.pairs = set.pairs;
    return f.entries;
}

/// Verifies every candidate of a backend answer (signature, key, replay validation, not older
/// than an invalidation) and keeps those that pass. `body` becomes owned by the result.
pub fn verifyAnswer(body: []u8, key: []const u8, signing_key: []const u8, invalidated_at_ms: u64) Found {
    const answer = protocol.decodeLookupAnswer(gpa, body) catch {
        return .{ .bytes = body, .undecodable = true };
    };
    defer gpa.free(answer.candidates);
    var kept: std.ArrayList(Entry) = .empty;
    for (answer.candidates) |c| {
        const e = switch (c) {
            .invalid => {
                m.event(.entry_rejected_malformed, 1);
                continue;
            },
            .entry => |e| e,
        };
        if (!entry.verify(signing_key, &e)) {
            m.event(.entry_rejected_signature, 1);
            continue;
        }
        if (!std.mem.eql(u8, e.key, key)) {
            m.event(.entry_rejected_key, 1);
            continue;
        }
        if (entry.validateForReplay(&e) != null) {
            m.event(.entry_rejected_syntax, 1);
            continue;
        }
        if (e.response_time_ms <= invalidated_at_ms) {
            m.event(.entry_rejected_invalidated, 1);
            continue;
        }
        kept.append(gpa, e) catch break;
    }
    const entries: []Entry = kept.toOwnedSlice(gpa) catch &.{};
    return .{
        .bytes = body,
        .entries = entries,
        .storage = entries,
        .pairs = answer.pairs,
        .invalidated_at_ms = invalidated_at_ms,
    };
}

/// The variant hash a request would have for a response with `resp_headers` (docs/protocol.md
/// "Variant hash"): "" when the response has no Vary, null for `Vary: *` (never matches).
pub fn variantOf(resp_headers: []const Pair, req: []const Pair, buf: *[64]u8) ?[]const u8 {
    const names = vary.VaryNames.parse(resp_headers);
    if (names.star) return null;
    if (names.slice().len == 0) return "";
    buf.* = std.fmt.bytesToHex(vary.variantHash(&names, req), .lower);
    return buf;
}

/// The entry of `f` the request selects (RFC 9111 §4.1), newest first; null when none.
pub fn select(entries: []const Entry, req: []const Pair) ?*const Entry {
    var best: ?*const Entry = null;
    for (entries) |*e| {
        var buf: [64]u8 = undefined;
        const want = variantOf(e.headers, req, &buf) orelse continue;
        if (!std.mem.eql(u8, want, e.variant)) continue;
        if (best == null or e.response_time_ms > best.?.response_time_ms) best = e;
    }
    return best;
}

/// How a stored entry may answer a request (RFC 9111 §4.2), and what the reply needs.
pub fn judge(cfg: *const Config, e: *const Entry, request: cache_control.RequestDirectives, now_ms: u64) freshness.Evaluation {
    const d = policy.responseDirectives(cfg, e.headers);
    const resp_s: i64 = @intCast(e.response_time_ms / 1000);
    const stored: freshness.Stored = .{
        .lifetime_s = policy.lifetime(cfg, e.status, e.headers, &d, resp_s),
        .initial_age_ms = freshness.initialAgeMs(freshness.parseAge(e.headers), freshness.dateValue(e.headers, resp_s), @intCast(e.request_time_ms), @intCast(e.response_time_ms)),
        .response_time_ms = @intCast(e.response_time_ms),
        .directives = d,
    };
    return freshness.evaluate(&stored, request, @intCast(now_ms));
}

/// How long (seconds) the backend should keep an entry: its remaining freshness, the stale
/// windows it allows, and `stale_retention_seconds` when it can be revalidated.
pub fn retainSeconds(cfg: *const Config, e: *const Entry) u64 {
    const d = policy.responseDirectives(cfg, e.headers);
    const resp_s: i64 = @intCast(e.response_time_ms / 1000);
    const life: u64 = policy.lifetime(cfg, e.status, e.headers, &d, resp_s);
    const initial_s = freshness.initialAgeMs(freshness.parseAge(e.headers), freshness.dateValue(e.headers, resp_s), @intCast(e.request_time_ms), @intCast(e.response_time_ms)) / 1000;
    var keep = life -| initial_s;
    keep += @max(d.stale_while_revalidate orelse 0, d.stale_if_error orelse 0);
    if (policy.hasValidator(e.headers)) keep += cfg.stale_retention_seconds;
    return @max(keep, 1);
}

/// The response header fields an entry stores (RFC 9111 §3.1), grouped by name as a span carries
/// them: never connection-specific fields, `x-sp-cache`, Envoy's `x-envoy-*`, or redacted ones.
/// Caller frees with `gpa`; pairs borrow `resp`.
pub fn storedHeaders(cfg: *const Config, resp: []const Pair, d: *const cache_control.ResponseDirectives) error{OutOfMemory}![]Pair {
    var kept: std.ArrayList(Pair) = .empty;
    defer kept.deinit(gpa);
    for (resp) |p| {
        if (p.name.len == 0 or p.name[0] == ':') continue;
        if (fields.excludedFromStorage(resp, d, p.name) or cfg.redacted(p.name)) continue;
        if (std.ascii.eqlIgnoreCase(p.name, "x-sp-cache") or std.ascii.startsWithIgnoreCase(p.name, "x-envoy-")) continue;
        try kept.append(gpa, p);
    }
    return entry.groupHeaders(gpa, kept.items);
}

/// Entries of `old` and `new` merged by variant: the newest of each variant (by response time),
/// at most `max` of them (the newest), never one older than `invalidated_at_ms`. Caller frees.
pub fn merge(old: []const Entry, new: []const Entry, max: u32, invalidated_at_ms: u64) error{OutOfMemory}![]Entry {
    var out: std.ArrayList(Entry) = .empty;
    errdefer out.deinit(gpa);
    for ([_][]const Entry{ new, old }) |list| {
        for (list) |e| {
            if (e.response_time_ms <= invalidated_at_ms) continue;
            const same = for (out.items) |*o| {
                if (std.mem.eql(u8, o.variant, e.variant)) break o;
            } else null;
            if (same) |o| {
                if (e.response_time_ms > o.response_time_ms) o.* = e;
            } else try out.append(gpa, e);
        }
    }
    std.mem.sort(Entry, out.items, {}, newerFirst);
    if (out.items.len > max) out.shrinkRetainingCapacity(max);
    return out.toOwnedSlice(gpa);
}

fn newerFirst(_: void, a: Entry, b: Entry) bool {
    return a.response_time_ms > b.response_time_ms;
}

const t = std.testing;

fn testEntry(variant: []const u8, at: u64) Entry {
    return .{ .key = "k", .variant = variant, .status = 200, .request_time_ms = at, .response_time_ms = at };
}

test "merge keeps the newest entry per variant, newest first, bounded, after an invalidation" {
    const old = [_]Entry{ testEntry("", 10), testEntry("a", 20), testEntry("b", 5) };
    const new = [_]Entry{ testEntry("", 30), testEntry("c", 1) };
    const merged = try merge(&old, &new, 3, 2);
    defer gpa.free(merged);
    try t.expectEqual(@as(usize, 3), merged.len);
    try t.expectEqual(@as(u64, 30), merged[0].response_time_ms);
    try t.expectEqualStrings("", merged[0].variant);
    try t.expectEqualStrings("a", merged[1].variant);
    try t.expectEqualStrings("b", merged[2].variant); // c (time 1) predates the invalidation at 2
}

test "variant selection follows Vary" {
    var buf: [64]u8 = undefined;
    const resp = [_]Pair{.{ .name = "vary", .value = "Accept-Encoding" }};
    const gz = [_]Pair{.{ .name = "accept-encoding", .value = "gzip" }};
    const v = variantOf(&resp, &gz, &buf).?;
    try t.expectEqual(@as(usize, 64), v.len);
    var e1 = testEntry(v, 1);
    e1.headers = &resp;
    var other_buf: [64]u8 = undefined;
    const plain = variantOf(&resp, &.{}, &other_buf).?;
    var e2 = testEntry(plain, 2);
    e2.headers = &resp;
    const entries = [_]Entry{ e1, e2 };
    try t.expectEqual(@as(u64, 1), select(&entries, &gz).?.response_time_ms);
    try t.expectEqual(@as(u64, 2), select(&entries, &.{}).?.response_time_ms);
    const star = [_]Pair{.{ .name = "vary", .value = "*" }};
    try t.expect(variantOf(&star, &gz, &buf) == null);
    try t.expectEqualStrings("", variantOf(&.{}, &gz, &buf).?);
}
