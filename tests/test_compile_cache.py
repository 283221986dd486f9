"""The fused GAAF kernels' one-off compile: said once per process, saved in gaaf's keyed on-disk cache
(a broken entry is compiled again), and left out of the throughput columns. The compiler is faked
here (fast, any machine); the real save-and-load round trip is the slow test at the end."""
from __future__ import annotations

import csv
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from gaaf.activations import compile_cache, fused, kernels
from gaaf.activations.pointwise import _fwd
from gaaf.activations.spec import GAAFSpec
from gaaf.train import engine, resolve_config, train

N = 1 << 16  # above kernels.EAGER_COMPILE_MIN_NUMEL
MESSAGE = "gaaf: compiling the fused GAAF kernels"


class _FakeCompiled:
    """Stands in for a ``torch.compile``d kernel: ``aot_compile`` "compiles" (records the call) and
    returns the plain Python function; serializing it fails, so nothing is saved."""

    def __init__(self, fn, log):
        self.fn, self.log = fn, log

    def __call__(self, *args):
        return self.fn(*args)

    def aot_compile(self, example):
        self.log.append(self.fn.__name__)
        return _FakeAOT(self.fn)


class _FakeAOT:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def disable_guard_check(self):
        pass


@pytest.fixture
def fake_compile(monkeypatch, tmp_path):
    """Compiled kernels on, the compiler faked, the cache in tmp_path; a clean slate before and after."""
    compiled = []
    monkeypatch.setenv("GAAF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GAAF_QUIET", raising=False)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: _FakeCompiled(fn, compiled))
    kernels._reset_for_tests()
    fused.set_eager_compile(True)
    yield compiled
    fused.set_eager_compile(None)
    kernels._reset_for_tests()


def test_compile_message_said_once_per_process(fake_compile, capsys):
    x = torch.randn(N)
    for spec in (GAAFSpec.build("relu", "sigmoid"), GAAFSpec.build("tanh", "gaussian")):
        kernels.forward_flat(x, spec)
        kernels.backward_flat(x, torch.ones(N), spec)
    assert sorted(name.rsplit("_", 1)[1] for name in fake_compile) == ["bwd", "bwd", "fwd", "fwd"]  # 4 compiles
    lines = [line for line in capsys.readouterr().err.splitlines() if MESSAGE in line]
    assert lines == [f"{MESSAGE} (once per machine; cached in {compile_cache.cache_dir()})"]


def test_compile_message_silenced_by_gaaf_quiet(fake_compile, capsys, monkeypatch):
    monkeypatch.setenv("GAAF_QUIET", "1")
    kernels.forward_flat(torch.randn(N), GAAFSpec.build("relu", "sigmoid"))
    assert fake_compile and MESSAGE not in capsys.readouterr().err


