"""Running mean and variance for observation normalisation, as a pure pytree.

Statistics are merged batch by batch with Chan et al.'s parallel update (exact, order-independent up to
float rounding), so feeding a rollout in one call or step by step gives the same mean/var::

    stats = RunningMeanStd.create(obs_shape)
    stats = update(stats, obs_batch)          # obs_batch: [..., *obs_shape]
    x = normalize(stats, obs, clip=10.0)      # (obs - mean) / sqrt(var + eps), clipped
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["RunningMeanStd", "update", "normalize"]


@struct.dataclass
class RunningMeanStd:
    """Population mean/variance of everything seen so far.

    ``mean``/``var``: float32 of the observation shape; ``count``: float32 scalar (a small prior ``1e-4``
    as in gymnasium's ``NormalizeObservation``, so the first normalisation is well defined).
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...], count: float = 1e-4) -> "RunningMeanStd":
        return cls(
            mean=jnp.zeros(shape, jnp.float32), var=jnp.ones(shape, jnp.float32), count=jnp.asarray(count, jnp.float32)
        )


def update(stats: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """Merge a batch ``[..., *shape]`` (any number of leading axes) into the statistics."""
    x = jnp.asarray(batch, jnp.float32).reshape((-1,) + stats.mean.shape)
    n = jnp.asarray(x.shape[0], jnp.float32)
    b_mean = jnp.mean(x, axis=0)
    b_var = jnp.var(x, axis=0)
    total = stats.count + n
    delta = b_mean - stats.mean
    mean = stats.mean + delta * (n / total)
    m2 = stats.var * stats.count + b_var * n + jnp.square(delta) * stats.count * n / total
    return RunningMeanStd(mean=mean, var=m2 / total, count=total)


def normalize(stats: RunningMeanStd, x: jax.Array, clip: float | jax.Array | None = 10.0, eps: float = 1e-8) -> jax.Array:
    """``(x - mean) / sqrt(var + eps)``, clipped to ``[-clip, clip]`` unless ``clip`` is None."""
    y = (jnp.asarray(x, jnp.float32) - stats.mean) / jnp.sqrt(stats.var + eps)
    return y if clip is None else jnp.clip(y, -clip, clip)
