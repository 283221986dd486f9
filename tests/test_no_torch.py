"""gaaf without PyTorch: every PyTorch feature says in one line how to install it, `gaaf.keras` runs
on a real Keras backend, and `pip install gaaf[keras]` does not pull torch (the pure-Python tables and
gaaf.keras against a stand-in Keras: test_activations_catalog.py).

Runs in both CI environments: with torch installed, each check runs in a subprocess where
``sys.modules["torch"] = None`` makes ``import torch`` fail as it does where torch is absent; in the
Keras-on-JAX environment (scripts/env-keras-jax.sh) torch is really absent.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ModuleNotFoundError
FIX = "needs PyTorch: pip install 'gaaf[torch]'"
TORCH_INSTALLED = importlib.util.find_spec("torch") is not None


def run_without_torch(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@pytest.mark.parametrize("expr, feature", [
    ("gaaf.GAAF", "gaaf.GAAF"),
    ("gaaf.get_activation('gaaf_relu')", "gaaf.get_activation"),
    ("gaaf.functional", "gaaf.functional"),
    ("gaaf.activations.GAAF", "gaaf.activations.GAAF"),
    ("importlib.import_module('gaaf.functional')", "gaaf.functional"),
    ("importlib.import_module('gaaf.models')", "gaaf.models"),
    ("importlib.import_module('gaaf.data')", "gaaf.data"),
    ("importlib.import_module('gaaf.train')", "gaaf.train"),
    ("importlib.import_module('gaaf.experiments')", "gaaf.experiments"),
    ("importlib.import_module('gaaf.plots')", "gaaf.plots"),
])
def test_torch_features_name_the_fix(expr: str, feature: str) -> None:
    code = (
        "import importlib, gaaf, gaaf.activations\n"
        f"try:\n    {expr}\n"
        "except ImportError as e:\n    print(isinstance(e, ModuleNotFoundError), e.name, e, sep='|')\n"
    )
    r = run_without_torch(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"True|torch|{feature} {FIX}"


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "1"], f"gaaf: error: gaaf train {FIX}"),
    (["report", "runs/x"], f"gaaf: error: gaaf report {FIX}"),
    (["--help"], f"gaaf: error: gaaf {FIX}"),
])
def test_cli_says_one_line_and_exits_2(argv: list[str], message: str) -> None:
    code = f"import runpy; sys.argv = ['gaaf', *{argv!r}]; runpy.run_module('gaaf', run_name='__main__')"
    r = run_without_torch(code)
    assert (r.returncode, r.stderr, r.stdout) == (2, message + "\n", "")


def test_cli_version_needs_no_torch() -> None:
    r = run_without_torch("import runpy; sys.argv = ['gaaf', '--version']; runpy.run_module('gaaf', run_name='__main__')")
    assert (r.returncode, r.stdout, r.stderr) == (0, "gaaf 0.1.0\n", "")


@pytest.mark.skipif(TORCH_INSTALLED, reason="the installed `gaaf` command would train: torch is installed here")
def test_installed_command_without_torch() -> None:
    gaaf_cmd = Path(sys.executable).with_name("gaaf")
    if not gaaf_cmd.exists():
        pytest.skip(f"gaaf is not installed as a command beside {sys.executable}")
    r = subprocess.run([str(gaaf_cmd), "train", "--epochs", "1"], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr) == (2, f"gaaf: error: gaaf train {FIX}\n")


def _non_torch_backend() -> "str | None":
    return next((b for b in ("jax", "tensorflow") if importlib.util.find_spec(b) is not None), None)


@pytest.mark.skipif(_non_torch_backend() is None, reason="needs jax or tensorflow for a Keras backend other than torch")
def test_keras_layer_runs_without_torch() -> None:
    code = (
        "import numpy as np, keras, gaaf.keras as gk\n"
        "y = gk.get_activation('gaaf_relu', shape='none')(np.array([-1.0, 0.5], dtype='float32'))\n"
        "print(keras.backend.backend(), [round(float(v), 5) for v in keras.ops.convert_to_numpy(y)])\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    backend = _non_torch_backend()
    r = run_without_torch(code, KERAS_BACKEND=backend)
    assert r.returncode == 0, r.stderr
    # gaaf_relu with s ≡ 1 at -1 and 0.5: relu + g, g = (frac(xK) − 0.5)/K = −0.5/K at multiples of 1/K
    assert r.stdout.splitlines() == [f"{backend} [-5e-05, 0.49995]", "['torch']"]


def test_keras_install_does_not_pull_torch() -> None:
    """torch is the `torch` extra: neither the dependencies nor the keras extra name it, and the
    PyTorch set-up (scripts/env.sh) installs the extra."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name = lambda req: req.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()
    assert "torch" not in {name(r) for r in project["dependencies"] + project["optional-dependencies"]["keras"]}
    assert [name(r) for r in project["optional-dependencies"]["torch"]] == ["torch"]
    assert '-e "$ROOT[torch,$EXTRAS]"' in (ROOT / "scripts" / "env.sh").read_text(encoding="utf-8")
