"""Module identity: the bench runs only the filter module its build recorded.

``sp-istio-cache build`` writes ``<module>.sha256`` (sha256sum format: ``<hex>  <name>``) beside
the module. Before anything starts, the bench hashes the module and refuses it when the digest
differs from that record, or when there is no record to compare with.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


class ModuleIdentityError(ValueError):
    """The module is not the one its build recorded; one line naming both digests."""


def build_record(wasm: Path) -> Path:
    """The build record of ``wasm``: ``<wasm>.sha256`` beside it."""
    return Path(wasm).with_name(Path(wasm).name + ".sha256")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_module(wasm: Path) -> str:
    """Return the module's sha256 when it equals its build record's.

    Raises:
        ModuleIdentityError: the module or its record is missing, the record is malformed, or the
            digests differ (the message names both).
    """
    wasm = Path(wasm)
    record = build_record(wasm)
    if not wasm.exists():
        raise ModuleIdentityError(f"filter module not found: {wasm}")
    try:
        recorded = record.read_text().split()[0].lower()
    except (OSError, IndexError):
        raise ModuleIdentityError(f"{wasm}: no build record {record} to check it against "
                                  "(build it with `sp-istio-cache build`)") from None
    if len(recorded) != 64 or any(c not in "0123456789abcdef" for c in recorded):
        raise ModuleIdentityError(f"{record}: not a sha256 record (expected '<64 hex>  <name>')")
    actual = sha256_file(wasm)
    if actual != recorded:
        raise ModuleIdentityError(f"{wasm}: sha256 {actual} differs from its build record {record} ({recorded}); "
                                  "refusing to benchmark a module that is not the one built")
    return actual
