"""`gaaf.functional`: the functional API (``gaaf.functional.gaaf(x, base, ...)``)."""
from .errors import require_torch

require_torch(__name__)  # before anything imports torch: one line that names the fix

from .activations.functional import *  # noqa: F401,F403
from .activations.functional import __all__  # noqa: F401
