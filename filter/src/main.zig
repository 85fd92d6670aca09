//! proxy-wasm ABI 0.2.1 entry points. Everything here forwards to filter.zig.
const std = @import("std");
const host = @import("hostcalls.zig");
const filter = @import("filter.zig");

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
    return @intFromBool(filter.onConfigure(root_id, size));
}

export fn proxy_on_context_create(id: u32, parent: u32) void {
    filter.onContextCreate(id, parent);
}

export fn proxy_on_request_headers(id: u32, _: u32, end_of_stream: u32) u32 {
    return @intFromEnum(filter.onRequestHeaders(id, end_of_stream != 0));
}

export fn proxy_on_request_body(id: u32, len: u32, end_of_stream: u32) u32 {
    return @intFromEnum(filter.onRequestBody(id, len, end_of_stream != 0));
}

export fn proxy_on_request_trailers(id: u32, _: u32) u32 {
    return @intFromEnum(filter.onRequestTrailers(id));
}

export fn proxy_on_response_headers(id: u32, _: u32, end_of_stream: u32) u32 {
    return @intFromEnum(filter.onResponseHeaders(id, end_of_stream != 0));
}

export fn proxy_on_response_body(id: u32, len: u32, end_of_stream: u32) u32 {
    return @intFromEnum(filter.onResponseBody(id, len, end_of_stream != 0));
}

export fn proxy_on_response_trailers(id: u32, _: u32) u32 {
    return @intFromEnum(filter.onResponseTrailers(id));
}

export fn proxy_on_http_call_response(id: u32, callout: u32, num_headers: u32, body_size: u32, _: u32) void {
    filter.onHttpCallResponse(id, callout, num_headers, body_size);
}

export fn proxy_on_log(id: u32) void {
    filter.onLog(id);
}

export fn proxy_on_done(id: u32) u32 {
    return @intFromBool(filter.onDone(id));
}

export fn proxy_on_delete(id: u32) void {
    filter.onDelete(id);
}
