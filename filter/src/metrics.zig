//! The filter's metrics, defined once per VM with `proxy_define_metric` from the names in
//! reason.zig (Envoy shares a metric across VMs by name, so a gauge moved by two workers is their
//! sum). Failing to define or move a metric never fails a request.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const reason = @import("reason.zig");

const Reason = reason.Reason;
const Event = reason.Event;
const prefix = "sp_cache.";

const reason_count = std.enums.values(Reason).len;
const event_count = std.enums.values(Event).len;

/// Metric ids of this VM (null: the host refused the definition).
pub const Metrics = struct {
    defined: bool = false,
    reasons: [reason_count]?u32 = @splat(null),
    outcomes: [3]?u32 = @splat(null),
    events: [event_count]?u32 = @splat(null),
    l1_bytes: ?u32 = null,
    buffered: ?u32 = null,
    queued: ?u32 = null,
    lookup_us: ?u32 = null,
    callback_us: ?u32 = null,

    /// Defines every metric (once per VM).
    pub fn define(m: *Metrics) void {
        if (m.defined) return;
        m.defined = true;
        inline for (comptime std.enums.values(Reason), 0..) |r, i| {
            m.reasons[i] = host.defineMetric(.counter, prefix ++ @tagName(r)) catch null;
        }
        inline for (comptime std.enums.values(reason.Outcome), 0..) |o, i| {
            m.outcomes[i] = host.defineMetric(.counter, prefix ++ @tagName(o)) catch null;
        }
        inline for (comptime std.enums.values(Event), 0..) |e, i| {
            m.events[i] = host.defineMetric(.counter, prefix ++ @tagName(e)) catch null;
        }
        m.l1_bytes = host.defineMetric(.gauge, prefix ++ "l1_bytes") catch null;
        m.buffered = host.defineMetric(.gauge, prefix ++ "buffered_body_bytes") catch null;
        m.queued = host.defineMetric(.gauge, prefix ++ "stores_queued") catch null;
        m.lookup_us = host.defineMetric(.histogram, prefix ++ "lookup_duration_us") catch null;
        m.callback_us = host.defineMetric(.histogram, prefix ++ "callback_duration_us") catch null;
    }

    /// Counts a request's reason, and its outcome (`hit`, `miss`, `bypass`).
    pub fn count(m: *Metrics, r: Reason) void {
        if (m.reasons[@backingInt(r)]) |id| host.incrementMetric(id, 1) catch {};
        if (m.outcomes[@backingInt(r.info().outcome)]) |id| host.incrementMetric(id, 1) catch {};
    }

    /// Counts an event `n` times.
    pub fn event(m: *Metrics, e: Event, n: u64) void {
        if (n == 0) return;
        if (m.events[@backingInt(e)]) |id| host.incrementMetric(id, @intCast(n)) catch {};
    }

    /// Moves the buffered-body gauge by `delta` bytes.
    pub fn addBuffered(m: *Metrics, delta: i64) void {
        if (delta == 0) return;
        if (m.buffered) |id| host.incrementMetric(id, delta) catch {};
    }

    /// Moves the queued-stores gauge by `delta` stores.
    pub fn addQueued(m: *Metrics, delta: i64) void {
        if (delta == 0) return;
        if (m.queued) |id| host.incrementMetric(id, delta) catch {};
    }

    /// Sets the L1 gauge to the shared counter's value (bytes, all workers).
    pub fn setL1Bytes(m: *Metrics, v: u64) void {
        if (m.l1_bytes) |id| host.recordMetric(id, v) catch {};
    }

    /// Records one backend lookup round trip (µs).
    pub fn lookupDuration(m: *Metrics, us: u64) void {
        if (m.lookup_us) |id| host.recordMetric(id, us) catch {};
    }

    /// Records the time one request spent inside the filter's callbacks (µs).
    pub fn callbackDuration(m: *Metrics, us: u64) void {
        if (m.callback_us) |id| host.recordMetric(id, us) catch {};
    }
};

/// This VM's metrics.
pub var global: Metrics = .{};
