//! The request flow: the stream context's callbacks, in the order Envoy calls them, deciding
//! when to pause, answer, resume or copy. What a cache tier holds and how entries are verified is
//! session.zig's; what HTTP allows is policy.zig's and http/'s; the backend wire is backend.zig's.
//!
//! A cacheable request looks in the L1 first (no callout), then at the key's state (a concurrent
//! fetch to wait for, or a recent uncacheable answer: hit-for-pass), then asks the backend. A
//! usable entry is answered with a local reply; a stale one with validators is revalidated with
//! a conditional request upstream; anything else goes upstream and its response may be stored.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const dispatch = @import("sdk/dispatch.zig");
const headers = @import("headers.zig");
const config = @import("config.zig");
const reason = @import("reason.zig");
const policy = @import("policy.zig");
const fingerprint = @import("fingerprint.zig");
const entry = @import("entry.zig");
const session = @import("session.zig");
const backend = @import("backend.zig");
const reply = @import("reply.zig");
const metrics = @import("metrics.zig");
const log = @import("log.zig");
const trace = @import("trace.zig");
const root_mod = @import("root.zig");
const store = @import("store.zig");
const l1entries = @import("l1entries.zig");
const answer = @import("answer.zig");
const lookup = @import("lookup.zig");
const cache_control = @import("http/cache_control.zig");
const conditional = @import("http/conditional.zig");
const freshness = @import("http/freshness.zig");
const vary = @import("http/vary.zig");

const Pair = headers.Pair;
const Reason = reason.Reason;
const Action = dispatch.Action;
const gpa = host.gpa;
const m = &metrics.global;

pub const Root = root_mod.Root;
/// Routes proxy-wasm callbacks to `Root` and `Stream` contexts (main.zig exports them).
pub const Dispatcher = dispatch.Dispatcher(Root, Stream);

/// Largest request body Envoy is asked to hold (below its default 1 MiB connection buffer).
pub const envoy_hold_limit: u32 = 1024 * 1024 - 64 * 1024;

/// How long (ms) a request paused at its headers may wait for its body's first callback before
/// the filter concludes that this Envoy does not deliver it (no allow_on_headers_stop_iteration).
pub const body_wait_ms: u64 = 250;

/// Set once a paused request never got its body: this worker then never pauses for a body again
/// (`bypass_request_body`), so no request hangs.
pub var body_callbacks_unavailable = false;

/// One stream in this many has its callbacks timed for the `callback_duration_us` histogram.
pub const timing_sample: u32 = 16;
var streams_seen: u32 = 0;

/// Body bytes this VM holds now (held requests and response copies): `max_buffered_body_bytes`.
pub var vm_buffered: u64 = 0;

const Phase = enum { start, holding_body, looking_up, waiting, upstream, replied };

