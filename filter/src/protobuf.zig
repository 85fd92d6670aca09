//! The protobuf wire format (https://protobuf.dev/programming-guides/encoding/) as far as the
//! OTLP `TracesData` subset of docs/protocol.md needs it: an exact-size writer, a bounds-checked
//! field reader, and a validator that accepts a message only when the reference protobuf decoder
//! (opentelemetry-proto on upb) would, for the message types of trace.proto, common.proto and
//! resource.proto. Pure: no allocation, no host calls, total on any input.
const std = @import("std");

/// Wire type of a varint field.
pub const wt_varint = 0;
/// Wire type of a fixed 64-bit field.
pub const wt_fixed64 = 1;
/// Wire type of a length-delimited field (bytes, string, nested message, packed).
pub const wt_len = 2;
/// Wire type of a fixed 32-bit field.
pub const wt_fixed32 = 5;

/// Bytes a varint of `v` takes on the wire (1..10).
pub fn varintSize(v: u64) usize {
    var n: usize = 1;
    var x = v >> 7;
    while (x != 0) : (x >>= 7) n += 1;
    return n;
}

/// Size of a length-delimited field of `len` payload bytes with a one-byte tag (field number < 16).
pub fn lenField(len: usize) usize {
    return 1 + varintSize(len) + len;
}

/// Writes into a buffer sized exactly beforehand; every write is bounds-checked by slicing.
pub const Writer = struct {
    buf: []u8,
    pos: usize = 0,

    /// Appends a base-128 varint.
    pub fn varint(w: *Writer, v: u64) void {
        var x = v;
        while (x >= 0x80) : (x >>= 7) {
            w.buf[w.pos] = @as(u8, @truncate(x)) | 0x80;
            w.pos += 1;
        }
        w.buf[w.pos] = @truncate(x);
        w.pos += 1;
    }

    /// Appends a field key.
    pub fn tag(w: *Writer, field: u32, wt: u3) void {
        w.varint((@as(u64, field) << 3) | wt);
    }

    /// Appends raw bytes.
    pub fn raw(w: *Writer, b: []const u8) void {
        @memcpy(w.buf[w.pos..][0..b.len], b);
        w.pos += b.len;
    }

    /// Appends raw bytes with ASCII letters lower-cased.
    pub fn rawLower(w: *Writer, b: []const u8) void {
        _ = std.ascii.lowerString(w.buf[w.pos..][0..b.len], b);
        w.pos += b.len;
    }

    /// Appends the key and length of a length-delimited field whose payload follows.
    pub fn header(w: *Writer, field: u32, len: usize) void {
        w.tag(field, wt_len);
        w.varint(len);
    }

    /// Appends a whole length-delimited field.
    pub fn bytes(w: *Writer, field: u32, b: []const u8) void {
        w.header(field, b.len);
        w.raw(b);
    }

    /// Appends a fixed64 field (little-endian).
    pub fn fixed64(w: *Writer, field: u32, v: u64) void {
        w.tag(field, wt_fixed64);
        std.mem.writeInt(u64, w.buf[w.pos..][0..8], v, .little);
        w.pos += 8;
    }

    /// Appends a varint field.
    pub fn varintField(w: *Writer, field: u32, v: u64) void {
        w.tag(field, wt_varint);
        w.varint(v);
    }
};

/// Errors of reading protobuf bytes: a length or varint runs past the end (Truncated), or the
/// bytes cannot be a message of the expected type (Malformed).
pub const Error = error{ Truncated, Malformed };

/// The value of one field as read from the wire.
pub const FieldValue = union(enum) { varint: u64, fixed64: u64, fixed32: u32, bytes: []const u8 };

/// One field: its number and value.
pub const Field = struct { num: u64, value: FieldValue };

