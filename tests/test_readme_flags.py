"""README.md and `gaaf ... --help` agree: every flag of every (sub)command is documented in the README
section of its command, and every flag the README names exists (a renamed or removed flag fails here).

Rules, kept simple on purpose:
- A command's section is the `## ` heading that names it in backticks (`gaaf train`, `gaaf plot`, ...)
  up to the next `## ` heading; top-level flags (`--version`) may be anywhere.
- A flag is documented when it appears inside an inline `code` span of that section.
- Every `--flag` in an inline code span, and every flag on a `gaaf ...` line of an indented example
  block, must exist; the example lines are checked against their own subcommand's parser.
  Flags of other programs are recognised by the program: the part of a `torchrun ...` span before
  `gaaf` is torchrun's.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from gaaf.cli import build_parser
from gaaf.train.config import TrainConfig

README = Path(__file__).resolve().parents[1] / "README.md"
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for the parser and every subparser below it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, path + (name,))


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o not in ("-h", "--help")}


PARSERS = dict(walk(build_parser()))
ALL_OPTIONS = set().union(*(options(p) for p in PARSERS.values()))


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def code_spans(text: str) -> list[str]:
    """Inline `code` spans outside fenced blocks; a torchrun span keeps only the part after `gaaf`."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", text)
    return [s.split("gaaf", 1)[1] if s.startswith("torchrun") and "gaaf" in s else s
            for s in spans if not s.startswith("torchrun") or "gaaf" in s]


def section(text: str, command: str) -> str:
    """The `## ` section whose heading names `gaaf <command>` in backticks."""
    parts = re.split(r"^(?=## )", text, flags=re.M)
    found = [p for p in parts if p.startswith("## ") and f"`gaaf {command}`" in p.splitlines()[0]]
    assert found, f"README.md has no '## ' heading naming `gaaf {command}`"
    return found[0]


def flags_in_spans(text: str) -> set[str]:
    return {f for s in code_spans(text) for f in FLAG.findall(s)}


@pytest.mark.parametrize("path", sorted(p for p in PARSERS if p), ids=" ".join)
def test_every_flag_is_in_its_commands_readme_section(path):
    documented = flags_in_spans(section(readme_text(), path[0]))
    missing = sorted(options(PARSERS[path]) - documented)
    assert not missing, f"gaaf {' '.join(path)}: not in README.md's section on `gaaf {path[0]}`: {missing}"


def test_top_level_flags_are_in_the_readme():
    missing = sorted(options(PARSERS[()]) - flags_in_spans(readme_text()))
    assert not missing, f"gaaf: not in README.md: {missing}"


def test_every_flag_the_readme_names_exists():
    stale = sorted(f for f in flags_in_spans(readme_text()) if f.startswith("--") and f not in ALL_OPTIONS | {"--help"})
    assert not stale, f"README.md names flags no gaaf command has: {stale}"


def example_lines(text: str) -> list[str]:
    """`gaaf ...` command lines of the README's indented example blocks (comments cut)."""
    return [line.split("#", 1)[0].strip() for line in text.splitlines()
            if line.startswith("    gaaf ")]


def test_example_commands_use_their_own_commands_flags():
    lines = example_lines(readme_text())
    assert len(lines) > 10, "expected the README's example blocks of gaaf commands"
    for line in lines:
        words = line.split()[1:]
        path: tuple[str, ...] = ()
        while words and path + (words[0],) in PARSERS:
            path += (words.pop(0),)
        assert path, f"README example names no gaaf command: {line!r}"
        unknown = sorted({f for f in FLAG.findall(" ".join(words)) if f not in options(PARSERS[path])})
        assert not unknown, f"README example {line!r}: gaaf {' '.join(path)} has no {unknown}"


def test_the_checks_catch_a_missing_and_a_stale_flag():
    text = "## Training: `gaaf train`\n\n`--epochs` and `--no-such-flag`, and `torchrun --nnodes 2 -m gaaf train --amp`.\n"
    assert flags_in_spans(section(text, "train")) == {"--epochs", "--no-such-flag", "--amp"}
    assert "--lr" in options(PARSERS[("train",)]) - flags_in_spans(section(text, "train"))
    assert "--no-such-flag" not in ALL_OPTIONS


def test_train_help_shows_every_effective_default():
    """Train's flags default to None (so presets and config files can fill them); the help text says
    what a run gets without the flag instead of argparse's None."""
    train = PARSERS[("train",)]
    fields = set(TrainConfig.field_names())
    for action in train._actions:
        if action.dest in fields and action.nargs != 0 and not action.option_strings[0].startswith("--no-"):
            assert action.help and "default" in action.help, f"{action.option_strings[0]}: no default in its help"
    helps = {a.option_strings[0]: a.help for a in train._actions if a.option_strings}
    assert "(default: 200, the seed preset" in helps["--epochs"]
    assert "0.001, the seed preset; he2016: 0.1" in helps["--lr"]
    assert "the activation's own" in helps["--shape"] and "the activation's own" in helps["--variant"]
    assert "(default: pixel_mean, the seed preset)" in helps["--normalize"]
    assert "(default: 0, the seed preset; he2016: 64000)" in helps["--max-iterations"]
    assert "(default: B, the seed preset; he2016: A)" in helps["--shortcut"]
    assert "(default: 0)" in helps["--seed"]
    train.format_help()  # every help string survives argparse's %-formatting
