"""Generate the ModelDeployment CustomResourceDefinition from the pydantic spec and status models.

Run `python -m modelpilot.operator.crd` to print it; the Helm chart ships exactly that output and a
unit test fails when the two drift apart.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic import BaseModel

from modelpilot.operator import spec
from modelpilot.operator.status import ModelDeploymentStatus

# JSON-Schema keywords a structural CRD schema does not accept, or that pydantic adds for humans only.
_DROPPED_KEYS = {"title", "$defs", "examples"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "description": "Registered model."},
    {
        "name": "Stable",
        "type": "string",
        "jsonPath": ".status.stable.version",
        "description": "Stable version.",
    },
    {
        "name": "Canary",
        "type": "string",
        "jsonPath": ".status.canary.version",
        "description": "Canary version.",
    },
    {
        "name": "Weight",
        "type": "integer",
        "jsonPath": ".status.canary.effectiveWeight",
        "description": "Share of traffic on the canary now, in percent.",
    },
    {
        "name": "Step Weight",
        "type": "integer",
        "jsonPath": ".status.canary.weight",
        "description": "Share the current rollout step asks for, in percent.",
        "priority": 1,
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI v3 schema of `model` in the structural form the API server requires.

    Inlines `$ref`s, turns `X | None` into plain optional properties, `int | str` into
    int-or-string, free-form dicts into preserve-unknown objects, and drops `None` defaults.
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    return _convert(raw, definitions)


def _convert(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, definitions)
    if "anyOf" in node:
        return _convert_union(node, definitions)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {name: _convert(child, definitions) for name, child in value.items()}
        elif key == "items":
            out[key] = _convert(value, definitions)
        elif key == "additionalProperties":
            if isinstance(value, dict) and value:
                out[key] = _convert(value, definitions)
            elif value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _convert_union(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    branches = [branch for branch in node["anyOf"] if branch.get("type") != "null"]
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    types = {branch.get("type") for branch in branches}
    if types == {"integer", "string"}:
        converted: dict[str, Any] = {"x-kubernetes-int-or-string": True}
        for key in ("description", "default", "x-kubernetes-validations"):
            if outer.get(key) is not None:
                converted[key] = outer[key]
        # Bounds of either branch apply to values of its type only (a minimum to numbers, a pattern to strings).
        for branch in branches:
            for key in ("minimum", "maximum", "pattern", "maxLength"):
                if key in branch:
                    converted[key] = branch[key]
        return converted
    if len(branches) != 1:
        raise ValueError(f"a CRD schema cannot express the union {node['anyOf']!r}")
    return _convert({**branches[0], **outer}, definitions)


# The name becomes the name of the model's Services (`<name>`, `<name>-stable`, `<name>-canary`): a DNS-1035
# label of at most 63 characters, and no two ModelDeployments of a namespace may derive the same one.
NAME_RULES = [
    {
        "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "metadata.name must be a DNS-1035 label (lower-case letters, digits and '-', starting with a "
        "letter): it names the model's Services",
    },
    {
        "rule": "size(self.metadata.name) <= 56",
        "message": "metadata.name has at most 56 characters: its Services add -stable and -canary (63 at most)",
    },
    {
        "rule": "!self.metadata.name.endsWith('-stable') && !self.metadata.name.endsWith('-canary')",
        "message": "metadata.name must not end in -stable or -canary: the Services of another ModelDeployment's "
        "tracks have such names",
    },
]


def build_crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition manifest."""
    spec_schema = structural_schema(spec.ModelDeploymentSpec)
    status_schema = structural_schema(ModelDeploymentStatus)
    status_schema["x-kubernetes-preserve-unknown-fields"] = True  # Kopf keeps its own bookkeeping here.
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{spec.PLURAL}.{spec.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelpilot"},
        },
        "spec": {
            "group": spec.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": spec.KIND,
                "listKind": f"{spec.KIND}List",
                "plural": spec.PLURAL,
                "singular": spec.SINGULAR,
                "shortNames": spec.SHORT_NAMES,
                "categories": ["modelpilot"],
            },
            "versions": [
                {
                    "name": spec.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "A model from the MLflow Model Registry served on Kubernetes, with canary "
                                "rollouts analysed on live metrics and the outcome written back to the registry."
                            ),
                            "required": ["spec"],
                            "x-kubernetes-validations": NAME_RULES,
                            "properties": {
                                "apiVersion": {"type": "string", "description": "API version of the object."},
                                "kind": {"type": "string", "description": "Kind of the object."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as YAML, as shipped in the Helm chart."""
    header = "# Generated by `python -m modelpilot.operator.crd` from the pydantic models; do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render_crd())
