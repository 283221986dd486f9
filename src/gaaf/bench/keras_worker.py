"""The seed's Keras stack for `gaaf bench keras`, built and stepped in a process of its own.

Keras on TensorFlow leaves the process it ran in slower for PyTorch: after a few ``train_on_batch``
calls in the same process, gaaf's compiled ResNet20 step ran 20–25% slower on this project's 2-core
Xeon (≈350 → ≈265 img/s, three times the page faults per step), so timing both stacks in one
process understated gaaf. Each stack runs as its users run it, in its own process: the Keras model
lives in a worker process (:class:`KerasWorker`, ``python -m gaaf.bench.keras_worker``) that
imports Keras and its backend (torch only where that is the backend) and steps it on request; the
parent times each request (the pipe's round trip, well under a millisecond, is inside Keras' time),
alternating with gaaf's steps as :mod:`._timing` does.

:func:`keras_resnet_v1` is the Keras example's ``resnet_v1`` (``examples/cifar10_resnet.py``), layer
for layer: ``resnet_layer`` = Conv2D ("same", he_normal, ``l2(1e-4)``) - BatchNormalization -
activation, 1×1 projection shortcuts (no BN, no activation) where a stage starts, add, activation,
AveragePooling2D(8), Flatten, Dense softmax, compiled with Adam(1e-3) and categorical cross-entropy.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError

ACTIVATIONS = {"relu": {}, "gaaf_relu": {"shift": -1.0}}
_BACKENDS = ("tensorflow", "jax", "torch")
_START_TIMEOUT_S = 600.0  # importing TensorFlow and building the model; the first step compiles later
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding the gaaf package


def resolve_backend(backend: "str | None" = None) -> str:
    """`backend`, else ``KERAS_BACKEND``, else the first of tensorflow, jax, torch installed
    (UserError naming what to install where none is, or the choices for an unknown one)."""
    backend = backend or os.environ.get("KERAS_BACKEND") or next(
        (b for b in _BACKENDS if importlib.util.find_spec(b) is not None), None)
    if backend is None:
        raise UserError("gaaf bench keras needs a Keras backend: install tensorflow, jax or torch")
    if backend not in _BACKENDS:
        raise UserError(f"unknown Keras backend {backend!r}; choose one of: {', '.join(_BACKENDS)}")
    return backend


def import_keras(backend: "str | None" = None) -> Any:
    """Keras 3 on `backend` (None: as :func:`resolve_backend`). UserError with what to install or set
    when that is impossible."""
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
        if backend is not None and keras.backend.backend() != backend:
            raise UserError(f"Keras is already loaded with the {keras.backend.backend()} backend; run again with "
                            f"KERAS_BACKEND={backend}")
        return keras
    backend = resolve_backend(backend)
    os.environ["KERAS_BACKEND"] = backend
    try:
        import keras
    except ImportError as e:
        raise UserError(f"gaaf bench keras needs Keras 3 with the {backend} backend ({e.name or e} missing): "
                        "pip install keras, or set KERAS_BACKEND to an installed backend") from None
    if not keras.__version__.startswith("3"):
        raise UserError(f"gaaf bench keras needs Keras 3, found {keras.__version__}")
    return keras


def keras_resnet_v1(keras: Any, depth: int, activation: str, input_shape: Sequence[int] = (32, 32, 3),
                    num_classes: int = 10) -> Any:
    """The Keras example's resnet_v1 (depth 6n+2) with `activation` ("relu" or "gaaf_relu") at every site."""
    if (depth - 2) % 6 or depth < 8:
        raise UserError(f"the Keras ResNet v1 depth must be 6n+2 (8, 14, 20, ...), got {depth}")
    from .. import keras as gaaf_keras  # gaaf's Keras layer: imports Keras, never torch

    layers, reg = keras.layers, keras.regularizers.l2(1e-4)

    def act() -> Any:
        return gaaf_keras.get_activation(activation, **ACTIVATIONS[activation])

    def resnet_layer(x: Any, filters: int, kernel: int = 3, strides: int = 1, activation_on: bool = True,
                     batch_norm: bool = True) -> Any:
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer="he_normal",
                          kernel_regularizer=reg)(x)
        if batch_norm:
            x = layers.BatchNormalization()(x)
        return act()(x) if activation_on else x

    inputs = keras.Input(shape=tuple(input_shape))
    x, filters = resnet_layer(inputs, 16), 16
    for stack in range(3):
        for block in range((depth - 2) // 6):
            strides = 2 if stack > 0 and block == 0 else 1
            y = resnet_layer(x, filters, strides=strides)
            y = resnet_layer(y, filters, activation_on=False)
            if stack > 0 and block == 0:  # linear projection shortcut
                x = resnet_layer(x, filters, kernel=1, strides=strides, activation_on=False, batch_norm=False)
            x = act()(layers.add([x, y]))
        filters *= 2
    x = layers.Flatten()(layers.AveragePooling2D(pool_size=8)(x))
    outputs = layers.Dense(num_classes, activation="softmax", kernel_initializer="he_normal")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _serve(inp: Any, out: Any) -> None:
    """The worker's loop: read the set-up, build the model, answer ("ready", Keras version,
    backend), then run the set-up's `steps` ``train_on_batch`` calls per "run" until "stop"."""
    try:
        setup = pickle.load(inp)
        keras = import_keras(setup["backend"])
        _set_threads(keras, setup.get("threads"))
        keras.utils.set_random_seed(0)
        images, one_hot = setup["images"], setup["one_hot"]
        net = keras_resnet_v1(keras, setup["depth"], setup["activation"], input_shape=images.shape[1:])
        _send(out, ("ready", keras.__version__, keras.backend.backend()))
        while pickle.load(inp) == "run":
            for _ in range(setup["steps"]):
                net.train_on_batch(images, one_hot)
            _send(out, ("done",))
    except EOFError:  # the parent went away
        return
    except UserError as err:  # what to install or set: the parent reports it as is
        _send(out, ("usererror", str(err)))
    except Exception as err:  # noqa: BLE001 - reported to the parent as one line
        _send(out, ("error", f"{type(err).__name__}: {err}"))


def _set_threads(keras: Any, threads: "int | None") -> None:
    """The parent's torch thread count for the backend's intra-op work (TensorFlow: its intra- and
    inter-op pools; torch: ``set_num_threads``; JAX: OMP_NUM_THREADS from the parent, as XLA reads it)."""
    if threads is None:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)


