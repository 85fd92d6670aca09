//! Test root for the pure modules (no host imports): `zig test src/tests.zig`.
test {
    _ = @import("headers.zig");
    _ = @import("config.zig");
}
