"""Operator start-up and shut-down: clients, Kopf settings, metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import prometheus_client
from aiohttp import web

from modelpilot.operator.handlers.terminating import keep_releasing, sweep
from modelpilot.operator.kubeapi import KubeApi, load_api_client
from modelpilot.operator.owned import AppliedMemory
from modelpilot.operator.runtime import Runtime, current_runtime, install_runtime
from modelpilot.operator.settings import OperatorSettings
from modelpilot.operator.webhooks import webhook_app

# Kopf's finalizer on every ModelDeployment it serves (the reconcile loop is a Kopf daemon, which needs one).
FINALIZER = "modelpilot.io/finalizer"


async def configure(kopf_settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """Create the process runtime and tune Kopf for this operator."""
    settings = OperatorSettings()
    kopf_settings.posting.level = logging.INFO
    kopf_settings.persistence.finalizer = FINALIZER
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="modelpilot.io")
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="modelpilot.io", key="last-handled-configuration"
    )
    kopf_settings.watching.server_timeout = 300
    # Kopf peers per namespace whenever it is given namespaces; serving globs, the namespaces come and go, and
    # the grants are cluster-wide (the chart's ClusterRole), so the replicas peer through the cluster's peering.
    kopf_settings.peering.clusterwide = settings.peers_cluster_wide
    kopf_settings.networking.request_timeout = 30
    # Kubernetes calls run in worker threads; the default pool (cores + 4) queues every reconciliation behind a few.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=settings.api_threads))
    runtime = Runtime(
        settings=settings,
        kube=KubeApi(load_api_client(connections=settings.api_threads), settings.field_manager),
        applied=AppliedMemory(resync_seconds=settings.resync_seconds),
    )
    install_runtime(runtime)
    await _release_stranded_resources(runtime, settings)
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port)
    if settings.webhook_port:
        await _start_webhook_receiver(runtime, settings)
    logger.info("modelpilot operator configured: namespaces=%s", settings.namespace_list or "all")


async def _release_stranded_resources(runtime: Runtime, settings: OperatorSettings) -> None:
    """Let go of the resources of namespaces being deleted, which Kopf does not serve (handlers/terminating): now,
    before Kopf serves anything, and then every so often."""
    if not settings.namespace_list:
        return
    await sweep(runtime, FINALIZER)
    _tasks.append(asyncio.create_task(keep_releasing(runtime, FINALIZER)))


async def _start_webhook_receiver(runtime: Runtime, settings: OperatorSettings) -> None:
    if not settings.webhook_secret:
        raise kopf.PermanentError("MODELPILOT_WEBHOOK_PORT is set but MODELPILOT_WEBHOOK_SECRET is empty")
    app_runner = web.AppRunner(webhook_app(settings.webhook_secret, runtime.wake_model), access_log=None)
    await app_runner.setup()
    await web.TCPSite(app_runner, host=settings.webhook_host, port=settings.webhook_port).start()
    _servers.append(app_runner)


_servers: list[web.AppRunner] = []
_tasks: list[asyncio.Task[None]] = []


async def shut_down() -> None:
    """Stop the webhook receiver and the background tasks, and close the clients of the process runtime."""
    while _tasks:
        _tasks.pop().cancel()
    while _servers:
        await _servers.pop().cleanup()
    await current_runtime().aclose()
    install_runtime(None)
