"""Test helpers: run an aiohttp application on loopback in a background thread, talk to it with
http.client, and run a service's ``__main__`` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]  # in wire order, duplicates kept
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Client:
    """A tiny blocking HTTP/1.1 client bound to one loopback port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, resp.getheaders(), data)
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: bytes = b"", **kw) -> Reply:
        return self.request("POST", path, body=body, **kw)


@contextlib.contextmanager
def running(app: web.Application) -> Iterator[Client]:
    """Serve ``app`` on 127.0.0.1 (free port) in a thread; yield a :class:`Client`; clean up."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()
    port_box: list[int] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_box.append(runner.addresses[0][1])

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(10), "test server did not start"
    try:
        yield Client(port_box[0])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        assert not thread.is_alive(), "test server did not stop"


@contextlib.contextmanager
def service_process(module: str, args: list[str], port_file: Path,
                    log: Path) -> Iterator[tuple[subprocess.Popen, Client]]:
    """Run ``python -m module args...``; wait for ``port_file``; yield (process, client); always stop it."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, *args, "--port-file", str(port_file)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert proc.poll() is None, f"{module} exited early: {log.read_text()}"
            assert time.monotonic() < deadline, f"{module} wrote no port file: {log.read_text()}"
            time.sleep(0.02)
        yield proc, Client(int(port_file.read_text()))
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 probe)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
