"""The activation-math tests once per CPU capability ATen can dispatch to on this machine.

ATen picks its kernels (and Inductor its vector ISA) once, at start-up, from the CPU or from
ATEN_CPU_CAPABILITY: default (no explicit SIMD), avx2, avx512. Near the overflow edge the kernels'
results differ between those paths (and between scalar tails and vector loops), so a result that
holds on one machine may not on another. Running the finite-in-finite-out, edge and exactness
tests in a subprocess per capability shows such a difference on any one machine that has them.

A capability the CPU (or this build) lacks is detected, not assumed: ATen then falls back to
another one, which the child reports, and that parameter is skipped with the reason. The
children run only the files below, never this one (and skip it should they be pointed at it).
Compiled kernels are not re-run per capability: a fresh Inductor compile takes a minute or more
per capability on a small CI machine.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_CHILD = "GAAF_TEST_CPU_CAPABILITY_CHILD"  # set in the children: no grandchildren
if os.environ.get(_CHILD):
    pytest.skip("inside a per-capability child run", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
CAPABILITIES = ("default", "avx2", "avx512")
#: finite in / finite out, the edges of every dtype, exactness against the reference (float64, 1e-12)
TESTS = (
    "tests/test_activations_math.py",
    "tests/test_activations_bases.py",
    "tests/test_keras.py::test_every_base_at_the_edges_matches_pytorch",
)


def _env(capability: str) -> "dict[str, str]":
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}  # conftest: one per capability
    return {**env, "ATEN_CPU_CAPABILITY": capability, _CHILD: "1"}


def _capability_in_effect(capability: str) -> str:
    """What ATen runs (lower case) when asked for `capability`, read in a fresh interpreter."""
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", probe], env=_env(capability), cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1].lower()


@pytest.mark.slow
@pytest.mark.parametrize("capability", CAPABILITIES)
def test_activation_math_under_cpu_capability(capability: str) -> None:
    got = _capability_in_effect(capability)
    if got != capability:
        pytest.skip(f"ATen runs {got!r} when asked for {capability!r}: this CPU or build lacks it")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                         env=_env(capability), cwd=ROOT, capture_output=True, text=True)
    lines = (run.stdout + run.stderr).splitlines()
    summary = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))] + lines[-1:]
    assert run.returncode == 0, (f"ATEN_CPU_CAPABILITY={capability}: the activation-math tests failed "
                                 f"(rerun the command with it set to see why):\n" + "\n".join(summary))
