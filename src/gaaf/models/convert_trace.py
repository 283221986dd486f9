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
import functools
import inspect
import pickle
import textwrap
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from torch import fx, nn
from torch.fx.graph_module import _format_import_block, _forward_from_src
from torch.package import sys_importer

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
    codes: "dict[bool, tuple[str, dict[str, Any]]]" = {}
    for mode, graph in graphs.items():
        _rewrite_graph(graph, modules)
        code = graph.python_code(root_module="self")
        codes[mode] = (code.src, code.globals)
    module.forward = bound_forward(module, GraphForwards(codes))  # an instance attribute: the class is untouched
    train_code, eval_code = codes[True][0], codes[False][0]
    return train_code if train_code == eval_code else f"# training\n{train_code}\n# evaluation\n{eval_code}"


class GraphForwards:
    """torch.fx's generated forward for each training mode, from {mode: (source, its globals)}.

    It pickles as that code, as torch.fx's GraphModule does (the globals as import statements), so a
    converted model pickles whole (``torch.save(model)``) and comes back with its rewritten forward.
    A bound method would not: it pickles as ``getattr(module, "forward")``, which on loading finds
    the class's own forward, and the converted calls would silently run unconverted. Immutable, so
    ``copy.deepcopy`` shares it.
    """

    def __init__(self, codes: "dict[bool, tuple[str, dict[str, Any]]]") -> None:
        self.codes = dict(codes)
        self.fns = {mode: _forward_from_src(src, dict(glb)) for mode, (src, glb) in self.codes.items()}
        if self.codes[True][0] == self.codes[False][0]:
            self.fns[False] = self.fns[True]

    def __deepcopy__(self, memo: "dict[int, Any]") -> "GraphForwards":
        return self

    def __reduce__(self) -> "tuple[Any, ...]":
        sources = {mode: _globals_block(glb) + "\n" + src for mode, (src, glb) in self.codes.items()}
        return (_forwards_from_sources, (sources,))


def _forwards_from_sources(sources: "dict[bool, str]") -> GraphForwards:
    """Pickled :class:`GraphForwards` back: each mode's source carries its imports."""
    return GraphForwards({mode: (src, {}) for mode, src in sources.items()})


def _run_forward(forwards: GraphForwards, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    return forwards.fns[module.training](module, *args, **kwargs)


def bound_forward(module: nn.Module, forwards: GraphForwards) -> "functools.partial[Any]":
    """The module's rewritten forward: the graph of its current training mode, with the module as
    ``self``. A ``functools.partial`` of a module-level function, which pickles and deep-copies
    with the module (and which torch.export and Dynamo take as a forward); its signature is the
    traced forward's without ``self``."""
    forward = functools.partial(_run_forward, forwards, module)
    signature = inspect.signature(forwards.fns[True])
    params = list(signature.parameters.values())[1:]
    forward.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return forward


def _globals_block(glb: "dict[str, Any]") -> str:
    """Source lines that define the generated code's globals: an import for each object (as torch.fx
    pickles a GraphModule), an assignment for a plain constant (fx's annotation strings). An object
    that cannot be imported by name (a local function, a lambda) cannot be pickled: a one-line error."""
    lines = []
    for name, obj in glb.items():
        try:
            lines.append(_format_import_block({name: obj}, sys_importer))
        except Exception as err:  # noqa: BLE001 - torch.package's lookup errors
            if obj is None or type(obj) in (str, int, bool):
                lines.append(f"{name} = {obj!r}")
                continue
            raise pickle.PicklingError(f"gaaf.convert: a rewritten forward uses {name} = {obj!r}, which cannot be "
                                       f"imported by name, so the converted model cannot be pickled ({err})") from None
    return "\n".join(sorted(lines))


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


__all__ = ["CallSite", "GraphForwards", "bound_forward", "Untraceable", "call_sites", "calls_in_source", "rewrite", "trace_forward", "variable_arguments"]
