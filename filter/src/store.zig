//! The response side of an exchange: what the upstream's answer does to the cache. A 304 to the
//! cache's own revalidation freshens the entry and is answered from it (RFC 9111 §4.3.3–4.3.4);
//! an error within stale-if-error is answered with the stale entry (RFC 5861 §4); a non-error
//! answer to an unsafe method invalidates its target (RFC 9111 §4.4); a storable response is
//! copied as it streams by (never held), then signed, written to the L1 and sent to the backend.
//! A response that is not storable marks its key hit-for-pass, so that later requests skip the
//! lookup; the mark never stops a later storable response from being stored.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const headers = @import("headers.zig");
const config = @import("config.zig");
const reason = @import("reason.zig");
const policy = @import("policy.zig");
const fingerprint = @import("fingerprint.zig");
const entry = @import("entry.zig");
const session = @import("session.zig");
const l1entries = @import("l1entries.zig");
const l1 = @import("l1.zig");
const backend = @import("backend.zig");
const reply = @import("reply.zig");
const metrics = @import("metrics.zig");
const log = @import("log.zig");
const filter = @import("filter.zig");
const conditional = @import("http/conditional.zig");
const invalidation = @import("http/invalidation.zig");

const Pair = headers.Pair;
const Stream = filter.Stream;
const Event = reason.Event;
const gpa = host.gpa;
const m = &metrics.global;

/// How long a `stored` key-state mark tells waiting requests of other workers to read the entry.
const stored_mark_ms: u64 = 2000;

/// The upstream response as the filter sees it, and the copy of its body while it streams.
pub const Capture = struct {
    /// copying body chunks for a store
    active: bool = false,
    resp_map: []u8 = &.{},
    resp: []Pair = &.{},
    status: u32 = 0,
    /// Unix ms the response headers arrived (RFC 9111 §4.2.3 response_time)
    response_time_ms: u64 = 0,
    body: std.ArrayList(u8) = .empty,
    /// the upstream's body is being replaced by a cached one (stale-if-error): these bytes go
    /// out in place of its first chunk, nothing in place of the others
    replacing: bool = false,
    replacement: []const u8 = "",

    /// Stops copying and frees the copy (the response itself streams on untouched).
    pub fn drop(cap: *Capture) void {
        filter.holdBytes(-@as(i64, @intCast(cap.body.items.len)));
        cap.body.deinit(gpa);
        cap.body = .empty;
        cap.active = false;
    }

    pub fn deinit(cap: *Capture) void {
        cap.drop();
        gpa.free(cap.resp);
        host.free(cap.resp_map);
        cap.resp = &.{};
        cap.resp_map = &.{};
    }
};

/// What became of the upstream's response headers.
pub const Headers = enum {
    /// replaced by a local reply (the callback returns StopIteration)
    replied,
    /// rewritten in place into a cached response, `x-sp-cache` included
    rewritten,
    /// the upstream's response goes on (the flow adds `x-sp-cache`)
    upstream,
};

/// Handles the upstream's response headers.
pub fn onUpstreamHeaders(s: *Stream, c: *const config.Config, end_of_stream: bool) Headers {
    const cap = &s.capture;
    cap.response_time_ms = host.nowMs();
    cap.resp_map = host.getHeaderMapPairs(.http_response_headers) catch return .upstream;
    cap.resp = headers.decodeMap(gpa, cap.resp_map) catch return .upstream;
    cap.status = std.fmt.parseInt(u32, headers.get(cap.resp, ":status") orelse "0", 10) catch 0;
    if (!filter.isSafe(s.method) and invalidation.invalidates(s.method, cap.status)) invalidate(s, c);
    if (!s.keyed) return .upstream;
    if (s.chosen) |e| {
        if (s.revalidating and cap.status == 304) {
            const done = revalidated(s, c, e);
            if (done != .upstream) return done;
        } else if (cap.status >= 500) {
            const ev = s.judged.?;
            if (ev.stale_if_error_until_ms) |until| if (@as(i64, @intCast(cap.response_time_ms)) <= until) {
                const done = replyFromResponse(s, e, .full, ev.current_age_ms, .stale_if_error, end_of_stream);
                if (done != .upstream) return done;
            };
        }
        if (s.revalidating) s.decide(.miss_changed);
    }
    if (!s.may_store) return .upstream;
    const d = policy.responseDirectives(c, cap.resp);
    const now_s: i64 = @intCast(cap.response_time_ms / 1000);
    if (policy.storeSkip(c, s.method, cap.status, s.req, cap.resp, &d, now_s)) |ev| {
        skip(s, c, ev);
        return .upstream;
    }
    if (headers.get(cap.resp, "content-length")) |cl| {
        const n = std.fmt.parseInt(u64, cl, 10) catch 0;
        if (n > c.max_response_body_bytes) {
            skip(s, c, .store_skipped_too_large);
            return .upstream;
        }
    }
    cap.active = true;
    if (end_of_stream) finish(s, c);
    return .upstream;
}

