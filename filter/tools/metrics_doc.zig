//! Writes the metrics table generated from filter/src/reason.zig to the path given as argument.
const std = @import("std");
const reason = @import("reason");

pub fn main(init: std.process.Init) !void {
    const args = try init.minimal.args.toSlice(init.arena.allocator());
    if (args.len != 2) return error.Usage;
    var buf: std.Io.Writer.Allocating = .init(init.gpa);
    defer buf.deinit();
    try reason.writeMarkdown(&buf.writer);
    try std.Io.Dir.cwd().writeFile(init.io, .{ .sub_path = args[1], .data = buf.written() });
}
