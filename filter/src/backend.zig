//! Calls to the cache backend (docs/protocol.md): builds the span of a lookup, store or
//! invalidate from what the flow knows of the request, and dispatches it with `proxy_http_call`
//! to the backend cluster. Lookups belong to their stream; stores and invalidations are
//! dispatched from the root context so that the end of the client's stream cannot cancel them,
//! and are bounded in flight.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const headers = @import("headers.zig");
const config = @import("config.zig");
const entry = @import("entry.zig");
const protocol = @import("protocol.zig");
const trace = @import("trace.zig");

const Pair = headers.Pair;
const gpa = host.gpa;

/// Filter version, sent as the OTLP scope version.
pub const version = "0.2.0";

/// Paths of the three calls.
pub const Path = enum {
    lookup,
    store,
    invalidate,

    fn value(p: Path) []const u8 {
        return switch (p) {
            .lookup => "/v1/inject",
            .store => "/v1/traces",
            .invalidate => "/v1/invalidate",
        };
    }
};

/// Deployment facts a call needs: where and with which key.
pub const Target = struct {
    cluster: []const u8,
    authority: []const u8,
    /// sent as x-public-key when non-empty
    key: []const u8,
};

/// What every span of one request shares.
pub const Exchange = struct {
    cfg: *const config.Config,
    method: []const u8,
    scheme: []const u8,
    authority: []const u8,
    path: []const u8,
    /// the request's headers as Envoy gave them
    request: []const Pair,
    body: []const u8 = "",
    key: []const u8,
    trace_id: [16]u8,
    parent_span_id: ?[8]u8,
    start_ns: u64,
};

/// The trace a request's spans join: the incoming `traceparent` when valid, else a new trace.
pub fn traceOf(request: []const Pair) struct { trace_id: [16]u8, parent: ?[8]u8 } {
    if (headers.get(request, "traceparent")) |v| {
        if (trace.parse(v)) |tp| return .{ .trace_id = tp.trace_id, .parent = tp.parent_id };
    }
    var id: [16]u8 = undefined;
    host.randomBytes(&id);
    return .{ .trace_id = id, .parent = null };
}

/// True for request headers a span never carries: pseudo-headers, connection-specific ones,
/// Envoy's own `x-envoy-*`, and redacted ones; and names that are not RFC 9110 tokens.
fn omitted(cfg: *const config.Config, name: []const u8) bool {
    return name.len == 0 or name[0] == ':' or headers.isHopByHop(name) or
        std.ascii.startsWithIgnoreCase(name, "x-envoy-") or cfg.redacted(name) or !entry.isToken(name);
}

/// Encodes the span of one call; caller frees with `gpa`.
pub fn encode(x: *const Exchange, call: protocol.Call) (protocol.EncodeError)![]u8 {
    var kept: std.ArrayList(Pair) = .empty;
    defer kept.deinit(gpa);
    for (x.request) |p| if (!omitted(x.cfg, p.name)) try kept.append(gpa, p);
    const grouped = try entry.groupHeaders(gpa, kept.items);
    defer gpa.free(grouped);
    var span_id: [8]u8 = undefined;
    host.randomBytes(&span_id);
    const env: protocol.Envelope = .{
        .service_name = x.cfg.service_name,
        .scope_version = version,
        .trace_id = x.trace_id,
        .span_id = span_id,
        .parent_span_id = x.parent_span_id,
        .kind = if (x.cfg.traffic_direction == .inbound) .server else .client,
        .start_time_unix_nano = x.start_ns,
        .end_time_unix_nano = @max(x.start_ns, host.nowNanos()),
    };
    const req: protocol.Request = .{
        .method = x.method,
        .scheme = x.scheme,
        .path = x.path,
        .authority = x.authority,
        .headers = grouped,
        .body = x.body,
        .direction = @tagName(x.cfg.traffic_direction),
        .session_id = headers.get(x.request, "x-sp-session-id") orelse "",
        .key = x.key,
    };
    return protocol.encode(gpa, &env, &req, call);
}

/// Dispatches `body` to the backend; returns the callout token.
pub fn dispatch(target: Target, path: Path, body: []const u8, timeout_ms: u32) (host.Error || error{OutOfMemory})!u32 {
    var pairs: [5]Pair = .{
        .{ .name = ":method", .value = "POST" },
        .{ .name = ":path", .value = path.value() },
        .{ .name = ":authority", .value = target.authority },
        .{ .name = "content-type", .value = "application/x-protobuf" },
        .{ .name = "x-public-key", .value = target.key },
    };
    const map = try headers.encodeMap(gpa, pairs[0..if (target.key.len > 0) 5 else 4]);
    defer gpa.free(map);
    return host.httpCall(target.cluster, map, body, timeout_ms);
}

/// The `:status` of a callout answer, or null (no headers: reset, timeout, or unreadable).
pub fn answerStatus(num_headers: u32) ?u32 {
    if (num_headers == 0) return null;
    const s = (host.getHeaderMapValue(.http_call_response_headers, ":status") catch return null) orelse return null;
    defer host.free(s);
    return std.fmt.parseInt(u32, s, 10) catch null;
}

/// The body Envoy's router puts in the 504 it answers when a request outlives its timeout
/// (Envoy `Router::Filter::onUpstreamTimeout`; measured on Envoy 1.40 with a sleeping backend).
pub const envoy_timeout_body = "upstream request timeout";

/// Whether a 504 answer of `body_size` bytes is Envoy's own timeout reply rather than a 504 the
/// backend (or a proxy before it) sent. The callout's elapsed time alone cannot tell: Envoy arms
/// the timer from its event loop's cached time, which on a loaded worker is milliseconds older
/// than the clock the filter reads when it dispatches.
pub fn isEnvoyTimeout(status: u32, body_size: u32) bool {
    if (status != 504 or body_size != envoy_timeout_body.len) return false;
    const body = host.getBufferBytes(.http_call_response_body, 0, body_size) catch return false;
    defer host.free(body);
    return std.mem.eql(u8, body, envoy_timeout_body);
}
