"""`gaaf.convert(model, mapping=None, **params)`: GAAF in place of the activations of any nn.Module.

    model, report = gaaf.convert(model)                       # each base -> its gaaf_<base> preset
    model, report = gaaf.convert(model, shift=-1.0)           # ... with the presets' shift set to -1
    model, report = gaaf.convert(model, "gaaf_relu")          # every activation -> gaaf_relu
    model, report = gaaf.convert(model, {nn.GELU: "gaaf_gelu", "head.*": None, F.relu: my_factory})
    print(report)                                             # what was converted, what was not and why

Sites (:mod:`.convert_sites`): activation module instances, function attributes (``self.act =
F.gelu``) and functional calls in forwards that trace with torch.fx (:mod:`.convert_trace`).

`mapping`:

* None: each base goes to its ``gaaf_<base>`` preset (:data:`gaaf.activations.presets.GAAF_PRESETS`);
* a registry name or a factory (class or callable returning an nn.Module): every site goes to it;
* a dict: keys are module classes (their instances), functions (``F.gelu``, ``torch.relu``,
  ``torch.Tensor.relu``: their calls and attributes) or site names with ``fnmatch`` wildcards
  (``"layer1.*"``, ``"blocks.0.mlp.gelu"``: the report's names); values are registry names,
  factories or None (leave the site as it is). The first matching key wins (names first, then
  classes and functions); sites no key matches take the default (the base's preset).

`params` (shape, shift, slope, center, width, frequency, variant, ...) go to every target built from
a registry name other than a plain base (``"relu"`` takes none) and to every factory; a preset that
does not take one (shift on gaaf_tanh, whose shape is gaussian) raises ValueError naming the site.

Parameters GAAF's bases do not have (LeakyReLU(0.2), ELU(alpha=2), GELU(approximate='tanh'),
Softplus(beta=2)): by default such a site is not converted (GAAF on that base would compute a
different φ) and the report says why; mapped explicitly (by class, function or name) it is, with a
note that the parameter was not carried over. Activations gaaf has no base for (ReLU6, Hardswish,
Mish, ...) likewise convert only when mapped.

Shared instances stay shared: one module registered under several names (or called twice, as
torchvision's ``BasicBlock.relu``) is replaced by one new module under all of them, so the model
keeps its structure; GAAF has no parameters, so sharing changes nothing numerically. In-place
activations (``nn.ReLU(inplace=True)``, ``F.relu_``, ``x.relu_()``) become out-of-place GAAF; in a
traced forward later readers of the input are pointed at the output, which is what the in-place op
did. The model is changed in place and returned (the root itself is replaced when it is an
activation). Converted sites compute φ(x) + g(x)·s(x): each output moves by at most 0.5·max s/K.
"""
from __future__ import annotations

import fnmatch
import functools
from typing import Any, Callable, Mapping, Union

import torch
from torch import nn

from ..activations import GAAF, get_activation
from ..activations.catalog import BASES
from ..activations.registry import PLAIN_ACTIVATIONS
from .convert_report import ATTRIBUTE, CALL, MODULE, UNTRACED, ConversionReport, Site
from .convert_sites import BASE_PARAM_DEFAULTS, Source, attribute_source, module_source
from .convert_trace import Untraceable, call_sites, calls_in_source, rewrite, trace_forward, variable_arguments

Target = Union[str, Callable[..., nn.Module], None]
MappingArg = Union[None, str, Callable[..., nn.Module], Mapping[Any, Target]]

_DEFAULT = object()  # no mapping key matched: the base's preset


class _Mapper:
    """Finds a site's target and builds its module; remembers which mapping keys were used."""

    def __init__(self, mapping: MappingArg, params: Mapping[str, Any]) -> None:
        self.params = dict(params)
        self.single: Any = _DEFAULT
        self.table: "dict[Any, Target]" = {}
        if isinstance(mapping, Mapping):
            self.table = dict(mapping)
        elif mapping is not None:
            if not (isinstance(mapping, str) or callable(mapping)):
                raise ValueError(f"mapping must be None, a registry name, a factory or a dict, got {mapping!r}")
            self.single = mapping
        self.used: "set[int]" = set()

    def lookup(self, name: str, obj: Any) -> Any:
        """The target for the site `name` (an instance, a function or a method name), or _DEFAULT."""
        if self.single is not _DEFAULT:
            return self.single
        keys = list(self.table)
        for i, key in enumerate(keys):
            if isinstance(key, str) and (key == name or fnmatch.fnmatchcase(name, key)):
                self.used.add(i)
                return self.table[key]
        for i, key in enumerate(keys):
            if isinstance(key, str):
                continue
            if (isinstance(key, type) and isinstance(obj, key)) or key is obj or (
                    isinstance(obj, str) and key is getattr(torch.Tensor, obj, None)):
                self.used.add(i)
                return self.table[key]
        return _DEFAULT

    def build(self, target: Any, base: "str | None", where: str) -> nn.Module:
        name = f"gaaf_{base}" if target is _DEFAULT else target
        plain = isinstance(name, str) and name.strip().lower() in PLAIN_ACTIVATIONS
        try:
            return get_activation(name, **({} if plain else self.params))
        except (ValueError, TypeError) as e:
            raise ValueError(f"cannot build {name!r} for {where or 'the model'}: {e}") from None

    def unused_keys(self) -> "list[str]":
        return [_key_text(k) for i, k in enumerate(self.table) if i not in self.used]


