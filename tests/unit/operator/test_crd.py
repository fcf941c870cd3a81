"""The generated CRD is structural and documents every field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from modelpilot.operator.crd import build_crd, render_crd


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = _schema()
    missing = [
        path
        for root in ("spec", "status")
        for path, node in _walk(schema["properties"][root], root)
        if "properties" in node or path.count(".") > 0
        if not path.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert missing == []


def test_schema_is_structural() -> None:
    forbidden = {"$ref", "anyOf", "allOf", "oneOf", "$defs", "title"}
    for path, node in _walk(_schema(), ""):
        assert not forbidden & node.keys(), path
        assert (
            "type" in node or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{path} has no type"


def test_cel_rules_carry_messages() -> None:
    rules = [rule for _, node in _walk(_schema(), "") for rule in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 12
    assert all(rule["message"] and rule["rule"] for rule in rules)


def test_printer_columns_match_the_design() -> None:
    columns = build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    default = [column["name"] for column in columns if not column.get("priority")]
    assert default == ["Model", "Stable", "Canary", "Weight", "Phase", "Age"]
    # WEIGHT is the share the canary gets now; the step's asked weight shows with -o wide.
    by_name = {column["name"]: column for column in columns}
    assert by_name["Weight"]["jsonPath"] == ".status.canary.effectiveWeight"
    assert by_name["Step Weight"]["jsonPath"] == ".status.canary.weight"


def test_rendering_is_deterministic() -> None:
    assert render_crd() == render_crd()


def test_crd_reference_in_docs_is_current() -> None:
    from pathlib import Path

    from modelpilot.operator.crd_docs import render_reference

    shipped = Path(__file__).parents[3] / "docs" / "crd-reference.md"
    assert shipped.read_text() == render_reference(), (
        "run: python -m modelpilot.operator.crd_docs > docs/crd-reference.md"
    )
