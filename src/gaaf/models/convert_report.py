"""What :func:`gaaf.convert` did: every activation site it converted, left alone or could not convert.

    model, report = gaaf.convert(model)
    print(report)
    # gaaf.convert: 17 activations converted, 3 not converted
    #   converted:
    #     16 x ReLU(inplace=True) -> GAAF(base='relu', shape='sigmoid', shift=4.0, ...): conv1.relu, layer1.0.relu, ...
    #     1 x F.gelu -> GAAF(base='gelu', ...): head.gelu
    #   not converted:
    #     3 functional calls in a forward that does not trace: Encoder.forward (enc.py:41 F.relu, ...): ...
    report.ok             # False: something was not converted
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: site kinds
MODULE, ATTRIBUTE, CALL, UNTRACED = "module", "attribute", "call", "untraced"
_KIND_WORDS = {MODULE: "module", ATTRIBUTE: "function attribute", CALL: "functional call"}


@dataclass(frozen=True)
class Site:
    """One activation site.

    name: where it is: a module's qualified name (``layer1.0.relu``), a function attribute's
    (``encoder.0.activation``), a traced call's (``blocks.0.mlp.gelu``: the module whose forward makes
    it, then the call's node name in the traced graph), or a forward that does not trace
    (``Encoder.forward``). ``aliases``: the other names of a module instance registered more than once.
    """

    name: str
    kind: str
    source: str                    # what was there: "ReLU(inplace=True)", "F.gelu", "torch.tanh"
    target: "str | None" = None    # what is there now; None when left as it was
    note: str = ""                 # why not converted, or what a conversion could not carry over
    aliases: "tuple[str, ...]" = ()
    count: int = 1                 # calls found in an untraced forward


@dataclass
class ConversionReport:
    """The result of one :func:`gaaf.convert` call (``str(report)`` is a readable summary).

    converted: sites now running the mapped activation. unconverted: activation sites still running
    what they ran before, each with the reason (no GAAF base, parameters GAAF's base does not have,
    a forward that does not trace). kept: sites a mapping value None left alone on purpose.
    already_gaaf: GAAF modules found in the model. retraced: modules whose forward now runs its
    torch.fx graph (their functional calls rewritten to submodule calls), with the generated code.
    unused_keys: mapping keys that matched no site (a typo in a name, a type the model lacks).
    """

    converted: "list[Site]" = field(default_factory=list)
    unconverted: "list[Site]" = field(default_factory=list)
    kept: "list[Site]" = field(default_factory=list)
    already_gaaf: "list[str]" = field(default_factory=list)
    retraced: "dict[str, str]" = field(default_factory=dict)
    unused_keys: "list[str]" = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no activation site was left unconverted (kept ones do not count)."""
        return not self.unconverted

    def unconverted_count(self) -> int:
        return sum(s.count for s in self.unconverted)

    def problems(self) -> "list[str]":
        """One short line per unconverted group: what `gaaf train --model` names in its error."""
        return [_unconverted_line(s) for s in self.unconverted]

    def __str__(self) -> str:
        head = (f"gaaf.convert: {_n(len(self.converted), 'activation')} converted, "
                f"{self.unconverted_count()} not converted")
        lines = [head]
        if self.converted:
            lines.append("  converted:")
            lines += [f"    {line}" for line in _grouped(self.converted)]
        if self.unconverted:
            lines.append("  not converted:")
            lines += [f"    {_unconverted_line(s)}" for s in self.unconverted]
        if self.kept:
            lines.append(f"  kept by the mapping: {_names([s.name for s in self.kept])}")
        if self.already_gaaf:
            lines.append(f"  already GAAF: {_names(self.already_gaaf)}")
        if self.retraced:
            lines.append(f"  forwards now running their torch.fx graph: {_names(list(self.retraced))}")
        if self.unused_keys:
            lines.append(f"  mapping keys that matched nothing: {', '.join(self.unused_keys)}")
        return "\n".join(lines)

    def as_dict(self) -> "dict[str, Any]":
        """Plain data (for JSON): the lists of sites as dicts."""
        def sites(xs: "list[Site]") -> "list[dict[str, Any]]":
            return [{k: v for k, v in vars(s).items() if v not in ((), "", None) or k == "target"} for s in xs]
        return {"converted": sites(self.converted), "unconverted": sites(self.unconverted), "kept": sites(self.kept),
                "already_gaaf": list(self.already_gaaf), "retraced": sorted(self.retraced),
                "unused_keys": list(self.unused_keys)}


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _names(names: "list[str]", most: int = 4) -> str:
    shown = ", ".join(n or "(the model itself)" for n in names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def _grouped(sites: "list[Site]") -> "list[str]":
    """'16 x ReLU(inplace=True) -> GAAF(...): conv1.relu, layer1.0.relu, ...', one line per (source, target)."""
    groups: "dict[tuple[str, str, str, str], list[str]]" = {}
    for s in sites:
        groups.setdefault((s.kind, s.source, s.target or "", s.note), []).append(s.name)
    out = []
    for (kind, source, target, note), names in groups.items():
        what = _KIND_WORDS.get(kind, kind) + ("s" if len(names) > 1 else "")
        line = f"{len(names)} x {source} -> {target} ({what}): {_names(names)}"
        out.append(line + (f"; {note}" if note else ""))
    return out


def _unconverted_line(s: Site) -> str:
    if s.kind == UNTRACED:
        calls = "functional call" if s.count == 1 else "functional calls"
        return f"{s.count} {calls} in a forward that does not trace: {s.name} ({s.source}): {s.note}"
    return f"{s.source} at {s.name or '(the model itself)'} ({_KIND_WORDS.get(s.kind, s.kind)}): {s.note}"


__all__ = ["ATTRIBUTE", "CALL", "MODULE", "UNTRACED", "ConversionReport", "Site"]
