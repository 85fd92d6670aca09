//! HTTP-date (RFC 9110 §5.6.7): parsing of the three formats a recipient must accept
//! (IMF-fixdate, obsolete RFC 850 and ANSI C asctime) into Unix seconds, and formatting of
//! IMF-fixdate. Parsing is strict about layout (single spaces, two-digit hours, the literal
//! `GMT`) and lenient about letter case, as the conformance suite's expires-parse tests expect.
//! The parser is total: any bytes give a value or null, never a trap. All times are UTC.
const std = @import("std");

const day_names = [7][]const u8{ "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
const long_day_names = [7][]const u8{ "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday" };
const month_names = [12][]const u8{ "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/// Largest value `formatHttpDate` writes: 9999-12-31T23:59:59Z, in Unix seconds.
pub const max_formattable_s: i64 = 253402300799;

/// Parses an HTTP-date into Unix seconds (RFC 9110 §5.6.7), or null when `s` is none of
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) or
/// asctime (`Sun Nov  6 08:49:37 1994`). Day and month names and `GMT` match case-insensitively;
/// the day name is checked for spelling, not against the date. Surrounding SP/HTAB is ignored.
/// `now_s` (Unix seconds) resolves RFC 850 two-digit years: a year more than 50 years after the
/// current year means the most recent past year with the same last two digits.
pub fn parseHttpDate(raw: []const u8, now_s: i64) ?i64 {
    const s = std.mem.trim(u8, raw, " \t");
    if (s.len == 29 and s[3] == ',') return parseImfFixdate(s);
    if (s.len == 24 and s[3] == ' ') return parseAsctime(s);
    return parseRfc850(s, now_s);
}

// "Sun, 06 Nov 1994 08:49:37 GMT"
fn parseImfFixdate(s: []const u8) ?i64 {
    if (nameIndex(&day_names, s[0..3]) == null) return null;
    if (s[4] != ' ' or s[7] != ' ' or s[11] != ' ' or s[16] != ' ' or s[25] != ' ') return null;
    if (!std.ascii.eqlIgnoreCase(s[26..29], "GMT")) return null;
    const day = digits(s[5..7]) orelse return null;
    const month = nameIndex(&month_names, s[8..11]) orelse return null;
    const year = digits(s[12..16]) orelse return null;
    return civil(year, month + 1, day, s[17..25]);
}

// "Sun Nov  6 08:49:37 1994"
fn parseAsctime(s: []const u8) ?i64 {
    if (nameIndex(&day_names, s[0..3]) == null) return null;
    if (s[7] != ' ' or s[10] != ' ' or s[19] != ' ') return null;
    const month = nameIndex(&month_names, s[4..7]) orelse return null;
    const day = if (s[8] == ' ') digits(s[9..10]) orelse return null else digits(s[8..10]) orelse return null;
    const year = digits(s[20..24]) orelse return null;
    return civil(year, month + 1, day, s[11..19]);
}

// "Sunday, 06-Nov-94 08:49:37 GMT"
fn parseRfc850(s: []const u8, now_s: i64) ?i64 {
    const comma = std.mem.findScalar(u8, s, ',') orelse return null;
    if (nameIndex(&long_day_names, s[0..comma]) == null) return null;
    const r = s[comma..];
    if (r.len != 24 or r[1] != ' ' or r[4] != '-' or r[8] != '-' or r[11] != ' ' or r[20] != ' ') return null;
    if (!std.ascii.eqlIgnoreCase(r[21..24], "GMT")) return null;
    const day = digits(r[2..4]) orelse return null;
    const month = nameIndex(&month_names, r[5..8]) orelse return null;
    const yy = digits(r[9..11]) orelse return null;
    const now_year = civilFromDays(@divFloor(std.math.clamp(now_s, 0, max_formattable_s), 86400)).year;
    var year = now_year - @mod(now_year, 100) + yy;
    if (year > now_year + 50) year -= 100;
    return civil(year, month + 1, day, r[12..20]);
}

fn nameIndex(names: []const []const u8, s: []const u8) ?i64 {
    for (names, 0..) |n, i| if (std.ascii.eqlIgnoreCase(n, s)) return @intCast(i);
    return null;
}

fn digits(s: []const u8) ?i64 {
    var v: i64 = 0;
    for (s) |ch| {
        if (ch < '0' or ch > '9') return null;
        v = v * 10 + (ch - '0');
    }
    return v;
}

// `hms` is "HH:MM:SS"; validates every field, then gives Unix seconds. A leap second (60) is
// accepted as RFC 9110 allows and counts as the next second.
fn civil(year: i64, month: i64, day: i64, hms: []const u8) ?i64 {
    if (hms.len != 8 or hms[2] != ':' or hms[5] != ':') return null;
    const hh = digits(hms[0..2]) orelse return null;
    const mm = digits(hms[3..5]) orelse return null;
    const ss = digits(hms[6..8]) orelse return null;
    if (year < 1 or hh > 23 or mm > 59 or ss > 60) return null;
    if (day < 1 or day > daysInMonth(year, month)) return null;
    return daysFromCivil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss;
}

fn daysInMonth(year: i64, month: i64) i64 {
    const leap = @mod(year, 4) == 0 and (@mod(year, 100) != 0 or @mod(year, 400) == 0);
    const lengths = [12]i64{ 31, if (leap) 29 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return lengths[@intCast(month - 1)];
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the era-based day-count method).
fn daysFromCivil(y0: i64, m: i64, d: i64) i64 {
    const y = if (m <= 2) y0 - 1 else y0;
    const era = @divFloor(y, 400);
    const yoe = y - era * 400;
    const mp = @mod(m + 9, 12);
    const doy = @divFloor(153 * mp + 2, 5) + d - 1;
    const doe = yoe * 365 + @divFloor(yoe, 4) - @divFloor(yoe, 100) + doy;
    return era * 146097 + doe - 719468;
}

const Civil = struct { year: i64, month: usize, day: i64 };

/// Inverse of `daysFromCivil`.
fn civilFromDays(z0: i64) Civil {
    const z = z0 + 719468;
    const era = @divFloor(z, 146097);
    const doe = z - era * 146097;
    const yoe = @divFloor(doe - @divFloor(doe, 1460) + @divFloor(doe, 36524) - @divFloor(doe, 146096), 365);
    const doy = doe - (365 * yoe + @divFloor(yoe, 4) - @divFloor(yoe, 100));
    const mp = @divFloor(5 * doy + 2, 153);
    const day = doy - @divFloor(153 * mp + 2, 5) + 1;
    const month = if (mp < 10) mp + 3 else mp - 9;
    return .{ .year = yoe + era * 400 + @intFromBool(month <= 2), .month = @intCast(month), .day = day };
}

/// Writes `unix_s` (Unix seconds) as an IMF-fixdate (RFC 9110 §5.6.7) into `buf` and returns it.
/// Values outside 1970-01-01 .. 9999-12-31T23:59:59 are clamped to that range.
pub fn formatHttpDate(unix_s: i64, buf: *[29]u8) []const u8 {
    const clamped = std.math.clamp(unix_s, 0, max_formattable_s);
    const days = @divFloor(clamped, 86400);
    const secs: u64 = @intCast(clamped - days * 86400);
    const c = civilFromDays(days);
    // 1970-01-01 was a Thursday (index 3 from Monday)
    const wday: usize = @intCast(@mod(days + 3, 7));
    @memcpy(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    @memcpy(buf[0..3], day_names[wday]);
    put2(buf[5..7], @intCast(c.day));
    @memcpy(buf[8..11], month_names[c.month - 1]);
    const year: u64 = @intCast(c.year);
    put2(buf[12..14], year / 100);
    put2(buf[14..16], year % 100);
    put2(buf[17..19], secs / 3600);
    put2(buf[20..22], secs / 60 % 60);
    put2(buf[23..25], secs % 60);
    return buf;
}

fn put2(out: *[2]u8, v: u64) void {
    out[0] = @intCast('0' + v / 10 % 10);
    out[1] = @intCast('0' + v % 10);
}

const t = std.testing;
const fuzz = @import("fuzz.zig");
// 2025-01-01T00:00:00Z, the "now" of the two-digit-year cases below
const now_2025: i64 = 1735689600;

test "RFC 9110 5.6.7: the three formats give the same instant" {
    const want: i64 = 784111777;
    try t.expectEqual(want, parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT", now_2025).?);
    try t.expectEqual(want, parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", now_2025).?);
    try t.expectEqual(want, parseHttpDate("Sun Nov  6 08:49:37 1994", now_2025).?);
    try t.expectEqual(want, parseHttpDate(" Sun, 06 Nov 1994 08:49:37 GMT\t", now_2025).?);
}

test "RFC 9110 5.6.7: accepted and rejected variants (suite expires-parse cases)" {
    const ok = [_]struct { s: []const u8, want: i64 }{
        .{ .s = "Tue, 19 Jan 2038 14:14:08 GMT", .want = 2147523248 },
        .{ .s = "Sun, 21 Nov 2286 04:46:39 GMT", .want = 10000039599 },
        .{ .s = "Thursday, 18-Aug-50 02:01:18 GMT", .want = 2544400878 },
        .{ .s = "Thu Aug  8 02:01:18 2050", .want = 2543536878 },
        .{ .s = "THU, 18 Aug 2050 02:01:18 GMT", .want = 2544400878 },
        .{ .s = "Thu, 18 AUG 2050 02:01:18 GMT", .want = 2544400878 },
        .{ .s = "Thu, 18 Aug 2050 02:01:18 gMT", .want = 2544400878 },
        .{ .s = "Thu, 01 Jan 1970 00:00:00 GMT", .want = 0 },
        .{ .s = "Wed, 31 Dec 1969 23:59:59 GMT", .want = -1 },
        .{ .s = "Tue, 29 Feb 2000 12:00:00 GMT", .want = 951825600 },
        .{ .s = "Sat, 31 Dec 2016 23:59:60 GMT", .want = 1483228800 },
    };
    for (ok) |c| try t.expectEqual(c.want, parseHttpDate(c.s, now_2025).?);
    const bad = [_][]const u8{
        "Thu, 18 Aug 2050 02:01:18 UTC",    "Thu, 18 Aug 2050 02:01:18 AEST",  "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu 18 Aug 2050 02:01:18 GMT",     "Thu, 18  Aug  2050 02:01:18 GMT", "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 02.01.18 GMT",    "Thu, 18 Aug 2050 2:01:18 GMT",    "0",
        "",                                 "Xyz, 18 Aug 2050 02:01:18 GMT",   "Thu, 30 Feb 2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 24:00:00 GMT",    "Thu, 18 Aug 0000 02:01:18 GMT",   "Thu, 1a Aug 2050 02:01:18 GMT",
        "Thursday, 18-Aug-50 02:01:18 UTC", "Thu, 18-Aug-50 02:01:18 GMT",     "Thu Aug 8 02:01:18 2050",
        "Thu Aug  8 02:01:18 2050 GMT",     "Mon, 29 Feb 2100 00:00:00 GMT",
    };
    for (bad) |s| {
        if (parseHttpDate(s, now_2025)) |v| {
            std.debug.print("accepted {s} as {d}\n", .{ s, v });
            return error.TestUnexpectedResult;
        }
    }
}

test "RFC 9110 5.6.7: RFC 850 two-digit years are resolved against now" {
    // in 2025, "75" is 2075 (exactly 50 years ahead) and "76" is 1976
    try t.expectEqual(@as(i64, 3313526400), parseHttpDate("Tuesday, 01-Jan-75 00:00:00 GMT", now_2025).?);
    try t.expectEqual(@as(i64, 189302400), parseHttpDate("Thursday, 01-Jan-76 00:00:00 GMT", now_2025).?);
    try t.expectEqual(@as(i64, 946684800), parseHttpDate("Saturday, 01-Jan-00 00:00:00 GMT", now_2025).?);
}

test "formatHttpDate writes IMF-fixdate and round-trips" {
    var buf: [29]u8 = undefined;
    try t.expectEqualStrings("Sun, 06 Nov 1994 08:49:37 GMT", formatHttpDate(784111777, &buf));
    try t.expectEqualStrings("Thu, 01 Jan 1970 00:00:00 GMT", formatHttpDate(-5, &buf));
    try t.expectEqualStrings("Fri, 31 Dec 9999 23:59:59 GMT", formatHttpDate(std.math.maxInt(i64), &buf));
    var prng = std.Random.DefaultPrng.init(7);
    for (0..5000) |_| {
        const v = prng.random().intRangeAtMost(i64, 0, max_formattable_s);
        try t.expectEqual(v, parseHttpDate(formatHttpDate(v, &buf), now_2025).?);
    }
}

test "parseHttpDate is total on random bytes" {
    var prng = std.Random.DefaultPrng.init(99);
    const r = prng.random();
    const alphabet = "0123456789 ,:-SunMonThuAugGMTday\t\xff";
    var buf: [40]u8 = undefined;
    for (0..20000) |_| {
        _ = parseHttpDate(fuzz.text(r, &buf, alphabet), r.int(i64));
        // a valid date with one byte changed, so that the deep branches run
        var date: [29]u8 = undefined;
        _ = formatHttpDate(r.intRangeAtMost(i64, 0, max_formattable_s), &date);
        date[r.uintLessThan(usize, date.len)] = alphabet[r.uintLessThan(usize, alphabet.len)];
        _ = parseHttpDate(&date, r.int(i64));
    }
}
