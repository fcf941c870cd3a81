"""Training data from a URI (local path, file://, s3://; CSV or Parquet) or from the seeded generator.

Every table is checked against the schema the model expects before training starts, so a wrong file
fails in seconds with a message that names what is wrong.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from modelpilot.training.data import FEATURES, LABEL, generate_flows

MIN_ROWS_PER_CLASS = 20


class DataError(Exception):
    """The training data cannot be used; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """A validated table with where it came from and a digest of its content (the data version)."""

    frame: pd.DataFrame
    source: str
    digest: str
    name: str


def table_digest(frame: pd.DataFrame) -> str:
    """A short content hash of the columns the model uses: equal data, equal digest, whatever the file format."""
    hashed = pd.util.hash_pandas_object(frame[[*FEATURES, LABEL]], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def format_of(path: str) -> str:
    """ "csv" or "parquet" from the file name, compressed CSV included."""
    name = path.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
        return "csv"
    raise DataError(f"unsupported data format for {path!r}: expected a .csv or .parquet file")


def read_table(raw: bytes | Path, data_format: str, where: str) -> pd.DataFrame:
    """Parse CSV or Parquet content; a parser error becomes a DataError naming the source."""
    source: Any = io.BytesIO(raw) if isinstance(raw, bytes) else raw
    try:
        if data_format == "parquet":
            return pd.read_parquet(source)
        compression = "infer" if isinstance(raw, Path) else None
        return pd.read_csv(source, compression=compression)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise DataError(f"cannot read {where} as {data_format}: {error}") from error


def read_s3(uri: str) -> bytes:
    """The object behind an s3://bucket/key URI, with boto3's usual credential chain (IRSA in the cluster)."""
    try:
        import boto3
    except ImportError as error:
        raise DataError(f"{uri} needs boto3: install modelpilot-training[s3]") from error
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise DataError(f"malformed S3 URI {uri!r}: expected s3://bucket/key")
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        return bytes(body.read())
    except Exception as error:  # botocore raises many unrelated types; each means the object cannot be read
        raise DataError(f"cannot read {uri}: {error}") from error


def load_uri(uri: str) -> pd.DataFrame:
    """The raw table behind a local path, file:// or s3:// URI."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return read_table(read_s3(uri), format_of(parsed.path), uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
        return read_table(path, format_of(path.name), str(path))
    raise DataError(f"unsupported data URI scheme {parsed.scheme!r} in {uri!r}: use a path, file:// or s3://")


def validate_schema(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The FEATURES and LABEL columns as float32/int64, or a DataError that names every problem found."""
    missing = [name for name in [*FEATURES, LABEL] if name not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:8])) + (", ..." if len(frame.columns) > 8 else "")
        raise DataError(
            f"schema mismatch in {where}: missing column(s) {', '.join(missing)} "
            f"(found {found or 'no columns'}); see modelpilot.training.data.FEATURES"
        )
    problems = []
    non_numeric = [name for name in FEATURES if not pd.api.types.is_numeric_dtype(frame[name])]
    if non_numeric:
        problems.append(f"non-numeric feature column(s) {', '.join(non_numeric)}")
    else:
        values = frame[FEATURES].to_numpy(dtype=np.float64)
        not_finite = [name for name, bad in zip(FEATURES, ~np.isfinite(values).all(axis=0), strict=True) if bad]
        if not_finite:
            problems.append(f"missing or infinite values in {', '.join(not_finite)}")
    labels = frame[LABEL]
    if labels.isna().any() or not set(labels.unique()) <= {0, 1}:
        label_values = ", ".join(sorted(map(str, labels.dropna().unique()))[:5])
        problems.append(f"{LABEL} must be 0 (benign) or 1 (attack), found {label_values}")
    elif min((labels == 0).sum(), (labels == 1).sum()) < MIN_ROWS_PER_CLASS:
        problems.append(f"each class needs at least {MIN_ROWS_PER_CLASS} rows, found {labels.value_counts().to_dict()}")
    if problems:
        raise DataError(f"schema mismatch in {where}: {'; '.join(problems)}")
    table = frame[FEATURES].astype(np.float32)
    table[LABEL] = labels.astype(np.int64)
    return table


def load_dataset(uri: str, rows: int, seed: int, drift: float) -> Dataset:
    """The validated training table: from `uri`, or, when it is empty, `rows` generated flows."""
    if uri:
        frame = validate_schema(load_uri(uri), uri)
        name = Path(urlparse(uri).path).name or uri
        source = uri
    else:
        frame = validate_schema(generate_flows(rows, seed=seed, drift=drift), "the generated data")
        name = "generated-flows"
        source = f"modelpilot.training.data.generate_flows(n_rows={rows}, seed={seed}, drift={drift})"
    return Dataset(frame=frame, source=source, digest=table_digest(frame), name=name)
