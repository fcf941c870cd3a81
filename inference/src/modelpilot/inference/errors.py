"""Domain errors of the data plane and the one place that turns them into HTTP answers."""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """Base of every error the server answers on purpose; `status` is the HTTP code it maps to."""

    status = 500
    kind = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON error document: `{"error": kind, "message": …, **details}`."""
        return {"error": self.kind, "message": self.message, **self.details}

    def headers(self) -> dict[str, str]:
        """Extra response headers for this error."""
        return {}


class InvalidInputError(ServingError):
    """The request body does not fit the model signature; `field` names what is wrong."""

    status = 422
    kind = "invalid_input"

    def __init__(self, field: str, reason: str, *, row: int | None = None, row_in_field: bool = False) -> None:
        """`row`: the row at fault, named in the reason (`row 3: …`) or, with `row_in_field`, the field (`data[3]`)."""
        shown_field = f"{field}[{row}]" if row is not None and row_in_field else field
        shown_reason = f"row {row}: {reason}" if row is not None and not row_in_field else reason
        details: dict[str, Any] = {"field": shown_field, "reason": shown_reason}
        if row is not None:
            details["row"] = row
        super().__init__(f"{shown_field}: {shown_reason}", **details)
        self.field = shown_field
        self.reason = shown_reason
        self.row = row
        self._parts = (field, reason, row_in_field)

    def shifted(self, rows: int) -> InvalidInputError:
        """The same error for a table that starts `rows` rows later (a piece of a longer upload)."""
        if self.row is None:
            return self
        field, reason, row_in_field = self._parts
        return InvalidInputError(field, reason, row=self.row + rows, row_in_field=row_in_field)


class MalformedBodyError(ServingError):
    """The body cannot be parsed at all (not JSON, not CSV, wrong content type)."""

    status = 400
    kind = "malformed_body"


class UnsupportedMediaTypeError(ServingError):
    """A content type the route does not read."""

    status = 415
    kind = "unsupported_media_type"


class MethodNotAllowedError(ServingError):
    """A known route called with a method it does not answer."""

    status = 405
    kind = "method_not_allowed"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow}


class PayloadTooLargeError(ServingError):
    """The body is above the configured limit."""

    status = 413
    kind = "payload_too_large"


class UnknownModelError(ServingError):
    """The route names a model this server does not serve."""

    status = 404
    kind = "model_not_found"


class ModelNotReadyError(ServingError):
    """The model is still loading, failed to load, or the server is shutting down."""

    status = 503
    kind = "model_not_ready"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class UnauthorizedError(ServingError):
    """Missing or wrong API key / token."""

    status = 401
    kind = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="modelpilot"'}


class RateLimitedError(ServingError):
    """The client spent its request budget."""

    status = 429
    kind = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many requests", retry_after_seconds=round(retry_after, 3))
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after + 0.5)))}


class InjectedFaultError(ServingError):
    """A failure injected by the fault settings, used to test rollbacks."""

    status = 500
    kind = "injected_fault"


class PredictionFailedError(ServingError):
    """The model raised on input that passed validation: a server-side fault, not the client's."""

    status = 500
    kind = "prediction_failed"


class ResponseAbortedError(ServingError):
    """A streamed answer failed after its status was sent: the edge ends it without its last chunk."""

    status = 500
    kind = "response_aborted"
