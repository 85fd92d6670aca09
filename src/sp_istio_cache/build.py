"""Build and unit-test the Zig proxy-wasm filter with the ``ziglang`` package (no system Zig).

``filter/build.zig`` is the one build of the filter: ``zig build`` (the wasm module), ``zig build test``
(every Zig test), ``zig build metrics-doc``. This module only calls it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import FILTER_DIR

WASM_NAME = "sp_istio_cache.wasm"
OPTIMIZE_MODES = ("Debug", "ReleaseSafe", "ReleaseFast", "ReleaseSmall")
#: the optimize modes' names in Zig 0.17's build system (std.builtin.OptimizeMode)
ZIG_OPTIMIZE = {"Debug": "debug", "ReleaseSafe": "safe", "ReleaseFast": "fast", "ReleaseSmall": "small"}


class BuildError(RuntimeError):
    """Zig failed to build or test the filter; the message carries zig's stderr."""


@dataclass(frozen=True)
class BuildResult:
    """Outcome of one filter build."""

    wasm_path: Path
    """Path of the written ``.wasm`` module."""
    sha256: str
    """Hex SHA-256 of the module (also written to ``<wasm>.sha256`` in sha256sum format)."""
    size_bytes: int
    """Module size in bytes."""
    seconds: float
    """Wall-clock build time in seconds."""
    optimize: str
    """Zig optimize mode used."""


def _zig(*args: str) -> list[str]:
    return [sys.executable, "-m", "ziglang", *args]


def build_filter(optimize: str = "ReleaseSafe", out_dir: Path | None = None) -> BuildResult:
    """Compile the filter to ``wasm32-freestanding`` and write ``sp_istio_cache.wasm`` + ``.sha256``.

    Args:
        optimize: Zig optimize mode, one of ``Debug``, ``ReleaseSafe`` (default: keeps bounds and
            overflow checks, which trap instead of corrupting memory), ``ReleaseFast``, ``ReleaseSmall``.
        out_dir: output directory; default ``filter/dist`` of the repository.

    Returns:
        A :class:`BuildResult` (size in bytes, build time in seconds).

    Raises:
        ValueError: ``optimize`` is not a Zig optimize mode.
        BuildError: zig exited non-zero (the message holds its stderr).
    """
    if optimize not in OPTIMIZE_MODES:
        raise ValueError(f"optimize must be one of {', '.join(OPTIMIZE_MODES)}, not {optimize!r}")
    out = Path(out_dir) if out_dir is not None else FILTER_DIR / "dist"
    out.mkdir(parents=True, exist_ok=True)
    wasm = out / WASM_NAME
    start = time.perf_counter()
    _zig_build(["-p", str(out), f"-Doptimize={ZIG_OPTIMIZE[optimize]}"], "zig build")
    seconds = time.perf_counter() - start
    data = wasm.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    (out / f"{WASM_NAME}.sha256").write_text(f"{digest}  {WASM_NAME}\n")
    return BuildResult(wasm_path=wasm, sha256=digest, size_bytes=len(data), seconds=seconds, optimize=optimize)


def _zig_build(args: list[str], what: str) -> subprocess.CompletedProcess[str]:
    """Run ``zig build ARGS`` in ``filter/`` (its ``build.zig`` is the one build of the filter)."""
    proc = subprocess.run(_zig("build", *args), cwd=FILTER_DIR, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc


def zig_test() -> subprocess.CompletedProcess[str]:
    """Run the filter's Zig unit tests (``zig build test``: pure modules, config schema agreement,
    golden vectors).

    Returns:
        The completed process (stdout/stderr captured as text).

    Raises:
        BuildError: a test failed or the tests did not compile (the message holds zig's stderr).
    """
    return _zig_build(["test", "--summary", "all"], "zig build test")


def metrics_doc(out: Path) -> Path:
    """Write the metrics table generated from ``filter/src/reason.zig`` to ``out`` (Markdown).

    Raises:
        BuildError: zig failed (the message holds its stderr).
    """
    _zig_build(["metrics-doc", f"-Dout={Path(out).resolve()}"], "zig build metrics-doc")
    return Path(out)
