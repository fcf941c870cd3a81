"""Pure parts of the prediction log: request ids, canonical inputs, table rows, the labels readers, the queue."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from modelpilot.inference.errors import MalformedBodyError
from modelpilot.inference.prediction import Prediction
from modelpilot.inference.predlog.labels import MAX_LINE_BYTES, CsvLabelReader, Label, parse_json_labels
from modelpilot.inference.predlog.metrics import PredictionLogMetrics
from modelpilot.inference.predlog.records import (
    COLUMNS,
    LoggedRequest,
    canonical_inputs,
    copy_text,
    table_rows,
    valid_request_id,
)
from modelpilot.inference.predlog.writer import PredictionLogWriter


@pytest.mark.parametrize("value", ["a", "req-1", "4bf92f3577b34da6a3ce929d0e0e4736", "a.b_c:d@e/f+g=h", "x" * 128])
def test_valid_request_ids_are_kept(value: str) -> None:
    assert valid_request_id(value) == value


@pytest.mark.parametrize("value", [None, "", "x" * 129, "a b", "semi;colon", "new\nline", "é", "quote'"])
def test_invalid_request_ids_are_refused(value: str | None) -> None:
    assert valid_request_id(value) is None


def test_table_inputs_hash_the_same_whatever_the_column_order() -> None:
    first = {"b": np.array([1.5, 2.0]), "a": np.array([1, 2])}
    second = {"a": np.array([1, 2]), "b": np.array([1.5, 2.0])}
    assert canonical_inputs(first) == canonical_inputs(second) == [b'{"a":1,"b":1.5}', b'{"a":2,"b":2.0}']


def test_a_tensor_row_is_its_json_under_input() -> None:
    rows = np.array([[1.0, 2.5], [3.0, 4.0]], dtype=np.float32)
    assert canonical_inputs(rows) == [b'{"input":[1.0,2.5]}', b'{"input":[3.0,4.0]}']
    assert canonical_inputs(np.asfortranarray(rows)) == canonical_inputs(rows)


def _request(prediction: Prediction, features: object) -> LoggedRequest:
    return LoggedRequest("r", features, prediction, 0.0, "m", "3", "canary")  # type: ignore[arg-type]


def test_classifier_rows_keep_class_and_its_score() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2]])
    rows = table_rows(_request(Prediction(scores, 2, labelled=False), np.zeros((2, 3))), "hash")
    assert [(r[1], r[6], r[7], r[8]) for r in rows] == [(0, 1, 0.9, None), (1, 0, 0.8, None)]
    assert rows[0][9] == hashlib.sha256(b'{"input":[0.0,0.0,0.0]}').digest()
    assert rows[0][10] is None
    assert rows[0][2:5] == ("canary", "m", "3")


def test_regression_rows_keep_the_output_as_json_and_full_mode_the_inputs() -> None:
    rows = table_rows(_request(Prediction(np.array([0.5, 1.25]), 2), {"x": np.array([1, 2])}), "full")
    assert [(r[6], r[8], r[10]) for r in rows] == [(None, "0.5", '{"x":1}'), (None, "1.25", '{"x":2}')]


def test_none_mode_stores_no_hash() -> None:
    rows = table_rows(_request(Prediction(np.array([1, 0]), 2, labelled=False), np.zeros((2, 1))), "none")
    assert [r[9] for r in rows] == [None, None]
    assert [r[6] for r in rows] == [1, 0]


CSV = b"request_id,row,label\nr1,0,1\nr1,1,0\n\nr2,0,-3\n"


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(CSV)), max_size=8))
def test_csv_labels_read_alike_whatever_the_chunks(cuts: list[int]) -> None:
    reader = CsvLabelReader()
    labels: list[Label] = []
    bounds = [0, *sorted(cuts), len(CSV)]
    for start, stop in itertools.pairwise(bounds):
        labels += reader.feed(CSV[start:stop])
    labels += reader.finish()
    assert labels == [Label("r1", 0, 1), Label("r1", 1, 0), Label("r2", 0, -3)]
    assert reader.errors.count == 0


def test_csv_errors_name_their_lines_and_a_long_line_is_not_held() -> None:
    reader = CsvLabelReader()
    body = b"request_id,row,label\nr,0,x\n" + b"y" * (3 * MAX_LINE_BYTES) + b"\nr,1,2\nr,2\n"
    labels = reader.feed(body[:100]) + reader.feed(body[100:2000]) + reader.feed(body[2000:]) + reader.finish()
    assert labels == [Label("r", 1, 2)]
    assert [e["line"] for e in reader.errors.shown] == [2, 3, 5]


def test_csv_without_the_columns_is_malformed() -> None:
    with pytest.raises(MalformedBodyError):
        CsvLabelReader().feed(b"id,row,label\n")
    with pytest.raises(MalformedBodyError):
        CsvLabelReader().finish()


def test_json_labels_refuse_booleans_floats_and_out_of_range_rows() -> None:
    body = (
        b'[{"request_id":"a","row":0,"label":1},{"request_id":"a","row":true,"label":1},'
        b'{"request_id":"a","row":0,"label":1.0},{"request_id":"a","row":-1,"label":1},7]'
    )
    labels, errors = parse_json_labels(body)
    assert labels == [Label("a", 0, 1)]
    assert [e["item"] for e in errors.shown] == [1, 2, 3, 4]


def test_a_full_queue_drops_and_counts_whole_requests_without_blocking() -> None:
    registry = CollectorRegistry()
    writer = PredictionLogWriter("postgresql://nowhere.invalid/x", PredictionLogMetrics(registry), queue_rows=10)
    request = _request(Prediction(np.zeros(4, dtype=np.int64), 4), np.zeros((4, 1)))
    for _ in range(5):  # the writer thread is not started: nothing leaves the queue
        writer.record(request)
    assert writer.backlog() == 8
    assert registry.get_sample_value("modelpilot_prediction_log_dropped_total", {"reason": "queue_full"}) == 12
    writer.stop(timeout=0)
    assert registry.get_sample_value("modelpilot_prediction_log_dropped_total", {"reason": "shutdown"}) == 8
    writer.record(request)
    assert registry.get_sample_value("modelpilot_prediction_log_dropped_total", {"reason": "shutdown"}) == 12


def test_copy_text_holds_the_table_rows_with_tabs_newlines_and_backslashes_escaped() -> None:
    outputs = np.array([{"note": "a\tb\\c\nd"}, {"note": "x"}], dtype=object)
    request = LoggedRequest("r-1", np.zeros((2, 1)), Prediction(outputs, 2), 0.0, "m\\odel", "3", "stable")
    lines = copy_text(request, "hash").split("\n")
    assert lines[-1] == ""
    first = lines[0].split("\t")
    assert len(first) == len(COLUMNS)
    assert first[:5] == ["r-1", "0", "stable", "m\\\\odel", "3"]
    assert first[5] == "1970-01-01T00:00:00+00:00"
    assert first[6:8] == ["\\N", "\\N"]
    assert first[8] == '{"note":"a\\\\tb\\\\\\\\c\\\\nd"}'  # JSON escapes, each backslash doubled for COPY
    assert first[9] == "\\\\x" + hashlib.sha256(b'{"input":[0.0]}').hexdigest()
    assert first[10] == "\\N"
