"""ResNet20 v1 on CIFAR-10 in Keras 3 with GAAF activations (`gaaf.keras`), on the seed's recipe.

    pip install "gaaf[keras]" jax[cpu]          # or tensorflow, or torch: any Keras 3 backend
    KERAS_BACKEND=jax python examples/keras_resnet20.py --activation gaaf_relu --shift -1
    python examples/keras_resnet20.py --data-dir ~/data --epochs 1 --limit-train 2000   # a short run

Needs only keras, numpy, a Keras backend and gaaf (no PyTorch unless it is the backend).

Data: CIFAR-10 from ``keras.datasets.cifar10`` (downloaded once to ~/.keras), or ``--data-dir DIR``
holding the official python version (``DIR/cifar-10-batches-py/data_batch_1`` ... ``test_batch``, or
those files in DIR itself). Pixels x/255 minus the per-pixel mean image of the training images used.

Model: ``resnet_v1`` of the Keras CIFAR-10 example that the seed extended (He et al. 2015): a 3×3
conv-BN-act stem, three stages of n = (depth − 2)/6 basic blocks with 16/32/64 filters ([conv3×3,
BN, act, conv3×3, BN] + shortcut, act; a 1×1 conv shortcut where a stage halves the size),
8×8 average pooling and a softmax Dense; he_normal kernels, L2 1e-4 on every conv kernel, Keras
BatchNormalization (momentum 0.99, ε 1e-3). ResNet20: 273,066 trainable parameters, 19 activations.
Every activation is a fresh ``gaaf.keras`` layer of the chosen name, the stem's included; the seed's
own stem stayed relu (``--stem-activation relu`` reproduces that).

Recipe (``gaaf train``'s ``seed`` preset): Adam (lr 1e-3, β 0.9/0.999, ε 1e-7: Keras's defaults),
batch 128, 200 epochs, the seed's ``lr_schedule`` (lr ×0.1 / 0.01 / 0.001 / 0.0005 once the 0-based
epoch exceeds 80 / 120 / 160 / 180), no augmentation, the test set as validation data. The final
line gives the final and the best test accuracy.
"""
from __future__ import annotations

import argparse
import math
import pickle
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def lr_schedule(epoch: int, lr: float = 1e-3) -> float:
    """The seed's (the Keras example's) schedule; `epoch` counts from 0."""
    for after, factor in ((180, 0.5e-3), (160, 1e-3), (120, 1e-2), (80, 1e-1)):
        if epoch > after:
            return lr * factor
    return lr


def read_cifar10(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from the official python pickles: x uint8 (N, 32, 32, 3)."""
    folder = data_dir / "cifar-10-batches-py" if (data_dir / "cifar-10-batches-py").is_dir() else data_dir
    missing = [name for name in CIFAR_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} lacks {', '.join(missing)}: --data-dir must hold CIFAR-10's python version "
                         "(cifar-10-batches-py/data_batch_1..5, test_batch)")
    parts = []
    for name in CIFAR_FILES:
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # the official (Python 2) pickles: bytes keys, bytes data
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # NCHW → NHWC
        parts.append((x, np.asarray(batch["labels"], dtype=np.int64)))
    x_train = np.concatenate([x for x, _ in parts[:5]])
    y_train = np.concatenate([y for _, y in parts[:5]])
    return x_train, y_train, parts[5][0], parts[5][1]


def load_data(data_dir: "Path | None", limit_train: "int | None", limit_test: "int | None"):
    """CIFAR-10 as float32 NHWC, x/255 minus the per-pixel mean of the training images used; int labels."""
    if data_dir is None:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    else:
        x_train, y_train, x_test, y_test = read_cifar10(data_dir)
    x_train, y_train = x_train[:limit_train], y_train[:limit_train].reshape(-1)
    x_test, y_test = x_test[:limit_test], y_test[:limit_test].reshape(-1)
    x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255
    mean = x_train.mean(axis=0)  # (32, 32, 3): the seed's subtract_pixel_mean
    return x_train - mean, y_train, x_test - mean, y_test


def resnet_v1(depth: int, act: Callable[[], Any], stem_act: Callable[[], Any], input_shape=(32, 32, 3),
              num_classes: int = 10):
    """The Keras example's resnet_v1; `act` and `stem_act` make a fresh activation layer per site."""
    import keras
    from keras import layers

    def conv_bn_act(x, filters: int, kernel_size: int = 3, strides: int = 1, activation=None, batch_norm=True):
        x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", kernel_initializer="he_normal",
                          kernel_regularizer=keras.regularizers.L2(1e-4))(x)
        if batch_norm:
            x = layers.BatchNormalization()(x)
        return activation()(x) if activation is not None else x

    inputs = keras.Input(shape=input_shape)
    x = conv_bn_act(inputs, 16, activation=stem_act)
    filters = 16
    for stage in range(3):
        for block in range((depth - 2) // 6):
            strides = 2 if stage > 0 and block == 0 else 1
            y = conv_bn_act(x, filters, strides=strides, activation=act)
            y = conv_bn_act(y, filters)
            if strides == 2:  # the shortcut changes size and width: a 1×1 conv, no BN
                x = conv_bn_act(x, filters, kernel_size=1, strides=strides, batch_norm=False)
            x = act()(layers.add([x, y]))
        filters *= 2
    x = layers.Flatten()(layers.AveragePooling2D(pool_size=8)(x))
    outputs = layers.Dense(num_classes, activation="softmax", kernel_initializer="he_normal")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}_v1")


