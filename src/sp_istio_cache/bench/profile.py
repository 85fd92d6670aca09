"""Traffic profiles: the mix of requests a bench sends instead of sizes × hit ratios.

A profile is rows of (method, path, request body bytes, response body bytes when known, status
and Cache-Control when known, weight). It is read from CSV, YAML or JSON (:func:`load_profile`)
and built from real traffic by :mod:`sp_istio_cache.bench.profile_import`. The model is
:class:`TrafficProfile`; its JSON Schema is ``bench/profile.schema.json`` (generated from the
model: ``python -m sp_istio_cache.bench.profile``).

How the bench sends a profile (:func:`profile_requests`): each Locust user picks rows at random,
in proportion to their weight, from a generator seeded per user (reproducible).

- against the **test upstream** each row becomes its own key on ``/bytes/<response bytes>`` with
  the row's method, request body, Cache-Control (else the matrix's ``cache_control``) and, for a
  2xx row, its status: the cache meets the profile's sizes and mix, the origin is the workbench's.
  A row needs ``response_body_bytes`` here.
- against an **external upstream** (``--upstream``) each row is sent as recorded: method, path,
  a request body of the recorded size.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..paths import REPO_ROOT

PROFILE_SCHEMA: Final = "sp-istio-cache/profile/1"
SCHEMA_FILE = REPO_ROOT / "bench" / "profile.schema.json"
ROW_FIELDS = ("method", "path", "request_body_bytes", "response_body_bytes", "status", "cache_control", "weight")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Z-]+$")  # RFC 9110 §5.6.2 token (upper-cased)


class ProfileError(ValueError):
    """A profile file or import source is unusable; the message names the file (and row)."""


class ProfileRow(BaseModel):
    """One kind of request and its share of the traffic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(description="Request method (RFC 9110 §9), upper case.")
    path: str = Field(description="Path and query as sent, starting with '/'.", min_length=1, max_length=8192)
    request_body_bytes: int = Field(0, ge=0, description="Request body size in bytes.")
    response_body_bytes: int | None = Field(None, ge=0, description="Response body size in bytes; null: unknown.")
    status: int | None = Field(None, ge=100, le=599, description="Response status when known.")
    cache_control: str | None = Field(None, description="The response's Cache-Control when known.")
    weight: float = Field(1.0, gt=0, description="Relative share of the traffic (e.g. a request count).")

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        value = value.strip().upper()
        if not _TOKEN.match(value):
            raise ValueError(f"{value!r} is not an HTTP method token")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in " \t\r\n\0"):
            raise ValueError(f"{value[:80]!r}: a path starts with '/' and has no whitespace (percent-encode it)")
        return value


class TrafficProfile(BaseModel):
    """A named traffic profile (``profile.json`` in a run directory)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["sp-istio-cache/profile/1"] = Field(PROFILE_SCHEMA, alias="schema")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Used in cell ids.")
    source: str = Field("", description="Where the rows came from (file, import kind).")
    rows: list[ProfileRow] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> TrafficProfile:
        seen: dict[tuple, int] = {}
        for i, row in enumerate(self.rows):
            key = (row.method, row.path, row.request_body_bytes)
            if key in seen:
                raise ValueError(f"rows {seen[key] + 1} and {i + 1} are the same request "
                                 f"({row.method} {row.path[:80]}, {row.request_body_bytes} body bytes): merge them")
            seen[key] = i
        return self

    @property
    def sha256(self) -> str:
        """Digest of the canonical JSON of the profile (recorded in every cell)."""
        return hashlib.sha256(self.model_dump_json(by_alias=True).encode()).hexdigest()

    def floor_body_bytes(self) -> int:
        """The weighted median of the known response sizes (0 when none is known): the size of
        the generator floor's direct response."""
        known = sorted((r.response_body_bytes, r.weight) for r in self.rows if r.response_body_bytes is not None)
        if not known:
            return 0
        half, acc = sum(w for _, w in known) / 2, 0.0
        for size, weight in known:
            acc += weight
            if acc >= half:
                return int(size)
        return int(known[-1][0])


