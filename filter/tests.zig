//! Test root for the filter's pure modules (no host imports) and the shared golden vectors.
//! Run: `python -m ziglang test filter/tests.zig` (module root is filter/ so that
//! @embedFile can reach filter/testdata/).
const std = @import("std");
const fingerprint = @import("src/fingerprint.zig");
const headers = @import("src/headers.zig");

test {
    _ = @import("src/headers.zig");
    _ = @import("src/config.zig");
    _ = @import("src/fingerprint.zig");
    _ = @import("src/policy.zig");
    _ = @import("src/protocol.zig");
    _ = @import("src/trace.zig");
}

fn lessThan(_: void, x: []const u8, y: []const u8) bool {
    return std.mem.order(u8, x, y) == .lt;
}

test "fingerprint golden vectors (testdata/fingerprint_vectors.json)" {
    const gpa = std.testing.allocator;
    var arena = std.heap.ArenaAllocator.init(gpa);
    defer arena.deinit();
    const a = arena.allocator();
    const doc = try std.json.parseFromSliceLeaky(std.json.Value, a, @embedFile("testdata/fingerprint_vectors.json"), .{});
    const vectors = doc.object.get("vectors").?.array.items;
    try std.testing.expect(vectors.len >= 10);
    for (vectors) |v| {
        const o = v.object;
        var pairs: std.ArrayList(headers.Pair) = .empty;
        var hit = o.get("headers").?.object.iterator();
        while (hit.next()) |e| {
            for (e.value_ptr.array.items) |val| try pairs.append(a, .{ .name = e.key_ptr.*, .value = val.string });
        }
        var vary: std.ArrayList([]const u8) = .empty;
        for (o.get("vary").?.array.items) |n| {
            const lower = try std.ascii.allocLowerString(a, n.string);
            if (!headers.inList(vary.items, lower)) try vary.append(a, lower);
        }
        std.mem.sort([]const u8, vary.items, {}, lessThan);
        const body_hex = o.get("body_hex").?.string;
        const body = try a.alloc(u8, body_hex.len / 2);
        _ = try std.fmt.hexToBytes(body, body_hex);
        const got = fingerprint.compute(o.get("method").?.string, o.get("authority").?.string, o.get("path").?.string, pairs.items, vary.items, body);
        std.testing.expectEqualStrings(o.get("digest").?.string, &got) catch |e| {
            std.debug.print("vector {s} failed\n", .{o.get("name").?.string});
            return e;
        };
    }
}

const protocol = @import("src/protocol.zig");

test "protocol golden bytes (testdata/protocol_golden.json, made with opentelemetry-proto)" {
    const gpa = std.testing.allocator;
    var arena = std.heap.ArenaAllocator.init(gpa);
    defer arena.deinit();
    const a = arena.allocator();
    const doc = (try std.json.parseFromSliceLeaky(std.json.Value, a, @embedFile("testdata/protocol_golden.json"), .{})).object;
    const want_hex = doc.get("store_span_hex").?.string;
    const got = try protocol.encode(gpa, &protocol.golden_span);
    defer gpa.free(got);
    const got_hex = try a.alloc(u8, got.len * 2);
    for (got, 0..) |b, i| _ = try std.fmt.bufPrint(got_hex[i * 2 ..][0..2], "{x:0>2}", .{b});
    try std.testing.expectEqualStrings(want_hex, got_hex);

    const hit_hex = doc.get("hit_answer_hex").?.string;
    const hit_bytes = try a.alloc(u8, hit_hex.len / 2);
    _ = try std.fmt.hexToBytes(hit_bytes, hit_hex);
    var hit = try protocol.decodeHit(gpa, hit_bytes);
    defer hit.deinit(gpa);
    const expect = doc.get("hit_expect").?.object;
    try std.testing.expectEqual(@as(u32, @intCast(expect.get("status").?.integer)), hit.status);
    try std.testing.expectEqualStrings(expect.get("body").?.string, hit.body);
    try std.testing.expectEqual(@as(u64, @intCast(expect.get("age_seconds").?.integer)), hit.age_seconds);
    const hs = expect.get("headers").?.array.items;
    try std.testing.expectEqual(hs.len, hit.headers.len);
    for (hs, hit.headers) |want, h| {
        try std.testing.expectEqualStrings(want.array.items[0].string, h.name);
        try std.testing.expectEqualStrings(want.array.items[1].string, h.value);
    }
}
