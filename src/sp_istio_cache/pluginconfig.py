"""The filter's plugin configuration: validation against ``filter/config.schema.json``.

The schema is the single description of the configuration; the filter refuses the same unknown
keys and wrong types in ``proxy_on_configure`` (tests check both sides).
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
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        raise PluginConfigError(f"plugin config {where}: {err.message}")
    redacted = {h.lower() for h in config.get("redact_headers", defaults()["redact_headers"])}
    clash = sorted(h for h in config.get("vary_headers", []) if h.lower() in redacted)
    if clash:
        raise PluginConfigError(
            f"plugin config $.vary_headers: {clash} are also redacted, so the backend could not "
            "recompute the cache key (docs/protocol.md)"
        )
    return config


#: the filter never holds more request body than this, whatever the config says (960 KiB, below
#: Envoy's default 1 MiB connection buffer; filter/src/filter.zig ``envoy_hold_limit``)
REQUEST_HOLD_CAP_BYTES = 1024 * 1024 - 64 * 1024


def fit_body_limits(config: dict[str, Any], response_bytes: int, request_bytes: int = 0) -> dict[str, Any]:
    """Return ``config`` with the body-size limits raised, where it leaves them unset, so that a
    response of ``response_bytes`` is stored and a request body of ``request_bytes`` is looked up.

    Used where the workbench measures the filter *at* a size (benchmark cells, smoke): a cell
    that measures buffering overhead at 1 MiB needs the filter to buffer 1 MiB. Limits the caller
    set are kept as they are (a measurement of the limit itself). The request limit never passes
    :data:`REQUEST_HOLD_CAP_BYTES`. Sizes in bytes.
    """
    out = dict(config)
    limits = defaults()
    if "max_response_body_bytes" not in out and response_bytes > limits["max_response_body_bytes"]:
        out["max_response_body_bytes"] = int(response_bytes)
    if "max_request_body_bytes" not in out and request_bytes > limits["max_request_body_bytes"]:
        out["max_request_body_bytes"] = int(min(request_bytes, REQUEST_HOLD_CAP_BYTES))
    return out
