"""`gaaf.functional`: the functional API (``gaaf.functional.gaaf(x, base, ...)``)."""
from .activations.functional import *  # noqa: F401,F403
from .activations.functional import __all__  # noqa: F401
