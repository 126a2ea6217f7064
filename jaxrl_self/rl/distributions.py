"""Policy distributions as pure functions: the diagonal Gaussian of continuous-action PPO.

A diagonal Gaussian over ``A`` action dimensions with mean ``mu`` and log standard deviation ``log_sigma`` (both
``[..., A]``, or ``log_sigma`` broadcastable, e.g. a state-independent ``[A]`` parameter)::

    log p(a) = sum_i [ -(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi) / 2 ]
    H        = sum_i [ log sigma_i + (1 + log(2 pi)) / 2 ]

the log-probability and entropy of ``distrax.MultivariateNormalDiag(mu, exp(log_sigma))`` (tested against it and
against hand values in ``tests/test_rl_math.py``), written out so the rollout and the loss do not build distrax
objects. A sample is ``mu + sigma * eps`` with ``eps ~ N(0, I)`` drawn for a whole rollout at once
(:func:`gaussian_noise`), like the categorical policy's Gumbel noise.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["gaussian_log_prob", "gaussian_entropy", "gaussian_sample", "gaussian_noise"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """``log N(action; mean, diag(exp(log_std))^2)``, summed over the last (action) axis: ``[...]``."""
    log_std = jnp.broadcast_to(log_std, mean.shape)
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - _HALF_LOG_2PI, axis=-1)


def gaussian_entropy(mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Entropy of the diagonal Gaussian, summed over the action axis: ``[...]`` (the shape of ``mean[..., 0]``)."""
    log_std = jnp.broadcast_to(log_std, mean.shape)
    return jnp.sum(log_std + 0.5 + _HALF_LOG_2PI, axis=-1)


def gaussian_sample(mean: jax.Array, log_std: jax.Array, noise: jax.Array) -> jax.Array:
    """``mean + exp(log_std) * noise`` for standard normal ``noise`` of ``mean``'s shape."""
    return mean + jnp.exp(log_std) * noise


def gaussian_noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal float32 noise of ``shape`` for :func:`gaussian_sample`."""
    return jax.random.normal(key, shape, jnp.float32)
