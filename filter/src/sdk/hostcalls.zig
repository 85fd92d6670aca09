//! Every host import of the filter (proxy-wasm ABI 0.2.1 "env", plus the WASI calls Envoy
//! provides), each beside a thin wrapper that turns the host status into a named Zig error. This
//! file and dispatch.zig are the only code that touches raw pointers. Buffers the host returns
//! were allocated through `proxy_on_memory_allocate` (i.e. `gpa`) and are owned by the caller.
const std = @import("std");

/// The allocator behind `proxy_on_memory_allocate`; host-returned buffers are freed with it.
/// (Native unit tests of modules that allocate through it use the leak-checking test allocator.)
pub const gpa = if (@import("builtin").is_test) std.testing.allocator else std.heap.wasm_allocator;

/// Host statuses other than Ok (proxy-wasm ABI 0.2.1 WasmResult). `Unknown` covers any status
/// this ABI version does not define: never `unreachable`, the caller fails open.
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
extern "env" fn proxy_set_buffer_bytes(t: u32, start: usize, len: usize, data: [*]const u8, data_len: usize) u32;
extern "env" fn proxy_get_header_map_pairs(t: u32, ret_ptr: *?[*]u8, ret_len: *usize) u32;
extern "env" fn proxy_get_header_map_value(t: u32, key: [*]const u8, key_len: usize, ret_ptr: *?[*]u8, ret_len: *usize) u32;
extern "env" fn proxy_set_header_map_pairs(t: u32, ptr: [*]const u8, len: usize) u32;
extern "env" fn proxy_add_header_map_value(t: u32, key: [*]const u8, key_len: usize, value: [*]const u8, value_len: usize) u32;
extern "env" fn proxy_replace_header_map_value(t: u32, key: [*]const u8, key_len: usize, value: [*]const u8, value_len: usize) u32;
extern "env" fn proxy_remove_header_map_value(t: u32, key: [*]const u8, key_len: usize) u32;
extern "env" fn proxy_send_local_response(status: u32, details: [*]const u8, details_len: usize, body: [*]const u8, body_len: usize, headers: [*]const u8, headers_len: usize, grpc_status: i32) u32;
extern "env" fn proxy_http_call(cluster: [*]const u8, cluster_len: usize, headers: [*]const u8, headers_len: usize, body: [*]const u8, body_len: usize, trailers: [*]const u8, trailers_len: usize, timeout_ms: u32, ret_id: *u32) u32;
extern "env" fn proxy_continue_stream(t: u32) u32;
extern "env" fn proxy_get_current_time_nanoseconds(ret: *u64) u32;
extern "env" fn proxy_set_effective_context(context_id: u32) u32;
extern "env" fn proxy_set_tick_period_milliseconds(period: u32) u32;
extern "env" fn proxy_define_metric(t: u32, name: [*]const u8, name_len: usize, ret_id: *u32) u32;
extern "env" fn proxy_increment_metric(id: u32, offset: i64) u32;
extern "env" fn proxy_record_metric(id: u32, value: u64) u32;
extern "env" fn proxy_get_shared_data(key: [*]const u8, key_len: usize, ret_ptr: *?[*]u8, ret_len: *usize, cas: *u32) u32;
extern "env" fn proxy_set_shared_data(key: [*]const u8, key_len: usize, value: [*]const u8, value_len: usize, cas: u32) u32;
extern "wasi_snapshot_preview1" fn random_get(buf: [*]u8, len: usize) u16;
extern "wasi_snapshot_preview1" fn environ_sizes_get(count: *usize, buf_size: *usize) u16;
extern "wasi_snapshot_preview1" fn environ_get(environ: [*][*]u8, buf: [*]u8) u16;

/// Writes a log line at `level`; errors are ignored (logging must not fail a request).
pub fn log(level: LogLevel, msg: []const u8) void {
    _ = proxy_log(@backingInt(level), msg.ptr, msg.len);
}

fn owned(ptr: ?[*]u8, len: usize) []u8 {
    if (len == 0) return &.{};
    return (ptr orelse return &.{})[0..len];
}

