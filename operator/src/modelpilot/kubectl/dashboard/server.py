"""The dashboard's web server: the page, and JSON read from the API server with the caller's kubeconfig.

Standard library only (`http.server`, one thread per request), bound to 127.0.0.1: the page is for the person
who runs the plugin, and reaches the cluster as that person. A page of another site open in the same
browser must not use it, so every request must name this server in its Host header (no DNS rebinding), a
prediction needs a header a cross-site form cannot send, and every answer forbids framing and scripts
from anywhere but here (Content-Security-Policy).
"""

from __future__ import annotations

import json
import re
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, TextIO, cast
from urllib.parse import parse_qs, unquote, urlsplit

from modelpilot.kubectl.cluster import Cluster
from modelpilot.kubectl.dashboard.csv_input import MAX_BYTES, CsvInputError, read_csv
from modelpilot.kubectl.dashboard.views import detail, summary
from modelpilot.kubectl.errors import NotFoundError, PluginError
from modelpilot.operator.builders.common import Track, track_name
from modelpilot.operator.builders.serving import PORT_NAME

LOOPBACK = "127.0.0.1"
# The header every prediction request of the page carries; a cross-site form or a simple request cannot.
REQUEST_HEADER = "X-Modelpilot-Dashboard"
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/static/charts.js": ("charts.js", "text/javascript; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_DETAIL = re.compile(r"^/api/modeldeployments/(?P<namespace>[^/]+)/(?P<name>[^/]+)$")
_PREDICT = re.compile(r"^/api/modeldeployments/(?P<namespace>[^/]+)/(?P<name>[^/]+)/predict$")
TRACKS = ("stable", "canary")


