"""Read the workbench's JSON documents (run manifests, cell records) and fail loudly with the path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_document(path: Path, schema: str, *, missing: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The JSON object at ``path`` whose ``schema`` field equals ``schema``.

    Raises:
        FileNotFoundError (or ``error`` when it is not ValueError): the file is missing; the
            message is ``"{path}: {missing}"``.
        ``error``: not JSON, or not a document of ``schema``; the message names the path.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise (FileNotFoundError if error is ValueError else error)(f"{path}: {missing}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        raise error(f"{path}: not a {schema} document")
    return doc
