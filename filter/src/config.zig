//! Plugin configuration: the JSON of `filter/config.schema.json` (the single source of truth),
//! parsed once per root context into an immutable `Config`. Defaults are the struct's field
//! defaults, integer bounds the `int_bounds` table; filter/tests.zig checks both against the
//! schema key by key, and tests/test_pluginconfig.py checks this parser and the Python validator
//! agree on boundary values. Unknown keys, wrong types and out-of-range values are refused with
//! the key named.
const std = @import("std");

/// Log levels of the schema, in proxy-wasm order (trace = 0 … error = 4).
pub const LogLevel = enum(u32) { trace = 0, debug = 1, info = 2, warn = 3, @"error" = 4 };

/// Traffic direction recorded as `sp.traffic.direction`.
pub const Direction = enum { outbound, inbound };

/// Methods the schema allows in `lookup_methods`.
pub const Method = enum { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS };

/// The parsed plugin configuration. Strings and slices are owned by the `Parsed` arena.
pub const Config = struct {
    cache_enabled: bool = true,
    backend_cluster: []const u8 = "sp_cache_backend",
    backend_authority: []const u8 = "sp-cache-backend",
    backend_key: []const u8 = "",
    backend_key_env: []const u8 = "SP_CACHE_BACKEND_KEY",
    signing_key: []const u8 = "",
    signing_key_env: []const u8 = "SP_CACHE_SIGNING_KEY",
    service_name: []const u8 = "sp-istio-cache",
    traffic_direction: Direction = .outbound,
    /// milliseconds
    lookup_timeout_ms: u32 = 200,
    /// milliseconds
    store_timeout_ms: u32 = 2000,
    /// bytes
    max_request_body_bytes: u32 = 65536,
    /// bytes
    max_response_body_bytes: u32 = 262144,
    /// bytes, per worker VM
    max_buffered_body_bytes: u32 = 16777216,
    max_stores_in_flight: u32 = 64,
    lookup_methods: []const Method = &.{ .GET, .HEAD },
    /// null = "all": every final status but 206 and 304
    cacheable_statuses: ?[]const u16 = null,
    heuristic_freshness: bool = false,
    /// seconds
    heuristic_max_seconds: u32 = 86400,
    /// seconds; 0 = off
    default_ttl_seconds: u32 = 0,
    /// lower-case names
    redact_headers: []const []const u8 = &.{ "authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key", "x-public-key" },
    cache_authorized_requests: bool = false,
    store_set_cookie_responses: bool = false,
    inject_traceparent: bool = false,
    /// bytes, all workers of one Envoy; 0 = no L1
    l1_max_bytes: u32 = 16777216,
    /// seconds; 0 = off
    hit_for_pass_seconds: u32 = 30,
    /// milliseconds; 0 = no coalescing
    coalesce_timeout_ms: u32 = 5000,
    max_variants: u32 = 8,
    /// seconds
    stale_retention_seconds: u32 = 86400,
    cdn_cache_control: bool = true,
    log_level: LogLevel = .info,

    /// True if `method` is configured for lookup.
    pub fn lookupMethod(self: *const Config, method: []const u8) bool {
        for (self.lookup_methods) |m| if (std.mem.eql(u8, @tagName(m), method)) return true;
        return false;
    }

    /// True if a response with `status` may be stored (RFC 9111 §3: final, understood).
    pub fn cacheableStatus(self: *const Config, status: u32) bool {
        if (status < 200 or status > 599 or status == 206 or status == 304) return false;
        const list = self.cacheable_statuses orelse return true;
        for (list) |s| if (s == status) return true;
        return false;
    }

    /// True if the header name is redacted (never sent to the backend).
    pub fn redacted(self: *const Config, name: []const u8) bool {
        for (self.redact_headers) |r| if (std.ascii.eqlIgnoreCase(r, name)) return true;
        return false;
    }
};

/// Inclusive bounds of every integer key (the schema's minimum/maximum).
pub const IntBound = struct { key: []const u8, min: u32, max: u32 };

