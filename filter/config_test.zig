//! filter/config.schema.json is the plugin-config contract; this test fails when the Zig parser's
//! keys, defaults, integer bounds or allowed values drift from it (tests/test_pluginconfig.py does
//! the same from the Python side, and checks both parsers agree on boundary values).
const std = @import("std");
const config = @import("src/config.zig");

const schema_json = @embedFile("config.schema.json");
const t = std.testing;

fn jsonInt(v: std.json.Value) i64 {
    return switch (v) {
        .integer => |i| i,
        .float => |f| @intFromFloat(f),
        else => -1,
    };
}

test "every schema key is a Config field with the same default, bounds and values" {
    var arena = std.heap.ArenaAllocator.init(t.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    const schema = (try std.json.parseFromSliceLeaky(std.json.Value, a, schema_json, .{})).object;
    const props = schema.get("properties").?.object;
    const dflt: config.Config = .{};

    // same key set
    try t.expectEqual(props.count(), std.meta.fieldNames(config.Config).len);
    inline for (comptime std.meta.fieldNames(config.Config)) |name| {
        const F = @FieldType(config.Config, name);
        const prop = (props.get(name) orelse {
            std.debug.print("Config field {s} is not in the schema\n", .{name});
            return error.TestUnexpectedResult;
        }).object;
        const want = prop.get("default").?;
        const have = @field(dflt, name);
        errdefer std.debug.print("key {s} disagrees with the schema\n", .{name});
        switch (F) {
            bool => try t.expectEqual(want.bool, have),
            u32 => {
                try t.expectEqual(want.integer, @as(i64, have));
                const b = for (config.int_bounds) |b| {
                    if (std.mem.eql(u8, b.key, name)) break b;
                } else return error.TestUnexpectedResult;
                try t.expectEqual(jsonInt(prop.get("minimum").?), @as(i64, b.min));
                try t.expectEqual(jsonInt(prop.get("maximum").?), @as(i64, b.max));
            },
            []const u8 => try t.expectEqualStrings(want.string, have),
            []const config.Method => {
                try t.expectEqual(want.array.items.len, have.len);
                for (want.array.items, have) |w, h| try t.expectEqualStrings(w.string, @tagName(h));
                const allowed = prop.get("items").?.object.get("enum").?.array.items;
                try t.expectEqual(allowed.len, std.enums.values(config.Method).len);
                for (allowed, std.enums.values(config.Method)) |w, m| try t.expectEqualStrings(w.string, @tagName(m));
            },
            ?[]const u16 => {
                try t.expectEqualStrings("all", want.string);
                try t.expect(have == null);
            },
            []const []const u8 => {
                try t.expectEqual(want.array.items.len, have.len);
                for (want.array.items, have) |w, h| try t.expectEqualStrings(w.string, h);
            },
            else => {
                // enums: default and the allowed values, in order
                try t.expectEqualStrings(want.string, @tagName(have));
                const allowed = prop.get("enum").?.array.items;
                const values = std.enums.values(F);
                try t.expectEqual(allowed.len, values.len);
                for (allowed, values) |w, v| try t.expectEqualStrings(w.string, @tagName(v));
            },
        }
    }
    // no bound without a key
    for (config.int_bounds) |b| try t.expect(props.get(b.key) != null);
}