def _name_from(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "profile"
    return name[:64]


def _csv_rows(text: str, path: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    unknown = [h for h in header if h not in ROW_FIELDS]
    if unknown or "method" not in header or "path" not in header:
        raise ProfileError(f"{path}: CSV header {header}: needs method and path, may have {', '.join(ROW_FIELDS)}"
                           + (f"; unknown {unknown}" if unknown else ""))
    return [{k: v for k, v in row.items() if v not in ("", None)} for row in reader]


def parse_profile(data: Any, path: Path, default_name: str) -> TrafficProfile:
    """A profile from parsed YAML/JSON: a full document or a bare list of rows.

    Raises:
        ProfileError: naming the file, the row (1-based) and the field.
    """
    doc = {"name": default_name, "source": str(path), "rows": data} if isinstance(data, list) else data
    if not isinstance(doc, dict):
        raise ProfileError(f"{path}: expected a list of rows or a mapping with 'rows', got {type(data).__name__}")
    doc = {"name": default_name, "source": str(path), **doc}
    try:
        return TrafficProfile.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = list(err["loc"])
        if len(loc) >= 2 and loc[0] == "rows" and isinstance(loc[1], int):
            where = f"row {loc[1] + 1}: {'.'.join(str(p) for p in loc[2:]) or 'row'}"
        else:
            where = ".".join(map(str, loc)) or "profile"
        message = err["msg"].removeprefix("Value error, ")
        raise ProfileError(f"{path}: {where}: {message}") from None


def load_profile(path: Path) -> TrafficProfile:
    """Read a profile file: ``.csv`` (header: method, path and any of the other row fields),
    ``.yaml``/``.yml`` or ``.json`` (a list of rows, or ``{name, source, rows}``).

    Raises:
        ProfileError: unreadable file, unknown extension, bad row; names the file and row.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            data: Any = _csv_rows(text, path)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ProfileError(f"{path}: unknown profile format {suffix!r}; use .csv, .yaml or .json")
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    return parse_profile(data, path, _name_from(path))


def write_profile(profile: TrafficProfile, path: Path) -> Path:
    """Write ``profile`` as CSV (``.csv``), YAML (``.yaml``/``.yml``) or JSON (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    rows = [r.model_dump() for r in profile.rows]
    if suffix == ".csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(ROW_FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        path.write_text(out.getvalue())
    elif suffix in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(profile.model_dump(by_alias=True), sort_keys=False))
    else:
        path.write_text(profile.model_dump_json(by_alias=True, indent=2) + "\n")
    return path


def profile_requests(profile: TrafficProfile, *, external: bool, cache_control: str, delay_ms: float,
                     seed: str = "1") -> list[dict[str, Any]]:
    """What Locust sends for ``profile``: ``[{method, path, body_bytes, weight}]`` (see the
    module docstring).

    Raises:
        ProfileError: a row lacks ``response_body_bytes`` while the test upstream answers.
    """
    out = []
    for i, row in enumerate(profile.rows):
        if external:
            out.append({"method": row.method, "path": row.path, "body_bytes": row.request_body_bytes,
                        "weight": row.weight})
            continue
        if row.response_body_bytes is None:
            raise ProfileError(f"profile {profile.name}: row {i + 1} ({row.method} {row.path[:80]}) has no "
                               "response_body_bytes; the test upstream needs it (or use --upstream)")
        query = f"seed={quote(seed)}&cache_control={quote(row.cache_control or cache_control)}"
        if row.status is not None and 200 <= row.status < 300 and row.status != 200:
            query += f"&status={row.status}"
        if delay_ms:
            query += f"&delay_ms={delay_ms:g}"
        out.append({"method": row.method, "path": f"/bytes/{row.response_body_bytes}?{query}&k=row-{i}",
                    "body_bytes": row.request_body_bytes, "weight": row.weight})
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a profile document (``bench/profile.schema.json``)."""
    schema = TrafficProfile.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": PROFILE_SCHEMA, **schema}


if __name__ == "__main__":  # pragma: no cover - regenerates the checked-in schema
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_FILE
    target.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(target)
