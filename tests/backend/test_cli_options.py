"""The backend options of `up`, `smoke` and `bench` refuse what cannot work before anything starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sp_istio_cache.cli import app


@pytest.mark.parametrize("args, message", [
    (["smoke", "--storage", "memory", "--backend-replicas", "2"],
     "error: --backend-replicas 2 needs a shared storage (sqlite or redis) and >= 1"),
    (["smoke", "--backend-replicas", "0"],
     "error: --backend-replicas 0 needs a shared storage (sqlite or redis) and >= 1"),
    (["smoke", "--storage", "sqlite", "--redis-url", "redis://127.0.0.1:1/0"],
     "error: --redis-url is for --storage redis, not sqlite"),
    (["smoke", "--storage", "valkey"], "error: unknown storage 'valkey'; known: memory, redis, sqlite"),
    (["up", "--cpu-limit", "1"],
     "error: --cpu-limit and --memory-limit need --runtime docker (a local Envoy process has no quota)"),
    (["smoke", "--runtime", "docker", "--cpu-limit", "0"], "error: --cpu-limit must be > 0 cores, got 0.0"),
    (["smoke", "--runtime", "docker", "--memory-limit", "lots"],
     "error: --memory-limit: memory limit 'lots' is not a quantity like 134217728, '128Mi' or '1Gi'"),
    (["bench", "--storage", "memory", "--backend-replicas", "2", "--variants", "filter"],
     "error: flags: matrix: backend_replicas: must be >= 1, and 1 with storage memory (private to a process)"),
])
def test_refusals(args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == (2 if args[0] == "bench" else 1)  # bench: 2 = refused before anything ran
    assert message in " ".join(result.output.split())


def test_backend_image_command_is_listed():
    result = CliRunner().invoke(app, ["backend-image", "--help"])
    assert result.exit_code == 0
    assert "build" in result.output
