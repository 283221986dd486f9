"""The CIFAR-10 proxy in ../shared/data (skipped where absent): written out in the official
layout by its own script, then read by gaaf's loader exactly like the real data set."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gaaf.data import DeviceLoader, load_dataset, make_augment

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCRIPT = SHARED_DATA / "cifar10_jpeg75.py"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.skipif(not SCRIPT.is_file(), reason=f"{SCRIPT} not present"),
    # the script needs numpy and Pillow; Pillow comes with matplotlib, a gaaf dependency
    pytest.mark.skipif(importlib.util.find_spec("PIL") is None, reason="Pillow not installed"),
]


@pytest.fixture(scope="module")
def proxy_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cifar10proxy")
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, capture_output=True, timeout=300)
    return out


def test_proxy_loads_as_cifar10(proxy_dir):
    s = load_dataset("cifar10", proxy_dir, download=False)
    assert s.x_train.shape == (50000, 3, 32, 32) and s.x_test.shape == (10000, 3, 32, 32)
    assert s.num_classes == 10 and s.class_names[0] == "airplane" and s.class_names[-1] == "truck"
    assert torch.bincount(s.y_train, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(s.y_test, minlength=10).tolist() == [1000] * 10
    torch.testing.assert_close(s.x_train.mean(dim=0), torch.zeros(3, 32, 32), atol=1e-5, rtol=0)  # pixel mean off
    assert 0.4 < float(s.mean.mean()) < 0.55  # CIFAR's mean intensity is about 0.47


def test_proxy_prefix_is_roughly_balanced_and_loader_runs(proxy_dir):
    s = load_dataset("cifar10", proxy_dir, download=False, limit_train=1000, limit_test=100, normalize="channel")
    counts = torch.bincount(s.y_train, minlength=10)
    assert int(counts.min()) > 50  # a prefix of the shuffled set has every class
    loader = DeviceLoader(s.x_train, s.y_train, 128, augment=make_augment(["crop", "flip"]),
                          generator=torch.Generator().manual_seed(0))
    assert sum(len(yb) for _, yb in loader) == 1000
