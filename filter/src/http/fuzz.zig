//! Test support for the totality tests of the parsers in this folder: random header text that
//! is mostly drawn from a parser's own alphabet, so that the deep branches run, with arbitrary
//! bytes mixed in.
const std = @import("std");
const Pair = @import("../headers.zig").Pair;

/// Fills a prefix of random length of `buf` (shorter than `buf`) with bytes taken from
/// `alphabet` seven times in eight and uniformly at random otherwise; returns that prefix.
pub fn text(r: std.Random, buf: []u8, alphabet: []const u8) []u8 {
    const out = buf[0..r.uintLessThan(usize, buf.len)];
    for (out) |*c| c.* = if (r.uintLessThan(u8, 8) != 0) alphabet[r.uintLessThan(usize, alphabet.len)] else r.int(u8);
    return out;
}

/// A header block of up to four lines, each named from `names` and valued with `text` (64
/// bytes at most); the pairs borrow `self`.
pub const Block = struct {
    bufs: [4][64]u8 = undefined,
    pairs: [4]Pair = undefined,

    /// Draws a new block and returns its pairs.
    pub fn draw(self: *Block, r: std.Random, names: []const []const u8, alphabet: []const u8) []const Pair {
        const n = r.uintLessThan(usize, self.pairs.len + 1);
        for (self.bufs[0..n], self.pairs[0..n]) |*b, *p| {
            p.* = .{ .name = names[r.uintLessThan(usize, names.len)], .value = text(r, b, alphabet) };
        }
        return self.pairs[0..n];
    }
};

test "text stays inside the buffer and mostly inside the alphabet" {
    var prng = std.Random.DefaultPrng.init(1);
    var buf: [16]u8 = undefined;
    var in_alphabet: usize = 0;
    var total: usize = 0;
    for (0..1000) |_| {
        const s = text(prng.random(), &buf, "ab");
        try std.testing.expect(s.len < buf.len);
        for (s) |c| in_alphabet += @intFromBool(c == 'a' or c == 'b');
        total += s.len;
    }
    try std.testing.expect(in_alphabet * 10 > total * 8);
}
