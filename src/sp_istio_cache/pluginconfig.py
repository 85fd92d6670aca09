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
