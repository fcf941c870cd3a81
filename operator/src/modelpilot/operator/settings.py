"""Operator settings from the environment (prefix MODELPILOT_)."""

from __future__ import annotations

import ipaddress
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Everything the operator process is configured with."""

    model_config = SettingsConfigDict(env_prefix="MODELPILOT_", extra="ignore")

    namespaces: str = Field(
        default="", description="Comma-separated namespaces or globs (`*`, `?`) to watch, `!` excludes; empty: all."
    )
    peering: str = Field(default="", description="Kopf peering object for leader election; empty runs standalone.")
    cluster_peering: bool | None = Field(
        default=None,
        description="Peer through a ClusterKopfPeering (true) or a KopfPeering in each served namespace (false); "
        "unset: cluster-wide when serving the whole cluster or any glob or exclusion.",
    )
    priority: int = Field(default=0, description="Peering priority; each replica needs its own.")
    health_port: int = Field(default=8081, description="Port of /healthz.")
    metrics_port: int = Field(default=9090, description="Port of /metrics; 0 disables.")
    webhook_port: int = Field(default=0, description="Port of the MLflow webhook receiver; 0 disables.")
    webhook_host: str = Field(default="0.0.0.0", description="Address the webhook receiver binds.")
    webhook_secret: str = Field(default="", description="HMAC secret of MLflow webhooks (from a Secret).")
    router_proxies: str = Field(
        default="",
        description="Comma-separated CIDRs of the Gateway's or ingress controller's pods: serving pods behind a "
        "gateway or ingress router believe the client address these proxies put in X-Forwarded-For.",
    )
    autoscaler: Literal["hpa", "keda"] = Field(
        default="hpa",
        description="What scales the tracks: hpa (HorizontalPodAutoscalers on CPU) or keda (ScaledObjects for "
        "specs with serving.autoscaling.requestRate; the chart picks keda when the cluster serves KEDA's API).",
    )
    prediction_log_secret: str = Field(
        default="",
        description="Secret, in each ModelDeployment's namespace, whose key holds the DSN of the prediction log "
        "(docs/prediction-log.md); the serving pods get it as MODELPILOT_PREDLOG_DSN. Empty: no prediction log.",
    )
    prediction_log_secret_key: str = Field(default="dsn", description="Key of the DSN in that Secret.")
    prediction_log_port: int = Field(
        default=5432, ge=1, le=65535, description="TCP port of the prediction log's database (serving egress)."
    )
    field_manager: str = Field(default="modelpilot", description="Server-side apply field manager.")
    poll_floor_seconds: float = Field(default=1.0, description="Shortest registry poll interval allowed.")
    registry_timeout_seconds: float = Field(default=10.0, description="Timeout of one registry request.")
    registry_share_seconds: float = Field(
        default=2.0,
        ge=0,
        description="A poll takes the answer of another resource's read of the same model (same tracking server "
        "and credentials) that started at most this long ago, never longer than its own poll interval; a "
        "registry webhook for the model ends the sharing at once. 0: every poll asks the registry.",
    )
    retry_backoff_seconds: float = Field(default=10.0, description="First retry delay after a registry error.")
    retry_backoff_max_seconds: float = Field(default=300.0, description="Longest retry delay.")
    resync_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Longest time an owned object goes without being applied again, when nothing changed it.",
    )
    api_threads: int = Field(default=32, ge=1, description="Worker threads for Kubernetes API calls.")
    log_format: str = Field(default="json", description="json or text.")

    @field_validator("router_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # the ValueError names the bad one
        return value

    @property
    def namespace_list(self) -> list[str]:
        """Watched namespaces, names or globs (`!` excludes); empty means cluster-wide."""
        return [item.strip() for item in self.namespaces.split(",") if item.strip()]

    @property
    def peers_cluster_wide(self) -> bool:
        """Whether the replicas peer through one ClusterKopfPeering rather than a KopfPeering per namespace."""
        if self.cluster_peering is not None:
            return self.cluster_peering
        return not self.namespace_list or any(
            item.startswith("!") or set(item) & set("*?") for item in self.namespace_list
        )

    def serves_namespace(self, name: str) -> bool:
        """Whether the operator serves the namespace `name`: it matches one of the names or globs (or there are
        none) and none of the exclusions; with no namespaces at all, every one."""
        items = self.namespace_list
        included = [item for item in items if not item.startswith("!")] or ["*"]
        excluded = [item[1:] for item in items if item.startswith("!")]
        return any(fnmatchcase(name, glob) for glob in included) and not any(
            fnmatchcase(name, glob) for glob in excluded
        )

    @property
    def namespace_patterns(self) -> list[str]:
        """Kopf's namespace patterns: a namespace is served when it matches one of the names or globs and
        none of the exclusions. Kopf serves the union of its patterns and, within one pattern, lets the first
        glob decide and the rightmost match win: so each name or glob comes first in a pattern of its own,
        followed by every exclusion."""
        items = self.namespace_list
        excluded = [item for item in items if item.startswith("!")]
        included = [item for item in items if not item.startswith("!")]
        if not included:
            return [",".join(excluded)] if excluded else []
        return [",".join([item, *excluded]) for item in included]
