"""Module identity: the ``.wasm`` that is deployed is the one that was built (issue 14).

``sp-istio-cache build`` writes ``<module>.sha256`` beside the module (sha256sum format:
``<64 hex>  sp_istio_cache.wasm``). Every command that hands a module to a mesh checks it:

- ``verify_module``: the file's SHA-256 equals its build record (a module changed after the
  build — tampered, truncated, copied over — is refused, never called "ready to deploy");
- ``resolve_digest``: the digest that goes into a WasmPlugin / EnvoyFilter. For ``file://`` and
  ``http(s)://`` URLs it is the verified module's, and a digest stated with ``--sha256`` must equal
  it. A remote URL (``http(s)://``, ``oci://``) needs the digest stated: what the mesh downloads is
  not on this machine, so the operator names what they published. For ``oci://`` it is the image
  digest, which no local file can confirm.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit

from .validate import IstioConfigError, check_sha256

REMOTE_SCHEMES = ("http", "https", "oci")


def record_path(module: Path) -> Path:
    """``filter/dist/sp_istio_cache.wasm`` -> ``filter/dist/sp_istio_cache.wasm.sha256``."""
    return Path(module).with_name(Path(module).name + ".sha256")


def read_build_record(module: Path) -> str:
    """The SHA-256 that ``sp-istio-cache build`` recorded for ``module``.

    Raises:
        IstioConfigError: no record, or a record that is not ``<64 hex>  <name>`` for this module.
    """
    record = record_path(module)
    try:
        text = record.read_text()
    except FileNotFoundError:
        raise IstioConfigError(f"module: {module} has no build record ({record}): build it with "
                               "`sp-istio-cache build`, which writes both") from None
    fields = text.split()
    if len(fields) != 2 or fields[1].lstrip("*") != Path(module).name:
        raise IstioConfigError(f"module: build record {record} is not '<sha256>  {Path(module).name}'")
    return check_sha256(fields[0], f"module: build record {record}")


def verify_module(module: Path) -> str:
    """The module's SHA-256, after checking it against its build record.

    Raises:
        IstioConfigError: missing module or record, or a mismatch (the message has both digests).
    """
    module = Path(module)
    if not module.is_file():
        raise IstioConfigError(f"module: {module} does not exist (run `sp-istio-cache build`)")
    recorded = read_build_record(module)
    actual = hashlib.sha256(module.read_bytes()).hexdigest()
    if actual != recorded:
        raise IstioConfigError(
            f"module: {module} has sha256 {actual}, but its build record {record_path(module)} says {recorded}: "
            "the file changed after it was built; rebuild it (`sp-istio-cache build`) and never deploy this one")
    return actual


def resolve_digest(url: str, stated: str | None, module: Path | None) -> str | None:
    """The ``sha256`` to render for a module at ``url``.

    ``stated``: the digest given with ``--sha256`` (None when not given). ``module``: the local
    build of the module (needed for ``file://`` and ``http(s)://``).

    Raises:
        IstioConfigError: ``sha256: ...`` when a remote URL has no stated digest, a stated digest
            is malformed or differs from the module's; ``module: ...`` from ``verify_module``.
    """
    scheme = urlsplit(url).scheme
    if stated is not None:
        check_sha256(stated, "sha256")
    if scheme in REMOTE_SCHEMES and stated is None:
        what = "the OCI image digest" if scheme == "oci" else "the digest of the module you published"
        raise IstioConfigError(f"sha256: required for a {scheme}:// module URL ({what}); pass --sha256")
    if scheme == "oci":
        return stated
    if module is None:
        raise IstioConfigError(f"module: a {scheme}:// URL is checked against the local build; pass --wasm")
    actual = verify_module(module)
    if stated is not None and stated != actual:
        raise IstioConfigError(f"sha256: {stated} is not the module's digest: {module} and its build record "
                               f"say {actual}")
    return actual