def _key_text(key: Any) -> str:
    return repr(key) if isinstance(key, str) else getattr(key, "__qualname__", None) or repr(key)


def _target_text(module: nn.Module) -> str:
    if isinstance(module, GAAF):
        return f"GAAF({module.spec.describe()})"
    return f"{type(module).__name__}({module.extra_repr()})"


def _base_of_target(module: nn.Module) -> "str | None":
    if isinstance(module, GAAF):
        return module.spec.base
    found = module_source(module)
    return found.base if found is not None else None


def _decide(mapper: _Mapper, name: str, obj: Any, source: Source) -> "tuple[nn.Module | None, str, str]":
    """(new module or None, target text, note) for one site; None: not converted (note says why) or
    kept by the mapping (target text 'kept')."""
    target = mapper.lookup(name, obj)
    if target is None:
        return None, "kept", ""
    explicit = target is not _DEFAULT
    if source.base is None and not explicit:
        return None, "", f"gaaf has no such base (its bases: {', '.join(BASES)}); map it explicitly to convert it"
    if source.unknown and not explicit:
        return None, "", f"{', '.join(source.unknown)} only known at run time; map it explicitly to convert it"
    if source.differs and not explicit:
        ours = {k: BASE_PARAM_DEFAULTS[source.base][k] for k in source.differs}  # type: ignore[index]
        return None, "", (f"{_kv(source.differs)} cannot be carried over (GAAF's {source.base} has {_kv(ours)}); "
                          "map it explicitly to convert anyway")
    new = mapper.build(target, source.base, name)
    note = ""
    if source.differs and _base_of_target(new) == source.base:
        note = f"{_kv(source.differs)} not carried over"
    return new, _target_text(new), note


def _kv(d: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in d.items())


# ---------------------------------------------------------------------- the three passes
# Each pass plans: it decides every site and builds the new modules (where a bad mapping or parameter
# raises), and appends what to change to `actions`; convert applies them all at the end, so a call that
# raises leaves the model as it was.
Actions = "list[Callable[[], Any]]"


def _convert_modules(model: nn.Module, mapper: _Mapper, report: ConversionReport, actions: Actions) -> "nn.Module | None":
    """Module instances: every registration (parent, attribute) of each one; one new module per
    instance (shared stays shared). Returns the replacement of the root itself, if it is one."""
    places: "dict[int, list[tuple[nn.Module | None, str, str]]]" = {}
    instances: "dict[int, nn.Module]" = {id(model): model}
    places[id(model)] = [(None, "", "")]
    for pname, parent in model.named_modules(remove_duplicate=False):
        for attr, child in parent._modules.items():
            if child is not None:
                qual = f"{pname}.{attr}" if pname else attr
                places.setdefault(id(child), []).append((parent, attr, qual))
                instances[id(child)] = child
    new_root = None
    for key, module in instances.items():
        if isinstance(module, GAAF):
            report.already_gaaf.append(places[key][0][2])
            continue
        source = module_source(module)
        if source is None:
            continue
        names = sorted({q for _, _, q in places[key]})
        new, target, note = _decide(mapper, names[0], module, source)
        site = Site(names[0], MODULE, source.text, target if new is not None else None, note, tuple(names[1:]))
        if new is None:
            (report.kept if target == "kept" else report.unconverted).append(site)
            continue
        report.converted.append(site)
        for parent, attr, _ in places[key]:
            if parent is None:
                new_root = new
            else:
                actions.append(functools.partial(_replace, parent, attr, new))
    return new_root


def _convert_attributes(model: nn.Module, mapper: _Mapper, report: ConversionReport, actions: Actions) -> None:
    """Function attributes (``self.act = F.gelu``) of every module: replaced by a module."""
    for qual, module in list(model.named_modules()):
        if isinstance(module, GAAF):
            continue
        for attr, source in function_attributes(module).items():
            value = vars(module)[attr]
            name = f"{qual}.{attr}" if qual else attr
            new, target, note = _decide(mapper, name, getattr(value, "func", value), source)
            site = Site(name, ATTRIBUTE, source.text, target if new is not None else None, note)
            if new is None:
                (report.kept if target == "kept" else report.unconverted).append(site)
                continue
            actions.append(functools.partial(_replace, module, attr, new))
            report.converted.append(site)


