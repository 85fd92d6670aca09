//! The context dispatcher: proxy-wasm ABI 0.2.1 callbacks arrive as (context id, arguments);
//! this layer keeps the root (plugin) and stream (HTTP) contexts, routes each callback to its
//! object, routes callout answers (Envoy answers every `proxy_http_call` on the ROOT context, with
//! the callout token) to the context that dispatched them, and owns their lifetimes: a root is
//! freed when Envoy deletes it and its last stream is gone (plugin reconfiguration), a stream when
//! Envoy deletes it. The model is the proxy-wasm Rust SDK's dispatcher; filter code never sees
//! context ids it did not get from here.
const std = @import("std");
const host = @import("hostcalls.zig");

const gpa = host.gpa;

/// Header and body callback return values (proxy-wasm FilterHeadersStatus / FilterDataStatus).
pub const Action = enum(u32) {
    /// Continue
    @"continue" = 0,
    /// headers: StopIteration (a real StopIteration only with allow_on_headers_stop_iteration;
    /// a headers-only request needs none); body: StopIterationAndBuffer
    pause = 1,
    /// body: StopIterationAndWatermark — hold, but past the connection's buffer limit push back
    /// on the client instead of answering 413 (Envoy FilterDataStatus 2)
    pause_watermark = 2,
};

/// Who a callout answer goes to.
pub const Owner = union(enum) {
    root: u32,
    stream: u32,
};

