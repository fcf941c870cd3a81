"""The plugin's one door to the API server: the caller's kubeconfig, the reads and writes it needs, and
the API's refusals turned into messages a person can act on."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from modelpilot.kubectl.errors import ForbiddenError, NotFoundError, PluginError
from modelpilot.operator.spec import GROUP, PLURAL, VERSION

KIND = "ModelDeployment"
PROXY_TIMEOUT = 60.0  # seconds a prediction may take through the service proxy


@dataclass(frozen=True)
class Target:
    """Where the plugin points: kubeconfig and context, namespace, and an identity to impersonate."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    as_user: str | None = None
    as_group: str | None = None


class Cluster:
    """ModelDeployments, their Events and pods, and the caller's identity, through one ApiClient."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    @classmethod
    def connect(cls, target: Target) -> Cluster:
        """A client from the kubeconfig (KUBECONFIG, ~/.kube/config) or, inside a pod, its service account."""
        configuration = client.Configuration()
        namespace = target.namespace
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=target.kubeconfig, context=target.context, client_configuration=configuration
            )
            if namespace is None:
                namespace = _context_namespace(target)
        except (ConfigException, OSError) as error:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except ConfigException:
                raise PluginError(f"no usable kubeconfig: {error}") from None
        api = client.ApiClient(configuration)
        if target.as_user:
            api.set_default_header("Impersonate-User", target.as_user)  # type: ignore[no-untyped-call]
        if target.as_group:
            api.set_default_header("Impersonate-Group", target.as_group)  # type: ignore[no-untyped-call]
        return cls(api, namespace or "default")

    def in_namespace(self, namespace: str) -> Cluster:
        """The same client, pointed at another namespace."""
        return Cluster(self.api, namespace)

    # -- ModelDeployments -----------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any]:
        """The ModelDeployment `name` of the namespace."""
        found: dict[str, Any] = self._call(
            lambda: self._custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name),
            f"get ModelDeployment {name}",
            name,
        )
        return found

    def list_all(self, all_namespaces: bool = False) -> list[dict[str, Any]]:
        """The ModelDeployments of the namespace (or of every namespace), by namespace and name."""
        if all_namespaces:
            listed = self._call(
                lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL), "list ModelDeployments"
            )
        else:
            listed = self._call(
                lambda: self._custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL),
                "list ModelDeployments",
            )
        items: list[dict[str, Any]] = listed.get("items") or []
        return sorted(items, key=lambda item: (item["metadata"]["namespace"], item["metadata"]["name"]))

    def annotate(self, name: str, annotations: dict[str, str | None]) -> dict[str, Any]:
        """Merge the annotations into the ModelDeployment (None removes one); the object as written."""
        body = {"metadata": {"annotations": annotations}}
        written: dict[str, Any] = self._call(
            lambda: self._custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, body),
            f"annotate ModelDeployment {name}",
            name,
        )
        return written

    # -- around them ----------------------------------------------------------------------------

    def events(self, name: str) -> list[Any]:
        """The Events about the ModelDeployment, oldest first."""
        selector = f"involvedObject.kind={KIND},involvedObject.name={name}"
        listed = self._call(
            lambda: self._core.list_namespaced_event(self.namespace, field_selector=selector), "list Events"
        )
        events: list[Any] = listed.items
        return sorted(events, key=_event_time)

    def pods(self, selector: str) -> list[Any]:
        """The pods matching a label selector, oldest first."""
        listed = self._call(
            lambda: self._core.list_namespaced_pod(self.namespace, label_selector=selector), "list pods"
        )
        pods: list[Any] = listed.items
        return sorted(pods, key=lambda pod: (pod.metadata.creation_timestamp, pod.metadata.name))

    def logs(self, pod: str, container: str | None, tail: int | None) -> str:
        """A container's log."""
        text: str = self._call(
            lambda: self._core.read_namespaced_pod_log(pod, self.namespace, container=container, tail_lines=tail),
            f"read the log of pod {pod}",
        )
        return text

    def follow_logs(self, pod: str, container: str | None, tail: int | None) -> Iterator[str]:
        """A container's log as it is written."""
        stream = self._call(
            lambda: self._core.read_namespaced_pod_log(
                pod, self.namespace, container=container, tail_lines=tail, follow=True, _preload_content=False
            ),
            f"follow the log of pod {pod}",
        )
        for chunk in stream.stream():
            yield chunk.decode(errors="replace")

    def whoami(self) -> str:
        """The caller's user name as the API server authenticates it (SelfSubjectReview)."""
        review = self._call(
            lambda: client.AuthenticationV1Api(self.api).create_self_subject_review(client.V1SelfSubjectReview()),
            "review who you are (SelfSubjectReview)",
        )
        username = review.status.user_info.username if review.status and review.status.user_info else None
        if not username:
            raise PluginError("the API server did not say who you are (SelfSubjectReview has no user name)")
        return str(username)

    def post_to_service(self, service: str, port: str, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """POST JSON to a Service of the namespace through the API server's service proxy
        (`services/<name>:<port>/proxy/<path>`); the status and body of the answer, whoever gave it.

        An answer that is not 2xx comes back as it is (the model server's own errors say what is wrong); the
        API server's refusals of the proxying itself (no endpoints, RBAC) come back as its Status documents.
        """
        quoted = "/".join(urllib.parse.quote(part, safe="") for part in path.strip("/").split("/"))
        resource = (
            f"/api/v1/namespaces/{urllib.parse.quote(self.namespace, safe='')}/services/"
            f"{urllib.parse.quote(service, safe='')}:{urllib.parse.quote(port, safe='')}/proxy/{quoted}"
        )
        try:
            method, url, headers, data, _ = self.api.param_serialize(
                "POST",
                resource,
                header_params={"Content-Type": "application/json", "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method, url, header_params=headers, body=data, _request_timeout=PROXY_TIMEOUT)
            response.read()  # type: ignore[no-untyped-call]
        except ApiException as error:
            raise PluginError(f"cannot call service {service} through the API server: {error.reason}") from None
        except urllib3.exceptions.HTTPError as error:
            host = self.api.configuration.host
            raise PluginError(f"cannot reach the API server at {host}: {error}") from None
        return int(response.status), bytes(response.data or b"")

    # -- errors ---------------------------------------------------------------------------------

    def _call(self, call: Callable[[], Any], what: str, name: str | None = None) -> Any:
        try:
            return call()
        except ApiException as error:
            raise self._explain(error, what, name) from None
        except urllib3.exceptions.HTTPError as error:
            host = self.api.configuration.host
            raise PluginError(f"cannot reach the API server at {host}: {error}") from None

    def _explain(self, error: ApiException, what: str, name: str | None) -> PluginError:
        message = _server_message(error)
        where = f"in namespace {self.namespace}"
        if error.status == 404:
            if name is not None:
                return NotFoundError(f'ModelDeployment "{name}" not found {where}')
            return NotFoundError(f"cannot {what} {where}: not found ({message})")
        if error.status == 403:
            return ForbiddenError(f"you may not {what} {where}: {message}")
        if error.status == 401:
            return ForbiddenError(f"the API server does not know you (401): check your kubeconfig ({message})")
        if error.status in (400, 422):
            return ForbiddenError(f"the API server refused to {what}: {message}")
        return PluginError(f"cannot {what} {where}: {error.status} {error.reason}: {message}")


def _context_namespace(target: Target) -> str | None:
    """The namespace of the kubeconfig context in use, if it names one."""
    contexts, active = config.list_kube_config_contexts(config_file=target.kubeconfig)  # type: ignore[no-untyped-call]
    if target.context is not None:
        active = next((context for context in contexts if context["name"] == target.context), active)
    found = ((active or {}).get("context") or {}).get("namespace")
    return str(found) if found else None


def _server_message(error: ApiException) -> str:
    """The Status message the API server sent, or its reason."""
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    return str(body.get("message") or error.reason or "no message")


def _event_time(event: Any) -> Any:
    moment = event.last_timestamp or event.event_time or event.first_timestamp or event.metadata.creation_timestamp
    return moment or datetime.min.replace(tzinfo=UTC)
