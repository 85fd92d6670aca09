"""The report's notebooks: ``notebooks/NN_name.py`` in jupytext's *percent* format are the source.

Why ``.py`` and not ``.ipynb``: a percent script is a notebook JupyterLab opens and runs as one
(with jupytext installed, "Open With → Notebook"; or ``jupytext --to ipynb``), its diffs are plain
Python and markdown, and it holds no outputs, so there is one file per notebook and nothing to
keep in sync. The report converts each one in memory (:func:`read_notebook`) and papermill
executes it; the executed ``.ipynb`` (with outputs) lands in the report directory.

A notebook is a document: markdown that says what each chart shows, how to read it and which
decision it drives, and code cells that only call :mod:`sp_istio_cache.report.steps`. The cell
tagged ``parameters`` declares the typed defaults papermill overrides.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat

from .kernel import DISPLAY_NAME, KERNEL_NAME
from .params import NOTEBOOK_DIR

NOTEBOOKS = ("01_build_filter", "02_smoke", "03_benchmark_matrix", "04_size_limit_tuning")


class NotebookError(ValueError):
    """A notebook source cannot be read or lacks its parameters cell; names the file."""


def source_path(name: str, directory: Path = NOTEBOOK_DIR) -> Path:
    """``notebooks/<name>.py``."""
    return Path(directory) / f"{name}.py"


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """A notebook from a percent ``.py`` (jupytext) or an ``.ipynb`` file, validated, with the
    workbench's kernel in its metadata.

    Raises:
        NotebookError: unreadable, invalid, or no cell tagged ``parameters``.
    """
    path = Path(path)
    try:
        nb = jupytext.read(path) if path.suffix == ".py" else nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except (OSError, ValueError, nbformat.ValidationError) as exc:
        raise NotebookError(f"{path}: not a readable notebook: {exc}") from None
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise NotebookError(f"{path}: no cell tagged 'parameters' (papermill injects the report's values after it)")
    nb.metadata.setdefault("kernelspec", {"name": KERNEL_NAME, "display_name": DISPLAY_NAME, "language": "python"})
    return nb


def materialize(path: Path, directory: Path) -> Path:
    """Write the notebook at ``path`` as ``directory/<stem>.ipynb`` (what papermill reads)."""
    target = Path(directory) / f"{Path(path).stem}.ipynb"
    nbformat.write(read_notebook(path), target)
    return target
