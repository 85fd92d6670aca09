//! proxy-wasm ABI 0.2.1 entry points: each forwards to the dispatcher (sdk/dispatch.zig), which
//! routes it to the filter's root or stream context (filter.zig).
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const filter = @import("filter.zig");

const D = filter.Dispatcher;

/// Safety panics log the message before trapping, so a broken invariant is visible in Envoy's log.
pub const panic = std.debug.FullPanic(panicFn);

fn panicFn(msg: []const u8, _: ?usize) noreturn {
    host.log(.critical, "sp-cache: panic: ");
    host.log(.critical, msg);
    @trap();
}

export fn proxy_abi_version_0_2_1() void {}

/// Host asks for `size` bytes of guest memory; null (0) when out of memory.
export fn proxy_on_memory_allocate(size: usize) ?[*]u8 {
    const buf = host.gpa.alloc(u8, @max(size, 1)) catch return null;
    return buf.ptr;
}

export fn proxy_on_vm_start(_: u32, _: u32) u32 {
    return 1;
}

export fn proxy_on_configure(root_id: u32, size: u32) u32 {
    return @intFromBool(D.onConfigure(root_id, size));
}

export fn proxy_on_context_create(id: u32, parent: u32) void {
    D.onContextCreate(id, parent);
}

export fn proxy_on_tick(root_id: u32) void {
    D.onTick(root_id);
}

export fn proxy_on_request_headers(id: u32, _: u32, end_of_stream: u32) u32 {
    return @backingInt(D.onRequestHeaders(id, end_of_stream != 0));
}

export fn proxy_on_request_body(id: u32, len: u32, end_of_stream: u32) u32 {
    return @backingInt(D.onRequestBody(id, len, end_of_stream != 0));
}

export fn proxy_on_request_trailers(id: u32, _: u32) u32 {
    return @backingInt(D.onRequestTrailers(id));
}

export fn proxy_on_response_headers(id: u32, _: u32, end_of_stream: u32) u32 {
    return @backingInt(D.onResponseHeaders(id, end_of_stream != 0));
}

export fn proxy_on_response_body(id: u32, len: u32, end_of_stream: u32) u32 {
    return @backingInt(D.onResponseBody(id, len, end_of_stream != 0));
}

export fn proxy_on_response_trailers(id: u32, _: u32) u32 {
    return @backingInt(D.onResponseTrailers(id));
}

export fn proxy_on_http_call_response(root_id: u32, token: u32, num_headers: u32, body_size: u32, _: u32) void {
    D.onHttpCallResponse(root_id, token, num_headers, body_size);
}

export fn proxy_on_log(id: u32) void {
    D.onLog(id);
}

export fn proxy_on_done(id: u32) u32 {
    return @intFromBool(D.onDone(id));
}

export fn proxy_on_delete(id: u32) void {
    D.onDelete(id);
}
