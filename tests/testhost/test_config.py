"""Issue 11 #8: configure refuses what the filter cannot honour, naming the key. The table is read
from filter/config.schema.json (the single source of truth): every integer key at each bound is
accepted, one past it refused, by the built filter in the test host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._support import SIGNING_KEY, config, req

SCHEMA = json.loads((Path(__file__).parents[2] / "filter" / "config.schema.json").read_text())
INTEGER_KEYS = sorted((k, v["minimum"], v["maximum"]) for k, v in SCHEMA["properties"].items()
                      if v.get("type") == "integer")


def _configure(make_host, cfg, **model_kw):
    model = make_host(cfg, start=False, **model_kw)
    return model, model.start()


def _refused_naming(model, key: str) -> None:
    errors = model.log_messages(min_level=4)
    assert errors and f'"{key}"' in errors[-1], errors


def test_the_table_covers_every_integer_key_of_the_schema():
    assert {k for k, _, _ in INTEGER_KEYS} == {
        "lookup_timeout_ms", "store_timeout_ms", "max_request_body_bytes", "max_response_body_bytes",
        "max_buffered_body_bytes", "max_stores_in_flight", "heuristic_max_seconds", "default_ttl_seconds",
        "l1_max_bytes", "hit_for_pass_seconds", "coalesce_timeout_ms", "max_variants", "stale_retention_seconds"}


@pytest.mark.parametrize("key,minimum,maximum", INTEGER_KEYS, ids=[k for k, _, _ in INTEGER_KEYS])
def test_integer_bounds_are_accepted_and_one_past_them_refused(make_host, key, minimum, maximum):
    for value in (minimum, maximum):
        model, ok = _configure(make_host, config(**{key: value}))
        assert ok, (key, value, model.log_messages(min_level=4))
    for value in (minimum - 1, maximum + 1):
        model, ok = _configure(make_host, config(**{key: value}))
        assert not ok, (key, value)
        _refused_naming(model, key)


@pytest.mark.parametrize("key,value", [
    ("max_request_body_bytes", 983041),  # above 960 KiB: Envoy's 1 MiB connection buffer could not hold it
    ("max_response_body_bytes", 64 * 1024 * 1024),  # the backend refuses bodies this large
    ("max_response_body_bytes", 8 * 1024 * 1024 + 1),
    ("max_variants", 65),
])
def test_limits_the_filter_or_backend_cannot_honour_are_refused(make_host, key, value):
    model, ok = _configure(make_host, config(**{key: value}))
    assert not ok
    _refused_naming(model, key)


@pytest.mark.parametrize("cfg,key", [
    ({"lookup_timout_ms": 10}, "lookup_timout_ms"),
    ({"max_response_body_bytes": "big"}, "max_response_body_bytes"),
    ({"max_response_body_bytes": 1.5}, "max_response_body_bytes"),
    ({"lookup_methods": ["GET", 3]}, "lookup_methods"),
    ({"lookup_methods": ["GET", "GET"]}, "lookup_methods"),
    ({"cacheable_statuses": [200, 206]}, "cacheable_statuses"),
    ({"cache_enabled": "yes"}, "cache_enabled"),
    ({"redact_headers": ["Cookie"]}, "redact_headers"),
    ({"redact_headers": ["a\r\nb"]}, "redact_headers"),
    ({"signing_key": "too short"}, "signing_key"),
    ({"signing_key_env": "1BAD"}, "signing_key_env"),
    ({"backend_cluster": ""}, "backend_cluster"),
    ({"store_set_cookie_responses": True}, "store_set_cookie_responses"),
])
def test_a_bad_value_is_refused_naming_the_key(make_host, cfg, key):
    model, ok = _configure(make_host, config(**cfg))
    assert not ok
    _refused_naming(model, key)


def test_the_signing_key_is_required_when_the_cache_is_enabled(make_host):
    model, ok = _configure(make_host, {"backend_key": "k"})
    assert not ok
    _refused_naming(model, "signing_key")
    _, ok = _configure(make_host, {"cache_enabled": False})
    assert ok  # an observing filter signs nothing


def test_the_signing_key_may_come_from_the_environment(make_host):
    env = {"SP_CACHE_SIGNING_KEY": SIGNING_KEY.decode(), "MY_BACKEND_KEY": "from-env"}
    model, ok = _configure(make_host, {"backend_key_env": "MY_BACKEND_KEY"}, env=env)
    assert ok, model.log_messages(min_level=4)
    s = model.new_stream()
    s.send_request_headers(req(), True)
    assert model.pending_calls[0].header("x-public-key") == "from-env"
    _, ok = _configure(make_host, {}, env={"SP_CACHE_SIGNING_KEY": "short"})
    assert not ok


def test_a_refused_reconfiguration_keeps_the_running_one(make_host):
    model = make_host(config(lookup_timeout_ms=123))
    assert model.reconfigure(config(lookup_timeout_ms=0)) is False
    s = model.new_stream()
    s.send_request_headers(req(), True)
    assert model.pending_calls[0].timeout_ms == 123


def test_every_counter_a_schema_description_names_exists():
    import re

    metrics_md = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"\| `([a-z0-9_]+)` \|", metrics_md))
    named = {(key, name) for key, spec in SCHEMA["properties"].items()
             for name in re.findall(r"\b((?:bypass|miss|store|entry|l1|lookup|hit)_[a-z_]+)\b", spec["description"])
             if name not in SCHEMA["properties"]}
    assert {(k, n) for k, n in named if n not in documented} == set()
