//! The Zig side of the contract tests: the golden files in filter/testdata (written by
//! filter/testdata/make_golden.py with opentelemetry-proto) checked byte for byte against the
//! filter's fingerprint, encoder, decoder, signature, variant hash and replay checks.
//! Imported by tests.zig (module root filter/, so that @embedFile reaches testdata/).
const std = @import("std");
const fingerprint = @import("src/fingerprint.zig");
const entry = @import("src/entry.zig");
const protocol = @import("src/protocol.zig");
const vary = @import("src/http/vary.zig");
const headers_mod = @import("src/headers.zig");

const Pair = entry.Pair;
const Value = std.json.Value;

fn str(v: Value, key: []const u8) []const u8 {
    return v.object.get(key).?.string;
}

fn int(comptime T: type, v: Value, key: []const u8) T {
    return @intCast(v.object.get(key).?.integer);
}

fn unhex(a: std.mem.Allocator, hex: []const u8) ![]u8 {
    const out = try a.alloc(u8, hex.len / 2);
    return std.fmt.hexToBytes(out, hex);
}

fn toHex(a: std.mem.Allocator, bytes: []const u8) ![]u8 {
    const out = try a.alloc(u8, bytes.len * 2);
    for (bytes, 0..) |b, i| _ = try std.fmt.bufPrint(out[i * 2 ..][0..2], "{x:0>2}", .{b});
    return out;
}

/// `[name, value_hex]` pairs; with `name_hex`, `[name_hex, value_hex]`.
fn pairs(a: std.mem.Allocator, list: Value, name_hex: bool) ![]Pair {
    const items = list.array.items;
    const out = try a.alloc(Pair, items.len);
    for (items, out) |item, *p| {
        const name = item.array.items[0].string;
        p.* = .{ .name = if (name_hex) try unhex(a, name) else name, .value = try unhex(a, item.array.items[1].string) };
    }
    return out;
}

fn entryOf(a: std.mem.Allocator, v: Value) !entry.Entry {
    return .{
        .key = str(v, "key"),
        .variant = str(v, "variant"),
        .status = int(u16, v, "status"),
        .request_time_ms = int(u64, v, "request_time_ms"),
        .response_time_ms = int(u64, v, "response_time_ms"),
        .headers = try pairs(a, v.object.get("headers").?, false),
        .body = try unhex(a, str(v, "body_hex")),
        .signature = str(v, "signature"),
    };
}

fn parse(a: std.mem.Allocator, comptime file: []const u8) !Value {
    return std.json.parseFromSliceLeaky(Value, a, @embedFile(file), .{});
}

test "fingerprint golden vectors (testdata/fingerprint_vectors.json)" {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    const doc = try parse(a, "testdata/fingerprint_vectors.json");
    try std.testing.expectEqualStrings(fingerprint.version_tag, str(doc, "version_tag"));
    const vectors = doc.object.get("vectors").?.array.items;
    try std.testing.expect(vectors.len >= 12);
    for (vectors) |v| {
        const chunk = try unhex(a, str(v, "body_hex"));
        const body = try a.alloc(u8, chunk.len * int(usize, v, "body_repeat"));
        for (0..int(usize, v, "body_repeat")) |i| @memcpy(body[i * chunk.len ..][0..chunk.len], chunk);
        const got = fingerprint.compute(str(v, "method"), str(v, "scheme"), try unhex(a, str(v, "authority_hex")), try unhex(a, str(v, "path_hex")), body);
        std.testing.expectEqualStrings(str(v, "digest"), &got) catch |e| {
            std.debug.print("vector {s} failed\n", .{str(v, "name")});
            return e;
        };
    }
}

/// Envelope and request of protocol_golden.json; the request headers grouped as the filter does.
fn goldenCall(a: std.mem.Allocator, doc: Value, span: Value) !struct { protocol.Envelope, protocol.Request } {
    const env = doc.object.get("envelope").?;
    var e: protocol.Envelope = .{
        .service_name = str(env, "service_name"),
        .scope_name = str(env, "scope_name"),
        .scope_version = str(env, "scope_version"),
        .trace_id = undefined,
        .span_id = undefined,
        .parent_span_id = undefined,
        .kind = @fromBackingInt(@intCast(int(u32, env, "kind"))),
        .start_time_unix_nano = int(u64, env, "start_time_unix_nano"),
        .end_time_unix_nano = int(u64, env, "end_time_unix_nano"),
    };
    _ = try std.fmt.hexToBytes(&e.trace_id, str(env, "trace_id_hex"));
    var parent: [8]u8 = undefined;
    _ = try std.fmt.hexToBytes(&parent, str(env, "parent_span_id_hex"));
    e.parent_span_id = parent;
    _ = try std.fmt.hexToBytes(&e.span_id, str(span, "span_id_hex"));
    const r = doc.object.get("request").?;
    const req: protocol.Request = .{
        .method = str(r, "method"),
        .scheme = str(r, "scheme"),
        .path = try unhex(a, str(r, "path_hex")),
        .authority = try unhex(a, str(r, "authority_hex")),
        .headers = try entry.groupHeaders(a, try pairs(a, r.object.get("headers").?, false)),
        .body = try unhex(a, str(r, "body_hex")),
        .direction = str(r, "direction"),
        .session_id = try unhex(a, str(r, "session_id_hex")),
        .key = str(r, "key"),
    };
    return .{ e, req };
}

