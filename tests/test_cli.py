"""The top-level `gaaf` command: one-line usage errors, a --version that loads nothing heavy."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from gaaf import __version__
from gaaf.cli import main
from gaaf.errors import plural


@pytest.mark.parametrize("argv, prog", [
    (["train", "--epochs", "x"], "gaaf train"),
    (["bogus"], "gaaf"),
    (["plot", "activations", "--nope"], "gaaf plot activations"),
    (["sweep"], "gaaf sweep"),
])
def test_usage_errors_are_one_line_with_a_help_hint(argv, prog, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"{prog}: error: ") and f"(see '{prog} --help')" in err
    assert "usage:" not in err


def test_version_does_not_import_torch():
    code = ("import sys; from gaaf.cli import main; rc = main(['--version']); "
            "print('torch' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"gaaf {__version__}", "False 0"]


def test_public_api_is_imported_on_first_use():
    code = ("import sys, gaaf; before = 'torch' in sys.modules; act = gaaf.get_activation('gaaf_relu'); "
            "print(before, type(act).__name__, 'GAAF' in dir(gaaf))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "GAAF", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import gaaf
        gaaf.nope  # noqa: B018


@pytest.mark.parametrize("argv, hint", [
    (["train", "--out", "runs/x", "--epochs", "1"], "gaaf train --out runs/x --resume"),
    (["sweep", "s.toml", "--out", "runs/s"], "gaaf sweep s.toml --out runs/s"),
])
def test_ctrl_c_says_how_to_continue(argv, hint, monkeypatch, capsys):
    import gaaf.cli

    parser = gaaf.cli.build_parser()
    args = parser.parse_args(argv)

    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(gaaf.cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda _argv: argparse.Namespace(**{**vars(args), "func": interrupted}))
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("gaaf: interrupted; ") and hint in err and len(err.strip().splitlines()) == 1


def test_plural_counts():
    assert [plural(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert plural(1, "run folder") == "1 run folder" and plural(3, "run folder") == "3 run folders"
