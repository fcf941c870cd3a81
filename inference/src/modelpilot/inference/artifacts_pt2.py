"""A `pytorch`-flavor model saved as pt2 (torch.export), loaded the way `mlflow.pytorch.load_model` does.

For pt2, `mlflow.pytorch.load_model` is `torch.export.load(<model_data>/model.pt2).module()`, preceded,
when `MLFLOW_ALLOW_PICKLE_DESERIALIZATION` is false (it defaults to true), by a check that the archive holds
nothing that `torch.export.load` would unpickle unsafely (it unpickles with `weights_only=False`). This module vouches
for archives with its own, at least as strict, check; when it cannot vouch for one it says so and the
caller hands the model to mlflow, which accepts or refuses it with its own reason.

Records of the archive are accepted when they are
- raw tensor bytes: named by a weights/constants payload config with `use_pickle: false` and a
  `weight_`/`tensor_` file prefix (torch reads those without unpickling), and by no pickled entry;
- short text metadata (`version`, `archive_format`, `archive_version`, `byteorder`, `serialization_id`);
- `.json` documents (the exported program, the payload configs);
- anything else only if it is a `torch.save` zip whose pickles reference none of the globals registered with
  `torch.serialization.add_safe_globals` (they widen what the restricted unpickler admits, and their
  reducers would run during this very check), and torch's restricted `weights_only` unpickler loads it
  (tensors and plain containers).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickletools
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("modelpilot.inference")

PT2_FILE = "model.pt2"
PICKLE_FILE = "model.pth"
_TEXT_RECORDS = frozenset({"version", "archive_format", "archive_version", "byteorder", "serialization_id"})
_TEXT_CONTENT = re.compile(rb"[A-Za-z0-9._-]{1,64}\n?")
_PAYLOAD_CONFIG = re.compile(r"(?:^|/)data/(?:weights|constants)/[^/]+_config\.json$")
_RAW_TENSOR_PREFIXES = ("weight_", "tensor_")
_MIN_TORCH = (2, 10)  # below it torch's weights_only unpickler has known bypasses
_PICKLE_STRING_OPCODES = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
)
_PICKLE_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})


def load_exported_module(archive: Path) -> Any:
    """`torch.export.load(archive).module()`, without importing triton (see `_without_triton`)."""
    import torch

    with _without_triton():
        return torch.export.load(str(archive)).module()


@contextlib.contextmanager
def _without_triton() -> Iterator[None]:
    """`import triton` fails while the exported program loads (unless triton is imported already).

    Deserialising an exported program imports torch._dynamo, whose utilities import triton when it is
    installed (it is, beside PyPI's CUDA build of torch): about 70 MiB resident that serving the program never
    uses, as the unlifted module runs aten operators eagerly and this server compiles nothing. torch then
    remembers that triton is missing (`has_triton_package` is cached), and says so once in a warning of
    torch.utils.flop_counter, silenced here. After the load `import triton` works again for whoever needs it.
    """
    if "triton" in sys.modules:
        yield
        return
    flop_counter = logging.getLogger("torch.utils.flop_counter")
    level = flop_counter.level
    flop_counter.setLevel(logging.ERROR)
    sys.modules["triton"] = None  # type: ignore[assignment]  # a None entry makes the import raise ImportError
    try:
        yield
    finally:
        if "triton" in sys.modules and sys.modules["triton"] is None:
            del sys.modules["triton"]
        flop_counter.setLevel(level)


def load_pt2_module(data_dir: Path, config: dict[str, Any]) -> Any | None:
    """`torch.export.load(model.pt2).module()`, which is what `mlflow.pytorch.load_model` returns for pt2;
    None when mlflow has to do it (see `vouched_pt2_archive`)."""
    archive = vouched_pt2_archive(data_dir, config)
    return None if archive is None else load_exported_module(archive)


def vouched_pt2_archive(data_dir: Path, config: dict[str, Any]) -> Path | None:
    """The model's pt2 archive, to load without mlflow; None when mlflow has to do it: code paths to put on
    sys.path, or an archive this module cannot vouch for while pickle deserialization is not allowed (mlflow
    then loads or refuses it with its own reason)."""
    archive = data_dir / PT2_FILE
    if config.get("code") or (data_dir / PICKLE_FILE).exists() or not archive.is_file():
        return None
    import torch

    if not pickle_deserialization_allowed():
        record = unvouched_record(archive, torch)
        if record is not None:
            log.info("pt2 archive left to mlflow's check", extra={"fields": {"record": record}})
            return None
    stored = config.get("pytorch_version")
    if stored and str(stored) != torch.__version__:
        log.warning(
            "the model was saved with another torch version",
            extra={"fields": {"saved_with": str(stored), "installed": torch.__version__}},
        )
    return archive


def pickle_deserialization_allowed() -> bool:
    """`MLFLOW_ALLOW_PICKLE_DESERIALIZATION` as mlflow 3.17 reads it: true unless set to false/0.

    When it is true, `mlflow.pytorch.load_model` loads pt2 archives without checking them, and so does this
    server. An unreadable value counts as false here (mlflow raises on it).
    """
    value = os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    return value is None or value.lower() in {"true", "1"}


def unvouched_record(archive_path: Path, torch: Any) -> str | None:
    """None when every record of the pt2 archive is safe to load; else the first one this check cannot vouch for."""
    version = tuple(int(part) for part in re.findall(r"\d+", str(torch.__version__))[:2])
    if version < _MIN_TORCH:
        return f"(torch {torch.__version__} is older than 2.10)"
    registered = _registered_safe_globals(torch)
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError):
        return archive_path.name
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        raw = _raw_tensor_records(archive, infos)
        for info in infos:
            if info.filename in raw:
                continue
            # One record in memory at a time, as the archive may be large.
            if not _safe_record(info.filename, archive.read(info), torch, registered):
                return info.filename
    return None


def _raw_tensor_records(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> set[str]:
    raw: set[str] = set()
    pickled: set[str] = set()
    for info in infos:
        if not _PAYLOAD_CONFIG.search(info.filename):
            continue
        try:
            config = json.loads(archive.read(info)).get("config")
        except (ValueError, AttributeError):
            continue
        if not isinstance(config, dict):
            continue
        directory = info.filename.rsplit("/", 1)[0]
        for entry in config.values():
            path_name = entry.get("path_name") if isinstance(entry, dict) else None
            if not isinstance(path_name, str) or "/" in path_name:
                continue
            record = f"{directory}/{path_name}"
            if entry.get("use_pickle") is False and path_name.startswith(_RAW_TENSOR_PREFIXES):
                raw.add(record)
            else:
                pickled.add(record)
    return raw - pickled


def _safe_record(name: str, content: bytes, torch: Any, registered: set[str]) -> bool:
    basename = name.rsplit("/", 1)[-1]
    if basename in _TEXT_RECORDS and _TEXT_CONTENT.fullmatch(content):
        return True
    if basename.endswith(".json"):
        try:
            json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return False
        return True
    if _references_registered_globals(content, registered):
        return False
    try:
        torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


def _registered_safe_globals(torch: Any) -> set[str]:
    """Names of the globals added to torch's weights_only allowlist, as the unpickler keys them."""
    names: set[str] = set()
    for entry in torch.serialization.get_safe_globals():
        if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], str):
            names.add(entry[1])
        else:
            names.add(f"{entry.__module__}.{entry.__qualname__}")
    return names


