//! Request flow: root and stream contexts, the proxy-wasm callbacks, pause/resume. HTTP rules
//! live in policy.zig, the wire format in protocol.zig, the key in fingerprint.zig.
const std = @import("std");
const host = @import("hostcalls.zig");
const config = @import("config.zig");
const headers = @import("headers.zig");
const policy = @import("policy.zig");
const protocol = @import("protocol.zig");
const fingerprint = @import("fingerprint.zig");
const trace = @import("trace.zig");

const Pair = headers.Pair;
const gpa = host.gpa;

/// Filter version, sent as the OTLP scope version.
pub const version = "0.1.0";

/// Largest request body the filter asks Envoy to hold, whatever `max_request_body_bytes` says:
/// Envoy's default per_connection_buffer_limit_bytes is 1 MiB and the next chunk must still fit
/// (exceeding it makes Envoy answer 413).
pub const envoy_hold_limit: u32 = 1024 * 1024 - 64 * 1024;

/// proxy-wasm header/body callback return values.
pub const Action = enum(u32) {
    /// FilterHeadersStatus/FilterDataStatus Continue
    @"continue" = 0,
    /// headers: StopIteration (with allow_on_headers_stop_iteration); body: StopIterationAndBuffer
    pause = 1,
    /// body: StopIterationAndWatermark — buffer, but past the connection's buffer limit push back
    /// on the client (flow control) instead of answering 413 as StopIterationAndBuffer does
    /// (Envoy FilterDataStatus; proxy-wasm maps 2 to it in Context::onRequestBody).
    pause_watermark = 2,
};

// ---------------------------------------------------------------- metrics

/// Counters the request flow moves itself; the reason counters come from the policy enums.
const flow_counters = [_][]const u8{
    "hit", "miss", "lookup_error", "lookup_timeout", "store_sent", "store_failed", "store_dropped",
};

/// Every counter of docs/protocol.md; the tag is the name after `sp_cache.`. Built at compile
/// time from the flow counters and the policy reasons (`bypass_<reason>`,
/// `store_skipped_<reason>`), so a new reason in policy.zig is a new counter with nothing to add.
pub const Counter = blk: {
    const requests = std.enums.values(policy.RequestDecision);
    const responses = std.enums.values(policy.ResponseDecision);
    const n = flow_counters.len + (requests.len - 1) + (responses.len - 1);
    var names: [n][]const u8 = undefined;
    var i: usize = 0;
    for (flow_counters) |name| {
        names[i] = name;
        i += 1;
    }
    for (requests) |d| if (d != .cacheable) {
        names[i] = @tagName(d);
        i += 1;
    };
    for (responses) |d| if (d != .storable) {
        names[i] = "store_skipped_" ++ @tagName(d)["skip_".len..];
        i += 1;
    };
    const Tag = std.math.IntFittingRange(0, n - 1);
    const final = names;
    break :blk @Enum(Tag, .exhaustive, &final, &std.simd.iota(Tag, n));
};

/// The counter of a request decision (null for `cacheable`).
fn counterOfRequest(d: policy.RequestDecision) ?Counter {
    return switch (d) {
        .cacheable => null,
        inline else => |t| @field(Counter, @tagName(t)),
    };
}

/// The counter of a response decision (null for `storable`).
fn counterOfResponse(d: policy.ResponseDecision) ?Counter {
    return switch (d) {
        .storable => null,
        inline else => |t| @field(Counter, "store_skipped_" ++ @tagName(t)["skip_".len..]),
    };
}

const Metrics = struct {
    defined: bool = false,
    counters: [std.enums.values(Counter).len]?u32 = @splat(null),
    buffered: ?u32 = null,

    fn define(m: *Metrics) void {
        if (m.defined) return;
        m.defined = true;
        inline for (comptime std.enums.values(Counter)) |c| {
            m.counters[@intFromEnum(c)] = host.defineMetric(.counter, "sp_cache." ++ @tagName(c)) catch null;
        }
        m.buffered = host.defineMetric(.gauge, "sp_cache.buffered_body_bytes") catch null;
    }

    fn inc(m: *Metrics, c: Counter) void {
        if (m.counters[@intFromEnum(c)]) |id| host.incrementMetric(id, 1) catch {};
    }

    fn addBuffered(m: *Metrics, delta: i64) void {
        if (delta == 0) return;
        if (m.buffered) |id| host.incrementMetric(id, delta) catch {};
    }
};

