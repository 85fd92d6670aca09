//! Validation (RFC 9110 §8.8, §13; RFC 9111 §4.3): entity-tag parsing and comparison, answering
//! a client's conditional GET/HEAD from a stored response (If-None-Match with `*`, then
//! If-Modified-Since), the validators a cache sends to revalidate, which stored response a 304
//! selects, and the merge of a 304's header fields into the stored ones. Entity-tags are parsed
//! strictly (`W/` upper case, quotes required): an unquoted tag is not a validator. Dates take
//! `now_s` (Unix seconds) only to resolve two-digit years.
const std = @import("std");
const headers = @import("../headers.zig");
const dates = @import("dates.zig");
const fields = @import("fields.zig");
const Pair = headers.Pair;

/// An entity-tag (RFC 9110 §8.8.3).
pub const EntityTag = struct {
    weak: bool,
    /// the opaque-tag with its quotes
    opaque_tag: []const u8,

    /// Parses `[W/]"etagc*"` with etagc = %x21 / %x23-7E / obs-text; surrounding SP/HTAB is
    /// ignored. Null for anything else.
    pub fn parse(raw: []const u8) ?EntityTag {
        var s = std.mem.trim(u8, raw, " \t");
        const weak = std.mem.startsWith(u8, s, "W/");
        if (weak) s = s[2..];
        if (s.len < 2 or s[0] != '"' or s[s.len - 1] != '"') return null;
        for (s[1 .. s.len - 1]) |c| if (c < 0x21 or c == '"' or c == 0x7f) return null;
        return .{ .weak = weak, .opaque_tag = s };
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): both strong and the same opaque-tag.
    pub fn strongEql(a: EntityTag, b: EntityTag) bool {
        return !a.weak and !b.weak and std.mem.eql(u8, a.opaque_tag, b.opaque_tag);
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): the same opaque-tag, either may be weak.
    pub fn weakEql(a: EntityTag, b: EntityTag) bool {
        return std.mem.eql(u8, a.opaque_tag, b.opaque_tag);
    }
};

/// The first `ETag` of a response as an entity-tag, or null (absent or invalid).
pub fn storedEntityTag(pairs: []const Pair) ?EntityTag {
    return EntityTag.parse(headers.get(pairs, "etag") orelse return null);
}

/// The result of matching an If-None-Match field (all its lines) against a stored entity-tag.
pub const NoneMatch = enum { absent, invalid, match, no_match };

/// Evaluates If-None-Match (RFC 9110 §13.1.2) with weak comparison: `*` matches any stored
/// response; a list matches when one member equals `stored`. A field that is not `*` or a list of
/// valid entity-tags is `invalid` (the cache then leaves it to the origin).
pub fn matchNoneMatch(request_pairs: []const Pair, stored: ?EntityTag) NoneMatch {
    var result: NoneMatch = .absent;
    var lines = headers.ValueIterator{ .pairs = request_pairs, .name = "if-none-match" };
    while (lines.next()) |line| {
        if (std.mem.eql(u8, std.mem.trim(u8, line, " \t"), "*")) {
            result = .match;
            continue;
        }
        var it = headers.QuotedListIterator{ .rest = line };
        var members: usize = 0;
        while (it.next()) |member| : (members += 1) {
            const tag = EntityTag.parse(member) orelse return .invalid;
            if (result != .match) result = if (stored != null and tag.weakEql(stored.?)) .match else .no_match;
        }
        if (members == 0) return .invalid;
    }
    return result;
}

/// How a cache answers a conditional request from a fresh stored response (RFC 9111 §4.3.2).
pub const ClientConditional = enum {
    /// no precondition the cache evaluates: send the stored response
    none,
    /// the validators match: send 304 built by `notModifiedFields`
    not_modified,
    /// the precondition is false: send the full stored response
    full,
    /// a precondition only the origin may evaluate (If-Match, If-Unmodified-Since, If-Range, a
    /// conditional non-GET/HEAD, an invalid If-None-Match): forward the request
    forward,
};

