"""Studies: many training runs described by one TOML file (`gaaf sweep`), and the tables of their
report (mean ± std over seeds, paired or Welch comparisons against a baseline, Holm-adjusted, and time
to target); `gaaf report` adds the figures from gaaf.plots."""
from ..errors import require_torch

require_torch(__name__)  # before anything imports torch: one line that names the fix

from .stats import Comparison, Summary, Welch, paired, summarize, welch
from .study import RunSpec, Study, StudyError, load_study, parse_study

__all__ = ["Comparison", "RunSpec", "Study", "StudyError", "Summary", "Welch", "load_study", "paired",
           "parse_study", "summarize", "welch"]