/// Bounds-checked protobuf field reader over one message's bytes.
pub const Reader = struct {
    buf: []const u8,
    pos: usize = 0,

    fn varint(r: *Reader) Error!u64 {
        var v: u64 = 0;
        var shift: u7 = 0;
        while (true) {
            if (r.pos >= r.buf.len) return error.Truncated;
            const b = r.buf[r.pos];
            r.pos += 1;
            if (shift == 63 and b > 1) return error.Malformed;
            v |= @as(u64, b & 0x7f) << @intCast(shift);
            if (b & 0x80 == 0) return v;
            shift += 7;
            if (shift > 63) return error.Malformed;
        }
    }

    /// Next field, or null at the end of the message.
    pub fn next(r: *Reader) Error!?Field {
        if (r.pos >= r.buf.len) return null;
        const key = try r.varint();
        const num = key >> 3;
        if (num == 0 or num > std.math.maxInt(u29)) return error.Malformed;
        const value: FieldValue = switch (@as(u3, @truncate(key))) {
            wt_varint => .{ .varint = try r.varint() },
            wt_fixed64 => blk: {
                if (r.buf.len - r.pos < 8) return error.Truncated;
                const v = std.mem.readInt(u64, r.buf[r.pos..][0..8], .little);
                r.pos += 8;
                break :blk .{ .fixed64 = v };
            },
            wt_fixed32 => blk: {
                if (r.buf.len - r.pos < 4) return error.Truncated;
                const v = std.mem.readInt(u32, r.buf[r.pos..][0..4], .little);
                r.pos += 4;
                break :blk .{ .fixed32 = v };
            },
            wt_len => blk: {
                const len = try r.varint();
                if (len > r.buf.len - r.pos) return error.Truncated;
                const b = r.buf[r.pos..][0..@intCast(len)];
                r.pos += @intCast(len);
                break :blk .{ .bytes = b };
            },
            else => return error.Malformed, // groups (3, 4) and the unused 6, 7
        };
        return .{ .num = num, .value = value };
    }
};

/// Message types of trace.proto / common.proto / resource.proto that a lookup answer may hold.
pub const MsgKind = enum {
    traces_data,
    resource_spans,
    resource,
    scope_spans,
    scope,
    span,
    event,
    link,
    status,
    key_value,
    any_value,
    array_value,
    kv_list,
    entity_ref,
};

/// How a length-delimited field of a known message must be read: a nested message, a UTF-8
/// string (proto3 refuses invalid UTF-8 in `string` fields), or opaque bytes.
const FieldKind = union(enum) { message: MsgKind, string, bytes };

fn fieldKind(kind: MsgKind, num: u64) FieldKind {
    return switch (kind) {
        .traces_data => if (num == 1) .{ .message = .resource_spans } else .bytes,
        .resource_spans => switch (num) {
            1 => .{ .message = .resource },
            2 => .{ .message = .scope_spans },
            3 => .string,
            else => .bytes,
        },
        .resource => switch (num) {
            1 => .{ .message = .key_value },
            3 => .{ .message = .entity_ref },
            else => .bytes,
        },
        .entity_ref => switch (num) {
            1, 2, 3, 4 => .string, // schema_url, type, id_keys, description_keys
            else => .bytes,
        },
        .scope_spans => switch (num) {
            1 => .{ .message = .scope },
            2 => .{ .message = .span },
            3 => .string,
            else => .bytes,
        },
        .scope => switch (num) {
            1, 2 => .string,
            3 => .{ .message = .key_value },
            else => .bytes,
        },
        .span => switch (num) {
            3, 5 => .string,
            9 => .{ .message = .key_value },
            11 => .{ .message = .event },
            13 => .{ .message = .link },
            15 => .{ .message = .status },
            else => .bytes,
        },
        .event => switch (num) {
            2 => .string,
            3 => .{ .message = .key_value },
            else => .bytes,
        },
        .link => switch (num) {
            3 => .string,
            4 => .{ .message = .key_value },
            else => .bytes,
        },
        .status => if (num == 2) .string else .bytes,
        .key_value => switch (num) {
            1 => .string,
            2 => .{ .message = .any_value },
            else => .bytes,
        },
        .any_value => switch (num) {
            1 => .string,
            5 => .{ .message = .array_value },
            6 => .{ .message = .kv_list },
            else => .bytes,
        },
        .array_value => if (num == 1) .{ .message = .any_value } else .bytes,
        .kv_list => if (num == 1) .{ .message = .key_value } else .bytes,
    };
}

/// Deepest nesting accepted (AnyValue arrays can nest); deeper input is refused as Malformed.
pub const max_depth = 32;

