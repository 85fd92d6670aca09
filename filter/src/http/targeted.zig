//! Targeted cache-control fields (RFC 9213), such as `CDN-Cache-Control`: a Structured Field
//! Dictionary (RFC 8941 §3.2) holding Cache-Control response directives for one class of cache.
//! A cache that reads a targeted field uses it instead of Cache-Control and Expires when it is
//! present, non-empty and valid; a field that fails to parse, or whose `max-age`-like directive
//! is not a non-negative Integer, is ignored as a whole (the suite's "invalid Structured Field"
//! cases). Duplicate keys follow RFC 8941: the last one wins. Parsing is total.
const std = @import("std");
const headers = @import("../headers.zig");
const cache_control = @import("cache_control.zig");
const Pair = headers.Pair;
const ResponseDirectives = cache_control.ResponseDirectives;

/// The targeted field for CDN caches (RFC 9213 §3).
pub const cdn_cache_control = "cdn-cache-control";

/// Directives from every line of targeted field `name` (RFC 9213 §2.1), or null when the field
/// is absent, empty, or invalid; the caller then falls back to Cache-Control and Expires. The
/// result has `targeted` set, which tells freshness to ignore Expires.
pub fn parseTargeted(pairs: []const Pair, name: []const u8) ?ResponseDirectives {
    var d: ResponseDirectives = .{ .targeted = true };
    var any = false;
    var lines = headers.ValueIterator{ .pairs = pairs, .name = name };
    while (lines.next()) |line| {
        var p = Parser{ .s = line };
        p.skip(" ");
        if (p.i == line.len) continue;
        any = true;
        p.dictionary(&d) catch return null;
    }
    return if (any) d else null;
}

/// The directives a shared cache obeys: those of `CDN-Cache-Control` when `use_cdn_cache_control`
/// is set and that field is valid (RFC 9213 §2.1), else those of Cache-Control (RFC 9111 §5.2).
pub fn effectiveDirectives(pairs: []const Pair, use_cdn_cache_control: bool) ResponseDirectives {
    if (use_cdn_cache_control) {
        if (parseTargeted(pairs, cdn_cache_control)) |d| return d;
    }
    return ResponseDirectives.parse(pairs);
}

const Invalid = error{Invalid};

const Item = union(enum) {
    integer: i64,
    decimal,
    string: []const u8,
    token,
    bytes,
    boolean: bool,
    inner_list,
};

