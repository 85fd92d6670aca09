//! Plugin configuration: the JSON of `filter/config.schema.json`, parsed once per root context
//! into an immutable `Config`. Unknown keys and wrong types are refused with the key named.
const std = @import("std");

/// Log levels of the schema, in proxy-wasm order (trace = 0 … error = 4).
pub const LogLevel = enum(u32) { trace = 0, debug = 1, info = 2, warn = 3, @"error" = 4 };

/// Traffic direction recorded as `sp.traffic.direction`.
pub const Direction = enum { outbound, inbound };

/// Methods the schema allows in `lookup_methods`.
pub const method_names = [_][]const u8{ "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" };

/// The parsed plugin configuration. Strings and slices are owned by the `Parsed` arena.
pub const Config = struct {
    cache_enabled: bool = true,
    backend_cluster: []const u8 = "sp_cache_backend",
    backend_authority: []const u8 = "sp-cache-backend",
    public_key: []const u8 = "",
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
    max_stores_in_flight: u32 = 64,
    /// seconds
    default_ttl_seconds: u32 = 300,
    /// upper-case method names
    lookup_methods: []const []const u8 = &.{ "GET", "HEAD" },
    cacheable_statuses: []const u16 = &.{200},
    /// lower-case, de-duplicated, sorted (the order the fingerprint uses)
    vary_headers: []const []const u8 = &.{},
    /// lower-case
    redact_headers: []const []const u8 = &.{ "authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key", "x-public-key" },
    cache_authorized_requests: bool = false,
    store_set_cookie_responses: bool = false,
    log_level: LogLevel = .info,

    /// True if `method` is configured for lookup.
    pub fn lookupMethod(self: *const Config, method: []const u8) bool {
        for (self.lookup_methods) |m| if (std.mem.eql(u8, m, method)) return true;
        return false;
    }

    /// True if `status` may be stored.
    pub fn cacheableStatus(self: *const Config, status: u32) bool {
        for (self.cacheable_statuses) |s| if (s == status) return true;
        return false;
    }

    /// True if the (lower-case) header name is redacted.
    pub fn redacted(self: *const Config, name: []const u8) bool {
        for (self.redact_headers) |r| if (std.ascii.eqlIgnoreCase(r, name)) return true;
        return false;
    }

    /// True if the header name is one of the vary headers.
    pub fn varies(self: *const Config, name: []const u8) bool {
        for (self.vary_headers) |r| if (std.ascii.eqlIgnoreCase(r, name)) return true;
        return false;
    }
};

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
pub const Error = error{ InvalidJson, NotAnObject, UnknownKey, WrongType, OutOfRange, OutOfMemory };

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
    while (it.next()) |entry| {
        const key = entry.key_ptr.*;
        const v = entry.value_ptr.*;
        diag.setKey(key);
        if (eql(key, "cache_enabled")) {
            c.cache_enabled = try boolean(v, diag);
        } else if (eql(key, "backend_cluster")) {
            c.backend_cluster = try string(v, 1, diag);
        } else if (eql(key, "backend_authority")) {
            c.backend_authority = try string(v, 1, diag);
        } else if (eql(key, "public_key")) {
            c.public_key = try string(v, 0, diag);
        } else if (eql(key, "service_name")) {
            c.service_name = try string(v, 0, diag);
        } else if (eql(key, "traffic_direction")) {
            const s = try string(v, 0, diag);
            c.traffic_direction = std.meta.stringToEnum(Direction, s) orelse return fail(diag, "must be \"outbound\" or \"inbound\"", error.OutOfRange);
        } else if (eql(key, "lookup_timeout_ms")) {
            c.lookup_timeout_ms = try integer(v, 1, 60000, diag);
        } else if (eql(key, "store_timeout_ms")) {
            c.store_timeout_ms = try integer(v, 1, 60000, diag);
        } else if (eql(key, "max_request_body_bytes")) {
            c.max_request_body_bytes = try integer(v, 0, 67108864, diag);
        } else if (eql(key, "max_response_body_bytes")) {
            c.max_response_body_bytes = try integer(v, 0, 67108864, diag);
        } else if (eql(key, "max_stores_in_flight")) {
            c.max_stores_in_flight = try integer(v, 1, 100000, diag);
        } else if (eql(key, "default_ttl_seconds")) {
            c.default_ttl_seconds = try integer(v, 0, 31536000, diag);
        } else if (eql(key, "lookup_methods")) {
            const items = try array(v, diag);
            const ms = try a.alloc([]const u8, items.len);
            for (items, ms) |item, *m| {
                if (item != .string) return fail(diag, "items must be strings", error.WrongType);
                m.* = for (method_names) |name| {
                    if (eql(name, item.string)) break name;
                } else return fail(diag, "items must be one of GET HEAD POST PUT PATCH DELETE OPTIONS", error.OutOfRange);
            }
            if (hasDuplicate(ms, false)) return fail(diag, "items must be unique", error.OutOfRange);
            c.lookup_methods = ms;
        } else if (eql(key, "cacheable_statuses")) {
            const items = try array(v, diag);
            const ss = try a.alloc(u16, items.len);
            for (items, ss) |item, *s| s.* = @intCast(try integer(item, 100, 599, diag));
            for (ss, 0..) |s, i| for (ss[0..i]) |t| if (s == t) return fail(diag, "items must be unique", error.OutOfRange);
            c.cacheable_statuses = ss;
        } else if (eql(key, "vary_headers")) {
            c.vary_headers = try headerList(a, v, diag);
        } else if (eql(key, "redact_headers")) {
            c.redact_headers = try headerList(a, v, diag);
        } else if (eql(key, "cache_authorized_requests")) {
            c.cache_authorized_requests = try boolean(v, diag);
        } else if (eql(key, "store_set_cookie_responses")) {
            c.store_set_cookie_responses = try boolean(v, diag);
        } else if (eql(key, "log_level")) {
            const s = try string(v, 0, diag);
            c.log_level = std.meta.stringToEnum(LogLevel, s) orelse return fail(diag, "must be one of trace debug info warn error", error.OutOfRange);
        } else {
            return fail(diag, "unknown key", error.UnknownKey);
        }
    }
    for (c.vary_headers) |name| {
        if (c.redacted(name)) {
            diag.setKey("vary_headers");
            diag.reason = "a vary header may not also be redacted (redact_headers)";
            return error.OutOfRange;
        }
    }
    // vary names: sorted for the fingerprint
    const vary = try a.dupe([]const u8, c.vary_headers);
    std.mem.sort([]const u8, vary, {}, lessThan);
    c.vary_headers = vary;
    diag.* = .{};
    out.value = c;
    return out;
}