/// Evaluates a client's preconditions against a stored response (RFC 9110 §13.1.2, §13.1.3,
/// §13.2.2; RFC 9111 §4.3.2). If-None-Match takes precedence; If-Modified-Since is ignored when
/// If-None-Match is present, when it is not one valid HTTP-date, or for methods other than GET
/// and HEAD; it compares with the stored Last-Modified, else the stored Date, else
/// `stored_received_s` (Unix seconds).
pub fn evaluateClientConditional(method: []const u8, request_pairs: []const Pair, stored_pairs: []const Pair, stored_received_s: i64, now_s: i64) ClientConditional {
    const origin_only = [_][]const u8{ "if-match", "if-unmodified-since", "if-range" };
    for (origin_only) |n| if (headers.get(request_pairs, n) != null) return .forward;
    const has_inm = headers.get(request_pairs, "if-none-match") != null;
    const get_or_head = std.mem.eql(u8, method, "GET") or std.mem.eql(u8, method, "HEAD");
    if (has_inm and !get_or_head) return .forward;
    switch (matchNoneMatch(request_pairs, storedEntityTag(stored_pairs))) {
        .absent => {},
        .invalid => return .forward,
        .match => return .not_modified,
        .no_match => return .full,
    }
    if (!get_or_head or headers.count(request_pairs, "if-modified-since") != 1) return .none;
    const ims = dates.parseHttpDate(headers.get(request_pairs, "if-modified-since").?, now_s) orelse return .none;
    const modified = lastModified(stored_pairs, now_s) orelse
        (dates.parseHttpDate(headers.get(stored_pairs, "date") orelse "", now_s) orelse stored_received_s);
    return if (modified <= ims) .not_modified else .full;
}

fn lastModified(pairs: []const Pair, now_s: i64) ?i64 {
    return dates.parseHttpDate(headers.get(pairs, "last-modified") orelse return null, now_s);
}

/// The stored fields a 304 answer carries (RFC 9110 §15.4.5): Cache-Control, Content-Location,
/// Date, ETag, Expires and Vary, plus Last-Modified when there is no ETag; in stored order. The
/// caller adds Age. Caller frees the slice with `gpa`; pairs borrow `stored_pairs`.
pub fn notModifiedFields(gpa: std.mem.Allocator, stored_pairs: []const Pair) error{OutOfMemory}![]Pair {
    const kept = [_][]const u8{ "cache-control", "content-location", "date", "etag", "expires", "vary" };
    const no_etag = headers.get(stored_pairs, "etag") == null;
    var out: std.ArrayList(Pair) = .empty;
    errdefer out.deinit(gpa);
    for (stored_pairs) |p| {
        if (headers.inList(&kept, p.name) or (no_etag and std.ascii.eqlIgnoreCase(p.name, "last-modified")))
            try out.append(gpa, p);
    }
    return out.toOwnedSlice(gpa);
}

/// Preconditions a cache sends to validate a stored response (RFC 9111 §4.3.1).
pub const Validators = struct {
    /// the stored ETag, as stored (borrowed); null when it has none or it is not a valid tag
    if_none_match: ?[]const u8 = null,
    ims_buf: [29]u8 = undefined,
    ims_len: usize = 0,

    /// The stored Last-Modified re-written as IMF-fixdate, or null (absent or invalid).
    pub fn ifModifiedSince(v: *const Validators) ?[]const u8 {
        return if (v.ims_len == 0) null else v.ims_buf[0..v.ims_len];
    }

    /// True when there is anything to validate with.
    pub fn any(v: *const Validators) bool {
        return v.if_none_match != null or v.ims_len != 0;
    }
};

/// The validators for a conditional request about `stored_pairs` (RFC 9111 §4.3.1): If-None-Match
/// with the entity-tag (MUST), If-Modified-Since with Last-Modified (SHOULD). Date is never used
/// as If-Modified-Since: an origin comparing it with its own modification time could answer 304
/// for a representation changed between those two times.
pub fn validatorRequest(stored_pairs: []const Pair, now_s: i64) Validators {
    var v: Validators = .{};
    if (storedEntityTag(stored_pairs) != null) v.if_none_match = std.mem.trim(u8, headers.get(stored_pairs, "etag").?, " \t");
    if (lastModified(stored_pairs, now_s)) |lm| v.ims_len = dates.formatHttpDate(lm, &v.ims_buf).len;
    return v;
}

