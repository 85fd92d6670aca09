//! Every host import of the filter (proxy-wasm ABI 0.2.1 "env", plus WASI `random_get`), each
//! beside a thin wrapper that turns the host status into a named Zig error. Filter code never
//! touches raw pointers. Buffers the host returns were allocated through
//! `proxy_on_memory_allocate` (i.e. `gpa`) and are owned by the caller.
const std = @import("std");

/// The allocator behind `proxy_on_memory_allocate`; host-returned buffers are freed with it.
pub const gpa = std.heap.wasm_allocator;

/// Host statuses other than Ok. `Unknown` covers any status this ABI version does not define.
pub const Error = error{
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    BadExpression,
    InvalidMemoryAccess,
    Empty,
    CasMismatch,
    ResultMismatch,
    InternalFailure,
    BrokenConnection,
    Unimplemented,
    Unknown,
};

fn check(status: u32) Error!void {
    return switch (status) {
        0 => {},
        1 => error.NotFound,
        2 => error.BadArgument,
        3 => error.SerializationFailure,
        4 => error.ParseFailure,
        5 => error.BadExpression,
        6 => error.InvalidMemoryAccess,
        7 => error.Empty,
        8 => error.CasMismatch,
        9 => error.ResultMismatch,
        10 => error.InternalFailure,
        11 => error.BrokenConnection,
        12 => error.Unimplemented,
        else => error.Unknown,
    };
}

/// proxy-wasm buffer types.
pub const BufferType = enum(u32) {
    http_request_body = 0,
    http_response_body = 1,
    http_call_response_body = 4,
    vm_configuration = 6,
    plugin_configuration = 7,
};

/// proxy-wasm header map types.
pub const MapType = enum(u32) {
    http_request_headers = 0,
    http_request_trailers = 1,
    http_response_headers = 2,
    http_response_trailers = 3,
    http_call_response_headers = 6,
    http_call_response_trailers = 7,
};

/// proxy-wasm stream types for `proxy_continue_stream`.
pub const StreamType = enum(u32) { request = 0, response = 1 };

/// proxy-wasm metric types.
pub const MetricType = enum(u32) { counter = 0, gauge = 1, histogram = 2 };

/// proxy-wasm log levels.
pub const LogLevel = enum(u32) { trace = 0, debug = 1, info = 2, warn = 3, @"error" = 4, critical = 5 };

extern "env" fn proxy_log(level: u32, msg: [*]const u8, len: usize) u32;
extern "env" fn proxy_get_buffer_bytes(t: u32, start: usize, max: usize, ret_ptr: *?[*]u8, ret_len: *usize) u32;
extern "env" fn proxy_get_header_map_pairs(t: u32, ret_ptr: *?[*]u8, ret_len: *usize) u32;
extern "env" fn proxy_get_header_map_value(t: u32, key: [*]const u8, key_len: usize, ret_ptr: *?[*]u8, ret_len: *usize) u32;
extern "env" fn proxy_add_header_map_value(t: u32, key: [*]const u8, key_len: usize, value: [*]const u8, value_len: usize) u32;
extern "env" fn proxy_send_local_response(status: u32, details: [*]const u8, details_len: usize, body: [*]const u8, body_len: usize, headers: [*]const u8, headers_len: usize, grpc_status: i32) u32;
extern "env" fn proxy_http_call(cluster: [*]const u8, cluster_len: usize, headers: [*]const u8, headers_len: usize, body: [*]const u8, body_len: usize, trailers: [*]const u8, trailers_len: usize, timeout_ms: u32, ret_id: *u32) u32;
extern "env" fn proxy_continue_stream(t: u32) u32;
extern "env" fn proxy_get_current_time_nanoseconds(ret: *u64) u32;
extern "env" fn proxy_set_effective_context(context_id: u32) u32;
extern "env" fn proxy_define_metric(t: u32, name: [*]const u8, name_len: usize, ret_id: *u32) u32;
extern "env" fn proxy_increment_metric(id: u32, offset: i64) u32;
extern "wasi_snapshot_preview1" fn random_get(buf: [*]u8, len: usize) u32;

/// Writes a log line at `level`; errors are ignored (logging must not fail a request).
pub fn log(level: LogLevel, msg: []const u8) void {
    _ = proxy_log(@intFromEnum(level), msg.ptr, msg.len);
}

