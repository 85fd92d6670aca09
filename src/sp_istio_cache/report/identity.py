"""Module identity for the report: the ``.wasm`` measured and recommended is the one built.

The check itself is :func:`sp_istio_cache.istio.module.verify_module` (the one ``istio render``
and ``deploy`` use): a module whose bytes differ from the build record ``sp-istio-cache build``
wrote beside it is refused. Here: whether the module a *run* measured is the one this report
built, or, for a run tuned later, the one its build record still names.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..istio.module import verify_module
from ..istio.validate import IstioConfigError

__all__ = ["IstioConfigError", "run_module_problem", "verify_module"]


def run_module_problem(measured_sha256: str | None, measured_path: str | None, report_dir: Path | None) -> str | None:
    """Why the module a run measured is not the built one, or None when it is (or the run had no
    filter). The built digest is the report's ``build.json`` when it has one, else the build
    record beside the module the run loaded; that module must also still match its record."""
    if measured_sha256 is None:
        return None
    build = Path(report_dir) / "build.json" if report_dir else None
    if build is not None and build.is_file():
        built = json.loads(build.read_text())["sha256"]
        if built != measured_sha256:
            return (f"the run measured module sha256 {measured_sha256}, but this report built {built}: the "
                    "recommendation is about another module")
        return None
    if measured_path is None:
        return "the run does not name the module it loaded"
    try:
        actual = verify_module(Path(measured_path))
    except IstioConfigError as exc:
        return str(exc)
    if actual != measured_sha256:
        return (f"the run measured module sha256 {measured_sha256}, but {measured_path} and its build record now "
                f"say {actual}: the recommendation is about another module")
    return None
