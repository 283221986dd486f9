"""gaaf — Gradient Acceleration in Activation Functions (Hahn & Choi, arXiv:1806.09783).

    import gaaf
    act = gaaf.get_activation("gaaf_relu", shift=-1.0)   # an nn.Module
    y = gaaf.functional.gaaf(x, "tanh", shape="gaussian", width=3.0)
"""
from .activations import GAAF, GAAFSpec, get_activation, list_activations, register_activation
from .activations import functional

__version__ = "0.1.0"
__all__ = ["GAAF", "GAAFSpec", "functional", "get_activation", "list_activations", "register_activation", "__version__"]
