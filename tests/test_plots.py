"""`gaaf plot activations`: every figure is written as a valid PNG and draws what its caption says
(checked on the Figure objects against values known from the paper's formulas); bad flags are
one-line errors."""
from __future__ import annotations

import struct

import numpy as np
import pytest


from figures_capture import data_axes, hlines, legend_texts, line
from gaaf.cli import main
from gaaf.plots.activations import (
    ACTIVATION_FIGURES, activation_figure, offset_grid, relu_gradients_figure, sawtooth_figure, shapes_figure,
)

K = 1e4


def _sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _xy(ln) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(ln.get_xdata(), dtype=np.float64), np.asarray(ln.get_ydata(), dtype=np.float64)


def _at(ln, x: float) -> float:
    """The line's y at its sample nearest to x."""
    xs, ys = _xy(ln)
    return float(ys[np.argmin(np.abs(xs - x))])

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which must come first."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_activations_writes_every_png(tmp_path, capsys, saved_figures) -> None:
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
    # each file holds its own figure: the activation named by its stem, with that stem's parameters
    assert sorted(saved_figures.names()) == sorted(f"{stem}.png" for stem in expected)
    for stem, name, params in ACTIVATION_FIGURES:
        title = saved_figures[f"{stem}.png"].get_suptitle()
        assert title.startswith(f"{name}: "), (stem, title)
        if "shift" in params:
            shift = params["shift"]
            assert f"(x {'+' if shift >= 0 else '−'} {abs(shift):g})" in title, (stem, title)
    assert saved_figures["sawtooth.png"].get_suptitle().startswith("Sawtooth g(x), K = 10000")
    assert saved_figures["shapes.png"].get_suptitle().startswith("Shape functions s(x)")
    assert len(data_axes(saved_figures["gaaf_relu_gradients.png"])) == 1


def test_sawtooth_figure_draws_both_variants_with_breaks_at_the_jumps() -> None:
    fig = sawtooth_figure(K, periods=3)
    floor_ax, round_ax = data_axes(fig)
    assert "variant 'floor'" in floor_ax.get_title() and "variant 'round'" in round_ax.get_title()
    assert floor_ax.get_ylabel() == "g(x) · K" and "x · K" in floor_ax.get_xlabel()
    assert legend_texts(floor_ax) == ["g(x), variant 'floor'", "±0.5/K"]
    assert legend_texts(round_ax) == ["g(x), variant 'round'", "±0.5/K"]
    for ax in (floor_ax, round_ax):
        assert sorted(hlines(ax)) == [-0.5, 0.5]
    g_floor, g_round = line(floor_ax, "g(x), variant 'floor'"), line(round_ax, "g(x), variant 'round'")
    k, _ = _xy(g_floor)
    assert k.min() == -0.5 and k.max() == 2.5  # three periods, in units of 1/K
    # g·K = xK − ⌊xK⌋ − 0.5 (floor) and |xK − round(xK)| − 0.5 (round), at a quarter and three quarters
    for kk, floor_val, round_val in ((0.25, -0.25, -0.25), (0.75, 0.25, -0.25), (1.5, 0.0, 0.0), (2.25, -0.25, -0.25)):
        assert _at(g_floor, kk) == pytest.approx(floor_val, abs=1e-3), kk
        assert _at(g_round, kk) == pytest.approx(round_val, abs=1e-3), kk
    _, yf = _xy(g_floor)
    _, yr = _xy(g_round)
    # floor: a jump (a break in the line, not a riser) at each integer 0, 1, 2; round: continuous
    assert np.isnan(yf).sum() == 3 and not np.isnan(yr).any()
    assert np.nanmin(yf) >= -0.5 and np.nanmax(yf) < 0.5 and np.nanmax(yr) <= 0.0 and np.nanmin(yr) >= -0.5


def test_shapes_figure_draws_each_shift_and_width() -> None:
    fig = shapes_figure()
    sig_ax, gauss_ax = data_axes(fig)
    assert legend_texts(sig_ax) == [f"shift = {s}" for s in ("4", "1", "0", "-1", "-4")]
    assert legend_texts(gauss_ax) == ["width = 3  (gaaf_tanh)", "width = 12  (gaaf_sigmoid)"]
    assert sig_ax.get_ylabel() == "s(x)" and sig_ax.get_xlabel() == gauss_ax.get_xlabel() == "x"
    for shift in (4, 1, 0, -1, -4):
        ln = line(sig_ax, f"shift = {shift}")
        x, _ = _xy(ln)
        assert (x.min(), x.max()) == (-6.0, 6.0)
        assert _at(ln, -shift) == pytest.approx(0.5, abs=1e-12)  # sigmoid(0)
        assert _at(ln, 2.0 - shift) == pytest.approx(_sigmoid(2.0), abs=1e-12)
    for width, who in ((3.0, "gaaf_tanh"), (12.0, "gaaf_sigmoid")):
        ln = line(gauss_ax, f"width = {width:g}  ({who})")
        assert _at(ln, 0.0) == pytest.approx(1.0, abs=1e-12)
        assert _at(ln, 2.0) == pytest.approx(np.exp(-4.0 / width), abs=1e-12)  # exp(−x²/width)


