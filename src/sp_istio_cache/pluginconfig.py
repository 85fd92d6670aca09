"""The filter's plugin configuration: validation against ``filter/config.schema.json``.

The schema is the single description of the configuration (keys, types, defaults, bounds, and the
rules between keys); the filter's Zig parser refuses the same configurations in
``proxy_on_configure``. ``filter/config_test.zig`` checks the Zig defaults and bounds against the
schema and ``tests/test_pluginconfig.py`` checks both parsers accept and refuse the same boundary
values. Nothing here re-states a bound.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema

from .paths import CONFIG_SCHEMA


class PluginConfigError(ValueError):
    """The plugin configuration does not match the schema; the message names the key."""


@cache
def schema() -> dict[str, Any]:
    """The filter configuration JSON Schema (draft 2020-12) as a dict."""
    return json.loads(CONFIG_SCHEMA.read_text())


def defaults() -> dict[str, Any]:
    """Every key of the schema with its default value."""
    return {k: v["default"] for k, v in schema()["properties"].items() if "default" in v}


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Return ``config`` unchanged when it is valid.

    Raises:
        PluginConfigError: naming the offending key (``$.key``) and the schema's complaint.
    """
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        if "allOf" in err.absolute_schema_path:
            # the one rule between keys (the Zig parser names the same key)
            raise PluginConfigError(
                "plugin config $.store_set_cookie_responses: requires set-cookie to be absent from "
                "redact_headers, given explicitly (a stored Set-Cookie must be replayed whole)"
            )
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        raise PluginConfigError(f"plugin config {where}: {err.message}")
    return config


def bound(key: str, which: str = "maximum") -> int:
    """An integer key's ``minimum`` or ``maximum`` from the schema (bytes, ms or seconds as the key
    says).

    Raises:
        KeyError: the key has no such bound.
    """
    return int(schema()["properties"][key][which])


def fit_body_limits(config: dict[str, Any], response_bytes: int, request_bytes: int = 0) -> dict[str, Any]:
    """Return ``config`` with the body-size limits raised, where it leaves them unset, so that a
    response of ``response_bytes`` is stored and a request body of ``request_bytes`` is looked up.

    Used where the workbench measures the filter *at* a size (benchmark cells, smoke): a cell
    that measures buffering overhead at 1 MiB needs the filter to buffer 1 MiB. Limits the caller
    set are kept as they are (a measurement of the limit itself). Neither limit passes the schema's
    maximum. Sizes in bytes.
    """
    out = dict(config)
    limits = defaults()
    if "max_response_body_bytes" not in out and response_bytes > limits["max_response_body_bytes"]:
        out["max_response_body_bytes"] = int(min(response_bytes, bound("max_response_body_bytes")))
    if "max_request_body_bytes" not in out and request_bytes > limits["max_request_body_bytes"]:
        out["max_request_body_bytes"] = int(min(request_bytes, bound("max_request_body_bytes")))
    return out
