//! The root (plugin) context: the parsed configuration and the keys it resolves, the worker's
//! view of the shared L1 and key-state tables, backend calls that must outlive their stream
//! (stores, invalidations; bounded in flight), and the requests waiting on a concurrent miss of
//! their key (woken when a fetch of this worker ends, or by the tick for other workers' fetches).
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const config = @import("config.zig");
const shared = @import("shared.zig");
const l1 = @import("l1.zig");
const keystate = @import("keystate.zig");
const backend = @import("backend.zig");
const metrics = @import("metrics.zig");
const log = @import("log.zig");
const filter = @import("filter.zig");

const gpa = host.gpa;
const m = &metrics.global;

/// How often (ms) a worker with waiting requests looks for other workers' finished fetches.
pub const wait_poll_ms: u32 = 5;
/// The tick period right after a fetch on this worker ended, so its waiters hear of it fast.
pub const wake_tick_ms: u32 = 1;

var vm_owner: u64 = 0;

/// This VM's random id (owner of its key-state marks).
pub fn owner() u64 {
    if (vm_owner == 0) {
        var b: [8]u8 = undefined;
        host.randomBytes(&b);
        vm_owner = std.mem.readInt(u64, &b, .little) | 1;
    }
    return vm_owner;
}

/// Stores per backend call at most, bytes per call at most, and how long (ms) a store waits for
/// others before its batch goes out.
pub const batch_max_count: u32 = 32;
pub const batch_max_bytes: usize = 256 * 1024;
pub const batch_wait_ms: u32 = wait_poll_ms;

/// A detached backend call in flight.
const Detached = struct { path: backend.Path, count: u32 };

/// A request waiting on another fetch of its key: `recheck` is called on the stream by id.
pub const Waiter = struct { stream_id: u32, key: keystate.Key };