/// True when a 304 answering this cache's validation selects `stored_pairs` for update (RFC 9111
/// §4.3.4): a strong ETag in the 304 must strongly equal the stored one, a weak one weakly; else
/// a Last-Modified must equal the stored one. A 304 with no validator at all selects the stored
/// response it answers (the single one this cache validated), as servers that omit ETag from 304
/// are common. When false, the stored response must not be updated or served as validated.
pub fn selectsStored(resp304_pairs: []const Pair, stored_pairs: []const Pair, now_s: i64) bool {
    if (headers.get(resp304_pairs, "etag")) |raw| {
        const new = EntityTag.parse(raw) orelse return false;
        const old = storedEntityTag(stored_pairs) orelse return false;
        return if (new.weak) new.weakEql(old) else new.strongEql(old);
    }
    if (headers.get(resp304_pairs, "last-modified")) |raw| {
        const new = dates.parseHttpDate(raw, now_s) orelse return false;
        return lastModified(stored_pairs, now_s) == new;
    }
    return true;
}

/// True for fields a 304 never changes in a stored response: those that describe the stored
/// content's bytes and framing (Content-Length, RFC 9111 §3.2; Content-Encoding, Content-Range
/// and Transfer-Encoding, whose change would mislabel the stored bytes) and pseudo-headers.
pub fn keptFrom304(name: []const u8) bool {
    if (name.len > 0 and name[0] == ':') return true;
    const frozen = [_][]const u8{ "content-length", "content-encoding", "content-range", "transfer-encoding" };
    return headers.inList(&frozen, name);
}

/// The stored fields freshened by a selected 304 (RFC 9111 §4.3.4, §3.2): every field the 304
/// carries replaces all stored lines of that name (at the first one's position); fields new in
/// the 304 follow in its order; stored fields it lacks stay. Not taken from the 304:
/// `keptFrom304` fields and connection-specific fields (RFC 9110 §7.6.1). `Age` always comes
/// from the 304 (a stored Age no longer describes the response). Compute the new age from the
/// 304's Date and Age and this exchange's times; run `fields.storedFields` and the storage
/// policy on the result before writing it back. Caller frees with `gpa`; pairs borrow inputs.
pub fn freshenHeaders(gpa: std.mem.Allocator, stored_pairs: []const Pair, resp304_pairs: []const Pair) error{OutOfMemory}![]Pair {
    var out: std.ArrayList(Pair) = .empty;
    errdefer out.deinit(gpa);
    for (stored_pairs, 0..) |p, i| {
        const age = std.ascii.eqlIgnoreCase(p.name, "age");
        if (!age and !updatable(resp304_pairs, p.name)) {
            try out.append(gpa, p);
            continue;
        }
        if (headers.get(resp304_pairs, p.name) == null) {
            if (!age) try out.append(gpa, p);
            continue;
        }
        if (headers.get(stored_pairs[0..i], p.name) != null) continue;
        for (resp304_pairs) |q| if (std.ascii.eqlIgnoreCase(q.name, p.name)) try out.append(gpa, q);
    }
    for (resp304_pairs) |q| {
        const age = std.ascii.eqlIgnoreCase(q.name, "age");
        if ((age or updatable(resp304_pairs, q.name)) and headers.get(stored_pairs, q.name) == null) try out.append(gpa, q);
    }
    return out.toOwnedSlice(gpa);
}

fn updatable(resp304_pairs: []const Pair, name: []const u8) bool {
    return !keptFrom304(name) and !fields.isConnectionSpecific(name) and !fields.listedInConnection(resp304_pairs, name);
}

const t = std.testing;
const now: i64 = 1_700_000_000;

fn pair(name: []const u8, value: []const u8) Pair {
    return .{ .name = name, .value = value };
}

const inm_stored = [_]Pair{ pair("etag", "\"abcdef\""), pair("last-modified", "Tue, 14 Nov 2023 21:13:20 GMT") };
const ims_stored = [_]Pair{ pair("date", "Tue, 14 Nov 2023 22:13:20 GMT"), pair("last-modified", "Tue, 14 Nov 2023 21:13:20 GMT") };

