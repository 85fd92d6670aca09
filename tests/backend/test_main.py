"""``python -m sp_istio_cache.backend`` as a real process: keys, persistence, worker processes,
multiprocess metrics, clean SIGTERM, and refusals of command lines that cannot work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from sp_istio_cache.otlp import decode_candidates
from tests.backend.spans import KEY, KEYED, RESPONSE, lookup_body, request, store_body
from tests.support import service_process

REQ = request(path="/x")


@pytest.fixture(autouse=True)
def key_in_environment(monkeypatch):
    """The key reaches the backend through its environment, never its command line."""
    monkeypatch.setenv("SP_CACHE_BACKEND_KEY", KEY)


def backend(tmp_path, name: str, *args: str):
    return service_process("sp_istio_cache.backend", ["--port", "0", *args], tmp_path / f"{name}.port",
                           tmp_path / f"{name}.log")


def run_cli(*args: str, env_key: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SP_CACHE_BACKEND_KEY"}
    if env_key is not None:
        env["SP_CACHE_BACKEND_KEY"] = env_key
    return subprocess.run([sys.executable, "-m", "sp_istio_cache.backend", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_serves_persists_and_stops_cleanly(tmp_path):
    db = ["--storage", "sqlite", "--db", str(tmp_path / "cache.sqlite")]
    with backend(tmp_path, "first", *db) as (proc, client):
        assert client.get("/healthz").status == 200
        assert client.post("/v1/traces", store_body(REQ, RESPONSE), headers=KEYED).status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    log = (tmp_path / "first.log").read_text()
    assert "authentication: x-public-key required (key from $SP_CACHE_BACKEND_KEY)" in log
    assert KEY not in log
    assert "Traceback" not in log

    with backend(tmp_path, "second", *db) as (proc, client):
        reply = client.post("/v1/inject", lookup_body(REQ), headers=KEYED)
        assert decode_candidates(reply.body)[0].response == RESPONSE
        assert client.post("/v1/inject", lookup_body(REQ)).status == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_key_file_is_read_and_trimmed(tmp_path, monkeypatch):
    monkeypatch.delenv("SP_CACHE_BACKEND_KEY")
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file-0123456789\n")
    with backend(tmp_path, "kf", "--storage", "memory", "--key-file", str(key_file)) as (_, client):
        keyed = {"x-public-key": "from-a-file-0123456789"}
        assert client.post("/v1/traces", store_body(REQ), headers=keyed).status == 200
        assert client.post("/v1/traces", store_body(REQ), headers=KEYED).status == 401


def test_anonymous_is_an_explicit_and_loud_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("SP_CACHE_BACKEND_KEY")
    with backend(tmp_path, "anon", "--storage", "memory", "--allow-anonymous") as (proc, client):
        assert client.post("/v1/traces", store_body(REQ)).status == 200
    assert "ANONYMOUS ACCESS (--allow-anonymous): any client that reaches" in (tmp_path / "anon.log").read_text()


@pytest.mark.parametrize("args, env_key, message", [
    ((), None, "error: the backend needs a key: --key-file FILE, $SP_CACHE_BACKEND_KEY or --key "
               "(or --allow-anonymous to accept every caller)"),
    (("--allow-anonymous",), KEY, "error: --allow-anonymous contradicts the key given by $SP_CACHE_BACKEND_KEY"),
    ((), "short", "error: $SP_CACHE_BACKEND_KEY: the backend key must be 16..256 characters long, got 5"),
    (("--key-file", "/nonexistent/key"), None, "error: --key-file: cannot read /nonexistent/key: "
                                               "No such file or directory"),
    (("--storage", "memory", "--workers", "2"), KEY,
     "error: --storage memory is private to one process; --workers 2 needs sqlite or redis"),
    (("--workers", "0"), KEY, "error: --workers must be >= 1, got 0"),
    (("--max-bytes", "0"), KEY, "error: --max-bytes must be >= 1, got 0"),
])
def test_command_lines_that_cannot_work(args, env_key, message):
    result = run_cli("--storage", "memory", *args, env_key=env_key)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == message


def test_unknown_storage_is_refused():
    result = run_cli("--storage", "nope", env_key=KEY)
    assert result.returncode == 2
    assert "invalid choice: 'nope' (choose from" in result.stderr


def test_unreachable_redis_fails_at_start(tmp_path):
    from sp_istio_cache.procutil import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run_cli("--storage", "redis", "--redis-url", url, env_key=KEY)
    assert result.returncode == 1
    assert f"storage redis cannot be used: redis INFO at {url}:" in result.stderr


def test_workers_share_the_port_the_storage_and_the_metrics(tmp_path):
    args = ["--storage", "sqlite", "--db", str(tmp_path / "w.sqlite"), "--workers", "3",
            "--metrics-dir", str(tmp_path / "metrics")]
    with backend(tmp_path, "workers", *args) as (proc, client):
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 10
        while len(parent.children()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = parent.children()
        assert len(workers) == 3
        paths = [f"/w/{i}" for i in range(30)]
        for path in paths:
            assert client.post("/v1/traces", store_body(request(path=path)), headers=KEYED).status == 200
        for path in paths:
            assert client.post("/v1/inject", lookup_body(request(path=path)), headers=KEYED).status == 200
        served_by = {c.pid for c in workers if c.cpu_times().user + c.cpu_times().system > 0}
        assert len(served_by) >= 2  # the kernel handed connections to more than one worker
        counts = json.loads(client.get("/stats", headers=KEYED).body)  # summed over every worker
        assert (counts["entries"], counts["stores"], counts["hits"]) == (30, 30, 30)
        metrics = client.get("/metrics").body.decode()
        assert 'sp_cache_backend_stores_total 30.0' in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not any(psutil.pid_exists(w.pid) and w.status() != psutil.STATUS_ZOMBIE for w in workers)


def test_a_dead_worker_stops_the_set(tmp_path):
    args = ["--storage", "sqlite", "--db", str(tmp_path / "d.sqlite"), "--workers", "2"]
    with backend(tmp_path, "dead", *args) as (proc, client):
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 10
        while len(parent.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim, other = parent.children()
        victim.kill()
        assert proc.wait(20) == 1
        assert not psutil.pid_exists(other.pid)
    assert "exited with -9; stopping the other workers" in (tmp_path / "dead.log").read_text()
