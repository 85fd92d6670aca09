//! The in-proxy L1: verified entry sets kept in Envoy shared data, one copy for every worker of
//! one Envoy, served with no callout. It is a table of `slot_count` slots (keys
//! `sp_cache.l1.<i>`) and a byte counter (`sp_cache.l1.bytes`) updated by compare-and-swap. A
//! slot is addressed by the request's key *material* (method, scheme, authority and path of a
//! bodiless request, or its fingerprint: `fingerprint.material`): the slot index is a fast
//! non-cryptographic hash of it, and the slot holds the material itself, compared byte for byte,
//! so a hash collision can only evict, never serve another URI's entry, and a hit needs no
//! cryptographic hash at all. A key that lands on an occupied slot replaces it.
//!
//! Budget rule: bytes are reserved on the counter before a slot grows and released only after a
//! slot shrank or was cleared, so the counter is never below what the slots hold and never above
//! `l1_max_bytes`. Over budget, a per-worker clock hand empties slots in turn (`l1_evicted`).
//! A slot write uses the CAS token of the read that preceded it; if another worker wrote the
//! slot meanwhile the write is dropped and its reservation returned. (Two workers writing a slot
//! that was NEVER set cannot be told apart by CAS — token 0 — so the loser's reservation stays
//! counted: the budget errs on the safe side.) Per-slot overhead of Envoy's map (`slot_overhead`
//! bytes) is charged with every non-empty slot.
//!
//! Slot value: a header (magic, version, kind, material length, invalidation time, the material)
//! then the payload (prepared entries, prepared.zig). A tombstone is a header alone: it records when the key
//! was invalidated (RFC 9111 §4.4) so that no older entry — from a backend answer in flight, or
//! another worker — is served or stored after it.
const std = @import("std");
const shared = @import("shared.zig");

/// Number of slots (fixed: changing it would orphan slots in a running Envoy).
pub const slot_count: u32 = 8192;
/// Bytes charged per occupied slot for Envoy's own bookkeeping (key string, map node).
pub const slot_overhead: u64 = 64;
/// An entry set may take at most this fraction (1/n) of the budget.
pub const entry_share: u64 = 8;
const budget_key = "sp_cache.l1.bytes";
const magic = "SPL2";
const version: u8 = 2;
/// Length of the fixed part of the slot header (the material follows it).
pub const fixed_len = 4 + 1 + 1 + 2 + 4 + 8;
/// Longest key material a slot holds.
pub const max_material = 8192;

/// Length of the header of a slot holding `material`.
pub fn headerLen(material: []const u8) usize {
    return fixed_len + material.len;
}

/// What a slot holds.
pub const Kind = enum(u8) { set = 1, tombstone = 2 };

/// The result of reading the slot of a key.
pub const Read = struct {
    slot: u32,
    /// CAS token to write the slot back (0 when it was never set)
    cas: u32 = 0,
    /// bytes the slot is charged now (0 when empty)
    charged: u64 = 0,
    /// owned copy of the slot value (free with `L1.release`), null when never set
    value: ?[]u8 = null,
    state: State = .empty,
    /// for a tombstone of this key: when it was invalidated (Unix ms)
    invalidated_at_ms: u64 = 0,
    /// for an entry set of this key: the set bytes (a slice of `value`)
    payload: []const u8 = &.{},

    pub const State = enum { empty, other_key, set, tombstone };
};

/// Outcome of a write.
pub const WriteResult = enum { written, too_large, conflict, no_room, unavailable };

/// Slot index of a key material.
pub fn slotOf(material: []const u8) u32 {
    return @intCast(std.hash.Wyhash.hash(0x5350_4c31, material) % slot_count);
}

fn slotName(buf: *[32]u8, slot: u32) []const u8 {
    return std.fmt.bufPrint(buf, "sp_cache.l1.{d}", .{slot}) catch unreachable;
}

fn charge(len: usize) u64 {
    return if (len == 0) 0 else len + slot_overhead;
}