/// One HTTP stream.
pub const Stream = struct {
    id: u32,
    root: *Root,
    phase: Phase = .start,
    reason: ?Reason = null,
    counted: bool = false,
    callback_ns: u64 = 0,
    /// this stream's callbacks are timed (`callback_duration_us`): one stream in `timing_sample`
    timed: bool = false,
    start_ns: u64 = 0,

    req_map: []u8 = &.{},
    req: []Pair = &.{},
    method: []const u8 = "",
    scheme: []const u8 = "http",
    authority: []const u8 = "",
    path: []const u8 = "",
    body: std.ArrayList(u8) = .empty,
    /// the fingerprint (the primary cache key), computed on first use: `keyHex`
    key: fingerprint.Hex = undefined,
    key_ready: bool = false,
    /// the request was looked up (so its response may be stored)
    keyed: bool = false,
    /// the L1 key material (`fingerprint.material`): a slice of `material_buf` or of `key`
    material: []const u8 = "",
    material_buf: [512]u8 = undefined,
    dirs: cache_control.RequestDirectives = .{},
    trace_id: [16]u8 = @splat(0),
    parent_span: ?[8]u8 = null,
    trace_ready: bool = false,
    /// Unix ms the request went upstream (RFC 9111 §4.2.3 request_time)
    request_time_ms: u64 = 0,

    found: ?session.Found = null,
    chosen: ?*const entry.Entry = null,
    judged: ?freshness.Evaluation = null,
    revalidating: bool = false,
    waited: bool = false,
    hold_since_ms: u64 = 0,
    body_seen: bool = false,
    wait_deadline_ms: u64 = 0,
    lookup_token: u32 = 0,
    lookup_start_ns: u64 = 0,
    /// may this exchange's response be stored (a cacheable request)
    may_store: bool = false,
    fill_owner: bool = false,

    /// headers Envoy drops from a local reply, restored when it passes our response callbacks
    fix_content_type: []u8 = &.{},
    fix_length: ?usize = null,

    capture: store.Capture = .{},

    pub fn init(s: *Stream, id: u32, r: *Root) void {
        s.* = .{ .id = id, .root = r };
        streams_seen +%= 1;
        s.timed = streams_seen % timing_sample == 0;
    }

    pub fn deinit(s: *Stream) void {
        s.releaseBody();
        s.capture.deinit();
        if (s.found) |*f| f.deinit();
        gpa.free(s.req);
        host.free(s.req_map);
        host.free(s.fix_content_type);
    }

    /// The request's fingerprint (docs/protocol.md), computed once, on first use: an L1 hit of a
    /// bodiless request never needs it.
    pub fn keyHex(s: *Stream) *const fingerprint.Hex {
        if (!s.key_ready) {
            s.key = fingerprint.compute(s.method, s.scheme, s.authority, s.path, s.body.items);
            s.key_ready = true;
        }
        return &s.key;
    }

    pub fn cfg(s: *Stream) ?*const config.Config {
        return s.root.cfg();
    }

    /// The host clock for callback timing, read only on timed streams (a host call per callback
    /// end and start is a cost every request would otherwise pay).
    fn clock(s: *Stream) u64 {
        return if (s.timed) host.nowNanos() else 0;
    }

    fn spent(s: *Stream, t0: u64) void {
        if (s.timed) s.callback_ns += host.nowNanos() -| t0;
    }

    /// Sets the request's reason (the last one set is counted, once, at the end).
    pub fn decide(s: *Stream, r: Reason) void {
        s.reason = r;
    }

    // ---------------------------------------------------------------- request path

    pub fn onRequestHeaders(s: *Stream, end_of_stream: bool) Action {
        const t0 = s.clock();
        defer s.spent(t0);
        s.start_ns = t0;
        const c = s.cfg() orelse return .@"continue";
        if (!c.cache_enabled) {
            s.decide(.bypass_disabled);
            return .@"continue";
        }
        s.readRequest() catch {
            s.decide(.bypass_header_error);
            return .@"continue";
        };
        if (c.inject_traceparent and headers.get(s.req, "traceparent") == null) s.injectTraceparent();
        if (policy.requestBypass(c, s.method, s.req)) |r| {
            s.decide(r);
            return .@"continue";
        }
        if (!end_of_stream) {
            // a GET or HEAD with a body is not held: under Istio's WasmPlugin (no
            // allow_on_headers_stop_iteration) a pause here would hang the request
            if (policy.bodiless(s.method) or body_callbacks_unavailable) {
                s.decide(.bypass_request_body);
                return .@"continue";
            }
            if (!s.root.addHolder(s.id)) {
                s.decide(.bypass_request_body);
                return .@"continue";
            }
            s.phase = .holding_body;
            s.hold_since_ms = host.nowMs();
            return .pause;
        }
        return s.beginLookup(c);
    }

    fn readRequest(s: *Stream) !void {
        s.req_map = try host.getHeaderMapPairs(.http_request_headers);
        s.req = try headers.decodeMap(gpa, s.req_map);
        s.method = headers.get(s.req, ":method") orelse "";
        s.path = headers.get(s.req, ":path") orelse "";
        s.authority = headers.get(s.req, ":authority") orelse headers.get(s.req, "host") orelse "";
        s.scheme = headers.get(s.req, ":scheme") orelse "http";
    }

    /// The trace the request's spans join (docs/protocol.md), found on first use: a hit sends no
    /// span.
    fn ensureTrace(s: *Stream) void {
        if (s.trace_ready) return;
        s.trace_ready = true;
        const tr = backend.traceOf(s.req);
        s.trace_id = tr.trace_id;
        s.parent_span = tr.parent;
    }

    fn injectTraceparent(s: *Stream) void {
        s.ensureTrace();
        var span: [8]u8 = undefined;
        host.randomBytes(&span);
        const tp = trace.format(s.trace_id, span, 1);
        host.addHeaderMapValue(.http_request_headers, "traceparent", &tp) catch {};
    }

    /// Holds a request body for its lookup (methods with a body in lookup_methods): Envoy hands
    /// each chunk on its own (StopIterationAndWatermark), so the filter keeps its own copy.
    pub fn onRequestBody(s: *Stream, len: u32, end_of_stream: bool) Action {
        const t0 = s.clock();
        defer s.spent(t0);
        if (s.phase != .holding_body) return .@"continue";
        s.body_seen = true;
        const c = s.cfg() orelse return .@"continue";
        const total = @as(u64, s.body.items.len) + len;
        if (total > @min(c.max_request_body_bytes, envoy_hold_limit)) return s.stopHolding(.bypass_request_too_large);
        if (vm_buffered + len > c.max_buffered_body_bytes) return s.stopHolding(.bypass_buffer_budget);
        if (len > 0) {
            const chunk = host.getBufferBytes(.http_request_body, 0, len) catch return s.stopHolding(.bypass_header_error);
            defer host.free(chunk);
            s.body.appendSlice(gpa, chunk) catch return s.stopHolding(.bypass_buffer_budget);
            holdBytes(@intCast(chunk.len));
        }
        if (!end_of_stream) return .pause_watermark;
        return switch (s.beginLookup(c)) {
            .@"continue" => .@"continue",
            else => .pause_watermark,
        };
    }

    fn stopHolding(s: *Stream, r: Reason) Action {
        s.releaseBody();
        s.decide(r);
        s.phase = .upstream;
        return .@"continue"; // releases the held headers and every held chunk
    }

    fn releaseBody(s: *Stream) void {
        holdBytes(-@as(i64, @intCast(s.body.items.len)));
        s.body.deinit(gpa);
        s.body = .empty;
    }

    /// Called by the root's tick while this stream holds its headers for a body: false once it
    /// no longer needs checking. A body that never started within `body_wait_ms` means Envoy
    /// does not deliver it here: release the request (fail open) and stop pausing on this worker.
    pub fn checkHold(s: *Stream) bool {
        if (s.phase != .holding_body or s.body_seen) return false;
        if (host.nowMs() -| s.hold_since_ms < body_wait_ms) return true;
        if (!body_callbacks_unavailable) log.warn("a request paused for its body got no body callback in {d} ms: this Envoy does not set allow_on_headers_stop_iteration (Istio's WasmPlugin cannot); requests with a body are no longer looked up on this worker", .{body_wait_ms});
        body_callbacks_unavailable = true;
        s.decide(.bypass_request_body);
        s.phase = .upstream;
        host.continueStream(.request) catch |e| log.warn("continue_stream failed: {s}", .{@errorName(e)});
        return false;
    }

    pub fn onRequestTrailers(s: *Stream) Action {
        if (s.phase != .holding_body) return .@"continue";
        return s.stopHolding(.bypass_trailers);
    }

    /// Looks the request up: L1, key state, backend. Returns what the headers (or last body)
    /// callback returns.
    fn beginLookup(s: *Stream, c: *const config.Config) Action {
        s.keyed = true;
        s.material = fingerprint.material(&s.material_buf, s.method, s.scheme, s.authority, s.path, s.body.items.len > 0, null) orelse
            fingerprint.material(&s.material_buf, s.method, s.scheme, s.authority, s.path, true, s.keyHex()).?;
        s.may_store = true;
        s.dirs = cache_control.RequestDirectives.parse(s.req);
        s.found = l1entries.read(&s.root.l1, s.material);
        if (answer.fastHit(s, c)) return .pause;
        switch (answer.judgeFound(s, c, .l1_hit)) {
            .replied => return .pause,
            .upstream => return s.toUpstream(),
            .none => {},
        }
        if (s.reason == .encoding_mismatch) return s.toUpstream();
        if (s.dirs.only_if_cached) {
            // RFC 9111 §5.2.1.7: a stored response or 504, never the origin; the backend may hold it
            if (lookup.startBackendLookup(s, c)) return .pause;
            return if (answer.gatewayTimeout(s)) .pause else s.toUpstream();
        }
        const coalesce = c.coalesce_timeout_ms > 0 and c.l1_max_bytes > 0 and !std.mem.eql(u8, s.method, "HEAD");
        const now = host.nowMs();
        const mark = s.root.ks.read(s.keyHex(), now);
        if (mark.state) |state| switch (state) {
            .pass => {
                s.decide(.hit_for_pass);
                return s.toUpstream();
            },
            .filling => if (coalesce) {
                if (lookup.startWaiting(s, c, mark.until_ms)) return .pause;
            },
            .stored => {},
        };
        if (coalesce and mark.state != .filling) {
            s.fill_owner = s.root.ks.claim(&mark, s.keyHex(), now + c.coalesce_timeout_ms);
        }
        if (lookup.startBackendLookup(s, c)) return .pause;
        return s.toUpstream();
    }

    pub fn toUpstream(s: *Stream) Action {
        s.phase = .upstream;
        s.request_time_ms = host.nowMs();
        if (s.reason == null) s.decide(.not_found);
        return .@"continue";
    }

    /// Resumes a paused request towards the upstream (fail open).
    pub fn resumeUpstream(s: *Stream) void {
        if (s.dirs.only_if_cached and answer.gatewayTimeout(s)) return; // never the origin (§5.2.1.7)
        _ = s.toUpstream();
        host.continueStream(.request) catch |e| log.warn("continue_stream failed: {s}", .{@errorName(e)});
    }

    pub fn exchange(s: *Stream, c: *const config.Config, method: []const u8, key: []const u8, body: []const u8) backend.Exchange {
        s.ensureTrace();
        if (s.start_ns == 0) s.start_ns = host.nowNanos();
        return .{
            .cfg = c,
            .method = method,
            .scheme = s.scheme,
            .authority = s.authority,
            .path = s.path,
            .request = s.req,
            .body = body,
            .key = key,
            .trace_id = s.trace_id,
            .parent_span_id = s.parent_span,
            .start_ns = s.start_ns,
        };
    }

    /// The backend's answer to this stream's lookup (lookup.zig).
    pub fn onCalloutResponse(s: *Stream, token: u32, num_headers: u32, body_size: u32) void {
        const t0 = s.clock();
        defer s.spent(t0);
        lookup.onAnswer(s, token, num_headers, body_size);
    }

    /// A waiting stream looks again (lookup.zig); called by its root in this stream's context.
    pub fn recheck(s: *Stream) void {
        lookup.recheck(s);
    }

    // ---------------------------------------------------------------- response path

    pub fn onResponseHeaders(s: *Stream, end_of_stream: bool) Action {
        const t0 = s.clock();
        defer s.spent(t0);
        if (s.phase == .replied) {
            s.restoreDropped();
            return .@"continue"; // our own local reply: never stored
        }
        const c = s.cfg() orelse return .@"continue";
        host.removeHeaderMapValue(.http_response_headers, "x-sp-cache") catch {};
        if (s.method.len > 0) switch (store.onUpstreamHeaders(s, c, end_of_stream)) {
            .replied => return .pause,
            .rewritten => return .@"continue",
            .upstream => {},
        };
        host.addHeaderMapValue(.http_response_headers, "x-sp-cache", (s.reason orelse Reason.not_found).header()) catch {};
        return .@"continue";
    }

    fn restoreDropped(s: *Stream) void {
        if (s.fix_content_type.len > 0) host.replaceHeaderMapValue(.http_response_headers, "content-type", s.fix_content_type) catch {};
        if (s.fix_length) |n| {
            var buf: [20]u8 = undefined;
            const v = std.fmt.bufPrint(&buf, "{d}", .{n}) catch return;
            host.replaceHeaderMapValue(.http_response_headers, "content-length", v) catch {};
        }
    }

    pub fn onResponseBody(s: *Stream, len: u32, end_of_stream: bool) Action {
        const t0 = s.clock();
        defer s.spent(t0);
        if (s.capture.replacing) {
            store.replaceChunk(s, len);
            return .@"continue";
        }
        if (!s.capture.active) return .@"continue";
        const c = s.cfg() orelse return .@"continue";
        store.onBody(s, c, len, end_of_stream);
        return .@"continue"; // never hold the response in Envoy
    }

    pub fn onResponseTrailers(s: *Stream) Action {
        if (s.capture.active) if (s.cfg()) |c| store.finish(s, c);
        return .@"continue";
    }

    // ---------------------------------------------------------------- end

    pub fn onLog(s: *Stream) void {
        s.count();
        if (log.enabled(.debug) and s.method.len > 0) {
            log.debug("{s} {s}{s} {s} reason={s} key={s}", .{
                s.method,                               s.authority,
                s.path,                                 if (s.reason) |r| r.header() else "-",
                if (s.reason) |r| r.word() else "none", if (s.key_ready) s.key[0..16] else "-",
            });
        }
    }

    fn count(s: *Stream) void {
        if (s.counted) return;
        s.counted = true;
        if (s.reason) |r| m.count(r);
        if (s.timed and s.start_ns != 0) m.callbackDuration(s.callback_ns / std.time.ns_per_us);
    }

    pub fn onDone(s: *Stream) void {
        s.count();
        if (s.phase == .waiting) s.root.removeWaiter(s.id);
        s.phase = .replied; // a late lookup answer or wake finds nothing to do
        s.releaseBody();
        s.capture.drop();
        s.releaseFill();
    }

    /// Gives up this stream's `filling` mark (if it holds one) and wakes this worker's waiters.
    pub fn releaseFill(s: *Stream) void {
        if (!s.fill_owner) return;
        s.fill_owner = false;
        s.root.ks.abandon(s.keyHex(), host.nowMs());
        s.root.wake(s.keyHex());
    }
};

/// Moves the VM's buffered-bytes total and its gauge by `delta` bytes.
pub fn holdBytes(delta: i64) void {
    if (delta == 0) return;
    vm_buffered = if (delta < 0) vm_buffered -| @as(u64, @intCast(-delta)) else vm_buffered + @as(u64, @intCast(delta));
    m.addBuffered(delta);
}

/// Methods RFC 9110 §9.2.1 defines as safe.
pub fn isSafe(method: []const u8) bool {
    const safe = [_][]const u8{ "GET", "HEAD", "OPTIONS", "TRACE" };
    for (safe) |x| if (std.mem.eql(u8, method, x)) return true;
    return false;
}
