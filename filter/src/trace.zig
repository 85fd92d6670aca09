//! W3C trace context (`traceparent`) parsing and formatting (pure).
const std = @import("std");

/// A parsed `traceparent`: version 00 layout.
pub const TraceParent = struct {
    trace_id: [16]u8,
    parent_id: [8]u8,
    flags: u8,
};

/// Parses `00-<32 hex>-<16 hex>-<2 hex>`; null when invalid or all-zero ids (W3C §3.2).
pub fn parse(s: []const u8) ?TraceParent {
    if (s.len < 55 or s[2] != '-' or s[35] != '-' or s[52] != '-') return null;
    if (s.len > 55 and s[55] != '-') return null;
    var version: [1]u8 = undefined;
    _ = std.fmt.hexToBytes(&version, s[0..2]) catch return null;
    if (version[0] == 0xff or (version[0] == 0 and s.len != 55)) return null;
    var tp: TraceParent = undefined;
    _ = std.fmt.hexToBytes(&tp.trace_id, s[3..35]) catch return null;
    _ = std.fmt.hexToBytes(&tp.parent_id, s[36..52]) catch return null;
    var flags: [1]u8 = undefined;
    _ = std.fmt.hexToBytes(&flags, s[53..55]) catch return null;
    for (s[0..55]) |ch| if (ch >= 'A' and ch <= 'F') return null;
    tp.flags = flags[0];
    if (std.mem.allEqual(u8, &tp.trace_id, 0) or std.mem.allEqual(u8, &tp.parent_id, 0)) return null;
    return tp;
}

/// Formats a version-00 `traceparent`.
pub fn format(trace_id: [16]u8, span_id: [8]u8, flags: u8) [55]u8 {
    var out: [55]u8 = undefined;
    @memcpy(out[0..3], "00-");
    out[3..35].* = std.fmt.bytesToHex(trace_id, .lower);
    out[35] = '-';
    out[36..52].* = std.fmt.bytesToHex(span_id, .lower);
    out[52] = '-';
    out[53..55].* = std.fmt.bytesToHex([1]u8{flags}, .lower);
    return out;
}

test "parse and format" {
    const s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const tp = parse(s).?;
    try std.testing.expectEqual(@as(u8, 1), tp.flags);
    try std.testing.expectEqualStrings(s, &format(tp.trace_id, tp.parent_id, tp.flags));
    try std.testing.expect(parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01") == null);
    try std.testing.expect(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0") == null);
    try std.testing.expect(parse("zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == null);
}
