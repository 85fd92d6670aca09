"""``python -m sp_istio_cache.upstream`` as a real process: port file and clean SIGTERM."""

from __future__ import annotations

import signal

from sp_istio_cache.upstream.payload import generate
from tests.support import service_process


def test_serves_and_stops_cleanly(tmp_path):
    port_file = tmp_path / "run" / "upstream.port"
    with service_process("sp_istio_cache.upstream", ["--host", "127.0.0.1", "--port", "0"],
                         port_file, tmp_path / "upstream.log") as (proc, client):
        reply = client.get("/bytes/3?seed=x")
        assert (reply.status, reply.body) == (200, generate(3, "x"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert "Traceback" not in (tmp_path / "upstream.log").read_text()
