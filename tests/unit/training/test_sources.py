"""Training data from paths and URIs, CSV and Parquet, with schema errors that say what is wrong."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelpilot.training.data import FEATURES, LABEL, generate_flows
from modelpilot.training.sources import DataError, load_dataset, load_uri, table_digest, validate_schema


@pytest.fixture
def flows() -> pd.DataFrame:
    return generate_flows(300, seed=11)


def test_csv_path_file_uri_and_parquet_give_the_same_table_and_digest(flows: pd.DataFrame, tmp_path: Path) -> None:
    flows.to_csv(tmp_path / "flows.csv", index=False)
    flows.to_parquet(tmp_path / "flows.parquet", index=False)
    from_csv = load_dataset(str(tmp_path / "flows.csv"), rows=0, seed=0, drift=0.0)
    from_parquet = load_dataset(f"file://{tmp_path / 'flows.parquet'}", rows=0, seed=0, drift=0.0)
    assert from_csv.digest == from_parquet.digest == table_digest(validate_schema(flows, "flows"))
    assert from_parquet.source == f"file://{tmp_path / 'flows.parquet'}"
    assert from_csv.name == "flows.csv"
    assert len(from_csv.frame) == 300


def test_an_empty_uri_generates_the_seeded_data() -> None:
    dataset = load_dataset("", rows=400, seed=5, drift=0.5)
    assert len(dataset.frame) == 400
    assert "seed=5" in dataset.source
    assert dataset.digest == load_dataset("", rows=400, seed=5, drift=0.5).digest
    assert dataset.digest != load_dataset("", rows=400, seed=6, drift=0.5).digest


def test_extra_columns_are_dropped_and_order_is_the_model_order(flows: pd.DataFrame) -> None:
    shuffled = flows[[LABEL, *reversed(FEATURES)]].assign(comment="x")
    table = validate_schema(shuffled, "t")
    assert list(table.columns) == [*FEATURES, LABEL]


def test_a_missing_file_is_a_data_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data file not found: .*nope\.csv"):
        load_uri(str(tmp_path / "nope.csv"))


def test_an_unknown_format_or_scheme_is_refused(tmp_path: Path) -> None:
    (tmp_path / "flows.json").write_text("{}")
    with pytest.raises(DataError, match=r"expected a .csv or .parquet file"):
        load_uri(str(tmp_path / "flows.json"))
    with pytest.raises(DataError, match="unsupported data URI scheme 'gs'"):
        load_uri("gs://bucket/flows.csv")


def test_a_corrupt_parquet_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "flows.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"cannot read .* as parquet"):
        load_uri(str(tmp_path / "flows.parquet"))


def test_missing_columns_are_named(flows: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"schema mismatch in t: missing column\(s\) syn_ratio, label"):
        validate_schema(flows.drop(columns=["syn_ratio", LABEL]), "t")


def test_non_numeric_missing_values_and_bad_labels_are_all_reported(flows: pd.DataFrame) -> None:
    broken = flows.astype({"protocol": object})
    broken.loc[0, "protocol"] = "tcp"
    with pytest.raises(DataError, match=r"non-numeric feature column.*protocol"):
        validate_schema(broken, "t")
    broken = flows.copy()
    broken.loc[3, "duration"] = np.nan
    broken.loc[4, LABEL] = 7
    with pytest.raises(DataError, match=r"missing or infinite values in duration; label must be 0 .* found 0, 1, 7"):
        validate_schema(broken, "t")


def test_a_table_without_enough_attacks_is_refused(flows: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="each class needs at least 20 rows"):
        validate_schema(flows.assign(label=0), "t")


class FakeS3Client:
    """Stands in for boto3's S3 client: AWS cannot be reached from the tests."""

    def __init__(self, objects: dict[tuple[str, str], bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 (boto3's argument names)
        if (Bucket, Key) not in self.objects:
            raise KeyError(f"NoSuchKey: {Key}")
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


def install_fake_boto3(monkeypatch: pytest.MonkeyPatch, objects: dict[tuple[str, str], bytes]) -> None:
    fake = types.ModuleType("boto3")
    fake.client = lambda service: FakeS3Client(objects)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boto3", fake)


def test_s3_uri_reads_parquet_through_mocked_boto3(monkeypatch: pytest.MonkeyPatch, flows: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    flows.to_parquet(buffer, index=False)
    install_fake_boto3(monkeypatch, {("training", "flows/2026-11.parquet"): buffer.getvalue()})
    dataset = load_dataset("s3://training/flows/2026-11.parquet", rows=0, seed=0, drift=0.0)
    assert dataset.source == "s3://training/flows/2026-11.parquet"
    assert len(dataset.frame) == 300


def test_s3_missing_object_is_a_data_error_with_mocked_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_boto3(monkeypatch, {})
    with pytest.raises(DataError, match=r"cannot read s3://training/none.csv"):
        load_uri("s3://training/none.csv")


def test_s3_without_boto3_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(DataError, match=r"modelpilot-training\[s3\]"):
        load_uri("s3://training/flows.csv")
