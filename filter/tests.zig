//! Test root of `zig build test`: every module with tests (the pure ones, and those written
//! against interfaces with fakes), the config-schema agreement, and the shared golden vectors.
//! The module root is filter/ so that @embedFile reaches config.schema.json and testdata/.
test {
    _ = @import("src/headers.zig");
    _ = @import("src/config.zig");
    _ = @import("src/reason.zig");
    _ = @import("src/fingerprint.zig");
    _ = @import("src/policy.zig");
    _ = @import("src/protobuf.zig");
    _ = @import("src/protocol.zig");
    _ = @import("src/lookup_answer.zig");
    _ = @import("src/entry.zig");
    _ = @import("src/entry_set.zig");
    _ = @import("src/prepared.zig");
    _ = @import("src/shared.zig");
    _ = @import("src/l1.zig");
    _ = @import("src/keystate.zig");
    _ = @import("src/session.zig");
    _ = @import("src/trace.zig");
    _ = @import("src/http/dates.zig");
    _ = @import("src/http/cache_control.zig");
    _ = @import("src/http/targeted.zig");
    _ = @import("src/http/status.zig");
    _ = @import("src/http/freshness.zig");
    _ = @import("src/http/fields.zig");
    _ = @import("src/http/conditional.zig");
    _ = @import("src/http/vary.zig");
    _ = @import("src/http/invalidation.zig");
    _ = @import("src/http/storable.zig");
    _ = @import("src/http/fuzz.zig");
    _ = @import("config_test.zig");
    _ = @import("golden.zig");
}
