//! The names of everything the filter counts, in one place. Every request ends with exactly one
//! `Reason`: its tag is the counter name (`wasmcustom.sp_cache.<tag>`), the log word, and its
//! `outcome` gives the `x-sp-cache` value. `Event` names the other counters (stores, L1,
//! invalidation, rejected entries). docs/metrics.md is generated from these tables
//! (`zig build metrics-doc`) and a test keeps it in step
//! (tests/test_build.py).
const std = @import("std");

/// The coarse outcome a client sees in `x-sp-cache`.
pub const Outcome = enum {
    hit,
    miss,
    bypass,

    /// The `x-sp-cache` header value.
    pub fn header(o: Outcome) []const u8 {
        return switch (o) {
            .hit => "HIT",
            .miss => "MISS",
            .bypass => "BYPASS",
        };
    }
};

const Info = struct { outcome: Outcome, doc: []const u8 };

/// Why a request ended as it did. Exactly one per request the filter sees.
pub const Reason = enum {
    l1_hit,
    backend_hit,
    coalesced,
    revalidated,
    stale_served,
    stale_if_error,
    not_modified,
    not_found,
    miss_stale,
    miss_changed,
    lookup_error,
    lookup_timeout,
    entry_rejected,
    encoding_mismatch,
    coalesce_timeout,
    only_if_cached,
    bypass_disabled,
    bypass_method,
    bypass_authorization,
    bypass_no_store,
    bypass_upgrade,
    bypass_grpc,
    bypass_range,
    bypass_request_body,
    bypass_request_too_large,
    bypass_trailers,
    bypass_header_error,
    bypass_buffer_budget,
    hit_for_pass,

    /// Outcome and documentation of each reason (RFC 9111 sections where they apply).
    pub fn info(r: Reason) Info {
        return switch (r) {
            .l1_hit => .{ .outcome = .hit, .doc = "fresh entry served from the in-proxy L1, no callout" },
            .backend_hit => .{ .outcome = .hit, .doc = "fresh entry served from the backend's answer (signature verified)" },
            .coalesced => .{ .outcome = .hit, .doc = "waited for a concurrent miss of the same key, then served its stored response" },
            .revalidated => .{ .outcome = .hit, .doc = "stale entry revalidated: the origin answered 304 and the freshened entry was served (RFC 9111 §4.3.3)" },
            .stale_served => .{ .outcome = .hit, .doc = "stale entry served within the client's max-stale or the response's stale-while-revalidate (RFC 9111 §4.2.4, RFC 5861)" },
            .stale_if_error => .{ .outcome = .hit, .doc = "stale entry served because the origin failed (5xx or no answer) within stale-if-error (RFC 5861 §4)" },
            .not_modified => .{ .outcome = .hit, .doc = "the client's conditional request matched a fresh entry: 304 from the cache (RFC 9111 §4.3.2)" },
            .not_found => .{ .outcome = .miss, .doc = "no stored entry: the request went upstream" },
            .miss_stale => .{ .outcome = .miss, .doc = "the entry was stale (or the request demanded validation) and could not be revalidated: full request upstream" },
            .miss_changed => .{ .outcome = .miss, .doc = "revalidation answered with a full response: the new response replaced the entry" },
            .lookup_error => .{ .outcome = .miss, .doc = "the backend lookup failed (dispatch error, reset, unexpected status, an answer whose framing cannot be decoded): fail open" },
            .lookup_timeout => .{ .outcome = .miss, .doc = "the backend lookup took longer than lookup_timeout_ms: fail open" },
            .entry_rejected => .{ .outcome = .miss, .doc = "every candidate entry failed verification (signature, key, replay validation); see the entry_rejected_* counters" },
            .encoding_mismatch => .{ .outcome = .miss, .doc = "the entry's content coding is not acceptable to the client (RFC 9110 §12.5.3)" },
            .coalesce_timeout => .{ .outcome = .miss, .doc = "waited coalesce_timeout_ms for a concurrent miss of the same key, then went upstream" },
            .only_if_cached => .{ .outcome = .miss, .doc = "only-if-cached and nothing usable stored: 504 (RFC 9111 §5.2.1.7)" },
            .bypass_disabled => .{ .outcome = .bypass, .doc = "cache_enabled is false" },
            .bypass_method => .{ .outcome = .bypass, .doc = "method not in lookup_methods (unsafe methods still invalidate, RFC 9111 §4.4)" },
            .bypass_authorization => .{ .outcome = .bypass, .doc = "request carries Authorization and cache_authorized_requests is false (RFC 9111 §3.5)" },
            .bypass_no_store => .{ .outcome = .bypass, .doc = "request Cache-Control: no-store: nothing of the exchange is stored (RFC 9111 §5.2.1.5) and the origin answers" },
            .bypass_upgrade => .{ .outcome = .bypass, .doc = "CONNECT or Upgrade" },
            .bypass_grpc => .{ .outcome = .bypass, .doc = "gRPC request" },
            .bypass_range => .{ .outcome = .bypass, .doc = "Range request: partial content is not cached" },
            .bypass_request_body => .{ .outcome = .bypass, .doc = "a GET or HEAD whose headers did not end the stream (not held: under Istio's WasmPlugin holding hangs), or a request with a body on a worker whose Envoy does not deliver bodies to a paused filter" },
            .bypass_request_too_large => .{ .outcome = .bypass, .doc = "request body over max_request_body_bytes" },
            .bypass_trailers => .{ .outcome = .bypass, .doc = "request body ended with trailers while held for a lookup" },
            .bypass_header_error => .{ .outcome = .bypass, .doc = "the request headers or body could not be read from the host" },
            .bypass_buffer_budget => .{ .outcome = .bypass, .doc = "holding the request body would pass max_buffered_body_bytes" },
            .hit_for_pass => .{ .outcome = .bypass, .doc = "the key's last response was not storable less than hit_for_pass_seconds ago: no lookup (Varnish hit-for-pass)" },
        };
    }

    /// The `x-sp-cache` value of this reason.
    pub fn header(r: Reason) []const u8 {
        return r.info().outcome.header();
    }

    /// The counter name without the `sp_cache.` prefix, also the log word.
    pub fn word(r: Reason) []const u8 {
        return @tagName(r);
    }
};