def _references_registered_globals(content: bytes, registered: set[str]) -> bool:
    """True unless `content` is a torch.save zip whose pickles provably name none of `registered`."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as checkpoint:
            pickles = [n for n in checkpoint.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"]
            if not pickles:
                return True
            for member in pickles:
                referenced = _pickle_globals(checkpoint.read(member))
                if referenced is None or referenced & registered:
                    return True
    except (zipfile.BadZipFile, OSError, ValueError):
        return True
    return False


def _pickle_globals(stream: bytes) -> set[str] | None:
    """`module.name` of every global a pickle names, read without unpickling; None when not statically known."""
    found: set[str] = set()
    strings: list[str] = []
    try:
        for opcode, argument, _ in pickletools.genops(stream):
            if opcode.name in {"GLOBAL", "INST"}:
                module, _, attribute = str(argument).partition(" ")
                found.add(f"{module}.{attribute}")
                strings = []
            elif opcode.name == "STACK_GLOBAL":
                if len(strings) < 2:
                    return None
                found.add(f"{strings[-2]}.{strings[-1]}")
                strings = []
            elif opcode.name in _PICKLE_STRING_OPCODES:
                strings.append(str(argument))
            elif opcode.name not in _PICKLE_MEMO_OPCODES:
                strings = []
    except Exception:
        return None
    return found