/// The integer keys and their bounds; filter/tests.zig checks this table against the schema.
pub const int_bounds = [_]IntBound{
    .{ .key = "lookup_timeout_ms", .min = 1, .max = 60000 },
    .{ .key = "store_timeout_ms", .min = 1, .max = 60000 },
    .{ .key = "max_request_body_bytes", .min = 0, .max = 983040 },
    .{ .key = "max_response_body_bytes", .min = 0, .max = 8388608 },
    .{ .key = "max_buffered_body_bytes", .min = 65536, .max = 1073741824 },
    .{ .key = "max_stores_in_flight", .min = 1, .max = 100000 },
    .{ .key = "heuristic_max_seconds", .min = 0, .max = 31536000 },
    .{ .key = "default_ttl_seconds", .min = 0, .max = 31536000 },
    .{ .key = "l1_max_bytes", .min = 0, .max = 1073741824 },
    .{ .key = "hit_for_pass_seconds", .min = 0, .max = 3600 },
    .{ .key = "coalesce_timeout_ms", .min = 0, .max = 60000 },
    .{ .key = "max_variants", .min = 1, .max = 64 },
    .{ .key = "stale_retention_seconds", .min = 0, .max = 31536000 },
};

/// String keys with a length limit, and those that must name an environment variable.
pub const max_string_len = 256;
pub const env_keys = [_][]const u8{ "backend_key_env", "signing_key_env" };
/// Least signing key length in bytes (the schema's pattern).
pub const min_signing_key_len = 32;

fn intBound(comptime key: []const u8) IntBound {
    for (int_bounds) |b| if (std.mem.eql(u8, b.key, key)) return b;
    @compileError("no bound for " ++ key);
}

/// What went wrong, for the log line: the offending key (or "" for the document) and why.
pub const Diagnostic = struct {
    key_buf: [64]u8 = undefined,
    key_len: usize = 0,
    reason: []const u8 = "",

    /// The offending key (truncated to 64 bytes), "" for the whole document.
    pub fn key(self: *const Diagnostic) []const u8 {
        return self.key_buf[0..self.key_len];
    }

    fn setKey(self: *Diagnostic, k: []const u8) void {
        self.key_len = @min(k.len, self.key_buf.len);
        @memcpy(self.key_buf[0..self.key_len], k[0..self.key_len]);
    }
};

/// Errors from `parse`; details are in the `Diagnostic`.
pub const Error = error{ InvalidJson, NotAnObject, UnknownKey, WrongType, OutOfRange, Conflict, OutOfMemory };

/// A config and the arena that owns its strings.
pub const Parsed = struct {
    arena: std.heap.ArenaAllocator,
    value: Config,

    /// Frees everything the config owns.
    pub fn deinit(self: *Parsed) void {
        self.arena.deinit();
    }
};

/// Parses plugin configuration JSON. Empty input (or only whitespace) gives the defaults.
/// On error `diag` names the key and the reason.
pub fn parse(gpa: std.mem.Allocator, json: []const u8, diag: *Diagnostic) Error!Parsed {
    var out: Parsed = .{ .arena = std.heap.ArenaAllocator.init(gpa), .value = .{} };
    errdefer out.arena.deinit();
    const a = out.arena.allocator();
    if (std.mem.trim(u8, json, " \t\r\n").len == 0) return out;
    const root = std.json.parseFromSliceLeaky(std.json.Value, a, json, .{}) catch |e| {
        diag.* = .{ .reason = if (e == error.OutOfMemory) "out of memory" else "not valid JSON" };
        return if (e == error.OutOfMemory) error.OutOfMemory else error.InvalidJson;
    };
    if (root != .object) {
        diag.* = .{ .reason = "configuration must be a JSON object" };
        return error.NotAnObject;
    }
    var c: Config = .{};
    var it = root.object.iterator();
    entries: while (it.next()) |entry| {
        const key = entry.key_ptr.*;
        const v = entry.value_ptr.*;
        diag.setKey(key);
        inline for (comptime std.meta.fieldNames(Config)) |name| {
            if (std.mem.eql(u8, name, key)) {
                @field(c, name) = try parseField(@FieldType(Config, name), name, a, v, diag);
                continue :entries;
            }
        }
        return fail(diag, "unknown key", error.UnknownKey);
    }
    if (c.store_set_cookie_responses and c.redacted("set-cookie")) {
        diag.setKey("store_set_cookie_responses");
        diag.reason = "requires set-cookie to be absent from redact_headers (a stored Set-Cookie must be replayed whole)";
        return error.Conflict;
    }
    diag.* = .{};
    out.value = c;
    return out;
}