/// Writes a slot header for `material` into `out[0..headerLen(material)]`.
fn writeHeader(out: []u8, kind: Kind, material: []const u8, invalidated_at_ms: u64) void {
    @memcpy(out[0..4], magic);
    out[4] = version;
    out[5] = @backingInt(kind);
    out[6] = 0;
    out[7] = 0;
    std.mem.writeInt(u32, out[8..12], @intCast(material.len), .little);
    std.mem.writeInt(u64, out[12..20], invalidated_at_ms, .little);
    @memcpy(out[fixed_len..][0..material.len], material);
}

/// The L1 of one worker VM (its view of the shared table).
pub const L1 = struct {
    store: shared.Store,
    /// bytes; 0 disables the L1
    budget: u64,
    /// next slot the clock hand looks at (per worker)
    hand: u32 = 0,
    /// counters moved by this worker since the caller last read them
    evicted: u64 = 0,

    /// Reads the slot of `material`.
    pub fn read(l: *L1, material: []const u8) Read {
        var r: Read = .{ .slot = slotOf(material) };
        if (l.budget == 0) return r;
        var name_buf: [32]u8 = undefined;
        const got = (l.store.get(slotName(&name_buf, r.slot)) catch return r) orelse return r;
        r.cas = got.cas;
        r.value = got.value;
        r.charged = charge(got.value.len);
        const v = got.value;
        if (v.len == 0) return r;
        if (v.len < fixed_len or !std.mem.eql(u8, v[0..4], magic) or v[4] != version) {
            r.state = .other_key; // unknown layout: treat as someone else's, replaceable
            return r;
        }
        const len = std.mem.readInt(u32, v[8..12], .little);
        if (len != material.len or v.len < fixed_len + len or !std.mem.eql(u8, v[fixed_len..][0..len], material)) {
            r.state = .other_key;
            return r;
        }
        switch (v[5]) {
            @backingInt(Kind.set) => {
                r.state = .set;
                r.payload = v[fixed_len + len ..];
            },
            @backingInt(Kind.tombstone) => {
                r.state = .tombstone;
                r.invalidated_at_ms = std.mem.readInt(u64, v[12..20], .little);
            },
            else => r.state = .other_key,
        }
        return r;
    }

    /// Frees what `read` returned.
    pub fn release(l: *L1, r: *Read) void {
        if (r.value) |v| l.store.free(.{ .value = v, .cas = r.cas });
        r.value = null;
        r.payload = &.{};
    }

    /// Replaces the slot read as `r` with an entry set for `material`.
    pub fn writeSet(l: *L1, r: *const Read, material: []const u8, payload: []const u8) WriteResult {
        if (l.budget == 0) return .no_room;
        if (material.len > max_material) return .too_large;
        const len = headerLen(material) + payload.len;
        if (charge(len) > l.budget / entry_share) return .too_large;
        const value = l.store.allocator.alloc(u8, len) catch return .unavailable;
        defer l.store.allocator.free(value);
        writeHeader(value, .set, material, 0);
        @memcpy(value[headerLen(material)..], payload);
        return l.put(r, value);
    }

    /// Replaces the slot read as `r` with a tombstone for `material` invalidated at `now_ms`.
    pub fn writeTombstone(l: *L1, r: *const Read, material: []const u8, now_ms: u64) WriteResult {
        if (l.budget == 0) return .no_room;
        if (material.len > max_material) return .too_large;
        const value = l.store.allocator.alloc(u8, headerLen(material)) catch return .unavailable;
        defer l.store.allocator.free(value);
        writeHeader(value, .tombstone, material, now_ms);
        return l.put(r, value);
    }

    /// Bytes the L1 holds now, all workers (the counter), or null when it can't be read.
    pub fn bytes(l: *L1) ?u64 {
        const got = (l.store.get(budget_key) catch return null) orelse return 0;
        defer l.store.free(got);
        return decodeCounter(got.value);
    }

    fn put(l: *L1, r: *const Read, value: []const u8) WriteResult {
        const new = charge(value.len);
        if (new > r.charged) {
            switch (l.reserve(new - r.charged, r.slot)) {
                .written => {},
                else => |e| return e,
            }
        }
        var name_buf: [32]u8 = undefined;
        l.store.set(slotName(&name_buf, r.slot), value, r.cas) catch |e| {
            if (new > r.charged) l.adjust(-@as(i64, @intCast(new - r.charged)));
            return if (e == error.CasMismatch) .conflict else .unavailable;
        };
        if (new < r.charged) l.adjust(-@as(i64, @intCast(r.charged - new)));
        if (r.state == .other_key) l.evicted += 1;
        return .written;
    }

    /// Adds `n` bytes to the counter, evicting other slots (never `keep`) while it would pass
    /// the budget.
    fn reserve(l: *L1, n: u64, keep: u32) WriteResult {
        var evictions: u32 = 0;
        while (true) {
            const got = (l.store.get(budget_key) catch return .unavailable);
            const cur: u64 = if (got) |g| decodeCounter(g.value) else 0;
            const cas: u32 = if (got) |g| g.cas else 0;
            if (got) |g| l.store.free(g);
            if (cur + n <= l.budget) {
                var buf: [8]u8 = undefined;
                std.mem.writeInt(u64, &buf, cur + n, .little);
                l.store.set(budget_key, &buf, cas) catch |e| {
                    if (e == error.CasMismatch) continue;
                    return .unavailable;
                };
                return .written;
            }
            if (evictions >= slot_count) return .no_room;
            evictions += 1;
            l.evictAtHand(keep);
        }
    }

    /// Empties the slot under the clock hand (unless it is `keep`) and moves the hand on.
    fn evictAtHand(l: *L1, keep: u32) void {
        const slot = l.hand;
        l.hand = (l.hand + 1) % slot_count;
        if (slot == keep) return;
        var name_buf: [32]u8 = undefined;
        const name = slotName(&name_buf, slot);
        const got = (l.store.get(name) catch return) orelse return;
        defer l.store.free(got);
        if (got.value.len == 0) return;
        l.store.set(name, "", got.cas) catch return;
        l.adjust(-@as(i64, @intCast(charge(got.value.len))));
        l.evicted += 1;
    }

    /// Adds `delta` to the counter (CAS loop), never below zero.
    fn adjust(l: *L1, delta: i64) void {
        var tries: u32 = 0;
        while (tries < 64) : (tries += 1) {
            const got = (l.store.get(budget_key) catch return);
            const cur: u64 = if (got) |g| decodeCounter(g.value) else 0;
            const cas: u32 = if (got) |g| g.cas else 0;
            if (got) |g| l.store.free(g);
            const next: u64 = if (delta < 0) cur -| @as(u64, @intCast(-delta)) else cur + @as(u64, @intCast(delta));
            var buf: [8]u8 = undefined;
            std.mem.writeInt(u64, &buf, next, .little);
            l.store.set(budget_key, &buf, cas) catch |e| {
                if (e == error.CasMismatch) continue;
                return;
            };
            return;
        }
    }
};

