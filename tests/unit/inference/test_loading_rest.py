"""The pieces of the mlflow-free loading path that need no server: URI mapping, credentials, MLmodel, pickles."""

from __future__ import annotations

import base64
import pickle
import ssl
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import pytest

from modelpilot.inference.artifacts_mlmodel import read_mlmodel
from modelpilot.inference.artifacts_pt2 import _pickle_globals, pickle_deserialization_allowed
from modelpilot.inference.artifacts_rest import proxied_artifacts
from modelpilot.inference.loading import local_model_dir
from modelpilot.inference.registry_rest import Connection, registry_client

_MLFLOW_ENV = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_WORKSPACE",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MLflow client settings from the outside, and a HOME without ~/.mlflow/credentials."""
    for name in _MLFLOW_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


TRACKING = Connection("http://mlflow.example:5000/prefix", None, None, 10.0)


@pytest.mark.parametrize(
    ("uri", "base", "root"),
    [
        ("mlflow-artifacts:/1/models/m-1/artifacts", "http://mlflow.example:5000/prefix", "1/models/m-1/artifacts"),
        ("mlflow-artifacts:/1/models/m-1/artifacts/", "http://mlflow.example:5000/prefix", "1/models/m-1/artifacts"),
        ("mlflow-artifacts://mlflow.example:5000/1/m", "http://mlflow.example:5000/prefix", "1/m"),
        (
            "http://mlflow.example:5000/prefix/api/2.0/mlflow-artifacts/artifacts/1/models/m-1/artifacts",
            "http://mlflow.example:5000/prefix",
            "1/models/m-1/artifacts",
        ),
        ("http://mlflow.example:5000/api/2.0/mlflow-artifacts/artifacts/7/m", "http://mlflow.example:5000", "7/m"),
    ],
)
def test_proxied_artifact_uris_map_to_the_tracking_servers_proxy(uri: str, base: str, root: str) -> None:
    location = proxied_artifacts(uri, TRACKING)
    assert location is not None
    assert (location.connection.base_url, location.root) == (base, root)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/models/m-1",
        "gs://bucket/m",
        "file:///srv/models/m-1",
        "/srv/models/m-1",
        "models:/m-0123456789abcdef",
        "runs:/0123/model",
        "mlflow-artifacts://other-host:5000/1/m",
        "https://mlflow.example:5000/prefix/api/2.0/mlflow-artifacts/artifacts/1/m",
        "http://mlflow.example:5000/files/1/m",
        "http://mlflow.example:5000/api/2.0/mlflow-artifacts/artifactsX/1/m",
        "mlflow-artifacts:/",
        "mlflow-artifacts:/1/../../etc",
        "mlflow-artifacts:/1/m?x=1",
    ],
)
def test_other_artifact_uris_are_left_to_mlflow(uri: str) -> None:
    assert proxied_artifacts(uri, TRACKING) is None


