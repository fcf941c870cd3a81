"""JSON bodies: orjson with numpy support, and the one mapping from domain errors to HTTP answers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelpilot.inference.errors import ServingError


def json_default(value: Any) -> Any:
    """orjson fallback for numpy scalars/object arrays and anything else with a string form."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def json_bytes(document: Any) -> bytes:
    """orjson with numpy arrays serialised natively."""
    return orjson.dumps(document, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(error: ServingError) -> Response:
    """The one mapping from domain errors to HTTP answers."""
    return Response(
        json_bytes(error.body()), status_code=error.status, headers=error.headers(), media_type="application/json"
    )


async def serving_error_handler(request: Request, error: Exception) -> Response:
    """Exception handler the app registers for `ServingError`."""
    assert isinstance(error, ServingError)
    return error_response(error)