class ApiError(Exception):
    """An answer other than 200, with the message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Dashboard:
    """What the pages ask for, answered from the cluster."""

    def __init__(self, cluster: Cluster, all_namespaces: bool) -> None:
        self.cluster = cluster
        self.all_namespaces = all_namespaces

    def context(self) -> dict[str, Any]:
        """Where the dashboard looks."""
        return {"namespace": self.cluster.namespace, "allNamespaces": self.all_namespaces, "tracks": list(TRACKS)}

    def deployments(self) -> dict[str, Any]:
        """Every ModelDeployment the dashboard shows, as list rows."""
        now = datetime.now(UTC)
        objs = self.cluster.list_all(all_namespaces=self.all_namespaces)
        return {"items": [summary(obj, now) for obj in objs]}

    def detail(self, namespace: str, name: str) -> dict[str, Any]:
        """One ModelDeployment: rollout, analyses, drift, training, history, Events."""
        cluster = self.cluster.in_namespace(namespace)
        obj = cluster.get(name)
        return detail(obj, cluster.events(name), datetime.now(UTC))

    def predict(self, namespace: str, name: str, track: str, text: str) -> dict[str, Any]:
        """Predictions for the rows of a CSV from a track's serving Service (through the API server's service
        proxy), with the gating weights per row when the model has them."""
        if track not in TRACKS:
            raise ApiError(400, f"track must be one of {', '.join(TRACKS)}")
        try:
            table = read_csv(text)
        except CsvInputError as error:
            raise ApiError(400, f"the CSV file cannot be used: {error}") from None
        cluster = self.cluster.in_namespace(namespace)
        obj = cluster.get(name)
        model = str(((obj.get("spec") or {}).get("model") or {}).get("name") or name)
        service, path = track_name(name, cast(Track, track)), f"v1/models/{model}/predict"
        status, raw = cluster.post_to_service(
            service, PORT_NAME, path, {"records": table.records, "return_gates": True}
        )
        answer, gates_note = _json(raw), None
        if status == 422 and answer.get("field") == "return_gates":
            gates_note = str(answer.get("message") or "this model does not expose gating weights")
            status, raw = cluster.post_to_service(service, PORT_NAME, path, {"records": table.records})
            answer = _json(raw)
        if status != 200:
            raise ApiError(status if 400 <= status < 600 else 502, _failure(service, namespace, status, answer, raw))
        return {
            "model": answer.get("model", model),
            "version": answer.get("version"),
            "track": answer.get("track", track),
            "service": service,
            "columns": table.columns,
            "rows": table.cells,
            "predictions": answer.get("predictions"),
            "classes": answer.get("classes"),
            "gates": answer.get("gates"),
            "gatesNote": gates_note,
        }


def _json(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _failure(service: str, namespace: str, status: int, answer: dict[str, Any], raw: bytes) -> str:
    """Who refused the prediction and why: the API server (a Status: no endpoints, RBAC) or the model server."""
    if answer.get("kind") == "Status":
        return (
            f"the API server could not reach service {service} in {namespace} ({status}): {answer.get('message', '')}"
        )
    message = answer.get("message") or raw[:300].decode(errors="replace") or "no message"
    field = f" (field {answer['field']})" if answer.get("field") else ""
    return f"the model server answered {status}{field}: {message}"


def make_handler(dashboard: Dashboard, port: Callable[[], int]) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to `dashboard`; `port` tells the port the server listens on."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "kubectl-modelpilot-dashboard"
        error_content_type = "text/plain; charset=utf-8"
        error_message_format = "%(code)d %(message)s\n"

        def log_message(self, format: str, *args: Any) -> None:
            return  # the terminal shows the URL, not one line per request

        def do_GET(self) -> None:
            if not self._host_allowed():
                return
            path = urlsplit(self.path).path
            if path in STATIC_FILES:
                filename, content_type = STATIC_FILES[path]
                content = resources.files(__package__).joinpath("static", filename).read_bytes()
                self._send(200, content, content_type)
                return
            if path == "/api/context":
                self._answer(dashboard.context)
            elif path == "/api/modeldeployments":
                self._answer(dashboard.deployments)
            elif match := _DETAIL.match(path):
                namespace, name = unquote(match["namespace"]), unquote(match["name"])
                self._answer(lambda: dashboard.detail(namespace, name))
            else:
                self._send_json(404, {"error": f"no page {path}"})

        def do_POST(self) -> None:
            if not self._host_allowed():
                return
            parts = urlsplit(self.path)
            match = _PREDICT.match(parts.path)
            if match is None:
                self._send_json(404, {"error": f"no page {parts.path}"})
                return
            if self.headers.get(REQUEST_HEADER) != "1" or not self._same_origin():
                self._send_json(403, {"error": "predictions are made from the dashboard's own page only"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BYTES:
                self._send_json(413, {"error": f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB"})
                return
            text = self.rfile.read(length).decode("utf-8", errors="replace")
            track = (parse_qs(parts.query).get("track") or ["stable"])[0]
            namespace, name = unquote(match["namespace"]), unquote(match["name"])
            self._answer(lambda: dashboard.predict(namespace, name, track, text))

        def _host_allowed(self) -> bool:
            allowed = {f"{LOOPBACK}:{port()}", f"localhost:{port()}"}
            if self.headers.get("Host") in allowed:
                return True
            self._send_json(421, {"error": "this dashboard answers only at its own loopback address"})
            return False

        def _same_origin(self) -> bool:
            origin = self.headers.get("Origin")
            return origin is None or origin in {f"http://{LOOPBACK}:{port()}", f"http://localhost:{port()}"}

        def _answer(self, produce: Callable[[], dict[str, Any]]) -> None:
            try:
                document = produce()
            except ApiError as error:
                self._send_json(error.status, {"error": error.message})
            except NotFoundError as error:
                self._send_json(404, {"error": str(error)})
            except PluginError as error:
                self._send_json(502, {"error": str(error)})
            else:
                self._send_json(200, document)

        def _send_json(self, status: int, document: dict[str, Any]) -> None:
            content = json.dumps(document, default=str).encode()
            self._send(status, content, "application/json")

        def _send(self, status: int, content: bytes, content_type: str) -> None:
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            for header, value in SECURITY_HEADERS.items():
                self.send_header(header, value)
            self.end_headers()
            self.wfile.write(content)

    return Handler


def serve(cluster: Cluster, *, all_namespaces: bool, port: int, open_browser: bool, out: TextIO) -> int:
    """Serve the dashboard on 127.0.0.1:`port` (0: a free one) until interrupted; print its URL first."""
    dashboard = Dashboard(cluster, all_namespaces)
    bound: list[int] = []
    server = ThreadingHTTPServer((LOOPBACK, port), make_handler(dashboard, lambda: bound[0]))
    server.daemon_threads = True
    bound.append(int(server.server_address[1]))
    url = f"http://{LOOPBACK}:{bound[0]}/"
    print(f"Dashboard: {url} (namespace {'all' if all_namespaces else cluster.namespace}; Ctrl-C stops it)", file=out)
    out.flush()
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
