"""`gaaf train` on real images: ResNet20 v1 for two epochs on 10,000 CIFAR-10 (JPEG-75 proxy) images.

Needs ../shared/data (skipped where absent). Takes a few minutes on a 2-core CPU."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gaaf.cli import main

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WRITER = SHARED_DATA / "cifar10_jpeg75.py"

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def proxy_dir(tmp_path_factory) -> Path:
    if not WRITER.is_file() or not (SHARED_DATA / "cifar10-jpeg75.npz").is_file():
        pytest.skip(f"no CIFAR-10 proxy at {SHARED_DATA}")
    pytest.importorskip("PIL", reason="the proxy writer needs Pillow")
    dest = tmp_path_factory.mktemp("cifar10_proxy")
    subprocess.run([sys.executable, str(WRITER), str(dest)], check=True, capture_output=True, timeout=600)
    return dest


def test_resnet20_v1_gaaf_two_epochs_on_10k_real_images_at_the_seeds_batch_128(proxy_dir, tmp_path, capsys):
    out = tmp_path / "resnet20"
    # issue G's acceptance run: the seed preset as it is (batch 128: 158 steps), GAAF at the seed's best shift;
    # evaluation with precise BatchNorm statistics (the moving averages alone read ~25% here)
    rc = main(["train", "--model", "resnet20_v1", "--activation", "gaaf_relu", "--shift", "-1", "--epochs", "2",
               "--limit-train", "10000", "--limit-test", "2000", "--data-dir", str(proxy_dir), "--no-download",
               "--device", "cpu", "--out", str(out), "--quiet"])
    assert rc == 0
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((out / "summary.json").read_text())
    print("\n".join(f"epoch {r['epoch']}: test_acc {r['test_acc']} train_loss {r['train_loss']} "
                    f"{r['images_per_second']} img/s" for r in rows))
    assert len(rows) == 2 and summary["status"] == "finished"
    assert summary["parameters"] == 273066  # Keras' ResNet20 v1
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert summary["final_test_acc"] > 0.30
