"""Parameter initialisers with the distributions of Flax's, that compile in a fraction of the time.

Flax's ``orthogonal`` and ``lecun_normal`` draw their Gaussian numbers with one ``jax.random`` call *per
parameter shape*. XLA:CPU compiles each of those draws (the threefry hash and the inverse error function) as its
own kernel, about 0.4 s of compile time apiece; the six layers of PPO's actor-critic MLP spent 3.3 s of CPU
time compiling their initialisers, a quarter of the whole CartPole training program. The initialisers here draw
a fixed-size *bucket* of numbers instead (the next power of two at or above the count needed, at least 4096) and
use its first elements, so the layers of a network share one or two draw shapes, which XLA compiles once:
0.96 s of CPU time for the same six layers (2-core development CPU; see docs/decisions.md).

The numbers drawn are i.i.d. standard normals (or truncated normals) exactly as in Flax, only taken from a
longer stream, so the distributions are the same; the particular values for a given key differ from Flax's.

* :func:`orthogonal`: a random orthogonal matrix (QR of a Gaussian matrix with the sign of ``diag(R)`` fixed:
  the Haar measure), times ``scale`` (Flax's ``orthogonal``, same ``column_axis`` convention).
* :func:`lecun_normal`: truncated normal on ``[-2, 2]`` with variance ``1 / fan_in`` (Flax's ``lecun_normal``,
  the default kernel initialiser of ``nn.Dense`` and ``nn.Conv``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["orthogonal", "lecun_normal", "bucket_size", "MIN_BUCKET"]

Initializer = Callable[[jax.Array, Sequence[int], Any], jax.Array]

#: smallest number of values drawn per call
MIN_BUCKET = 4096

#: standard deviation of a standard normal truncated to [-2, 2] (Flax/JAX's variance-scaling correction)
_TRUNC_STD = 0.87962566103423978


def bucket_size(n: int) -> int:
    """The number of values drawn to obtain ``n``: the next power of two >= ``n``, at least :data:`MIN_BUCKET`."""
    return max(MIN_BUCKET, 1 << max(int(n) - 1, 0).bit_length())


def _normal(key: jax.Array, n: int, dtype) -> jax.Array:
    return jax.random.normal(key, (bucket_size(n),), dtype)[:n]


def orthogonal(scale: float = 1.0, column_axis: int = -1, dtype: Any = jnp.float32) -> Initializer:
    """A Flax-compatible initialiser ``init(key, shape, dtype) -> array`` of a (semi-)orthogonal matrix times
    ``scale``. ``shape`` has at least two axes; the ``column_axis`` is the matrix's columns, the product of the
    others its rows; with more rows than columns the columns are orthonormal, otherwise the rows are."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = dtype) -> jax.Array:
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2:
            raise ValueError(f"orthogonal initialiser needs a shape with >= 2 axes; got {shape}")
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        matrix_shape = (n_cols, n_rows) if n_rows < n_cols else (n_rows, n_cols)
        a = _normal(key, n_rows * n_cols, dtype).reshape(matrix_shape)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        if n_rows < n_cols:
            q = q.T
        q = q.reshape(tuple(np.delete(np.array(shape), column_axis % len(shape))) + (n_cols,))
        return jnp.asarray(scale, dtype) * jnp.moveaxis(q, -1, column_axis)

    return init


def lecun_normal(in_axis: int | Sequence[int] = -2, out_axis: int | Sequence[int] = -1,
                 dtype: Any = jnp.float32) -> Initializer:
    """A Flax-compatible initialiser: truncated normal on ``[-2, 2]`` scaled to variance ``1 / fan_in``, where
    ``fan_in`` is the product of the ``in_axis`` sizes times the receptive field (every axis that is neither an
    in nor an out axis), as in Flax's ``variance_scaling(1.0, "fan_in", "truncated_normal")``."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = dtype) -> jax.Array:
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2:
            raise ValueError(f"lecun_normal initialiser needs a shape with >= 2 axes; got {shape}")
        ins = (in_axis,) if isinstance(in_axis, int) else tuple(in_axis)
        outs = (out_axis,) if isinstance(out_axis, int) else tuple(out_axis)
        ins = tuple(a % len(shape) for a in ins)
        outs = tuple(a % len(shape) for a in outs)
        receptive = math.prod(s for i, s in enumerate(shape) if i not in ins + outs)
        fan_in = math.prod(shape[a] for a in ins) * receptive
        n = math.prod(shape)
        z = jax.random.truncated_normal(key, -2.0, 2.0, (bucket_size(n),), dtype)[:n]
        return (z * jnp.asarray(math.sqrt(1.0 / fan_in) / _TRUNC_STD, dtype)).reshape(shape)

    return init