/// The dispatcher for a filter whose root context type is `Root` and stream context type is
/// `Stream`. `Root` must provide `init(*Root, id) void`, `deinit(*Root) void`,
/// `onConfigure(*Root, size) bool`, `onTick(*Root) void`,
/// `onCalloutResponse(*Root, token, headers, body_size) void`. `Stream` must provide
/// `init(*Stream, id, *Root) void`, `deinit(*Stream) void`, the six header/body/trailer callbacks,
/// `onCalloutResponse(*Stream, token, headers, body_size) void`, `onLog(*Stream) void` and
/// `onDone(*Stream) void`.
pub fn Dispatcher(comptime Root: type, comptime Stream: type) type {
    return struct {
        const Self = @This();

        const RootSlot = struct {
            root: Root,
            streams: u32 = 0,
            deleted: bool = false,
        };
        const StreamSlot = struct {
            stream: Stream,
            root_id: u32,
        };

        var roots: std.AutoHashMapUnmanaged(u32, *RootSlot) = .empty;
        var streams: std.AutoHashMapUnmanaged(u32, *StreamSlot) = .empty;
        var callouts: std.AutoHashMapUnmanaged(u32, Owner) = .empty;

        /// proxy_on_context_create: parent 0 creates a root context, else a stream context of
        /// that root. Allocation failure leaves the context unknown: every callback continues.
        pub fn onContextCreate(id: u32, parent: u32) void {
            if (parent == 0) {
                const slot = gpa.create(RootSlot) catch return;
                slot.* = .{ .root = undefined };
                roots.put(gpa, id, slot) catch {
                    gpa.destroy(slot);
                    return;
                };
                slot.root.init(id);
                return;
            }
            const parent_slot = roots.get(parent) orelse return;
            const slot = gpa.create(StreamSlot) catch return;
            slot.* = .{ .stream = undefined, .root_id = parent };
            streams.put(gpa, id, slot) catch {
                gpa.destroy(slot);
                return;
            };
            parent_slot.streams += 1;
            slot.stream.init(id, &parent_slot.root);
        }

        /// The root context `id`, if it exists.
        pub fn root(id: u32) ?*Root {
            const slot = roots.get(id) orelse return null;
            return &slot.root;
        }

        /// The stream context `id`, if it exists.
        pub fn stream(id: u32) ?*Stream {
            const slot = streams.get(id) orelse return null;
            return &slot.stream;
        }

        /// Records that callout `token` was dispatched by `owner`, so its answer finds it.
        pub fn trackCallout(token: u32, owner: Owner) error{OutOfMemory}!void {
            try callouts.put(gpa, token, owner);
        }

        /// Reserves room so that a following `trackCallout` cannot fail.
        pub fn reserveCallout() error{OutOfMemory}!void {
            try callouts.ensureUnusedCapacity(gpa, 1);
        }

        /// Callouts in flight (all contexts of this VM).
        pub fn calloutsInFlight() u32 {
            return callouts.count();
        }

        pub fn onConfigure(id: u32, size: u32) bool {
            const r = root(id) orelse return false;
            return r.onConfigure(size);
        }

        pub fn onTick(id: u32) void {
            if (root(id)) |r| r.onTick();
        }

        pub fn onRequestHeaders(id: u32, end_of_stream: bool) Action {
            const s = stream(id) orelse return .@"continue";
            return s.onRequestHeaders(end_of_stream);
        }

        pub fn onRequestBody(id: u32, len: u32, end_of_stream: bool) Action {
            const s = stream(id) orelse return .@"continue";
            return s.onRequestBody(len, end_of_stream);
        }

        pub fn onRequestTrailers(id: u32) Action {
            const s = stream(id) orelse return .@"continue";
            return s.onRequestTrailers();
        }

        pub fn onResponseHeaders(id: u32, end_of_stream: bool) Action {
            const s = stream(id) orelse return .@"continue";
            return s.onResponseHeaders(end_of_stream);
        }

        pub fn onResponseBody(id: u32, len: u32, end_of_stream: bool) Action {
            const s = stream(id) orelse return .@"continue";
            return s.onResponseBody(len, end_of_stream);
        }

        pub fn onResponseTrailers(id: u32) Action {
            const s = stream(id) orelse return .@"continue";
            return s.onResponseTrailers();
        }

        /// proxy_on_http_call_response: arrives on the root context; goes to the context that
        /// dispatched the callout (with the effective context set to it), or nowhere when that
        /// context is gone (a client that went away).
        pub fn onHttpCallResponse(root_id: u32, token: u32, num_headers: u32, body_size: u32) void {
            const owner = (callouts.fetchRemove(token) orelse return).value;
            switch (owner) {
                .root => |id| {
                    const r = root(id) orelse return;
                    host.setEffectiveContext(id) catch {};
                    r.onCalloutResponse(token, num_headers, body_size);
                },
                .stream => |id| {
                    const s = stream(id) orelse return;
                    host.setEffectiveContext(id) catch return;
                    s.onCalloutResponse(token, num_headers, body_size);
                    host.setEffectiveContext(root_id) catch {};
                },
            }
        }

        pub fn onLog(id: u32) void {
            if (stream(id)) |s| s.onLog();
        }

        /// proxy_on_done: a stream releases what it holds early; a root answers true (it has no
        /// asynchronous work that must finish before deletion: stores in flight are ignored when
        /// their answer finds no root).
        pub fn onDone(id: u32) bool {
            if (stream(id)) |s| s.onDone();
            return true;
        }

        /// proxy_on_delete: frees a stream; frees a root once its last stream is gone.
        pub fn onDelete(id: u32) void {
            if (streams.fetchRemove(id)) |kv| {
                const slot = kv.value;
                slot.stream.deinit();
                if (roots.get(slot.root_id)) |r| {
                    r.streams -|= 1;
                    if (r.deleted and r.streams == 0) freeRoot(slot.root_id);
                }
                gpa.destroy(slot);
                return;
            }
            const r = roots.get(id) orelse return;
            r.deleted = true;
            if (r.streams == 0) freeRoot(id);
        }

        fn freeRoot(id: u32) void {
            const kv = roots.fetchRemove(id) orelse return;
            kv.value.root.deinit();
            gpa.destroy(kv.value);
            // Envoy cancels a deleted root's callouts: forget those it dispatched
            outer: while (true) {
                var it = callouts.iterator();
                while (it.next()) |e| {
                    if (e.value_ptr.* == .root and e.value_ptr.root == id) {
                        _ = callouts.remove(e.key_ptr.*);
                        continue :outer;
                    }
                }
                break;
            }
        }

        /// Number of live contexts (for tests and leak checks): roots, streams.
        pub fn counts() struct { roots: u32, streams: u32 } {
            return .{ .roots = roots.count(), .streams = streams.count() };
        }
    };
}
