"""GAAF activations: reference formulas, the fused autograd op, the nn.Module and the registry."""
from . import fused, functional, reference
from .modules import GAAF
from .registry import get_activation, list_activations, register_activation
from .spec import GAAFSpec

__all__ = ["GAAF", "GAAFSpec", "fused", "functional", "reference", "get_activation", "list_activations", "register_activation"]
