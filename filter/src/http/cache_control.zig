//! Cache-Control directives (RFC 9111 §5.2) as a shared cache reads them, parsed from every
//! `cache-control` field line (a list may span lines) with quoted-string aware splitting, exact
//! case-insensitive directive names (no spaces around `=`) and quoted or token arguments.
//! Invalid or duplicated arguments are resolved conservatively: the first occurrence of a
//! delta-seconds directive wins and an invalid `max-age`/`s-maxage` makes the response stale
//! (RFC 9111 §4.2.1); a directive that would permit more reuse is ignored when invalid. The
//! targeted `CDN-Cache-Control` field (RFC 9213) is parsed in `targeted.zig` into the same struct.
//! Slices in the results borrow the header values passed in.
const std = @import("std");
const headers = @import("../headers.zig");
const Pair = headers.Pair;

/// Largest delta-seconds value (RFC 9111 §1.2.2): bigger values are sent and read as 2^31.
pub const delta_seconds_max: u32 = 1 << 31;

/// Parses delta-seconds (RFC 9111 §1.2.2): one or more ASCII digits, saturating at 2^31 seconds.
/// Null for anything else (sign, decimal point, spaces, empty).
pub fn deltaSeconds(s: []const u8) ?u32 {
    if (s.len == 0) return null;
    var v: u64 = 0;
    for (s) |ch| {
        if (ch < '0' or ch > '9') return null;
        v = @min(v * 10 + (ch - '0'), delta_seconds_max);
    }
    return @intCast(v);
}

/// A directive argument in token or quoted-string form (RFC 9111 §5.2), quotes removed. Escapes
/// are left as sent (`\x`); no directive this cache reads has a reason to use them.
pub fn unquote(arg: []const u8) []const u8 {
    if (arg.len >= 2 and arg[0] == '"' and arg[arg.len - 1] == '"') return arg[1 .. arg.len - 1];
    return arg;
}

/// Marks directive `bit` as seen; true on its first occurrence (RFC 9111 §4.2.1: the first
/// occurrence of a duplicated directive is the one used, even when its argument is invalid).
fn firstSeen(seen: *u8, comptime bit: u3) bool {
    const mask: u8 = 1 << bit;
    defer seen.* |= mask;
    return seen.* & mask == 0;
}

/// One directive element `name[=arg]` of a Cache-Control list.
pub const Directive = struct {
    name: []const u8,
    /// raw argument (may be quoted), null when there is no `=`
    arg: ?[]const u8,

    /// Splits an element at its first `=`; the name keeps any whitespace so that `max-age =5`
    /// names no known directive.
    pub fn split(item: []const u8) Directive {
        const eq = std.mem.findScalar(u8, item, '=') orelse return .{ .name = item, .arg = null };
        return .{ .name = item[0..eq], .arg = item[eq + 1 ..] };
    }

    /// The member of enum `E` whose tag, with `_` read as `-`, equals the name ignoring case.
    pub fn known(self: Directive, comptime E: type) ?E {
        inline for (@typeInfo(E).@"enum".field_names) |tag| {
            if (self.name.len == tag.len and eqlDashed(self.name, tag)) return @field(E, tag);
        }
        return null;
    }

    fn eqlDashed(name: []const u8, tag: []const u8) bool {
        for (name, tag) |n, c| {
            if (std.ascii.toLower(n) != if (c == '_') '-' else c) return false;
        }
        return true;
    }

    /// The argument as delta-seconds: null when absent, `invalid` when present but not valid.
    pub fn seconds(self: Directive, invalid: ?u32) ?u32 {
        const arg = self.arg orelse return invalid;
        return deltaSeconds(unquote(arg)) orelse invalid;
    }
};

/// A field-name list of a qualified `no-cache="..."` or `private="..."` (RFC 9111 §5.2.2.4,
/// §5.2.2.7), as the comma-separated text inside the quotes.
pub const FieldList = struct {
    kind: enum { no_cache, private },
    names: []const u8,
};

