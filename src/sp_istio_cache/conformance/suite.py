"""The cache-tests suite on disk (http-tests/cache-tests, the suite behind cache-tests.fyi) and Node.

The suite is run from where it is, never copied. Everything this package knows about its tests,
its classification and its published results comes from the suite's own modules, read through
``suite_query.mjs`` (a small script of ours that imports them by absolute path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..paths import REPO_ROOT

#: the files of the suite this package uses (relative to the suite directory)
REQUIRED_FILES = ("tests/index.mjs", "test-engine/cli.mjs", "test-engine/server/server.mjs",
                  "test-engine/lib/results.mjs", "results/index.mjs")
#: suites of tests left out of every count, with the reason printed beside the table
EXCLUDED_SUITES = {"interim": "the interim-* tests import the npm package undici, which is not installed here"}
#: where the upstream project lives, for the "suite not found" message
UPSTREAM_URL = "https://github.com/http-tests/cache-tests"
SUITE_ENV = "SP_ISTIO_CACHE_SUITE"
QUERY_SCRIPT = Path(__file__).with_name("suite_query.mjs")


def npm_env(**settings: str) -> dict[str, str]:
    """Our environment without any inherited npm settings, plus ``npm_config_<key>`` for each of
    ``settings``: the suite's server and client read their settings from npm's variables only
    (RUNNING.md), also under plain node."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("npm_config_", "npm_package_config_"))}
    env.update({f"npm_config_{k}": v for k, v in settings.items()})
    return env


class SuiteError(RuntimeError):
    """The suite is missing or incomplete, or one of its scripts failed; the message says which."""


class NodeNotFound(SuiteError):
    """No ``node`` executable (Node.js 20 or newer) on PATH."""


def find_node() -> Path:
    """The ``node`` executable on PATH.

    Raises:
        NodeNotFound: there is none (Debian: ``apt-get install nodejs``).
    """
    found = shutil.which("node")
    if found is None:
        raise NodeNotFound("node (Node.js 20+) not found on PATH; install it (Debian: apt-get install nodejs)")
    return Path(found)


def default_suite_dir() -> Path | None:
    """``$SP_ISTIO_CACHE_SUITE``, else the nearest ``shared/cache-tests`` beside the checkout or one
    of its parents (``../shared/cache-tests`` for a clone, ``../../shared/cache-tests`` for a git
    worktree under ``wt/``); None when there is none."""
    if os.environ.get(SUITE_ENV):
        return Path(os.environ[SUITE_ENV])
    for parent in REPO_ROOT.parents:
        candidate = parent / "shared" / "cache-tests"
        if (candidate / "tests" / "index.mjs").exists():
            return candidate
    return None


@dataclass(frozen=True)
class SuiteTest:
    """One test of the suite: its ``id``, ``name``, ``kind`` (required | optimal | check), the
    ``suite`` (group) it belongs to, and the ids it ``depends_on``."""

    id: str
    name: str
    kind: str
    suite: str
    depends_on: tuple[str, ...] = ()

    @property
    def excluded(self) -> bool:
        """True when its group is in :data:`EXCLUDED_SUITES` (the interim tests)."""
        return self.suite in EXCLUDED_SUITES


@dataclass(frozen=True)
class PublishedResult:
    """One entry of the suite's ``results/index.mjs``: ``name`` (e.g. nginx), ``type`` (browser,
    rev-proxy, cdn), ``version``, and the results ``path``."""

    name: str
    type: str
    version: str
    path: Path

    @property
    def key(self) -> str:
        """The file's stem (``nginx``, ``trafficserver``): a stable short name."""
        return self.path.stem


class Suite:
    """A cache-tests checkout at ``root``, driven with ``node``.

    Raises (constructor):
        SuiteError: ``root`` lacks one of :data:`REQUIRED_FILES`; the message names it and says
            where to get the suite.
        NodeNotFound: no node (when ``node`` is not given).
    """

    def __init__(self, root: Path, node: Path | None = None) -> None:
        self.root = Path(root).resolve()
        missing = [f for f in REQUIRED_FILES if not (self.root / f).is_file()]
        if missing:
            raise SuiteError(f"{self.root} is not a cache-tests checkout (missing {missing[0]}); "
                             f"get the suite from {UPSTREAM_URL} and pass --suite PATH")
        self.node = Path(node) if node else find_node()

    @property
    def cli_script(self) -> Path:
        return self.root / "test-engine" / "cli.mjs"

    @property
    def server_script(self) -> Path:
        return self.root / "test-engine" / "server" / "server.mjs"

    def _query(self, *args: str, timeout_s: float = 120.0) -> Any:
        proc = subprocess.run([str(self.node), "--no-warnings", str(QUERY_SCRIPT), str(self.root), *args],
                              capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise SuiteError(f"suite_query.mjs {args[0]} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    @cached_property
    def tests(self) -> dict[str, SuiteTest]:
        """Every test of ``tests/index.mjs`` by id, in the suite's order."""
        return {t["id"]: SuiteTest(t["id"], t["name"], t["kind"], t["suite"], tuple(t["depends_on"]))
                for t in self._query("tests")}

    def counted_ids(self) -> list[str]:
        """The ids that take part in every count: all tests but the excluded groups'."""
        return [i for i, t in self.tests.items() if not t.excluded]

    def published(self, types: tuple[str, ...] = ("rev-proxy", "cdn")) -> list[PublishedResult]:
        """The published results listed in ``results/index.mjs`` whose type is in ``types``
        (browsers are left out by default: they are private caches, tested in another mode)."""
        return [PublishedResult(e["name"], e["type"], e.get("version", ""), self.root / "results" / e["file"])
                for e in self._query("published") if e["type"] in types]

    @cached_property
    def result_symbols(self) -> dict[str, str]:
        """{symbol: result type name}: the symbols cli.mjs prints for one test (``✅`` = pass)."""
        return {symbol: name for name, symbol in self._query("result-types").items() if symbol}

    def classify(self, results_files: list[Path]) -> dict[Path, dict[str, str]]:
        """Classify raw results files (the JSON cli.mjs prints) with the suite's
        ``determineTestResult`` (dependencies honoured).

        Returns:
            ``{file: {test_id: result type name}}`` for every test of the suite; the names are the
            keys of the suite's ``resultTypes`` (pass, fail, optional_fail, yes, no, setup_fail,
            harness_fail, dependency_fail, retry, untested).
        Raises:
            SuiteError: a file is unreadable or not results JSON (node's message).
        """
        paths = [Path(p).resolve() for p in results_files]
        raw = self._query("classify", *map(str, paths))
        return {p: raw[str(p)] for p in paths}