def test_activation_figure_gaaf_relu_panels() -> None:
    """gaaf_relu, shift −1: φ = relu, s(x) = sigmoid(x − 1). On the grid x = (n + ¼)/K the floor
    sawtooth is g = (¼ − ½)/K, so φ_new − φ = −¼·s(x)/K; between jumps φ_new' = relu' + s(x) up to
    g·s' (≤ 0.5/K · ¼)."""
    fig = activation_figure("gaaf_relu", K, shift=-1.0)
    assert fig.get_suptitle() == "gaaf_relu: φ = relu, s(x) = sigmoid(1·(x − 1)), K = 10000, variant 'floor'"
    ax_v, ax_d, ax_z, ax_g = data_axes(fig)
    assert [ax.get_ylabel() for ax in (ax_v, ax_d, ax_z, ax_g)] == \
        ["activation", "(φ_new − φ) · K", "(φ_new − φ) · K", "derivative"]
    assert legend_texts(ax_v) == ["φ = relu", "φ_new = φ + g·s"]
    assert legend_texts(ax_g) == ["φ' (relu)", "φ_new' (autograd through gaaf)"]

    x, y_base = _xy(line(ax_v, "φ = relu"))
    assert x.min() >= -6.0 and x.max() <= 6.0 and x.size > 1000
    np.testing.assert_allclose((x * K) % 1.0, 0.25, atol=1e-6)  # a quarter period past each jump
    np.testing.assert_allclose(y_base, np.maximum(x, 0.0), rtol=0, atol=0)
    _, y_new = _xy(line(ax_v, "φ_new = φ + g·s"))
    np.testing.assert_allclose(y_new, np.maximum(x, 0.0) - 0.25 * _sigmoid(x - 1.0) / K, rtol=0, atol=1e-12)

    xd, diff = _xy(line(ax_d, "φ_new − φ at x = (n + ¼)/K"))
    np.testing.assert_allclose(xd, x)
    np.testing.assert_allclose(diff, -0.25 * _sigmoid(x - 1.0), rtol=0, atol=1e-8)
    assert sorted(hlines(ax_d)) == [-0.5, 0.5] and ax_d.get_ylim() == (-0.6, 0.6)
    (band,) = ax_d.collections  # the envelope ±0.5·s(x)
    ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    assert ys.max() == pytest.approx(0.5 * _sigmoid(x.max() - 1.0), rel=1e-6)
    assert ys.min() == pytest.approx(-0.5 * _sigmoid(x.max() - 1.0), rel=1e-6)

    # zoom: three periods from x0 = 2 − shift = 3, where s ≈ sigmoid(2); x axis in periods
    assert ax_z.get_xlabel() == "(x − 3) · K" and "from x ≈ 3" in ax_z.get_title()
    zoom = line(ax_z, "φ_new − φ")
    k, dz = _xy(zoom)
    assert (k.min(), k.max()) == (0.0, 3.0)
    s3 = _sigmoid(2.0)
    for kk, g in ((0.25, -0.25), (0.75, 0.25), (1.5, 0.0), (2.75, 0.25)):
        assert _at(zoom, kk) == pytest.approx(g * s3, abs=2e-3), kk
    inner = (k > 0.01) & (k < 2.99)
    assert np.isnan(dz[inner]).sum() == 2  # the line breaks at the jumps k = 1, 2

    _, d_base = _xy(line(ax_g, "φ' (relu)"))
    _, d_new = _xy(line(ax_g, "φ_new' (autograd through gaaf)"))
    np.testing.assert_array_equal(d_base, (x > 0).astype(np.float64))
    np.testing.assert_allclose(d_new, (x > 0) + _sigmoid(x - 1.0), rtol=0, atol=0.5 / K)


def test_activation_figure_gaaf_tanh_uses_its_gaussian_and_rejects_plain_names() -> None:
    fig = activation_figure("gaaf_tanh", K)
    assert fig.get_suptitle() == "gaaf_tanh: φ = tanh, s(x) = exp(−x² / 3), K = 10000, variant 'floor'"
    ax_v, ax_d, _, ax_g = data_axes(fig)
    x, y_base = _xy(line(ax_v, "φ = tanh"))
    np.testing.assert_allclose(y_base, np.tanh(x), rtol=0, atol=1e-12)
    _, diff = _xy(line(ax_d, "φ_new − φ at x = (n + ¼)/K"))
    np.testing.assert_allclose(diff, -0.25 * np.exp(-x * x / 3.0), rtol=0, atol=1e-8)
    _, d_new = _xy(line(ax_g, "φ_new' (autograd through gaaf)"))
    np.testing.assert_allclose(d_new, 1.0 - np.tanh(x) ** 2 + np.exp(-x * x / 3.0), rtol=0, atol=0.5 / K)
    with pytest.raises(ValueError, match="gaaf_relu"):  # a plain activation: the registry points to gaaf_*
        activation_figure("relu")


def test_relu_gradients_figure_one_curve_per_shift() -> None:
    fig = relu_gradients_figure(K, shifts=(2.0, -3.0))
    (ax,) = data_axes(fig)
    assert legend_texts(ax) == ["relu'", "gaaf_relu', shift = 2", "gaaf_relu', shift = -3"]
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "derivative" and "K = 10000" in ax.get_title()
    x, d_relu = _xy(line(ax, "relu'"))
    np.testing.assert_array_equal(d_relu, (x > 0).astype(np.float64))
    for shift in (2.0, -3.0):
        _, d = _xy(line(ax, f"gaaf_relu', shift = {shift:g}"))
        np.testing.assert_allclose(d, (x > 0) + _sigmoid(x + shift), rtol=0, atol=0.5 / K)


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
