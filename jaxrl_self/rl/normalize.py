"""Running mean and variance for observation normalisation, and reward scaling, as pure pytrees.

Statistics are merged batch by batch with Chan et al.'s parallel update (exact, order-independent up to
float rounding), so feeding a rollout in one call or step by step gives the same mean/var::

    stats = RunningMeanStd.create(obs_shape)
    stats = update(stats, obs_batch)          # obs_batch: [..., *obs_shape]
    x = normalize(stats, obs, clip=10.0)      # (obs - mean) / sqrt(var + eps), clipped

Reward scaling (:class:`RewardScale`, :func:`scale_rewards`) is gymnasium's / PureJaxRL's ``NormalizeVecReward``:
each environment keeps a discounted return ``G <- gamma * G * (1 - done) + r``; the variance of ``G`` over all
environments and steps so far is tracked, and each reward is divided by ``sqrt(var + eps)`` (not centred).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["RunningMeanStd", "update", "normalize", "RewardScale", "scale_rewards"]


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


@struct.dataclass
class RewardScale:
    """The state of :func:`scale_rewards`: statistics of the discounted return and each environment's return."""

    stats: RunningMeanStd  # of the scalar discounted return
    discounted_return: jax.Array  # [N] float32

    @classmethod
    def create(cls, num_envs: int) -> "RewardScale":
        return cls(stats=RunningMeanStd.create(()), discounted_return=jnp.zeros((num_envs,), jnp.float32))


def scale_rewards(state: RewardScale, rewards: jax.Array, dones: jax.Array, gamma: float | jax.Array,
                  eps: float = 1e-8) -> tuple[RewardScale, jax.Array]:
    """Scale a rollout's rewards ``[T, N]`` step by step as PureJaxRL's ``NormalizeVecReward`` does: at step ``t``,
    ``G = gamma * G * (1 - done_t) + r_t``, the statistics take the ``N`` values of ``G``, and ``r_t`` is divided by
    ``sqrt(var + eps)`` of the statistics *after* that update. Returns the new state and the scaled rewards."""

    def step(carry: RewardScale, x):
        r, d = x
        g = carry.discounted_return * gamma * (1.0 - d.astype(jnp.float32)) + r
        stats = update(carry.stats, g)
        return RewardScale(stats=stats, discounted_return=g), r / jnp.sqrt(stats.var + eps)

    state, scaled = jax.lax.scan(step, state, (jnp.asarray(rewards, jnp.float32), dones))
    return state, scaled
