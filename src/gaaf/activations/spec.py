"""Validated description of one GAAF activation: base, shape, its parameters, frequency, variant.

Both the PyTorch op and the Keras layer build from a `GAAFSpec`, so they accept and reject exactly
the same arguments with exactly the same messages. Pure Python (no PyTorch). A spec is immutable
and hashable: equal specs hash equal, so a spec can key a cache (the compiled kernels do).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from .catalog import BASES, DEFAULT_FREQUENCY, SHAPE_DEFAULTS, VARIANTS, base_of, default_shape, shape_defaults

#: The parameters a registry activation takes by keyword (``get_activation(name, **params)``), under
#: the names TrainConfig fields and study keys use: the shape, its parameters, K and the variant.
ACTIVATION_PARAMS: tuple[str, ...] = ("shape", "shift", "slope", "center", "width", "frequency", "variant")


def activation_params(options: Mapping[str, Any]) -> dict[str, Any]:
    """The activation parameters `options` (a config dict) sets; None means the activation's default."""
    return {k: options[k] for k in ACTIVATION_PARAMS if options.get(k) is not None}


class ShapeParams(Mapping[str, float]):
    """A read-only, hashable name → value mapping: a shape's parameters, kept sorted by name.

    Equal to any mapping with the same items (``ShapeParams(shift=1.0) == {"shift": 1.0}``).
    """

    __slots__ = ("_items", "_dict", "_hash")

    def __init__(self, items: "Mapping[str, float] | None" = None, **kwargs: float) -> None:
        merged = {**(items or {}), **kwargs}
        self._items: tuple[tuple[str, float], ...] = tuple(sorted(merged.items()))
        self._dict: dict[str, float] = dict(self._items)
        self._hash = hash(self._items)

    def __getitem__(self, key: str) -> float:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ShapeParams):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._dict == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"ShapeParams({self._dict!r})"


@dataclass(frozen=True)
class GAAFSpec:
    """One GAAF activation; build it with :meth:`build` (which validates and fills in defaults)."""

    base: str
    shape: "str | Callable"
    frequency: float
    variant: str
    shape_params: ShapeParams

    def __post_init__(self) -> None:
        if not isinstance(self.shape_params, ShapeParams):  # a dict would make the spec unhashable
            raise TypeError(f"shape_params must be a ShapeParams, got {type(self.shape_params).__name__}; "
                            "use GAAFSpec.build(...)")

    @classmethod
    def build(
        cls,
        base: str = "relu",
        shape: "str | Callable | None" = None,
        frequency: float = DEFAULT_FREQUENCY,
        variant: str = "floor",
        **shape_params: float,
    ) -> "GAAFSpec":
        """Validate and fill in defaults; raise ValueError saying what is allowed.

        `base` is a base or its preset name ("relu" or "gaaf_relu": the same). `shape` None is the
        base's own shape; parameters not given take their defaults for this base and shape
        (:func:`gaaf.activations.catalog.shape_defaults`), so ``build("relu")`` is the
        ``gaaf_relu`` preset (sigmoid, shift 4).
        """
        name = base_of(base)
        if name is None:
            raise ValueError(f"unknown base activation {base!r}; choose one of: {', '.join(sorted(BASES))} "
                             "(or its preset name gaaf_<base>)")
        base = name
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
        frequency = _finite("frequency", frequency)
        if frequency <= 0:
            raise ValueError(f"frequency must be a finite number > 0, got {frequency!r}")
        if callable(shape):
            if shape_params:
                raise ValueError(
                    f"a callable shape takes no shape parameters, got {', '.join(sorted(shape_params))}"
                )
            return cls(base, shape, frequency, variant, ShapeParams())
        if shape is None:
            shape = default_shape(base)
        if shape not in SHAPE_DEFAULTS:
            raise ValueError(
                f"unknown shape {shape!r}; choose one of: {', '.join(sorted(SHAPE_DEFAULTS))} or a callable x -> s(x)"
            )
        allowed = shape_defaults(base, shape)
        unknown = sorted(set(shape_params) - set(allowed))
        if unknown:
            takes = ", ".join(sorted(allowed)) or "no parameters"
            raise ValueError(f"shape {shape!r} takes {takes}; got unexpected {', '.join(unknown)}")
        params = {k: _finite(k, shape_params.get(k, v)) for k, v in allowed.items()}
        if shape == "gaussian" and params["width"] <= 0:
            raise ValueError(f"width must be a finite number > 0, got {params['width']!r}")
        return cls(base, shape, frequency, variant, ShapeParams(params))

    def describe(self) -> str:
        """`base='relu', shape='sigmoid', shift=-1.0, slope=1.0, frequency=10000.0, variant='floor'`"""
        shape = self.shape if isinstance(self.shape, str) else getattr(self.shape, "__name__", repr(self.shape))
        parts = [f"base={self.base!r}", f"shape={shape!r}"]
        parts += [f"{k}={v!r}" for k, v in self.shape_params.items()]
        parts += [f"frequency={self.frequency!r}", f"variant={self.variant!r}"]
        return ", ".join(parts)


def _finite(name: str, value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


__all__ = ["ACTIVATION_PARAMS", "GAAFSpec", "ShapeParams", "activation_params"]