/// Counters that are not request reasons.
pub const Event = enum {
    store_sent,
    store_failed,
    store_dropped,
    store_skipped_status,
    store_skipped_no_store,
    store_skipped_private,
    store_skipped_authorization,
    store_skipped_set_cookie,
    store_skipped_vary_star,
    store_skipped_no_freshness,
    store_skipped_too_large,
    store_skipped_buffer_budget,
    store_skipped_incomplete,
    invalidate_sent,
    invalidate_failed,
    l1_insert,
    l1_evicted,
    l1_insert_skipped,
    entry_rejected_signature,
    entry_rejected_key,
    entry_rejected_malformed,
    entry_rejected_syntax,
    entry_rejected_invalidated,
    coalesce_wait,

    /// When each event counter moves.
    pub fn doc(e: Event) []const u8 {
        return switch (e) {
            .store_sent => "a store went to the backend (stores go batched: one count per store, not per call)",
            .store_failed => "a store's batch was answered with something other than 200/202, or failed",
            .store_dropped => "a store was not sent: max_stores_in_flight calls pending, no memory, or its root went away",
            .store_skipped_status => "response not stored: status not in cacheable_statuses (or 206/304)",
            .store_skipped_no_store => "response not stored: no-store in the response or the request (RFC 9111 §5.2)",
            .store_skipped_private => "response not stored: private (a shared cache, RFC 9111 §5.2.2.7)",
            .store_skipped_authorization => "response to a request with Authorization lacks public, s-maxage and must-revalidate (RFC 9111 §3.5)",
            .store_skipped_set_cookie => "response carries Set-Cookie and store_set_cookie_responses is false",
            .store_skipped_vary_star => "Vary: * (never matches, RFC 9111 §4.1)",
            .store_skipped_no_freshness => "no freshness lifetime and no validator: nothing a later request could use",
            .store_skipped_too_large => "body over max_response_body_bytes",
            .store_skipped_buffer_budget => "copying the body would pass max_buffered_body_bytes",
            .store_skipped_incomplete => "the response ended early (reset) or with a body that disagrees with its Content-Length",
            .invalidate_sent => "an invalidation was dispatched after an unsafe request (RFC 9111 §4.4)",
            .invalidate_failed => "an invalidation call failed",
            .l1_insert => "an entry set was written to the L1",
            .l1_evicted => "an L1 slot was emptied to stay inside l1_max_bytes (or replaced by another key)",
            .l1_insert_skipped => "an entry was not written to the L1 (over its per-entry share of the budget, or a concurrent write won)",
            .entry_rejected_signature => "a candidate entry's signature (keyed BLAKE2b-256) did not verify",
            .entry_rejected_key => "a candidate entry carried another key",
            .entry_rejected_malformed => "one candidate span of a decodable answer (or an L1 slot) could not be decoded",
            .entry_rejected_syntax => "a candidate entry failed replay validation (status, header syntax, framing)",
            .entry_rejected_invalidated => "a candidate entry predates an invalidation of its key",
            .coalesce_wait => "a request waited for a concurrent miss of the same key",
        };
    }
};