fn parseField(comptime T: type, comptime name: []const u8, a: std.mem.Allocator, v: std.json.Value, diag: *Diagnostic) Error!T {
    if (T == bool) return boolean(v, diag);
    if (T == u32) {
        const b = comptime intBound(name);
        return integer(v, b.min, b.max, diag);
    }
    if (T == []const u8) {
        const s = try string(v, diag);
        if (comptime std.mem.eql(u8, name, "signing_key")) {
            if (s.len != 0 and (s.len < min_signing_key_len or !printableAscii(s)))
                return fail(diag, "must be empty or 32 to 256 printable ASCII characters without spaces", error.OutOfRange);
        }
        if (comptime isEnvKey(name)) {
            if (!validEnvName(s)) return fail(diag, "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most 128)", error.OutOfRange);
        } else if (comptime std.mem.eql(u8, name, "backend_cluster") or std.mem.eql(u8, name, "backend_authority")) {
            if (s.len == 0) return fail(diag, "must not be empty", error.OutOfRange);
        }
        return s;
    }
    if (T == []const Method) return methods(a, v, diag);
    if (T == ?[]const u16) return statuses(a, v, diag);
    if (T == []const []const u8) return headerNames(a, v, diag);
    if (@typeInfo(T) == .@"enum") {
        const s = try string(v, diag);
        return std.meta.stringToEnum(T, s) orelse fail(diag, "not one of the allowed values", error.OutOfRange);
    }
    @compileError("no parser for config field " ++ name);
}

/// Every byte a printable ASCII character other than space (the schema's `[!-~]`).
fn printableAscii(s: []const u8) bool {
    for (s) |b| if (b < '!' or b > '~') return false;
    return true;
}

fn isEnvKey(comptime name: []const u8) bool {
    for (env_keys) |k| if (std.mem.eql(u8, k, name)) return true;
    return false;
}

/// True for `^[A-Za-z_][A-Za-z0-9_]{0,127}$`.
pub fn validEnvName(s: []const u8) bool {
    if (s.len == 0 or s.len > 128 or std.ascii.isDigit(s[0])) return false;
    for (s) |ch| if (!std.ascii.isAlphanumeric(ch) and ch != '_') return false;
    return true;
}

/// True for an RFC 9110 token in lower case (the schema's redact_headers pattern).
pub fn lowerToken(s: []const u8) bool {
    if (s.len == 0) return false;
    for (s) |ch| {
        const ok = std.ascii.isDigit(ch) or (ch >= 'a' and ch <= 'z') or std.mem.indexOfScalar(u8, "!#$%&'*+.^_`|~-", ch) != null;
        if (!ok) return false;
    }
    return true;
}

fn fail(diag: *Diagnostic, reason: []const u8, err: Error) Error {
    diag.reason = reason;
    return err;
}

fn boolean(v: std.json.Value, diag: *Diagnostic) Error!bool {
    if (v != .bool) return fail(diag, "must be a boolean", error.WrongType);
    return v.bool;
}

fn string(v: std.json.Value, diag: *Diagnostic) Error![]const u8 {
    if (v != .string) return fail(diag, "must be a string", error.WrongType);
    if (v.string.len > max_string_len) return fail(diag, "longer than 256 bytes", error.OutOfRange);
    return v.string;
}

