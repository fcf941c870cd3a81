"""The Open Inference Protocol as stock clients speak it: tritonclient (HTTP and gRPC) against running servers.

Each server loads its model from the real MLflow registry of the test session, as a pod does. Every call the
client makes is checked, and every prediction is compared with what MLflow's own scoring path (the pyfunc
model `mlflow models serve` runs) returns for the same rows.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.api.inference.models import LoggedModels, make_moe, sample_rows
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import free_port, running, wait_for_http

ROWS = sample_rows(7, seed=5)
ROOT = Path(__file__).resolve().parents[3]


class Served:
    """A running server: its REST address (host:port) and the registry name of its model."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.address = f"127.0.0.1:{port}"
        self.url = f"http://{self.address}"
        self.grpc_address = f"127.0.0.1:{free_port()}"
        self.metrics_url = f"http://127.0.0.1:{free_port()}/metrics"

    def client(self) -> Any:
        return triton_http.InferenceServerClient(self.address, connection_timeout=30, network_timeout=30)

    def grpc_client(self) -> Any:
        return triton_grpc.InferenceServerClient(self.grpc_address)


@pytest.fixture(scope="module")
def servers(
    mlflow: MlflowServer, logged: LoggedModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    """`modelpilot-serve` for the pt2 MoE, the pickled MoE (gates) and the mixed-column pyfunc, started together."""
    logs = tmp_path_factory.mktemp("oip-servers")
    serve = str(Path(sys.executable).parent / "modelpilot-serve")
    started: dict[str, Served] = {}
    with ExitStack() as stack:
        for key in ("moe_pt2", "moe_pickle", "rules_pyfunc"):
            name = getattr(logged, key)
            served = Served(name, free_port())
            env = {
                "MLFLOW_TRACKING_URI": mlflow.url,
                "MODELPILOT_MODEL_URI": f"models:/{name}/1",
                "MODELPILOT_HOST": "127.0.0.1",
                "MODELPILOT_PORT": served.address.rsplit(":", 1)[1],
                "MODELPILOT_METRICS_PORT": served.metrics_url.rsplit(":", 1)[1].split("/")[0],
                "MODELPILOT_GRPC_PORT": served.grpc_address.rsplit(":", 1)[1],
                "MODELPILOT_ACCESS_LOG": "false",
                "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
                # The pickled test models name their classes in tests.api.inference.models.
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            }
            stack.enter_context(running([serve], log=logs / f"{key}.log", env=env))
            started[key] = served
        for served in started.values():
            wait_for_http(f"{served.url}/readyz", timeout=180)
        yield started


def mlflow_scores(mlflow: MlflowServer, name: str, data: Any) -> np.ndarray[Any, Any]:
    """What MLflow's scoring path answers for `data`: the registered version's pyfunc model."""
    return np.asarray(_pyfunc_model(mlflow.url, name).predict(data))


@functools.cache
def _pyfunc_model(tracking_uri: str, name: str) -> Any:
    from mlflow import pyfunc, set_tracking_uri

    set_tracking_uri(tracking_uri)
    return pyfunc.load_model(f"models:/{name}/1")


def test_server_and_model_calls(servers: dict[str, Served]) -> None:
    served = servers["moe_pt2"]
    client = served.client()
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(served.name)
    assert client.is_model_ready(served.name, "1")
    assert not client.is_model_ready(served.name, "9")
    assert not client.is_model_ready("other")
    server = client.get_server_metadata()
    assert server["name"] == "modelpilot"
    assert server["version"]
    assert "binary_tensor_data" in server["extensions"]
    for metadata in (client.get_model_metadata(served.name), client.get_model_metadata(served.name, "1")):
        assert metadata["name"] == served.name
        assert metadata["versions"] == ["1"]
        assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 20]}]
        assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}]
    with pytest.raises(InferenceServerException) as missing:
        client.get_model_metadata("other")
    assert missing.value.status() == "404"
    gated = servers["moe_pickle"].client().get_model_metadata(servers["moe_pickle"].name)
    assert gated["outputs"] == [
        {"name": "output", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "gates", "datatype": "FP32", "shape": [-1, 4]},
    ]
    rules = servers["rules_pyfunc"].client().get_model_metadata(servers["rules_pyfunc"].name)
    assert rules["inputs"] == [
        {"name": "amount", "datatype": "FP64", "shape": [-1]},
        {"name": "items", "datatype": "INT64", "shape": [-1]},
        {"name": "country", "datatype": "BYTES", "shape": [-1]},
        {"name": "vip", "datatype": "BOOL", "shape": [-1]},
    ]
    assert rules["outputs"] == [{"name": "output", "datatype": "BYTES", "shape": [-1]}]


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False, None], ids=["binary-out", "json-out", "default-out"])
def test_infer_matches_mlflow_scoring(
    servers: dict[str, Served], mlflow: MlflowServer, binary_in: bool, binary_out: bool | None
) -> None:
    served = servers["moe_pt2"]
    tensor = triton_http.InferInput("input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS, binary_data=binary_in)
    outputs = None if binary_out is None else [triton_http.InferRequestedOutput("output", binary_data=binary_out)]
    result = served.client().infer(served.name, [tensor], outputs=outputs, request_id="r-1", model_version="1")
    assert result.get_response()["id"] == "r-1"
    output = result.get_output("output")
    assert (output["datatype"], output["shape"]) == ("FP32", [7, 2])
    assert ("parameters" in output) == (binary_out is not False)  # no outputs named: all in binary
    np.testing.assert_allclose(
        result.as_numpy("output"), mlflow_scores(mlflow, served.name, ROWS), rtol=1e-5, atol=1e-6
    )


def test_async_infer_and_the_aio_client(servers: dict[str, Served], mlflow: MlflowServer) -> None:
    import asyncio

    import tritonclient.http.aio as triton_aio

    served = servers["moe_pt2"]
    expected = mlflow_scores(mlflow, served.name, ROWS)
    tensor = triton_http.InferInput("input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    pending = [served.client().async_infer(served.name, [tensor]) for _ in range(4)]
    for request in pending:
        np.testing.assert_allclose(request.get_result().as_numpy("output"), expected, rtol=1e-5, atol=1e-6)

    async def aio() -> np.ndarray[Any, Any]:
        client = triton_aio.InferenceServerClient(served.address)
        try:
            assert await client.is_server_ready()
            assert (await client.get_server_metadata())["name"] == "modelpilot"
            answer = await client.infer(served.name, [tensor])
            return np.asarray(answer.as_numpy("output"))
        finally:
            await client.close()

    np.testing.assert_allclose(asyncio.run(aio()), expected, rtol=1e-5, atol=1e-6)


def test_gates_as_an_output(servers: dict[str, Served], mlflow: MlflowServer) -> None:
    import torch

    served = servers["moe_pickle"]
    tensor = triton_http.InferInput("input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    outputs = [
        triton_http.InferRequestedOutput("gates", binary_data=True),
        triton_http.InferRequestedOutput("output", binary_data=False),
    ]
    result = served.client().infer(served.name, [tensor], outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["gates", "output"]
    np.testing.assert_allclose(
        result.as_numpy("output"), mlflow_scores(mlflow, served.name, ROWS), rtol=1e-5, atol=1e-6
    )
    with torch.no_grad():
        gates = make_moe().gates(torch.from_numpy(ROWS)).numpy()
    np.testing.assert_allclose(result.as_numpy("gates"), gates, rtol=1e-5, atol=1e-6)
    only_forward, gates_output = servers["moe_pt2"], [triton_http.InferRequestedOutput("gates")]
    with pytest.raises(InferenceServerException) as refused:  # a pt2 export keeps only forward
        only_forward.client().infer(only_forward.name, [tensor], outputs=gates_output)
    assert refused.value.status() == "422"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_mixed_column_types_with_bytes_tensors(servers: dict[str, Served], mlflow: MlflowServer, binary: bool) -> None:
    import pandas as pd

    served = servers["rules_pyfunc"]
    frame = pd.DataFrame(
        {
            "amount": [500.0, 5.0, 900.0, 150.0],
            "items": [1, 1, 3, 1],
            "country": ["FR", "FR", "DE", "Zürich"],
            "vip": [False, False, False, True],
        }
    )
    arrays = {
        "amount": ("FP64", frame["amount"].to_numpy()),
        "items": ("INT64", frame["items"].to_numpy(dtype=np.int64)),
        "country": ("BYTES", np.array([c.encode() for c in frame["country"]], dtype=np.object_)),
        "vip": ("BOOL", frame["vip"].to_numpy()),
    }
    inputs = []
    for name, (datatype, array) in arrays.items():
        tensor = triton_http.InferInput(name, [len(frame)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    result = served.client().infer(served.name, inputs, outputs=[triton_http.InferRequestedOutput("output", binary)])
    got = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("output").tolist()]
    assert got == mlflow_scores(mlflow, served.name, frame).tolist()
    assert got == ["review", "ok", "ok", "ok"]


def test_malformed_binary_bodies_get_a_clear_4xx_from_the_running_server(servers: dict[str, Served]) -> None:
    served = servers["moe_pt2"]
    url = f"{served.url}/v2/models/{served.name}/infer"
    raw = ROWS.tobytes()
    head = orjson.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [7, 20], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}
            ]
        }
    )

    def post(body: bytes, length: int | str) -> httpx.Response:
        return httpx.post(url, content=body, headers={"Inference-Header-Content-Length": str(length)}, timeout=30)

    fine = post(head + raw, len(head))
    assert fine.status_code == 200, fine.text
    cases: dict[str, tuple[bytes, int | str, int, str]] = {
        "header beyond the body": (head + raw, len(head + raw) + 1, 400, "only"),
        "bytes missing": (head + raw[:-4], len(head), 400, "goes beyond the body"),
        "bytes left over": (head + raw + b"\0" * 4, len(head), 400, "belong to no input"),
        "header not a number": (head + raw, "12a", 400, "byte count"),
        "header cut inside the JSON": (head + raw, len(head) - 3, 400, "not valid JSON"),
        "unknown datatype": (head.replace(b"FP32", b"FP24") + raw, len(head), 400, "not an Open Inference Protocol"),
    }
    for case, (body, length, status, words) in cases.items():
        answer = post(body, length)
        assert answer.status_code == status, (case, answer.text)
        assert words in answer.json()["message"], (case, answer.text)
    too_large = post(head + b"\0" * (9 * 1024 * 1024), len(head))
    assert too_large.status_code == 413
    wrong = triton_http.InferInput("input", [7, 10], "FP32")
    wrong.set_data_from_numpy(ROWS[:, :10].copy())
    with pytest.raises(InferenceServerException) as refused:
        served.client().infer(served.name, [wrong])
    assert refused.value.status() == "422"


