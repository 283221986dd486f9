"""`python -m gaaf ...` (and `torchrun -m gaaf train ...`)."""
from .cli import main

raise SystemExit(main())