const Parser = struct {
    s: []const u8,
    i: usize = 0,

    fn peek(p: *const Parser) ?u8 {
        return if (p.i < p.s.len) p.s[p.i] else null;
    }

    fn skip(p: *Parser, set: []const u8) void {
        while (p.peek()) |c| {
            if (std.mem.findScalar(u8, set, c) == null) return;
            p.i += 1;
        }
    }

    fn eat(p: *Parser, c: u8) bool {
        if (p.peek() != c) return false;
        p.i += 1;
        return true;
    }

    // RFC 8941 §4.2.2
    fn dictionary(p: *Parser, d: *ResponseDirectives) Invalid!void {
        while (true) {
            const name = try p.key();
            const value: Item = if (p.eat('=')) (if (p.peek() == '(') try p.innerList() else try p.bareItem()) else .{ .boolean = true };
            try p.parameters();
            try apply(d, name, value);
            p.skip(" \t");
            if (p.i == p.s.len) return;
            if (!p.eat(',')) return error.Invalid;
            p.skip(" \t");
            if (p.i == p.s.len) return error.Invalid;
        }
    }

    // RFC 8941 §4.2.3.3
    fn key(p: *Parser) Invalid![]const u8 {
        const start = p.i;
        const first = p.peek() orelse return error.Invalid;
        if (!std.ascii.isLower(first) and first != '*') return error.Invalid;
        p.i += 1;
        while (p.peek()) |c| : (p.i += 1) {
            if (!(std.ascii.isLower(c) or std.ascii.isDigit(c) or std.mem.findScalar(u8, "_-.*", c) != null)) break;
        }
        return p.s[start..p.i];
    }

    // RFC 8941 §4.2.3.2
    fn parameters(p: *Parser) Invalid!void {
        while (p.eat(';')) {
            p.skip(" ");
            _ = try p.key();
            if (p.eat('=')) _ = try p.bareItem();
        }
    }

    // RFC 8941 §4.2.1.2
    fn innerList(p: *Parser) Invalid!Item {
        _ = p.eat('(');
        while (true) {
            p.skip(" ");
            if (p.eat(')')) return .inner_list;
            _ = try p.bareItem();
            try p.parameters();
            const c = p.peek() orelse return error.Invalid;
            if (c != ' ' and c != ')') return error.Invalid;
        }
    }

    // RFC 8941 §4.2.3.1
    fn bareItem(p: *Parser) Invalid!Item {
        const c = p.peek() orelse return error.Invalid;
        if (c == '-' or std.ascii.isDigit(c)) return p.number();
        if (c == '"') return p.string();
        if (std.ascii.isAlphabetic(c) or c == '*') {
            p.i += 1;
            while (p.peek()) |x| : (p.i += 1) if (!isTchar(x) and x != ':' and x != '/') break;
            return .token;
        }
        if (c == ':') {
            p.i += 1;
            while (p.peek()) |x| : (p.i += 1) if (!std.ascii.isAlphanumeric(x) and x != '+' and x != '/' and x != '=') break;
            return if (p.eat(':')) .bytes else error.Invalid;
        }
        if (c == '?') {
            p.i += 1;
            if (p.eat('0')) return .{ .boolean = false };
            if (p.eat('1')) return .{ .boolean = true };
        }
        return error.Invalid;
    }

    // RFC 8941 §4.2.4: at most 15 integer digits, or 12 + '.' + 1..3 for a Decimal
    fn number(p: *Parser) Invalid!Item {
        const negative = p.eat('-');
        var v: i64 = 0;
        var n: usize = 0;
        while (p.peek()) |c| : (p.i += 1) {
            if (!std.ascii.isDigit(c)) break;
            n += 1;
            if (n > 15) return error.Invalid;
            v = v * 10 + (c - '0');
        }
        if (n == 0) return error.Invalid;
        if (!p.eat('.')) return .{ .integer = if (negative) -v else v };
        if (n > 12) return error.Invalid;
        var frac: usize = 0;
        while (p.peek()) |c| : (p.i += 1) {
            if (!std.ascii.isDigit(c)) break;
            frac += 1;
        }
        return if (frac >= 1 and frac <= 3) .decimal else error.Invalid;
    }

    // RFC 8941 §4.2.5: printable ASCII, `\` only before `"` or `\`
    fn string(p: *Parser) Invalid!Item {
        _ = p.eat('"');
        const start = p.i;
        while (p.peek()) |c| : (p.i += 1) {
            if (c == '\\') {
                p.i += 1;
                const e = p.peek() orelse return error.Invalid;
                if (e != '"' and e != '\\') return error.Invalid;
            } else if (c == '"') {
                p.i += 1;
                return .{ .string = p.s[start .. p.i - 1] };
            } else if (c < 0x20 or c > 0x7e) return error.Invalid;
        }
        return error.Invalid;
    }
};

fn isTchar(c: u8) bool {
    return std.ascii.isAlphanumeric(c) or std.mem.findScalar(u8, "!#$%&'*+-.^_`|~", c) != null;
}

