"""The operator's HTTP client for the servers a spec names (the MLflow registry, Prometheus).

aiohttp, the stack Kopf itself runs on: a request costs about a third of the CPU of httpx's (which
looks for an optional import on every request), and a poll of a thousand resources is mostly
requests. The session is made on first use, inside the event loop that runs it, and keeps its
connections. Those servers are chosen by whoever writes a ModelDeployment, so an answer's body is
read up to a bound, never whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

# An answer the operator needs (a registered model with its versions, an instant vector) is kilobytes.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class UnreachableError(Exception):
    """No answer: the connection failed, timed out, or broke mid-answer. The message names the error's class
    only, because protocol errors quote what the server sent."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.kind = type(error).__name__


@dataclass(frozen=True)
class Answer:
    """A server's status code and the start of its body (up to MAX_ANSWER_BYTES)."""

    status: int
    body: bytes
    truncated: bool = False

    def text(self, limit: int) -> str:
        """The body's first `limit` characters, for a log line."""
        return self.body[: limit * 4].decode(errors="replace")[:limit]

    def json_value(self) -> Any:
        """The body as JSON; ValueError when it is not JSON (or was cut at the bound)."""
        if self.truncated:
            raise ValueError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        return json.loads(self.body)


class HttpClient:
    """One pooled session with fixed headers, auth and timeout."""

    def __init__(
        self,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
        auth: aiohttp.BasicAuth | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = headers or {}
        self._auth = auth
        self._max_answer_bytes = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, auth=self._auth, timeout=self._timeout)
        return self._session

    async def request(
        self, method: str, url: str, *, params: dict[str, str] | None = None, json: dict[str, Any] | None = None
    ) -> Answer:
        """Send one request; the answer, or UnreachableError."""
        try:
            async with self._client().request(method, url, params=params, json=json) as response:
                body = await self._read_bounded(response)
                return Answer(
                    response.status, body[: self._max_answer_bytes], truncated=len(body) > self._max_answer_bytes
                )
        except (TimeoutError, aiohttp.ClientError) as error:
            raise UnreachableError(error) from error

    async def _read_bounded(self, response: aiohttp.ClientResponse) -> bytes:
        """The body up to one byte past the bound (so a longer one is known to be longer)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > self._max_answer_bytes:
                break
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the pool (a later request opens a new one)."""
        if self._session is not None:
            await self._session.close()
