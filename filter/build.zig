//! The one build of the filter (`sp-istio-cache build` calls it):
//!   zig build -p DIR [-Doptimize=safe]  → DIR/sp_istio_cache.wasm (wasm32-freestanding)
//!   zig build test                             → every Zig test (pure modules, golden vectors)
//!   zig build metrics-doc -Dout=PATH           → the metrics table (docs/metrics.md)
//!   zig build tools -p DIR                     → DIR/bin/config_check (the Zig config parser, for tests)
const std = @import("std");

pub fn build(b: *std.Build) void {
    const optimize = b.option(std.builtin.OptimizeMode, "optimize", "debug | safe | fast | small (default safe: bounds and overflow checks trap instead of corrupting memory)") orelse .safe;
    const wasm_target = b.resolveTargetQuery(.{ .cpu_arch = .wasm32, .os_tag = .freestanding });
    const native = b.graph.host;

    const wasm = b.addExecutable(.{
        .name = "sp_istio_cache",
        .root_module = b.createModule(.{
            .root_source_file = b.path("src/main.zig"),
            .target = wasm_target,
            .optimize = optimize,
            .strip = true,
        }),
    });
    wasm.entry = .disabled;
    wasm.rdynamic = true;
    const install = b.addInstallArtifact(wasm, .{ .dest_dir = .{ .override = .prefix } });
    b.getInstallStep().dependOn(&install.step);

    const tests = b.addTest(.{
        .root_module = b.createModule(.{
            .root_source_file = b.path("tests.zig"),
            .target = native,
            .optimize = .debug,
        }),
    });
    const run_tests = b.addRunArtifact(tests);
    run_tests.has_side_effects = true; // always run (and report) them, even when nothing changed
    const test_step = b.step("test", "Run the filter's Zig tests");
    test_step.dependOn(&run_tests.step);

    const doc = b.addExecutable(.{
        .name = "metrics_doc",
        .root_module = b.createModule(.{
            .root_source_file = b.path("tools/metrics_doc.zig"),
            .target = native,
            .optimize = .debug,
            .imports = &.{.{ .name = "reason", .module = b.createModule(.{ .root_source_file = b.path("src/reason.zig") }) }},
        }),
    });
    const run_doc = b.addRunArtifact(doc);
    if (b.option([]const u8, "out", "metrics-doc: where to write the table")) |out| run_doc.addArg(out);
    const doc_step = b.step("metrics-doc", "Write the metrics table (docs/metrics.md)");
    doc_step.dependOn(&run_doc.step);

    const check = b.addExecutable(.{
        .name = "config_check",
        .root_module = b.createModule(.{
            .root_source_file = b.path("tools/config_check.zig"),
            .target = native,
            .optimize = .debug,
            .imports = &.{.{ .name = "config", .module = b.createModule(.{ .root_source_file = b.path("src/config.zig") }) }},
        }),
    });
    const tools_step = b.step("tools", "Install the native tools (config_check) under PREFIX/bin");
    tools_step.dependOn(&b.addInstallArtifact(check, .{}).step);
}