fn integer(v: std.json.Value, min: u32, max: u32, diag: *Diagnostic) Error!u32 {
    const i: i64 = switch (v) {
        .integer => |i| i,
        .float => |f| if (@floor(f) == f and f >= -1e15 and f <= 1e15) @intFromFloat(f) else return fail(diag, "must be an integer", error.WrongType),
        .number_string => return fail(diag, "integer out of range", error.OutOfRange),
        else => return fail(diag, "must be an integer", error.WrongType),
    };
    if (i < min or i > max) return fail(diag, "integer out of range", error.OutOfRange);
    return @intCast(i);
}

fn array(v: std.json.Value, diag: *Diagnostic) Error![]const std.json.Value {
    if (v != .array) return fail(diag, "must be an array", error.WrongType);
    return v.array.items;
}

fn methods(a: std.mem.Allocator, v: std.json.Value, diag: *Diagnostic) Error![]const Method {
    const items = try array(v, diag);
    const out = try a.alloc(Method, items.len);
    for (items, out, 0..) |item, *m, i| {
        if (item != .string) return fail(diag, "items must be strings", error.WrongType);
        m.* = std.meta.stringToEnum(Method, item.string) orelse return fail(diag, "items must be one of GET HEAD POST PUT PATCH DELETE OPTIONS", error.OutOfRange);
        for (out[0..i]) |prev| if (prev == m.*) return fail(diag, "items must be unique", error.OutOfRange);
    }
    return out;
}

fn statuses(a: std.mem.Allocator, v: std.json.Value, diag: *Diagnostic) Error!?[]const u16 {
    if (v == .string and std.mem.eql(u8, v.string, "all")) return null;
    if (v != .array) return fail(diag, "must be \"all\" or an array of statuses", error.WrongType);
    const out = try a.alloc(u16, v.array.items.len);
    for (v.array.items, out, 0..) |item, *s, i| {
        s.* = @intCast(try integer(item, 200, 599, diag));
        if (s.* == 206 or s.* == 304) return fail(diag, "206 and 304 cannot be stored", error.OutOfRange);
        for (out[0..i]) |prev| if (prev == s.*) return fail(diag, "items must be unique", error.OutOfRange);
    }
    return out;
}

fn headerNames(a: std.mem.Allocator, v: std.json.Value, diag: *Diagnostic) Error![]const []const u8 {
    const items = try array(v, diag);
    const out = try a.alloc([]const u8, items.len);
    for (items, out, 0..) |item, *o, i| {
        if (item != .string) return fail(diag, "items must be strings", error.WrongType);
        if (!lowerToken(item.string)) return fail(diag, "items must be lower-case header names (RFC 9110 tokens)", error.OutOfRange);
        o.* = item.string;
        for (out[0..i]) |prev| if (std.mem.eql(u8, prev, o.*)) return fail(diag, "items must be unique", error.OutOfRange);
    }
    return out;
}

const t = std.testing;

test "defaults from empty config" {
    var d: Diagnostic = .{};
    var p = try parse(t.allocator, "", &d);
    defer p.deinit();
    try t.expectEqual(@as(u32, 200), p.value.lookup_timeout_ms);
    try t.expect(p.value.lookupMethod("GET"));
    try t.expect(!p.value.lookupMethod("POST"));
    try t.expect(p.value.cacheableStatus(500));
    try t.expect(!p.value.cacheableStatus(206));
    try t.expect(!p.value.cacheableStatus(304));
    try t.expectEqual(@as(u32, 0), p.value.default_ttl_seconds);
}