// Maps one Dictionary member onto the directives (RFC 9213 §2.1: directive values are typed).
fn apply(d: *ResponseDirectives, key: []const u8, value: Item) Invalid!void {
    const Name = ResponseDirectives.Name;
    const name = (cache_control.Directive{ .name = key, .arg = null }).known(Name) orelse return;
    switch (name) {
        .max_age, .s_maxage, .stale_while_revalidate, .stale_if_error => {
            if (value != .integer or value.integer < 0) return error.Invalid;
            const v: u32 = @intCast(@min(value.integer, cache_control.delta_seconds_max));
            switch (name) {
                .max_age => d.max_age = v,
                .s_maxage => d.s_maxage = v,
                .stale_while_revalidate => d.stale_while_revalidate = v,
                else => d.stale_if_error = v,
            }
        },
        .no_cache, .private => switch (value) {
            .boolean => |b| if (b) d.qualify(if (name == .no_cache) .no_cache else .private, null),
            .string => |s| d.qualify(if (name == .no_cache) .no_cache else .private, s),
            else => return error.Invalid,
        },
        else => {
            if (value != .boolean) return error.Invalid;
            if (value.boolean) _ = d.setFlag(name);
        },
    }
}

const t = std.testing;
const fuzz = @import("fuzz.zig");

fn cdn(v: []const u8) [2]Pair {
    return .{ .{ .name = "Cache-Control", .value = "no-store" }, .{ .name = "CDN-Cache-Control", .value = v } };
}

test "RFC 9213 2.1: a valid CDN-Cache-Control replaces Cache-Control (suite cdn-cache-control cases)" {
    const cases = [_]struct { v: []const u8, max_age: ?u32 = null, no_store: bool = false, private: bool = false, no_cache: bool = false }{
        .{ .v = "max-age=3600", .max_age = 3600 },
        .{ .v = "max-age=2147483648", .max_age = 1 << 31 },
        .{ .v = "max-age=99999999999", .max_age = 1 << 31 },
        .{ .v = "foobar, max-age=3600", .max_age = 3600 },
        .{ .v = "max-age=0", .max_age = 0 },
        .{ .v = "private", .private = true },
        .{ .v = "no-cache", .no_cache = true },
        .{ .v = "no-store", .no_store = true },
        .{ .v = "max-age=1, max-age=7", .max_age = 7 },
        .{ .v = "max-age=5;a=1, x=(1 \"s\" tok);b, y=:aGk=:, z=?0, w=1.5, v=*t/x:y", .max_age = 5 },
        .{ .v = "  max-age=9 ,\tpublic", .max_age = 9 },
    };
    for (cases) |c| {
        const d = effectiveDirectives(&cdn(c.v), true);
        try t.expect(d.targeted);
        try t.expectEqual(c.max_age, d.max_age);
        try t.expectEqual(c.no_store, d.no_store);
        try t.expectEqual(c.private, d.private);
        try t.expectEqual(c.no_cache, d.no_cache);
    }
}

test "RFC 9213 2.1: invalid, empty or absent CDN-Cache-Control falls back to Cache-Control" {
    const invalid = [_][]const u8{
        "max-age=10000, &&&&&", "max-age=\"10000\"",  "MaX-aGe=3600", "max-age =100", "max-age= 100",
        "max-age=-1",           "max-age=1.5",        "no-store=1",   "max-age=1,",   "a=\"unterminated",
        "a=\"bad\\q\"",         "a=1234567890123456", "a=(1 2",       "a=:abc",       "a=?2",
        "private=tok",
    };
    for (invalid) |v| {
        const d = effectiveDirectives(&cdn(v), true);
        t.expect(!d.targeted and d.no_store) catch |e| {
            std.debug.print("accepted {s}\n", .{v});
            return e;
        };
    }
    try t.expect(!effectiveDirectives(&cdn("  "), true).targeted);
    try t.expect(!effectiveDirectives(&cdn("max-age=5"), false).targeted);
    const qualified = effectiveDirectives(&cdn("private=\"set-cookie\""), true);
    try t.expect(!qualified.private and qualified.withholdsField("Set-Cookie"));
}

test "targeted parsing is total on random bytes" {
    var prng = std.Random.DefaultPrng.init(5);
    const r = prng.random();
    const alphabet = "max-age=1;,()\"\\:?*. 0a-_";
    var buf: [40]u8 = undefined;
    for (0..20000) |_| {
        const pairs = [_]Pair{.{ .name = cdn_cache_control, .value = fuzz.text(r, &buf, alphabet) }};
        _ = parseTargeted(&pairs, cdn_cache_control);
    }
}