/// Response directives for a shared cache (RFC 9111 §5.2.2). Delta-seconds are in seconds.
pub const ResponseDirectives = struct {
    /// §5.2.2.5
    no_store: bool = false,
    /// §5.2.2.4 unqualified: every reuse needs validation
    no_cache: bool = false,
    /// §5.2.2.7 unqualified: a shared cache must not store the response
    private: bool = false,
    /// §5.2.2.9
    public: bool = false,
    /// §5.2.2.2
    must_revalidate: bool = false,
    /// §5.2.2.8
    proxy_revalidate: bool = false,
    /// §5.2.2.3
    must_understand: bool = false,
    /// §5.2.2.6
    no_transform: bool = false,
    /// RFC 8246; no effect on a shared cache's reuse decision
    immutable: bool = false,
    /// §5.2.2.1, seconds; invalid → 0
    max_age: ?u32 = null,
    /// §5.2.2.10, seconds; invalid → 0
    s_maxage: ?u32 = null,
    /// RFC 5861 §3, seconds; invalid → null
    stale_while_revalidate: ?u32 = null,
    /// RFC 5861 §4, seconds; invalid → null
    stale_if_error: ?u32 = null,
    /// true when these came from a targeted field (RFC 9213): Expires is then ignored
    targeted: bool = false,
    /// qualified forms, at most `field_lists.len`; more make the directive unqualified
    field_lists: [4]FieldList = undefined,
    field_list_count: u8 = 0,
    /// directives whose invalid first occurrence reads as null (bit per directive)
    seen: u8 = 0,

    /// Parses every `cache-control` line of `pairs` (RFC 9111 §5.2).
    pub fn parse(pairs: []const Pair) ResponseDirectives {
        var d: ResponseDirectives = .{};
        var it = headers.MemberIterator.init(pairs, "cache-control");
        while (it.next()) |item| d.apply(Directive.split(item));
        return d;
    }

    /// The response directives this cache reads, by name (`_` stands for `-`).
    pub const Name = enum { no_store, no_cache, private, public, must_revalidate, proxy_revalidate, must_understand, no_transform, immutable, max_age, s_maxage, stale_while_revalidate, stale_if_error };

    /// Sets directive `name` when it is one that takes no argument; false for the others.
    pub fn setFlag(d: *ResponseDirectives, name: Name) bool {
        switch (name) {
            .no_store => d.no_store = true,
            .public => d.public = true,
            .must_revalidate => d.must_revalidate = true,
            .proxy_revalidate => d.proxy_revalidate = true,
            .must_understand => d.must_understand = true,
            .no_transform => d.no_transform = true,
            .immutable => d.immutable = true,
            else => return false,
        }
        return true;
    }

    fn apply(d: *ResponseDirectives, dir: Directive) void {
        const name = dir.known(Name) orelse return;
        if (d.setFlag(name)) return;
        switch (name) {
            .no_cache => d.qualify(.no_cache, dir.arg),
            .private => d.qualify(.private, dir.arg),
            .max_age => if (firstSeen(&d.seen, 0)) {
                d.max_age = dir.seconds(0);
            },
            .s_maxage => if (firstSeen(&d.seen, 1)) {
                d.s_maxage = dir.seconds(0);
            },
            .stale_while_revalidate => if (firstSeen(&d.seen, 2)) {
                d.stale_while_revalidate = dir.seconds(null);
            },
            .stale_if_error => if (firstSeen(&d.seen, 3)) {
                d.stale_if_error = dir.seconds(null);
            },
            else => {},
        }
    }

    /// Records `no-cache`/`private` with an optional field-name list. A list with no name in
    /// it, or one past capacity, counts as the unqualified directive (the stricter reading).
    pub fn qualify(d: *ResponseDirectives, kind: @FieldType(FieldList, "kind"), arg: ?[]const u8) void {
        const names = if (arg) |a| unquote(a) else "";
        var it = headers.ListIterator{ .rest = names };
        if (it.next() == null or d.field_list_count == d.field_lists.len) {
            switch (kind) {
                .no_cache => d.no_cache = true,
                .private => d.private = true,
            }
            return;
        }
        d.field_lists[d.field_list_count] = .{ .kind = kind, .names = names };
        d.field_list_count += 1;
    }

    /// True when a qualified `no-cache` or `private` names header `name`: a shared cache must
    /// not store that field, nor send it without validation (RFC 9111 §5.2.2.4, §5.2.2.7, §3.1).
    pub fn withholdsField(d: *const ResponseDirectives, name: []const u8) bool {
        for (d.field_lists[0..d.field_list_count]) |list| {
            var it = headers.ListIterator{ .rest = list.names };
            while (it.next()) |n| if (std.ascii.eqlIgnoreCase(n, name)) return true;
        }
        return false;
    }

    /// True when stale reuse is forbidden whatever else allows it: must-revalidate,
    /// proxy-revalidate, or s-maxage, which implies proxy-revalidate for a shared cache
    /// (RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10, §4.2.4).
    pub fn forbidsStale(d: *const ResponseDirectives) bool {
        return d.must_revalidate or d.proxy_revalidate or d.s_maxage != null;
    }
};

