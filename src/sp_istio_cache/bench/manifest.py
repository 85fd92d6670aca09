"""The environment of a run (``run.json`` ``environment``): Envoy, module, machine, tools, source.

The manifest's model is :class:`sp_istio_cache.bench.records.RunManifest`; this module only
gathers the facts.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import psutil

from ..paths import REPO_ROOT
from .identity import sha256_file
from .records import Environment


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def envoy_version() -> str | None:
    """``envoy --version`` of the runtime's binary, e.g. ``.../1.40.0/Clean/RELEASE/BoringSSL``."""
    from ..runtime import envoy_binary

    try:
        text = _run([str(envoy_binary()), "--version"])
    except FileNotFoundError:
        return None
    return text.split("version:")[-1].strip() if text else None


def environment(wasm_path: Path | None) -> Environment:
    """The machine, tool versions, module and source revision of this run."""
    try:
        locust_version: str | None = metadata.version("locust")
    except metadata.PackageNotFoundError:
        locust_version = None
    commit = _run(["git", "rev-parse", "HEAD"])
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return Environment(
        envoy_version=envoy_version(),
        wasm_path=str(wasm_path) if wasm_path else None,
        wasm_sha256=sha256_file(wasm_path) if wasm_path else None,
        cpu_model=_cpu_model(),
        cpu_cores=os.cpu_count(),
        memory_bytes=psutil.virtual_memory().total,
        kernel=platform.release(),
        python=sys.version.split()[0],
        locust_version=locust_version,
        git_commit=commit,
        git_dirty=bool(dirty) if dirty is not None else None,
    )
