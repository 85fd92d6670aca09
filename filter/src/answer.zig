//! Answering a request from the entries a tier found: choose the variant the request selects
//! (RFC 9111 §4.1), judge it (§4.2, §5.2), then answer from it (a hit, a stale hit, a 304 to a
//! matching client conditional), or revalidate it upstream with its validators (§4.3.1), or let
//! the request go upstream. Envoy's dropped reply headers are remembered for restoring.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const headers = @import("headers.zig");
const config = @import("config.zig");
const reason = @import("reason.zig");
const entry = @import("entry.zig");
const session = @import("session.zig");
const prepared = @import("prepared.zig");
const freshness = @import("http/freshness.zig");
const reply = @import("reply.zig");
const log = @import("log.zig");
const filter = @import("filter.zig");
const conditional = @import("http/conditional.zig");
const vary = @import("http/vary.zig");

const Pair = headers.Pair;
const Reason = reason.Reason;
const Stream = filter.Stream;
const gpa = host.gpa;

/// What a tier's entries allow for this request.
pub const Next = enum { replied, upstream, none };

/// The hit path of the L1: a GET with no precondition, whose key holds one prepared entry with a
/// body, no Vary and nothing to negotiate, computed under this configuration, and fresh (or
/// within a stale window the request or the response allows) — answered from the prepared reply
/// with no header parsed and no hash computed. False sends the request down the general path
/// (`judgeFound`), which handles every other case with the full entries.
pub fn fastHit(s: *Stream, c: *const config.Config) bool {
    _ = c;
    const f = if (s.found) |*f| f else return false;
    if (f.payload.len == 0 or !std.mem.eql(u8, s.method, "GET") or clientConditional(s.req)) return false;
    var it = prepared.iterate(f.payload) catch return false;
    if (it.left != 1) return false;
    const p = (it.next() catch return false) orelse return false;
    if (p.cfg_tag != s.root.cfg_tag or p.flags.has_vary or p.body.len == 0) return false;
    if (p.flags.has_coding and headers.get(s.req, "accept-encoding") != null) return false;
    if (p.response_time_ms <= f.invalidated_at_ms) return false;
    const stored: freshness.Stored = .{
        .lifetime_s = p.lifetime_s,
        .initial_age_ms = p.initial_age_ms,
        .response_time_ms = @intCast(p.response_time_ms),
        .directives = .{ .must_revalidate = p.flags.forbids_stale, .no_cache = p.flags.no_cache, .stale_while_revalidate = p.swr, .stale_if_error = p.sie },
    };
    const ev = freshness.evaluate(&stored, s.dirs, @intCast(host.nowMs()));
    if (!ev.verdict.servable()) return false;
    const r: Reason = if (ev.verdict == .fresh) .l1_hit else .stale_served;
    s.phase = .replied; // set first: the local reply re-enters our response callbacks
    s.decide(r);
    reply.sendPrepared(p.status, p.map, p.body, ev.current_age_ms, r.header(), "sp_cache_hit") catch |err| {
        log.warn("cannot send the cached reply: {s}", .{@errorName(err)});
        s.phase = .start;
        s.reason = null;
        return false;
    };
    return true;
}

/// Chooses the entry this request selects among those found, judges it (RFC 9111 §4.2) and
/// acts: a reply, a revalidation upstream, or nothing usable.
pub fn judgeFound(s: *Stream, c: *const config.Config, hit: Reason) Next {
    const f = if (s.found) |*f| f else return .none;
    const e = session.select(session.full(f), s.req) orelse return .none;
    if (!vary.contentCodingAcceptable(s.req, e.headers)) {
        s.decide(.encoding_mismatch);
        return .none;
    }
    const now = host.nowMs();
    const ev = session.judge(c, e, s.dirs, now);
    if (ev.verdict.servable()) {
        const resp_s: i64 = @intCast(e.response_time_ms / 1000);
        const kind: reply.Kind = switch (conditional.evaluateClientConditional(s.method, s.req, e.headers, resp_s, @intCast(now / 1000))) {
            .not_modified => .not_modified,
            .full, .none => .full,
            .forward => return .none,
        };
        const r: Reason = if (kind == .not_modified) .not_modified else if (ev.verdict == .fresh) hit else .stale_served;
        if (sendReply(s, e, kind, ev.current_age_ms, r)) return .replied;
        return .none;
    }
    s.chosen = e;
    s.judged = ev;
    if (s.dirs.only_if_cached) return if (gatewayTimeout(s)) .replied else .upstream;
    s.decide(.miss_stale);
    if (clientConditional(s.req)) return .upstream; // the client's own validators go upstream
    const v = conditional.validatorRequest(e.headers, @intCast(now / 1000));
    if (!v.any()) return .upstream;
    var ims_buf: [29]u8 = undefined;
    if (v.if_none_match) |inm| host.replaceHeaderMapValue(.http_request_headers, "if-none-match", inm) catch return .upstream;
    if (v.ifModifiedSince()) |ims| {
        @memcpy(ims_buf[0..ims.len], ims);
        host.replaceHeaderMapValue(.http_request_headers, "if-modified-since", ims_buf[0..ims.len]) catch return .upstream;
    }
    s.revalidating = true;
    return .upstream;
}

fn clientConditional(req: []const Pair) bool {
    const names = [_][]const u8{ "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range" };
    for (names) |n| if (headers.get(req, n) != null) return true;
    return false;
}

pub fn sendReply(s: *Stream, e: *const entry.Entry, kind: reply.Kind, age_ms: u64, r: Reason) bool {
    fixupsFor(s, e, kind);
    s.phase = .replied; // set first: the local reply re-enters our response callbacks
    s.decide(r);
    reply.send(e, kind, age_ms, r.header(), "sp_cache_hit") catch |err| {
        log.warn("cannot send the cached reply: {s}", .{@errorName(err)});
        s.phase = .start;
        return false;
    };
    s.releaseFill();
    return true;
}

/// Envoy drops Content-Type from a local reply without a body, and a HEAD reply's length:
/// remember them to restore when the reply passes our response callbacks.
fn fixupsFor(s: *Stream, e: *const entry.Entry, kind: reply.Kind) void {
    if (kind != .full) return;
    if (std.mem.eql(u8, s.method, "HEAD")) s.fix_length = e.body.len;
    if (e.body.len == 0) {
        if (headers.get(e.headers, "content-type")) |ct| s.fix_content_type = gpa.dupe(u8, ct) catch &.{};
    }
}

pub fn gatewayTimeout(s: *Stream) bool {
    s.phase = .replied;
    s.decide(.only_if_cached);
    reply.gatewayTimeout(Reason.only_if_cached.header()) catch {
        s.phase = .start;
        return false;
    };
    return true;
}