/// The root context of the filter.
pub const Root = struct {
    const Self = @This();

    id: u32,
    parsed: ?config.Parsed = null,
    /// configurations replaced by a later configure of this root, freed with it
    retired: std.ArrayList(config.Parsed) = .empty,
    backend_key: []u8 = &.{},
    signing_key: []u8 = &.{},
    l1: l1.L1 = undefined,
    /// the tag of the configuration prepared L1 entries depend on (l1entries.configTag)
    cfg_tag: u32 = 0,
    ks: keystate.KeyStates = undefined,
    /// detached calls in flight: token -> what it was (and how many stores it carried)
    detached: std.AutoHashMapUnmanaged(u32, Detached) = .empty,
    /// stores waiting to go to the backend together: their TracesData bodies back to back (one
    /// protobuf TracesData holding every span, as protobuf concatenates repeated fields)
    batch: std.ArrayList(u8) = .empty,
    batch_count: u32 = 0,
    waiters: std.ArrayList(Waiter) = .empty,
    /// streams paused at their request headers waiting for their body's first callback
    holders: std.ArrayList(u32) = .empty,
    ticking: bool = false,
    /// a fetch of a waited-for key ended: the tick runs at `wake_tick_ms` until it has run
    wake_soon: bool = false,

    pub fn init(r: *Self, id: u32) void {
        r.* = .{ .id = id };
    }

    pub fn deinit(r: *Self) void {
        if (r.parsed) |*p| p.deinit();
        for (r.retired.items) |*p| p.deinit();
        r.retired.deinit(gpa);
        host.free(r.backend_key);
        host.free(r.signing_key);
        r.detached.deinit(gpa);
        if (r.batch_count > 0) {
            m.event(.store_dropped, r.batch_count);
            m.addQueued(-@as(i64, r.batch_count));
        }
        r.batch.deinit(gpa);
        r.waiters.deinit(gpa);
        r.holders.deinit(gpa);
    }

    /// The configuration, or null before a successful configure.
    pub fn cfg(r: *Self) ?*const config.Config {
        return if (r.parsed) |*p| &p.value else null;
    }

    /// Where backend calls go.
    pub fn target(r: *Self) backend.Target {
        const c = r.cfg().?;
        return .{ .cluster = c.backend_cluster, .authority = c.backend_authority, .key = r.backend_key };
    }

    /// proxy_on_configure: parses the configuration and resolves its keys; false refuses it
    /// (Envoy then refuses the filter), with a log line naming the key.
    pub fn onConfigure(r: *Self, size: u32) bool {
        const json: []u8 = if (size == 0) &.{} else host.getBufferBytes(.plugin_configuration, 0, size) catch {
            log.err("cannot read the plugin configuration", .{});
            return false;
        };
        defer host.free(json);
        var diag: config.Diagnostic = .{};
        var parsed = config.parse(gpa, json, &diag) catch |e| {
            log.err("invalid plugin configuration: key \"{s}\": {s} ({s})", .{ diag.key(), diag.reason, @errorName(e) });
            return false;
        };
        const c = &parsed.value;
        const backend_key = resolve(c.backend_key, c.backend_key_env) catch {
            parsed.deinit();
            return false;
        };
        const signing_key = resolve(c.signing_key, c.signing_key_env) catch {
            host.free(backend_key);
            parsed.deinit();
            return false;
        };
        if (c.cache_enabled and signing_key.len < config.min_signing_key_len) {
            log.err("invalid plugin configuration: key \"signing_key\": a signing key of at least 32 bytes is required (set signing_key, or the environment variable {s} named by signing_key_env)", .{c.signing_key_env});
            host.free(backend_key);
            host.free(signing_key);
            parsed.deinit();
            return false;
        }
        if (r.parsed) |old| r.retired.append(gpa, old) catch {};
        host.free(r.backend_key);
        host.free(r.signing_key);
        r.parsed = parsed;
        r.backend_key = backend_key;
        r.signing_key = signing_key;
        const now_cfg = r.cfg().?;
        var hand: [4]u8 = undefined;
        host.randomBytes(&hand);
        r.l1 = .{ .store = shared.hostStore(), .budget = now_cfg.l1_max_bytes, .hand = std.mem.readInt(u32, &hand, .little) % l1.slot_count };
        r.ks = .{ .store = shared.hostStore(), .owner = owner() };
        r.cfg_tag = @import("l1entries.zig").configTag(now_cfg);
        log.level = now_cfg.log_level;
        m.define();
        if (backend_key.len == 0) log.warn("no backend key (backend_key, or env {s}): a backend that requires one answers 401 and every lookup misses", .{now_cfg.backend_key_env});
        log.info("configured: backend_cluster={s} cache_enabled={} l1_max_bytes={d} max_response_body_bytes={d}", .{
            now_cfg.backend_cluster, now_cfg.cache_enabled, now_cfg.l1_max_bytes, now_cfg.max_response_body_bytes,
        });
        return true;
    }

    /// A key from the configuration, else from the environment variable `env`; owned.
    fn resolve(inline_key: []const u8, env: []const u8) error{OutOfMemory}![]u8 {
        if (inline_key.len > 0) return gpa.dupe(u8, inline_key);
        return (try host.getEnv(gpa, env)) orelse &.{};
    }

    /// Dispatches a store or an invalidation from the root context (so the end of the
    /// client's stream cannot cancel it); `stream_id` is the context to restore. Counted.
    pub fn sendDetached(r: *Self, stream_id: u32, path: backend.Path, body: []const u8) void {
        r.dispatchDetached(stream_id, path, body, 1);
    }

    /// Queues a store's body; the batch goes out when it holds `batch_max_count` stores or
    /// `batch_max_bytes`, or at the next tick (`batch_wait_ms`): one backend call for many misses,
    /// for Envoy and for the backend alike.
    pub fn queueStore(r: *Self, stream_id: u32, body: []const u8) void {
        if (r.batch.items.len > 0 and r.batch.items.len + body.len > batch_max_bytes) r.flush(stream_id);
        r.batch.appendSlice(gpa, body) catch {
            m.event(.store_dropped, 1);
            return;
        };
        r.batch_count += 1;
        m.addQueued(1);
        if (r.batch_count >= batch_max_count or r.batch.items.len >= batch_max_bytes) return r.flush(stream_id);
        r.startTicking();
    }

    /// Sends the queued stores now (`current`: the context to restore afterwards).
    pub fn flush(r: *Self, current: u32) void {
        if (r.batch_count == 0) return;
        m.addQueued(-@as(i64, r.batch_count));
        r.dispatchDetached(current, .store, r.batch.items, r.batch_count);
        r.batch.clearRetainingCapacity();
        r.batch_count = 0;
    }

    fn dispatchDetached(r: *Self, stream_id: u32, path: backend.Path, body: []const u8, count: u32) void {
        const c = r.cfg() orelse return;
        const failed: @import("reason.zig").Event = if (path == .store) .store_failed else .invalidate_failed;
        const dropped: @import("reason.zig").Event = if (path == .store) .store_dropped else .invalidate_failed;
        if (r.detached.count() >= c.max_stores_in_flight) return m.event(dropped, count);
        r.detached.ensureUnusedCapacity(gpa, 1) catch return m.event(dropped, count);
        host.setEffectiveContext(r.id) catch return m.event(failed, count);
        defer host.setEffectiveContext(stream_id) catch {};
        const token = backend.dispatch(r.target(), path, body, c.store_timeout_ms) catch |e| {
            log.warn("{s}: http_call to cluster {s} failed: {s}", .{ @tagName(path), c.backend_cluster, @errorName(e) });
            return m.event(failed, count);
        };
        r.detached.putAssumeCapacity(token, .{ .path = path, .count = count });
        filter.Dispatcher.trackCallout(token, .{ .root = r.id }) catch {};
        m.event(if (path == .store) .store_sent else .invalidate_sent, count);
    }

    /// The answer to a detached call.
    pub fn onCalloutResponse(r: *Self, token: u32, num_headers: u32, _: u32) void {
        const d = (r.detached.fetchRemove(token) orelse return).value;
        const path = d.path;
        const status = backend.answerStatus(num_headers);
        const ok = status != null and (status.? == 200 or status.? == 202);
        if (!ok) {
            m.event(if (path == .store) .store_failed else .invalidate_failed, d.count);
            log.debug("{s} callout {d} failed (status {?d})", .{ @tagName(path), token, status });
        }
    }

    /// Registers a stream waiting on another fetch of `key`, and starts the tick.
    pub fn addWaiter(r: *Self, stream_id: u32, key: *const keystate.Key) bool {
        r.waiters.append(gpa, .{ .stream_id = stream_id, .key = key.* }) catch return false;
        r.startTicking();
        return true;
    }

    /// Registers a stream paused at its headers for its body: if no body callback comes, the
    /// tick releases it (Envoy without allow_on_headers_stop_iteration, e.g. Istio's
    /// WasmPlugin, never delivers the body of a request paused there).
    pub fn addHolder(r: *Self, stream_id: u32) bool {
        r.holders.append(gpa, stream_id) catch return false;
        r.startTicking();
        return true;
    }

    fn startTicking(r: *Self) void {
        if (r.ticking) return;
        r.ticking = true;
        host.setTickPeriod(wait_poll_ms) catch {};
    }

    /// Forgets a waiting stream.
    pub fn removeWaiter(r: *Self, stream_id: u32) void {
        for (r.waiters.items, 0..) |w, i| {
            if (w.stream_id == stream_id) {
                _ = r.waiters.swapRemove(i);
                return;
            }
        }
    }

    /// A fetch of `key` on this worker ended: its waiters look again at the next tick, soon (a
    /// local reply sent for another stream from inside a stream's callback would stop that
    /// callback in Envoy's Wasm host, so waiters are never answered from here).
    pub fn wake(r: *Self, key: *const keystate.Key) void {
        for (r.waiters.items) |w| {
            if (std.mem.eql(u8, &w.key, key)) {
                r.wake_soon = true;
                host.setTickPeriod(wake_tick_ms) catch {};
                return;
            }
        }
    }

    /// proxy_on_tick: every waiting stream looks again (other workers' fetches end here).
    pub fn onTick(r: *Self) void {
        r.flush(r.id);
        if (r.wake_soon) {
            r.wake_soon = false;
            host.setTickPeriod(wait_poll_ms) catch {};
        }
        const snapshot = gpa.dupe(Waiter, r.waiters.items) catch return;
        defer gpa.free(snapshot);
        r.waiters.clearRetainingCapacity();
        for (snapshot) |w| r.recheck(w.stream_id);
        var i: usize = 0;
        while (i < r.holders.items.len) {
            const id = r.holders.items[i];
            const s = filter.Dispatcher.stream(id);
            const keep = if (s) |st| blk: {
                host.setEffectiveContext(id) catch break :blk false;
                break :blk st.checkHold();
            } else false;
            if (keep) i += 1 else _ = r.holders.swapRemove(i);
        }
        host.setEffectiveContext(r.id) catch {};
        if (r.waiters.items.len == 0 and r.holders.items.len == 0 and r.batch_count == 0 and r.ticking) {
            r.ticking = false;
            host.setTickPeriod(0) catch {};
        }
    }

    /// Runs a waiting stream's recheck in its own context; it re-registers if still waiting.
    fn recheck(r: *Self, stream_id: u32) void {
        _ = r;
        const s = filter.Dispatcher.stream(stream_id) orelse return;
        host.setEffectiveContext(stream_id) catch return;
        s.recheck();
    }
};