/// Copies one response body chunk (up to the limits), finishing the store at the end.
pub fn onBody(s: *Stream, c: *const config.Config, len: u32, end_of_stream: bool) void {
    const cap = &s.capture;
    if (cap.body.items.len + len > c.max_response_body_bytes) {
        cap.drop();
        return skip(s, c, .store_skipped_too_large);
    }
    if (filter.vm_buffered + len > c.max_buffered_body_bytes) {
        cap.drop();
        return skip(s, c, .store_skipped_buffer_budget);
    }
    if (len > 0) {
        const chunk = host.getBufferBytes(.http_response_body, 0, len) catch {
            cap.drop();
            return skip(s, c, .store_skipped_incomplete);
        };
        if (cap.body.items.len == 0 and cap.body.capacity == 0) {
            cap.body = .fromOwnedSlice(chunk); // the host's copy is ours: no second copy
        } else {
            defer host.free(chunk);
            cap.body.appendSlice(gpa, chunk) catch {
                cap.drop();
                return skip(s, c, .store_skipped_buffer_budget);
            };
        }
        filter.holdBytes(@intCast(len));
    }
    if (end_of_stream) finish(s, c);
}

/// Builds, signs and stores the entry of a complete response: L1 and backend.
pub fn finish(s: *Stream, c: *const config.Config) void {
    const cap = &s.capture;
    defer cap.drop();
    const body = cap.body.items;
    if (headers.get(cap.resp, "content-length")) |cl| {
        const n = std.fmt.parseInt(u64, cl, 10) catch std.math.maxInt(u64);
        if (n != body.len) return skip(s, c, .store_skipped_incomplete);
    }
    const d = policy.responseDirectives(c, cap.resp);
    var vbuf: [64]u8 = undefined;
    const variant = session.variantOf(cap.resp, s.req, &vbuf) orelse return skip(s, c, .store_skipped_vary_star);
    const stored = session.storedHeaders(c, cap.resp, &d) catch return skip(s, c, .store_skipped_buffer_budget);
    defer gpa.free(stored);
    var e: entry.Entry = .{
        .key = s.keyHex(),
        .variant = variant,
        .status = @intCast(cap.status),
        .request_time_ms = s.request_time_ms,
        .response_time_ms = cap.response_time_ms,
        .headers = stored,
        .body = body,
    };
    put(s, c, &e);
}

/// Signs `e`, writes it to the L1 and queues it for the backend (sent at once when the L1 did
/// not take it); marks the key stored.
fn put(s: *Stream, c: *const config.Config, e: *entry.Entry) void {
    const sig = entry.signatureHex(s.root.signing_key, e);
    e.signature = &sig;
    if (entry.validateForReplay(e)) |v| {
        log.debug("not storing a response that fails replay validation: {s}", .{@tagName(v)});
        return skip(s, c, .store_skipped_incomplete);
    }
    const in_l1 = l1entries.write(&s.root.l1, c, s.root.cfg_tag, s.material, &.{e.*});
    const x = s.exchange(c, s.method, s.keyHex(), s.body.items);
    const span = backend.encode(&x, .{ .extract = .{ .entry = e, .retain_seconds = session.retainSeconds(c, e) } }) catch {
        m.event(.store_dropped, 1);
        return;
    };
    defer gpa.free(span);
    s.root.queueStore(s.id, span);
    // requests of other workers that find no L1 entry ask the backend: it must hold this one now
    if (!in_l1) s.root.flush(s.id);
    if (s.fill_owner) {
        s.fill_owner = false;
        const now = host.nowMs();
        s.root.ks.mark(s.keyHex(), .stored, now + stored_mark_ms, now);
        s.root.wake(s.keyHex());
    }
}

