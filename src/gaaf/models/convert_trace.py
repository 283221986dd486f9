"""Functional activation calls in a module's own forward: found with torch.fx, rewritten to submodule calls.

Each module's forward is traced on its own ("shallow"): every submodule it calls stays a call
(a leaf), so only the code of that forward is looked at and rewritten, children keep their own
forward (and their hooks), and a forward that does not trace affects its own calls only. Where a
call such as ``F.gelu(h)`` is converted, the GAAF module is registered on the module (as
``gelu``, the call's node name) and the module's ``forward`` becomes the rewritten graph's code,
bound to the module itself: its class, methods, parameters, buffers, hooks and state_dict keys are
unchanged (the GAAF module has no parameters).

What a trace fixes. A torch.fx trace runs the Python code once: any decision it makes on anything
but tensors is frozen. ``self.training`` is handled: the forward is traced in both modes and the
rewritten forward picks the graph of the module's current mode. A forward with optional or
variable arguments (``mask=None``, ``*args``) is not rewritten: a branch on ``mask is None`` would
be frozen to one side. Other frozen decisions (a global flag, an attribute changed later) are
the caller's to avoid, as with any torch.fx transform.

A forward that does not trace (data-dependent control flow, optional arguments, ...) keeps its
calls; :func:`calls_in_source` lists them from the source so the report can say how many.
"""
from __future__ import annotations

import ast
import contextlib
import inspect
import textwrap
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from torch import fx, nn

from .convert_sites import CALL_NAMES, METHOD_BASES, Source, call_source, function_info


