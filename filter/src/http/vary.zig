//! Secondary keys (RFC 9111 §4.1) and content-coding safety (RFC 9110 §12.5.3). `VaryNames`
//! reads every `Vary` line; `variantHash` digests the request's values of those fields so that a
//! stored variant is selected only by a request whose values match after the normalisations
//! §4.1 allows: field lines combined, whitespace around list commas removed, and letter case
//! folded for the fields whose values are case-insensitive (Accept-Encoding, Accept-Language,
//! Accept-Charset). Order of members is kept, since a server may rank equal-q values by it. A
//! field that is absent never matches one that is present, even empty. `contentCodingAcceptable`
//! says whether a stored response's content codings are ones the request accepts.
const std = @import("std");
const headers = @import("../headers.zig");
const Pair = headers.Pair;
const Sha256 = std.crypto.hash.blake2.Blake2b256; // the variant hash is BLAKE2b-256 (docs/protocol.md)

/// Version tag hashed first; changing the layout means changing the tag.
pub const version_tag = "sp-istio-cache/vary/1";

/// The field names of all `Vary` lines of a response (RFC 9111 §4.1), de-duplicated
/// case-insensitively and sorted by their lower-case form. Names borrow the header values.
pub const VaryNames = struct {
    /// most distinct names kept; a response naming more is treated like `Vary: *`
    pub const capacity = 32;

    /// `*` was listed (or more than `capacity` names): no request can match (§4.1)
    star: bool = false,
    names: [capacity][]const u8 = undefined,
    len: usize = 0,

    /// Parses every `vary` line of response `pairs`. Empty members are skipped.
    pub fn parse(pairs: []const Pair) VaryNames {
        var v: VaryNames = .{};
        var it = headers.MemberIterator.init(pairs, "vary");
        while (it.next()) |name| v.add(name);
        return v;
    }

    fn add(v: *VaryNames, name: []const u8) void {
        if (std.mem.eql(u8, name, "*")) v.star = true;
        if (v.star) return;
        var i: usize = 0;
        while (i < v.len and std.ascii.lessThanIgnoreCase(v.names[i], name)) i += 1;
        if (i < v.len and std.ascii.eqlIgnoreCase(v.names[i], name)) return;
        if (v.len == capacity) {
            v.star = true;
            return;
        }
        std.mem.copyBackwards([]const u8, v.names[i + 1 .. v.len + 1], v.names[i..v.len]);
        v.names[i] = name;
        v.len += 1;
    }

    /// The names, sorted; empty when there is no Vary or when `star` is set.
    pub fn slice(v: *const VaryNames) []const []const u8 {
        return if (v.star) &.{} else v.names[0..v.len];
    }
};

/// BLAKE2b-256 over the request's values of the fields `names` nominates (RFC 9111 §4.1), after the
/// normalisation described at the top of this file. Layout: the version tag, then per name in
/// order its lower-case form and either a 0 byte (absent) or a 1 byte and the normalised value,
/// each variable part preceded by its length as u64 big-endian. Two requests select the same
/// stored variant iff their hashes are equal. For `names.star` the hash is meaningless: never
/// reuse such a response.
pub fn variantHash(names: *const VaryNames, request_pairs: []const Pair) [32]u8 {
    var h = Sha256.init(.{});
    lengthPrefixed(&h, version_tag);
    for (names.slice()) |name| {
        u64be(&h, name.len);
        var lower: [1]u8 = undefined;
        for (name) |c| {
            lower[0] = std.ascii.toLower(c);
            h.update(&lower);
        }
        if (headers.get(request_pairs, name) == null) {
            h.update(&.{0});
            continue;
        }
        h.update(&.{1});
        var counter: Counter = .{};
        normalise(request_pairs, name, &counter);
        u64be(&h, counter.n);
        normalise(request_pairs, name, &h);
    }
    return h.finalResult();
}

fn lengthPrefixed(h: *Sha256, data: []const u8) void {
    u64be(h, data.len);
    h.update(data);
}

fn u64be(h: *Sha256, n: u64) void {
    var b: [8]u8 = undefined;
    std.mem.writeInt(u64, &b, n, .big);
    h.update(&b);
}

const Counter = struct {
    n: u64 = 0,
    fn update(c: *Counter, bytes: []const u8) void {
        c.n += bytes.len;
    }
};

/// True for request fields whose values are case-insensitive throughout (outside quotes).
fn caseInsensitiveValue(name: []const u8) bool {
    const names = [_][]const u8{ "accept-encoding", "accept-language", "accept-charset" };
    return headers.inList(&names, name);
}

