"""ModelDeployments in namespaces being deleted, which Kopf does not serve.

Serving namespaces by name or glob, Kopf serves a namespace only while it is not being deleted: one deleted
before the operator started it never serves, and one deleted while it serves it it drops as soon as the
namespace is marked, before the namespace controller marks the ModelDeployments in it. Either way Kopf never
sees those ModelDeployments being deleted, so the finalizer it put on each would stay, and the namespace with
it, for good. Nothing has to happen when such a resource goes (its objects carry owner references and go with
it; the registry is never touched), so the operator drops that finalizer itself, at start-up (before Kopf
serves anything) and then every `SWEEP_SECONDS`, and ends the resource's reconcile loop, which Kopf no longer
would. Should Kopf still serve one (a namespace marked with its deletion already under way when Kopf saw it),
both drop the finalizer; the second finds it gone.

Serving the whole cluster, Kopf watches every namespace, being deleted or not: nothing to do. Without the
right to list namespaces, Kopf serves the named namespaces as they are, being deleted or not: nothing to do
either.
"""

from __future__ import annotations

import asyncio
import logging

from modelpilot.operator.kubeapi import KubeApi, KubeError
from modelpilot.operator.runtime import Runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.spec import GROUP, KIND, VERSION

logger = logging.getLogger(__name__)

# How often the operator looks for resources of namespaces being deleted that Kopf let go.
SWEEP_SECONDS = 30.0


async def release_stranded(kube: KubeApi, settings: OperatorSettings, finalizer: str) -> list[tuple[str, str]]:
    """Drop `finalizer` from the ModelDeployments being deleted in served namespaces that are being deleted.
    Returns those released."""
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
            released += await _release_in(kube, meta["name"], finalizer)
    return released


async def _release_in(kube: KubeApi, namespace: str, finalizer: str) -> list[tuple[str, str]]:
    released = []
    for resource in await kube.list_objects(f"{GROUP}/{VERSION}", KIND, namespace):
        meta = resource["metadata"]
        name = meta["name"]
        if not meta.get("deletionTimestamp") or finalizer not in (meta.get("finalizers") or []):
            continue
        if await kube.remove_finalizer(f"{GROUP}/{VERSION}", KIND, namespace, name, finalizer):
            logger.info("released %s/%s: its namespace is being deleted, which Kopf does not serve", namespace, name)
            released.append((namespace, name))
    return released


async def sweep(runtime: Runtime, finalizer: str) -> None:
    """`release_stranded` once, ending the reconcile loops of those released; an API failure is only logged (the
    next sweep tries again)."""
    try:
        released = await release_stranded(runtime.kube, runtime.settings, finalizer)
    except (KubeError, OSError) as error:
        logger.warning("could not release the ModelDeployments of namespaces being deleted: %s", error)
        return
    for namespace, name in released:
        runtime.release(namespace, name)


async def keep_releasing(runtime: Runtime, finalizer: str) -> None:
    """`sweep` every `SWEEP_SECONDS`."""
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        await sweep(runtime, finalizer)
