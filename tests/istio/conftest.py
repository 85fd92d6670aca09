"""Fixtures for the deployment tests: a module with its build record, a tuning recommendation,
and render parameters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import wasmtime

from sp_istio_cache.istio import render as r
from sp_istio_cache.istio.params import IstioParams

#: what the size-limit tuning step recommends (plugin config v2 keys)
TUNED = {
    "max_request_body_bytes": 16384,
    "max_response_body_bytes": 262144,
    "lookup_timeout_ms": 50,
    "max_stores_in_flight": 32,
    "l1_max_bytes": 8388608,
}
FAKE_WAT = Path(__file__).with_name("fake_trap_guest.wat")


def write_module(path: Path, data: bytes) -> Path:
    """``data`` at ``path`` with the build record ``sp-istio-cache build`` would write beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    return path


@pytest.fixture
def module(tmp_path) -> Path:
    """A FAKE module (the fail-strategy test guest) with its build record: enough for rendering,
    which checks digests, not behaviour."""
    return write_module(tmp_path / "dist" / "sp_istio_cache.wasm", wasmtime.wat2wasm(FAKE_WAT.read_text()))


@pytest.fixture
def module_sha(module) -> str:
    return hashlib.sha256(module.read_bytes()).hexdigest()


@pytest.fixture
def params(module):
    """Factory: IstioParams for the fake module with the tuned plugin config, overridable."""
    def make(**kw) -> IstioParams:
        kw.setdefault("plugin_config", dict(TUNED))
        kw.setdefault("module", module)
        return IstioParams(**kw)
    return make


@pytest.fixture
def tuning_output(tmp_path, monkeypatch):
    """Factory: write a recommendation (``doc``) where the tuning step puts it; render reads it there."""
    path = tmp_path / "reports" / "latest" / "recommended_plugin_config.json"
    monkeypatch.setattr(r, "TUNING_OUTPUT", path)

    def write(doc) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
        return path
    return write


@pytest.fixture
def no_tuning_output(tmp_path, monkeypatch):
    monkeypatch.setattr(r, "TUNING_OUTPUT", tmp_path / "absent.json")
