r"""What GAAF keeps in bfloat16 (autocast, ``gaaf train --amp``), and the one warning that says so.

The fused op computes a bfloat16 input in float32 (:mod:`.pointwise`), but the input itself has
8 significant bits: a bf16 x in [2^k, 2^(k+1)) is m·2^(k−7) with m an integer in [128, 256).
At K = 10⁴ = 625·2⁴ the product y = x·K = 625·m·2^(k−3) has at most 18 significant bits, so it is
exact in float32, and it is an integer exactly when 16·x is. Hence, at K = 10⁴:

* **every bf16 |x| ≥ 8 has an integer x·K**: g = −0.5/K whatever x, and "round"'s
  g' = sign(y − round(y)) = 0;
* below 8 the sawtooth is sampled at few phases: in [2^k, 2^(k+1)) the fractional part of x·K
  takes min(2^(3−k), 128) values (2 in [4, 8), 4 in [2, 4), 8 in [1, 2), 16 in [0.5, 1)), and a
  fraction 2^(k−3) of the bf16 values there has an integer x·K (1/2, 1/4, 1/8, 1/16, ...). For
  N(0, 1) inputs rounded to bf16 that is 7.2 % of them: x·K is not an integer for most
  batch-normalised inputs, but the sawtooth no longer varies within a bf16 step.
* **The forward's term is rounded away** where the activation is not small: |g·s| ≤ 0.5/K = 5·10⁻⁵
  is less than half a bf16 ulp of any |φ(x)| ≥ 2⁻⁶, so there the output is φ(x) rounded to bf16
  (relu, x > 0: x itself, bitwise; a smooth base can land one ulp off where φ(x) lies within |g·s|
  of a rounding midpoint). The sawtooth's value survives only where |φ(x)| is small, e.g. on
  relu's negative side, where the output is g(x)·s(x).
* **The backward** is computed in float32 and rounded to bf16. "floor" keeps g' = 1, so its
  gradient φ'(x) + s(x) survives (the g·s' term, at most 0.5·max|s'|/K, is below bf16 resolution
  beside it): in bf16 "floor" acts as "surrogate", forward φ(x), gradient φ'(x) + s(x), but for
  the small outputs above. "round"'s added gradient g'·s is 0 wherever x·K is an integer (every
  |x| ≥ 8, half of [4, 8), ...) and ±s(x) elsewhere.
* "surrogate" has no sawtooth (g ≡ 0, g' = 1): bf16 changes nothing but rounding.

For another K the same holds with y = m·K·2^(k−7): exact in float32 while K has at most 16
significant bits, and an integer wherever 2^(7−k) divides m·K. Under bf16 autocast a float32 input
is computed exactly, but the next autocast layer (conv, linear) reads the output in bf16, which
rounds the forward's term away as above. float16 (11 significant bits) keeps more: x·K is an
integer for every |x| ≥ 64 at K = 10⁴, and the term survives up to |φ(x)| ≈ 0.12.

:func:`check_input` (called by the fused op outside tracing) warns once per process, with
:class:`GAAFPrecisionWarning`, when a GAAF op with a sawtooth gets a bf16 input or runs under bf16
autocast; ``gaaf train --amp`` says the same in one line at the start (:func:`amp_note`) and the
op then stays quiet. Inside ``torch.compile`` the op does not check (a warning would break the
graph); the training line covers ``--amp --compile``.
"""
from __future__ import annotations

import warnings
from typing import Any, Iterable

import torch

_MESSAGE = (
    "GAAF in bfloat16 ({why}) keeps little of its sawtooth: at K = 1e4 x·K is an integer for every bf16 "
    "|x| >= 8 (g constant, the round variant's g' = 0) and takes at most 2**(3-k) phases in [2**k, 2**(k+1)); "
    "the forward's ±0.5/K term rounds away wherever |φ(x)| >= 2**-6, so 'floor' acts as its surrogate "
    "(forward φ, gradient φ' + s). Use float32 to keep the sawtooth (see gaaf.activations.precision)"
)

_warned = False  # the warning (or the training line) was given in this process


class GAAFPrecisionWarning(UserWarning):
    """GAAF runs in a precision (bfloat16) that cannot resolve its sawtooth; see :mod:`gaaf.activations.precision`."""


def message(why: str) -> str:
    """The warning's text, `why` saying what runs in bf16 (e.g. "bfloat16 input", "--amp")."""
    return _MESSAGE.format(why=why)


def warned() -> bool:
    """Whether this process has already been told (by the warning or the training line)."""
    return _warned


def _bf16_autocast(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16
    except (RuntimeError, ValueError):  # a device type autocast does not know
        return False


def check_input(x: torch.Tensor, spec: Any) -> None:
    """Warn once per process (GAAFPrecisionWarning) when `spec` has a sawtooth (not "surrogate") and
    `x` is bfloat16 or bf16 autocast is on for x's device. Callers test ``warned()`` first (cheap)."""
    global _warned
    if _warned or spec.variant == "surrogate":
        return
    if x.dtype == torch.bfloat16:
        why = "bfloat16 input"
    elif _bf16_autocast(x.device.type):
        why = "under bfloat16 autocast: the next layer reads its output in bf16"
    else:
        return
    _warned = True
    warnings.warn(message(why), GAAFPrecisionWarning, stacklevel=4)


def has_sawtooth(modules: Iterable[torch.nn.Module]) -> bool:
    """Whether any of `modules` is a GAAF layer with a sawtooth (a `spec` whose variant is not "surrogate")."""
    return any(getattr(getattr(m, "spec", None), "variant", "surrogate") != "surrogate" for m in modules)


def amp_note(modules: Iterable[torch.nn.Module]) -> "str | None":
    """The one line ``gaaf train --amp`` prints at the start when `modules` (the model's activation
    sites) include a GAAF layer with a sawtooth, else None. Marks the process as told, so the op
    does not warn again."""
    global _warned
    if not has_sawtooth(modules):
        return None
    _warned = True
    return "gaaf: warning: " + message("--amp: bf16 autocast") + "."


def _reset_for_tests() -> None:
    global _warned
    _warned = False


__all__ = ["GAAFPrecisionWarning", "amp_note", "check_input", "has_sawtooth", "message", "warned"]