@pytest.mark.parametrize(
    "uri", ["", "databricks", "databricks-uc", "sqlite:///mlflow.db", "/srv/mlruns", "http://user:pw@mlflow:5000"]
)
def test_tracking_uris_only_mlflow_understands_get_no_rest_client(uri: str) -> None:
    assert registry_client(uri) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MLFLOW_TRACKING_AUTH", "kubernetes"),
        ("MLFLOW_TRACKING_AWS_SIGV4", "true"),
        ("MLFLOW_WORKSPACE", "team-a"),
    ],
)
def test_client_settings_only_mlflow_implements_get_no_rest_client(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    assert registry_client("http://mlflow:5000") is not None
    monkeypatch.setenv(name, value)
    assert registry_client("http://mlflow:5000") is None


def test_credentials_as_mlflow_clients_send_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def authorization() -> str | None:
        client = registry_client("http://mlflow:5000/")
        assert client is not None
        assert client.url == "http://mlflow:5000"
        return client.connection.authorization

    assert authorization() is None
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0k3n")
    assert authorization() == "Bearer t0k3n"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    assert authorization() == "Bearer t0k3n"  # a username alone is not Basic credentials
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
    assert authorization() == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    credentials = tmp_path / "home" / ".mlflow" / "credentials"
    credentials.parent.mkdir(parents=True)
    credentials.write_text("[mlflow]\nmlflow_tracking_username = bob\nmlflow_tracking_password = from-file\n")
    assert authorization() == "Basic " + base64.b64encode(b"alice:from-file").decode()  # the env wins per field


def test_tls_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    client = registry_client("https://mlflow.example")
    assert client is not None
    assert client.connection.ssl_context is not None
    assert client.connection.ssl_context.verify_mode == ssl.CERT_REQUIRED
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "TRUE")
    insecure = registry_client("https://mlflow.example")
    assert insecure is not None
    assert insecure.connection.ssl_context is not None
    assert insecure.connection.ssl_context.verify_mode == ssl.CERT_NONE
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/etc/ca.pem")
    with pytest.raises(ValueError, match="must not be set"):
        registry_client("https://mlflow.example")
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "yes")
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_INSECURE_TLS must be one of"):
        registry_client("https://mlflow.example")


def test_timeout_from_the_mlflow_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    client = registry_client("http://mlflow:5000")
    assert client is not None
    assert client.connection.timeout == 7.0


def test_local_paths_are_read_in_place(tmp_path: Path) -> None:
    model = tmp_path / "my model"
    model.mkdir()
    assert local_model_dir(str(model)) == model
    assert local_model_dir(model.as_uri()) == model
    assert local_model_dir("s3://bucket/model") is None
    assert local_model_dir("runs:/0123/model") is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        local_model_dir(str(tmp_path / "missing"))


MLMODEL = """\
artifact_path: mlflow-artifacts:/1/models/m-1/artifacts
flavors:
  python_function:
    data: data
    loader_module: mlflow.pytorch
  pytorch:
    code: null
    model_data: data
    pytorch_version: 2.15.0
mlflow_version: 3.17.2
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 20]}}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1,
    2]}}]'
  params: null
"""


def test_mlmodel_flavors_and_signature(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(MLMODEL)
    mlmodel = read_mlmodel(tmp_path)
    assert sorted(mlmodel.flavors) == ["python_function", "pytorch"]
    assert mlmodel.flavors["pytorch"]["model_data"] == "data"
    assert mlmodel.signature_inputs == '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 20]}}]'
    assert mlmodel.mlflow_version == "3.17.2"


def test_mlmodel_without_signature_or_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no MLmodel file"):
        read_mlmodel(tmp_path)
    (tmp_path / "MLmodel").write_text("flavors:\n  sklearn: {}\n")
    assert read_mlmodel(tmp_path).signature_inputs is None
    (tmp_path / "MLmodel").write_text("just text\n")
    with pytest.raises(ValueError, match="not a YAML mapping"):
        read_mlmodel(tmp_path)


def test_pickle_globals_are_read_without_unpickling() -> None:
    for protocol in (0, 2, 4, 5):
        assert _pickle_globals(pickle.dumps(Fraction(1, 3), protocol=protocol)) == {"fractions.Fraction"}
        assert _pickle_globals(pickle.dumps(OrderedDict(a=[1.0, "x"]), protocol=protocol)) == {
            "collections.OrderedDict"
        }
        assert _pickle_globals(pickle.dumps({"a": (1, 2.0, None)}, protocol=protocol)) == set()
    assert _pickle_globals(b"not a pickle") is None


def test_pickle_deserialization_setting_reads_like_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pickle_deserialization_allowed()  # mlflow 3.17's default
    for value, allowed in (("true", True), ("1", True), ("TRUE", True), ("false", False), ("0", False), ("no", False)):
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", value)
        assert pickle_deserialization_allowed() is allowed