var metrics: Metrics = .{};

// ---------------------------------------------------------------- logging

var log_level: config.LogLevel = .info;

fn logf(level: config.LogLevel, comptime fmt: []const u8, args: anytype) void {
    if (@intFromEnum(level) < @intFromEnum(log_level)) return;
    var buf: [1024]u8 = undefined;
    const msg = std.fmt.bufPrint(&buf, "sp-cache: " ++ fmt, args) catch buf[0..];
    host.log(@enumFromInt(@intFromEnum(level)), msg);
}

// ---------------------------------------------------------------- contexts

const Root = struct {
    id: u32,
    parsed: ?config.Parsed = null,
    /// Callouts in flight: callout id -> stream context id (0 for a store). The host
    /// (proxy-wasm-cpp-host) owns every callout by the root context and answers on the root id,
    /// whichever context dispatched it; so stores survive the stream by construction.
    callouts: std.AutoHashMapUnmanaged(u32, u32) = .empty,
    stores_in_flight: u32 = 0,

    fn cfg(r: *Root) ?*const config.Config {
        return if (r.parsed) |*p| &p.value else null;
    }

    /// Sends an `extract` span from the root context so the end of the client stream cannot
    /// cancel it. Never blocks the caller; failures are counted.
    fn dispatchStore(r: *Root, c: *const config.Config, body: []const u8, stream_id: u32) void {
        if (r.stores_in_flight >= c.max_stores_in_flight) {
            metrics.inc(.store_dropped);
            return;
        }
        r.callouts.ensureUnusedCapacity(gpa, 1) catch {
            metrics.inc(.store_dropped);
            return;
        };
        const map = backendHeaders(c, "/v1/traces") catch {
            metrics.inc(.store_dropped);
            return;
        };
        defer gpa.free(map);
        host.setEffectiveContext(r.id) catch |e| {
            logf(.warn, "store: set_effective_context failed: {s}", .{@errorName(e)});
            metrics.inc(.store_failed);
            return;
        };
        const id = host.httpCall(c.backend_cluster, map, body, c.store_timeout_ms);
        host.setEffectiveContext(stream_id) catch {};
        if (id) |callout| {
            r.callouts.putAssumeCapacity(callout, 0);
            r.stores_in_flight += 1;
            metrics.inc(.store_sent);
        } else |e| {
            logf(.warn, "store: http_call to cluster {s} failed: {s}", .{ c.backend_cluster, @errorName(e) });
            metrics.inc(.store_failed);
        }
    }

    fn onStoreResponse(r: *Root, callout: u32, num_headers: u32) void {
        r.stores_in_flight -|= 1;
        const ok = num_headers > 0 and blk: {
            const status = host.getHeaderMapValue(.http_call_response_headers, ":status") catch break :blk false;
            const s = status orelse break :blk false;
            defer host.free(s);
            break :blk std.mem.eql(u8, s, "200") or std.mem.eql(u8, s, "202");
        };
        if (!ok) {
            metrics.inc(.store_failed);
            logf(.debug, "store callout {d} failed", .{callout});
        }
    }
};

const Phase = enum { start, holding_body, lookup_pending, upstream, replied };
const Outcome = enum { none, hit, miss, bypass };

