"""``sp-istio-cache conformance``: the typer command (registered in ``sp_istio_cache.cli``).

Exit codes: 0 done (gate passed or not asked for); 1 the gate failed (each unexpected required
failure and stale list entry named on stderr) or a part of the stack failed; 2 bad input or a
missing prerequisite (node, the suite, a variant, the plugin config, the list file).
"""

from __future__ import annotations

import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .. import envoyconf, pluginconfig
from ..paths import REPO_ROOT
from ..stack import StackSpec
from . import expected as expected_mod
from .suite import UPSTREAM_URL, Suite, SuiteError, default_suite_dir

FILTER_VARIANTS = ("filter", "filter-off")
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _progress(line: str) -> None:
    err.print(f"conformance: {line}", markup=False)


def _plugin_config(path: Optional[Path]) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        _fail(f"cannot read plugin config {path}: {exc}", 2)
    if not isinstance(data, dict):
        _fail(f"plugin config {path} must be a JSON object, not {type(data).__name__}", 2)
    try:
        return pluginconfig.validate(data)
    except pluginconfig.PluginConfigError as exc:
        _fail(f"{path}: {exc}", 2)


def _profiles(variants: list[str], plugin_config: Optional[Path]):
    from .runner import Profile

    unknown = [v for v in variants if v not in envoyconf.VARIANTS]
    if unknown:
        _fail(f"unknown variant {unknown[0]!r}; known: {', '.join(envoyconf.VARIANTS)}", 2)
    if len(set(variants)) != len(variants):
        _fail("a variant is given twice", 2)
    if plugin_config is not None and not any(v in FILTER_VARIANTS for v in variants):
        _fail("--plugin-config configures the filter: add --variant filter", 2)
    config = _plugin_config(plugin_config)
    out = []
    for variant in variants:
        ours = variant in FILTER_VARIANTS
        out.append(Profile(expected_mod.profile_name(variant, plugin_config if ours else None),
                           StackSpec(variant=variant, plugin_config=config if ours else {})))
    return out


def _suite(path: Optional[Path]) -> Suite:
    path = path or default_suite_dir()
    if path is None:
        _fail(f"the cache-tests suite was not found (looked for shared/cache-tests beside the checkout); "
              f"get it from {UPSTREAM_URL} and pass --suite PATH", 2)
    try:
        return Suite(path)
    except SuiteError as exc:
        _fail(str(exc), 2)


VariantsOpt = typer.Option(["filter"], "--variant", help="Stack to test: filter | envoy-cache | baseline | "
                          "filter-off; repeat for several (one table).")
PluginConfigOpt = typer.Option(None, "--plugin-config", help="Filter configuration JSON (filter variants); the "
                               "profile becomes filter+<file stem>.")
TestOpt = typer.Option(None, "--test", help="Run only this test id and print the suite's dump of every exchange "
                       "(no files, no gate).")
OutOpt = typer.Option(None, "--out", help="Output directory (default reports/conformance-<UTC time>): "
                      "<profile>/results.json, <profile>/classified.json, summary.md.")
CompareOpt = typer.Option(True, "--compare/--no-compare", help="Add the suite's published caches to the table.")
GateOpt = typer.Option(True, "--gate/--no-gate", help="Exit 1 on a required FAIL that is not on the expected list, "
                       "or on a list entry that no longer fails.")
ExpectedOpt = typer.Option(expected_mod.DEFAULT_PATH, "--expected-failures", help="The expected-failures list (YAML).")
SuiteOpt = typer.Option(None, "--suite", help="The cache-tests checkout (default: $SP_ISTIO_CACHE_SUITE, else "
                        "shared/cache-tests beside the checkout).")


def conformance(variant: list[str] = VariantsOpt, plugin_config: Optional[Path] = PluginConfigOpt,
                test: Optional[str] = TestOpt, out: Optional[Path] = OutOpt, compare: bool = CompareOpt,
                gate: bool = GateOpt, expected_failures: Path = ExpectedOpt,
                suite_path: Optional[Path] = SuiteOpt) -> None:
    """Run the public HTTP caching suite (cache-tests.fyi) against Envoy stacks in reverse-proxy mode,
    compare with the published caches, and gate on unexpected required failures.

    The 4 interim-* tests are left out (they need the npm package undici)."""
    from .expected import ExpectedFailuresError
    from .runner import Outcome, run, run_one

    suite = _suite(suite_path)
    profiles = _profiles(variant, plugin_config)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SIGTERM unwinds like Ctrl-C: all stops
    if test is not None:
        if len(profiles) != 1:
            _fail("--test runs against one variant: give --variant once", 2)
        if test not in suite.tests:
            _fail(f"unknown test id {test!r} (ids are in {suite.root / 'tests'})", 2)
        if suite.tests[test].excluded:
            _fail(f"{test} is an interim test: it needs the npm package undici, which is not installed here", 2)
        try:
            code = run_one(suite, profiles[0], test, progress=_progress)
        except Exception as exc:  # noqa: BLE001 - any start failure is one message
            _fail(f"the run failed: {exc}", 1)
        raise typer.Exit(code)

    out = out or REPO_ROOT / "reports" / f"conformance-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        outcome: Outcome = run(suite, profiles, out, compare=compare, gate=gate,
                               expected_path=expected_failures, progress=_progress)
    except ExpectedFailuresError as exc:
        _fail(str(exc), 2)
    except Exception as exc:  # noqa: BLE001 - any part that failed is one message
        _fail(f"the run failed: {exc}", 1)
    typer.echo(outcome.summary_path.read_text())
    _progress(f"written to {out}")
    if outcome.problems:
        for line in outcome.problems:
            err.print(f"[bold red]gate:[/] {line}")
        raise typer.Exit(1)