def test_cache_dir_is_keyed_by_python_torch_cpu_capability_and_gaaf(monkeypatch, tmp_path):
    import gaaf

    monkeypatch.setenv("GAAF_CACHE_DIR", str(tmp_path / "c"))
    key = compile_cache.cache_key()
    for part in (f"py{sys.version_info[0]}.{sys.version_info[1]}", f"torch{torch.__version__}",
                 torch.backends.cpu.get_cpu_capability(), f"gaaf{gaaf.__version__}"):
        assert part in key
    assert compile_cache.cache_dir() == tmp_path / "c" / "compile" / key
    monkeypatch.delenv("GAAF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.cache_dir() == tmp_path / "xdg" / "gaaf" / "compile" / key
    # a kernel's file depends on its direction and dtype (and spec constants, via its source)
    a = compile_cache.entry_path("src", torch.float32, "cpu", "fwd")
    assert a.parent == compile_cache.cache_dir()
    assert len({a, compile_cache.entry_path("src", torch.float64, "cpu", "fwd"),
                compile_cache.entry_path("src", torch.float32, "cpu", "bwd"),
                compile_cache.entry_path("src2", torch.float32, "cpu", "fwd")}) == 4


def test_kernels_are_per_thread_count(fake_compile):
    """Inductor's CPU code fixes its thread count when generated and the kernels run unguarded, so a
    kernel built under one torch thread count is never used under another, in memory or on disk."""
    spec = GAAFSpec.build("relu", "sigmoid", shift=-1.0)
    x = torch.randn(N)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernels._kernels(spec, x)
        kernels.forward_flat(x, spec)
        torch.set_num_threads(2)
        two = kernels._kernels(spec, x)
        kernels.forward_flat(x, spec)
    finally:
        torch.set_num_threads(before)
    assert one is not two and len(fake_compile) == 2  # one forward compiled per thread count
    assert [k._path.name.split("-")[:2] for k in one] == [["fwd", "t1"], ["bwd", "t1"]]
    assert [k._path.name.split("-")[:2] for k in two] == [["fwd", "t2"], ["bwd", "t2"]]
    assert kernels._kernels(spec, x) is (one if before == 1 else two if before == 2 else kernels._kernels(spec, x))


def test_corrupt_cache_entry_warns_once_and_compiles(fake_compile):
    spec = GAAFSpec.build("relu", "sigmoid", shift=-1.0)
    x = torch.randn(N)
    kernels._kernels(spec, x)  # builds (not yet compiles) the kernels: their cache files are known
    fwd, bwd = kernels._cache[kernels.cache_key(spec, x)]
    for k in (fwd, bwd):
        k._path.parent.mkdir(parents=True, exist_ok=True)
        k._path.write_bytes(b"not a compiled kernel")
    with pytest.warns(RuntimeWarning, match="ignoring the unusable compiled-kernel cache entry") as caught:
        y = kernels.forward_flat(x, spec)
        g = kernels.backward_flat(x, torch.ones(N), spec)
    assert len([w for w in caught if "compiled-kernel cache" in str(w.message)]) == 1  # one warning for both
    assert len(fake_compile) == 2  # both compiled instead
    torch.testing.assert_close(y, _fwd(x, spec), rtol=0, atol=0)
    assert kernels.compile_failure() is None and g.shape == x.shape


def test_compile_seconds_count_the_first_calls(fake_compile, monkeypatch):
    clock = iter([10.0, 13.5, 20.0, 20.25])  # two first calls: 3.5 s and 0.25 s
    monkeypatch.setattr(kernels, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    before = kernels.compile_seconds()
    x = torch.randn(N)
    spec = GAAFSpec.build("relu", "sigmoid")
    kernels.forward_flat(x, spec)
    kernels.backward_flat(x, torch.ones(N), spec)
    kernels.forward_flat(x, spec)  # not a first call: not timed (the clock would run out)
    assert kernels.compile_seconds() - before == 3.75


def test_images_per_second_leaves_out_compile_seconds(monkeypatch, tmp_path, fake_cifar10_dir):
    """A fake clock: each training epoch takes 10 s, 4 of them compiling in the first epoch only."""
    now, compiled, epoch_n = [1000.0], [0.0], []
    real_epoch = engine._train_epoch

    def epoch_with_compile(run, *args):
        sums = real_epoch(run, *args)
        now[0] += 10.0
        if not epoch_n:
            compiled[0] += 4.0
        epoch_n.append(sums[2])
        return sums

    monkeypatch.setattr(engine, "_train_epoch", epoch_with_compile)
    monkeypatch.setattr(engine, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(engine, "kernels", types.SimpleNamespace(compile_seconds=lambda: compiled[0]))
    cfg = resolve_config(overrides=dict(model="mlp", hidden=[8], epochs=2, batch_size=16, data_dir=str(fake_cifar10_dir),
                                        download=False, device="cpu", out=str(tmp_path / "run")))
    train(cfg, progress=False, log=False)
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["epoch_seconds"]) for r in rows] == [10.0, 10.0]  # wall time, compile included
    # n / (10 - 4) then n / 10 (metrics.csv rounds to 3 significant digits)
    assert [float(r["images_per_second"]) for r in rows] == pytest.approx([epoch_n[0] / 6.0, epoch_n[1] / 10.0], rel=1e-2)


@pytest.mark.slow
def test_real_kernels_round_trip_through_the_cache(tmp_path):
    """Compile in one process, load in another (no compile message there), same numbers as plain."""
    script = (
        "import sys, torch; from gaaf.activations import kernels, fused; from gaaf.activations.spec import GAAFSpec\n"
        "from gaaf.activations.pointwise import _fwd, _bwd\n"
        "fused.set_eager_compile(True); s = GAAFSpec.build('relu', 'sigmoid'); torch.manual_seed(0)\n"
        "x = torch.randn(1 << 16); g = torch.randn(1 << 16)\n"
        "y = kernels.forward_flat(x, s); d = kernels.backward_flat(x, g, s)\n"
        "assert kernels.compile_failure() is None, kernels.compile_failure()\n"
        "torch.testing.assert_close((y, d), (_fwd(x, s), _bwd(x, g, s)))\n"
        "print('compile_seconds', kernels.compile_seconds() > 0)\n"
    )
    env = {**__import__("os").environ, "GAAF_CACHE_DIR": str(tmp_path / "cache"), "GAAF_NO_COMPILE": "0"}
    env.pop("GAAF_QUIET", None)
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert MESSAGE in first.stderr
    saved = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "compile").rglob("*.bin"))
    assert saved == ["bwd", "fwd"]
    second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert MESSAGE not in second.stderr and "Warning" not in second.stderr  # loaded, not compiled
