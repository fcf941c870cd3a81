"""`/predict_batch`: a CSV upload validated in full while it arrives, then predicted and streamed back.

Memory stays bounded whatever the upload's size: the upload is read as it arrives and parsed a piece
(about 1 MiB of text) at a time in a worker thread, never whole; validated pieces go to a spool that
keeps `SPOOL_MEMORY_BYTES` in memory and the rest in an unlinked temporary file. Nothing is sent until
the last row is validated, so a bad row anywhere is a 422 naming it, not a broken stream. Predictions
then run `batch_chunk_rows` rows per forward pass, the first before the answer starts (a model that
fails on the first chunk is a plain 500). A failure after the answer started cannot change its status:
the answer is aborted (the connection closes without the last chunk of the chunked encoding), so a
client sees an incomplete response and never mistakes a truncated CSV for a whole one.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import pickle
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from modelpilot.inference.csv_tables import PIECE_BYTES, CsvTableReader, rechunk
from modelpilot.inference.dataplane import DataPlane
from modelpilot.inference.errors import ResponseAbortedError, ServingError
from modelpilot.inference.prediction import Prediction, csv_header, csv_rows
from modelpilot.inference.validation import Features, row_count

log = logging.getLogger("modelpilot.inference")

SPOOL_MEMORY_BYTES = 16 * 1024 * 1024
T = TypeVar("T")


class FeatureSpool:
    """Validated pieces of one upload, in order: in memory up to `memory_bytes`, then in a temporary file.

    The file holds only what this process pickled itself a moment earlier; it is unlinked from the start.
    """

    def __init__(self, memory_bytes: int = SPOOL_MEMORY_BYTES, directory: str | None = None) -> None:
        self._file: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=memory_bytes, dir=directory
        )
        self.rows = 0

    def add(self, pieces: list[Features]) -> None:
        """Append validated pieces."""
        for piece in pieces:
            pickle.dump(piece, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self.rows += row_count(piece)

    def pieces(self) -> Iterator[Features]:
        """The pieces in the order they were added."""
        self._file.seek(0)
        while True:
            try:
                piece: Features = pickle.load(self._file)
            except EOFError:
                return
            yield piece

    def close(self) -> None:
        """Drop the spool (memory or file)."""
        self._file.close()


class BatchUpload:
    """One `/predict_batch` request: `read` validates the whole upload, `stream` yields the CSV answer."""

    def __init__(self, plane: DataPlane, chunks: AsyncIterator[bytes]) -> None:
        self.plane = plane
        self._chunks = chunks
        self._spool = FeatureSpool(directory=plane.settings.spool_dir or None)

    async def _off_loop(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.plane.decode_pool, function, *args)

    async def read(self) -> None:
        """Parse and validate every row (in the decode threads, a piece at a time) into the spool."""
        reader = CsvTableReader(self.plane.model.require_validator())
        held: list[bytes] = []
        size = 0
        try:
            async for chunk in self._chunks:
                held.append(chunk)
                size += len(chunk)
                if size >= PIECE_BYTES:
                    data, held, size = b"".join(held), [], 0
                    self._spool.add(await self._off_loop(reader.feed, data))
            self._spool.add(await self._off_loop(_feed_and_finish, reader, b"".join(held)))
        except BaseException:
            self._spool.close()
            raise

    async def stream(self) -> tuple[bytes, AsyncGenerator[bytes, None]]:
        """The first lines (header and first chunk's rows) and the rest of the answer as it is predicted."""
        chunks = rechunk(self._spool.pieces(), self.plane.settings.batch_chunk_rows)
        try:
            first = await self._next(chunks)
            assert first is not None  # `read` refuses a table without rows
            prediction = await self.plane.predict_chunk(first)
            head = await self._off_loop(_csv_lines, [_header(prediction), *_cells(prediction)])
        except BaseException:
            self._spool.close()
            raise
        return head, self._rest(chunks)

    async def _rest(self, chunks: Iterator[Features]) -> AsyncGenerator[bytes, None]:
        done = 0
        try:
            while (features := await self._next(chunks)) is not None:
                prediction = await self.plane.predict_chunk(features)
                yield await self._off_loop(_csv_lines, _cells(prediction))
                done += prediction.rows
        except ServingError as error:
            log.error(
                "batch prediction failed after the answer started; aborting it",
                extra={"fields": {"rows_answered": done, "reason": error.message}},
            )
            raise ResponseAbortedError(f"aborted after {done} rows: {error.message}") from error
        finally:
            self._spool.close()

    async def _next(self, chunks: Iterator[Features]) -> Features | None:
        return await self._off_loop(next, chunks, None)


def _feed_and_finish(reader: CsvTableReader, data: bytes) -> list[Features]:
    return [*reader.feed(data), *reader.finish()]


def _header(prediction: Prediction) -> list[str]:
    header = csv_header(prediction.values)
    return [*header, "class"] if prediction.labels() is not None and len(header) > 1 else header


def _cells(prediction: Prediction) -> list[list[Any]]:
    rows = csv_rows(prediction.values)
    classes = prediction.labels()
    if classes is not None and rows and len(rows[0]) > 1:
        return [[*row, label] for row, label in zip(rows, classes.tolist(), strict=True)]
    return rows


def _csv_lines(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()
