"""The floor: the same weights in the eager module, orjson in and out, and nothing else.

The runner saves the state dict of the model it registers; this loads it into the model class from
`modelpilot.training.model` and serves `dataframe_split` bodies with one tensor conversion and one
eager forward: no mlflow, no validation, no metrics, no logs, no request ids. It is what a request must
cost at least in Python, so the server is measured against the best a bare app can do, not against a
handicapped one.
"""

from __future__ import annotations

import os

import numpy as np
import orjson
import torch
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelpilot.training.model import MixtureOfExperts

torch.set_num_threads(1)


def load_eager(path: str) -> MixtureOfExperts:
    """The model class with the saved weights, in eval mode; its sizes are read from the weights' shapes."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = MixtureOfExperts(
        n_features=state["feature_mean"].shape[0],
        n_classes=state["experts.0.3.weight"].shape[0],
        n_experts=state["gate.2.weight"].shape[0],
        hidden_units=state["gate.0.weight"].shape[0],
    )
    model.load_state_dict(state)
    return model.eval()


MODEL = load_eager(os.environ["FLOOR_STATE_DICT"])


async def invocations(request: Request) -> Response:
    """dataframe_split rows → float32 tensor → eager forward → JSON."""
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