def _send(out: Any, message: object) -> None:
    pickle.dump(message, out)
    out.flush()


def main() -> None:
    """``python -m gaaf.bench.keras_worker``: the protocol on stdin/stdout (pickles); anything else
    the libraries print goes to stderr."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (Keras, TensorFlow) must not reach the protocol
    _serve(sys.stdin.buffer, out)


class KerasWorker:
    """A Keras ResNet v1 in a process of its own (``python -m gaaf.bench.keras_worker``); calling the
    worker runs `steps` training steps there and returns when they are done. ``close()`` (or the
    context manager) stops it."""

    def __init__(self, backend: str, depth: int, activation: str, images: Any, one_hot: Any, steps: int,
                 threads: "int | None" = None) -> None:
        self._log = tempfile.TemporaryFile()  # the worker's stderr, for the error message
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.pathsep.join(
            p for p in (_SOURCE_ROOT, os.environ.get("PYTHONPATH")) if p)}
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        self._proc = subprocess.Popen([sys.executable, "-m", "gaaf.bench.keras_worker"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._log, env=env)
        _send(self._proc.stdin, {"backend": backend, "depth": depth, "activation": activation, "images": images,
                                 "one_hot": one_hot, "steps": steps, "threads": threads})
        reply = self._receive(_START_TIMEOUT_S)
        self.keras_version, self.backend = reply[1], reply[2]

    def _receive(self, timeout: "float | None" = None) -> tuple:
        stdout = self._proc.stdout
        if timeout is not None and not select.select([stdout], [], [], timeout)[0]:
            self.close()
            raise UserError(f"the Keras worker did not start within {timeout:.0f} s")
        try:
            reply = pickle.load(stdout)
        except EOFError:
            code = self._proc.wait()
            detail = self._last_log_line()
            self.close()
            raise UserError(f"the Keras worker exited (code {code}) before answering"
                            + (f": {detail}" if detail else "")) from None
        if reply[0] in ("error", "usererror"):
            self.close()
            raise UserError(reply[1] if reply[0] == "usererror"
                            else f"the Keras model failed in its worker: {reply[1]}")
        return reply

    def _last_log_line(self) -> str:
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def __call__(self) -> None:
        _send(self._proc.stdin, "run")
        self._receive()

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                _send(self._proc.stdin, "stop")
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._log):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> "KerasWorker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ACTIVATIONS", "KerasWorker", "import_keras", "keras_resnet_v1", "resolve_backend"]


if __name__ == "__main__":
    main()
