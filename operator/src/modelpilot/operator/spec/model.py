"""Which registered model is served, and the MLflow tracking server that holds it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from modelpilot.operator.spec.base import Duration, SpecModel, Stage, cel_rules
from modelpilot.operator.spec.kube import DNS1123_SUBDOMAIN_MAX, DNS1123_SUBDOMAIN_PATTERN


class ModelRef(SpecModel):
    """Which registered model to serve and which registry pointers mark its stable and candidate versions."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            ("has(self.alias) != has(self.stage)", "set exactly one of model.alias or model.stage"),
            (
                "!has(self.candidateAlias) || has(self.alias)",
                "model.candidateAlias goes with model.alias; with model.stage use model.candidateStage",
            ),
            (
                "!has(self.candidateStage) || has(self.stage)",
                "model.candidateStage goes with model.stage; with model.alias use model.candidateAlias",
            ),
            (
                "!has(self.alias) || !has(self.candidateAlias) || self.alias != self.candidateAlias",
                "model.candidateAlias must differ from model.alias",
            ),
            (
                "!has(self.stage) || !has(self.candidateStage) || self.stage != self.candidateStage",
                "model.candidateStage must differ from model.stage",
            ),
            (
                "(!has(self.alias) || !self.alias.matches('^[vV][0-9]+$'))"
                " && (!has(self.candidateAlias) || !self.candidateAlias.matches('^[vV][0-9]+$'))",
                "aliases of the form v<number> are reserved by MLflow for version numbers",
            ),
        )
    )

    name: str = Field(
        min_length=1,
        max_length=256,
        description="Name of the registered model in the MLflow Model Registry.",
    )
    alias: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="Registry alias that marks the version serving production traffic, e.g. champion.",
    )
    stage: Stage | None = Field(
        default=None,
        description="Legacy registry stage that marks the stable version (instead of alias), e.g. Production.",
    )
    candidate_alias: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="Registry alias that marks the version to roll out as a canary, e.g. challenger.",
    )
    candidate_stage: Stage | None = Field(
        default=None,
        description="Legacy registry stage that marks the canary version (with stage), e.g. Staging.",
    )

    @model_validator(mode="after")
    def _pointers_are_consistent(self) -> ModelRef:
        if (self.alias is None) == (self.stage is None):
            raise ValueError("set exactly one of model.alias or model.stage")
        if self.candidate_alias is not None and self.alias is None:
            raise ValueError("model.candidateAlias goes with model.alias; with model.stage use model.candidateStage")
        if self.candidate_stage is not None and self.stage is None:
            raise ValueError("model.candidateStage goes with model.stage; with model.alias use model.candidateAlias")
        if self.alias is not None and self.alias == self.candidate_alias:
            raise ValueError("model.candidateAlias must differ from model.alias")
        if self.stage is not None and self.stage == self.candidate_stage:
            raise ValueError("model.candidateStage must differ from model.stage")
        for alias in (self.alias, self.candidate_alias):
            if alias is not None and re.fullmatch(r"[vV][0-9]+", alias):
                raise ValueError("aliases of the form v<number> are reserved by MLflow for version numbers")
        return self

    @property
    def has_candidate(self) -> bool:
        """Whether a candidate pointer (alias or stage) is configured."""
        return self.candidate_alias is not None or self.candidate_stage is not None


# The serving pods' NetworkPolicy opens the URL's port: it must be a URL whose port (if any) is a TCP port.
TRACKING_URI_RULE = "isURL(self) && (url(self).getPort() == '' || int(url(self).getPort()) <= 65535)"
TRACKING_URI_MESSAGE = "registry.trackingUri must be a URL whose port, if given, is a number up to 65535"


class RegistrySpec(SpecModel):
    """How to reach the MLflow tracking server that holds the model registry."""

    tracking_uri: str = Field(
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="URL of the MLflow tracking server, e.g. http://mlflow.mlflow:5000.",
        json_schema_extra=cel_rules((TRACKING_URI_RULE, TRACKING_URI_MESSAGE)),
    )
    credentials_secret: str | None = Field(
        default=None,
        max_length=DNS1123_SUBDOMAIN_MAX,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description=(
            "Name of a Secret in the same namespace with MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD; passed to the operator's registry client, the serving pods "
            "and the training Jobs."
        ),
    )
    poll_interval: Duration = Field(
        default="30s",
        description="How often the registry is polled when no webhook arrives (a Go duration, e.g. 30s).",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _port_is_a_port(cls, value: str) -> str:
        try:
            urlsplit(value).port  # noqa: B018 -- raises for a port that is no number or out of range
        except ValueError:
            raise ValueError(TRACKING_URI_MESSAGE) from None
        return value
