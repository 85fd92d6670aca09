//! Local replies built from a stored entry: a full response (RFC 9111 §4: the stored status,
//! fields and content, with `Age`, RFC 9111 §5.1) or a 304 to a client's matching conditional
//! (RFC 9111 §4.3.2, the fields of RFC 9110 §15.4.5). Every entry passed here has passed replay
//! validation (entry.validateForReplay), whatever tier it came from.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const headers = @import("headers.zig");
const entry = @import("entry.zig");
const conditional = @import("http/conditional.zig");
const freshness = @import("http/freshness.zig");

const Pair = headers.Pair;
const gpa = host.gpa;

/// What to send.
pub const Kind = enum { full, not_modified };

/// Fields a replayed response never carries as stored: Envoy sets the framing of a local reply,
/// the Age is recomputed, and `x-sp-cache` is ours.
fn dropped(name: []const u8) bool {
    return std.ascii.eqlIgnoreCase(name, "content-length") or std.ascii.eqlIgnoreCase(name, "age") or
        std.ascii.eqlIgnoreCase(name, "x-sp-cache");
}

/// The header map of `e` as a reply of `kind`: stored fields (all, or those of a 304), then
/// `Age: <current age>` and `x-sp-cache`; `status`, when given, first as `:status`. Caller
/// frees with `gpa`.
fn replyMap(e: *const entry.Entry, kind: Kind, current_age_ms: u64, cache_header: []const u8, status: ?[]const u8, length: ?[]const u8) error{OutOfMemory}![]u8 {
    var list: std.ArrayList(Pair) = .empty;
    defer list.deinit(gpa);
    if (status) |st| try list.append(gpa, .{ .name = ":status", .value = st });
    const source: []Pair = switch (kind) {
        .full => @constCast(e.headers),
        .not_modified => try conditional.notModifiedFields(gpa, e.headers),
    };
    defer if (kind == .not_modified) gpa.free(source);
    for (source) |p| if (!dropped(p.name)) try list.append(gpa, p);
    if (length) |l| try list.append(gpa, .{ .name = "content-length", .value = l });
    var age_buf: [16]u8 = undefined;
    const age = std.fmt.bufPrint(&age_buf, "{d}", .{freshness.ageHeaderSeconds(current_age_ms)}) catch "0";
    try list.append(gpa, .{ .name = "age", .value = age });
    try list.append(gpa, .{ .name = "x-sp-cache", .value = cache_header });
    return headers.encodeMap(gpa, list.items);
}

/// The header map a prepared L1 entry keeps (prepared.zig): `e`'s fields minus those a reply
/// never carries as stored. Caller frees with `gpa`.
pub fn storedMap(e: *const entry.Entry) error{OutOfMemory}![]u8 {
    var list: std.ArrayList(Pair) = .empty;
    defer list.deinit(gpa);
    for (e.headers) |p| if (!dropped(p.name)) try list.append(gpa, p);
    return headers.encodeMap(gpa, list.items);
}

/// Sends a prepared entry (its status, stored header map and body) as a local reply, with
/// `Age` and `x-sp-cache` added to the map.
pub fn sendPrepared(status: u16, map: []const u8, body: []const u8, current_age_ms: u64, cache_header: []const u8, details: []const u8) (host.Error || error{ OutOfMemory, Malformed })!void {
    var age_buf: [16]u8 = undefined;
    const age = std.fmt.bufPrint(&age_buf, "{d}", .{freshness.ageHeaderSeconds(current_age_ms)}) catch "0";
    const extra = [_]Pair{ .{ .name = "age", .value = age }, .{ .name = "x-sp-cache", .value = cache_header } };
    const full_map = try headers.appendToMap(gpa, map, &extra);
    defer gpa.free(full_map);
    try host.sendLocalResponse(status, details, body, full_map);
}

/// Sends `e` as a local reply with `x-sp-cache: <cache_header>` and `Age: <current age>`.
/// Errors: the host refused the reply (the caller fails open) or no memory.
pub fn send(e: *const entry.Entry, kind: Kind, current_age_ms: u64, cache_header: []const u8, details: []const u8) (host.Error || error{OutOfMemory})!void {
    const map = try replyMap(e, kind, current_age_ms, cache_header, null, null);
    defer gpa.free(map);
    switch (kind) {
        .full => try host.sendLocalResponse(e.status, details, e.body, map),
        .not_modified => try host.sendLocalResponse(304, details, "", map),
    }
}

/// Turns the upstream's response headers into `e`'s in place, for a response that carries no
/// body to the client (an empty entry, or a HEAD request). A local reply sent from the response
/// path would not pass this filter again (Envoy 1.40), so Envoy's dropping of Content-Type and
/// of a HEAD reply's length could not be undone: rewriting keeps every stored field.
pub fn rewrite(e: *const entry.Entry, kind: Kind, current_age_ms: u64, cache_header: []const u8) (host.Error || error{OutOfMemory})!void {
    var status_buf: [3]u8 = undefined;
    const status = std.fmt.bufPrint(&status_buf, "{d}", .{if (kind == .not_modified) 304 else e.status}) catch unreachable;
    var len_buf: [20]u8 = undefined;
    const length: ?[]const u8 = if (kind == .full) std.fmt.bufPrint(&len_buf, "{d}", .{e.body.len}) catch unreachable else null;
    const map = try replyMap(e, kind, current_age_ms, cache_header, status, length);
    defer gpa.free(map);
    try host.setHeaderMapPairs(.http_response_headers, map);
}

/// Sends a 504 for only-if-cached with nothing usable stored (RFC 9111 §5.2.1.7).
pub fn gatewayTimeout(cache_header: []const u8) (host.Error || error{OutOfMemory})!void {
    const pairs = [_]Pair{.{ .name = "x-sp-cache", .value = cache_header }};
    const map = try headers.encodeMap(gpa, &pairs);
    defer gpa.free(map);
    try host.sendLocalResponse(504, "sp_cache_only_if_cached", "", map);
}
