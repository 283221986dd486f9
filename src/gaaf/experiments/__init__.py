"""Studies: many training runs described by one TOML file (`gaaf sweep`), and their report
(`gaaf report`): mean ± std over seeds, Welch comparisons against a baseline, plots."""
from .stats import Summary, Welch, summarize, welch
from .study import RunSpec, Study, StudyError, load_study, parse_study

__all__ = ["RunSpec", "Study", "StudyError", "Summary", "Welch", "load_study", "parse_study", "summarize", "welch"]