/// Frees a buffer the host returned (no-op for empty ones).
pub fn free(buf: []const u8) void {
    if (buf.len > 0) gpa.free(buf);
}

/// Copies `max` bytes from `start` of a host buffer; caller frees with `free`.
pub fn getBufferBytes(t: BufferType, start: usize, max: usize) Error![]u8 {
    var ptr: ?[*]u8 = null;
    var len: usize = 0;
    try check(proxy_get_buffer_bytes(@backingInt(t), start, max, &ptr, &len));
    return owned(ptr, len);
}

/// Replaces bytes [start, start+len) of a host buffer (the current body chunk) with `data`.
pub fn setBufferBytes(t: BufferType, start: usize, len: usize, data: []const u8) Error!void {
    try check(proxy_set_buffer_bytes(@backingInt(t), start, len, data.ptr, data.len));
}

/// The serialized header map (see headers.zig); caller frees with `free`.
pub fn getHeaderMapPairs(t: MapType) Error![]u8 {
    var ptr: ?[*]u8 = null;
    var len: usize = 0;
    try check(proxy_get_header_map_pairs(@backingInt(t), &ptr, &len));
    return owned(ptr, len);
}

/// One header value, or null when absent; caller frees with `free`.
pub fn getHeaderMapValue(t: MapType, key: []const u8) Error!?[]u8 {
    var ptr: ?[*]u8 = null;
    var len: usize = 0;
    check(proxy_get_header_map_value(@backingInt(t), key.ptr, key.len, &ptr, &len)) catch |e| switch (e) {
        error.NotFound => return null,
        else => return e,
    };
    return owned(ptr, len);
}

/// Replaces a whole header map with a serialized one (headers.encodeMap).
pub fn setHeaderMapPairs(t: MapType, map: []const u8) Error!void {
    try check(proxy_set_header_map_pairs(@backingInt(t), map.ptr, map.len));
}

/// Appends a header value.
pub fn addHeaderMapValue(t: MapType, key: []const u8, value: []const u8) Error!void {
    try check(proxy_add_header_map_value(@backingInt(t), key.ptr, key.len, value.ptr, value.len));
}

/// Sets a header to exactly one value (adding it when absent).
pub fn replaceHeaderMapValue(t: MapType, key: []const u8, value: []const u8) Error!void {
    try check(proxy_replace_header_map_value(@backingInt(t), key.ptr, key.len, value.ptr, value.len));
}

/// Removes every value of a header (absent is not an error).
pub fn removeHeaderMapValue(t: MapType, key: []const u8) Error!void {
    check(proxy_remove_header_map_value(@backingInt(t), key.ptr, key.len)) catch |e| switch (e) {
        error.NotFound => {},
        else => return e,
    };
}

/// Sends a local reply; `headers_map` is a serialized header map (headers.encodeMap). From the
/// request path it answers instead of the upstream; from `on_response_headers` it replaces the
/// upstream response (Envoy 1.40, seen on the wire; docs/envoy-facts.md).
pub fn sendLocalResponse(status: u32, details: []const u8, body: []const u8, headers_map: []const u8) Error!void {
    try check(proxy_send_local_response(status, details.ptr, details.len, body.ptr, body.len, headers_map.ptr, headers_map.len, -1));
}

/// Dispatches an HTTP callout to an Envoy cluster; returns the callout token. A cluster Envoy does
/// not know gives `error.BadArgument` synchronously. Envoy answers on the root context.
pub fn httpCall(cluster: []const u8, headers_map: []const u8, body: []const u8, timeout_ms: u32) Error!u32 {
    var id: u32 = 0;
    const no_trailers = [_]u8{ 0, 0, 0, 0 };
    try check(proxy_http_call(cluster.ptr, cluster.len, headers_map.ptr, headers_map.len, body.ptr, body.len, &no_trailers, no_trailers.len, timeout_ms, &id));
    return id;
}

/// Resumes a paused request or response.
pub fn continueStream(t: StreamType) Error!void {
    try check(proxy_continue_stream(@backingInt(t)));
}