fn lessThan(_: void, x: []const u8, y: []const u8) bool {
    return std.mem.order(u8, x, y) == .lt;
}

fn eql(x: []const u8, y: []const u8) bool {
    return std.mem.eql(u8, x, y);
}

fn fail(diag: *Diagnostic, reason: []const u8, err: Error) Error {
    diag.reason = reason;
    return err;
}

fn boolean(v: std.json.Value, diag: *Diagnostic) Error!bool {
    if (v != .bool) return fail(diag, "must be a boolean", error.WrongType);
    return v.bool;
}

fn string(v: std.json.Value, min_len: usize, diag: *Diagnostic) Error![]const u8 {
    if (v != .string) return fail(diag, "must be a string", error.WrongType);
    if (v.string.len < min_len) return fail(diag, "must not be empty", error.OutOfRange);
    return v.string;
}

fn integer(v: std.json.Value, min: i64, max: i64, diag: *Diagnostic) Error!u32 {
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

fn headerList(a: std.mem.Allocator, v: std.json.Value, diag: *Diagnostic) Error![]const []const u8 {
    const items = try array(v, diag);
    const out = try a.alloc([]const u8, items.len);
    for (items, out) |item, *o| {
        if (item != .string) return fail(diag, "items must be strings", error.WrongType);
        if (item.string.len == 0) return fail(diag, "items must not be empty", error.OutOfRange);
        o.* = try std.ascii.allocLowerString(a, item.string);
    }
    if (hasDuplicate(out, true)) return fail(diag, "items must be unique", error.OutOfRange);
    return out;
}

fn hasDuplicate(items: []const []const u8, ignore_case: bool) bool {
    for (items, 0..) |x, i| for (items[0..i]) |y| {
        if (if (ignore_case) std.ascii.eqlIgnoreCase(x, y) else eql(x, y)) return true;
    };
    return false;
}

test "defaults from empty config" {
    var d: Diagnostic = .{};
    var p = try parse(std.testing.allocator, "", &d);
    defer p.deinit();
    try std.testing.expectEqual(@as(u32, 200), p.value.lookup_timeout_ms);
    try std.testing.expect(p.value.lookupMethod("GET"));
    try std.testing.expect(!p.value.lookupMethod("POST"));
    var p2 = try parse(std.testing.allocator, "{}", &d);
    defer p2.deinit();
    try std.testing.expectEqualStrings("sp_cache_backend", p2.value.backend_cluster);
}

test "every key parses" {
    var d: Diagnostic = .{};
    var p = try parse(std.testing.allocator,
        \\{"cache_enabled": false, "backend_cluster": "c", "backend_authority": "a", "public_key": "k",
        \\ "service_name": "s", "traffic_direction": "inbound", "lookup_timeout_ms": 50, "store_timeout_ms": 60,
        \\ "max_request_body_bytes": 0, "max_response_body_bytes": 10, "max_stores_in_flight": 3,
        \\ "default_ttl_seconds": 0, "lookup_methods": ["POST"], "cacheable_statuses": [200, 204],
        \\ "vary_headers": ["X-B", "accept"], "redact_headers": ["cookie"], "cache_authorized_requests": true,
        \\ "store_set_cookie_responses": true, "log_level": "debug"}
    , &d);
    defer p.deinit();
    const c = p.value;
    try std.testing.expect(!c.cache_enabled);
    try std.testing.expectEqual(Direction.inbound, c.traffic_direction);
    try std.testing.expectEqual(@as(u32, 3), c.max_stores_in_flight);
    try std.testing.expect(c.lookupMethod("POST"));
    try std.testing.expect(c.cacheableStatus(204));
    try std.testing.expectEqualStrings("accept", c.vary_headers[0]);
    try std.testing.expectEqualStrings("x-b", c.vary_headers[1]);
    try std.testing.expectEqual(LogLevel.debug, c.log_level);
}

test "errors name the key" {
    const cases = [_]struct { json: []const u8, key: []const u8, err: Error }{
        .{ .json = "{\"bogus\": 1}", .key = "bogus", .err = error.UnknownKey },
        .{ .json = "{\"lookup_timeout_ms\": \"200\"}", .key = "lookup_timeout_ms", .err = error.WrongType },
        .{ .json = "{\"lookup_timeout_ms\": 0}", .key = "lookup_timeout_ms", .err = error.OutOfRange },
        .{ .json = "{\"cache_enabled\": 1}", .key = "cache_enabled", .err = error.WrongType },
        .{ .json = "{\"lookup_methods\": [\"GET\", \"GET\"]}", .key = "lookup_methods", .err = error.OutOfRange },
        .{ .json = "{\"lookup_methods\": [\"TRACE\"]}", .key = "lookup_methods", .err = error.OutOfRange },
        .{ .json = "{\"backend_cluster\": \"\"}", .key = "backend_cluster", .err = error.OutOfRange },
        .{ .json = "{\"vary_headers\": [\"Cookie\"]}", .key = "vary_headers", .err = error.OutOfRange },
        .{ .json = "{\"max_response_body_bytes\": 1.5}", .key = "max_response_body_bytes", .err = error.WrongType },
        .{ .json = "[1]", .key = "", .err = error.NotAnObject },
        .{ .json = "{nope", .key = "", .err = error.InvalidJson },
    };
    for (cases) |case| {
        var d: Diagnostic = .{};
        try std.testing.expectError(case.err, parse(std.testing.allocator, case.json, &d));
        try std.testing.expectEqualStrings(case.key, d.key());
        try std.testing.expect(d.reason.len > 0);
    }
}