/// Request directives (RFC 9111 §5.2.1). Delta-seconds are in seconds.
pub const RequestDirectives = struct {
    /// `max_stale` value meaning "any staleness" (max-stale without an argument, §5.2.1.2)
    pub const unbounded: u32 = std.math.maxInt(u32);

    /// §5.2.1.5
    no_store: bool = false,
    /// §5.2.1.4, or `Pragma: no-cache` in a request without Cache-Control (§5.4)
    no_cache: bool = false,
    /// §5.2.1.7
    only_if_cached: bool = false,
    /// §5.2.1.6
    no_transform: bool = false,
    /// §5.2.1.1, seconds; invalid → 0 (the stricter reading)
    max_age: ?u32 = null,
    /// §5.2.1.2, seconds; `unbounded` without argument; invalid → null (ignored)
    max_stale: ?u32 = null,
    /// §5.2.1.3, seconds; invalid → null (ignored)
    min_fresh: ?u32 = null,
    /// directives whose invalid first occurrence reads as null (bit per directive)
    seen: u8 = 0,

    const Name = enum { no_store, no_cache, only_if_cached, no_transform, max_age, max_stale, min_fresh };

    /// Parses every `cache-control` line of a request; when the request has no Cache-Control
    /// line at all, `Pragma: no-cache` sets `no_cache` (RFC 9111 §5.4, kept for HTTP/1.0 clients).
    pub fn parse(pairs: []const Pair) RequestDirectives {
        var d: RequestDirectives = .{};
        var it = headers.MemberIterator.init(pairs, "cache-control");
        while (it.next()) |item| {
            const dir = Directive.split(item);
            switch (dir.known(Name) orelse continue) {
                .no_store => d.no_store = true,
                .no_cache => d.no_cache = true,
                .only_if_cached => d.only_if_cached = true,
                .no_transform => d.no_transform = true,
                .max_age => if (firstSeen(&d.seen, 0)) {
                    d.max_age = dir.seconds(0);
                },
                .max_stale => if (firstSeen(&d.seen, 1)) {
                    d.max_stale = if (dir.arg == null) unbounded else dir.seconds(null);
                },
                .min_fresh => if (firstSeen(&d.seen, 2)) {
                    d.min_fresh = dir.seconds(null);
                },
            }
        }
        if (headers.get(pairs, "cache-control") == null) {
            var pragmas = headers.MemberIterator.init(pairs, "pragma");
            while (pragmas.next()) |item| {
                if (std.ascii.eqlIgnoreCase(item, "no-cache")) d.no_cache = true;
            }
        }
        return d;
    }
};

const t = std.testing;
const fuzz = @import("fuzz.zig");

fn cc(comptime values: []const []const u8) [values.len]Pair {
    var out: [values.len]Pair = undefined;
    for (values, 0..) |v, i| out[i] = .{ .name = "Cache-Control", .value = v };
    return out;
}

