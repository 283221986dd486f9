"""Batch norm as Keras 2.2 on TensorFlow 1.x trained it: zero-debiased moving statistics.

PyTorch's ``BatchNorm2d`` (and Keras 3) keep ``moving = m·moving + (1 − m)·batch`` started from
mean 0 / variance 1, so with m = 0.99 the moving statistics still lean on their initial values
for the first few hundred steps and evaluation early in a run uses the wrong scale. Keras 2.2's
``BatchNormalization`` did this instead (channels-last 4-D input, TensorFlow backend):

1. ``K.normalize_batch_in_training`` → ``tf.nn.fused_batch_norm(x, γ, β, ε)``: the output is
   normalised with the batch mean μ_B and the *biased* batch variance σ²_B = mean((x − μ_B)²);
   the variance it returns is Bessel-corrected, σ²_B · n/(n − 1) (TF's FusedBatchNorm kernel,
   ``rest_size_adjust``), n = N·H·W values per channel.
2. ``BatchNormalization.call`` rescales that variance once more, "sample variance":
   ``variance *= n / (n − (1 + ε))``.
3. ``K.moving_average_update`` = ``assign_moving_average(moving, value, 0.99, zero_debias=True)``
   (TF's ``moving_averages._zero_debias``), per variable, with a = 1 − 0.99 (cast to the
   variable's dtype) and shadow variables ``biased`` (starts at 0) and ``local_step`` (starts at 0):

       biased     ← biased − (biased − value)·a
       local_step ← local_step + 1
       moving     ← moving − (moving − biased / (1 − (1 − a)^local_step))

   i.e. after t updates moving = (1 − m)·Σ_i m^(t−i)·value_i / (1 − m^t): the average of the
   values so far, not pulled toward the initial 0 / 1. Those initial values (moving mean 0,
   moving variance 1) are used only before the first training step.
4. At inference ``K.batch_normalization(x, moving_mean, moving_variance, β, γ, ε)``.

`KerasBatchNorm2d` does exactly this (ε = 1e-3, m = 0.99); the shadow variables are buffers, so
checkpoints carry them and a resumed run continues the same averages. ``moving_mean`` /
``moving_variance`` are the inherited ``running_mean`` / ``running_var`` buffers. TensorFlow keeps
one ``local_step`` per moving variable; both always advance together, so one is kept here.
``num_batches_tracked`` is kept (always equal to ``local_step``) so the state dict has BatchNorm's keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Keras 2 ``BatchNormalization()`` defaults.
KERAS_MOMENTUM = 0.99
KERAS_EPS = 1e-3


class KerasBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over (N, C, H, W) with Keras 2.2 / TF 1.x zero-debiased moving statistics (module doc).

    Train mode normalises with the batch statistics (biased variance) and updates the moving
    statistics; eval mode normalises with the moving statistics. Parameters γ (weight) and β (bias).
    """

    def __init__(self, num_features: int, eps: float = KERAS_EPS, keras_momentum: float = KERAS_MOMENTUM) -> None:
        if not 0.0 <= keras_momentum < 1.0:
            raise ValueError(f"keras_momentum must be in [0, 1), got {keras_momentum!r}")
        # PyTorch's momentum is the weight of the batch statistic: 1 − Keras momentum (for repr only;
        # the update below uses TensorFlow's own `1.0 − decay`)
        super().__init__(num_features, eps=eps, momentum=1.0 - keras_momentum)
        self.keras_momentum = float(keras_momentum)
        self.register_buffer("biased_mean", torch.zeros(num_features))
        self.register_buffer("biased_var", torch.zeros(num_features))
        self.register_buffer("local_step", torch.zeros(()))

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        if hasattr(self, "local_step"):  # nn.BatchNorm2d.__init__ calls this before our buffers exist
            self.biased_mean.zero_()
            self.biased_var.zero_()
            self.local_step.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"KerasBatchNorm2d expects (N, C, H, W) input, got shape {tuple(x.shape)}")
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        # batch statistics, biased variance, as the fused kernel normalises with
        y = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        self._update(x.detach())
        return y

    @torch.no_grad()
    def _update(self, x: torch.Tensor) -> None:
        """One Keras 2.2 moving-average update from the batch `x` (N, C, H, W); steps 1–3 of the module doc."""
        dtype = self.running_mean.dtype
        var, mean = torch.var_mean(x.to(dtype), dim=(0, 2, 3), unbiased=False)  # (C,), (C,)
        n = x.numel() // x.shape[1]  # values per channel
        bessel = n / (n - 1) if n > 1 else 1.0  # FusedBatchNorm's rest_size_adjust
        variance = var * bessel  # what fused_batch_norm returns
        variance = variance * (n / (n - (1.0 + self.eps)))  # Keras's "sample variance" rescaling
        a = torch.tensor(1.0 - self.keras_momentum, dtype=dtype, device=x.device)  # TF: 1.0 − decay, cast
        self.local_step += 1
        self.num_batches_tracked += 1
        bias_factor = 1 - torch.pow(1.0 - a, self.local_step)
        for moving, biased, value in ((self.running_mean, self.biased_mean, mean),
                                      (self.running_var, self.biased_var, variance)):
            biased.sub_((biased - value) * a)
            moving.sub_(moving - biased / bias_factor)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, keras_momentum={self.keras_momentum}, zero_debias=True"
