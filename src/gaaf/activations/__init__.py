"""GAAF activations: reference formulas, the fused autograd op, the nn.Module and the registry."""
from . import fused, functional, reference
from .describe import describe_activation
from .modules import GAAF
from .registry import get_activation, list_activations, register_activation
from .spec import ACTIVATION_PARAMS, GAAFSpec, activation_params

__all__ = [
    "ACTIVATION_PARAMS", "GAAF", "GAAFSpec", "activation_params", "describe_activation", "fused", "functional",
    "get_activation", "list_activations", "reference", "register_activation",
]
