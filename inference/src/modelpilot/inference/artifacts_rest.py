"""Model files through the MLflow server's artifact proxy (`mlflow server` serves artifacts by default).

A registry download URI `mlflow-artifacts:/<path>` (or `http(s)://<tracking>/…/api/2.0/mlflow-artifacts/
artifacts/<path>`) names a directory under the server's artifact root. As in MLflow's
`MlflowArtifactsRepository`, the URI's host defaults to the tracking server and the tracking URI's scheme and
path prefix are kept. Directories are listed with `GET …/mlflow-artifacts/artifacts?path=<dir>` (entries are
names relative to `<dir>`) and each file is streamed from `GET …/mlflow-artifacts/artifacts/<dir>/<name>`.
Any other URI (another host, s3://, a path…) is not handled here; the caller lets mlflow download it.
"""

from __future__ import annotations

import posixpath
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelpilot.inference.registry_rest import Connection, RegistryError, download, get_json

SERVICE_PATH = "/api/2.0/mlflow-artifacts/artifacts"
REGISTERED_MODEL_META = "registered_model_meta"


@dataclass(frozen=True)
class ProxiedArtifacts:
    """A directory behind an MLflow server's artifact proxy."""

    connection: Connection
    root: str
    uri: str


def proxied_artifacts(artifact_uri: str, tracking: Connection) -> ProxiedArtifacts | None:
    """Where `artifact_uri` is on the tracking server's artifact proxy, or None when it is not there."""
    parsed = urllib.parse.urlsplit(artifact_uri)
    server = urllib.parse.urlsplit(tracking.base_url)
    if parsed.query or parsed.fragment:
        return None
    if parsed.scheme == "mlflow-artifacts":
        if parsed.netloc not in {"", server.netloc}:
            return None
        connection, root = tracking, parsed.path
    elif parsed.scheme in {"http", "https"}:
        prefix, found, tail = parsed.path.partition(SERVICE_PATH)
        if (parsed.scheme, parsed.netloc) != (server.scheme, server.netloc) or not found:
            return None
        if tail and not tail.startswith("/"):
            return None
        base = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, prefix.rstrip("/"), "", ""))
        connection, root = tracking.with_base(base), tail
    else:
        return None
    root = root.strip("/")
    if not root or not all(_safe_name(part) for part in root.split("/")):
        return None
    return ProxiedArtifacts(connection=connection, root=root, uri=artifact_uri)


def download_tree(artifacts: ProxiedArtifacts, destination: Path, on_file: Callable[[str], None] | None = None) -> int:
    """Every file under the proxied directory into `destination` (which exists); returns the file count.

    Files come before subdirectories and `MLmodel` first, so `on_file` (called with each file's relative
    path once it is written) learns the model's flavors before the bulk of the download.
    """
    files = 0
    pending = [""]
    while pending:
        relative = pending.pop()
        directory = posixpath.join(artifacts.root, relative) if relative else artifacts.root
        listing = get_json(artifacts.connection, SERVICE_PATH, {"path": directory})
        entries = [e if isinstance(e, dict) else {} for e in listing.get("files") or []]
        entries.sort(key=lambda e: (bool(e.get("is_dir")), e.get("path") != "MLmodel"))
        for entry in entries:
            name = entry.get("path")
            if not isinstance(name, str) or not _safe_name(name):
                raise RegistryError(f"the artifact listing of {artifacts.uri} has an unsafe entry {name!r}")
            child = posixpath.join(relative, name) if relative else name
            target = destination.joinpath(*child.split("/"))
            if entry.get("is_dir"):
                target.mkdir(parents=True, exist_ok=True)
                pending.append(child)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            remote = f"{SERVICE_PATH}/{urllib.parse.quote(posixpath.join(artifacts.root, child))}"
            written = download(artifacts.connection, remote, target)
            expected = entry.get("file_size")
            if expected is not None and int(expected) != written:
                raise RegistryError(f"{child} of {artifacts.uri}: expected {expected} bytes, received {written}")
            files += 1
            if on_file is not None:
                on_file(child)
    if files == 0:
        raise RegistryError(f"the MLflow server lists no files under {artifacts.uri}")
    return files


def write_registered_model_meta(model_dir: Path, name: str, version: str) -> None:
    """The `registered_model_meta` file mlflow writes next to a registered model it downloads."""
    import yaml

    document = {"model_name": name, "model_version": version}
    text = yaml.safe_dump(document, default_flow_style=False, allow_unicode=True)
    (model_dir / REGISTERED_MODEL_META).write_text(text, encoding="utf-8")


def _safe_name(name: str) -> bool:
    return bool(name) and name not in {".", ".."} and "/" not in name and "\\" not in name and "\x00" not in name