fn decodeCounter(v: []const u8) u64 {
    if (v.len != 8) return 0;
    return std.mem.readInt(u64, v[0..8], .little);
}

const t = std.testing;

fn testKey(n: u32, fill: u8) [24]u8 {
    var k: [24]u8 = @splat(fill);
    _ = std.fmt.bufPrint(k[0..8], "{x:0>8}", .{n}) catch unreachable;
    return k;
}

/// Another material landing on the same slot as `material` (found by search).
fn sameSlot(material: []const u8, fill: u8) [24]u8 {
    var n: u32 = 0;
    while (true) : (n += 1) {
        const k = testKey(n, fill);
        if (slotOf(&k) == slotOf(material) and !std.mem.eql(u8, &k, material)) return k;
    }
}

test "write, read back, replace, tombstone" {
    var f: shared.FakeStore = .{ .allocator = t.allocator };
    defer f.deinit();
    var l: L1 = .{ .store = f.store(), .budget = 1 << 20 };
    const k = testKey(5, 'a');
    var r = l.read(&k);
    try t.expectEqual(Read.State.empty, r.state);
    try t.expectEqual(WriteResult.written, l.writeSet(&r, &k, "payload-1"));
    l.release(&r);
    r = l.read(&k);
    try t.expectEqual(Read.State.set, r.state);
    try t.expectEqualStrings("payload-1", r.payload);
    try t.expectEqual(@as(u64, headerLen(&k) + 9 + slot_overhead), l.bytes().?);
    try t.expectEqual(WriteResult.written, l.writeSet(&r, &k, "p2"));
    l.release(&r);
    try t.expectEqual(@as(u64, headerLen(&k) + 2 + slot_overhead), l.bytes().?);
    r = l.read(&k);
    try t.expectEqual(WriteResult.written, l.writeTombstone(&r, &k, 1234));
    l.release(&r);
    r = l.read(&k);
    defer l.release(&r);
    try t.expectEqual(Read.State.tombstone, r.state);
    try t.expectEqual(@as(u64, 1234), r.invalidated_at_ms);
    // another key on the same slot sees someone else's slot
    const other = sameSlot(&k, 'b');
    var r2 = l.read(&other);
    defer l.release(&r2);
    try t.expectEqual(Read.State.other_key, r2.state);
}