// Writes the normalised value of field `name` to `sink` (anything with `update([]const u8)`):
// the lines' comma-separated members, each trimmed of SP/HTAB, joined by ",". Empty members are
// kept, so only whitespace and line boundaries are normalised away.
fn normalise(pairs: []const Pair, name: []const u8, sink: anytype) void {
    const fold = caseInsensitiveValue(name);
    var first = true;
    var lines = headers.ValueIterator{ .pairs = pairs, .name = name };
    while (lines.next()) |line| {
        var rest = line;
        while (true) {
            var i: usize = 0;
            var quoted = false;
            while (i < rest.len) : (i += 1) {
                const c = rest[i];
                if (quoted and c == '\\') i += 1 else if (c == '"') quoted = !quoted else if (c == ',' and !quoted) break;
            }
            const end = @min(i, rest.len);
            if (!first) sink.update(",");
            first = false;
            emit(std.mem.trim(u8, rest[0..end], " \t"), fold, sink);
            if (end == rest.len) break;
            rest = rest[end + 1 ..];
        }
    }
}

fn emit(member: []const u8, fold: bool, sink: anytype) void {
    if (!fold) return sink.update(member);
    var quoted = false;
    var buf: [1]u8 = undefined;
    for (member) |c| {
        if (c == '"') quoted = !quoted;
        buf[0] = if (quoted) c else std.ascii.toLower(c);
        sink.update(&buf);
    }
}

/// True when every content coding in the response's `Content-Encoding` lines is acceptable to
/// the request (RFC 9110 §12.5.3): no Accept-Encoding accepts anything; otherwise a coding needs
/// a member naming it (`x-gzip` is `gzip`, `x-compress` is `compress`) or `*` with q > 0; a
/// response with no coding (or only `identity`) is acceptable unless `identity;q=0`, or `*;q=0`
/// with no `identity` member, excludes it. An invalid qvalue counts as 0, and a coding named
/// twice takes its lowest q: when unsure, the stored response is not served.
pub fn contentCodingAcceptable(request_pairs: []const Pair, response_pairs: []const Pair) bool {
    if (headers.get(request_pairs, "accept-encoding") == null) return true;
    var any = false;
    var it = headers.MemberIterator.init(response_pairs, "content-encoding");
    while (it.next()) |coding| {
        if (std.ascii.eqlIgnoreCase(coding, "identity")) continue;
        any = true;
        if (!accepts(request_pairs, coding)) return false;
    }
    return any or accepts(request_pairs, "identity");
}

// The q of `coding` (or of `*`) in the Accept-Encoding lines of `pairs` is above 0.
fn accepts(pairs: []const Pair, coding: []const u8) bool {
    var named: ?u16 = null;
    var star: ?u16 = null;
    var it = headers.MemberIterator.init(pairs, "accept-encoding");
    while (it.next()) |member| {
        const semi = std.mem.findScalar(u8, member, ';') orelse member.len;
        const name = std.mem.trim(u8, member[0..semi], " \t");
        const q = qvalue(member[semi..]);
        if (sameCoding(name, coding)) named = @min(named orelse q, q) else if (std.mem.eql(u8, name, "*")) star = @min(star orelse q, q);
    }
    if (named) |q| return q > 0;
    if (star) |q| return q > 0;
    return std.ascii.eqlIgnoreCase(coding, "identity");
}

fn sameCoding(a: []const u8, b: []const u8) bool {
    return std.ascii.eqlIgnoreCase(canonical(a), canonical(b));
}

fn canonical(c: []const u8) []const u8 {
    if (std.ascii.eqlIgnoreCase(c, "x-gzip")) return "gzip";
    if (std.ascii.eqlIgnoreCase(c, "x-compress")) return "compress";
    return c;
}

// Weight in thousandths from `;`-separated parameters (RFC 9110 §12.4.2); 1000 without `q`,
// 0 when `q` is not a valid qvalue.
fn qvalue(params: []const u8) u16 {
    var it = std.mem.splitScalar(u8, params, ';');
    while (it.next()) |raw| {
        const param = std.mem.trim(u8, raw, " \t");
        if (param.len < 2 or std.ascii.toLower(param[0]) != 'q' or param[1] != '=') continue;
        const v = param[2..];
        if (v.len == 0 or v.len > 5 or (v[0] != '0' and v[0] != '1')) return 0;
        if (v.len > 1 and v[1] != '.') return 0;
        var thousandths: u16 = @as(u16, v[0] - '0') * 1000;
        var scale: u16 = 100;
        for (if (v.len > 2) v[2..] else "") |d| {
            if (d < '0' or d > '9') return 0;
            thousandths += (d - '0') * scale;
            scale /= 10;
        }
        return if (thousandths > 1000) 0 else thousandths;
    }
    return 1000;
}

