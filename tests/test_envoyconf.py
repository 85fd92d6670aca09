from pathlib import Path

import pytest
import yaml

from sp_istio_cache import envoyconf
from sp_istio_cache.pluginconfig import PluginConfigError


def _filters(doc):
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return [f["name"] for f in hcm["http_filters"]]


@pytest.mark.parametrize("variant,expected", [
    ("baseline", ["envoy.filters.http.router"]),
    ("filter", ["envoy.filters.http.wasm", "envoy.filters.http.router"]),
    ("filter-off", ["envoy.filters.http.wasm", "envoy.filters.http.router"]),
    ("envoy-cache", ["envoy.filters.http.cache", "envoy.filters.http.router"]),
])
def test_each_variant_renders_its_filter_chain(variant, expected):
    doc = yaml.safe_load(envoyconf.render(envoyconf.EnvoyConfig(
        variant=variant, upstream_port=8081, backend_port=8082, wasm_path=Path("/x/f.wasm"))))
    assert _filters(doc) == expected
    clusters = [c["name"] for c in doc["static_resources"]["clusters"]]
    assert clusters == (["upstream", "sp_cache_backend"] if "filter" in variant else ["upstream"])


def test_plugin_config_is_passed_verbatim_and_cache_disabled_for_filter_off():
    doc = yaml.safe_load(envoyconf.render(envoyconf.EnvoyConfig(
        variant="filter-off", upstream_port=1, backend_port=2, wasm_path=Path("/f.wasm"),
        plugin_config={"lookup_timeout_ms": 50})))
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm_cfg = hcm["http_filters"][0]["typed_config"]["config"]
    import json
    assert json.loads(wasm_cfg["configuration"]["value"]) == {
        "backend_cluster": "sp_cache_backend", "cache_enabled": False, "lookup_timeout_ms": 50}
    assert wasm_cfg["allow_on_headers_stop_iteration"] is True
    assert wasm_cfg["vm_config"]["code"]["local"]["filename"] == "/f.wasm"


def test_allow_on_headers_stop_iteration_can_be_turned_off_as_under_istio():
    doc = yaml.safe_load(envoyconf.render(envoyconf.EnvoyConfig(
        variant="filter", upstream_port=1, backend_port=2, wasm_path=Path("/f.wasm"),
        allow_on_headers_stop_iteration=False)))
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["http_filters"][0]["typed_config"]["config"]["allow_on_headers_stop_iteration"] is False


def test_unknown_variant_and_missing_wasm_are_refused():
    with pytest.raises(ValueError, match="unknown variant 'fast'"):
        envoyconf.render(envoyconf.EnvoyConfig(variant="fast", upstream_port=1))
    with pytest.raises(ValueError, match="needs the filter's wasm_path"):
        envoyconf.render(envoyconf.EnvoyConfig(variant="filter", upstream_port=1))


def test_invalid_plugin_config_is_refused_before_envoy_starts():
    with pytest.raises(PluginConfigError, match=r"\$.lookup_timeout_ms: 'fast' is not of type 'integer'"):
        envoyconf.render(envoyconf.EnvoyConfig(variant="filter", upstream_port=1, wasm_path=Path("/f"),
                                               plugin_config={"lookup_timeout_ms": "fast"}))