test "a stale read loses: the write is dropped and its reservation returned" {
    var f: shared.FakeStore = .{ .allocator = t.allocator };
    defer f.deinit();
    var a: L1 = .{ .store = f.store(), .budget = 1 << 20 };
    var b: L1 = .{ .store = f.store(), .budget = 1 << 20 };
    const k = testKey(9, 'c');
    var ra = a.read(&k);
    defer a.release(&ra);
    var rb = b.read(&k);
    defer b.release(&rb);
    try t.expectEqual(WriteResult.written, a.writeSet(&ra, &k, &@as([100]u8, @splat('x'))));
    // b read before a's write and holds a non-zero token only if the slot existed: make it exist
    var ra2 = a.read(&k);
    defer a.release(&ra2);
    var rb2 = b.read(&k);
    defer b.release(&rb2);
    try t.expectEqual(WriteResult.written, a.writeSet(&ra2, &k, &@as([50]u8, @splat('y'))));
    try t.expectEqual(WriteResult.conflict, b.writeSet(&rb2, &k, &@as([500]u8, @splat('z'))));
    try t.expectEqual(@as(u64, headerLen(&k) + 50 + slot_overhead), a.bytes().?);
    try t.expectEqual(@as(usize, headerLen(&k) + 50 + 8), f.valueBytes()); // slot + counter
}

test "the budget is never exceeded: 10x more distinct bytes than the budget" {
    var f: shared.FakeStore = .{ .allocator = t.allocator };
    defer f.deinit();
    const budget: u64 = 64 * 1024;
    var w1: L1 = .{ .store = f.store(), .budget = budget, .hand = 0 };
    var w2: L1 = .{ .store = f.store(), .budget = budget, .hand = slot_count / 2 };
    var prng = std.Random.DefaultPrng.init(1);
    var body: [4096]u8 = @splat('b');
    var written: usize = 0;
    var i: u32 = 0;
    while (written < 10 * budget) : (i += 1) {
        const k = testKey(prng.random().int(u32), 'k');
        const w = if (i % 2 == 0) &w1 else &w2;
        var r = w.read(&k);
        defer w.release(&r);
        const n = 256 + prng.random().uintLessThan(usize, body.len - 256);
        if (w.writeSet(&r, &k, body[0..n]) == .written) written += n;
        const held = f.valueBytes() - 8;
        try t.expect(w.bytes().? <= budget);
        try t.expect(held <= w.bytes().?);
    }
    try t.expect(w1.evicted + w2.evicted > 0);
}

test "an entry over its share of the budget is not written" {
    var f: shared.FakeStore = .{ .allocator = t.allocator };
    defer f.deinit();
    var l: L1 = .{ .store = f.store(), .budget = 8 * 1024 };
    const k = testKey(1, 'd');
    var r = l.read(&k);
    defer l.release(&r);
    try t.expectEqual(WriteResult.too_large, l.writeSet(&r, &k, &@as([2048]u8, @splat(0))));
    var off: L1 = .{ .store = f.store(), .budget = 0 };
    try t.expectEqual(WriteResult.no_room, off.writeSet(&r, &k, "x"));
}