const Stream = struct {
    id: u32,
    root: *Root,
    phase: Phase = .start,
    outcome: Outcome = .none,
    decision: policy.RequestDecision = .bypass_disabled,
    /// lookup dispatched (whatever its answer): the response may be stored
    looked_up: bool = false,
    store_note: []const u8 = "-",

    req_map: []u8 = &.{},
    req_pairs: []Pair = &.{},
    method: []const u8 = "",
    path: []const u8 = "",
    authority: []const u8 = "",
    scheme: []const u8 = "http",
    session: []const u8 = "",
    req_body: []u8 = &.{},
    /// the request body chunks copied so far while holding the request for its lookup
    req_acc: std.ArrayList(u8) = .empty,
    /// request body bytes the filter holds (gauge)
    held_request: u32 = 0,

    trace_id: [16]u8 = undefined,
    span_id: [8]u8 = undefined,
    parent_id: ?[8]u8 = null,
    key: fingerprint.Hex = undefined,
    start_ns: u64 = 0,

    lookup_callout: u32 = 0,
    lookup_start_ns: u64 = 0,

    storing: bool = false,
    resp_status: u32 = 0,
    resp_map: []u8 = &.{},
    resp_pairs: []Pair = &.{},
    resp_body: std.ArrayList(u8) = .empty,
    ttl: u32 = 0,

    fn deinit(s: *Stream) void {
        s.dropResponseBody();
        s.releaseRequestBody();
        gpa.free(s.req_pairs);
        host.free(s.req_map);
        gpa.free(s.resp_pairs);
        host.free(s.resp_map);
        if (s.req_body.len > 0) gpa.free(s.req_body);
        s.req_pairs = &.{};
        s.req_map = &.{};
        s.resp_pairs = &.{};
        s.resp_map = &.{};
        s.req_body = &.{};
    }

    fn setHeld(s: *Stream, n: u32) void {
        metrics.addBuffered(@as(i64, n) - @as(i64, s.held_request));
        s.held_request = n;
    }

    fn dropResponseBody(s: *Stream) void {
        metrics.addBuffered(-@as(i64, @intCast(s.resp_body.items.len)));
        s.resp_body.deinit(gpa);
        s.resp_body = .empty;
        s.storing = false;
    }

    fn bypass(s: *Stream, d: policy.RequestDecision) void {
        s.decision = d;
        s.outcome = .bypass;
        s.phase = .upstream;
        if (counterOfRequest(d)) |c| metrics.inc(c);
    }

    // ------------------------------------------------------------ request path

    fn onRequestHeaders(s: *Stream, end_of_stream: bool) Action {
        const c = s.root.cfg() orelse return .@"continue";
        s.start_ns = host.nowNanos();
        if (!c.cache_enabled) {
            s.bypass(.bypass_disabled);
            return .@"continue";
        }
        s.req_map = host.getHeaderMapPairs(.http_request_headers) catch |e| {
            logf(.warn, "cannot read request headers: {s}", .{@errorName(e)});
            s.outcome = .miss;
            s.phase = .upstream;
            metrics.inc(.lookup_error);
            return .@"continue";
        };
        s.req_pairs = headers.decodeMap(gpa, s.req_map) catch {
            s.outcome = .miss;
            s.phase = .upstream;
            metrics.inc(.lookup_error);
            return .@"continue";
        };
        s.method = headers.get(s.req_pairs, ":method") orelse "";
        s.path = headers.get(s.req_pairs, ":path") orelse "";
        s.authority = headers.get(s.req_pairs, ":authority") orelse headers.get(s.req_pairs, "host") orelse "";
        s.scheme = headers.get(s.req_pairs, ":scheme") orelse "http";
        s.session = headers.get(s.req_pairs, "x-sp-session-id") orelse "";
        s.setupTrace();

        const d = policy.requestCacheability(c, s.method, s.req_pairs);
        if (d != .cacheable) {
            s.bypass(d);
            return .@"continue";
        }
        s.decision = .cacheable;
        if (end_of_stream) return if (s.startLookup(c)) .pause else .@"continue";
        s.phase = .holding_body;
        return .pause; // a real StopIteration thanks to allow_on_headers_stop_iteration
    }

    fn setupTrace(s: *Stream) void {
        host.randomBytes(&s.span_id);
        if (headers.get(s.req_pairs, "traceparent")) |tp_value| {
            if (trace.parse(tp_value)) |tp| {
                s.trace_id = tp.trace_id;
                s.parent_id = tp.parent_id;
                return;
            }
            host.randomBytes(&s.trace_id);
            return; // present but invalid: leave the client's header alone
        }
        host.randomBytes(&s.trace_id);
        const tp = trace.format(s.trace_id, s.span_id, 1);
        host.addHeaderMapValue(.http_request_headers, "traceparent", &tp) catch {};
    }

    /// Holds a request body for its lookup. Envoy hands each chunk on its own (the body
    /// callbacks answer StopIterationAndWatermark, not StopIterationAndBuffer, so the body is the
    /// current chunk only), so the filter keeps its own copy of the chunks until the end of stream.
    fn onRequestBody(s: *Stream, len: u32, end_of_stream: bool) Action {
        if (s.phase != .holding_body) return .@"continue";
        const c = s.root.cfg() orelse return .@"continue";
        const total = @as(u64, s.req_acc.items.len) + len;
        if (total > @min(c.max_request_body_bytes, envoy_hold_limit)) {
            s.releaseRequestBody();
            s.bypass(.bypass_request_too_large);
            return .@"continue"; // releases the held headers and every held chunk
        }
        if (len > 0) {
            const chunk = host.getBufferBytes(.http_request_body, 0, len) catch |e| {
                logf(.warn, "cannot read request body: {s}", .{@errorName(e)});
                return s.failRequestBody();
            };
            defer host.free(chunk);
            s.req_acc.appendSlice(gpa, chunk) catch return s.failRequestBody();
            s.setHeld(@intCast(s.req_acc.items.len));
        }
        // StopIterationAndWatermark: a single read can carry up to the whole connection buffer
        // limit, so no headroom below it prevents an overflow; with StopIterationAndBuffer Envoy
        // would answer 413 there, with the watermark it pushes back on the client instead.
        if (!end_of_stream) return .pause_watermark;
        s.req_body = s.req_acc.toOwnedSlice(gpa) catch return s.failRequestBody();
        return if (s.startLookup(c)) .pause_watermark else .@"continue";
    }

    /// Frees the filter's copy of the request body (Envoy still holds and forwards the bytes).
    fn releaseRequestBody(s: *Stream) void {
        s.req_acc.deinit(gpa);
        s.req_acc = .empty;
        s.setHeld(0);
    }

    /// The body could not be copied: no lookup, the request goes upstream untouched (fail open).
    fn failRequestBody(s: *Stream) Action {
        s.releaseRequestBody();
        metrics.inc(.lookup_error);
        s.outcome = .miss;
        s.phase = .upstream;
        return .@"continue";
    }

    fn onRequestTrailers(s: *Stream) Action {
        if (s.phase != .holding_body) return .@"continue";
        // the body ended with trailers (rare outside gRPC): not looked up, the body goes on as is
        s.releaseRequestBody();
        s.bypass(.bypass_method);
        return .@"continue";
    }

    /// Dispatches the lookup; false (and counted) when it could not be sent.
    fn startLookup(s: *Stream, c: *const config.Config) bool {
        s.key = fingerprint.compute(s.method, s.authority, s.path, s.req_pairs, c.vary_headers, s.req_body);
        const ok = s.sendLookup(c) catch |e| blk: {
            logf(.warn, "lookup: http_call to cluster {s} failed: {s}", .{ c.backend_cluster, @errorName(e) });
            break :blk false;
        };
        if (!ok) {
            metrics.inc(.lookup_error);
            s.outcome = .miss;
            s.looked_up = true;
            s.phase = .upstream;
            s.setHeld(0);
            return false;
        }
        return true;
    }

    fn sendLookup(s: *Stream, c: *const config.Config) !bool {
        var arena = std.heap.ArenaAllocator.init(gpa);
        defer arena.deinit();
        const a = arena.allocator();
        var attrs: std.ArrayList(protocol.Attr) = .empty;
        try s.requestAttrs(a, &attrs, c, "inject");
        const span = try s.encodeSpan(a, c, attrs.items);
        const map = try backendHeaders(c, "/v1/inject");
        defer gpa.free(map);
        try s.root.callouts.ensureUnusedCapacity(gpa, 1);
        s.lookup_start_ns = host.nowNanos();
        s.lookup_callout = try host.httpCall(c.backend_cluster, map, span, c.lookup_timeout_ms);
        s.root.callouts.putAssumeCapacity(s.lookup_callout, s.id);
        s.phase = .lookup_pending;
        s.looked_up = true;
        return true;
    }

    fn encodeSpan(s: *Stream, a: std.mem.Allocator, c: *const config.Config, attrs: []const protocol.Attr) ![]u8 {
        const span: protocol.Span = .{
            .service_name = c.service_name,
            .scope_version = version,
            .trace_id = s.trace_id,
            .span_id = s.span_id,
            .parent_span_id = s.parent_id,
            .name = s.path,
            .start_time_unix_nano = s.start_ns,
            .end_time_unix_nano = @max(s.start_ns, host.nowNanos()),
            .attrs = attrs,
        };
        return protocol.encode(a, &span);
    }

    fn requestAttrs(s: *Stream, a: std.mem.Allocator, attrs: *std.ArrayList(protocol.Attr), c: *const config.Config, span_type: []const u8) !void {
        try attrs.appendSlice(a, &.{
            .{ .key = "sp.span.type", .value = .{ .string = span_type } },
            .{ .key = "http.request.method", .value = .{ .string = s.method } },
            .{ .key = "url.scheme", .value = .{ .string = s.scheme } },
            .{ .key = "url.path", .value = .{ .string = s.path } },
            .{ .key = "server.address", .value = .{ .string = s.authority } },
            .{ .key = "sp.service.name", .value = .{ .string = c.service_name } },
            .{ .key = "sp.traffic.direction", .value = .{ .string = @tagName(c.traffic_direction) } },
            .{ .key = "sp.session.id", .value = .{ .string = s.session } },
            .{ .key = "sp.cache.key", .value = .{ .string = &s.key } },
            .{ .key = "sp.cache.vary", .value = .{ .strings = c.vary_headers } },
        });
        if (s.req_body.len > 0) try attrs.append(a, .{ .key = "http.request.body", .value = .{ .bytes = s.req_body } });
        try headerAttrs(a, attrs, "http.request.header.", s.req_pairs, c);
    }

    // ------------------------------------------------------------ lookup answer

    fn onLookupResponse(s: *Stream, callout: u32, num_headers: u32, body_size: u32) void {
        if (s.phase != .lookup_pending or callout != s.lookup_callout) {
            logf(.debug, "ignoring callout {d} (phase {s}, lookup callout {d})", .{ callout, @tagName(s.phase), s.lookup_callout });
            return;
        }
        const c = s.root.cfg() orelse return s.resume_();
        // Envoy answers a callout timeout either with zero headers or with its own 504
        const elapsed_ms = (host.nowNanos() -| s.lookup_start_ns) / std.time.ns_per_ms;
        const timed_out = elapsed_ms + 5 >= c.lookup_timeout_ms;
        if (num_headers == 0) {
            metrics.inc(if (timed_out) .lookup_timeout else .lookup_error);
            return s.resume_();
        }
        const status = (host.getHeaderMapValue(.http_call_response_headers, ":status") catch null) orelse {
            metrics.inc(.lookup_error);
            return s.resume_();
        };
        defer host.free(status);
        if (std.mem.eql(u8, status, "404")) {
            metrics.inc(.miss);
            return s.resume_();
        }
        if (!std.mem.eql(u8, status, "200") or body_size == 0) {
            logf(.debug, "lookup answered {s} with {d} bytes", .{ status, body_size });
            metrics.inc(if (timed_out and std.mem.eql(u8, status, "504")) .lookup_timeout else .lookup_error);
            return s.resume_();
        }
        const body = host.getBufferBytes(.http_call_response_body, 0, body_size) catch {
            metrics.inc(.lookup_error);
            return s.resume_();
        };
        defer host.free(body);
        var hit = protocol.decodeHit(gpa, body) catch |e| {
            logf(.warn, "undecodable lookup answer ({d} bytes): {s}", .{ body.len, @errorName(e) });
            metrics.inc(.lookup_error);
            return s.resume_();
        };
        defer hit.deinit(gpa);
        s.replyHit(&hit) catch |e| {
            logf(.warn, "cannot send the cached reply: {s}", .{@errorName(e)});
            if (s.phase == .replied) return; // the host took it
            metrics.inc(.lookup_error);
            return s.resume_();
        };
    }

    /// Continues upstream after a miss (fail open).
    fn resume_(s: *Stream) void {
        s.outcome = .miss;
        s.phase = .upstream;
        host.continueStream(.request) catch |e| logf(.warn, "continue_stream failed: {s}", .{@errorName(e)});
    }

    fn replyHit(s: *Stream, hit: *const protocol.Hit) !void {
        var list: std.ArrayList(Pair) = .empty;
        defer list.deinit(gpa);
        for (hit.headers) |h| {
            if (h.name.len == 0 or h.name[0] == ':' or headers.isHopByHop(h.name) or
                std.ascii.eqlIgnoreCase(h.name, "content-length") or std.ascii.eqlIgnoreCase(h.name, "age") or
                std.ascii.eqlIgnoreCase(h.name, "x-sp-cache")) continue;
            try list.append(gpa, h);
        }
        var age_buf: [20]u8 = undefined;
        const age = std.fmt.bufPrint(&age_buf, "{d}", .{hit.age_seconds}) catch "0";
        try list.append(gpa, .{ .name = "age", .value = age });
        try list.append(gpa, .{ .name = "x-sp-cache", .value = "HIT" });
        const map = try headers.encodeMap(gpa, list.items);
        defer gpa.free(map);
        // set before the call: the local reply re-enters our response callbacks synchronously
        s.phase = .replied;
        s.outcome = .hit;
        s.setHeld(0);
        host.sendLocalResponse(hit.status, "sp_cache_hit", hit.body, map) catch |e| {
            s.phase = .lookup_pending;
            s.outcome = .none;
            return e;
        };
        metrics.inc(.hit);
    }

    // ------------------------------------------------------------ response path

    fn onResponseHeaders(s: *Stream, end_of_stream: bool) Action {
        if (s.phase == .replied) return .@"continue"; // our own local reply: never store it
        const c = s.root.cfg() orelse return .@"continue";
        s.phase = .upstream;
        s.setHeld(0);
        if (s.outcome == .none and s.decision == .cacheable) s.outcome = .miss;
        const value: []const u8 = if (s.outcome == .miss) "MISS" else "BYPASS";
        if (!c.cache_enabled) {
            host.addHeaderMapValue(.http_response_headers, "x-sp-cache", value) catch {};
            return .@"continue";
        }
        const d = s.responseDecision(c);
        host.addHeaderMapValue(.http_response_headers, "x-sp-cache", value) catch {};
        if (counterOfResponse(d)) |counter| {
            metrics.inc(counter);
            s.store_note = @tagName(d);
            return .@"continue";
        }
        if (end_of_stream) {
            s.finishStore(c);
        } else {
            s.storing = true;
        }
        return .@"continue";
    }

    fn responseDecision(s: *Stream, c: *const config.Config) policy.ResponseDecision {
        if (!s.looked_up or s.decision != .cacheable) return .skip_not_looked_up;
        s.resp_map = host.getHeaderMapPairs(.http_response_headers) catch return .skip_status;
        s.resp_pairs = headers.decodeMap(gpa, s.resp_map) catch return .skip_status;
        const status_text = headers.get(s.resp_pairs, ":status") orelse return .skip_status;
        s.resp_status = std.fmt.parseInt(u32, status_text, 10) catch return .skip_status;
        const now_s: i64 = @intCast(host.nowNanos() / std.time.ns_per_s);
        const d = policy.responseStorability(c, s.method, s.req_pairs, s.resp_status, s.resp_pairs, now_s);
        if (d != .storable) return d;
        if (headers.get(s.resp_pairs, "content-length")) |cl| {
            const n = std.fmt.parseInt(u64, cl, 10) catch 0;
            if (n > c.max_response_body_bytes) return .skip_response_too_large;
        }
        s.ttl = policy.freshnessLifetime(s.resp_pairs, c.default_ttl_seconds, now_s);
        return .storable;
    }

    fn onResponseBody(s: *Stream, len: u32, end_of_stream: bool) Action {
        if (!s.storing) return .@"continue";
        const c = s.root.cfg() orelse return .@"continue";
        if (s.resp_body.items.len + len > c.max_response_body_bytes) {
            s.dropResponseBody();
            metrics.inc(.store_skipped_response_too_large);
            s.store_note = "skip_response_too_large";
            return .@"continue";
        }
        if (len > 0) {
            const chunk = host.getBufferBytes(.http_response_body, 0, len) catch |e| {
                logf(.warn, "cannot read response body: {s}", .{@errorName(e)});
                s.dropResponseBody();
                metrics.inc(.store_failed);
                return .@"continue";
            };
            defer host.free(chunk);
            s.resp_body.appendSlice(gpa, chunk) catch {
                s.dropResponseBody();
                metrics.inc(.store_dropped);
                return .@"continue";
            };
            metrics.addBuffered(@intCast(chunk.len));
        }
        if (end_of_stream) s.finishStore(c);
        return .@"continue"; // never hold the response in Envoy
    }

    fn onResponseTrailers(s: *Stream) Action {
        if (s.storing) if (s.root.cfg()) |c| s.finishStore(c);
        return .@"continue";
    }

    fn finishStore(s: *Stream, c: *const config.Config) void {
        defer s.dropResponseBody();
        const body = s.encodeStore(c) catch {
            metrics.inc(.store_dropped);
            s.store_note = "dropped_oom";
            return;
        };
        defer gpa.free(body);
        s.store_note = "sent";
        s.root.dispatchStore(c, body, s.id);
    }

    fn encodeStore(s: *Stream, c: *const config.Config) ![]u8 {
        var arena = std.heap.ArenaAllocator.init(gpa);
        defer arena.deinit();
        const a = arena.allocator();
        var attrs: std.ArrayList(protocol.Attr) = .empty;
        try s.requestAttrs(a, &attrs, c, "extract");
        try attrs.append(a, .{ .key = "http.response.status_code", .value = .{ .int = s.resp_status } });
        try attrs.append(a, .{ .key = "sp.cache.ttl_seconds", .value = .{ .int = s.ttl } });
        if (s.resp_body.items.len > 0) try attrs.append(a, .{ .key = "http.response.body", .value = .{ .bytes = s.resp_body.items } });
        try headerAttrs(a, &attrs, "http.response.header.", s.resp_pairs, c);
        const span = try s.encodeSpan(a, c, attrs.items);
        return gpa.dupe(u8, span);
    }

    fn logLine(s: *Stream) void {
        if (@intFromEnum(config.LogLevel.debug) < @intFromEnum(log_level)) return;
        if (s.method.len == 0) return;
        const outcome = switch (s.outcome) {
            .hit => "HIT",
            .miss => "MISS",
            .bypass, .none => "BYPASS",
        };
        logf(.debug, "{s} {s}{s} {s} reason={s} store={s} status={d} key={s}", .{
            s.method,                                              s.authority,   s.path, outcome,
            @tagName(s.decision),                                  s.store_note,  s.resp_status,
            if (s.decision == .cacheable) s.key[0..16] else "-",
        });
    }
};

