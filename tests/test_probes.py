"""Mechanism probes: histograms, saturation, gradient flow, sampling, probes.json, plots."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from gaaf import GAAF
from gaaf.errors import UserError
from gaaf.bench.probe_overhead import measure_probe_overhead
from gaaf.plots.probes import plot_probes
from gaaf.train.callbacks import ProbeCallback, make_probe_callback
from gaaf.train.probes import ActivationProbe, load_probes, resolve_saturation


class Tiny(nn.Module):
    """x (B, 4) → lin1 → relu → lin2 → tanh → head (B, 2). lin1 = identity, so relu's input is x itself."""

    def __init__(self, act2: nn.Module | None = None) -> None:
        super().__init__()
        self.lin1 = nn.Linear(4, 4)
        self.relu = nn.ReLU()
        self.lin2 = nn.Linear(4, 3)
        self.tanh = act2 if act2 is not None else nn.Tanh()
        self.head = nn.Linear(3, 2)
        with torch.no_grad():
            self.lin1.weight.copy_(torch.eye(4))
            self.lin1.bias.zero_()
            self.lin2.weight.copy_(torch.tensor([[3.0, -1.0, 0.5, 2.0], [-2.0, 1.0, 1.0, 0.0], [0.5, 0.5, -3.0, 1.0]]))
            self.lin2.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tanh(self.lin2(self.relu(self.lin1(x)))))


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the real model under `.module`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def batches(n: int, b: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 4, generator=g) * 3 for _ in range(n)]


def train_call(net: nn.Module, x: torch.Tensor) -> None:
    net.train()
    net(x).square().sum().backward()