fn owned(ptr: ?[*]u8, len: usize) []u8 {
    if (len == 0) return &.{};
    return (ptr orelse return &.{})[0..len];
}

/// Frees a buffer the host returned (no-op for empty ones).
pub fn free(buf: []u8) void {
    if (buf.len > 0) gpa.free(buf);
}

/// Copies `max` bytes from `start` of a host buffer; caller frees with `free`.
pub fn getBufferBytes(t: BufferType, start: usize, max: usize) Error![]u8 {
    var ptr: ?[*]u8 = null;
    var len: usize = 0;
    try check(proxy_get_buffer_bytes(@intFromEnum(t), start, max, &ptr, &len));
    return owned(ptr, len);
}

/// The serialized header map (see headers.zig); caller frees with `free`.
pub fn getHeaderMapPairs(t: MapType) Error![]u8 {
    var ptr: ?[*]u8 = null;
    var len: usize = 0;
    try check(proxy_get_header_map_pairs(@intFromEnum(t), &ptr, &len));
    return owned(ptr, len);
}

/// One header value, or null when absent; caller frees with `free`.
pub fn getHeaderMapValue(t: MapType, key: []const u8) Error!?[]u8 {
    var ptr: ?[*]u8 = null;
    var len: usize = 0;
    check(proxy_get_header_map_value(@intFromEnum(t), key.ptr, key.len, &ptr, &len)) catch |e| switch (e) {
        error.NotFound => return null,
        else => return e,
    };
    return owned(ptr, len);
}

/// Appends a header value.
pub fn addHeaderMapValue(t: MapType, key: []const u8, value: []const u8) Error!void {
    try check(proxy_add_header_map_value(@intFromEnum(t), key.ptr, key.len, value.ptr, value.len));
}

/// Sends a local reply; `headers_map` is a serialized header map (headers.encodeMap).
pub fn sendLocalResponse(status: u32, details: []const u8, body: []const u8, headers_map: []const u8) Error!void {
    try check(proxy_send_local_response(status, details.ptr, details.len, body.ptr, body.len, headers_map.ptr, headers_map.len, -1));
}

/// Dispatches an HTTP callout to an Envoy cluster; returns the callout id. A cluster Envoy does
/// not know gives `error.BadArgument` synchronously.
pub fn httpCall(cluster: []const u8, headers_map: []const u8, body: []const u8, timeout_ms: u32) Error!u32 {
    var id: u32 = 0;
    const no_trailers = [_]u8{ 0, 0, 0, 0 };
    try check(proxy_http_call(cluster.ptr, cluster.len, headers_map.ptr, headers_map.len, body.ptr, body.len, &no_trailers, no_trailers.len, timeout_ms, &id));
    return id;
}

/// Resumes a paused request or response.
pub fn continueStream(t: StreamType) Error!void {
    try check(proxy_continue_stream(@intFromEnum(t)));
}

/// Host wall-clock time in nanoseconds since the Unix epoch (0 if the host refuses).
pub fn nowNanos() u64 {
    var t: u64 = 0;
    check(proxy_get_current_time_nanoseconds(&t)) catch return 0;
    return t;
}

/// Makes later host calls act for `context_id` (used to dispatch stores from the root context).
pub fn setEffectiveContext(context_id: u32) Error!void {
    try check(proxy_set_effective_context(context_id));
}

/// Defines a metric; Envoy shows it as `wasmcustom.<name>`.
pub fn defineMetric(t: MetricType, name: []const u8) Error!u32 {
    var id: u32 = 0;
    try check(proxy_define_metric(@intFromEnum(t), name.ptr, name.len, &id));
    return id;
}

/// Adds `offset` to a counter or gauge.
pub fn incrementMetric(id: u32, offset: i64) Error!void {
    try check(proxy_increment_metric(id, offset));
}

/// Fills `buf` from WASI `random_get`; on failure falls back to a time-seeded generator.
pub fn randomBytes(buf: []u8) void {
    if (random_get(buf.ptr, buf.len) == 0) return;
    var prng = std.Random.DefaultPrng.init(nowNanos() ^ @intFromPtr(buf.ptr));
    prng.random().bytes(buf);
}