/// Groups headers by name (first-occurrence order) into string-array attributes, skipping
/// pseudo-headers, hop-by-hop, redacted and Envoy-internal headers.
fn headerAttrs(a: std.mem.Allocator, attrs: *std.ArrayList(protocol.Attr), prefix: []const u8, pairs: []const Pair, c: *const config.Config) !void {
    for (pairs, 0..) |p, i| {
        if (p.name.len == 0 or p.name[0] == ':' or c.redacted(p.name) or headers.isHopByHop(p.name) or
            std.mem.startsWith(u8, p.name, "x-envoy-") or std.ascii.eqlIgnoreCase(p.name, "x-sp-cache")) continue;
        var seen = false;
        for (pairs[0..i]) |q| if (std.ascii.eqlIgnoreCase(p.name, q.name)) {
            seen = true;
            break;
        };
        if (seen) continue;
        const n = headers.count(pairs[i..], p.name);
        const values = try a.alloc([]const u8, n);
        var k: usize = 0;
        for (pairs[i..]) |q| if (std.ascii.eqlIgnoreCase(p.name, q.name)) {
            values[k] = q.value;
            k += 1;
        };
        const name = try std.ascii.allocLowerString(a, p.name);
        try attrs.append(a, .{ .prefix = prefix, .key = name, .value = .{ .strings = values } });
    }
}

