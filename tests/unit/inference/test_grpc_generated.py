"""The committed gRPC messages and stubs are what hack/generate-grpc makes from the committed .proto today:
an edit of oip.proto without regenerating (or a hand edit of a generated file) fails here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]
SOURCE_ROOT = ROOT / "inference" / "src"
PACKAGE = Path("modelpilot/inference/grpc_gen")
PROTO = PACKAGE / "oip.proto"
GENERATED = ("oip_pb2.py", "oip_pb2.pyi", "oip_pb2_grpc.py")
SCRIPT = ROOT / "hack" / "generate-grpc"
# The protoc call of hack/generate-grpc, which this test repeats into a temporary folder.
PROTOC_FLAGS = ("--python_out", "--pyi_out", "--grpc_python_out")


def _generate(source_root: Path, out: Path) -> dict[str, bytes]:
    """Run grpcio-tools' protoc the way hack/generate-grpc does; the generated files by name."""
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I", str(source_root)]
    command += [f"{flag}={out}" for flag in PROTOC_FLAGS]
    command.append(str(PROTO))
    subprocess.run(command, cwd=source_root, check=True, capture_output=True, timeout=120)
    return {name: (out / PACKAGE / name).read_bytes() for name in GENERATED}


def _stale(generated: dict[str, bytes]) -> list[str]:
    return [name for name in GENERATED if generated[name] != (SOURCE_ROOT / PACKAGE / name).read_bytes()]


def test_the_script_runs_the_protoc_call_this_test_repeats() -> None:
    script = SCRIPT.read_text()
    assert "python -m grpc_tools.protoc -I inference/src" in script
    for flag in PROTOC_FLAGS:
        assert f'{flag}="$out"' in script, flag
    assert str(PROTO) in script


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    stale = _stale(_generate(SOURCE_ROOT, tmp_path))
    assert not stale, f"{', '.join(stale)} differ from what {PROTO} generates: run hack/generate-grpc and commit"


def test_an_edited_proto_is_caught(tmp_path: Path) -> None:
    edited_root = tmp_path / "src"
    (edited_root / PACKAGE).mkdir(parents=True)
    text = (SOURCE_ROOT / PROTO).read_text()
    marker = "message ServerLiveRequest {}"
    if marker not in text:
        pytest.fail(f"{PROTO} no longer declares `{marker}`: pick another message to edit here")
    shutil.copy(SOURCE_ROOT / PROTO, edited_root / PROTO)
    (edited_root / PROTO).write_text(text.replace(marker, "message ServerLiveRequest { string probe = 1; }"))
    out = tmp_path / "out"
    out.mkdir()
    assert "oip_pb2.py" in _stale(_generate(edited_root, out))
