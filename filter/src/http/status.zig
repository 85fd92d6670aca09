//! Status-code classes a cache needs (RFC 9110 §15): interim vs final, the statuses that are
//! heuristically cacheable (§15.1), and the statuses whose caching rules this cache
//! "understands" in the sense of RFC 9111 §3 and §5.2.2.3 (must-understand).
const std = @import("std");

/// True for 1xx (RFC 9110 §15.2): never stored, never the answer to a request.
pub fn isInterim(status: u32) bool {
    return status >= 100 and status <= 199;
}

/// True for 2xx–5xx (RFC 9110 §15): the only statuses a cache may store (RFC 9111 §3).
pub fn isFinal(status: u32) bool {
    return status >= 200 and status <= 599;
}

/// True for the statuses defined as heuristically cacheable (RFC 9110 §15.1): a response with
/// one of them may be given a heuristic freshness lifetime (RFC 9111 §4.2.2).
pub fn isHeuristicallyCacheable(status: u32) bool {
    return switch (status) {
        200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501 => true,
        else => false,
    };
}

/// True for the final statuses of RFC 9110 §15 whose caching semantics this cache implements
/// (RFC 9111 §3, §5.2.2.3). Excluded: 206 (this cache does not combine or serve ranges) and 304
/// (only ever an answer to a conditional request, used to freshen a stored response, §4.3.4).
/// With `must-understand`, a response with any other status is not stored even if `no-store`
/// is absent; with one of these, `no-store` is ignored.
pub fn isUnderstood(status: u32) bool {
    return switch (status) {
        200...205, 300...303, 305, 307, 308, 400...417, 421, 422, 426, 500...505 => true,
        else => false,
    };
}

const t = std.testing;

test "RFC 9110 15.1: heuristically cacheable statuses (suite heuristic-* cases)" {
    const yes = [_]u32{ 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501 };
    for (yes) |s| try t.expect(isHeuristicallyCacheable(s));
    const no = [_]u32{ 100, 201, 202, 205, 302, 303, 304, 307, 400, 403, 500, 502, 503, 504, 599 };
    for (no) |s| try t.expect(!isHeuristicallyCacheable(s));
}

test "RFC 9110 15: interim, final and understood statuses" {
    try t.expect(isInterim(100) and isInterim(103) and !isInterim(200) and !isInterim(99));
    try t.expect(isFinal(200) and isFinal(599) and !isFinal(199) and !isFinal(600) and !isFinal(0));
    // suite status-599-must-understand / status-200-must-understand
    try t.expect(isUnderstood(200) and !isUnderstood(599) and !isUnderstood(206) and !isUnderstood(304));
    try t.expect(isUnderstood(404) and isUnderstood(308) and isUnderstood(426) and !isUnderstood(299));
}
