"""Studies: many training runs described by one TOML file (`gaaf sweep`), and the tables of their
report (mean ± std over seeds, Welch comparisons against a baseline); `gaaf report` adds the
figures from gaaf.plots."""
from .stats import Summary, Welch, summarize, welch
from .study import RunSpec, Study, StudyError, load_study, parse_study

__all__ = ["RunSpec", "Study", "StudyError", "Summary", "Welch", "load_study", "parse_study", "summarize", "welch"]
