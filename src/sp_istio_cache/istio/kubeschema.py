"""Kubernetes resources against the Kubernetes OpenAPI schemas, pinned to one Kubernetes version.

The schemas are the JSON Schema (draft 2020-12) conversions of Kubernetes' OpenAPI definitions
that the PyPI package ``kubernetes-validate`` ships, in their *strict* form (unknown fields are
refused, like ``kubectl apply --validate=strict``). Only the schema files are used; the loading is
ours so that each validator is built once (the shared definitions file is 1.2 MB).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

#: the Kubernetes minor version the manifests are validated against (API stable across 1.29-1.31
#: for every kind rendered here: Namespace, ServiceAccount, Service, apps/v1 Deployment, policy/v1 PDB)
KUBERNETES_VERSION = "1.30"
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"


class KubeSchemaError(ValueError):
    """A resource the API server would refuse; the message is ``<Kind> <field.path>: <complaint>``."""


def _schema_dir():
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    folder = root.joinpath(f"v{KUBERNETES_VERSION}.0-local-strict")
    if not folder.is_dir():
        raise KubeSchemaError(f"kubernetes-validate has no schemas for Kubernetes {KUBERNETES_VERSION} "
                              "(pip install 'kubernetes-validate>=1.30')")
    return folder


@cache
def _registry() -> Registry:
    definitions = json.loads(_schema_dir().joinpath("_definitions.json").read_text())
    return Registry().with_resource(_DEFINITIONS_ID, Resource.from_contents(definitions))


def _schema_file(kind: str, api_version: str) -> str:
    # kubernetes-validate's file naming: apps/v1 Deployment -> deployment-apps-v1.json, v1 Service -> service-v1.json
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


@cache
def _validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    path = _schema_dir().joinpath(_schema_file(kind, api_version))
    if not path.is_file():
        raise KubeSchemaError(f"{kind}: no Kubernetes {KUBERNETES_VERSION} schema for apiVersion {api_version!r}")
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_registry())


@cache
def _definition_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$ref": f"{_DEFINITIONS_ID}#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _first_error(validator: jsonschema.Draft202012Validator, doc: Any, what: str) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        best = jsonschema.exceptions.best_match(errors[:1])
        where = ".".join(str(p) for p in best.absolute_path) or "(root)"
        raise KubeSchemaError(f"{what} {where}: {best.message} (Kubernetes {KUBERNETES_VERSION} schema)")


def check_kube_resource(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate one Kubernetes resource (``apiVersion`` + ``kind``) strictly; return it.

    Raises:
        KubeSchemaError: naming the kind and the field path.
    """
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        raise KubeSchemaError("manifest: apiVersion and kind are required strings")
    _first_error(_validator(kind, api_version), doc, kind)
    return doc


def check_definition(doc: Any, definition: str, what: str) -> Any:
    """Validate a fragment against one OpenAPI definition, e.g. ``io.k8s.api.core.v1.Container``.

    Raises:
        KubeSchemaError: naming ``what`` and the field path.
    """
    _first_error(_definition_validator(definition), doc, what)
    return doc


def is_kube_kind(doc: dict[str, Any]) -> bool:
    """True for resources of the Kubernetes API itself (no ``*.istio.io`` group)."""
    return not str(doc.get("apiVersion", "")).split("/")[0].endswith("istio.io")
