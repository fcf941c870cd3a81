"""The labels endpoint never answers 5xx to what a client sends: arbitrary bytes, CSV and JSON of any shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from starlette.testclient import TestClient

from modelpilot.inference.predlog.migrate import migrate
from tests.support.postgres import PostgresServer

_SETTINGS = settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
_CELLS = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.sampled_from(["", "0", "-1", "2147483648", "1.0", "a b", '"q"', "é"]),
)
_INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what orjson writes; larger ones as text below
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | _INTS | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture
def labels_client(app_with: Callable[..., TestClient], postgres: PostgresServer) -> TestClient:
    postgres.start()
    postgres.reset()
    migrate(postgres.dsn)
    return app_with(predlog_dsn=SecretStr(postgres.dsn), predlog_shadow_interval_seconds=0.0)


def _post(client: TestClient, body: bytes, content_type: str) -> Any:
    response = client.post("/v1/labels", content=body, headers={"content-type": content_type})
    assert response.status_code < 500, response.text
    return response


@_SETTINGS
@given(body=st.binary(max_size=600), content_type=st.sampled_from(["text/csv", "application/json", "text/plain"]))
def test_arbitrary_bytes_never_get_a_5xx(labels_client: TestClient, body: bytes, content_type: str) -> None:
    _post(labels_client, body, content_type)


@_SETTINGS
@given(
    header=st.lists(st.sampled_from(["request_id", "row", "label", "x", ""]), min_size=0, max_size=5),
    lines=st.lists(st.lists(_CELLS, max_size=5), max_size=20),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_csv_of_any_shape_is_answered_200_or_4xx(
    labels_client: TestClient, header: list[str], lines: list[list[str]], newline: str
) -> None:
    text = newline.join(",".join(cells) for cells in [header, *lines])
    response = _post(labels_client, text.encode(), "text/csv")
    if response.status_code == 200:
        assert response.json()["received"] <= len(lines)


def test_integers_beyond_64_bits_are_refused_not_failed(labels_client: TestClient) -> None:
    response = _post(
        labels_client, b'[{"request_id": "a", "row": 0, "label": 99999999999999999999999}]', "application/json"
    )
    assert response.status_code == 422


@_SETTINGS
@given(document=_JSON_VALUES)
def test_json_of_any_shape_is_answered_200_or_4xx(labels_client: TestClient, document: Any) -> None:
    _post(labels_client, orjson.dumps(document), "application/json")


@_SETTINGS
@given(
    items=st.lists(
        st.fixed_dictionaries({"request_id": st.text(max_size=20) | _INTS, "row": _INTS, "label": _INTS}),
        max_size=10,
    )
)
def test_label_items_are_stored_or_named_as_wrong(labels_client: TestClient, items: list[dict[str, Any]]) -> None:
    response = _post(labels_client, orjson.dumps(items), "application/json")
    if response.status_code == 422:
        assert response.json()["errors"] >= 1
    else:
        assert response.status_code == 200
        assert response.json()["received"] == len(items)