class _ShallowTracer(fx.Tracer):
    """Every submodule call is a leaf: only the traced module's own forward is recorded."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


@dataclass
class CallSite:
    """A functional activation call found in a traced forward (by its node name, in both modes' graphs)."""

    node_name: str
    source: Source
    target: Any  # the function called, or the Tensor method's name (a string)


class Untraceable(Exception):
    """The forward cannot be rewritten; the message says why (one line)."""


@contextlib.contextmanager
def _attributes_as_leaves(module: nn.Module, names: "Sequence[str]") -> Iterator[None]:
    """The function attributes `names` (``self.act = F.gelu``, the attribute pass's sites) as
    placeholder submodules while tracing: the graph calls ``self.act(...)``, which stays right
    whether convert replaces the attribute by a module or keeps the function."""
    saved = {n: module.__dict__.pop(n) for n in names}
    try:
        for n in names:
            module._modules[n] = nn.Identity()
        yield
    finally:
        for n in names:
            del module._modules[n]
        module.__dict__.update(saved)


def trace_forward(module: nn.Module, attributes: "Sequence[str]" = ()) -> "dict[bool, fx.Graph]":
    """{training mode: graph} of `module`'s own forward (submodules and the function `attributes` as
    leaves), traced in both modes. Raises Untraceable with the first line of the tracer's error."""
    was = module.training
    graphs: "dict[bool, fx.Graph]" = {}
    try:
        for mode in (True, False):
            module.training = mode  # the module alone: its children are not run by the trace
            with _attributes_as_leaves(module, attributes):
                graphs[mode] = _ShallowTracer().trace(module)
    except Exception as e:  # TraceError, TypeError, NotImplementedError, ... from running user code on proxies
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise Untraceable(f"{type(e).__name__}: {text}"[:240] if text else type(e).__name__) from None
    finally:
        module.training = was
    return graphs


def call_sites(graphs: "dict[bool, fx.Graph]") -> "list[CallSite]":
    """The functional activation calls of the traced graphs (each node name once)."""
    found: "dict[str, CallSite]" = {}
    for graph in graphs.values():
        for node in graph.nodes:
            info = _node_info(node)
            if info is None or node.name in found:
                continue
            args = node.args[1:]
            kwargs = {k: v for k, v in node.kwargs.items() if k not in ("input", "self")}
            source = call_source(info, args, kwargs, lambda v: isinstance(v, fx.Node))
            found[node.name] = CallSite(node.name, source, node.target)
    return list(found.values())


def _node_info(node: fx.Node) -> Any:
    if node.op == "call_function":
        return function_info(node.target)
    if node.op == "call_method" and isinstance(node.target, str):
        return METHOD_BASES.get(node.target)
    return None


def _input_of(node: fx.Node) -> Any:
    if node.args:
        return node.args[0]
    return node.kwargs.get("input", node.kwargs.get("self"))


def variable_arguments(module: nn.Module) -> "list[str]":
    """The forward's optional and variable arguments (``mask=None``, ``*args``): a trace would freeze
    a branch on them, so a forward that has any is not rewritten."""
    try:
        params = list(inspect.signature(type(module).forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return ["(no signature)"]
    out = []
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        elif p.default is not p.empty:
            out.append(f"{p.name}={p.default!r}")
    return out


def rewrite(module: nn.Module, graphs: "dict[bool, fx.Graph]", modules: "dict[str, tuple[str, nn.Module, bool]]") -> str:
    """Replace the calls named in `modules` (node name → (attribute, new module, in place)) by calls of
    new submodules registered on `module`, and bind the rewritten forward to `module`. Returns the
    generated code (the training mode's, then the evaluation mode's where it differs)."""
    for attr, new, _ in modules.values():
        module.add_module(attr, new)
    codes: "dict[bool, tuple[str, Callable[..., Any]]]" = {}
    for mode, graph in graphs.items():
        _rewrite_graph(graph, modules)
        gm = fx.GraphModule(module, graph, class_name=type(module).__name__)
        codes[mode] = (gm.code, type(gm).forward)
    (train_code, train_fn), (eval_code, eval_fn) = codes[True], codes[False]
    fn = train_fn if train_code == eval_code else _by_mode(train_fn, eval_fn)
    module.forward = types.MethodType(fn, module)  # an instance attribute: the class is untouched
    return train_code if train_code == eval_code else f"# training\n{train_code}\n# evaluation\n{eval_code}"


def _rewrite_graph(graph: fx.Graph, modules: "dict[str, tuple[str, nn.Module, bool]]") -> None:
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if node.name not in modules or _node_info(node) is None:
            continue
        attr, _, inplace = modules[node.name]
        x = _input_of(node)
        with graph.inserting_before(node):
            new = graph.call_module(attr, (x,))
        node.replace_all_uses_with(new)
        if inplace and isinstance(x, fx.Node):
            # x.relu_() changed x itself: later readers of x read the activation's output
            for user in list(x.users):
                if user is not new and order.get(user, -1) > order[node]:
                    user.replace_input_with(x, new)
        graph.erase_node(node)
    graph.lint()


def _by_mode(train_fn: Callable[..., Any], eval_fn: Callable[..., Any]) -> Callable[..., Any]:
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return (train_fn if self.training else eval_fn)(self, *args, **kwargs)

    return forward


def calls_in_source(cls: type) -> "list[str]":
    """Functional activation calls written in ``cls.forward``'s source, as 'file.py:LINE F.relu'
    (a best effort for forwards that do not trace: calls on ``self.`` are module calls and skipped)."""
    fn = getattr(cls, "forward", None)
    try:
        lines, start = inspect.getsourcelines(fn)  # type: ignore[arg-type]
        path = inspect.getsourcefile(fn) or "?"  # type: ignore[arg-type]
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        named = (isinstance(f, ast.Attribute) and f.attr in CALL_NAMES and not _on_self(f.value)) or (
            isinstance(f, ast.Name) and f.id in CALL_NAMES)
        if named:
            found.append((start + node.lineno - 1, _call_text(f)))
    short = path.rsplit("/", 1)[-1]
    return [f"{short}:{line} {text}" if i == 0 else f":{line} {text}" for i, (line, text) in enumerate(sorted(found))]


def _call_text(f: ast.expr) -> str:
    """'F.relu', 'torch.tanh', 'relu' for a dotted name; '.relu_' for a method of an expression."""
    dotted = f
    while isinstance(dotted, ast.Attribute):
        dotted = dotted.value
    if isinstance(dotted, ast.Name):
        return ast.unparse(f)
    return f".{f.attr}" if isinstance(f, ast.Attribute) else ast.unparse(f)


def _on_self(value: ast.expr) -> bool:
    return isinstance(value, ast.Name) and value.id == "self"


__all__ = ["CallSite", "Untraceable", "call_sites", "calls_in_source", "rewrite", "trace_forward", "variable_arguments"]
