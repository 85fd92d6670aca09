"""One conformance run: for each profile, the suite's origin on loopback, an Envoy stack in
reverse-proxy mode in front of it (its upstream cluster is the origin), the suite's client
against Envoy's listener; then classification, the comparison with the published caches and
the gate. Every process started here is stopped, also on errors and Ctrl-C (context managers
all the way down: origin, stack, client).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from ..stack import Stack, StackSpec
from . import client
from . import expected as expected_mod
from .counting import Row, count
from .origin import OriginServer
from .report import Measured, summary, write_classified
from .suite import Suite

Progress = Callable[[str], None]
#: Envoy's count of downstream streams reset for idleness (HCM stream_idle_timeout, 5 min default)
IDLE_TIMEOUT_STAT = "http.outbound_http.downstream_rq_idle_timeout"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Profile:
    """What to measure: a ``name`` (the expected-failures section and output folder) and the
    stack to run (its ``upstream_port`` is filled in with the origin's)."""

    name: str
    spec: StackSpec


@dataclass(frozen=True)
class Proxied:
    """A running origin behind Envoy: ``base_url`` is Envoy's listener (what the client uses)."""

    base_url: str
    origin: OriginServer
    stack: Stack


@contextlib.contextmanager
def proxied_origin(suite: Suite, spec: StackSpec, workdir: Path, progress: Progress = _quiet,
                   logs: Path | None = None) -> Iterator[Proxied]:
    """Start the origin and an Envoy stack whose upstream is that origin; yield both; stop them
    (Envoy first) when the block ends, however it ends. With ``logs``, the origin's and Envoy's
    logs are kept there (``origin.log``, ``envoy.log``, ``envoy-stats.txt``)."""
    stack_dir = workdir / "stack"
    try:
        with OriginServer(suite, workdir / "origin") as origin:
            progress(f"origin server listening on {origin.url}")
            with Stack(replace(spec, upstream_port=origin.port), stack_dir) as stack:
                progress(f"Envoy ({spec.variant}) listening on {stack.listener_url}, upstream {origin.url}")
                try:
                    yield Proxied(stack.listener_url, origin, stack)
                finally:
                    if logs is not None:  # Envoy's counters: connect failures, resets, timeouts
                        with contextlib.suppress(OSError):
                            (logs / "envoy-stats.txt").write_bytes(stack.running_envoy.admin_get("/stats"))
    finally:
        if logs is not None:
            for log in (workdir / "origin" / "origin.log", stack_dir / "envoy.log"):
                if log.exists():
                    shutil.copyfile(log, logs / log.name)


def measure(suite: Suite, profile: Profile, out_dir: Path, progress: Progress = _quiet) -> Measured:
    """Run the whole suite against one profile; write ``out_dir/<profile>/results.json`` (raw),
    ``classified.json``, and the logs ``client.log`` (the client's stderr), ``origin.log``,
    ``envoy.log``.

    Raises:
        ClientError, OriginStartError, EnvoyStartError, ServiceStartError: a part failed.
    """
    target = out_dir / profile.name
    target.mkdir(parents=True, exist_ok=True)
    results_path = target / "results.json"
    with tempfile.TemporaryDirectory(prefix="sp-conformance-") as tmp:
        with proxied_origin(suite, profile.spec, Path(tmp), progress, logs=target) as proxied:
            progress(f"{profile.name}: running {len(suite.tests)} tests (about a minute)")
            client.run_all(suite, proxied.base_url, results_path, target / "client.log")
            proxied.origin.check_alive()  # else the results are Envoy's 503s, not the cache's behaviour
            hung = proxied.stack.running_envoy.stats().get(IDLE_TIMEOUT_STAT, 0)
            if hung:
                progress(f"{profile.name}: warning: {hung:.0f} response(s) stopped mid-stream until Envoy's "
                         f"stream idle timeout (5 min) reset them ({IDLE_TIMEOUT_STAT}; docs/conformance.md)")
    classified = suite.classify([results_path])[results_path.resolve()]
    write_classified(target / "classified.json", classified)
    return Measured(profile.name, classified, results_path)


def run_one(suite: Suite, profile: Profile, test_id: str, stdout: IO[bytes] | None = None,
            progress: Progress = _quiet) -> int:
    """Run one test against a fresh stack with the suite's exchange dump on ``stdout``; return
    the client's exit code.

    Raises:
        KeyError: ``test_id`` is not a test of the suite (message lists nothing: ids are many).
    """
    if test_id not in suite.tests:
        raise KeyError(test_id)
    with tempfile.TemporaryDirectory(prefix="sp-conformance-") as tmp:
        with proxied_origin(suite, profile.spec, Path(tmp), progress) as proxied:
            return client.run_one(suite, proxied.base_url, test_id, stdout=stdout)


def published_rows(suite: Suite) -> list[Row]:
    """The comparison rows of the suite's published caches (rev-proxy and CDN), same counting."""
    published = suite.published()
    classified = suite.classify([p.path for p in published])
    ids = suite.counted_ids()
    return [Row(p.name, "published", count(classified[p.path.resolve()], ids), p.version) for p in published]


@dataclass
class Outcome:
    """What a run produced: the measured ``runs``, the table ``rows``, ``summary_path``, and the
    gate's ``problems`` (one line each; empty when the gate passed or was not asked for)."""

    runs: list[Measured]
    rows: list[Row]
    summary_path: Path
    problems: list[str] = field(default_factory=list)


def run(suite: Suite, profiles: Sequence[Profile], out_dir: Path, *, compare: bool = True, gate: bool = True,
        expected_path: Path = expected_mod.DEFAULT_PATH, progress: Progress = _quiet) -> Outcome:
    """Measure every profile, write ``out_dir/summary.md``, and evaluate the gate.

    Raises:
        ExpectedFailuresError: the list is malformed (checked before anything starts).
        the errors of :func:`measure`.
    """
    expected = expected_mod.load(expected_path) if gate or expected_path.exists() else {}
    ids = suite.counted_ids()
    runs = []
    for profile in profiles:
        run_ = measure(suite, profile, out_dir, progress)
        if gate:
            run_.gate = expected_mod.evaluate(profile.name, run_.classified, ids, expected.get(profile.name, ()))
        counts = count(run_.classified, ids)
        progress(f"{profile.name}: {counts['pass']} pass, {counts['fail']} required FAIL")
        runs.append(run_)
    rows = [Row(r.profile, "measured", count(r.classified, ids)) for r in runs]
    if compare:
        rows += published_rows(suite)
    baseline = next((r.classified for r in runs if r.profile == "baseline"), None)
    summary_path = out_dir / "summary.md"
    summary_path.write_text(summary(suite, rows, runs, expected, baseline))
    problems = [line for r in runs if r.gate for line in r.gate.problems()]
    return Outcome(runs, rows, summary_path, problems)
