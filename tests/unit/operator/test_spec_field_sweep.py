"""The spec-field sweep's table is complete and consistent with the operator's own parsing.

Every leaf of the generated CRD's spec schema is classified (copied into which objects, or not copied); a copied
leaf has values its objects' APIs refuse or the edge values they must accept; and the operator's pydantic models
agree with the CRD: what the CRD refuses they refuse too, what reaches the API server parses.
"""

from __future__ import annotations

import pytest

from modelpilot.operator.spec import InvalidSpecError, parse_spec
from tests.support.derived_objects import spec_leaves
from tests.support.spec_fields import FIELDS, Accepted, Copied, Refusal, acceptances, apply_changes, refusals


def test_every_leaf_of_the_spec_schema_is_classified() -> None:
    leaves = set(spec_leaves())
    unclassified = sorted(leaves - FIELDS.keys())
    assert not unclassified, f"classify these spec fields in tests/support/spec_fields.py: {unclassified}"
    stale = sorted(FIELDS.keys() - leaves)
    assert not stale, f"these classified fields are no longer in the spec: {stale}"


def test_the_walk_sees_list_items_and_map_values() -> None:
    leaves = set(spec_leaves())
    assert {"serving.nodeSelector.*", "serving.tolerations[].key", "rollout.steps[]", "model.name"} <= leaves
    assert len(leaves) > 100


@pytest.mark.parametrize("path", [p for p, kind in FIELDS.items() if isinstance(kind, Copied)])
def test_a_copied_field_is_swept_with_refused_or_edge_values(path: str) -> None:
    kind = FIELDS[path]
    assert isinstance(kind, Copied)
    assert kind.into
    assert kind.builder
    assert kind.refused or kind.accepted, f"{path}: give values its objects refuse, or the edges they accept"
    for refusal in kind.refused:
        assert refusal.by == "crd" or refusal.kind in kind.into, f"{path}: {refusal.kind} is not among {kind.into}"


@pytest.mark.parametrize(("path", "refusal"), refusals(), ids=[f"{p}-{i}" for i, (p, _) in enumerate(refusals())])
def test_the_operator_parses_as_the_crd_validates(path: str, refusal: Refusal) -> None:
    """A value the CRD refuses is refused by the operator's models too; one left to the derived object parses."""
    spec = apply_changes(refusal.base, refusal.changes)
    if refusal.by == "crd":
        with pytest.raises(InvalidSpecError):
            parse_spec(spec)
    else:
        parse_spec(spec)


@pytest.mark.parametrize(
    ("path", "accepted"), acceptances(), ids=[f"{p}-{i}" for i, (p, _) in enumerate(acceptances())]
)
def test_edge_values_parse(path: str, accepted: Accepted) -> None:
    parse_spec(apply_changes(accepted.base, accepted.changes))
