"""Which plugin configuration a rendering deploys, and whether the tuning run vouches for it.

The size-limit tuning step writes ``reports/latest/recommended_plugin_config.json``. A
recommendation built on generator-limited, unstable or failing cells is *refused* by that step
(issue 14), and ``istio render`` must not deploy it. The file is read defensively, in either shape:

- an envelope ``{"verdict": "trusted" | "refused" | ..., "trusted": true | false,
  "reason": "...", "plugin_config": {...}}``;
- a flat plugin config carrying the same verdict keys beside the plugin keys (they are removed
  before the config is validated).

It is trusted only when nothing says otherwise and something says so: ``trusted`` is not false,
``verdict`` (when present) is one of ``TRUSTED_VERDICTS``, and at least one of the two is present.
A file with no verdict at all predates verdicts and is not trusted by default. docs/deploy.md
lists these fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .validate import IstioConfigError

TRUSTED_VERDICTS = ("trusted", "accepted", "ok", "recommended")
#: keys of a recommendation that are about it, not plugin configuration
VERDICT_KEYS = ("verdict", "trusted", "reason", "reasons")


class RecommendationRefused(IstioConfigError):
    """The recommendation is absent, marked refused/untrusted, or carries no verdict."""


@dataclass(frozen=True)
class Recommendation:
    """A plugin config and what its source says about it."""

    plugin_config: dict[str, Any]
    source: str
    trusted: bool
    why: str
    has_verdict: bool = True


def _reason(doc: dict[str, Any]) -> str:
    reason = doc.get("reason") or doc.get("reasons")
    if isinstance(reason, list):
        reason = "; ".join(map(str, reason))
    return f": {reason}" if reason else ""


def read_recommendation(path: Path) -> Recommendation:
    """Parse a recommendation or plain plugin config file (either shape above).

    Raises:
        IstioConfigError: unreadable, not JSON, not an object, or ``plugin_config`` not an object.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IstioConfigError(f"pluginConfig: cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise IstioConfigError(f"pluginConfig: {path} must hold a JSON object, got {type(doc).__name__}")
    if "plugin_config" in doc:
        config = doc["plugin_config"]
        if not isinstance(config, dict):
            raise IstioConfigError(f"pluginConfig: {path}: plugin_config must be an object")
    else:
        config = {k: v for k, v in doc.items() if k not in VERDICT_KEYS}
    trusted_flag, verdict = doc.get("trusted"), doc.get("verdict")
    if trusted_flag is False:
        return Recommendation(config, str(path), False, f"{path} is marked trusted: false{_reason(doc)}")
    if verdict is not None and str(verdict).lower() not in TRUSTED_VERDICTS:
        return Recommendation(config, str(path), False, f"{path} has verdict {verdict!r}{_reason(doc)}")
    if trusted_flag is None and verdict is None:
        return Recommendation(config, str(path), False,
                              f"{path} carries no verdict (no 'verdict' or 'trusted' field: a tuning run "
                              "older than verdicts)", has_verdict=False)
    return Recommendation(config, str(path), True, f"{path} (verdict {verdict or 'trusted'})")


def choose_plugin_config(tuning_output: Path, *, explicit: Path | None = None,
                         schema_defaults: bool = False,
                         defaults: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The plugin config to render, and notes saying where it came from.

    ``explicit`` (``--plugin-config FILE``) is the operator's choice: used unless it is itself
    marked refused. Otherwise the tuning output, when it is trusted. ``schema_defaults`` (an
    explicit flag) allows falling back to ``defaults`` when the tuning output is absent or not
    trusted; without it that is a refusal naming the reason.

    Raises:
        RecommendationRefused: the reason, and the ways out.
        IstioConfigError: an unreadable file.
    """
    if explicit is not None:
        rec = read_recommendation(explicit)
        if not rec.trusted and rec.has_verdict:
            raise RecommendationRefused(f"pluginConfig: refused: {rec.why}")
        return rec.plugin_config, [f"pluginConfig from {explicit}"]
    if tuning_output.exists():
        rec = read_recommendation(tuning_output)
        if rec.trusted:
            return rec.plugin_config, [f"pluginConfig from {rec.why}"]
        why = f"the recommendation is not trustworthy: {rec.why}"
    else:
        why = f"no recommendation at {tuning_output}"
    if schema_defaults and defaults is not None:
        return dict(defaults), [f"{why}; pluginConfig from the schema defaults (--schema-defaults)"]
    raise RecommendationRefused(
        f"pluginConfig: {why}. Run `sp-istio-cache report` for a trusted one, pass --plugin-config FILE, "
        "or render the filter's schema defaults with --schema-defaults")