/// Checks that `buf` is a well-formed `kind` message all the way down: every nested message of a
/// known field parses, every `string` field is UTF-8; unknown fields are skipped by wire type, as
/// protobuf does. With `opaque_spans`, the spans of a ScopeSpans are only framed, not entered
/// (the lookup-answer decoder validates each span on its own, so that one bad span spoils one
/// candidate only). `depth` is the nesting level of `buf` (0 for a TracesData).
pub fn validate(buf: []const u8, kind: MsgKind, depth: u32, opaque_spans: bool) Error!void {
    if (depth > max_depth) return error.Malformed;
    var r: Reader = .{ .buf = buf };
    while (try r.next()) |f| {
        // a known length-delimited field sent with another wire type is an unknown field to upb
        if (f.value != .bytes) continue;
        switch (fieldKind(kind, f.num)) {
            .message => |sub| {
                if (opaque_spans and sub == .span) continue;
                try validate(f.value.bytes, sub, depth + 1, opaque_spans);
            },
            .string => if (!std.unicode.utf8ValidateSlice(f.value.bytes)) return error.Malformed,
            .bytes => {},
        }
    }
}

test "varint sizes" {
    try std.testing.expectEqual(@as(usize, 1), varintSize(0));
    try std.testing.expectEqual(@as(usize, 1), varintSize(127));
    try std.testing.expectEqual(@as(usize, 2), varintSize(128));
    try std.testing.expectEqual(@as(usize, 10), varintSize(std.math.maxInt(u64)));
}

test "writer and reader agree" {
    var buf: [64]u8 = undefined;
    var w: Writer = .{ .buf = &buf };
    w.varintField(3, 300);
    w.bytes(1, "abc");
    w.fixed64(7, 0x0102030405060708);
    w.header(2, 2);
    w.rawLower("XY");
    var r: Reader = .{ .buf = buf[0..w.pos] };
    try std.testing.expectEqual(@as(u64, 300), (try r.next()).?.value.varint);
    try std.testing.expectEqualStrings("abc", (try r.next()).?.value.bytes);
    try std.testing.expectEqual(@as(u64, 0x0102030405060708), (try r.next()).?.value.fixed64);
    try std.testing.expectEqualStrings("xy", (try r.next()).?.value.bytes);
    try std.testing.expect((try r.next()) == null);
}

test "reader refuses overlong varints, groups and field 0" {
    var r: Reader = .{ .buf = "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02" };
    try std.testing.expectError(error.Malformed, r.next());
    r = .{ .buf = "\x0b" }; // field 1, start group
    try std.testing.expectError(error.Malformed, r.next());
    r = .{ .buf = "\x00\x00" };
    try std.testing.expectError(error.Malformed, r.next());
    r = .{ .buf = "\x0a\x05ab" };
    try std.testing.expectError(error.Truncated, r.next());
}

test "validate: invalid UTF-8 in a string; wrong wire types are unknown fields" {
    // Span{name: "\xff"}
    try std.testing.expectError(error.Malformed, validate("\x2a\x01\xff", .span, 0, false));
    // Span{attributes as varint 1, unknown field 20 as varint}: skipped, as upb does
    try validate("\x48\x01\xa0\x01\x01", .span, 0, false);
    // ScopeSpans{spans: Span{name: "\xff"}} passes with opaque spans only
    const ss = "\x12\x03\x2a\x01\xff";
    try std.testing.expectError(error.Malformed, validate(ss, .scope_spans, 0, false));
    try validate(ss, .scope_spans, 0, true);
}

test "validate bounds the nesting depth" {
    // AnyValue{array_value: ArrayValue{values: AnyValue{...}}} nested 10 deep: 20 levels
    var buf: [64]u8 = undefined;
    var len: usize = 0;
    for (0..10) |_| {
        std.mem.copyBackwards(u8, buf[4..][0..len], buf[0..len]);
        buf[0..4].* = .{ 0x2a, @intCast(len + 2), 0x0a, @intCast(len) };
        len += 4;
    }
    try validate(buf[0..len], .any_value, 0, false);
    try validate(buf[0..len], .any_value, max_depth - 20, false);
    try std.testing.expectError(error.Malformed, validate(buf[0..len], .any_value, max_depth - 19, false));
}
