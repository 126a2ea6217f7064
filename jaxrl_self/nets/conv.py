"""A ``k x k``, stride-1, VALID convolution computed as one matrix product of image patches.

:class:`PatchConv` computes what ``flax.linen.Conv(features, (k, k), padding="VALID")`` computes, with the same
parameters (``kernel [k, k, C, F]``, ``bias [F]``, created in the same order, so the same key initialises the
same values and checkpoints load into either), as ``patches [B, H', W', k*k*C] @ kernel.reshape(k*k*C, F)``.
The output equals the convolution's up to floating-point summation order (tests/test_nets.py).

Why: XLA:CPU (jaxlib 0.10) computes the *weight gradient* of a small convolution inside a ``while`` loop
(a ``lax.scan`` over PPO epochs) far slower than the same gradient outside a loop: for the maze student's
3x3x3x16 conv on 256 x 32 observations, forward + backward ran 17-24x slower in the epoch loop, about a third of
each PPO epoch (benchmarks/results/ued_maze_profile.md). The patches' matrix product has no such cliff, and its
forward pass is also faster at rollout batch sizes. The extracted patches are ``k*k`` times the
image (9 x 75 floats per maze observation), small next to the LSTM's activations.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.initializers import zeros_init

from jaxrl_self.nets.initializers import lecun_normal

__all__ = ["PatchConv", "image_patches"]


def image_patches(x: jax.Array, k: int) -> jax.Array:
    """``[B, H, W, C] -> [B, H-k+1, W-k+1, k*k*C]``: the ``k x k`` patch at every VALID position, flattened in
    the kernel's ``(row, column, channel)`` order."""
    _, h, w, _ = x.shape
    oh, ow = h - k + 1, w - k + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"PatchConv: a {k}x{k} kernel does not fit a {h}x{w} image")
    cols = [x[:, i:i + oh, j:j + ow, :] for i in range(k) for j in range(k)]
    return jnp.concatenate(cols, axis=-1)


class PatchConv(nn.Module):
    """``Conv(features, (kernel_size, kernel_size), strides=1, padding="VALID")`` on ``[B, H, W, C]`` as a
    matrix product of patches (see the module docstring)."""

    features: int
    kernel_size: int = 3
    kernel_init: Callable[..., Any] = lecun_normal()
    bias_init: Callable[..., Any] = zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, c = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, c, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        patches = image_patches(jnp.asarray(x, jnp.float32), k)
        return patches @ kernel.reshape(k * k * c, self.features) + bias
