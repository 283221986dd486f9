"""`gaaf plot activations`: every figure is written as a valid PNG; bad flags are one-line errors."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from gaaf.cli import main
from gaaf.plots.activations import ACTIVATION_FIGURES, offset_grid

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_activations_writes_every_png(tmp_path, capsys) -> None:
    out = tmp_path / "figs"
    assert main(["plot", "activations", "--out", str(out), "--dpi", "40"]) == 0
    printed = capsys.readouterr().out.split()
    expected = {"sawtooth", "shapes", "gaaf_relu_gradients", *(stem for stem, _, _ in ACTIVATION_FIGURES)}
    assert {p.rsplit("/", 1)[-1] for p in printed} == {f"{stem}.png" for stem in expected}
    assert {"gaaf_relu_shift4", "gaaf_relu_shift-1", "gaaf_relu_shift-4", "gaaf_tanh", "gaaf_sigmoid"} <= expected
    for stem in expected:
        data = (out / f"{stem}.png").read_bytes()
        width, height = _png_size(data)
        assert width > 100 and height > 100 and len(data) > 1000, stem
    assert not list(out.glob(".*.tmp"))  # atomic writes left no temp files behind


@pytest.mark.parametrize("flags,message", [(["--frequency", "0"], "--frequency"), (["--dpi", "1"], "--dpi")])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message) -> None:
    assert main(["plot", "activations", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gaaf: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_offset_grid_avoids_the_jumps() -> None:
    K = 1e4
    x = offset_grid(-6.0, 6.0, 1200, K)
    assert 1000 <= x.size <= 1400 and x.min() >= -6.0 and x.max() <= 6.0
    phase = x * K - np.floor(x * K)
    np.testing.assert_allclose(phase, 0.25, atol=1e-6)
