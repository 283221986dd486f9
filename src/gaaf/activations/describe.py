"""Short table cells for the activation of a run config: what `gaaf report` prints in its
activation and shift columns."""
from __future__ import annotations

from typing import Any, Mapping

from .registry import get_activation
from .spec import activation_params


def describe_activation(config: Mapping[str, Any]) -> tuple[str, str]:
    """(activation, shift) cells: `gaaf_relu` / `-1`, `gaaf_relu(round)` / `-1`,
    `gaaf_relu(surrogate)` / `-1`, `gaaf_relu` / `no s(x)`,
    `relu` / `-`. Defaults the config leaves as None are read from the activation itself."""
    act = str(config.get("activation", "?"))
    params = activation_params(config)
    spec = None
    try:
        spec = getattr(get_activation(act, **params), "spec", None)
    except (ValueError, TypeError):
        pass
    if spec is None:  # a plain activation (or one we cannot build): no shape, no shift
        return act, "-" if "shift" not in params else short_number(params["shift"])
    label = act + (f"({spec.variant})" if spec.variant != "floor" else "")
    shape = spec.shape if isinstance(spec.shape, str) else "custom"
    if shape == "none":
        return label, "no s(x)"
    if shape == "sigmoid":
        return label, short_number(spec.shape_params.get("shift", 0.0))
    return label, f"{shape}(" + ", ".join(f"{k}={short_number(v)}" for k, v in spec.shape_params.items()) + ")"


def short_number(v: Any) -> str:
    """`-1` for -1.0, `0.001` for 1e-3 (``:g``), anything else as ``str``."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)
