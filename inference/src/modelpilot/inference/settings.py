"""One settings object for the server, read from `MODELPILOT_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the server can be told; the operator's Deployment sets these as env vars."""

    model_config = SettingsConfigDict(
        env_prefix="MODELPILOT_", extra="ignore", protected_namespaces=(), populate_by_name=True
    )

    # What to serve.
    model_uri: str = Field("", description="models:/<name>/<version> or models:/<name>@<alias>")
    model_name: str = Field("", description="Name used in routes and metrics; defaults to the name in model_uri.")
    model_version: str = Field("", description="Version label for metrics; defaults to the resolved version.")
    track: Literal["stable", "canary"] = "stable"
    tracking_uri: str = Field(
        "",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "MODELPILOT_TRACKING_URI"),
        description="MLflow tracking server; the standard MLflow env var.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = Field(0, ge=0, description="0: derived from the CPU limit (cgroup) and CPU affinity.")
    allow_nan: bool = Field(False, description="Accept NaN/null in float features instead of answering 422.")
    load_retry_seconds: float = Field(30.0, gt=0, description="Back-off before retrying a failed model load.")
    pt2_loader: Literal["fork", "spawn", "server"] = Field(
        "fork",
        description="Where pt2 models are deserialised on CPU: a forked or a spawned child process that hands back "
        "a flat function (the server never imports torch.export's deserialiser), or the server itself.",
    )
    load_timeout_seconds: float = Field(
        300.0, gt=0, description="Longest the child process deserialising a pt2 model may take; then the load fails."
    )

    # Network.
    host: str = "0.0.0.0"
    port: int = 8080
    metrics_port: int = Field(9090, ge=0, le=65535, description="Port of /metrics, apart from predictions; 0: none.")
    grpc_port: int = Field(
        8081,
        ge=0,
        le=65535,
        description="Port of the Open Inference Protocol's gRPC service (modelpilot-serve); 0: none.",
    )
    graceful_shutdown_seconds: float = Field(30.0, ge=0, description="Time in-flight requests get after SIGTERM.")
    max_concurrency: int = Field(
        256, ge=0, description="Open connections or requests in progress beyond which requests get 503; 0: none."
    )
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="Request line and headers; larger heads get 431.")
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="Time to receive a request's head, from connecting or its first byte; then 408."
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest pause while a request body arrives (while the server reads it); then 408."
    )
    keep_alive_seconds: float = Field(5.0, ge=1, description="An idle keep-alive connection is closed after this.")

    # Micro-batching.
    max_batch_size: int = Field(1024, ge=1, description="Rows one forward pass may take from queued requests.")
    max_batch_wait_ms: float = Field(
        2.0, ge=0, description="Longest wait for requests already being decoded; never waited for when idle."
    )
    offload_inference: Literal["auto", "always", "never"] = Field(
        "auto", description="Run forward passes in a worker thread; auto does so when more than one CPU is usable."
    )

    # Limits.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_batch_body_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Limit for /predict_batch uploads.")
    batch_chunk_rows: int = Field(4096, ge=1, description="Rows per forward pass in /predict_batch.")
    spool_dir: str = Field(
        "", description="Where /predict_batch keeps validated rows beyond 16 MiB; empty: the system temp dir."
    )
    decode_threads: int = Field(
        2, ge=1, description="Threads that decode large bodies and CSV uploads; bounds their memory together."
    )
    decode_offload_bytes: int = Field(
        1024 * 1024, ge=0, description="Bodies at least this large are decoded in a decode thread, off the loop."
    )
    rate_limit_rps: float = Field(0.0, ge=0, description="Requests per second per client; 0 disables the limit.")
    rate_limit_burst: int = Field(0, ge=0, description="Bucket size; 0 means one second's worth.")
    auth_failure_rps: float = Field(
        1.0, ge=0, description="Failed authentications per second per client address; 0 disables the limit."
    )
    auth_failure_burst: int = Field(10, ge=0, description="Failed authentications allowed at once per address.")
    trusted_proxies: str = Field(
        "", description="Comma-separated CIDRs of proxies whose client address header is believed."
    )
    client_address_header: str = Field(
        "x-forwarded-for", description="Header a trusted proxy names the client in (read from the right)."
    )

    # Auth: API keys, or JWT HS256; either one accepted when both are set.
    api_keys: str = Field("", description="Comma-separated API keys.")
    api_keys_file: Path | None = Field(None, description="File with one API key per line (a mounted Secret).")
    jwt_secret: str = ""
    jwt_secret_file: Path | None = None
    jwt_audience: str = ""
    jwt_issuer: str = ""
    jwt_allow_no_exp: bool = Field(False, description="Accept JWTs without an exp claim (refused by default).")

    # Logs.
    access_log: bool = True
    log_level: str = "info"

    # The prediction log in PostgreSQL (docs/prediction-log.md); off while the DSN is empty.
    predlog_dsn: SecretStr = Field(
        SecretStr(""), description="libpq DSN or URL of the prediction log database (from a Secret); empty: no log."
    )
    predlog_sample_rate: float = Field(1.0, ge=0, le=1, description="Share of requests whose rows are logged.")
    predlog_inputs: Literal["hash", "full", "none"] = Field(
        "hash",
        description="Per row: the sha256 of its inputs (hash), the hash and the inputs as JSON (full), or neither "
        "(none; shadow comparisons need a hash on both tracks).",
    )
    predlog_queue_rows: int = Field(
        100_000, ge=1, description="Rows waiting to be written beyond which new rows are dropped (and counted)."
    )
    predlog_batch_rows: int = Field(5000, ge=1, description="Rows per write (one COPY).")
    predlog_flush_seconds: float = Field(0.5, gt=0, description="Longest time a logged row waits for its write.")
    predlog_retry_max_seconds: float = Field(
        5.0, gt=0, description="Longest back-off between attempts while the database is away."
    )
    predlog_retention_days: float = Field(30.0, ge=0, description="Rows older than this are deleted; 0: kept.")
    predlog_retention_interval_seconds: float = Field(600.0, gt=0, description="Time between retention passes.")
    predlog_delete_batch_rows: int = Field(
        10_000, ge=1, description="Rows one retention DELETE removes at most (short transactions, bounded locks)."
    )
    predlog_shadow_interval_seconds: float = Field(
        10.0, ge=0, description="Canary track: time between shadow comparison passes; 0: none."
    )
    predlog_shadow_window_seconds: float = Field(
        300.0, gt=0, description="A canary row is compared with a stable row of the same inputs logged this close."
    )
    predlog_shadow_batch_rows: int = Field(10_000, ge=1, description="Canary rows one comparison pass takes at most.")

    # For rollback tests only: make the prediction routes fail or slow down on purpose.
    fault_error_rate: float = Field(0.0, ge=0, le=1, description="Testing only: share of predictions answered 500.")
    fault_latency_ms: float = Field(0.0, ge=0, description="Testing only: delay added to each prediction request.")
    fault_versions: str = Field(
        "",
        description="Testing only: comma-separated model versions the faults apply to (a rollout drill of one "
        "bad version while both tracks share one environment); empty: every version.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        import ipaddress

        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the bad one
        return value
