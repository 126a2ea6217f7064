"""Policy-gradient losses as small pure functions.

Every function takes arrays of any (matching) shape: ``[B]`` samples, ``[T, N]`` steps, ``[B, L]`` tokens.
An optional ``mask`` (same shape, bool or float) selects the entries that count; reductions are then
**token-means**: ``sum(mask * x) / max(sum(mask), 1)``, i.e. every valid entry weighs the same. Without a
mask the plain mean is taken.

Sign conventions: ``*_loss`` functions return quantities to *minimise*; the PPO objective is
``policy_loss + vf_coef * value_loss - ent_coef * entropy``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "masked_mean",
    "normalize_advantages",
    "PolicyLossStats",
    "ppo_policy_loss",
    "value_loss",
    "entropy_bonus",
    "approx_kl",
    "kl_k3",
    "clip_fraction",
]


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``x`` over all entries, or over the entries where ``mask`` is true (0 when none are)."""
    if mask is None:
        return jnp.mean(x)
    m = mask.astype(x.dtype)
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def normalize_advantages(advantages: jax.Array, mask: jax.Array | None = None, eps: float = 1e-8) -> jax.Array:
    """``(A - mean) / (std + eps)`` over all (valid) entries. Masked-out entries are returned as 0."""
    mean = masked_mean(advantages, mask)
    var = masked_mean(jnp.square(advantages - mean), mask)
    out = (advantages - mean) / (jnp.sqrt(var) + eps)
    return out if mask is None else jnp.where(mask, out, 0.0)


class PolicyLossStats(NamedTuple):
    """Diagnostics of one policy-loss evaluation (scalars, no gradient flows through them)."""

    approx_kl: jax.Array
    clip_fraction: jax.Array


def ppo_policy_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    clip_eps: float | jax.Array,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, PolicyLossStats]:
    """PPO's clipped surrogate (Schulman et al., 2017), to minimise.

    ``L = -mean( min(ρ A, clip(ρ, 1 - ε, 1 + ε) A) )`` with ``ρ = exp(logp - old_logp)``.

    Args:
      logp: log-probabilities of the taken actions under the current parameters (differentiated).
      old_logp: the same under the parameters that collected the data (constants).
      advantages: already normalised if desired (see :func:`normalize_advantages`).
      clip_eps: ε (may be traced).
      mask: optional; token-mean over the valid entries.
    """
    log_ratio = logp - old_logp
    ratio = jnp.exp(log_ratio)
    surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages)
    loss = -masked_mean(surrogate, mask)
    stats = PolicyLossStats(
        approx_kl=jax.lax.stop_gradient(approx_kl(logp, old_logp, mask)),
        clip_fraction=jax.lax.stop_gradient(clip_fraction(ratio, clip_eps, mask)),
    )
    return loss, stats


def value_loss(
    values: jax.Array,
    old_values: jax.Array,
    returns: jax.Array,
    clip_eps: float | jax.Array | None = None,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Squared-error value loss ``0.5 * mean((V - R)^2)``, optionally clipped as in PPO's reference code.

    With ``clip_eps``: ``0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -ε, ε) - R)^2))``, which stops
    the value moving more than ε away from the value that collected the data in one update.
    """
    err = jnp.square(values - returns)
    if clip_eps is not None:
        clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        err = jnp.maximum(err, jnp.square(clipped - returns))
    return 0.5 * masked_mean(err, mask)


def entropy_bonus(entropy: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean policy entropy (to *maximise*; it enters the loss as ``-ent_coef * entropy``)."""
    return masked_mean(entropy, mask)


def approx_kl(logp: jax.Array, old_logp: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Estimate of ``KL(π_old || π)`` from samples of ``π_old``: mean of ``(ρ - 1) - log ρ``, ``ρ = π/π_old``.

    This is Schulman's unbiased, always non-negative "k3" estimator (see :func:`kl_k3`).
    """
    return masked_mean(kl_k3(old_logp, logp), mask)


def kl_k3(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """Per-sample k3 estimator of ``KL(π || π_ref)`` for samples drawn from ``π``:
    ``exp(ref_logp - logp) - (ref_logp - logp) - 1`` (elementwise, ``>= 0``; Schulman, 2020).

    Used as the KL-to-reference penalty of GRPO-style losses (average it with :func:`masked_mean`).
    """
    d = ref_logp - logp
    return jnp.exp(d) - d - 1.0


def clip_fraction(ratio: jax.Array, clip_eps: float | jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Fraction of entries whose probability ratio lies outside ``[1 - ε, 1 + ε]``."""
    return masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mask)
