"""The plugin-config contract has one source, ``filter/config.schema.json``: the Python validator and
the filter's Zig parser (``filter/src/config.zig``, run natively through ``zig build tools``) must
accept and refuse exactly the same configurations. ``filter/config_test.zig`` checks the Zig
defaults and bounds against the schema key by key; this module checks behaviour at every boundary
the schema draws, so a bound changed in one place only fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sp_istio_cache import pluginconfig
from sp_istio_cache.paths import FILTER_DIR
from sp_istio_cache.pluginconfig import PluginConfigError


@pytest.fixture(scope="module")
def zig_parse(tmp_path_factory):
    """Parse configurations with the filter's Zig parser: list of configs -> list of (ok, key)."""
    prefix = tmp_path_factory.mktemp("zigtools")
    subprocess.run([sys.executable, "-m", "ziglang", "build", "tools", "-p", str(prefix)],
                   cwd=FILTER_DIR, check=True, capture_output=True)
    tool = Path(prefix) / "bin" / "config_check"

    def parse(configs: list[Any]) -> list[tuple[bool, str]]:
        lines = "".join(json.dumps(c) + "\n" for c in configs)
        out = subprocess.run([str(tool)], input=lines, capture_output=True, text=True, check=True).stdout
        verdicts = []
        for line in out.splitlines():
            verdicts.append((True, "") if line == "ok" else (False, line.split(" ", 2)[1]))
        assert len(verdicts) == len(configs)
        return verdicts

    return parse


def _boundary_configs() -> list[dict[str, Any]]:
    """Configurations on both sides of every boundary the schema draws, derived from the schema."""
    props = pluginconfig.schema()["properties"]
    cases: list[dict[str, Any]] = [{}, {"no_such_key": 1}]
    for key, spec in props.items():
        t = spec.get("type")
        if t == "integer":
            lo, hi = spec["minimum"], spec["maximum"]
            cases += [{key: v} for v in (lo, hi, lo - 1, hi + 1, "1", 1.5, True, None)]
        elif t == "boolean":
            cases += [{key: v} for v in (True, False, 1, "true")]
        elif t == "string":
            cases += [{key: v} for v in ("", "x", "A_1", "1A", "a-b", "k" * 31, "k" * 32, "k" * 256, "k" * 257, 5)]
        elif "enum" in spec:
            cases += [{key: v} for v in (*spec["enum"], "nope", 3)]
        elif key == "lookup_methods":
            cases += [{key: v} for v in (["GET"], [], ["POST", "PUT"], ["GET", "GET"], ["TRACE"], ["get"], "GET", [1])]
        elif key == "cacheable_statuses":
            cases += [{key: v} for v in ("all", "some", [200], [599], [199], [600], [206], [304], [200, 200], [],
                                         ["200"])]
        elif key == "redact_headers":
            cases += [{key: v} for v in ([], ["cookie"], ["Cookie"], ["a b"], ["x\r\ny"], [""], ["a", "a"], "cookie",
                                         [1])]
        else:  # pragma: no cover - a new kind of key needs cases here
            raise AssertionError(f"no boundary cases for schema key {key!r}")
    cases += [
        {"store_set_cookie_responses": True},
        {"store_set_cookie_responses": True, "redact_headers": ["cookie"]},
        {"store_set_cookie_responses": True, "redact_headers": ["set-cookie"]},
        {"store_set_cookie_responses": False, "redact_headers": ["set-cookie"]},
    ]
    return cases


def _python_verdict(config: Any) -> tuple[bool, str]:
    try:
        pluginconfig.validate(config)
    except PluginConfigError as exc:
        msg = str(exc)
        key = msg.split(":", 1)[0].removeprefix("plugin config $").lstrip(".").split("[", 1)[0]
        return False, key or "-"
    return True, ""


def test_python_and_zig_parsers_agree_on_every_boundary(zig_parse):
    configs = _boundary_configs()
    assert len(configs) > 150
    zig = zig_parse(configs)
    disagreements = []
    for config, (z_ok, z_key) in zip(configs, zig):
        p_ok, p_key = _python_verdict(config)
        if p_ok != z_ok:
            zig_says = "accepts" if z_ok else f"refuses ({z_key})"
            disagreements.append(f"{config}: python {'accepts' if p_ok else 'refuses'}, zig {zig_says}")
        elif not p_ok and p_key not in ("-", z_key) and z_key != "-":
            disagreements.append(f"{config}: python names {p_key!r}, zig names {z_key!r}")
    assert disagreements == []


def test_defaults_cover_every_schema_key():
    d = pluginconfig.defaults()
    assert d["max_response_body_bytes"] == 262144
    assert d["default_ttl_seconds"] == 0
    assert d["cacheable_statuses"] == "all"
    assert d["lookup_methods"] == ["GET", "HEAD"]
    assert set(d) == set(pluginconfig.schema()["properties"])
    assert pluginconfig.validate(d) == d


@pytest.mark.parametrize("config,message", [
    ({"backend_clustr": "x"}, r"Additional properties are not allowed \('backend_clustr' was unexpected\)"),
    ({"max_response_body_bytes": -1}, r"\$.max_response_body_bytes: -1 is less than the minimum of 0"),
    ({"max_request_body_bytes": 983041}, r"\$.max_request_body_bytes: 983041 is greater than the maximum of 983040"),
    ({"redact_headers": ["Cookie"]}, r"\$.redact_headers\[0\]: 'Cookie' does not match"),
    ({"store_set_cookie_responses": True}, r"\$.store_set_cookie_responses: requires set-cookie to be absent"),
])
def test_invalid_config_names_the_key(config, message):
    with pytest.raises(PluginConfigError, match=message):
        pluginconfig.validate(config)


def test_fit_body_limits_raises_only_unset_limits_within_the_schema():
    fit = pluginconfig.fit_body_limits
    assert fit({}, 1048576) == {"max_response_body_bytes": 1048576}
    assert fit({}, 1024) == {}  # within the 256 KiB default
    assert fit({}, 64 * 1048576) == {"max_response_body_bytes": 8388608}
    assert fit({"max_response_body_bytes": 4096}, 1048576) == {"max_response_body_bytes": 4096}
    assert fit({}, 0, 8 * 1048576) == {"max_request_body_bytes": 983040}
    assert fit({"lookup_timeout_ms": 5}, 300000, 70000) == {
        "lookup_timeout_ms": 5, "max_response_body_bytes": 300000, "max_request_body_bytes": 70000}
