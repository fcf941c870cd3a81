"""The operator's Deployments as the watch last delivered them.

A reconcile observes a track's Deployment to know whether it is Ready; when nothing changed, asking the
API server for it is the only request left in a run besides the registry read. The watch's copy serves
instead when it carries the generation this process last applied to the object: its spec is then the
one applied, and its status is as fresh as the watch (a fresh read would not be older). Any other
copy, or none, and the reconcile reads the object as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WatchedDeployments:
    """The latest copy of each Deployment the watch delivered, by (namespace, name)."""

    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def seen(self, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """Record a watch event (`event_type` None: the initial listing)."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if event_type == "DELETED":
            self.objects.pop(key, None)
        else:
            # The watch replaces its copies and never changes one in place; a run only reads them.
            self.objects[key] = dict(obj)

    def at_generation(self, namespace: str, name: str, generation: int | None) -> dict[str, Any] | None:
        """The watched copy when it carries `generation`, else None."""
        if generation is None:
            return None
        found = self.objects.get((namespace, name))
        if found is None or (found.get("metadata") or {}).get("generation") != generation:
            return None
        return found