test "RFC 9111 1.2.2: delta-seconds saturate at 2^31 and reject non-digits" {
    const cases = [_]struct { s: []const u8, want: ?u32 }{
        .{ .s = "0", .want = 0 },                             .{ .s = "003600", .want = 3600 },
        .{ .s = "2147483647", .want = 2147483647 },           .{ .s = "2147483648", .want = 1 << 31 },
        .{ .s = "99999999999999999999999", .want = 1 << 31 }, .{ .s = "", .want = null },
        .{ .s = "-1", .want = null },                         .{ .s = "3600.0", .want = null },
        .{ .s = " 1", .want = null },                         .{ .s = "1a", .want = null },
    };
    for (cases) |c| try t.expectEqual(c.want, deltaSeconds(c.s));
}

test "RFC 9111 5.2 / 4.2.1: response directive parsing (suite cc-parse and cc-freshness cases)" {
    const Case = struct { lines: []const Pair, max_age: ?u32 = null, s_maxage: ?u32 = null };
    const cases = [_]Case{
        .{ .lines = &cc(&.{"max-age=3600"}), .max_age = 3600 },
        .{ .lines = &cc(&.{"MaX-aGe=3600"}), .max_age = 3600 },
        .{ .lines = &cc(&.{"foobar, max-age=3600"}), .max_age = 3600 },
        .{ .lines = &cc(&.{"max-age=\"3600\""}), .max_age = 3600 },
        .{ .lines = &cc(&.{"max-age=003600"}), .max_age = 3600 },
        .{ .lines = &cc(&.{"max-age=99999999999"}), .max_age = 1 << 31 },
        // first occurrence wins, within a line and across lines
        .{ .lines = &cc(&.{"max-age=1800, max-age=1"}), .max_age = 1800 },
        .{ .lines = &cc(&.{ "max-age=1", "max-age=1800" }), .max_age = 1 },
        // invalid values make the response stale
        .{ .lines = &cc(&.{"max-age=-3600"}), .max_age = 0 },
        .{ .lines = &cc(&.{"max-age='3600'"}), .max_age = 0 },
        .{ .lines = &cc(&.{"max-age=3600.0"}), .max_age = 0 },
        .{ .lines = &cc(&.{"max-age=a3600"}), .max_age = 0 },
        .{ .lines = &cc(&.{"max-age=3600a"}), .max_age = 0 },
        .{ .lines = &cc(&.{"max-age= 3600"}), .max_age = 0 },
        .{ .lines = &cc(&.{"max-age"}), .max_age = 0 },
        // space before '=' names an unknown directive
        .{ .lines = &cc(&.{"max-age =3600"}) },
        // a directive inside a quoted-string is not a directive
        .{ .lines = &cc(&.{"extension=\"max-age=3600\", max-age=1"}), .max_age = 1 },
        .{ .lines = &cc(&.{"max-age=1, extension=\"max-age=3600\""}), .max_age = 1 },
        .{ .lines = &cc(&.{"x=\"a, max-age=9\", s-maxage=5"}), .s_maxage = 5 },
        .{ .lines = &cc(&.{ "max-age=3600", "s-maxage=1" }), .max_age = 3600, .s_maxage = 1 },
        .{ .lines = &cc(&.{"s-maxage=bad"}), .s_maxage = 0 },
    };
    for (cases) |c| {
        const d = ResponseDirectives.parse(c.lines);
        try t.expectEqual(c.max_age, d.max_age);
        try t.expectEqual(c.s_maxage, d.s_maxage);
    }
}

