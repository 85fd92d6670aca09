"""``sp-istio-cache conformance``: bad input and missing prerequisites, refused before anything
starts (exit 2, one line naming the problem)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sp_istio_cache.cli import app

from .conftest import leftover_children

runner = CliRunner()


def test_missing_node_is_one_line_and_exit_2(tmp_path, suite):
    result = runner.invoke(app, ["conformance", "--suite", str(suite.root)], env={"PATH": str(tmp_path)})
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: node (Node.js 20+) not found on PATH; install it (Debian: apt-get install nodejs)"]


def test_missing_suite_says_where_to_get_it(tmp_path):
    result = runner.invoke(app, ["conformance", "--suite", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path} is not a cache-tests checkout (missing tests/index.mjs)" in result.stderr
    assert "https://github.com/http-tests/cache-tests" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--variant", "nginx"], "unknown variant 'nginx'; known: baseline, filter-off, filter, envoy-cache"),
    (["--variant", "baseline", "--variant", "baseline"], "a variant is given twice"),
    (["--variant", "envoy-cache", "--plugin-config", "{cfg}"], "--plugin-config configures the filter"),
    (["--plugin-config", "{bad}"], "bad.json: plugin config $.default_ttl_seconds: -1 is less than the minimum of 0"),
    (["--plugin-config", "{list}"], "must be a JSON object, not list"),
    (["--variant", "baseline", "--test", "no-such-test"], "unknown test id 'no-such-test'"),
    (["--variant", "baseline", "--test", "interim-102"],
     "interim-102 is an interim test: it needs the npm package undici"),
    (["--variant", "baseline", "--variant", "envoy-cache", "--test", "freshness-none"],
     "--test runs against one variant"),
])
def test_bad_input_is_refused_before_anything_starts(tmp_path, suite, args, message):
    files = {"cfg": "{}", "bad": '{"default_ttl_seconds": -1}', "list": "[]"}
    for name, text in files.items():
        (tmp_path / f"{name}.json").write_text(text)
    args = [a.format(**{k: tmp_path / f"{k}.json" for k in files}) for a in args]
    result = runner.invoke(app, ["conformance", "--suite", str(suite.root), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert leftover_children() == []


def test_malformed_expected_list_is_refused(tmp_path, suite):
    bad = tmp_path / "expected.yaml"
    bad.write_text("filter:\n  - id: x\n")
    result = runner.invoke(app, ["conformance", "--suite", str(suite.root), "--variant", "baseline",
                                 "--expected-failures", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "$.filter[0]: 'reason' is a required property" in result.stderr
    assert leftover_children() == []