def test_grpc_server_and_model_calls(servers: dict[str, Served]) -> None:
    served = servers["moe_pt2"]
    client = served.grpc_client()
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(served.name)
    assert client.is_model_ready(served.name, "1")
    assert not client.is_model_ready(served.name, "9")
    assert not client.is_model_ready("other")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "modelpilot"
    assert "binary_tensor_data" in server["extensions"]
    metadata = client.get_model_metadata(served.name, as_json=True)
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "20"]}]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": ["-1", "2"]}]
    with pytest.raises(InferenceServerException) as missing:
        client.get_model_metadata("other")
    assert missing.value.status() == "StatusCode.NOT_FOUND"


def test_grpc_infer_matches_mlflow_scoring(servers: dict[str, Served], mlflow: MlflowServer) -> None:
    served = servers["moe_pt2"]
    client = served.grpc_client()
    tensor = triton_grpc.InferInput("input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    result = client.infer(served.name, [tensor], request_id="g-1", model_version="1")
    assert result.get_response().id == "g-1"
    expected = mlflow_scores(mlflow, served.name, ROWS)
    np.testing.assert_allclose(result.as_numpy("output"), expected, rtol=1e-5, atol=1e-6)
    outputs = [triton_grpc.InferRequestedOutput("output")]
    again = client.infer(served.name, [tensor], outputs=outputs)
    np.testing.assert_allclose(again.as_numpy("output"), expected, rtol=1e-5, atol=1e-6)
    gated = servers["moe_pickle"]
    outputs = [triton_grpc.InferRequestedOutput("output"), triton_grpc.InferRequestedOutput("gates")]
    both = gated.grpc_client().infer(gated.name, [tensor], outputs=outputs)
    assert both.as_numpy("gates").shape == (7, 4)
    wrong = triton_grpc.InferInput("input", [7, 10], "FP32")
    wrong.set_data_from_numpy(ROWS[:, :10].copy())
    with pytest.raises(InferenceServerException) as refused:
        client.infer(served.name, [wrong])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "invalid_input" in str(refused.value.message())


def test_grpc_bytes_columns_match_mlflow_scoring(servers: dict[str, Served], mlflow: MlflowServer) -> None:
    import pandas as pd

    served = servers["rules_pyfunc"]
    frame = pd.DataFrame({"amount": [500.0, 5.0], "items": [1, 1], "country": ["FR", "FR"], "vip": [False, False]})
    inputs = []
    for name, datatype, array in (
        ("amount", "FP64", frame["amount"].to_numpy()),
        ("items", "INT64", frame["items"].to_numpy(dtype=np.int64)),
        ("country", "BYTES", np.array([c.encode() for c in frame["country"]], dtype=np.object_)),
        ("vip", "BOOL", frame["vip"].to_numpy()),
    ):
        tensor = triton_grpc.InferInput(name, [len(frame)], datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = served.grpc_client().infer(served.name, inputs)
    got = [v.decode() for v in result.as_numpy("output").tolist()]
    assert got == mlflow_scores(mlflow, served.name, frame).tolist() == ["review", "ok"]


def test_grpc_calls_share_the_request_metrics(servers: dict[str, Served]) -> None:
    served = servers["moe_pt2"]
    tensor = triton_grpc.InferInput("input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    served.grpc_client().infer(served.name, [tensor])
    route, ok = 'route="/inference.GRPCInferenceService/ModelInfer"', 'code="200"'
    text = httpx.get(served.metrics_url, timeout=10).text
    samples = [line for line in text.splitlines() if line.startswith("modelpilot_http_requests_total{")]
    assert any(route in line and ok in line and float(line.split()[-1]) >= 1 for line in samples), samples
