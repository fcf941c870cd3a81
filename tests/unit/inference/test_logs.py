"""Access lines: buffered, written within `flush_seconds` or at `max_buffer` bytes, never lost."""

from __future__ import annotations

import asyncio
import io

import orjson

from modelpilot.inference.logs import ACCESS_LOGGER, AccessLog


async def test_lines_are_written_together_within_the_flush_interval() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream, flush_seconds=0.1)
    log.write({"request_id": "a", "status": 200})
    log.write({"request_id": "b", "status": 404})
    assert stream.getvalue() == b""
    await asyncio.sleep(0.2)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["request_id"], line["status"]) for line in lines] == [("a", 200), ("b", 404)]
    assert {line["logger"] for line in lines} == {ACCESS_LOGGER}
    assert all(line["time"].endswith("Z") and len(line["time"]) == 24 for line in lines)


async def test_a_full_buffer_is_written_at_once() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream, flush_seconds=60, max_buffer=1024)
    line = len(orjson.dumps({"request_id": "0", "path": "/invocations"}))
    count = 1024 // line + 2  # one over the buffer, then one more waiting
    for index in range(count):
        log.write({"request_id": str(index), "path": "/invocations"})
    written = stream.getvalue().splitlines()
    assert 0 < len(written) < count
    log.flush()
    assert [orjson.loads(item)["request_id"] for item in stream.getvalue().splitlines()] == [
        str(index) for index in range(count)
    ]


def test_outside_an_event_loop_each_line_is_written_at_once() -> None:
    stream = io.BytesIO()
    AccessLog(stream).write({"request_id": "x"})
    assert orjson.loads(stream.getvalue())["request_id"] == "x"
