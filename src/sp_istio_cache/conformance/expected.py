"""The expected-failures list and the conformance gate.

``conformance/expected-failures.yaml`` (checked in) maps a *profile* to the required failures
accepted for it, each with the reason it fails::

    filter:                      # the profile: the variant, or variant+<plugin config file stem>
      - id: freshness-max-age-age
        reason: the filter ignores the received Age header ...

The gate fails on any required failure (result type ``fail``) that is not on the profile's list,
and on any listed entry that is no longer a required failure (a stale entry: the list must stay
honest), and on listed ids the suite does not have.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from ..paths import REPO_ROOT

DEFAULT_PATH = REPO_ROOT / "conformance" / "expected-failures.yaml"

SCHEMA = {
    "type": "object",
    "propertyNames": {"pattern": r"^[a-z][a-z0-9-]*(\+[A-Za-z0-9_.-]+)?$"},
    "additionalProperties": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id", "reason"],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "reason": {"type": "string", "minLength": 20},
            },
        },
    },
}


class ExpectedFailuresError(ValueError):
    """The list file is unreadable or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class ExpectedFailure:
    """One accepted required failure: the suite's test ``id`` and why it fails (``reason``)."""

    id: str
    reason: str


def profile_name(variant: str, plugin_config: Path | None = None) -> str:
    """The list section (and output folder) for a run: ``variant``, or ``variant+<stem>`` when a
    plugin config file is given (``filter+rfc-faithful`` for ``rfc-faithful.json``)."""
    return variant if plugin_config is None else f"{variant}+{Path(plugin_config).stem}"


def load(path: Path = DEFAULT_PATH) -> dict[str, list[ExpectedFailure]]:
    """Read the list: ``{profile: [ExpectedFailure, ...]}``.

    Raises:
        ExpectedFailuresError: unreadable YAML, a schema violation (names the entry), or an id
            listed twice in one profile.
    """
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ExpectedFailuresError(f"cannot read expected failures {path}: {exc}") from exc
    doc = {} if doc is None else doc
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in errors[0].absolute_path)
        raise ExpectedFailuresError(f"expected failures {path}: ${where}: {errors[0].message}")
    out: dict[str, list[ExpectedFailure]] = {}
    for profile, entries in doc.items():
        seen: set[str] = set()
        for entry in entries:
            if entry["id"] in seen:
                raise ExpectedFailuresError(f"expected failures {path}: {profile} lists {entry['id']} twice")
            seen.add(entry["id"])
        out[profile] = [ExpectedFailure(e["id"], " ".join(e["reason"].split())) for e in entries]
    return out


@dataclass
class GateResult:
    """What the gate found for one profile.

    Attributes:
        profile: the list section used.
        failures: every required failure (ids, suite order).
        unexpected: required failures not on the list.
        stale: listed ids that are not required failures now: {id: their result type}.
        unknown: listed ids the suite does not have.
    """

    profile: str
    failures: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    stale: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unexpected or self.stale or self.unknown)

    def problems(self) -> list[str]:
        """One line per reason the gate fails (empty when it passes)."""
        lines = [f"{self.profile}: required FAIL not on the expected list: {i}" for i in self.unexpected]
        lines += [f"{self.profile}: stale expected-failure entry {i} (now {t}): remove it"
                  for i, t in self.stale.items()]
        lines += [f"{self.profile}: expected-failure entry {i} is not a counted test of this suite "
                  "(unknown id, or an excluded interim test)" for i in self.unknown]
        return lines


def evaluate(profile: str, classified: Mapping[str, str], counted_ids: Iterable[str],
             expected: Iterable[ExpectedFailure]) -> GateResult:
    """Compare one run's classified results with the profile's expected failures."""
    counted = list(counted_ids)
    listed = {e.id for e in expected}
    failures = [i for i in counted if classified.get(i) == "fail"]
    known = set(counted)
    return GateResult(
        profile=profile,
        failures=failures,
        unexpected=[i for i in failures if i not in listed],
        stale={i: classified[i] for i in sorted(listed & known) if classified.get(i) != "fail"},
        unknown=sorted(listed - known),
    )
