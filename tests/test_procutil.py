"""Children that always end: what procutil.spawn starts is stopped when the workbench exits,
however it exits, unless it asked to keep them (a detached ``up``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import psutil

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from sp_istio_cache import procutil
    child = procutil.spawn([sys.executable, "-c", "import time; time.sleep(120)"], Path(sys.argv[1]))
    print(child.pid, flush=True)
    if sys.argv[2] == "keep":
        procutil.keep_children_on_exit()
    raise KeyboardInterrupt  # as a Ctrl-C before any caller could stop the child
""")


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def test_a_child_nobody_stopped_is_stopped_when_the_workbench_is_interrupted(tmp_path):
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "child.log"), "stop"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "KeyboardInterrupt" in run.stderr
    assert _gone(int(run.stdout.split()[0]))


def test_a_kept_child_outlives_the_workbench(tmp_path):
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "child.log"), "keep"],
                         capture_output=True, text=True, timeout=60)
    pid = int(run.stdout.split()[0])
    try:
        time.sleep(0.5)
        assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    finally:
        proc = psutil.Process(pid)
        proc.kill()
        proc.wait(10)
    assert not psutil.pid_exists(pid)
