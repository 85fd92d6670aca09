"""Build the filter for the test host into its own directory (tests never touch filter/dist)."""

from __future__ import annotations

from pathlib import Path

from sp_istio_cache.build import build_filter


def build_for_tests(out_dir: Path) -> Path:
    """Build the filter (ReleaseSafe, as shipped) into ``out_dir``; return the ``.wasm`` path.

    Raises:
        sp_istio_cache.build.BuildError: the build failed (message carries Zig's output).
    """
    return build_filter(out_dir=Path(out_dir)).wasm_path