/// Serialized header map for a backend call.
fn backendHeaders(c: *const config.Config, path: []const u8) ![]u8 {
    var pairs: [5]Pair = .{
        .{ .name = ":method", .value = "POST" },
        .{ .name = ":path", .value = path },
        .{ .name = ":authority", .value = c.backend_authority },
        .{ .name = "content-type", .value = "application/x-protobuf" },
        .{ .name = "x-public-key", .value = c.public_key },
    };
    return headers.encodeMap(gpa, pairs[0..if (c.public_key.len > 0) 5 else 4]);
}

// ---------------------------------------------------------------- context registry

var roots: std.AutoHashMapUnmanaged(u32, *Root) = .empty;
var streams: std.AutoHashMapUnmanaged(u32, *Stream) = .empty;

/// proxy_on_context_create: parent 0 creates a root (plugin) context, else a stream context.
pub fn onContextCreate(id: u32, parent: u32) void {
    if (parent == 0) {
        const r = gpa.create(Root) catch return;
        r.* = .{ .id = id };
        roots.put(gpa, id, r) catch gpa.destroy(r);
        return;
    }
    const root = roots.get(parent) orelse return;
    const s = gpa.create(Stream) catch return; // no context: every callback continues
    s.* = .{ .id = id, .root = root };
    streams.put(gpa, id, s) catch gpa.destroy(s);
}

