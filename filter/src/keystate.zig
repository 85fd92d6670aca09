//! What one Envoy knows about a key while no entry answers it, shared by every worker through
//! shared data: `filling` (one request is fetching it; concurrent misses wait — request
//! coalescing, as Varnish's waiting list or nginx proxy_cache_lock), `stored` (the fetch ended
//! with a stored entry: waiters read it), `pass` (its last response was not storable: skip the
//! lookup until the mark expires — Varnish's hit-for-pass). A table of `slot_count` slots
//! (`sp_cache.ks.<i>`, slot from bits 32..63 of the key); a key that lands on another key's slot
//! replaces it, which only costs that key a coalescing or a pass. Every mark expires.
const std = @import("std");
const shared = @import("shared.zig");

/// Number of slots.
pub const slot_count: u32 = 4096;
const value_len = 64 + 1 + 8 + 8;

/// A 64-hex-character primary key.
pub const Key = [64]u8;

/// A key's mark.
pub const State = enum(u8) { filling = 1, pass = 2, stored = 3 };

/// The result of reading a key's slot.
pub const Read = struct {
    slot: u32,
    cas: u32 = 0,
    /// the key's live mark, null when none (never set, expired, or another key's)
    state: ?State = null,
    /// Unix ms the mark expires
    until_ms: u64 = 0,
    /// the worker that set it (random per VM)
    owner: u64 = 0,
};

/// Slot index of a key.
pub fn slotOf(key: *const Key) u32 {
    const v = std.fmt.parseInt(u32, key[8..16], 16) catch 0;
    return v % slot_count;
}

fn slotName(buf: *[32]u8, slot: u32) []const u8 {
    return std.fmt.bufPrint(buf, "sp_cache.ks.{d}", .{slot}) catch unreachable;
}

/// One worker's view of the key-state table.
pub const KeyStates = struct {
    store: shared.Store,
    /// this worker's id (random), recorded in its `filling` marks
    owner: u64,

    /// Reads the mark of `key` at time `now_ms`.
    pub fn read(ks: *KeyStates, key: *const Key, now_ms: u64) Read {
        var r: Read = .{ .slot = slotOf(key) };
        var name_buf: [32]u8 = undefined;
        const got = (ks.store.get(slotName(&name_buf, r.slot)) catch return r) orelse return r;
        defer ks.store.free(got);
        r.cas = got.cas;
        const v = got.value;
        if (v.len != value_len or !std.mem.eql(u8, v[0..64], key)) return r;
        const until = std.mem.readInt(u64, v[65..73], .little);
        if (until <= now_ms) return r;
        r.state = std.enums.fromInt(State, v[64]) orelse return r;
        r.until_ms = until;
        r.owner = std.mem.readInt(u64, v[73..81], .little);
        return r;
    }

    /// Takes the fill of `key` until `until_ms`, if `r` (a fresh read) shows nobody holds it.
    /// False when another worker won the race.
    pub fn claim(ks: *KeyStates, r: *const Read, key: *const Key, until_ms: u64) bool {
        if (r.state == .filling) return false;
        return ks.write(r.slot, r.cas, key, .filling, until_ms);
    }

    /// Sets `key`'s mark to `state` until `until_ms` (retrying over concurrent writes).
    pub fn mark(ks: *KeyStates, key: *const Key, state: State, until_ms: u64, now_ms: u64) void {
        var tries: u32 = 0;
        while (tries < 4) : (tries += 1) {
            const r = ks.read(key, now_ms);
            if (ks.write(r.slot, r.cas, key, state, until_ms)) return;
        }
    }

    /// Drops this worker's `filling` mark of `key` (a fetch that ended with nothing to share).
    pub fn abandon(ks: *KeyStates, key: *const Key, now_ms: u64) void {
        const r = ks.read(key, now_ms);
        if (r.state != .filling or r.owner != ks.owner) return;
        var name_buf: [32]u8 = undefined;
        ks.store.set(slotName(&name_buf, r.slot), "", r.cas) catch {};
    }

    fn write(ks: *KeyStates, slot: u32, cas: u32, key: *const Key, state: State, until_ms: u64) bool {
        var v: [value_len]u8 = undefined;
        @memcpy(v[0..64], key);
        v[64] = @backingInt(state);
        std.mem.writeInt(u64, v[65..73], until_ms, .little);
        std.mem.writeInt(u64, v[73..81], ks.owner, .little);
        var name_buf: [32]u8 = undefined;
        ks.store.set(slotName(&name_buf, slot), &v, cas) catch return false;
        return true;
    }
};

const t = std.testing;

test "one worker claims a fill, the other sees it, marks expire" {
    var f: shared.FakeStore = .{ .allocator = t.allocator };
    defer f.deinit();
    var a: KeyStates = .{ .store = f.store(), .owner = 1 };
    var b: KeyStates = .{ .store = f.store(), .owner = 2 };
    const k: Key = @splat('7');
    const ra = a.read(&k, 1000);
    const rb = b.read(&k, 1000);
    try t.expect(ra.state == null);
    try t.expect(a.claim(&ra, &k, 6000));
    // b's read predates a's claim: its CAS token is stale only if the slot existed; re-read
    try t.expect(rb.state == null);
    const rb2 = b.read(&k, 1001);
    try t.expectEqual(State.filling, rb2.state.?);
    try t.expectEqual(@as(u64, 1), rb2.owner);
    try t.expect(!b.claim(&rb2, &k, 6000));
    // expired: b may take it
    const rb3 = b.read(&k, 6000);
    try t.expect(rb3.state == null);
    try t.expect(b.claim(&rb3, &k, 9000));
    // a cannot abandon b's fill
    a.abandon(&k, 6001);
    try t.expectEqual(State.filling, a.read(&k, 6001).state.?);
    b.abandon(&k, 6001);
    try t.expect(a.read(&k, 6001).state == null);
}

test "two racing claims: exactly one wins" {
    var f: shared.FakeStore = .{ .allocator = t.allocator };
    defer f.deinit();
    var a: KeyStates = .{ .store = f.store(), .owner = 1 };
    var b: KeyStates = .{ .store = f.store(), .owner = 2 };
    const k: Key = @splat('3');
    a.mark(&k, .stored, 10, 0); // the slot exists, so tokens are real
    const ra = a.read(&k, 20);
    const rb = b.read(&k, 20);
    const wa = a.claim(&ra, &k, 100);
    const wb = b.claim(&rb, &k, 100);
    try t.expect(wa != wb);
}

test "pass and stored marks" {
    var f: shared.FakeStore = .{ .allocator = t.allocator };
    defer f.deinit();
    var a: KeyStates = .{ .store = f.store(), .owner = 1 };
    const k: Key = @splat('a');
    a.mark(&k, .pass, 30_000, 0);
    try t.expectEqual(State.pass, a.read(&k, 29_999).state.?);
    try t.expect(a.read(&k, 30_000).state == null);
    var other: Key = @splat('a');
    other[63] = 'b'; // same slot (slot bits are 8..16), another key
    try t.expect(a.read(&other, 0).state == null);
}
