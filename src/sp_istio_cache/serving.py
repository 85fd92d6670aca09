"""Run an aiohttp application until SIGTERM/SIGINT, announcing the bound port in a file.

Shared by ``python -m sp_istio_cache.backend`` and ``python -m sp_istio_cache.upstream``: bind
(port 0 picks a free one), write the port to ``port_file`` atomically once listening, serve,
and shut down cleanly on a signal.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

import uvloop
from aiohttp import web

log = logging.getLogger("sp_istio_cache.serving")


def write_port_file(path: Path, port: int) -> None:
    """Write ``port`` (decimal + newline) to ``path`` via rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bind(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (0 picks a free port).

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve(app: web.Application, host: str, port: int, port_file: Path | None = None,
                sock: socket.socket | None = None) -> None:
    """Serve ``app`` on ``host:port`` (or on the already listening ``sock``, e.g. one shared by
    pre-forked workers) until SIGTERM or SIGINT, then clean up and return.

    Raises:
        OSError: the address cannot be bound.
    """
    if sock is None:
        sock = bind(host, port)
    bound_port = sock.getsockname()[1]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        if port_file is not None:
            write_port_file(port_file, bound_port)
        log.info("listening on %s:%d", host, bound_port)
        await stop.wait()
        log.info("signal received, shutting down")
    finally:
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run(app: web.Application, host: str, port: int, port_file: Path | None = None,
        sock: socket.socket | None = None) -> int:
    """Blocking wrapper around :func:`serve`; returns the process exit code (0)."""
    # uvloop: a libuv event loop, markedly cheaper per request than asyncio's default loop;
    # the backend sits on every lookup's path, so its CPU per request is the filter's latency.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(app, host, port, port_file, sock))
    return 0


def service_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every service shares: ``--host``, ``--port`` (0 picks
    a free one), ``--port-file`` and ``--log-level``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ... (default INFO)")
    return p


def configure_logging(level: str) -> None:
    """Log records at ``level`` and above to stderr, one line each."""
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")


def run_service(app: web.Application, args: argparse.Namespace) -> int:
    """Configure logging from ``args.log_level`` (to stderr) and serve ``app`` on the parsed address."""
    configure_logging(args.log_level)
    return run(app, args.host, args.port, args.port_file)
