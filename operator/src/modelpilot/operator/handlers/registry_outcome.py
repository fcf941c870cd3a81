"""The outcome of a rollout written to the registry: promotion (tags, stable pointer, candidate pointer)
and rejection (tags, candidate pointer).

Both are idempotent: the registry is read first, and each write is made only when the registry does
not show it already. Tag values are fixed by the rollout (the time the outcome was decided, the
reason and evidence recorded in the status), so a write repeated after a crash between two registry
calls finds its tag in place and is skipped: however often the operator is killed, each write reaches
the registry once. The machine asks again until the registry shows the whole outcome.
"""

from __future__ import annotations

from modelpilot.operator.registry import ModelVersion, Registry
from modelpilot.operator.rollout.actions import PromoteInRegistry, RejectInRegistry
from modelpilot.operator.spec import ModelDeploymentSpec
from modelpilot.operator.status import now_iso

PROMOTED_TAG = "modelpilot.io/promoted"
SUPERSEDED_TAG = "modelpilot.io/superseded"
REJECTED_TAG = "modelpilot.io/rejected"
REJECTED_METRIC_TAG = "modelpilot.io/rejected-metric"
REJECTED_VALUE_TAG = "modelpilot.io/rejected-value"
REJECTED_AT_TAG = "modelpilot.io/rejected-at"
ARCHIVED = "Archived"


async def promote(registry: Registry, spec: ModelDeploymentSpec, action: PromoteInRegistry) -> None:
    """Tag both versions, then move the stable pointer (the commit), then drop the candidate pointer."""
    model = spec.model
    candidate = await registry.get_version(model.name, action.candidate)
    # Without a decided time (the first version, promoted without a rollout) a tag already written stays.
    at = action.at or candidate.tags.get(PROMOTED_TAG) or now_iso()
    await _tag(registry, candidate, {PROMOTED_TAG: at})
    if action.previous is not None and action.previous != action.candidate:
        previous = await registry.get_version(model.name, action.previous)
        await _tag(registry, previous, {SUPERSEDED_TAG: f"{at} by {action.candidate}"})
    resolved = await registry.resolve(model)
    if model.alias is not None:
        if resolved.stable != action.candidate:
            await registry.set_alias(model.name, model.alias, action.candidate)
        if model.candidate_alias is not None and resolved.candidate == action.candidate:
            await registry.delete_alias(model.name, model.candidate_alias)
    elif model.stage is not None and (resolved.stable != action.candidate or candidate.stage != model.stage):
        # One write moves the version into the stable stage (out of the candidate one) and archives the old.
        await registry.transition_stage(model.name, action.candidate, model.stage, archive_existing=True)


async def reject(registry: Registry, spec: ModelDeploymentSpec, action: RejectInRegistry) -> None:
    """Tag the version rejected with the reason and evidence, then stop it being the candidate; the stable
    pointer is untouched."""
    model = spec.model
    version = await registry.get_version(model.name, action.version)
    value = "" if action.value is None else f"{action.value:.6g}"
    await _tag(
        registry,
        version,
        {
            REJECTED_TAG: action.reason,
            REJECTED_METRIC_TAG: action.metric,
            REJECTED_VALUE_TAG: value,
            REJECTED_AT_TAG: action.at,
        },
    )
    if model.candidate_alias is not None:
        resolved = await registry.resolve(model)
        if resolved.candidate == action.version:
            await registry.delete_alias(model.name, model.candidate_alias)
    elif model.candidate_stage is not None and version.stage == model.candidate_stage:
        await registry.transition_stage(model.name, action.version, ARCHIVED, archive_existing=False)


async def _tag(registry: Registry, version: ModelVersion, tags: dict[str, str]) -> None:
    """Set each tag the version does not carry with that value yet, in order."""
    for key, value in tags.items():
        if version.tags.get(key) != value:
            await registry.set_version_tag(version.name, version.version, key, value)