test "RFC 9110 8.8.3: entity-tag syntax and comparison" {
    const a = EntityTag.parse("\"abc\"").?;
    const wa = EntityTag.parse(" W/\"abc\" ").?;
    try t.expect(!a.weak and wa.weak);
    try t.expect(a.strongEql(a) and !a.strongEql(wa) and a.weakEql(wa));
    try t.expect(EntityTag.parse("\"\"") != null and EntityTag.parse("\"abcdef\xc3\xbc\"") != null);
    const bad = [_][]const u8{ "abc", "w/\"abc\"", "W\\\"abc\"", "W\"abc\"", "\"a\"b\"", "\"", "\"a b\"", "" };
    for (bad) |s| try t.expect(EntityTag.parse(s) == null);
}

test "RFC 9110 13.1.2 / RFC 9111 4.3.2: client If-None-Match (suite conditional-etag cases)" {
    const weak_stored = [_]Pair{pair("etag", "W/\"abcdef\"")};
    const Case = struct { req: []const Pair, stored: []const Pair = &inm_stored, method: []const u8 = "GET", want: ClientConditional };
    const cases = [_]Case{
        .{ .req = &.{}, .want = .none },
        .{ .req = &.{pair("If-None-Match", "\"abcdef\"")}, .want = .not_modified },
        .{ .req = &.{pair("if-none-match", "\"1234\", \"abcdef\", \"5678\"")}, .want = .not_modified },
        .{ .req = &.{ pair("if-none-match", "\"1234\""), pair("if-none-match", "\"abcdef\"") }, .want = .not_modified },
        .{ .req = &.{pair("if-none-match", "W/\"abcdef\"")}, .want = .not_modified },
        .{ .req = &.{pair("if-none-match", "W/\"abcdef\"")}, .stored = &weak_stored, .want = .not_modified },
        .{ .req = &.{pair("if-none-match", "\"x\"")}, .want = .full },
        .{ .req = &.{pair("if-none-match", "\"x\"")}, .stored = &.{}, .want = .full },
        .{ .req = &.{pair("if-none-match", "*")}, .want = .not_modified },
        .{ .req = &.{pair("if-none-match", "abcdef")}, .want = .forward },
        .{ .req = &.{pair("if-none-match", "*, \"a\"")}, .want = .forward },
        .{ .req = &.{pair("if-none-match", "")}, .want = .forward },
        .{ .req = &.{pair("if-none-match", "\"abcdef\"")}, .method = "POST", .want = .forward },
        .{ .req = &.{pair("if-match", "\"abcdef\"")}, .want = .forward },
        .{ .req = &.{pair("if-unmodified-since", "Tue, 14 Nov 2023 21:13:20 GMT")}, .want = .forward },
        // If-None-Match wins over If-Modified-Since (conditional-etag-precedence)
        .{ .req = &.{ pair("if-none-match", "\"abcdef\""), pair("if-modified-since", "Tue, 14 Nov 2023 19:00:00 GMT") }, .want = .not_modified },
        .{ .req = &.{ pair("if-none-match", "\"zz\""), pair("if-modified-since", "Tue, 14 Nov 2023 23:00:00 GMT") }, .want = .full },
    };
    for (cases, 0..) |c, i| {
        t.expectEqual(c.want, evaluateClientConditional(c.method, c.req, c.stored, now, now)) catch |e| {
            std.debug.print("case {d}\n", .{i});
            return e;
        };
    }
}