const t = std.testing;
const fuzz = @import("fuzz.zig");

fn pair(name: []const u8, value: []const u8) Pair {
    return .{ .name = name, .value = value };
}

fn hashOf(vary: []const u8, req: []const Pair) [32]u8 {
    const v = VaryNames.parse(&.{pair("vary", vary)});
    return variantHash(&v, req);
}

test "RFC 9111 4.1: Vary names, star, de-duplication (suite vary-parse cases)" {
    const v = VaryNames.parse(&.{ pair("Vary", "Foo, bar"), pair("vary", ", BAR,accept-encoding"), pair("x", "y") });
    try t.expect(!v.star);
    try t.expectEqual(@as(usize, 3), v.slice().len);
    try t.expectEqualStrings("accept-encoding", v.slice()[0]);
    try t.expectEqualStrings("bar", v.slice()[1]);
    try t.expectEqualStrings("Foo", v.slice()[2]);
    const stars = [_][]const Pair{
        &.{pair("vary", "*")},                      &.{pair("vary", "*, *")},
        &.{ pair("vary", "*"), pair("vary", "*") }, &.{pair("vary", ", *")},
        &.{ pair("vary", ""), pair("vary", "*") },  &.{pair("vary", "*, Foo")},
        &.{pair("vary", "Foo, *")},
    };
    for (stars) |s| try t.expect(VaryNames.parse(s).star and VaryNames.parse(s).slice().len == 0);
    try t.expectEqual(@as(usize, 0), VaryNames.parse(&.{}).slice().len);
}

test "RFC 9111 4.1: more names than capacity read as *" {
    var buf: [VaryNames.capacity + 1][4]u8 = undefined;
    var pairs: [VaryNames.capacity + 1]Pair = undefined;
    for (&buf, &pairs, 0..) |*b, *p, i| {
        b.* = .{ 'h', 'd', 'a' + @as(u8, @intCast(i / 26)), 'a' + @as(u8, @intCast(i % 26)) };
        p.* = pair("vary", b);
    }
    try t.expect(!VaryNames.parse(pairs[0..VaryNames.capacity]).star);
    try t.expect(VaryNames.parse(&pairs).star);
}

test "RFC 9111 4.1: variant hash matches and mismatches (suite vary cases)" {
    const foo1 = hashOf("Foo", &.{pair("Foo", "1")});
    try t.expectEqualSlices(u8, &foo1, &hashOf("foo", &.{ pair("foo", "1"), pair("Other", "3") }));
    try t.expect(!std.mem.eql(u8, &foo1, &hashOf("Foo", &.{pair("Foo", "2")})));
    try t.expect(!std.mem.eql(u8, &foo1, &hashOf("Foo", &.{})));
    // absent and present-but-empty differ
    try t.expect(!std.mem.eql(u8, &hashOf("Foo", &.{}), &hashOf("Foo", &.{pair("foo", "")})));
    // order of request headers and of Vary names does not matter
    const three = hashOf("Foo, Bar, Baz", &.{ pair("Foo", "1"), pair("Bar", "abc"), pair("Baz", "789") });
    try t.expectEqualSlices(u8, &three, &hashOf("baz, foo, bar", &.{ pair("Baz", "789"), pair("Foo", "1"), pair("Bar", "abc") }));
    try t.expect(!std.mem.eql(u8, &three, &hashOf("Foo, Bar, Baz", &.{ pair("Foo", "1"), pair("Baz", "789"), pair("Bar", "abcde") })));
    // combining lines and whitespace around commas
    const combined = hashOf("Foo", &.{pair("Foo", "1, 2")});
    try t.expectEqualSlices(u8, &combined, &hashOf("Foo", &.{ pair("Foo", "1"), pair("Foo", "2") }));
    try t.expectEqualSlices(u8, &combined, &hashOf("Foo", &.{pair("Foo", " 1 ,\t2 ")}));
    try t.expectEqualSlices(u8, &combined, &hashOf("Foo", &.{pair("Foo", "1,2")}));
    try t.expect(!std.mem.eql(u8, &combined, &hashOf("Foo", &.{pair("Foo", "2, 1")})));
    try t.expect(!std.mem.eql(u8, &combined, &hashOf("Foo", &.{pair("Foo", "1,,2")})));
    // quoted commas and case: kept for unknown fields, folded for Accept-Language
    try t.expect(!std.mem.eql(u8, &hashOf("Foo", &.{pair("Foo", "\"a, b\"")}), &hashOf("Foo", &.{pair("Foo", "\"a,b\"")})));
    try t.expect(!std.mem.eql(u8, &hashOf("Foo", &.{pair("Foo", "A")}), &hashOf("Foo", &.{pair("Foo", "a")})));
    const lang = hashOf("Accept-Language", &.{pair("Accept-Language", "en, de")});
    try t.expectEqualSlices(u8, &lang, &hashOf("Accept-Language", &.{pair("accept-language", "eN, De")}));
    try t.expectEqualSlices(u8, &lang, &hashOf("Accept-Language", &.{pair("accept-language", " en ,   de")}));
    try t.expect(!std.mem.eql(u8, &lang, &hashOf("Accept-Language", &.{pair("accept-language", "de, en")})));
}

