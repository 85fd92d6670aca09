import pytest

from sp_istio_cache import pluginconfig
from sp_istio_cache.pluginconfig import PluginConfigError


def test_defaults_cover_every_schema_key():
    d = pluginconfig.defaults()
    assert d["max_response_body_bytes"] == 262144
    assert d["lookup_methods"] == ["GET", "HEAD"]
    assert set(d) == set(pluginconfig.schema()["properties"])
    assert pluginconfig.validate(d) == d


@pytest.mark.parametrize("config,message", [
    ({"backend_clustr": "x"}, r"Additional properties are not allowed \('backend_clustr' was unexpected\)"),
    ({"max_response_body_bytes": -1}, r"\$.max_response_body_bytes: -1 is less than the minimum of 0"),
    ({"cacheable_statuses": [200, "x"]}, r"\$.cacheable_statuses\[1\]: 'x' is not of type 'integer'"),
    ({"vary_headers": ["Authorization"]}, r"\$.vary_headers: \['Authorization'\] are also redacted"),
])
def test_invalid_config_names_the_key(config, message):
    with pytest.raises(PluginConfigError, match=message):
        pluginconfig.validate(config)


def test_fit_body_limits_raises_only_unset_limits_and_caps_the_request_hold():
    fit = pluginconfig.fit_body_limits
    assert fit({}, 1048576) == {"max_response_body_bytes": 1048576}
    assert fit({}, 1024) == {}  # within the 256 KiB default
    assert fit({"max_response_body_bytes": 4096}, 1048576) == {"max_response_body_bytes": 4096}
    assert fit({}, 0, 8 * 1048576) == {"max_request_body_bytes": 983040}
    assert fit({"lookup_timeout_ms": 5}, 300000, 70000) == {
        "lookup_timeout_ms": 5, "max_response_body_bytes": 300000, "max_request_body_bytes": 70000}
