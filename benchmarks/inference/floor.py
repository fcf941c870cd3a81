"""The floor: a bare Starlette app that parses with orjson, builds the tensor and runs forward, nothing else."""

from __future__ import annotations

import os
from typing import Any

import mlflow.pytorch
import numpy as np
import orjson
import torch
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

torch.set_num_threads(1)
MODEL: Any = mlflow.pytorch.load_model(os.environ["FLOOR_MODEL_URI"])


async def invocations(request: Request) -> Response:
    """dataframe_split rows → float32 tensor → forward → JSON."""
    rows = orjson.loads(await request.body())["dataframe_split"]["data"]
    with torch.inference_mode():
        output = MODEL(torch.from_numpy(np.array(rows, dtype=np.float32))).numpy()
    return Response(
        orjson.dumps({"predictions": output}, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


async def ping(request: Request) -> Response:
    """Ready once the module-level load above has run."""
    return Response(b"{}", media_type="application/json")


app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]), Route("/ping", ping)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["FLOOR_PORT"]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