test "variant hash golden value (independently computed with Python hashlib.blake2b)" {
    // layout: tag, then "foo" absent, then "x-a" present with value "1,b"
    const got = hashOf("X-A, foo", &.{pair("x-a", " 1 , b")});
    var hex: [64]u8 = undefined;
    _ = std.fmt.bufPrint(&hex, "{x}", .{&got}) catch unreachable;
    try t.expectEqualStrings("e655521b763c86e8893497146afc10b1b3c14204a2132c9e0d93aad986f4d84e", &hex);
}

test "RFC 9110 12.5.3: content codings the request accepts" {
    const gz = [_]Pair{pair("content-encoding", "gzip")};
    const plain = [_]Pair{};
    const Case = struct { ae: ?[]const u8, resp: []const Pair, want: bool };
    const cases = [_]Case{
        .{ .ae = null, .resp = &gz, .want = true },
        .{ .ae = "gzip, br", .resp = &gz, .want = true },
        .{ .ae = "GZIP;q=0.5", .resp = &gz, .want = true },
        .{ .ae = "x-gzip", .resp = &gz, .want = true },
        .{ .ae = "br", .resp = &gz, .want = false },
        .{ .ae = "", .resp = &gz, .want = false },
        .{ .ae = "gzip;q=0", .resp = &gz, .want = false },
        .{ .ae = "gzip;q=0.000", .resp = &gz, .want = false },
        .{ .ae = "gzip;q=0.001", .resp = &gz, .want = true },
        .{ .ae = "gzip; q=1.0", .resp = &gz, .want = true },
        .{ .ae = "gzip;q=2", .resp = &gz, .want = false },
        .{ .ae = "gzip;q=0.5x", .resp = &gz, .want = false },
        .{ .ae = "gzip, gzip;q=0", .resp = &gz, .want = false },
        .{ .ae = "*", .resp = &gz, .want = true },
        .{ .ae = "*;q=0, gzip", .resp = &gz, .want = true },
        .{ .ae = "*;q=0", .resp = &gz, .want = false },
        .{ .ae = "gzip", .resp = &.{ pair("content-encoding", "gzip"), pair("Content-Encoding", "br") }, .want = false },
        .{ .ae = "gzip, br", .resp = &.{pair("content-encoding", "gzip, br")}, .want = true },
        .{ .ae = "br", .resp = &plain, .want = true },
        .{ .ae = "", .resp = &plain, .want = true },
        .{ .ae = "identity;q=0", .resp = &plain, .want = false },
        .{ .ae = "*;q=0", .resp = &plain, .want = false },
        .{ .ae = "*;q=0, identity", .resp = &plain, .want = true },
        .{ .ae = "br", .resp = &.{pair("content-encoding", "identity")}, .want = true },
    };
    for (cases, 0..) |c, i| {
        var req: [1]Pair = undefined;
        if (c.ae) |v| req[0] = pair("Accept-Encoding", v);
        const n: usize = if (c.ae == null) 0 else 1;
        t.expectEqual(c.want, contentCodingAcceptable(req[0..n], c.resp)) catch |e| {
            std.debug.print("case {d}\n", .{i});
            return e;
        };
    }
}

test "vary helpers are total on random input" {
    var prng = std.Random.DefaultPrng.init(17);
    const r = prng.random();
    const alphabet = "ab*, \t\"\\;q=0.19xgzip";
    var block: fuzz.Block = .{};
    for (0..10000) |_| {
        const pairs = block.draw(r, &.{ "vary", "a", "accept-encoding", "content-encoding" }, alphabet);
        const v = VaryNames.parse(pairs);
        _ = variantHash(&v, pairs);
        _ = contentCodingAcceptable(pairs, pairs);
    }
}
