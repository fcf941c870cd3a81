"""No body costs more than linear time to decode or refuse: adversarial bodies of about 1 MiB each.

A check that is quadratic in the number of names or keys a client sends (a `list.count` per column,
a tuple scan per key) takes seconds on bodies of a few hundred kilobytes and blocks the event loop for
every other request meanwhile. Each body here is refused or decoded in well under a second when every
step is linear; the quadratic versions took minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from modelpilot.inference.decoding import decode_invocations, decode_v2_infer
from modelpilot.inference.errors import ServingError
from modelpilot.inference.schema import Column, column_schema, tensor_schema
from modelpilot.inference.validation import Validator

TENSOR = Validator(tensor_schema((20,)), as_matrix=True)
COLUMNS = Validator(column_schema([Column(f"f{i}", "float", np.float64) for i in range(20)]), as_matrix=True)
MIXED = Validator(
    column_schema([Column(f"f{i}", "float", np.float64) for i in range(19)] + [Column("s", "str", object)]),
    as_matrix=False,
)
N = 100_000  # names or keys per body: about 1 MiB
NAMES = [f"c{i}" for i in range(N)]
JSON = "application/json"


def _split(names: list[Any]) -> bytes:
    return orjson.dumps({"dataframe_split": {"columns": names, "data": [[0.0] * 20]}})


def _records_with_different_keys() -> bytes:
    first = dict.fromkeys(NAMES[: N // 2], 0.0)
    second = dict.fromkeys(NAMES[N // 2 :], 0.0)
    return orjson.dumps({"dataframe_records": [first, second]})


def _v2_columns() -> bytes:
    inputs = [{"name": name, "shape": [1], "datatype": "FP64", "data": [0.0]} for name in NAMES[: N // 10]]
    return orjson.dumps({"inputs": [*inputs, inputs[-1]]})


def _csv_header() -> bytes:
    return (",".join([*NAMES, NAMES[-1]]) + "\n" + ",".join(["0"] * (N + 1)) + "\n").encode()


def _rows_with_a_string_last() -> bytes:
    rows = [[0.5] * 20 for _ in range(N // 20)]
    rows[-1][-1] = "x"  # type: ignore[call-overload]
    return orjson.dumps({"instances": rows})


def _nested_params() -> bytes:
    rows = orjson.dumps([[0.5] * 20] * 2000)
    return b'{"instances": ' + rows + b', "params": ' + b"[" * 1000 + b"]" * 1000 + b"}"


CASES: dict[str, Callable[[], object]] = {
    "distinct column names, a duplicate last": lambda: decode_invocations(_split([*NAMES, NAMES[-1]]), JSON, COLUMNS),
    "distinct unknown column names": lambda: decode_invocations(_split(NAMES), JSON, MIXED),
    "column names that are integers and strings": lambda: decode_invocations(
        _split([*range(N), str(N - 1)]),
        JSON,
        COLUMNS,
    ),
    "records with different keys, tensor signature": lambda: decode_invocations(
        _records_with_different_keys(), JSON, TENSOR
    ),
    "records with many unknown keys": lambda: decode_invocations(
        orjson.dumps({"dataframe_records": [dict.fromkeys(NAMES, 0.0)]}), JSON, MIXED
    ),
    "v2 inputs, one per column, a duplicate last": lambda: decode_v2_infer(_v2_columns(), MIXED),
    "CSV header with a duplicate last": lambda: decode_invocations(_csv_header(), "text/csv", COLUMNS),
    "rows with a string in the last cell": lambda: decode_invocations(_rows_with_a_string_last(), JSON, TENSOR),
    "parameters nested 1000 deep": lambda: decode_invocations(_nested_params(), JSON, TENSOR),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(CASES))
def test_adversarial_bodies_are_decoded_or_refused_in_linear_time(case: str) -> None:
    start = time.perf_counter()
    status = 200
    try:
        CASES[case]()
    except ServingError as error:
        status = error.status
    elapsed = time.perf_counter() - start
    assert status < 500
    assert elapsed < 5.0, f"{case}: {elapsed:.2f}s"  # linear: ~0.1 s; quadratic: minutes
