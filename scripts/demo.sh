#!/usr/bin/env bash
# The main job: a short, real experiment. ResNet20 v1 with relu and with gaaf_relu on a CIFAR-10
# subset for a couple of epochs; prints a two-row comparison table and saves learning curves (PNG).
#   bash scripts/demo.sh                 # results in runs/demo/ (report in runs/demo/report/)
# Data: $GAAF_DATA_DIR (default ~/.cache/gaaf); downloaded from the official URL if missing. On the
# development machines, which have no internet, the CIFAR-10 proxy in ../shared/data is written there.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
DATA="${GAAF_DATA_DIR:-$HOME/.cache/gaaf}"
OUT="${GAAF_DEMO_OUT:-runs/demo}"
PROXY="$ROOT/../shared/data/cifar10_jpeg75.py"
if [ ! -f "$DATA/cifar-10-batches-py/test_batch" ] && [ -f "$PROXY" ]; then
  echo "[gaaf] writing the CIFAR-10 JPEG proxy from ../shared/data to $DATA" >&2
  python "$PROXY" "$DATA" >&2
fi
gaaf plot activations --out "$OUT/activations"
gaaf sweep experiments/demo.toml --data-dir "$DATA" --out "$OUT"
gaaf report "$OUT"
