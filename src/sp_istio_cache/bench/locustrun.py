"""Locust in its own process group: the command line of a cell, and a supervised run.

One process (``processes`` 1, no remote worker): ``locust --headless`` records and writes
``samples.json``. Distributed: ``--processes N`` makes Locust fork a master and N local workers;
``expect_workers`` E > 0 runs a master that waits for E more workers from other machines
(``locust -f bench/cache_load.py --worker --master-host <this host> [--master-port P]``, started
once per cell: Locust workers quit with their master). The master collects every worker's
samples (see ``bench/cache_load.py``) and writes ``samples.worker-<i>.json``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import procutil
from ..paths import REPO_ROOT
from .scenario import Cell

LOCUSTFILE = REPO_ROOT / "bench" / "cache_load.py"
CPU_WARNING_TEXT = "CPU usage above"
#: seconds a cell may overrun its duration (Locust start-up, worker hand-over, stop) before it is killed
LOCUST_GRACE_S = 60.0
#: seconds a master waits for its expected workers before giving up
EXPECT_WORKERS_WAIT_S = 60
PAYLOAD_SEED = "1"


@dataclass(frozen=True)
class Distribution:
    """Where the load comes from: ``processes`` local workers (1: a single process, no master),
    ``expect_workers`` remote ones, and the master's bind address/port for them ('' / 0: Locust's
    defaults, all interfaces and 5557)."""

    processes: int = 1
    expect_workers: int = 0
    master_bind_host: str = ""
    master_bind_port: int = 0

    @property
    def workers(self) -> int:
        """Workers that send samples (0: one process without a master)."""
        local = self.processes if self.processes > 1 else 0
        return local + self.expect_workers


class LocustOverrun(RuntimeError):
    """Locust did not end within its duration plus :data:`LOCUST_GRACE_S`; it was killed."""


def locust_argv(cell: Cell, host: str, samples_out: Path, run_token: str, *,
                requests_file: Path | None = None, dist: Distribution = Distribution()) -> list[str]:
    """The Locust command line of one cell (headless, no shell)."""
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H", host,
            "-u", str(cell.users), "-r", f"{cell.spawn_rate or cell.users:g}",
            "-t", f"{max(1, math.ceil(cell.duration_s))}s", "--stop-timeout", "10",
            "--only-summary", "--exit-code-on-error", "0",
            "--payload-seed", PAYLOAD_SEED, "--cache-control", cell.cache_control,
            "--run-token", run_token, "--samples-out", str(samples_out), "--users-total", str(cell.users)]
    if requests_file is not None:
        argv += ["--requests-file", str(requests_file)]
    else:
        argv += ["--payload-bytes", str(cell.payload_bytes), "--request-body-bytes", str(cell.request_body_bytes or 0),
                 "--hit-ratio", f"{cell.target_hit_ratio or 0:g}", "--hot-keys", str(cell.hot_keys or 1),
                 "--upstream-delay-ms", f"{cell.upstream_delay_ms:g}"]
    if cell.rate > 0:
        argv += ["--rate", f"{cell.rate:g}"]
    if dist.expect_workers:
        argv += ["--master", "--expect-workers", str(dist.workers),
                 "--expect-workers-max-wait", str(EXPECT_WORKERS_WAIT_S)]
        if dist.master_bind_host:
            argv += ["--master-bind-host", dist.master_bind_host]
        if dist.master_bind_port:
            argv += ["--master-bind-port", str(dist.master_bind_port)]
    elif dist.processes > 1:
        argv += ["--processes", str(dist.processes)]
    return argv


def local_worker_argv(dist: Distribution) -> list[str] | None:
    """With remote workers, the command line of this machine's own workers (None: none needed,
    ``--processes`` alone makes Locust fork them)."""
    if not dist.expect_workers or dist.processes <= 1:
        return None
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--processes", str(dist.processes),
            "--master-host", "127.0.0.1", "--master-port", str(dist.master_bind_port or 5557)]


def run_locust(argv: list[str], log_path: Path, duration_s: float, *, worker_argv: list[str] | None = None,
               on_tick: Callable[[float], None] | None = None) -> tuple[int | None, float]:
    """Run Locust (and this machine's workers when ``worker_argv``); return (exit code, seconds).

    ``on_tick(seconds_into_load)`` is called about 5 times a second.

    Raises:
        LocustOverrun: still running :data:`LOCUST_GRACE_S` after ``duration_s``; killed.
    """
    log_path.write_bytes(b"")
    t0 = time.monotonic()
    proc = procutil.spawn(argv, log_path)
    workers = procutil.spawn(worker_argv, log_path.with_name("locust-workers.log")) if worker_argv else None
    try:
        deadline = t0 + duration_s + LOCUST_GRACE_S
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise LocustOverrun(f"Locust still running {LOCUST_GRACE_S:.0f} s after its {duration_s:g} s; "
                                    f"killed (see {log_path})")
            if on_tick is not None:
                on_tick(time.monotonic() - t0)
            time.sleep(0.2)
    finally:
        code = procutil.stop(proc)
        if workers is not None:
            procutil.stop(workers)
    return code, time.monotonic() - t0