def function_attributes(module: nn.Module) -> "dict[str, Source]":
    """The module's attributes holding an activation function (or a partial of one), with their Source."""
    found = {}
    for attr, value in vars(module).items():
        source = attribute_source(value) if callable(value) and not isinstance(value, nn.Module) else None
        if source is not None:
            found[attr] = source
    return found


def _replace(parent: nn.Module, attr: str, new: nn.Module) -> None:
    """parent.attr = new (nn.Module.__setattr__ drops a plain attribute of that name and registers the
    module). nn.TransformerEncoderLayer's fast path (eval, no grad) runs relu/gelu itself, ignoring
    ``self.activation``, while ``activation_relu_or_gelu`` is set: a converted activation turns it off."""
    setattr(parent, attr, new)
    if attr == "activation" and isinstance(parent, nn.TransformerEncoderLayer):
        parent.activation_relu_or_gelu = 0


def _traceable_candidates(model: nn.Module) -> "list[tuple[str, nn.Module]]":
    """Modules whose own forward may hold functional calls: not torch's own classes, not activations,
    not already rewritten (a forward set on the instance)."""
    out = []
    for qual, module in model.named_modules():
        cls_module = getattr(type(module).forward, "__module__", "") or ""
        if (isinstance(module, GAAF) or module_source(module) is not None
                or cls_module.startswith("torch.") or "forward" in vars(module)):
            continue
        out.append((qual, module))
    return out


def _convert_calls(model: nn.Module, mapper: _Mapper, report: ConversionReport, actions: Actions) -> None:
    """Functional calls in every module's own forward (:mod:`.convert_trace`)."""
    untraced: "dict[type, Site]" = {}
    for qual, module in _traceable_candidates(model):
        try:
            graphs = trace_forward(module, list(function_attributes(module)))
            sites = call_sites(graphs)
            optional = variable_arguments(module) if sites else []
            if optional:
                raise Untraceable(f"its optional or variable arguments ({', '.join(optional)}) would be fixed by a trace")
        except Untraceable as e:
            calls = calls_in_source(type(module)) if not str(e).startswith("its optional") else \
                [f"{s.source.text} ({s.node_name})" for s in sites]
            if calls:
                _add_untraced(untraced, type(module), qual, calls, str(e))
            continue
        modules: "dict[str, tuple[str, nn.Module, bool]]" = {}
        for cs in sites:
            name = f"{qual}.{cs.node_name}" if qual else cs.node_name
            new, target, note = _decide(mapper, name, cs.target, cs.source)
            site = Site(name, CALL, cs.source.text, target if new is not None else None, note)
            if new is None:
                (report.kept if target == "kept" else report.unconverted).append(site)
                continue
            modules[cs.node_name] = (_free_attr(module, cs.node_name), new, cs.source.inplace)
            report.converted.append(site)
        if modules:
            actions.append(functools.partial(_retrace, report, qual, module, graphs, modules))
    report.unconverted.extend(untraced.values())


def _retrace(report: ConversionReport, qual: str, module: nn.Module, graphs: Any, modules: Any) -> None:
    report.retraced[qual] = rewrite(module, graphs, modules)


def _free_attr(module: nn.Module, name: str) -> str:
    attr, i = name, 0
    while hasattr(module, attr):
        i += 1
        attr = f"{name}_gaaf{'' if i == 1 else i}"
    return attr


def _add_untraced(untraced: "dict[type, Site]", cls: type, qual: str, calls: "list[str]", reason: str) -> None:
    where = f"{cls.__name__}.forward"
    prev = untraced.get(cls)
    aliases = (*prev.aliases, qual) if prev is not None else (qual,)
    untraced[cls] = Site(where, UNTRACED, ", ".join(calls), None, reason, aliases, len(calls))


def convert(model: nn.Module, mapping: MappingArg = None, **params: Any) -> "tuple[nn.Module, ConversionReport]":
    """Replace the activations of `model` by GAAF (or what `mapping` says): see the module docstring.

    Returns (the model, changed in place, or the new root where `model` itself is an activation;
    a :class:`~gaaf.models.convert_report.ConversionReport`). Raises ValueError for a bad mapping or
    parameters that a target does not take."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"convert needs an nn.Module, got {type(model).__name__}")
    mapper = _Mapper(mapping, params)
    report = ConversionReport()
    actions: "list[Callable[[], Any]]" = []
    new_root = _convert_modules(model, mapper, report, actions)
    if new_root is None:
        _convert_attributes(model, mapper, report, actions)
        _convert_calls(model, mapper, report, actions)
    for act in actions:  # every site decided and built: now change the model
        act()
    report.unused_keys = mapper.unused_keys()
    return (new_root if new_root is not None else model), report


__all__ = ["MappingArg", "Target", "convert"]
