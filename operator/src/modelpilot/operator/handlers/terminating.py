"""ModelDeployments in namespaces that were already being deleted when the operator started.

Serving namespaces by name or glob, Kopf lists the namespaces when it starts and serves only those that are
not being deleted; one it already serves it keeps serving until it is gone. So a namespace deleted while no
operator ran (a restart, an upgrade, the operator scaled to zero) would keep the finalizer Kopf put on each of
its ModelDeployments, and stay Terminating for good. Nothing has to happen when such a resource goes (its
objects carry owner references and go with it; the registry is never touched), so the operator drops that
finalizer itself: once at start-up, before Kopf serves anything, and once more after Kopf has listed the
namespaces, for a namespace whose deletion began between the two listings.

Serving the whole cluster, Kopf watches every namespace, being deleted or not: nothing to do. Without the
right to list namespaces, Kopf serves the named namespaces as they are, being deleted or not: nothing to do
either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container

from modelpilot.operator.kubeapi import KubeApi, KubeError
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, KIND, VERSION

logger = logging.getLogger(__name__)

# Kopf lists the namespaces as soon as the start-up handlers are done; the second look comes well after that.
SECOND_LOOK_SECONDS = 30.0


async def release_stranded(
    kube: KubeApi, settings: OperatorSettings, finalizer: str, served: Container[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """Drop `finalizer` from the ModelDeployments being deleted in served namespaces that are being deleted,
    except those in `served` (this process's own handlers release them). Returns those released."""
    if not settings.namespace_list:
        return []
    try:
        namespaces = await kube.list_objects("v1", "Namespace", "")
    except KubeError as error:
        if error.status == 403:
            return []
        raise
    released = []
    for namespace in namespaces:
        meta = namespace["metadata"]
        if meta.get("deletionTimestamp") and settings.serves_namespace(meta["name"]):
            released += await _release_in(kube, meta["name"], finalizer, served)
    return released


async def _release_in(
    kube: KubeApi, namespace: str, finalizer: str, served: Container[tuple[str, str]]
) -> list[tuple[str, str]]:
    released = []
    for resource in await kube.list_objects(f"{GROUP}/{VERSION}", KIND, namespace):
        meta = resource["metadata"]
        name = meta["name"]
        if not meta.get("deletionTimestamp") or finalizer not in (meta.get("finalizers") or []):
            continue
        if (namespace, name) in served:
            continue
        if await kube.remove_finalizer(f"{GROUP}/{VERSION}", KIND, namespace, name, finalizer):
            logger.info("released %s/%s: its namespace was being deleted before the operator started", namespace, name)
            released.append((namespace, name))
    return released


async def second_look(
    kube: KubeApi, settings: OperatorSettings, finalizer: str, served: Container[tuple[str, str]]
) -> None:
    """`release_stranded` again once Kopf has listed the namespaces; an API failure is only logged (nothing
    depends on it but the namespaces it would let go)."""
    await asyncio.sleep(SECOND_LOOK_SECONDS)
    try:
        await release_stranded(kube, settings, finalizer, served)
    except (KubeError, OSError) as error:
        logger.warning("could not release the ModelDeployments of namespaces being deleted: %s", error)