/// Counts why a response is not stored, marks the key hit-for-pass when the reason is the
/// resource's (not a transient error or this request's), and releases waiting requests.
fn skip(s: *Stream, c: *const config.Config, ev: Event) void {
    m.event(ev, 1);
    // a variant's answer says nothing of the other variants, and a 304 (to the client's own
    // conditional) or an error says nothing of the resource
    const vary_names = @import("http/vary.zig").VaryNames.parse(s.capture.resp);
    const per_variant = vary_names.slice().len > 0; // Vary: * (star) says the same of every request
    const status = s.capture.status;
    const resource_reason = !per_variant and status != 304 and switch (ev) {
        .store_skipped_no_store, .store_skipped_private, .store_skipped_set_cookie, .store_skipped_vary_star, .store_skipped_too_large => true,
        .store_skipped_no_freshness, .store_skipped_status => status < 500,
        else => false,
    };
    if (resource_reason and c.hit_for_pass_seconds > 0 and !std.mem.eql(u8, s.method, "HEAD")) {
        const now = host.nowMs();
        s.root.ks.mark(s.keyHex(), .pass, now + @as(u64, c.hit_for_pass_seconds) * 1000, now);
        if (s.fill_owner) {
            s.fill_owner = false;
            s.root.wake(s.keyHex());
        }
        return;
    }
    s.releaseFill();
}

/// The origin confirmed the stale entry `e` (304): freshen it (RFC 9111 §4.3.4), store it, and
/// answer the client from it. `.upstream` when the 304 does not select the entry.
fn revalidated(s: *Stream, c: *const config.Config, e: *const entry.Entry) Headers {
    const cap = &s.capture;
    const now_s: i64 = @intCast(cap.response_time_ms / 1000);
    if (!conditional.selectsStored(cap.resp, e.headers, now_s)) return .upstream;
    const merged = conditional.freshenHeaders(gpa, e.headers, cap.resp) catch return .upstream;
    defer gpa.free(merged);
    const d = policy.responseDirectives(c, merged);
    const stored = session.storedHeaders(c, merged, &d) catch return .upstream;
    defer gpa.free(stored);
    var vbuf: [64]u8 = undefined;
    var fresh: entry.Entry = .{
        .key = s.keyHex(),
        .variant = session.variantOf(merged, s.req, &vbuf) orelse e.variant,
        .status = e.status,
        .request_time_ms = s.request_time_ms,
        .response_time_ms = cap.response_time_ms,
        .headers = stored,
        .body = e.body,
    };
    if (entry.validateForReplay(&fresh) != null) return .upstream;
    // a HEAD revalidation freshens the GET entry it read (RFC 9111 §4.3.4)
    if (policy.storeSkip(c, "GET", fresh.status, s.req, merged, &d, now_s) == null) put(s, c, &fresh);
    const ev = session.judge(c, &fresh, s.dirs, cap.response_time_ms);
    const kind: reply.Kind = switch (conditional.evaluateClientConditional(s.method, s.req, fresh.headers, now_s, now_s)) {
        .not_modified => .not_modified,
        else => .full,
    };
    return replyFromResponse(s, &fresh, kind, ev.current_age_ms, .revalidated, true);
}

