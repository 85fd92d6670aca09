//! The backend and waiting tiers of a lookup: the backend callout and its verified answer, and
//! the requests that wait on a concurrent fetch of their key (request coalescing), woken by
//! their root when that fetch ends here or, for other workers' fetches, by the tick.
const std = @import("std");
const host = @import("sdk/hostcalls.zig");
const config = @import("config.zig");
const reason = @import("reason.zig");
const session = @import("session.zig");
const backend = @import("backend.zig");
const metrics = @import("metrics.zig");
const log = @import("log.zig");
const filter = @import("filter.zig");
const answer = @import("answer.zig");
const l1entries = @import("l1entries.zig");

const Stream = filter.Stream;
const gpa = host.gpa;
const m = &metrics.global;

/// Dispatches the backend lookup; false (counted) when it could not be sent.
pub fn startBackendLookup(s: *Stream, c: *const config.Config) bool {
    const x = s.exchange(c, s.method, s.keyHex(), s.body.items);
    const span = backend.encode(&x, .inject) catch {
        s.decide(.lookup_error);
        return false;
    };
    defer gpa.free(span);
    filter.Dispatcher.reserveCallout() catch {
        s.decide(.lookup_error);
        return false;
    };
    s.lookup_start_ns = host.nowNanos();
    s.lookup_token = backend.dispatch(s.root.target(), .lookup, span, c.lookup_timeout_ms) catch |e| {
        log.warn("lookup: http_call to cluster {s} failed: {s}", .{ c.backend_cluster, @errorName(e) });
        s.decide(.lookup_error);
        return false;
    };
    filter.Dispatcher.trackCallout(s.lookup_token, .{ .stream = s.id }) catch {};
    s.phase = .looking_up;
    return true;
}

/// The backend's answer to this stream's lookup.
pub fn onAnswer(s: *Stream, token: u32, num_headers: u32, body_size: u32) void {
    const t0 = host.nowNanos();
    if (s.phase != .looking_up or token != s.lookup_token) return;
    const c = s.cfg() orelse return s.resumeUpstream();
    const elapsed_ns = t0 -| s.lookup_start_ns;
    m.lookupDuration(elapsed_ns / std.time.ns_per_us);
    const timed_out = elapsed_ns / std.time.ns_per_ms + 5 >= c.lookup_timeout_ms;
    const status = backend.answerStatus(num_headers) orelse {
        s.decide(if (timed_out) .lookup_timeout else .lookup_error);
        return s.resumeUpstream();
    };
    if (status == 404) {
        s.decide(.not_found);
        return s.resumeUpstream();
    }
    if (status != 200 or body_size == 0) {
        log.debug("lookup answered {d} with {d} bytes", .{ status, body_size });
        const timeout = (timed_out and status == 504) or backend.isEnvoyTimeout(status, body_size);
        s.decide(if (timeout) .lookup_timeout else .lookup_error);
        return s.resumeUpstream();
    }
    const body = host.getBufferBytes(.http_call_response_body, 0, body_size) catch {
        s.decide(.lookup_error);
        return s.resumeUpstream();
    };
    const invalidated = if (s.found) |f| f.invalidated_at_ms else 0;
    if (s.found) |*f| f.deinit();
    s.found = session.verifyAnswer(body, s.keyHex(), s.root.signing_key, invalidated);
    const f = &s.found.?;
    if (f.undecodable) {
        log.debug("undecodable lookup answer ({d} bytes)", .{body_size});
        s.decide(.lookup_error);
        return s.resumeUpstream();
    }
    _ = l1entries.write(&s.root.l1, c, s.root.cfg_tag, s.material, f.entries);
    switch (answer.judgeFound(s, c, if (s.waited) .coalesced else .backend_hit)) {
        .replied => {},
        .upstream => s.resumeUpstream(),
        .none => {
            if (s.reason == null or s.reason.? != .encoding_mismatch)
                s.decide(if (f.entries.len == 0 and f.bytes.len > 0) .entry_rejected else .not_found);
            s.resumeUpstream();
        },
    }
}

pub fn startWaiting(s: *Stream, c: *const config.Config, until_ms: u64) bool {
    if (!s.root.addWaiter(s.id, s.keyHex())) return false;
    s.phase = .waiting;
    s.waited = true;
    s.wait_deadline_ms = @min(until_ms, host.nowMs() + c.coalesce_timeout_ms);
    m.event(.coalesce_wait, 1);
    return true;
}

/// A waiting stream looks again (called by its root, in this stream's context): the entry
/// another fetch stored, or that fetch's end, or the deadline.
pub fn recheck(s: *Stream) void {
    if (s.phase != .waiting) return;
    const c = s.cfg() orelse return s.resumeUpstream();
    if (s.found) |*f| f.deinit();
    s.found = l1entries.read(&s.root.l1, s.material);
    switch (answer.judgeFound(s, c, .coalesced)) {
        .replied => return,
        .upstream => return s.resumeUpstream(),
        .none => {},
    }
    const now = host.nowMs();
    if (now >= s.wait_deadline_ms) {
        s.decide(.coalesce_timeout);
        return s.resumeUpstream();
    }
    const mark = s.root.ks.read(s.keyHex(), now);
    const state = mark.state orelse {
        s.decide(.not_found);
        return s.resumeUpstream();
    };
    switch (state) {
        .filling => {
            if (s.root.addWaiter(s.id, s.keyHex())) return;
            s.decide(.coalesce_timeout);
            s.resumeUpstream();
        },
        .pass => {
            s.decide(.hit_for_pass);
            s.resumeUpstream();
        },
        .stored => if (!startBackendLookup(s, c)) s.resumeUpstream(),
    }
}
