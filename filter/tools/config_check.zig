//! Reads one plugin configuration per line (JSON) on stdin and prints, per line, `ok` or
//! `error <key> <reason>` as filter/src/config.zig parses it. tests/test_pluginconfig.py feeds it
//! the same boundary configurations as the Python validator to prove the two agree.
const std = @import("std");
const config = @import("config");

pub fn main(init: std.process.Init) !void {
    var in_buf: [1 << 16]u8 = undefined;
    var out_buf: [4096]u8 = undefined;
    var stdin = std.Io.File.stdin().reader(init.io, &in_buf);
    var stdout = std.Io.File.stdout().writer(init.io, &out_buf);
    const w = &stdout.interface;
    while (try stdin.interface.takeDelimiter('\n')) |line| {
        var diag: config.Diagnostic = .{};
        if (config.parse(init.gpa, line, &diag)) |parsed| {
            var p = parsed;
            p.deinit();
            try w.writeAll("ok\n");
        } else |e| {
            try w.print("error {s} {s} ({s})\n", .{ if (diag.key().len > 0) diag.key() else "-", diag.reason, @errorName(e) });
        }
    }
    try w.flush();
}