fn expectEncoded(a: std.mem.Allocator, want_hex: []const u8, env: *const protocol.Envelope, req: *const protocol.Request, call: protocol.Call) !void {
    const got = try protocol.encode(std.testing.allocator, env, req, call);
    defer std.testing.allocator.free(got);
    try std.testing.expectEqualStrings(want_hex, try toHex(a, got));
}

test "protocol golden bytes (testdata/protocol_golden.json, made with opentelemetry-proto)" {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    const doc = try parse(a, "testdata/protocol_golden.json");
    const spans = doc.object.get("spans").?;
    const key = str(doc, "signing_key");

    // the request key is the fingerprint of the request
    const r = doc.object.get("request").?;
    const want_key = fingerprint.compute(str(r, "method"), str(r, "scheme"), try unhex(a, str(r, "authority_hex")), try unhex(a, str(r, "path_hex")), try unhex(a, str(r, "body_hex")));
    try std.testing.expectEqualStrings(&want_key, str(r, "key"));

    const lookup = spans.object.get("lookup").?;
    const lc = try goldenCall(a, doc, lookup);
    try expectEncoded(a, str(lookup, "hex"), &lc[0], &lc[1], .inject);

    const store = spans.object.get("store").?;
    const sc = try goldenCall(a, doc, store);
    const stored = try entryOf(a, store.object.get("entry").?);
    try std.testing.expectEqualStrings(stored.signature, &entry.signatureHex(key, &stored));
    try std.testing.expect(entry.verify(key, &stored));
    try expectEncoded(a, str(store, "hex"), &sc[0], &sc[1], .{ .extract = .{ .entry = &stored, .retain_seconds = int(u64, store, "retain_seconds") } });

    const inval = spans.object.get("invalidate").?;
    const ic = try goldenCall(a, doc, inval);
    const key_items = inval.object.get("keys").?.array.items;
    const keys = try a.alloc([]const u8, key_items.len);
    for (key_items, keys) |k, *out| out.* = k.string;
    try expectEncoded(a, str(inval, "hex"), &ic[0], &ic[1], .{ .invalidate = keys });
}

test "golden lookup answer: every candidate decodes, verifies and validates as expected" {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    const doc = try parse(a, "testdata/protocol_golden.json");
    const key = str(doc, "signing_key");
    const ans_doc = doc.object.get("lookup_answer").?;
    var answer = try protocol.decodeLookupAnswer(std.testing.allocator, try unhex(a, str(ans_doc, "hex")));
    defer answer.deinit(std.testing.allocator);
    const want = ans_doc.object.get("candidates").?.array.items;
    try std.testing.expectEqual(want.len, answer.candidates.len);
    for (want, answer.candidates) |w, c| {
        const got = c.entry;
        const exp = try entryOf(a, w);
        try entry.expectEqualEntries(&exp, &got);
        try std.testing.expectEqual(w.object.get("verifies").?.bool, entry.verify(key, &got));
        const violation = entry.validateForReplay(&got);
        switch (w.object.get("violation").?) {
            .null => try std.testing.expectEqual(@as(?entry.Violation, null), violation),
            .string => |s| try std.testing.expectEqualStrings(s, @tagName(violation.?)),
            else => return error.TestUnexpectedResult,
        }
    }
}

const Slice = struct {
    s: []const u8,
    fn slice(self: Slice) []const u8 {
        return self.s;
    }
};

test "golden variant-hash vectors (filter/src/http/vary.zig)" {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    const doc = try parse(a, "testdata/protocol_golden.json");
    for (doc.object.get("variant_vectors").?.array.items) |v| {
        const name_items = v.object.get("names").?.array.items;
        const vary_lines = try a.alloc(headers_mod.Pair, name_items.len);
        for (name_items, vary_lines) |n, *out| out.* = .{ .name = "vary", .value = n.string };
        const names = vary.VaryNames.parse(vary_lines);
        const digest = std.fmt.bytesToHex(vary.variantHash(&names, try pairs(a, v.object.get("request_headers").?, false)), .lower);
        const variant = Slice{ .s = if (name_items.len == 0) "" else &digest };
        std.testing.expectEqualStrings(str(v, "variant"), variant.slice()) catch |e| {
            std.debug.print("variant vector {s} failed\n", .{str(v, "name")});
            return e;
        };
    }
}

test "golden replay-validation vectors" {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const a = arena.allocator();
    const doc = try parse(a, "testdata/protocol_golden.json");
    for (doc.object.get("replay_vectors").?.array.items) |v| {
        const e: entry.Entry = .{
            .key = "",
            .status = int(u16, v, "status"),
            .request_time_ms = 0,
            .response_time_ms = 0,
            .headers = try pairs(a, v.object.get("headers_hex").?, true),
            .body = try unhex(a, str(v, "body_hex")),
        };
        const got: []const u8 = if (entry.validateForReplay(&e)) |viol| @tagName(viol) else "null";
        const want: []const u8 = switch (v.object.get("violation").?) {
            .string => |s| s,
            else => "null",
        };
        std.testing.expectEqualStrings(want, got) catch |err| {
            std.debug.print("replay vector {s} failed\n", .{str(v, "name")});
            return err;
        };
    }
}
