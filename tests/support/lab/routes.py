"""The traffic split the lab's splitter applies, read from what the operator wrote: pure functions.

Gateway router: the HTTPRoute's rules, as a Gateway implementation would take them — a request goes
to the most specific matching rule (more header matches win, then the longer path prefix) and,
within it, to a backend picked at random in proportion to the backendRef weights. A rule's `RequestMirror`
filter names a backend that gets a copy of every request the rule matches (`percent`/`fraction`, a further
Gateway API feature the operator does not use, are not modelled).
Replicas router: both tracks behind one Service, so each Ready pod gets an equal share.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Backend:
    """A Service (named like the Deployment of its track) and its weight."""

    name: str
    weight: int


@dataclass(frozen=True)
class Rule:
    """One HTTPRoute rule reduced to what the splitter needs."""

    path_prefix: str
    headers: tuple[tuple[str, str], ...]  # (lower-case name, exact value)
    backends: tuple[Backend, ...]
    mirror: str | None = None  # the backend of the rule's RequestMirror filter

    def matches(self, path: str, headers: Mapping[str, str]) -> bool:
        """Whether a request with `path` and (lower-case keyed) `headers` matches this rule."""
        if not _path_has_prefix(path, self.path_prefix):
            return False
        return all(headers.get(name) == value for name, value in self.headers)


@dataclass(frozen=True)
class RouteTable:
    """All rules of the route; empty when there is nothing to route to."""

    rules: tuple[Rule, ...] = ()

    def rule_for(self, path: str, headers: Mapping[str, str]) -> Rule | None:
        """The rule a request goes by: the most specific that matches, or None."""
        matching = [rule for rule in self.rules if rule.matches(path, headers)]
        if not matching:
            return None
        return max(matching, key=lambda item: (len(item.headers), len(item.path_prefix)))

    def pick(self, path: str, headers: Mapping[str, str], rng: random.Random) -> str | None:
        """The backend name a request goes to, or None when no rule matches or every weight is 0."""
        rule = self.rule_for(path, headers)
        if rule is None:
            return None
        backends = [backend for backend in rule.backends if backend.weight > 0]
        if not backends:
            return None
        return rng.choices([b.name for b in backends], weights=[b.weight for b in backends])[0]

    def weight_percent(self, backend: str) -> int:
        """Share (percent, rounded) of plain requests — the first rule without header matches — for `backend`."""
        plain = next((rule for rule in self.rules if not rule.headers), None)
        if plain is None:
            return 0
        total = sum(b.weight for b in plain.backends)
        share = sum(b.weight for b in plain.backends if b.name == backend)
        return round(100 * share / total) if total else 0

    def mirror_backend(self) -> str | None:
        """The backend plain requests (the first rule without header matches) are mirrored to, if any."""
        plain = next((rule for rule in self.rules if not rule.headers), None)
        return None if plain is None else plain.mirror


def _path_has_prefix(path: str, prefix: str) -> bool:
    # Gateway API PathPrefix matches whole path elements: /pre matches /pre and /pre/x, not /prefix.
    if prefix in ("", "/"):
        return True
    trimmed = prefix.rstrip("/")
    return path == trimmed or path.startswith(trimmed + "/")


def table_from_httproute(route: Mapping[str, Any] | None) -> RouteTable:
    """The table of an HTTPRoute (gateway.networking.k8s.io/v1); empty for None."""
    if route is None:
        return RouteTable()
    rules = []
    for rule in (route.get("spec") or {}).get("rules") or []:
        # An omitted weight is 1 (Gateway API default).
        backends = tuple(Backend(str(ref["name"]), int(ref.get("weight", 1))) for ref in rule.get("backendRefs") or [])
        mirrors = [
            f["requestMirror"]["backendRef"]["name"] for f in rule.get("filters") or [] if f["type"] == "RequestMirror"
        ]
        mirror = str(mirrors[0]) if mirrors else None
        for match in rule.get("matches") or [{}]:
            path = match.get("path") or {}
            headers = tuple(
                (str(header["name"]).lower(), str(header["value"])) for header in match.get("headers") or []
            )
            rules.append(Rule(str(path.get("value", "/")), headers, backends, mirror))
    return RouteTable(tuple(rules))


def table_from_ready_replicas(ready: Mapping[str, int]) -> RouteTable:
    """One Service over the pods of both tracks: each backend's weight is its count of Ready pods."""
    backends = tuple(Backend(name, count) for name, count in sorted(ready.items()) if count > 0)
    return RouteTable((Rule("/", (), backends),)) if backends else RouteTable()
