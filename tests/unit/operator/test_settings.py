"""The operator's settings from the environment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from modelpilot.operator.settings import OperatorSettings


def test_router_proxies_are_cidrs_and_a_bad_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPILOT_ROUTER_PROXIES", "10.42.0.0/16, fd00::/8")
    assert OperatorSettings().router_proxies == "10.42.0.0/16, fd00::/8"
    monkeypatch.setenv("MODELPILOT_ROUTER_PROXIES", "10.42.0.0/16,gateway")
    with pytest.raises(ValidationError, match="gateway"):
        OperatorSettings()


@pytest.mark.parametrize(
    ("namespaces", "served", "not_served"),
    [
        ("ml-a,ml-b", ["ml-a", "ml-b"], ["ml-c", "ml"]),
        ("e2e-*", ["e2e-1a2b3c", "e2e-gateway"], ["test-e2e-1", "e2e"]),
        ("team-*,ops-?, !team-sandbox", ["team-a", "ops-1", "team-sandbox-2"], ["team-sandbox", "ops-12", "dev"]),
        ("!kube-*,!modelpilot", ["default", "ml"], ["kube-system", "modelpilot"]),
    ],
)
def test_namespace_patterns_serve_a_match_of_any_name_or_glob_and_no_exclusion(
    namespaces: str, served: list[str], not_served: list[str]
) -> None:
    # Kopf's own matcher, as the operator uses it.
    from kopf._cogs.structs.references import NamespaceName, match_namespace

    patterns = OperatorSettings(namespaces=namespaces).namespace_patterns

    def is_served(name: str) -> bool:
        return any(match_namespace(NamespaceName(name), pattern) for pattern in patterns)

    assert [name for name in served if not is_served(name)] == []
    assert [name for name in not_served if is_served(name)] == []
    settings = OperatorSettings(namespaces=namespaces)
    assert [name for name in served if not settings.serves_namespace(name)] == []
    assert [name for name in not_served if settings.serves_namespace(name)] == []


NAME_PARTS = st.sampled_from(["a", "b", "team", "-", "1"])
GLOB_PARTS = st.sampled_from(["a", "b", "team", "-", "1", "*", "?"])


@given(
    globs=st.lists(st.tuples(st.booleans(), st.lists(GLOB_PARTS, min_size=1, max_size=4)), max_size=4),
    names=st.lists(st.lists(NAME_PARTS, min_size=1, max_size=5), min_size=1, max_size=5),
)
def test_the_operators_own_namespace_match_agrees_with_kopfs(
    globs: list[tuple[bool, list[str]]], names: list[list[str]]
) -> None:
    from kopf._cogs.structs.references import NamespaceName, match_namespace

    items = [("!" if excluded else "") + "".join(parts) for excluded, parts in globs]
    settings = OperatorSettings(namespaces=",".join(items))
    patterns = settings.namespace_patterns
    for name in ("".join(parts) for parts in names):
        by_kopf = not patterns or any(match_namespace(NamespaceName(name), pattern) for pattern in patterns)
        assert settings.serves_namespace(name) is by_kopf, (settings.namespaces, name)


def test_no_namespaces_means_the_whole_cluster() -> None:
    assert OperatorSettings(namespaces=" , ").namespace_patterns == []


@pytest.mark.parametrize(
    ("namespaces", "cluster_peering", "expected"),
    [("", None, True), ("ml-a,ml-b", None, False), ("e2e-*", None, True), ("!kube-system", None, True),
     ("ml-a", True, True), ("e2e-*", False, False)],
)  # fmt: skip
def test_replicas_peer_cluster_wide_unless_they_serve_named_namespaces(
    namespaces: str, cluster_peering: bool | None, expected: bool
) -> None:
    settings = OperatorSettings(namespaces=namespaces, cluster_peering=cluster_peering)
    assert settings.peers_cluster_wide is expected