def by_hand(model: Tiny, xs: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Inputs of both sites and the gradients at their inputs/outputs, via retain_grad."""
    z1s, z2s, g1, g2, go1, go2 = [], [], [], [], [], []
    for x in xs:
        z1 = model.lin1(x)
        z1.retain_grad()
        a1 = model.relu(z1)
        a1.retain_grad()
        z2 = model.lin2(a1)
        z2.retain_grad()
        a2 = model.tanh(z2)
        a2.retain_grad()
        model.head(a2).square().sum().backward()
        for lst, t in ((z1s, z1), (z2s, z2), (g1, z1.grad), (g2, z2.grad), (go1, a1.grad), (go2, a2.grad)):
            lst.append(t.detach().numpy().ravel())
    model.zero_grad()
    return {k: np.concatenate(v) for k, v in dict(z1=z1s, z2=z2s, g1=g1, g2=g2, go1=go1, go2=go2).items()}


def test_histogram_saturation_moments_and_gradients_match_hand_computation() -> None:
    torch.manual_seed(0)
    model = Tiny()
    xs = batches(5)
    probe = ActivationProbe(model, every=2, bins=16, range=(-4, 4))
    for x in xs:
        train_call(model, x)
    model.zero_grad()
    rec = probe.end_epoch(1)
    assert rec["samples"] == 3 and rec["steps"] == 5  # calls 0, 2, 4
    ref = by_hand(model, [xs[0], xs[2], xs[4]])  # weights unchanged: no optimizer step

    relu, tanh = rec["per_site"]["relu"], rec["per_site"]["tanh"]
    z1, z2 = ref["z1"], ref["z2"]
    assert relu["count"] == z1.size == 3 * 6 * 4 and tanh["count"] == z2.size == 3 * 6 * 3
    for stats, z in ((relu, z1), (tanh, z2)):
        assert sum(stats["hist"]) + stats["underflow"] + stats["overflow"] == stats["count"]
        expected, _ = np.histogram(z[(z >= -4) & (z < 4)], bins=16, range=(-4, 4))
        assert stats["hist"] == expected.tolist()
        assert stats["underflow"] == int((z < -4).sum()) and stats["overflow"] == int((z >= 4).sum())
        assert stats["mean"] == pytest.approx(z.astype(np.float64).mean(), abs=1e-6)
        assert stats["std"] == pytest.approx(z.std(), rel=1e-4)
    assert relu["saturation"] == pytest.approx((z1 < 0).mean())
    assert tanh["saturation"] == pytest.approx((np.abs(z2) > 2).mean())
    assert 0 < relu["saturation"] < 1 and 0 < tanh["saturation"] < 1
    assert relu["mean_abs_grad"] == pytest.approx(np.abs(ref["g1"]).mean(), rel=1e-5)
    assert tanh["mean_abs_grad"] == pytest.approx(np.abs(ref["g2"]).mean(), rel=1e-5)
    assert relu["mean_abs_grad_out"] == pytest.approx(np.abs(ref["go1"]).mean(), rel=1e-5)
    assert tanh["mean_abs_grad_out"] == pytest.approx(np.abs(ref["go2"]).mean(), rel=1e-5)
    # the relu passes nothing down where it saturates: the input gradient is smaller than the output's
    assert relu["mean_abs_grad"] < relu["mean_abs_grad_out"]


def test_sampling_every_nth_training_call_only_and_reset_per_epoch() -> None:
    model = Tiny()
    probe = ActivationProbe(model, every=3)
    xs = batches(7)
    for i, x in enumerate(xs):
        train_call(model, x)
        # site hooks exist only inside a sampled forward pass
        assert not model.relu._forward_pre_hooks and not model.tanh._forward_hooks
        model.eval()
        model(x)  # eval with grad: not a training call
        model.train()
        with torch.no_grad():
            model(x)  # train mode under no_grad: not a training call
    rec = probe.end_epoch(1)
    assert (rec["samples"], rec["steps"]) == (3, 7)  # calls 0, 3, 6
    assert rec["per_site"]["relu"]["count"] == 3 * 6 * 4
    ref = by_hand(model, [xs[0], xs[3], xs[6]])
    assert rec["per_site"]["relu"]["mean"] == pytest.approx(ref["z1"].astype(np.float64).mean(), abs=1e-6)

    # fewer calls than `every`: the first call of each epoch is still sampled
    probe2 = ActivationProbe(Tiny(), every=1000)
    for epoch in (1, 2):
        for x in batches(3):
            train_call(probe2.model, x)
        assert probe2.end_epoch(epoch)["samples"] == 1
    assert [e["epoch"] for e in probe2.epochs] == [1, 2]


def test_eval_only_epoch_records_nothing_and_close_removes_hooks() -> None:
    model = Tiny()
    probe = ActivationProbe(model, every=1)
    model.eval()
    with torch.no_grad():
        model(batches(1)[0])
    rec = probe.end_epoch(1)
    assert rec["samples"] == 0
    assert rec["per_site"]["relu"] == {
        "hist": [0] * 81, "underflow": 0, "overflow": 0, "count": 0, "saturation": None,
        "mean_abs_grad": None, "mean_abs_grad_out": None, "mean": None, "std": None,
    }
    probe.close()
    assert not model._forward_pre_hooks and not model._forward_hooks
    train_call(model, batches(1)[0])
    assert probe.step_in_epoch == 0


def test_gaaf_site_uses_its_base_and_saturation_overrides() -> None:
    model = Tiny(act2=GAAF(base="sigmoid", shape="gaussian", width=12.0))
    probe = ActivationProbe(model, every=1, saturation={"sigmoid": 1.0, "relu": ("below", -1.0)})
    assert probe.bases == {"relu": "relu", "tanh": "sigmoid"}
    xs = batches(2)
    for x in xs:
        train_call(model, x)
    rec = probe.end_epoch(1)
    ref = by_hand(model, xs)
    assert rec["per_site"]["tanh"]["saturation"] == pytest.approx((np.abs(ref["z2"]) > 1.0).mean())
    assert rec["per_site"]["relu"]["saturation"] == pytest.approx((ref["z1"] < -1.0).mean())
    # GAAF's gradient acceleration: dL/dx = dL/dy · (φ'(x) + s(x)), matched exactly by the probe
    assert rec["per_site"]["tanh"]["mean_abs_grad"] == pytest.approx(np.abs(ref["g2"]).mean(), rel=1e-5)


def test_ddp_style_wrapper_is_unwrapped() -> None:
    inner = Tiny()
    net = Wrapper(inner)
    probe = ActivationProbe(net, every=2)
    assert probe.model is inner and [n for n, _ in probe.sites] == ["relu", "tanh"]
    xs = batches(4)
    for x in xs:
        train_call(net, x)
    rec = probe.end_epoch(3)
    assert rec["samples"] == 2
    ref = by_hand(inner, [xs[0], xs[2]])
    assert rec["per_site"]["relu"]["mean_abs_grad"] == pytest.approx(np.abs(ref["g1"]).mean(), rel=1e-5)


def test_bf16_autocast_inputs_are_counted() -> None:
    model = Tiny()
    probe = ActivationProbe(model, every=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        train_call(model, batches(1)[0])
    stats = probe.end_epoch(1)["per_site"]["tanh"]
    assert sum(stats["hist"]) + stats["underflow"] + stats["overflow"] == stats["count"] == 18
    assert stats["mean_abs_grad"] is not None and stats["mean_abs_grad"] > 0


def test_callback_writes_probes_json_each_epoch_and_resumes(tmp_path: Path) -> None:
    model = Tiny()
    cfg = SimpleNamespace(activation="relu", probe=True, out=str(tmp_path), probe_every=2, probe_bins=10)
    state = SimpleNamespace(model=model, cfg=cfg, epoch=0, out_dir=tmp_path, device=torch.device("cpu"), is_main=True)
    cb = make_probe_callback(state)
    assert isinstance(cb, ProbeCallback) and cb.probe.every == 2 and cb.probe.range == (-8.0, 8.0)
    cb.on_train_start(state)
    for epoch in (1, 2):
        for x in batches(3, seed=epoch):
            train_call(model, x)
        state.epoch = epoch
        cb.on_epoch_end(state, {"epoch": epoch})
        data = json.loads((tmp_path / "probes.json").read_text())
        assert [e["epoch"] for e in data["epochs"]] == list(range(1, epoch + 1))
    assert data["sites"] == ["relu", "tanh"]
    assert data["base"] == {"relu": "relu", "tanh": "tanh"}
    assert data["saturation_rule"]["tanh"] == {"kind": "abs_above", "threshold": 2.0}
    assert len(data["bins"]) == 11 and data["bins"][0] == -8.0 and data["bins"][-1] == 8.0
    e = data["epochs"][1]
    assert e["samples"] == 2
    assert set(e["per_site"]["relu"]) >= {"hist", "saturation", "mean_abs_grad", "mean", "std"}
    assert len(e["per_site"]["relu"]["hist"]) == 10
    cb.on_train_end(state, {})
    assert not model._forward_pre_hooks

    # resume after epoch 1: epoch 1 is kept, epoch 2 is re-run and replaced
    state2 = SimpleNamespace(model=model, cfg=SimpleNamespace(), epoch=1, out_dir=tmp_path, is_main=True)
    cb2 = make_probe_callback(state2)
    assert cb2.probe.every == 50 and cb2.probe.bins == 81
    cb2.probe.bins, cb2.probe.edges = 10, cb.probe.edges  # same histogram layout as the first run
    cb2.on_train_start(state2)
    assert [e["epoch"] for e in cb2.probe.epochs] == [1]
    train_call(model, batches(1)[0])
    state2.epoch = 2
    cb2.on_epoch_end(state2, {})
    assert [e["samples"] for e in load_probes(tmp_path)["epochs"]] == [2, 1]


def test_user_errors() -> None:
    with pytest.raises(UserError, match="every"):
        ActivationProbe(Tiny(), every=0)
    with pytest.raises(UserError, match="range"):
        ActivationProbe(Tiny(), range=(1.0, 1.0))
    with pytest.raises(UserError, match="bins"):
        ActivationProbe(Tiny(), bins=0)
    with pytest.raises(UserError, match="unknown base"):
        resolve_saturation({"swish": 1.0})
    with pytest.raises(UserError, match="kind"):
        resolve_saturation({"tanh": ("above", 1.0)})
    with pytest.raises(UserError, match="no activation sites"):
        ActivationProbe(nn.Linear(2, 2))
    with pytest.raises(UserError, match="--probe"):
        load_probes(Path("/nonexistent/run"))


def _probe_run(folder: Path, act2: nn.Module, seed: int) -> Path:
    torch.manual_seed(seed)
    model = Tiny(act2)
    probe = ActivationProbe(model, every=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in (1, 2, 3):
        for x in batches(4, seed=epoch):
            opt.zero_grad()
            train_call(model, x)
            opt.step()
        probe.end_epoch(epoch)
    return probe.write(folder / "probes.json").parent


def test_plot_probes_writes_pngs_that_draw_the_probes(tmp_path: Path, saved_figures) -> None:
    from figures_capture import data_axes, legend_texts, vlines
    from matplotlib.colors import to_rgb

    runs = {
        "tanh": _probe_run(tmp_path / "a", nn.Tanh(), 0),
        "gaaf_tanh": _probe_run(tmp_path / "b", GAAF(base="tanh", shape="gaussian", width=3.0), 0),
    }
    paths = plot_probes(runs, tmp_path / "report")
    assert [p.name for p in paths] == ["probe_saturation.png", "probe_grad.png", "probe_hist.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "report").glob(".*.tmp"))
    data = {label: json.loads((folder / "probes.json").read_text()) for label, folder in runs.items()}
    assert all(d["sites"] == ["relu", "tanh"] and len(d["epochs"]) == 3 for d in data.values())

    # per-layer figures: one panel per run (in order), one line per site over the epochs, the stored values
    figures = (("probe_saturation.png", "saturation", "linear"), ("probe_grad.png", "mean_abs_grad", "log"))
    for png, key, scale in figures:
        fig = saved_figures[png]
        panels = data_axes(fig)
        assert [ax.get_title() for ax in panels] == ["tanh", "gaaf_tanh"]
        assert len(fig.axes) == 3 and fig.axes[2].get_ylabel() == "layer (forward order, 0 = first)"  # colorbar
        for ax, d in zip(panels, data.values()):
            assert ax.get_xlabel() == "epoch" and ax.get_yscale() == scale
            lines = ax.get_lines()
            assert len(lines) == 2 and lines[0].get_color() != lines[1].get_color()
            for ln, site in zip(lines, d["sites"]):
                expected = [[e["epoch"], e["per_site"][site][key]] for e in d["epochs"]]
                np.testing.assert_allclose(ln.get_xydata(), expected, rtol=1e-12)
        # colour = depth: a site has the same colour in every panel
        assert [ln.get_color() for ln in panels[0].get_lines()] == [ln.get_color() for ln in panels[1].get_lines()]
    sat_ax = data_axes(saved_figures["probe_saturation.png"])[0]
    assert sat_ax.get_ylim() == (0.0, 1.0) and sat_ax.get_ylabel() == "fraction of inputs in the saturation area"

    # histograms: one panel per site, each run's last-epoch histogram as fractions, thresholds marked
    fig = saved_figures["probe_hist.png"]
    panels = data_axes(fig)
    assert [ax.get_title() for ax in panels] == ["layer 0: relu", "layer 1: tanh"]
    for ax, site in zip(panels, ["relu", "tanh"]):
        steps = ax.patches
        assert len(steps) == 2
        for step, (label, d) in zip(steps, data.items()):
            st = d["epochs"][-1]["per_site"][site]
            values, edges, _ = step.get_data()
            np.testing.assert_allclose(edges, d["bins"])
            np.testing.assert_allclose(values, np.array(st["hist"]) / st["count"])
            out = (st["underflow"] + st["overflow"]) / st["count"]
            assert step.get_label() == f"{label} (epoch 3)"
            assert f"outside [{d['bins'][0]:g}, {d['bins'][-1]:g}): {out:.1%}" in [t.get_text() for t in ax.texts]
        rule = data["tanh"]["saturation_rule"][site]
        marks = [0.0] if site == "relu" else [-2.0, 2.0]  # relu: below 0; tanh: |x| above 2
        assert rule["threshold"] == max(marks) and sorted(vlines(ax)) == sorted(marks * 2)  # once per run
    assert legend_texts(fig) == [p.get_label() for p in panels[0].patches] + ["saturation threshold"]

    with pytest.raises(UserError, match="probes.json"):
        plot_probes({"missing": tmp_path / "nothing"}, tmp_path / "report")
    default = {p.get_edgecolor()[:3] for ax in data_axes(saved_figures["probe_hist.png"]) for p in ax.patches}
    plot_probes(runs, tmp_path / "coloured", colors={"gaaf_tanh": "tab:purple"})  # the report's arm colours
    coloured = saved_figures[tmp_path / "coloured" / "probe_hist.png"]
    edges = {p.get_edgecolor()[:3] for ax in data_axes(coloured) for p in ax.patches}
    assert to_rgb("tab:purple") in edges and to_rgb("tab:purple") not in default


def _fake_probes(path: Path, per_epoch: list[dict]) -> Path:
    """A probes.json with three sites a, b, c; `per_epoch`: per_site dicts for epochs 1, 2, ..."""
    bins = [-2.0, -1.0, 0.0, 1.0, 2.0]
    stats = {"hist": [1, 2, 3, 4], "underflow": 0, "overflow": 0, "count": 10}
    epochs = [{"epoch": i + 1, "per_site": {site: {**stats, **v} for site, v in sites.items()}}
              for i, sites in enumerate(per_epoch)]  # fmt: skip
    path.mkdir(parents=True)
    (path / "probes.json").write_text(json.dumps({"sites": ["a", "b", "c"], "bins": bins, "epochs": epochs}))
    return path


def test_plot_probes_skips_undefined_points_and_marks_empty_panels(tmp_path: Path, saved_figures) -> None:
    """A site whose statistic is undefined (None) at an epoch has no point there; on the log scale a
    zero gradient has none either; a run with nothing to draw says "no data"; the histograms take
    the first and last layer when asked for two."""
    from figures_capture import data_axes

    one = _fake_probes(tmp_path / "one", [
        {"a": {"saturation": 0.5, "mean_abs_grad": 0.1}, "b": {"saturation": None, "mean_abs_grad": 0.0},
         "c": {"saturation": 0.25, "mean_abs_grad": 0.2}},
        {"a": {"saturation": 0.4, "mean_abs_grad": 0.05}, "b": {"saturation": 0.75, "mean_abs_grad": 0.0},
         "c": {"saturation": 0.125, "mean_abs_grad": 0.3}},
    ])  # fmt: skip
    dead = _fake_probes(tmp_path / "dead", [{s: {"saturation": 0.0, "mean_abs_grad": 0.0} for s in "abc"}])
    plot_probes({"one": one, "dead": dead}, tmp_path / "report", layers=2)

    sat_one, sat_dead = data_axes(saved_figures["probe_saturation.png"])
    assert [ln.get_xydata().tolist() for ln in sat_one.get_lines()] == \
        [[[1, 0.5], [2, 0.4]], [[2, 0.75]], [[1, 0.25], [2, 0.125]]]
    assert [ln.get_xydata().tolist() for ln in sat_dead.get_lines()] == [[[1, 0.0]]] * 3
    grad_one, grad_dead = data_axes(saved_figures["probe_grad.png"])
    assert [ln.get_xydata().tolist() for ln in grad_one.get_lines()] == [[[1, 0.1], [2, 0.05]], [[1, 0.2], [2, 0.3]]]
    assert grad_one.get_yscale() == "log"
    assert not grad_dead.get_lines() and [t.get_text() for t in grad_dead.texts] == ["no data"]
    assert grad_dead.get_yscale() == "log"  # shared y with the first panel
    hist = data_axes(saved_figures["probe_hist.png"])
    assert [ax.get_title() for ax in hist] == ["layer 0: a", "layer 2: c"]
    np.testing.assert_allclose(hist[0].patches[0].get_data()[0], [0.1, 0.2, 0.3, 0.4])


def test_measure_probe_overhead_on_a_fake_clock(monkeypatch) -> None:
    """On a fake clock that each training step advances by 2 ms, by 3 ms while a probe is attached,
    the measurement is 2 ms, 3 ms and +50 %, whatever the machine. One stalled step (1 s) in one
    baseline block moves nothing (medians); blocks alternate A B, B A, ...; every probed block
    samples exactly one step."""
    import sys

    import gaaf.train.step as train_step

    home = sys.modules[measure_probe_overhead.__module__]  # the module whose names it looks up
    clock = [0.0]
    attached: list = []  # probes made and not yet closed
    closed: list = []
    sampled: list[int] = []  # samples recorded per probed block
    kinds: list[bool] = []  # per training step: was a probe attached?
    stalled: list[bool] = []

    class WatchedProbe(home.ActivationProbe):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            attached.append(self)

        def end_epoch(self, epoch, **kwargs):
            record = super().end_epoch(epoch, **kwargs)
            sampled.append(record["samples"])
            return record

        def close(self) -> None:
            super().close()
            attached.remove(self)
            closed.append(self)

    real_make = train_step.make_train_step

    def make_timed_step(*args, **kwargs):
        step = real_make(*args, **kwargs)

        def timed(x, y, acc):
            out = step(x, y, acc)  # the real step (the probe's hooks run in it)
            kinds.append(bool(attached))
            stall = 1.0 if closed and not attached and not stalled else 0.0
            if stall:
                stalled.append(True)  # once: the first baseline step after a probed block
            clock[0] += (0.003 if attached else 0.002) + stall
            return out

        return timed

    monkeypatch.setattr(home, "ActivationProbe", WatchedProbe)
    monkeypatch.setattr(home, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(train_step, "make_train_step", make_timed_step)  # imported at call time
    import gaaf.train.setup as train_setup  # where build_training, which the bench calls, takes it from

    for module in (home, train_setup):
        if hasattr(module, "make_train_step"):  # imported at module level
            monkeypatch.setattr(module, "make_train_step", make_timed_step)

    blocks, every = 3, 2
    res = measure_probe_overhead("mlp", "relu", batch_size=8, every=every, blocks=blocks, in_shape=(1, 4, 4))
    assert stalled == [True]
    assert res["baseline_seconds_per_step"] == pytest.approx(0.002, rel=1e-9)
    assert res["probe_seconds_per_step"] == pytest.approx(0.003, rel=1e-9)
    assert res["overhead_percent"] == pytest.approx(50.0, rel=1e-6)
    assert (res["blocks"], res["every"], res["device"], res["model"]) == (blocks, every, "cpu", "mlp")
    a, b = [False] * every, [True] * every
    assert kinds[-2 * blocks * every:] == a + b + b + a + a + b  # A B, B A, A B
    assert not attached and sampled == [1] * len(closed) and len(closed) >= blocks


def test_torch_compile_gives_the_same_record_without_recompiling_per_step() -> None:
    import torch._dynamo

    records = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = Tiny()
        net = torch.compile(model, backend="eager") if compiled else model
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        probe = ActivationProbe(net, every=2)
        assert probe.model is model
        for x in batches(8):
            train_call(net, x)
        records.append(probe.end_epoch(1))
    assert records[0] == records[1] and records[1]["samples"] == 4
    # sampled and plain steps each compile once; the step counter is not a guard
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 6
