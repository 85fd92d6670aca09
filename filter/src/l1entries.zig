//! Entries in the L1 (l1.zig): read a key's slot, write verified entries into it (merged with
//! what it holds, prepared for the hit path: prepared.zig), and tombstone it on invalidation.
//! A slot is addressed by the request's key material (`fingerprint.material`).
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const config = @import("config.zig");
const policy = @import("policy.zig");
const entry = @import("entry.zig");
const prepared = @import("prepared.zig");
const session = @import("session.zig");
const reply = @import("reply.zig");
const l1 = @import("l1.zig");
const metrics = @import("metrics.zig");
const freshness = @import("http/freshness.zig");
const vary = @import("http/vary.zig");
const headers = @import("headers.zig");

const Entry = entry.Entry;
const Config = config.Config;
const gpa = host.gpa;
const m = &metrics.global;

/// A tag of the configuration keys a prepared entry's figures depend on (its lifetime: heuristic
/// freshness, default TTL, CDN-Cache-Control): entries prepared under another configuration take
/// the slow path, which recomputes them.
pub fn configTag(c: *const Config) u32 {
    var h = std.hash.Wyhash.init(0x5350_5031);
    h.update(std.mem.asBytes(&c.heuristic_freshness));
    h.update(std.mem.asBytes(&c.heuristic_max_seconds));
    h.update(std.mem.asBytes(&c.default_ttl_seconds));
    h.update(std.mem.asBytes(&c.cdn_cache_control));
    return @truncate(h.final());
}

/// Reads the slot of `material`: the prepared payload (full entries decoded on demand,
/// `session.full`) or, for a tombstone, its time. Null when the slot holds nothing of this key.
pub fn read(store: *l1.L1, material: []const u8) ?session.Found {
    var r = store.read(material);
    switch (r.state) {
        .empty, .other_key => {
            store.release(&r);
            return null;
        },
        .tombstone => {
            const at = r.invalidated_at_ms;
            store.release(&r);
            return .{ .invalidated_at_ms = at };
        },
        .set => return .{ .bytes = r.value.?, .payload = r.payload, .decoded = false },
    }
}

/// What a fresh hit needs of `e`, computed once (RFC 9111 §4.2); `map` is allocated (free it).
fn prepare(c: *const Config, tag: u32, e: *const Entry) error{OutOfMemory}!prepared.Fast {
    const d = policy.responseDirectives(c, e.headers);
    const resp_s: i64 = @intCast(e.response_time_ms / 1000);
    var coding = false;
    var it = headers.MemberIterator.init(e.headers, "content-encoding");
    while (it.next()) |v| {
        if (!std.ascii.eqlIgnoreCase(v, "identity")) coding = true;
    }
    return .{
        .status = e.status,
        .response_time_ms = e.response_time_ms,
        .initial_age_ms = freshness.initialAgeMs(freshness.parseAge(e.headers), freshness.dateValue(e.headers, resp_s), @intCast(e.request_time_ms), @intCast(e.response_time_ms)),
        .lifetime_s = policy.lifetime(c, e.status, e.headers, &d, resp_s),
        .cfg_tag = tag,
        .flags = .{
            .forbids_stale = d.forbidsStale(),
            .no_cache = d.no_cache,
            .has_vary = vary.VaryNames.parse(e.headers).slice().len > 0,
            .has_coding = coding,
            .has_validator = policy.hasValidator(e.headers),
        },
        .swr = d.stale_while_revalidate,
        .sie = d.stale_if_error,
        .map = try reply.storedMap(e),
        .body = e.body,
    };
}

/// Writes `entries` (merged with what the slot holds, prepared) to the L1; counts the outcome.
/// Returns whether the L1 now holds the entries.
pub fn write(store: *l1.L1, c: *const Config, tag: u32, material: []const u8, entries: []const Entry) bool {
    if (store.budget == 0 or entries.len == 0) return false;
    var r = store.read(material);
    defer store.release(&r);
    var old: []Entry = &.{};
    var old_set: ?@import("entry_set.zig").Set = null;
    defer if (old_set) |*s| s.deinit(gpa);
    var invalidated: u64 = 0;
    switch (r.state) {
        .set => if (prepared.decodeFull(gpa, r.payload)) |s| {
            old_set = s;
            old = s.entries;
        } else |_| {},
        .tombstone => invalidated = r.invalidated_at_ms,
        else => {},
    }
    const merged = session.merge(old, entries, c.max_variants, invalidated) catch return false;
    defer gpa.free(merged);
    if (merged.len == 0) return false;
    var fast: [entry.max_variants]prepared.Fast = undefined;
    var n: usize = 0;
    defer for (fast[0..n]) |f| gpa.free(f.map);
    for (merged) |*e| {
        fast[n] = prepare(c, tag, e) catch {
            m.event(.l1_insert_skipped, 1);
            return false;
        };
        n += 1;
    }
    const payload = prepared.encode(gpa, fast[0..n], merged) catch {
        m.event(.l1_insert_skipped, 1);
        return false;
    };
    defer gpa.free(payload);
    const before = store.evicted;
    const written = store.writeSet(&r, material, payload) == .written;
    m.event(if (written) .l1_insert else .l1_insert_skipped, 1);
    m.event(.l1_evicted, store.evicted - before);
    if (store.bytes()) |b| m.setL1Bytes(b);
    return written;
}

/// Writes a tombstone for `material` (RFC 9111 §4.4): no entry older than `now_ms` is served.
pub fn tombstone(store: *l1.L1, material: []const u8, now_ms: u64) void {
    if (store.budget == 0) return;
    var tries: u32 = 0;
    while (tries < 4) : (tries += 1) {
        var r = store.read(material);
        defer store.release(&r);
        if (store.writeTombstone(&r, material, now_ms) != .conflict) break;
    }
    if (store.bytes()) |b| m.setL1Bytes(b);
}