test "RFC 9110 13.1.3 / RFC 9111 4.3.2: client If-Modified-Since (suite conditional-lm cases)" {
    const date_only = [_]Pair{pair("date", "Tue, 14 Nov 2023 22:13:20 GMT")};
    const Case = struct { ims: []const []const u8, stored: []const Pair = &ims_stored, method: []const u8 = "GET", want: ClientConditional };
    const cases = [_]Case{
        .{ .ims = &.{"Tue, 14 Nov 2023 21:13:20 GMT"}, .want = .not_modified },
        .{ .ims = &.{"Tuesday, 14-Nov-23 21:13:20 GMT"}, .want = .not_modified },
        .{ .ims = &.{"Tue, 14 Nov 2023 21:30:00 GMT"}, .want = .not_modified },
        .{ .ims = &.{"Tue, 14 Nov 2023 21:13:19 GMT"}, .want = .full },
        .{ .ims = &.{"Tue, 14 Nov 2023 21:30:00 GMT"}, .method = "HEAD", .want = .not_modified },
        .{ .ims = &.{"Tue, 14 Nov 2023 21:30:00 GMT"}, .method = "POST", .want = .none },
        .{ .ims = &.{"yesterday"}, .want = .none },
        .{ .ims = &.{ "Tue, 14 Nov 2023 21:30:00 GMT", "Tue, 14 Nov 2023 21:30:00 GMT" }, .want = .none },
        // no Last-Modified: Date, then the time the response was stored
        .{ .ims = &.{"Tue, 14 Nov 2023 21:30:00 GMT"}, .stored = &date_only, .want = .full },
        .{ .ims = &.{"Tue, 14 Nov 2023 22:13:20 GMT"}, .stored = &date_only, .want = .not_modified },
        .{ .ims = &.{"Tue, 14 Nov 2023 22:13:19 GMT"}, .stored = &.{}, .want = .full },
        .{ .ims = &.{"Tue, 14 Nov 2023 22:13:20 GMT"}, .stored = &.{}, .want = .not_modified },
    };
    for (cases, 0..) |c, i| {
        var req: [2]Pair = undefined;
        for (c.ims, 0..) |v, j| req[j] = pair("If-Modified-Since", v);
        t.expectEqual(c.want, evaluateClientConditional(c.method, req[0..c.ims.len], c.stored, now, now)) catch |e| {
            std.debug.print("case {d}\n", .{i});
            return e;
        };
    }
}

test "RFC 9110 15.4.5: fields of a 304 built from the stored response" {
    const stored = [_]Pair{ pair(":status", "200"), pair("Date", "d"), pair("content-type", "text/plain"), pair("ETag", "\"a\""), pair("cache-control", "max-age=5"), pair("last-modified", "l"), pair("vary", "accept"), pair("expires", "e"), pair("content-location", "/x") };
    const got = try notModifiedFields(t.allocator, &stored);
    defer t.allocator.free(got);
    const want = [_][]const u8{ "Date", "ETag", "cache-control", "vary", "expires", "content-location" };
    try t.expectEqual(want.len, got.len);
    for (want, got) |w, g| try t.expectEqualStrings(w, g.name);
    const no_etag = try notModifiedFields(t.allocator, &.{ pair("last-modified", "l"), pair("x", "y") });
    defer t.allocator.free(no_etag);
    try t.expectEqual(@as(usize, 1), no_etag.len);
}

test "RFC 9111 4.3.1: validators sent to the origin" {
    const v = validatorRequest(&.{ pair("etag", " W/\"abc\""), pair("last-modified", "Sunday, 06-Nov-94 08:49:37 GMT"), pair("date", "Tue, 14 Nov 2023 22:13:20 GMT") }, now);
    try t.expectEqualStrings("W/\"abc\"", v.if_none_match.?);
    try t.expectEqualStrings("Sun, 06 Nov 1994 08:49:37 GMT", v.ifModifiedSince().?);
    const none = validatorRequest(&.{ pair("etag", "abc"), pair("last-modified", "garbage"), pair("date", "Tue, 14 Nov 2023 22:13:20 GMT") }, now);
    try t.expect(!none.any() and none.ifModifiedSince() == null);
}

