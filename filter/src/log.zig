//! The filter's log lines, all prefixed `sp-cache: `, at the configured level (plugin config
//! `log_level`). Formatting failures truncate; logging never fails a request.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const config = @import("config.zig");

/// The level below which lines are dropped (set at configure).
pub var level: config.LogLevel = .info;

/// True when lines at `l` are written.
pub fn enabled(l: config.LogLevel) bool {
    return @backingInt(l) >= @backingInt(level);
}

fn write(l: config.LogLevel, comptime fmt: []const u8, args: anytype) void {
    if (!enabled(l)) return;
    var buf: [1024]u8 = undefined;
    const msg = std.fmt.bufPrint(&buf, "sp-cache: " ++ fmt, args) catch buf[0..];
    host.log(@fromBackingInt(@intCast(@backingInt(l))), msg);
}

pub fn debug(comptime fmt: []const u8, args: anytype) void {
    write(.debug, fmt, args);
}

pub fn info(comptime fmt: []const u8, args: anytype) void {
    write(.info, fmt, args);
}

pub fn warn(comptime fmt: []const u8, args: anytype) void {
    write(.warn, fmt, args);
}

pub fn err(comptime fmt: []const u8, args: anytype) void {
    write(.@"error", fmt, args);
}
