"""A `FlatPlan` as files, written where the exported program was deserialised and compiled where it is served.

`plan.json` holds the function's source and a description of each constant; `tensors.pt` the tensors, read back
with torch's `weights_only` loader. Operators and torch bindings are named by their dotted path from `torch`
(checked when written to name the very object), dtypes and devices by name, output tree specs in pytree's JSON,
and the graph's guard function by its code object (marshal: the server runs the interpreter the child ran),
whose globals may only be `torch`, `math`, `inf` and builtins. Reading needs torch alone: no torch.export
deserialiser, sympy or torch._dynamo. A constant of any other kind makes the plan unwritable (`UnsupportedPlanError`).
"""

from __future__ import annotations

import base64
import builtins
import dis
import importlib
import json
import marshal
import math
import types
from pathlib import Path
from typing import Any

from modelpilot.inference.flatgraph import FlatPlan

PLAN_FILE = "plan.json"
TENSORS_FILE = "tensors.pt"
_ROOTS = frozenset({"torch", "operator", "math"})
_BINDING_HOMES = ("torch._C._VariableFunctions", "torch._C._nn")
_GUARD_GLOBALS = frozenset({"torch", "math", "inf"})


class UnsupportedPlanError(ValueError):
    """A constant of the plan that cannot be written so that torch alone reads it back."""


def write_plan(plan: FlatPlan, directory: Path, stem: str) -> None:
    """`<stem>.plan.json` and `<stem>.tensors.pt` in `directory`; raises UnsupportedPlanError."""
    import torch

    tensors: dict[str, Any] = {}
    described = {name: _describe(name, value, tensors, torch) for name, value in plan.constants.items()}
    torch.save(tensors, directory / f"{stem}.{TENSORS_FILE}")
    document = {"source": plan.source, "constants": described}
    (directory / f"{stem}.{PLAN_FILE}").write_text(json.dumps(document), encoding="utf-8")


def read_plan(directory: Path, stem: str) -> FlatPlan:
    """The plan `write_plan` wrote."""
    import torch

    document = json.loads((directory / f"{stem}.{PLAN_FILE}").read_text(encoding="utf-8"))
    tensors = torch.load(directory / f"{stem}.{TENSORS_FILE}", map_location="cpu", weights_only=True)
    constants = {name: _revive(entry, tensors, torch) for name, entry in document["constants"].items()}
    return FlatPlan(source=str(document["source"]), constants=constants)


def _describe(name: str, value: Any, tensors: dict[str, Any], torch: Any) -> dict[str, Any]:
    if isinstance(value, torch.Tensor):
        tensors[name] = value.detach()
        return {"tensor": name}
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, torch.dtype | torch.layout | torch.memory_format):
        return {"ref": _checked_path(str(value), value, name)}
    if isinstance(value, torch.utils._pytree.TreeSpec):
        return {"treespec": torch.utils._pytree.treespec_dumps(value)}
    if isinstance(value, torch._ops.OpOverload):
        operator = value._schema.name.split("::", 1)[1]
        return {"ref": _checked_path(f"torch.ops.{value.namespace}.{operator}.{value._overloadname}", value, name)}
    module = str(getattr(value, "__module__", None) or "")
    candidates = [f"{home}.{getattr(value, '__name__', '')}" for home in _BINDING_HOMES]
    candidates.append(f"{'operator' if module == '_operator' else module}.{getattr(value, '__qualname__', '')}")
    for path in candidates:
        if _resolves_to(path, value):
            return {"ref": path}
    if isinstance(value, types.FunctionType):  # the graph's guard function, made at load time
        return {"function": _guard_code(name, value)}
    raise UnsupportedPlanError(f"constant {name}: {type(value).__name__} {value!r} is not found under its name")


def _revive(entry: dict[str, Any], tensors: dict[str, Any], torch: Any) -> Any:
    if "tensor" in entry:
        return tensors[entry["tensor"]]
    if "value" in entry:
        return entry["value"]
    if "device" in entry:
        return torch.device(entry["device"])
    if "ref" in entry:
        return _resolve(entry["ref"])
    if "treespec" in entry:
        return torch.utils._pytree.treespec_loads(entry["treespec"])
    if "function" in entry:
        code = marshal.loads(base64.b64decode(entry["function"]))
        namespace = {"torch": torch, "math": math, "inf": math.inf, "__builtins__": builtins}
        return types.FunctionType(code, namespace)
    raise ValueError(f"unknown constant {entry!r} in a flat plan")


def _guard_code(name: str, function: types.FunctionType) -> str:
    """The guard function's code, if it needs nothing but its arguments, `torch`, `math`, `inf` and builtins."""
    code = function.__code__
    if function.__closure__ or function.__defaults__ or function.__kwdefaults__:
        raise UnsupportedPlanError(f"constant {name}: function {code.co_name} has a closure or defaults")
    if any(isinstance(const, types.CodeType) for const in code.co_consts):
        raise UnsupportedPlanError(f"constant {name}: function {code.co_name} defines functions of its own")
    names = {str(i.argval) for i in dis.get_instructions(code) if i.opname in {"LOAD_GLOBAL", "LOAD_NAME"}}
    unknown = sorted(n for n in names - _GUARD_GLOBALS if not hasattr(builtins, n))
    if unknown:
        raise UnsupportedPlanError(f"constant {name}: function {code.co_name} uses {', '.join(unknown)}")
    return base64.b64encode(marshal.dumps(code)).decode("ascii")


def _checked_path(path: str, value: Any, name: str) -> str:
    if not _resolves_to(path, value):
        raise UnsupportedPlanError(f"constant {name}: {type(value).__name__} {value!r} is not found under its name")
    return path


def _resolves_to(path: str, value: Any) -> bool:
    try:
        return _resolve(path) is value
    except (AttributeError, ImportError, ValueError):
        return False


def _resolve(path: str) -> Any:
    root, _, rest = path.partition(".")
    if root not in _ROOTS or not rest:
        raise ValueError(f"{path!r} is not under {sorted(_ROOTS)}")
    value = importlib.import_module(root)
    for part in rest.split("."):
        value = getattr(value, part)
    return value