test "RFC 9111 4.3.4: which stored response a 304 selects" {
    const stored = [_]Pair{ pair("etag", "\"a\""), pair("last-modified", "Tue, 14 Nov 2023 21:13:20 GMT") };
    const weak = [_]Pair{pair("etag", "W/\"a\"")};
    try t.expect(selectsStored(&.{pair("etag", "\"a\"")}, &stored, now));
    try t.expect(!selectsStored(&.{pair("etag", "\"b\"")}, &stored, now));
    try t.expect(!selectsStored(&.{pair("etag", "\"a\"")}, &weak, now));
    try t.expect(selectsStored(&.{pair("etag", "W/\"a\"")}, &weak, now));
    try t.expect(selectsStored(&.{pair("etag", "W/\"a\"")}, &stored, now));
    try t.expect(!selectsStored(&.{pair("etag", "a")}, &stored, now));
    try t.expect(selectsStored(&.{pair("last-modified", "Tuesday, 14-Nov-23 21:13:20 GMT")}, &stored, now));
    try t.expect(!selectsStored(&.{pair("last-modified", "Tue, 14 Nov 2023 21:13:21 GMT")}, &stored, now));
    try t.expect(selectsStored(&.{pair("date", "x")}, &stored, now));
}

test "RFC 9111 4.3.4 / 3.2: freshening stored headers with a 304 (suite update304 cases)" {
    const stored = [_]Pair{
        pair(":status", "200"),             pair("Date", "old"),          pair("Age", "30"),
        pair("Test-Header", "a"),           pair("Content-Length", "36"), pair("content-encoding", "gzip"),
        pair("Cache-Control", "max-age=1"), pair("x-multi", "1"),         pair("x-keep", "k"),
        pair("x-multi", "2"),               pair("set-cookie", "a=b"),
    };
    const resp304 = [_]Pair{
        pair(":status", "304"),               pair("date", "new"),            pair("test-header", "b"),
        pair("content-length", "10"),         pair("content-encoding", "br"), pair("cache-control", "max-age=3600"),
        pair("X-Multi", "3"),                 pair("connection", "x-hop"),    pair("x-hop", "h"),
        pair("keep-alive", "timeout=1"),      pair("x-new", "n"),             pair("set-cookie", "a=c"),
        pair("transfer-encoding", "chunked"),
    };
    const got = try freshenHeaders(t.allocator, &stored, &resp304);
    defer t.allocator.free(got);
    const want = [_][2][]const u8{
        .{ ":status", "200" },       .{ "date", "new" },              .{ "test-header", "b" },
        .{ "Content-Length", "36" }, .{ "content-encoding", "gzip" }, .{ "cache-control", "max-age=3600" },
        .{ "X-Multi", "3" },         .{ "x-keep", "k" },              .{ "set-cookie", "a=c" },
        .{ "x-new", "n" },
    };
    try t.expectEqual(want.len, got.len);
    for (want, got) |w, g| {
        try t.expectEqualStrings(w[0], g.name);
        try t.expectEqualStrings(w[1], g.value);
    }
    // a 304 with an Age brings it; nothing else changes the order
    const with_age = try freshenHeaders(t.allocator, stored[0..4], &.{pair("age", "5")});
    defer t.allocator.free(with_age);
    try t.expectEqualStrings("age", with_age[2].name);
    try t.expectEqualStrings("5", with_age[2].value);
    try t.expectEqual(@as(usize, 4), with_age.len);
}

test "conditional helpers are total on random input" {
    var prng = std.Random.DefaultPrng.init(8);
    const r = prng.random();
    const names = [_][]const u8{ "etag", "if-none-match", "if-modified-since", "last-modified", "date", "age", "connection", "x" };
    const values = [_][]const u8{ "\"a\"", "W/\"a\"", "*", "a, b", "", "\"a,\" , W/\"", "Tue, 14 Nov 2023 21:13:20 GMT", "x", "\xff\"" };
    var a: [6]Pair = undefined;
    var b: [6]Pair = undefined;
    for (0..3000) |_| {
        for (&a, &b) |*x, *y| {
            x.* = pair(names[r.uintLessThan(usize, names.len)], values[r.uintLessThan(usize, values.len)]);
            y.* = pair(names[r.uintLessThan(usize, names.len)], values[r.uintLessThan(usize, values.len)]);
        }
        _ = evaluateClientConditional("GET", &a, &b, r.int(i64), r.int(i64));
        _ = selectsStored(&a, &b, r.int(i64));
        _ = validatorRequest(&a, r.int(i64));
        t.allocator.free(try freshenHeaders(t.allocator, &a, &b));
        t.allocator.free(try notModifiedFields(t.allocator, &a));
    }
}