test "every key parses" {
    var d: Diagnostic = .{};
    var p = try parse(t.allocator,
        \\{"cache_enabled": false, "backend_cluster": "c", "backend_authority": "a", "backend_key": "k",
        \\ "backend_key_env": "K", "signing_key": "0123456789abcdef0123456789abcdef", "signing_key_env": "S_1",
        \\ "service_name": "s", "traffic_direction": "inbound", "lookup_timeout_ms": 50, "store_timeout_ms": 60,
        \\ "max_request_body_bytes": 0, "max_response_body_bytes": 10, "max_buffered_body_bytes": 65536,
        \\ "max_stores_in_flight": 3, "lookup_methods": ["POST"], "cacheable_statuses": [200, 204],
        \\ "heuristic_freshness": true, "heuristic_max_seconds": 60, "default_ttl_seconds": 5,
        \\ "redact_headers": ["cookie"], "cache_authorized_requests": true, "store_set_cookie_responses": true,
        \\ "inject_traceparent": true, "l1_max_bytes": 0, "hit_for_pass_seconds": 0, "coalesce_timeout_ms": 0,
        \\ "max_variants": 2, "stale_retention_seconds": 7, "log_level": "debug"}
    , &d);
    defer p.deinit();
    const c = p.value;
    try t.expect(!c.cache_enabled);
    try t.expectEqual(Direction.inbound, c.traffic_direction);
    try t.expectEqual(@as(u32, 3), c.max_stores_in_flight);
    try t.expect(c.lookupMethod("POST"));
    try t.expect(c.cacheableStatus(204));
    try t.expect(!c.cacheableStatus(500));
    try t.expectEqual(LogLevel.debug, c.log_level);
    try t.expectEqualStrings("S_1", c.signing_key_env);
}

test "errors name the key" {
    const cases = [_]struct { json: []const u8, key: []const u8, err: Error }{
        .{ .json = "{\"bogus\": 1}", .key = "bogus", .err = error.UnknownKey },
        .{ .json = "{\"lookup_timeout_ms\": \"200\"}", .key = "lookup_timeout_ms", .err = error.WrongType },
        .{ .json = "{\"lookup_timeout_ms\": 0}", .key = "lookup_timeout_ms", .err = error.OutOfRange },
        .{ .json = "{\"max_request_body_bytes\": 983041}", .key = "max_request_body_bytes", .err = error.OutOfRange },
        .{ .json = "{\"max_response_body_bytes\": 8388609}", .key = "max_response_body_bytes", .err = error.OutOfRange },
        .{ .json = "{\"cache_enabled\": 1}", .key = "cache_enabled", .err = error.WrongType },
        .{ .json = "{\"lookup_methods\": [\"GET\", \"GET\"]}", .key = "lookup_methods", .err = error.OutOfRange },
        .{ .json = "{\"lookup_methods\": [\"TRACE\"]}", .key = "lookup_methods", .err = error.OutOfRange },
        .{ .json = "{\"cacheable_statuses\": [200, 304]}", .key = "cacheable_statuses", .err = error.OutOfRange },
        .{ .json = "{\"cacheable_statuses\": \"some\"}", .key = "cacheable_statuses", .err = error.WrongType },
        .{ .json = "{\"backend_cluster\": \"\"}", .key = "backend_cluster", .err = error.OutOfRange },
        .{ .json = "{\"signing_key\": \"short\"}", .key = "signing_key", .err = error.OutOfRange },
        .{ .json = "{\"signing_key\": \"0123456789abcdef 0123456789abcdef\"}", .key = "signing_key", .err = error.OutOfRange },
        .{ .json = "{\"signing_key\": \"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}", .key = "signing_key", .err = error.OutOfRange },
        .{ .json = "{\"signing_key_env\": \"1X\"}", .key = "signing_key_env", .err = error.OutOfRange },
        .{ .json = "{\"redact_headers\": [\"Cookie\"]}", .key = "redact_headers", .err = error.OutOfRange },
        .{ .json = "{\"redact_headers\": [\"a\\r\\nb\"]}", .key = "redact_headers", .err = error.OutOfRange },
        .{ .json = "{\"store_set_cookie_responses\": true}", .key = "store_set_cookie_responses", .err = error.Conflict },
        .{ .json = "{\"max_response_body_bytes\": 1.5}", .key = "max_response_body_bytes", .err = error.WrongType },
        .{ .json = "{\"traffic_direction\": \"sideways\"}", .key = "traffic_direction", .err = error.OutOfRange },
        .{ .json = "[1]", .key = "", .err = error.NotAnObject },
        .{ .json = "{nope", .key = "", .err = error.InvalidJson },
    };
    for (cases) |case| {
        var d: Diagnostic = .{};
        try t.expectError(case.err, parse(t.allocator, case.json, &d));
        try t.expectEqualStrings(case.key, d.key());
        try t.expect(d.reason.len > 0);
    }
}
