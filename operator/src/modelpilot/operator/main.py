"""Kopf handlers of the operator: each decorator makes one call into `handlers/`."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from modelpilot.operator.builders.common import MANAGED_BY_LABEL, PART_OF
from modelpilot.operator.handlers.lifecycle import configure, shut_down
from modelpilot.operator.handlers.loop import run_reconcile_loop
from modelpilot.operator.runtime import current_runtime
from modelpilot.operator.spec import GROUP, PLURAL, VERSION

RESOURCE = (GROUP, VERSION, PLURAL)
Logger = logging.Logger | logging.LoggerAdapter[Any]


@kopf.on.startup()
async def startup(*, settings: kopf.OperatorSettings, logger: Logger, **_: Any) -> None:
    await configure(settings, logger)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    await shut_down()


@kopf.daemon(*RESOURCE, cancellation_timeout=10.0)
async def serve(*, name: str, namespace: str | None, body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    await run_reconcile_loop(current_runtime(), namespace or "", name, body, stopped)


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
@kopf.on.resume(*RESOURCE)
@kopf.on.field(*RESOURCE, field="metadata.annotations")
async def wake(*, name: str, namespace: str | None, **_: Any) -> None:
    current_runtime().wake(namespace or "", name)


@kopf.on.event("apps", "v1", "deployments", labels={MANAGED_BY_LABEL: PART_OF})
async def watch_deployment(*, type: str | None, body: kopf.Body, **_: Any) -> None:
    current_runtime().deployment_seen(type, body)


class QuietDeploymentWatch(logging.Filter):
    """Kopf logs each handler's success on the object at INFO and posts that line as a Kubernetes Event: for
    the Deployment watch, one log line and one Event per Deployment change. The line is dropped before either."""

    SUCCEEDED = "Handler 'watch_deployment' succeeded."

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.msg == self.SUCCEEDED)


logging.getLogger("kopf.objects").addFilter(QuietDeploymentWatch())


@kopf.on.delete(*RESOURCE, optional=True)
async def forget(*, name: str, namespace: str | None, **_: Any) -> None:
    # Owned objects carry owner references and go with the resource; the registry is never touched.
    current_runtime().forget(namespace or "", name)
