"""Fixtures for the Istio artefact tests: a synthetic tuning output and render parameters."""

from __future__ import annotations

import json

import pytest

from sp_istio_cache.istio import render as r
from sp_istio_cache.istio.validate import sha256_file

#: what the size-limit tuning notebook writes (reports/latest/recommended_plugin_config.json)
TUNED = {
    "max_request_body_bytes": 16384,
    "max_response_body_bytes": 262144,
    "lookup_timeout_ms": 50,
    "default_ttl_seconds": 120,
    "max_stores_in_flight": 32,
    "vary_headers": ["accept-encoding"],
}


@pytest.fixture
def tuning_output(tmp_path, monkeypatch):
    """A synthetic tuning run's recommendation, installed as the default plugin config source."""
    path = tmp_path / "reports" / "latest" / "recommended_plugin_config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(TUNED, indent=2))
    monkeypatch.setattr(r, "TUNING_OUTPUT", path)
    return path


@pytest.fixture
def no_tuning_output(tmp_path, monkeypatch):
    monkeypatch.setattr(r, "TUNING_OUTPUT", tmp_path / "absent.json")


@pytest.fixture
def module_sha(wasm) -> str:
    return sha256_file(wasm)