/// Replaces the upstream's response with `e`. Rewritten in place whenever the upstream's response
/// still has a body to come (its body is then replaced chunk by chunk: `replaceChunk`) or when
/// nothing but headers reaches the client (a 304 to the client, an empty entry, HEAD): a local
/// reply sent from the response path does not pass this filter again (Envoy 1.40), so Envoy's
/// dropping of Content-Type and of a HEAD reply's length could not be undone. Only a body that
/// must follow headers which ended the upstream's response (a 304 answered in full) is a local
/// reply.
fn replyFromResponse(s: *Stream, e: *const entry.Entry, kind: reply.Kind, age_ms: u64, r: reason.Reason, upstream_ended: bool) Headers {
    s.decide(r);
    const headers_only = kind == .not_modified or e.body.len == 0 or std.mem.eql(u8, s.method, "HEAD");
    if (!upstream_ended or headers_only) {
        reply.rewrite(e, kind, age_ms, r.header()) catch |err| {
            log.warn("cannot rewrite the response: {s}", .{@errorName(err)});
            return .upstream;
        };
        if (!upstream_ended) {
            s.capture.replacing = true;
            s.capture.replacement = if (headers_only) "" else e.body;
        }
        s.releaseFill();
        return .rewritten;
    }
    s.phase = .replied;
    reply.send(e, kind, age_ms, r.header(), "sp_cache_hit") catch |err| {
        log.warn("cannot replace the response: {s}", .{@errorName(err)});
        s.phase = .upstream;
        return .upstream;
    };
    s.releaseFill();
    return .replied;
}

/// One chunk of an upstream body being replaced by a cached one: the cached bytes go out in
/// place of the first chunk, nothing in place of the rest.
pub fn replaceChunk(s: *Stream, len: u32) void {
    const cap = &s.capture;
    host.setBufferBytes(.http_response_body, 0, len, cap.replacement) catch |err| {
        log.warn("cannot replace the response body: {s}", .{@errorName(err)});
    };
    cap.replacement = "";
}

/// Invalidates the target URI of an unsafe request and the same-origin Location and
/// Content-Location of its response (RFC 9111 §4.4): L1 tombstones now, the backend by a call.
fn invalidate(s: *Stream, c: *const config.Config) void {
    var keys: [3]fingerprint.Hex = undefined;
    var n: usize = 0;
    keys[n] = fingerprint.compute("GET", s.scheme, s.authority, s.path, "");
    n += 1;
    for ([_][]const u8{ "location", "content-location" }) |name| {
        const value = headers.get(s.capture.resp, name) orelse continue;
        const target = (invalidation.invalidationTarget(gpa, s.scheme, s.authority, s.path, value) catch null) orelse continue;
        defer gpa.free(target);
        keys[n] = fingerprint.compute("GET", s.scheme, s.authority, target, "");
        n += 1;
    }
    const now = host.nowMs();
    var list: [3][]const u8 = undefined;
    var paths: [3][]const u8 = .{ s.path, "", "" };
    var targets: [2]?[]u8 = .{ null, null };
    defer for (targets) |t| if (t) |p| gpa.free(p);
    var ti: usize = 1;
    for ([_][]const u8{ "location", "content-location" }, 0..) |name, j| {
        const value = headers.get(s.capture.resp, name) orelse continue;
        targets[j] = (invalidation.invalidationTarget(gpa, s.scheme, s.authority, s.path, value) catch null) orelse continue;
        paths[ti] = targets[j].?;
        ti += 1;
    }
    for (keys[0..n], 0..) |*k, i| {
        // the L1 slot of a GET of that target (bodiless: its material is its fields)
        var buf: [l1.max_material]u8 = undefined;
        if (fingerprint.material(&buf, "GET", s.scheme, s.authority, paths[i], false, k)) |mat| l1entries.tombstone(&s.root.l1, mat, now);
        list[i] = k;
    }
    const own = fingerprint.compute(s.method, s.scheme, s.authority, s.path, "");
    const x = s.exchange(c, s.method, &own, "");
    const span = backend.encode(&x, .{ .invalidate = list[0..n] }) catch {
        m.event(.invalidate_failed, 1);
        return;
    };
    defer gpa.free(span);
    s.root.flush(s.id); // stores queued before this invalidation go first
    s.root.sendDetached(s.id, .invalidate, span);
}