/// Writes the metrics table of docs/metrics.md.
pub fn writeMarkdown(w: *std.Io.Writer) std.Io.Writer.Error!void {
    try w.writeAll(
        \\# Filter metrics
        \\
        \\Generated from `filter/src/reason.zig` by `zig build metrics-doc`; do not edit by hand.
        \\Envoy shows every metric as `wasmcustom.sp_cache.<name>` in `/stats` (Prometheus:
        \\`envoy_wasmcustom_sp_cache_<name>`).
        \\
        \\## Request reasons
        \\
        \\Every request the filter sees ends with exactly one reason; its counter moves once and the
        \\client sees its outcome in `x-sp-cache`.
        \\
        \\| counter | x-sp-cache | when |
        \\|---|---|---|
        \\
    );
    inline for (comptime std.enums.values(Reason)) |r| {
        try w.print("| `{s}` | {s} | {s} |\n", .{ r.word(), r.header(), r.info().doc });
    }
    try w.writeAll(
        \\
        \\Three more counters sum the reasons by outcome: `hit`, `miss` and `bypass` (every request moves
        \\exactly one of them; hit ratio = hit / (hit + miss + bypass)).
        \\
        \\## Other counters
        \\
        \\| counter | when |
        \\|---|---|
        \\
    );
    inline for (comptime std.enums.values(Event)) |e| {
        try w.print("| `{s}` | {s} |\n", .{ @tagName(e), e.doc() });
    }
    try w.writeAll(
        \\
        \\## Gauges and histograms
        \\
        \\| metric | type | meaning |
        \\|---|---|---|
        \\| `l1_bytes` | gauge | bytes held in the L1 (all workers of one Envoy), never above l1_max_bytes |
        \\| `buffered_body_bytes` | gauge | body bytes the filter holds now (held requests, response copies), all workers |
        \\| `stores_queued` | gauge | stores waiting for their batch to go to the backend (at most one tick, 5 ms), all workers |
        \\| `lookup_duration_us` | histogram | backend lookup round trip, µs |
        \\| `callback_duration_us` | histogram | time spent inside the filter's callbacks per request, µs (one request in 16 is timed: reading the clock is a host call) |
        \\
    );
}

test "every reason has an outcome, and the header follows it" {
    try std.testing.expectEqualStrings("HIT", Reason.l1_hit.header());
    try std.testing.expectEqualStrings("MISS", Reason.lookup_timeout.header());
    try std.testing.expectEqualStrings("BYPASS", Reason.hit_for_pass.header());
    inline for (comptime std.enums.values(Reason)) |r| try std.testing.expect(r.info().doc.len > 0);
}