/// proxy_on_configure: parses the plugin configuration; false refuses it (Envoy fails the load).
pub fn onConfigure(root_id: u32, size: u32) bool {
    const r = roots.get(root_id) orelse return false;
    const json: []u8 = if (size == 0) &.{} else host.getBufferBytes(.plugin_configuration, 0, size) catch {
        host.log(.@"error", "sp-cache: cannot read the plugin configuration");
        return false;
    };
    defer host.free(json);
    var diag: config.Diagnostic = .{};
    const parsed = config.parse(gpa, json, &diag) catch |e| {
        var buf: [256]u8 = undefined;
        const msg = std.fmt.bufPrint(&buf, "sp-cache: invalid plugin configuration: key \"{s}\": {s} ({s})", .{ diag.key(), diag.reason, @errorName(e) }) catch "sp-cache: invalid plugin configuration";
        host.log(.@"error", msg);
        return false;
    };
    // an old config may still be referenced by live streams: keep it (reconfigure is rare)
    r.parsed = parsed;
    log_level = parsed.value.log_level;
    metrics.define();
    logf(.info, "configured: backend_cluster={s} cache_enabled={} lookup_timeout_ms={d} max_response_body_bytes={d}", .{
        parsed.value.backend_cluster, parsed.value.cache_enabled, parsed.value.lookup_timeout_ms, parsed.value.max_response_body_bytes,
    });
    return true;
}

