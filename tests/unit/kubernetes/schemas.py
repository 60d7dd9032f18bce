"""Validators for rendered resources: Kubernetes' own schemas for core kinds, the CRDs'
``openAPIV3Schema`` (``tests/fixtures/crds/``) for the operators' kinds.

A CRD schema is OpenAPI 3.0 with Kubernetes extensions, read here as JSON Schema once adapted:
``nullable`` admits null, ``x-kubernetes-int-or-string`` an integer or a string, and an object
that lists its properties admits no other unless ``x-kubernetes-preserve-unknown-fields`` says
so. The API server would silently prune an unknown field; ``kubectl apply --validate=strict``
refuses it, and so do these validators, so that a misspelt field fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

CRDS = Path(__file__).resolve().parents[2] / "fixtures" / "crds"
KUBERNETES = "1.37.0"
"""The Kubernetes version core resources are validated for: the newest kubernetes-validate
knows offline."""
CORE_GROUPS = {"v1", "apps/v1", "policy/v1", "batch/v1"}


def _adapted(node: Any) -> Any:
    """``node`` of an OpenAPI schema as the JSON Schema that means the same, strictly."""
    if isinstance(node, list):
        return [_adapted(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _adapted(value) for key, value in node.items()}
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("anyOf", None)
        schema["type"] = ["integer", "string"]
    if schema.pop("nullable", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    open_ = schema.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in schema and "additionalProperties" not in schema and not open_:
        schema["additionalProperties"] = False
    return schema


def _served(crd: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        if version["served"]:
            yield f"{group}/{version['name']}/{kind}", version["schema"]["openAPIV3Schema"]


@cache
def crd_validators() -> dict[str, jsonschema.Draft7Validator]:
    """A validator per ``apiVersion/kind`` served by the CRDs in the fixtures."""
    validators = {}
    for path in sorted(CRDS.rglob("*.yaml")):
        for key, schema in _served(yaml.safe_load(path.read_text(encoding="utf-8"))):
            validators[key] = jsonschema.Draft7Validator(_adapted(schema))
    return validators


def validate(resource: dict[str, Any]) -> None:
    """Raise if ``resource`` is invalid for its kind; a kind no schema knows is an error too."""
    if resource["apiVersion"] in CORE_GROUPS:
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)
        return
    key = f"{resource['apiVersion']}/{resource['kind']}"
    if key not in crd_validators():
        raise LookupError(f"no CRD in {CRDS} serves {key}")
    crd_validators()[key].validate(resource)
