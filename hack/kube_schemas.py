"""Write kubeconform schemas from a Kubernetes API server's OpenAPI v2 document and from CRD files.

kubeconform's default schemas live on the internet; this writes the same layout into a local folder
(`<kind>-<first label of the group>-<version>.json`, used with
`-schema-location '<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json'`), with every `$ref` inlined and
unknown fields refused (`additionalProperties: false`) the way kubeconform's strict schemas do.

    python hack/kube_schemas.py --openapi openapi-v2.json --crds charts/modelpilot/crds --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

Schema = dict[str, Any]

# Types whose OpenAPI v2 form is a plain string but whose YAML may be a number.
INT_OR_STRING: Schema = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY: Schema = {"oneOf": [{"type": "string"}, {"type": "number"}]}
SPECIAL_DEFINITIONS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": INT_OR_STRING,
    "io.k8s.apimachinery.pkg.api.resource.Quantity": QUANTITY,
}
# Kept out of the schemas: recursive (JSON schema of JSON schemas) and not rendered by the chart anyway.
SKIPPED_DEFINITIONS = {"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"}


def file_name(kind: str, group: str, version: str) -> str:
    """The file kubeconform looks for: kind, first label of the API group, version."""
    suffix = f"-{group.split('.', maxsplit=1)[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix}.json".lower()


def strict(schema: Schema) -> Schema:
    """Refuse unknown fields wherever the schema lists the known ones."""
    known_fields_only = not schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and "additionalProperties" not in schema and known_fields_only:
        schema["additionalProperties"] = False
    return schema


def inline(node: Any, definitions: dict[str, Schema], stack: tuple[str, ...] = ()) -> Any:
    """The node with every `#/definitions/...` reference replaced by the definition itself."""
    if isinstance(node, list):
        return [inline(item, definitions, stack) for item in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/definitions/"):
        name = reference.removeprefix("#/definitions/")
        if name in SPECIAL_DEFINITIONS:
            return dict(SPECIAL_DEFINITIONS[name])
        if name in stack or name in SKIPPED_DEFINITIONS:
            return {}
        resolved = inline(definitions[name], definitions, (*stack, name))
        extra = {key: value for key, value in node.items() if key != "$ref"}
        return {**resolved, **extra}
    out: Schema = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: inline(child, definitions, stack) for name, child in value.items()}
        elif key.startswith("x-kubernetes-") and key not in {"x-kubernetes-preserve-unknown-fields"}:
            continue
        else:
            out[key] = inline(value, definitions, stack)
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        return {**INT_OR_STRING, **({"description": node["description"]} if "description" in node else {})}
    return strict(out)


def api_server_schemas(openapi: Schema) -> dict[str, Schema]:
    """One schema per kind the API server serves (its OpenAPI v2 document)."""
    definitions: dict[str, Schema] = openapi["definitions"]
    schemas: dict[str, Schema] = {}
    for name, definition in definitions.items():
        kinds = definition.get("x-kubernetes-group-version-kind") or []
        if name in SKIPPED_DEFINITIONS or not kinds or name.endswith("List"):
            continue
        schema = inline(definition, definitions, (name,))
        for gvk in kinds:
            schemas[file_name(gvk["kind"], gvk["group"], gvk["version"])] = schema
    return schemas


def crd_schemas(crd: Schema) -> dict[str, Schema]:
    """One schema per served version of a CustomResourceDefinition."""
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    schemas: dict[str, Schema] = {}
    for version in crd["spec"]["versions"]:
        schema = inline(version["schema"]["openAPIV3Schema"], {})
        properties = schema.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = {"type": "object"}
        schema["additionalProperties"] = False
        schemas[file_name(kind, group, version["name"])] = schema
    return schemas


def main(argv: list[str]) -> int:
    """Write the schema files; print how many."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--openapi", type=Path, help="OpenAPI v2 JSON of an API server (kubectl get --raw /openapi/v2)")
    parser.add_argument("--crds", type=Path, action="append", default=[], help="folder or file of CRD YAML")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    schemas: dict[str, Schema] = {}
    if args.openapi:
        schemas.update(api_server_schemas(json.loads(args.openapi.read_text())))
    for source in args.crds:
        for path in sorted(source.glob("*.yaml")) if source.is_dir() else [source]:
            for document in yaml.safe_load_all(path.read_text()):
                if document and document.get("kind") == "CustomResourceDefinition":
                    schemas.update(crd_schemas(document))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (args.out / name).write_text(json.dumps(schema))
    print(f"wrote {len(schemas)} schemas to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
