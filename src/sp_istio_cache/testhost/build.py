"""Build the filter for the test host: the project's builder when it exists, else Zig directly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sp_istio_cache.paths import FILTER_DIR


def build_for_tests(out_dir: Path) -> Path:
    """Build ``filter/src/main.zig`` (ReleaseSafe, wasm32-freestanding) into ``out_dir``; return the path.

    Raises:
        RuntimeError: the build failed (message carries Zig's output).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        from sp_istio_cache.build import build_filter  # written alongside; use it when present
    except ImportError:
        build_filter = None
    if build_filter is not None:
        result = build_filter(out_dir=out_dir)
        path = Path(result) if result is not None else out_dir / "sp_istio_cache.wasm"
        if path.is_dir():
            path = path / "sp_istio_cache.wasm"
        return path
    out = out_dir / "sp_istio_cache.wasm"
    cmd = [sys.executable, "-m", "ziglang", "build-exe", str(FILTER_DIR / "src" / "main.zig"),
           "-target", "wasm32-freestanding", "-fno-entry", "-rdynamic", "-O", "ReleaseSafe",
           f"-femit-bin={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out_dir)
    if proc.returncode != 0:
        raise RuntimeError(f"zig build failed ({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}")
    return out
