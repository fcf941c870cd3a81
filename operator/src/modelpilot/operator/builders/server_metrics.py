"""The prediction server's metrics that the operator's queries read: names, and PromQL matchers of one track.

The canary analysis (`rollout.queries`) and the request-rate autoscaler (`builders.autoscaling`) select the
same series, so they agree on what counts as a request.
"""

from __future__ import annotations

REQUESTS_METRIC = "modelpilot_http_requests_total"
LATENCY_BUCKETS_METRIC = "modelpilot_http_request_duration_seconds_bucket"
# Anchored by PromQL: routes that are not traffic (kubelet probes, Prometheus scrapes).
NON_TRAFFIC_ROUTES = "/healthz|/readyz|/livez|/metrics"


def promql_label_value(text: str) -> str:
    """`text` escaped for use inside a double-quoted PromQL label matcher."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def track_matchers(namespace: str, model: str, track: str, version: str | None = None) -> list[str]:
    """Label matchers of one model's track (and version), in one namespace when it is given.

    `namespace` is the label Kubernetes service discovery (and a PodMonitor) gives each scraped pod: two
    ModelDeployments of one model in two namespaces never mix their series.
    """
    matchers = [f'namespace="{promql_label_value(namespace)}"'] if namespace else []
    matchers += [f'model="{promql_label_value(model)}"', f'track="{promql_label_value(track)}"']
    if version is not None:
        matchers.append(f'version="{promql_label_value(version)}"')
    return matchers


def traffic_matchers(namespace: str, model: str, track: str, version: str | None = None) -> list[str]:
    """`track_matchers` without the routes that are not traffic."""
    return [*track_matchers(namespace, model, track, version), f'route!~"{NON_TRAFFIC_ROUTES}"']
