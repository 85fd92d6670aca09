"""The suite's client (``test-engine/cli.mjs``) pointed at a proxy, as a child process.

cli.mjs reads ``npm_config_base`` (the proxy's URL) and ``npm_config_id`` (one test id, or empty
for all; ``npm_package_config_id`` must be empty too, else it runs nothing). With every test it
prints the raw results JSON on stdout (``{test_id: true | [error name, message]}``, the format
of the suite's ``results/*.json``); with one id it prints a dump of every exchange and a result
line instead.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import IO, Any

from .. import procutil
from .suite import Suite, npm_env


class ClientError(RuntimeError):
    """cli.mjs failed, timed out or printed no results JSON; the message carries its stderr tail."""


def client_env(base_url: str, test_id: str = "") -> dict[str, str]:
    """The environment cli.mjs needs to run ``test_id`` (empty: every test) against ``base_url``."""
    env = npm_env(base=base_url, id=test_id)
    env["npm_package_config_id"] = ""
    return env


def _run(suite: Suite, env: dict[str, str], stdout: IO[bytes] | None, stderr: IO[bytes] | None,
         timeout_s: float) -> int:
    """Run cli.mjs in its own process group; always stop the group (timeout, Ctrl-C, error)."""
    proc = subprocess.Popen([str(suite.node), "--no-warnings", str(suite.cli_script)],
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            start_new_session=True, env=env)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ClientError(f"cli.mjs did not finish within {timeout_s:.0f} s") from None
    finally:
        procutil.stop(proc)


def run_all(suite: Suite, base_url: str, results_path: Path, log_path: Path,
            timeout_s: float = 900.0) -> dict[str, Any]:
    """Run every test against ``base_url``; write the raw results JSON to ``results_path``.

    Returns:
        the results as a dict ``{test_id: true | [error name, message]}``.
    Raises:
        ClientError: non-zero exit, timeout, or stdout that is not a JSON object.
    """
    results_path.parent.mkdir(parents=True, exist_ok=True)
    with open(results_path, "wb") as out, open(log_path, "wb") as log:
        code = _run(suite, client_env(base_url), out, log, timeout_s)
    if code != 0:
        raise ClientError(f"cli.mjs exited with code {code}:\n{procutil.tail(log_path)}")
    try:
        results = json.loads(results_path.read_text())
    except ValueError as exc:
        raise ClientError(f"cli.mjs printed no results JSON ({exc}); see {results_path} and {log_path}") from exc
    if not isinstance(results, dict) or not results:
        raise ClientError(f"cli.mjs printed {type(results).__name__} with no results; see {results_path}")
    return results


def run_one(suite: Suite, base_url: str, test_id: str, stdout: IO[bytes] | None = None,
            timeout_s: float = 120.0) -> int:
    """Run one test with the suite's exchange dump written to ``stdout`` (None: ours); return
    cli.mjs's exit code. The caller checks that ``test_id`` exists (:class:`Suite` ``.tests``)."""
    return _run(suite, client_env(base_url, test_id), stdout, stdout, timeout_s)


def single_result(dump: str, suite: Suite) -> tuple[str, str]:
    """The (result type, details) of a one-test run from its printed dump: the line after
    ``==== Results`` is ``<symbol> - <details>``. The suite classifies a single test without
    its dependencies (cli.mjs).

    Raises:
        ClientError: the dump has no result line, or an unknown symbol.
    """
    lines = dump.splitlines()
    marks = [i for i, line in enumerate(lines) if "==== Results" in line]
    if not marks or marks[-1] + 1 >= len(lines):
        raise ClientError(f"no result line in the dump:\n{dump[-2000:]}")
    symbol, _, details = lines[marks[-1] + 1].partition(" - ")
    try:
        return suite.result_symbols[symbol.strip()], details.strip()
    except KeyError:
        raise ClientError(f"unknown result symbol {symbol!r}") from None
