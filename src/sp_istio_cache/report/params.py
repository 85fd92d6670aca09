"""Report parameter sets: named YAML files in ``notebooks/params/`` (quick, full, ci) or any
YAML file, plus ``key=value`` overrides whose values are parsed as YAML (``users=5`` is an int,
``payload_bytes=[1024,4096]`` a list of ints, ``p99_ratio_budget=null`` None).

The set is one flat mapping; each notebook receives the keys its ``parameters`` cell declares.
A key no notebook declares is an error naming it (a typo must not be silently ignored). Paths
(:data:`PATH_KEYS`) given relative are resolved against the directory the command runs in, never
the report folder the notebooks execute in (:func:`resolve_paths`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..paths import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = NOTEBOOK_DIR / "params"
#: parameters that name files or directories
PATH_KEYS = ("run_dir", "matrix_file", "profile", "envoy_path", "base_plugin_config_file")


class ParamsError(ValueError):
    """A parameter file or override is invalid; the message names the file or key."""


def named_sets() -> list[str]:
    """Names of the parameter sets shipped in notebooks/params/."""
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def resolve(name_or_path: str) -> Path:
    """``quick`` → notebooks/params/quick.yaml; a path to a YAML file is taken as is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise ParamsError(f"{path}: no such parameter file")
        return path
    candidate = PARAMS_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise ParamsError(f"unknown parameter set {name_or_path!r}; known: {', '.join(named_sets())} "
                          "(or a path to a .yaml file)")
    return candidate


def load(name_or_path: str) -> dict[str, Any]:
    """Read a parameter set as a mapping.

    Raises:
        ParamsError: missing file, bad YAML, or not a mapping; names the file.
    """
    path = resolve(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of parameters, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["users=5", "variants=[baseline,filter]"]`` → ``{"users": 5, "variants": ["baseline", "filter"]}``.

    Raises:
        ParamsError: an item without ``=`` or with an unparsable value; names it.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ParamsError(f"-p {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ParamsError(f"-p {item!r}: value is not valid YAML: {exc}") from None
    return out


def split_by_notebook(params: dict[str, Any], declared: dict[str, set[str]]) -> dict[str, dict[str, Any]]:
    """Give each notebook the parameters it declares.

    Raises:
        ParamsError: a key that no notebook declares (names it and the notebooks' keys).
    """
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(params) - known)
    if unknown:
        raise ParamsError(f"unknown report parameters {unknown}; the notebooks declare: {', '.join(sorted(known))}")
    return {nb: {k: v for k, v in params.items() if k in keys} for nb, keys in declared.items()}


def resolve_paths(params: dict[str, Any], cwd: Path | None = None) -> dict[str, Any]:
    """``params`` with every non-empty relative path of :data:`PATH_KEYS` made absolute against
    ``cwd`` (default: the current directory); ``~`` is expanded."""
    base = Path(cwd) if cwd is not None else Path.cwd()
    out = dict(params)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value.strip():
            path = Path(value).expanduser()
            out[key] = str(path if path.is_absolute() else (base / path).resolve())
    return out