def parse_args(argv: "Sequence[str] | None") -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="keras_resnet20.py", description=__doc__.splitlines()[0])
    p.error = lambda message: p.exit(2, f"{p.prog}: error: {message} (see '{p.prog} --help')\n")  # one line
    p.add_argument("--activation", default="gaaf_relu", help="a gaaf.keras name: relu, gaaf_relu, gaaf_tanh, ... (default: gaaf_relu)")
    p.add_argument("--shift", type=float, help="--activation's sigmoid shape: s(x) = sigmoid(x + shift) (default: the activation's own)")
    p.add_argument("--stem-activation", help="the stem's activation (default: --activation; the seed's: relu)")
    p.add_argument("--depth", type=int, default=20, help="6n+2: 8, 14, 20, 32, 44, 56, 110 (default: 20)")
    p.add_argument("--data-dir", type=Path, help="folder with cifar-10-batches-py (default: keras.datasets, downloads)")
    p.add_argument("--limit-train", type=int, help="use the first N training images (default: all 50,000)")
    p.add_argument("--limit-test", type=int, help="use the first N test images (default: all 10,000)")
    p.add_argument("--epochs", type=int, default=200, help="passes over the training set (default: 200)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="keras.utils.set_random_seed (default: 0)")
    args = p.parse_args(argv)
    if args.depth < 8 or (args.depth - 2) % 6:
        p.error(f"--depth {args.depth}: must be 6n+2 with n >= 1 (8, 14, 20, 32, ...)")
    for flag in ("limit_train", "limit_test", "epochs", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} {value}: must be at least 1")
    if args.data_dir is not None and not args.data_dir.is_dir():
        p.error(f"--data-dir {args.data_dir}: no such folder")
    return args


def main(argv: "Sequence[str] | None" = None) -> int:
    args = parse_args(argv)
    import keras

    import gaaf.keras as gk

    act_params = {} if args.shift is None else {"shift": args.shift}  # --shift is --activation's
    act = (args.activation, act_params)
    stem = (args.stem_activation, {}) if args.stem_activation else act
    try:
        for name, params in (act, stem):
            gk.get_activation(name, **params)  # a bad name or parameter fails here, before the data are read
        x_train, y_train, x_test, y_test = load_data(args.data_dir, args.limit_train, args.limit_test)
    except ValueError as e:
        print(f"keras_resnet20.py: error: {e}", file=sys.stderr)
        return 2
    keras.utils.set_random_seed(args.seed)
    model = resnet_v1(args.depth, lambda: gk.get_activation(act[0], **act[1]), lambda: gk.get_activation(stem[0], **stem[1]))
    n_gaaf = sum(isinstance(layer, gk.GAAF) for layer in model.layers)
    n_params = sum(math.prod(w.shape) for w in model.trainable_weights)
    print(f"{model.name} on {keras.backend.backend()}: {n_params:,} trainable parameters, {n_gaaf} GAAF layers "
          f"({args.activation}{' ' + str(act_params) if act_params else ''}, stem {stem[0]}); {len(x_train)} training, {len(x_test)} test images")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr_schedule(0)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True,
                        validation_data=(x_test, y_test), callbacks=[keras.callbacks.LearningRateScheduler(lr_schedule)],
                        verbose=2)
    acc = history.history["val_accuracy"]
    best = int(np.argmax(acc))
    print(f"test accuracy: final {acc[-1]:.4f}, best {acc[best]:.4f} (epoch {best + 1} of {len(acc)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