test "RFC 9111 5.2.2: flags, RFC 5861 windows, and only cache-control lines count" {
    const pairs = [_]Pair{
        .{ .name = "cache-control", .value = "No-StOrE, must-revalidate,proxy-revalidate" },
        .{ .name = "x-cache-control", .value = "public" },
        .{ .name = "Cache-Control", .value = "must-understand, no-transform, immutable, stale-while-revalidate=30, stale-if-error=x" },
        .{ .name = "cache-control", .value = "stale-while-revalidate=99, stale-if-error=60" },
    };
    const d = ResponseDirectives.parse(&pairs);
    try t.expect(d.no_store and d.must_revalidate and d.proxy_revalidate and d.must_understand);
    try t.expect(d.no_transform and d.immutable and !d.public and !d.no_cache and !d.private);
    try t.expectEqual(@as(?u32, 30), d.stale_while_revalidate);
    // invalid stale-if-error is ignored, and being first it still blocks the later one
    try t.expectEqual(@as(?u32, null), d.stale_if_error);
    try t.expect(d.forbidsStale());
    try t.expect(!ResponseDirectives.parse(&cc(&.{"max-age=5"})).forbidsStale());
    try t.expect(ResponseDirectives.parse(&cc(&.{"s-maxage=5"})).forbidsStale());
}

test "RFC 9111 5.2.2.4 / 5.2.2.7: qualified no-cache and private" {
    const d = ResponseDirectives.parse(&cc(&.{ "no-cache=\"a, B\"", "private=x-secret, max-age=3600" }));
    try t.expect(!d.no_cache and !d.private);
    try t.expect(d.withholdsField("A") and d.withholdsField("b") and d.withholdsField("x-secret"));
    try t.expect(!d.withholdsField("c"));
    // an empty list is read as the unqualified directive
    try t.expect(ResponseDirectives.parse(&cc(&.{"no-cache=\"\""})).no_cache);
    try t.expect(ResponseDirectives.parse(&cc(&.{"private=\" , \""})).private);
    try t.expect(ResponseDirectives.parse(&cc(&.{"No-CaChE"})).no_cache);
    // past capacity, the stricter reading
    const many = ResponseDirectives.parse(&cc(&.{"private=\"a\", private=\"b\", private=\"c\", private=\"d\", private=\"e\""}));
    try t.expect(many.private and many.withholdsField("d") and !many.withholdsField("e"));
}

test "RFC 9111 5.2.1 / 5.4: request directives and Pragma" {
    const r = RequestDirectives.parse(&cc(&.{ "max-age=0, max-stale", "min-fresh=20, only-if-cached, no-transform", "no-store, NO-CACHE" }));
    try t.expectEqual(@as(?u32, 0), r.max_age);
    try t.expectEqual(@as(?u32, RequestDirectives.unbounded), r.max_stale);
    try t.expectEqual(@as(?u32, 20), r.min_fresh);
    try t.expect(r.only_if_cached and r.no_transform and r.no_store and r.no_cache);
    const bad = RequestDirectives.parse(&cc(&.{"max-age=x, max-stale=-1, min-fresh=1.5"}));
    try t.expectEqual(@as(?u32, 0), bad.max_age);
    try t.expectEqual(@as(?u32, null), bad.max_stale);
    try t.expectEqual(@as(?u32, null), bad.min_fresh);
    try t.expectEqual(@as(?u32, 1000), RequestDirectives.parse(&cc(&.{"max-stale=1000"})).max_stale);

    const pragma_only = [_]Pair{.{ .name = "Pragma", .value = "foo, No-Cache" }};
    try t.expect(RequestDirectives.parse(&pragma_only).no_cache);
    const both = [_]Pair{ .{ .name = "pragma", .value = "no-cache" }, .{ .name = "cache-control", .value = "nothing-to-see-here" } };
    try t.expect(!RequestDirectives.parse(&both).no_cache);
    const ext = [_]Pair{.{ .name = "pragma", .value = "unrecognised-extension" }};
    try t.expect(!RequestDirectives.parse(&ext).no_cache);
}

test "cache-control parsing is total on random bytes" {
    var prng = std.Random.DefaultPrng.init(11);
    const r = prng.random();
    const alphabet = "max-age=s-maxage\"no-cache,private; 0123456789'\\\t stale-if-error";
    var block: fuzz.Block = .{};
    for (0..20000) |_| {
        const pairs = block.draw(r, &.{ "cache-control", "pragma" }, alphabet);
        const d = ResponseDirectives.parse(pairs);
        _ = d.withholdsField("a");
        _ = RequestDirectives.parse(pairs);
    }
}