/// proxy_on_request_headers.
pub fn onRequestHeaders(id: u32, end_of_stream: bool) Action {
    const s = streams.get(id) orelse return .@"continue";
    return s.onRequestHeaders(end_of_stream);
}

/// proxy_on_request_body.
pub fn onRequestBody(id: u32, len: u32, end_of_stream: bool) Action {
    const s = streams.get(id) orelse return .@"continue";
    return s.onRequestBody(len, end_of_stream);
}

/// proxy_on_request_trailers.
pub fn onRequestTrailers(id: u32) Action {
    const s = streams.get(id) orelse return .@"continue";
    return s.onRequestTrailers();
}

/// proxy_on_response_headers.
pub fn onResponseHeaders(id: u32, end_of_stream: bool) Action {
    const s = streams.get(id) orelse return .@"continue";
    return s.onResponseHeaders(end_of_stream);
}

/// proxy_on_response_body.
pub fn onResponseBody(id: u32, len: u32, end_of_stream: bool) Action {
    const s = streams.get(id) orelse return .@"continue";
    return s.onResponseBody(len, end_of_stream);
}

/// proxy_on_response_trailers.
pub fn onResponseTrailers(id: u32) Action {
    const s = streams.get(id) orelse return .@"continue";
    return s.onResponseTrailers();
}

