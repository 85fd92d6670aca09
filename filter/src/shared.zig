//! Envoy shared data as an interface: a key/value store common to every worker VM of one Envoy
//! (proxy-wasm `get_shared_data`/`set_shared_data`), with compare-and-swap tokens and no delete.
//! The L1 and the key-state table are written against this interface so their budget, eviction
//! and race rules are unit-tested without a host (`FakeStore`); production binds it to the host.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");

/// A value and its CAS token; `value` is owned by the caller (free with the store's allocator).
pub const Versioned = struct {
    value: []u8,
    cas: u32,
};

/// Errors a store reports.
pub const Error = error{ CasMismatch, OutOfMemory, Unavailable };

/// The store interface.
pub const Store = struct {
    ctx: *anyopaque,
    getFn: *const fn (ctx: *anyopaque, key: []const u8) Error!?Versioned,
    setFn: *const fn (ctx: *anyopaque, key: []const u8, value: []const u8, cas: u32) Error!void,
    allocator: std.mem.Allocator,

    /// The value of `key` (null when never set).
    pub fn get(s: Store, key: []const u8) Error!?Versioned {
        return s.getFn(s.ctx, key);
    }

    /// Writes `key` when its CAS token is still `cas` (0: unconditionally).
    pub fn set(s: Store, key: []const u8, value: []const u8, cas: u32) Error!void {
        return s.setFn(s.ctx, key, value, cas);
    }

    /// Frees a value returned by `get`.
    pub fn free(s: Store, v: Versioned) void {
        if (v.value.len > 0) s.allocator.free(v.value);
    }
};

fn hostGet(_: *anyopaque, key: []const u8) Error!?Versioned {
    const got = host.getSharedData(key) catch |e| return if (e == error.NotFound) null else error.Unavailable;
    const g = got orelse return null;
    return .{ .value = g.value, .cas = g.cas };
}

fn hostSet(_: *anyopaque, key: []const u8, value: []const u8, cas: u32) Error!void {
    host.setSharedData(key, value, cas) catch |e| return if (e == error.CasMismatch) error.CasMismatch else error.Unavailable;
}

var host_ctx: u8 = 0;

/// The store of the running Envoy.
pub fn hostStore() Store {
    return .{ .ctx = &host_ctx, .getFn = hostGet, .setFn = hostSet, .allocator = host.gpa };
}

/// A FAKE in-memory store with proxy-wasm-cpp-host's CAS rules, for unit tests only: every set
/// bumps the key's token; a set with a non-zero token that differs fails with CasMismatch.
pub const FakeStore = struct {
    map: std.StringHashMapUnmanaged(Entry) = .empty,
    allocator: std.mem.Allocator,
    next_cas: u32 = 1,

    const Entry = struct { value: []u8, cas: u32 };

    /// Frees every key and value.
    pub fn deinit(f: *FakeStore) void {
        var it = f.map.iterator();
        while (it.next()) |e| {
            f.allocator.free(e.key_ptr.*);
            f.allocator.free(e.value_ptr.value);
        }
        f.map.deinit(f.allocator);
    }

    /// The interface over this fake.
    pub fn store(f: *FakeStore) Store {
        return .{ .ctx = f, .getFn = get, .setFn = set, .allocator = f.allocator };
    }

    /// Sum of value bytes held (what Envoy's heap would hold, without key overhead).
    pub fn valueBytes(f: *FakeStore) usize {
        var n: usize = 0;
        var it = f.map.valueIterator();
        while (it.next()) |v| n += v.value.len;
        return n;
    }

    fn get(ctx: *anyopaque, key: []const u8) Error!?Versioned {
        const f: *FakeStore = @ptrCast(@alignCast(ctx));
        const e = f.map.get(key) orelse return null;
        return .{ .value = try f.allocator.dupe(u8, e.value), .cas = e.cas };
    }

    fn set(ctx: *anyopaque, key: []const u8, value: []const u8, cas: u32) Error!void {
        const f: *FakeStore = @ptrCast(@alignCast(ctx));
        const gop = try f.map.getOrPut(f.allocator, key);
        if (gop.found_existing) {
            if (cas != 0 and cas != gop.value_ptr.cas) return error.CasMismatch;
            const copy = try f.allocator.dupe(u8, value);
            f.allocator.free(gop.value_ptr.value);
            gop.value_ptr.value = copy;
        } else {
            errdefer _ = f.map.remove(key);
            const k = try f.allocator.dupe(u8, key);
            errdefer f.allocator.free(k);
            gop.key_ptr.* = k;
            gop.value_ptr.value = try f.allocator.dupe(u8, value);
        }
        f.next_cas += 1;
        gop.value_ptr.cas = f.next_cas;
    }
};

test "fake store CAS rules" {
    var f: FakeStore = .{ .allocator = std.testing.allocator };
    defer f.deinit();
    const s = f.store();
    try std.testing.expect((try s.get("k")) == null);
    try s.set("k", "a", 0);
    const v = (try s.get("k")).?;
    defer s.free(v);
    try std.testing.expectEqualStrings("a", v.value);
    try s.set("k", "b", v.cas);
    try std.testing.expectError(error.CasMismatch, s.set("k", "c", v.cas));
    try s.set("k", "d", 0);
}
