"""``python -m sp_istio_cache.backend`` as a real process: port file, persistence, clean SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from sp_istio_cache.fingerprint import request_fingerprint
from sp_istio_cache.otlp import CachedRequest, CachedResponse, SpanType, decode_hit, encode_span
from tests.support import service_process

REQUEST = CachedRequest("GET", "http", "upstream", "/x", key=request_fingerprint("GET", "upstream", "/x", {}, []))
RESPONSE = CachedResponse(200, {"content-type": ["text/plain"]}, b"persisted")


def run_backend(tmp_path, name: str):
    args = ["--port", "0", "--storage", "sqlite", "--db", str(tmp_path / "cache.sqlite"), "--default-ttl", "300"]
    return service_process("sp_istio_cache.backend", args, tmp_path / f"{name}.port", tmp_path / f"{name}.log")


def test_serves_persists_and_stops_cleanly(tmp_path):
    with run_backend(tmp_path, "first") as (proc, client):
        assert client.get("/healthz").status == 200
        stored = client.post("/v1/traces", encode_span(SpanType.EXTRACT, REQUEST, RESPONSE))
        assert stored.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert (tmp_path / "first.port").read_text().strip().isdigit()
    log = (tmp_path / "first.log").read_text()
    assert "listening on 127.0.0.1:" in log
    assert "Traceback" not in log

    with run_backend(tmp_path, "second") as (proc, client):
        reply = client.post("/v1/inject", encode_span(SpanType.INJECT, REQUEST))
        assert reply.status == 200
        assert decode_hit(reply.body)[0] == RESPONSE
        assert json.loads(client.get("/stats").body)["entries"] == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_unknown_storage_is_refused():
    result = subprocess.run([sys.executable, "-m", "sp_istio_cache.backend", "--storage", "nope"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "invalid choice: 'nope' (choose from" in result.stderr