/// Host wall-clock time in nanoseconds since the Unix epoch (0 if the host refuses).
pub fn nowNanos() u64 {
    var t: u64 = 0;
    check(proxy_get_current_time_nanoseconds(&t)) catch return 0;
    return t;
}

/// Host wall-clock time in milliseconds since the Unix epoch.
pub fn nowMs() u64 {
    return nowNanos() / std.time.ns_per_ms;
}

/// Makes later host calls act for `context_id`.
pub fn setEffectiveContext(context_id: u32) Error!void {
    try check(proxy_set_effective_context(context_id));
}

/// Asks for `proxy_on_tick` on the current root context every `ms` milliseconds (0 stops it).
pub fn setTickPeriod(ms: u32) Error!void {
    try check(proxy_set_tick_period_milliseconds(ms));
}

/// Defines a metric; Envoy shows it as `wasmcustom.<name>` and shares it across VMs by name.
pub fn defineMetric(t: MetricType, name: []const u8) Error!u32 {
    var id: u32 = 0;
    try check(proxy_define_metric(@backingInt(t), name.ptr, name.len, &id));
    return id;
}

/// Adds `offset` to a counter or gauge.
pub fn incrementMetric(id: u32, offset: i64) Error!void {
    try check(proxy_increment_metric(id, offset));
}

/// Sets a gauge, or records one histogram sample.
pub fn recordMetric(id: u32, value: u64) Error!void {
    try check(proxy_record_metric(id, value));
}

/// A shared-data value (Envoy-wide, across worker VMs of one vm_id) and its CAS token.
pub const Shared = struct {
    /// owned by the caller (`free`); empty for an empty value
    value: []u8,
    cas: u32,
};

/// Reads a shared-data key; null when the key was never set.
pub fn getSharedData(key: []const u8) Error!?Shared {
    var ptr: ?[*]u8 = null;
    var len: usize = 0;
    var cas: u32 = 0;
    check(proxy_get_shared_data(key.ptr, key.len, &ptr, &len, &cas)) catch |e| switch (e) {
        error.NotFound => return null,
        else => return e,
    };
    return .{ .value = owned(ptr, len), .cas = cas };
}

/// Writes a shared-data key. `cas` 0 writes unconditionally; otherwise the write happens only if
/// the key still has that CAS token (else `error.CasMismatch`). Keys can't be deleted (ABI 0.2.1).
pub fn setSharedData(key: []const u8, value: []const u8, cas: u32) Error!void {
    try check(proxy_set_shared_data(key.ptr, key.len, value.ptr, value.len, cas));
}

/// Fills `buf` from WASI `random_get`; on failure falls back to a time-seeded generator.
pub fn randomBytes(buf: []u8) void {
    if (random_get(buf.ptr, buf.len) == 0) return;
    var prng = std.Random.DefaultPrng.init(nowNanos() ^ @intFromPtr(buf.ptr));
    prng.random().bytes(buf);
}

/// The value of environment variable `name` (Envoy `vm_config.environment_variables`), copied
/// with `allocator`; null when unset or when the host offers no environment.
pub fn getEnv(allocator: std.mem.Allocator, name: []const u8) error{OutOfMemory}!?[]u8 {
    var count: usize = 0;
    var size: usize = 0;
    if (environ_sizes_get(&count, &size) != 0 or count == 0) return null;
    const ptrs = try allocator.alloc([*]u8, count);
    defer allocator.free(ptrs);
    const buf = try allocator.alloc(u8, size);
    defer allocator.free(buf);
    if (environ_get(ptrs.ptr, buf.ptr) != 0) return null;
    for (ptrs) |p| {
        const start = @intFromPtr(p) -% @intFromPtr(buf.ptr);
        if (start >= buf.len) continue; // a host that points outside its own buffer
        const entry = std.mem.sliceTo(buf[start..], 0);
        const eq = std.mem.indexOfScalar(u8, entry, '=') orelse continue;
        if (std.mem.eql(u8, entry[0..eq], name)) return try allocator.dupe(u8, entry[eq + 1 ..]);
    }
    return null;
}