/// proxy_on_http_call_response: a store answer on a root, a lookup answer on a stream; answers
/// for contexts that are gone are ignored.
pub fn onHttpCallResponse(id: u32, callout: u32, num_headers: u32, body_size: u32) void {
    logf(.trace, "http_call_response context={d} callout={d} headers={d} body={d}", .{ id, callout, num_headers, body_size });
    if (roots.get(id)) |r| {
        const owner = (r.callouts.fetchRemove(callout) orelse return).value;
        if (owner == 0) return r.onStoreResponse(callout, num_headers);
        const s = streams.get(owner) orelse return; // the client went away: ignore
        host.setEffectiveContext(owner) catch return;
        return s.onLookupResponse(callout, num_headers, body_size);
    }
    // a host that answers on the dispatching stream context
    if (streams.get(id)) |s| {
        _ = s.root.callouts.remove(callout);
        s.onLookupResponse(callout, num_headers, body_size);
    }
}

/// proxy_on_log: the per-request debug line.
pub fn onLog(id: u32) void {
    const s = streams.get(id) orelse return;
    s.logLine();
}

/// proxy_on_done: releases a stream's buffers early (a pending lookup answer is then ignored).
pub fn onDone(id: u32) bool {
    if (streams.get(id)) |s| {
        if (s.phase == .lookup_pending) s.phase = .upstream;
        s.dropResponseBody();
        s.releaseRequestBody();
    }
    return true;
}

/// proxy_on_delete: forgets the context.
pub fn onDelete(id: u32) void {
    if (streams.fetchRemove(id)) |kv| {
        kv.value.deinit();
        gpa.destroy(kv.value);
    }
}
