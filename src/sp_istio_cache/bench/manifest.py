"""``run.json``: the environment and parameters of one benchmark run.

Keys: ``schema``, ``status`` (running | complete | failed | interrupted), ``started_unix``,
``ended_unix``, ``started``/``ended`` (ISO 8601 UTC), ``wall_seconds``, ``parameters`` (the
matrix), ``cells`` (ordered cell ids with their directories and status), ``error``, and
``environment``: Envoy version, wasm path + sha256 (when a filter variant ran), CPU model,
logical cores, memory bytes, kernel, Python and Locust versions, git commit (+ dirty flag).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from ..jsondoc import read_document
from ..paths import REPO_ROOT

SCHEMA = "sp-istio-cache/run/1"


def iso(ts: float | None) -> str | None:
    """UTC ISO 8601 of a unix time (None passes through)."""
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


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


def sha256_file(path: Path) -> str | None:
    """Hex SHA-256 of a file, None when it does not exist."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def environment(wasm_path: Path | None) -> dict[str, Any]:
    """The machine, tool versions and source revision of this run."""
    try:
        locust_version = metadata.version("locust")
    except metadata.PackageNotFoundError:
        locust_version = None
    commit = _run(["git", "rev-parse", "HEAD"])
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "envoy_version": envoy_version(),
        "wasm_path": str(wasm_path) if wasm_path else None,
        "wasm_sha256": sha256_file(wasm_path) if wasm_path else None,
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "locust_version": locust_version,
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
    }


def write(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as run.json (atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str))
    os.replace(tmp, path)


def read(run_dir: Path) -> dict[str, Any]:
    """Read ``run_dir/run.json``.

    Raises:
        FileNotFoundError / ValueError: missing, or not a run manifest; the message names the path.
    """
    return read_document(Path(run_dir) / "run.json", SCHEMA,
                         missing=f"no run manifest (is {run_dir} a benchmark run directory?)")
