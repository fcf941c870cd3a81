"""The outcome of a rollout written to the registry: promotion (tags, stable pointer, candidate pointer)
and rejection (tags, candidate pointer)."""

from __future__ import annotations

from modelpilot.operator.registry import Registry
from modelpilot.operator.rollout.actions import RejectInRegistry
from modelpilot.operator.spec import ModelDeploymentSpec
from modelpilot.operator.status import now_iso


async def promote(registry: Registry, spec: ModelDeploymentSpec, candidate: str, previous: str | None) -> None:
    """Tag both versions, then move the stable pointer (the commit), then drop the candidate pointer."""
    model = spec.model
    stamp = now_iso()
    await registry.set_version_tag(model.name, candidate, "modelpilot.io/promoted", stamp)
    if previous is not None:
        await registry.set_version_tag(model.name, previous, "modelpilot.io/superseded", f"{stamp} by {candidate}")
    if model.alias is not None:
        await registry.set_alias(model.name, model.alias, candidate)
        if model.candidate_alias is not None and await _alias_names(registry, spec, candidate):
            await registry.delete_alias(model.name, model.candidate_alias)
    elif model.stage is not None:
        await registry.transition_stage(model.name, candidate, model.stage, archive_existing=True)


async def reject(registry: Registry, spec: ModelDeploymentSpec, action: RejectInRegistry) -> None:
    """Tag the version rejected with the reason, then stop it being the candidate; stable is untouched."""
    model = spec.model
    value = "" if action.value is None else f"{action.value:.6g}"
    await registry.set_version_tag(model.name, action.version, "modelpilot.io/rejected", action.reason)
    await registry.set_version_tag(model.name, action.version, "modelpilot.io/rejected-metric", action.metric)
    await registry.set_version_tag(model.name, action.version, "modelpilot.io/rejected-value", value)
    await registry.set_version_tag(model.name, action.version, "modelpilot.io/rejected-at", now_iso())
    if model.candidate_alias is not None:
        if await _alias_names(registry, spec, action.version):
            await registry.delete_alias(model.name, model.candidate_alias)
    elif model.candidate_stage is not None:
        await registry.transition_stage(model.name, action.version, "Archived", archive_existing=False)


async def _alias_names(registry: Registry, spec: ModelDeploymentSpec, version: str) -> bool:
    resolved = await registry.resolve(spec.model)
    return resolved.candidate == version
