"""The suite's origin server runs on loopback only, answers HTTP, and always ends."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import psutil
import pytest

from sp_istio_cache.conformance.origin import PRELOAD, OriginServer, listening_ports
from sp_istio_cache.conformance.suite import find_node

from .conftest import leftover_children

# each case: the arguments of server.listen(...) in JavaScript -> the address it must bind
LISTEN_CASES = [
    ("0", "127.0.0.1"),                    # listen(port): the suite's server
    ("'0'", "127.0.0.1"),                  # the port as a string, as it comes from npm_config_port
    ("0, () => {}", "127.0.0.1"),          # listen(port, callback)
    ("{ port: 0 }", "127.0.0.1"),          # listen(options)
    ("", "127.0.0.1"),                     # listen(): ephemeral port
    ("0, '127.0.0.2'", "127.0.0.2"),       # an explicit host is kept
    ("{ port: 0, host: '127.0.0.3' }", "127.0.0.3"),
]


@pytest.mark.parametrize(("args", "bound"), LISTEN_CASES)
def test_preload_puts_hostless_listen_on_loopback(args, bound):
    script = ("import net from 'node:net'; const s = net.createServer(); "
              f"s.listen({args}); s.on('listening', () => {{ "
              "console.log(JSON.stringify(s.address())); s.close() })")
    out = subprocess.run([str(find_node()), "--import", PRELOAD.as_uri(), "--input-type=module", "-e", script],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    address = json.loads(out)
    assert (address["address"], address["family"]) == (bound, "IPv4")
    assert address["port"] > 0


def test_origin_binds_only_loopback_answers_and_stops(suite, tmp_path, no_leftovers):
    origin = OriginServer(suite, tmp_path)
    with origin:
        pid = origin.proc.pid
        sockets = psutil.Process(pid).net_connections(kind="tcp")
        listening = [(c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN]
        assert listening == [("127.0.0.1", origin.port)]
        # a real exchange: store a test config, then read it back from the server's state
        request = urllib.request.Request(f"{origin.url}/config/probe-1", method="PUT",
                                         data=json.dumps([{"response_body": "x"}]).encode())
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert (reply.status, reply.read()) == (201, b"OK")
        assert (tmp_path / "origin.pid").read_text() == str(pid)
        assert list((tmp_path / "origin-root").iterdir()) == []  # nothing for its file handler to serve
    assert origin.proc.returncode is not None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert listening_ports(pid) == []
    assert leftover_children() == []


def test_an_origin_that_died_is_reported(suite, tmp_path, no_leftovers):
    import os
    import signal

    from sp_istio_cache.conformance.origin import OriginGone

    with OriginServer(suite, tmp_path) as origin:
        origin.check_alive()
        os.killpg(origin.proc.pid, signal.SIGKILL)
        origin.proc.wait(10)
        with pytest.raises(OriginGone, match=r"origin server ended \(exit code -9\) during the run"):
            origin.check_alive()
