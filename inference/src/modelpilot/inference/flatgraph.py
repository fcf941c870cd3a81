"""A torch.export graph as one flat Python function: what the eager module costs, or less.

A module unlifted from an exported program runs its graph as generated code that, per call, flattens
its input with pytree, fetches every weight through a chain of `nn.Module.__getattr__` calls (three per
expert weight), calls every operator through its `OpOverload` (a Python frame and the boxed, schema-driven
argument conversion), and unflattens its output. The eager module it was exported from calls the same
kernels through torch's fast bindings (`torch.sign`, `torch._C._nn.linear`). For a small model serving
one row the wrappers cost more than the kernels.

`flat_forward` compiles the graph once into a function over one tensor in which weights are constants,
each aten operator is called through the public torch binding of the same name (the same kernel; the
binding picks the overload from the arguments as the graph's overload was picked), `dropout` with
`train=False` is the identity it is, and the graph's own shape guards (`_guards_fn`) still run. It is
used only when, on sample inputs, it returns exactly what the module returns; otherwise the server keeps
the module's `forward`. Measured on the benchmark's MoE, one row: the exported graph's forward about 3x,
the eager module about 2x the flat function's time.

The function is described by a `FlatPlan` (its source and the constants it names), which `flatplan_files`
writes and reads, so that a plan made where the exported program was deserialised is compiled in a process
that never imports torch.export's deserialiser (`pt2_child`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("modelpilot.inference")

_CALLS = ("placeholder", "get_attr", "call_function", "call_module", "output")


@dataclass(frozen=True)
class FlatPlan:
    """A flat function's source (`def flat_forward(x): ...`) and the constants it names (`_c0`, `_c1`, ...)."""

    source: str
    constants: dict[str, Any]


class FlatProgram:
    """An exported program's forward as a flat function compiled from its plan, with no graph module behind it."""

    def __init__(self, forward: Callable[[Any], Any]) -> None:
        self.forward = forward

    def __call__(self, x: Any) -> Any:
        return self.forward(x)


def flat_forward(module: Any) -> Callable[[Any], Any] | None:
    """A flat function computing `module.forward(x)` for one tensor `x`, or None for a graph it cannot flatten."""
    plan = flat_plan(module)
    return None if plan is None else compile_plan(plan)


def compile_plan(plan: FlatPlan) -> Callable[[Any], Any]:
    """The function a plan describes."""
    namespace = dict(plan.constants)
    exec(compile(plan.source, "<flat_forward>", "exec"), namespace)
    function: Callable[[Any], Any] = namespace["flat_forward"]
    return function


def flat_plan(module: Any) -> FlatPlan | None:
    """The plan of `flat_forward(module)`, or None for a graph it cannot flatten."""
    import torch

    graph = getattr(module, "graph", None)
    if graph is None or not hasattr(module, "_in_spec") or not hasattr(module, "_out_spec"):
        return None
    nodes = list(graph.nodes)
    if any(node.op not in _CALLS for node in nodes) or sum(node.op == "placeholder" for node in nodes) != 1:
        return None
    namespace: dict[str, Any] = {}
    names: dict[Any, str] = {}
    lines = ["def flat_forward(x):"]

    def constant(value: Any) -> str:
        key = f"_c{len(namespace)}"
        namespace[key] = value
        return key

    def render(value: Any) -> str:
        if isinstance(value, torch.fx.Node):
            return names[value]
        if isinstance(value, (list, tuple)):
            inner = ", ".join(render(item) for item in value)
            return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
        if value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < 2**62):
            return repr(value)
        return constant(value)

    def call(function: str, node: Any) -> str:
        arguments = [render(arg) for arg in node.args]
        arguments += [f"{key}={render(value)}" for key, value in node.kwargs.items()]
        return f"{function}({', '.join(arguments)})"

    for index, node in enumerate(nodes):
        name = f"_v{index}"
        if node.op == "placeholder":
            names[node] = "x"
            continue
        if node.op == "get_attr":
            names[node] = constant(_attribute(module, node.target))
            continue
        if node.op == "output":
            flat = node.args[0]
            result = render(flat)
            if module._out_spec.is_leaf() and isinstance(flat, (list, tuple)) and len(flat) == 1:
                result = render(flat[0])
            elif not module._out_spec.is_leaf():
                result = f"{constant(torch.utils._pytree.tree_unflatten)}({result}, {constant(module._out_spec)})"
            lines.append(f"    return {result}")
            break
        if node.op == "call_module":
            if node.target != "_guards_fn":
                return None
            lines.append(f"    {call(constant(_guards(module.get_submodule(node.target))), node)}")
            continue
        target = node.target
        if _is_inference_dropout(target, node):
            names[node] = render(node.args[0])
            continue
        names[node] = name
        lines.append(f"    {name} = {call(constant(_binding(target)), node)}")
    return FlatPlan(source="\n".join(lines), constants=namespace)


def same_results(forward: Callable[[Any], Any], reference: Callable[[Any], Any], samples: list[Any]) -> bool:
    """True when `forward` returns exactly what `reference` returns (values, dtypes, shapes) on every sample."""
    import torch

    try:
        with torch.inference_mode():
            for sample in samples:
                got, expected = forward(sample), reference(sample)
                if not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor):
                    return False
                if got.dtype != expected.dtype or not torch.equal(got, expected):
                    return False
    except Exception as error:  # a binding that does not take the graph's arguments: keep the graph
        log.info("flat forward not used: %s: %s", type(error).__name__, error)
        return False
    return True


def _guards(guards_module: Any) -> Any:
    """The function that checks the graph's input guards, without the module call around it.

    torch.export sets it as the module's `forward`, wrapped in a dynamo config patch that matters only while
    dynamo traces; run eagerly the check is the same without it.
    """
    forward = guards_module.__dict__.get("forward")
    if forward is None:
        return guards_module
    cells = dict(zip(forward.__code__.co_freevars, (c.cell_contents for c in forward.__closure__ or ()), strict=True))
    inner, patch = cells.get("func"), cells.get("self")
    if callable(inner) and type(patch).__name__ == "DynamoConfigPatchProxy":
        return inner
    return forward


def _attribute(module: Any, target: str) -> Any:
    value = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _is_inference_dropout(target: Any, node: Any) -> bool:
    import torch

    return bool(
        target is torch.ops.aten.dropout.default and len(node.args) == 3 and node.args[2] is False and not node.kwargs
    )


def _binding(target: Any) -> Any:
    """The public torch binding of an aten operator (`torch.X`, `torch._C._nn.X`), else the operator itself."""
    import torch

    if not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten":
        return target
    name = target._schema.name.split("::", 1)[1]
    for home in (torch._C._VariableFunctions, torch._C._nn):
        binding = getattr(home, name, None)
        if binding is not None and type(binding).__name__ == "builtin_function_or_method":
            return binding
    return target
