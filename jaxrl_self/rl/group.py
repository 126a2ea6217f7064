"""Group-relative advantages (GRPO, RLOO, Dr. GRPO) and token-loss aggregation for group-sampled RL.

A *group* is the ``G`` responses sampled for one prompt. Every function here takes rewards ``[..., G]``
(the group on the last axis, any batch shape in front, e.g. ``[B, G]`` for ``B`` prompts) and returns one
advantage per response, same shape, float32. An optional ``mask [..., G]`` (bool) says which members count
(e.g. responses kept after a filter); masked-out members get advantage 0 and do not enter any statistic.

Estimators (``n`` = number of valid members of the group, ``r̄ = (1/n) Σ_j r_j``):

* ``"grpo"`` (Shao et al., 2024, DeepSeekMath): ``A_i = (r_i − r̄) / (σ + ε)`` with
  ``σ = sqrt( Σ_j (r_j − r̄)² / (n − ddof) )``. **Default ``ddof = 0``: the population standard deviation**,
  so that the advantages of every non-degenerate group have mean 0 and mean square ``(σ/(σ+ε))² ≈ 1`` whatever
  ``G`` (the same convention as :func:`jaxrl_self.rl.normalize_advantages`). ``ddof = 1`` is the sample
  standard deviation that TRL's ``GRPOTrainer`` uses (``torch.std``); it shrinks the advantages by
  ``sqrt((n − 1)/n)``. **Default ``ε = 1e-6``**: only there to avoid 0/0; it is negligible next to any real
  spread of rewards (TRL uses 1e-4).
* ``"rloo"`` (Ahmadian et al., 2024; Kool et al., 2019): leave-one-out baseline
  ``A_i = r_i − (1/(n−1)) Σ_{j≠i} r_j = n/(n−1) · (r_i − r̄)``: an unbiased REINFORCE baseline (it does not
  depend on ``r_i``). Needs ``n >= 2``; with ``n < 2`` the advantage is 0.
* ``"dr_grpo"`` (Liu et al., 2025, "Understanding R1-Zero-Like Training"): ``A_i = r_i − r̄``, no division by
  the standard deviation (which over-weights groups that are almost all right or almost all wrong).

**Degenerate groups.** Where all valid rewards of a group are equal (all right, all wrong) every estimator
returns exactly 0 for the whole group. This is tested with an exact comparison (``max == min``), not left to
floating point: ``r − r̄`` of equal non-integer rewards can be a rounding error of ``1e-8``, which
``/(0 + ε)`` would blow up to ``1e-2``.

Token aggregation (:func:`aggregate_tokens`): how per-token loss terms ``x [N, R]`` of ``N`` responses with a
response mask become one scalar (the three conventions in use):

* ``"token_mean"``: ``Σ_{n,t} m x / Σ_{n,t} m``: every response token in the batch weighs the same
  (DAPO; TRL's ``loss_type="dapo"``). The default of :mod:`jaxrl_self.algos.grpo`.
* ``"seq_mean_token_mean"``: ``(1/N') Σ_n (Σ_t m x / Σ_t m)`` over the ``N'`` responses with at least one token:
  the original GRPO objective; a token of a short response weighs more than one of a long response.
* ``"seq_mean_token_sum_norm"``: ``(1/N) Σ_n Σ_t m x / R`` with the constant ``R`` = the response budget
  (Dr. GRPO): no length normalisation per response, hence no length bias.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "ESTIMATORS",
    "AGGREGATIONS",
    "group_advantages",
    "grpo_advantages",
    "rloo_advantages",
    "dr_grpo_advantages",
    "aggregate_tokens",
]

#: Advantage estimators accepted by :func:`group_advantages`.
ESTIMATORS = ("grpo", "rloo", "dr_grpo")
#: Token aggregations accepted by :func:`aggregate_tokens`.
AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


def _stats(rewards: jax.Array, mask: jax.Array | None):
    """``(r float32, m float32, n, mean, degenerate)`` over the group axis (``n``, ``mean`` keep that axis)."""
    r = jnp.asarray(rewards, jnp.float32)
    m = jnp.ones_like(r) if mask is None else jnp.asarray(mask, bool).astype(jnp.float32)
    valid = m > 0
    n = jnp.sum(m, axis=-1, keepdims=True)
    mean = jnp.sum(r * m, axis=-1, keepdims=True) / jnp.maximum(n, 1.0)
    hi = jnp.max(jnp.where(valid, r, -jnp.inf), axis=-1, keepdims=True)
    lo = jnp.min(jnp.where(valid, r, jnp.inf), axis=-1, keepdims=True)
    degenerate = ~(hi > lo)  # all valid rewards equal, or no valid member
    return r, m, n, mean, degenerate


def grpo_advantages(rewards: jax.Array, mask: jax.Array | None = None, *, eps: float | jax.Array = 1e-6,
                    ddof: int = 0) -> jax.Array:
    """``(r_i − r̄) / (σ + ε)`` within each group (last axis); see the module docstring.

    Args:
      rewards: ``[..., G]`` float rewards.
      mask: optional ``[..., G]`` bool, the members that count.
      eps: ``ε`` (may be traced).
      ddof: 0 = population standard deviation (default), 1 = sample standard deviation (TRL).

    Returns:
      float32 ``[..., G]``; 0 for masked-out members and for groups whose valid rewards are all equal.
    """
    r, m, n, mean, degenerate = _stats(rewards, mask)
    var = jnp.sum(m * jnp.square(r - mean), axis=-1, keepdims=True) / jnp.maximum(n - ddof, 1.0)
    adv = (r - mean) / (jnp.sqrt(var) + eps)
    return jnp.where((m > 0) & ~degenerate, adv, 0.0)


def rloo_advantages(rewards: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Leave-one-out baseline ``r_i − mean_{j≠i} r_j`` within each group (last axis).

    Returns float32 ``[..., G]``; 0 for masked-out members, for groups with fewer than 2 valid members and for
    groups whose valid rewards are all equal.
    """
    r, m, n, mean, degenerate = _stats(rewards, mask)
    total = jnp.sum(r * m, axis=-1, keepdims=True)
    baseline = (total - r) / jnp.maximum(n - 1.0, 1.0)
    return jnp.where((m > 0) & ~degenerate & (n >= 2), r - baseline, 0.0)


def dr_grpo_advantages(rewards: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """``r_i − r̄`` within each group (last axis), no standard-deviation scaling (Dr. GRPO)."""
    r, m, n, mean, degenerate = _stats(rewards, mask)
    return jnp.where((m > 0) & ~degenerate, r - mean, 0.0)


def group_advantages(rewards: jax.Array, estimator: str = "grpo", mask: jax.Array | None = None, *,
                     eps: float | jax.Array = 1e-6, ddof: int = 0) -> jax.Array:
    """Dispatch on ``estimator`` (a static string, one of :data:`ESTIMATORS`); ``eps``/``ddof`` are GRPO's."""
    if estimator == "grpo":
        return grpo_advantages(rewards, mask, eps=eps, ddof=ddof)
    if estimator == "rloo":
        return rloo_advantages(rewards, mask)
    if estimator == "dr_grpo":
        return dr_grpo_advantages(rewards, mask)
    raise ValueError(f"unknown advantage estimator {estimator!r}; allowed: {ESTIMATORS}")


def aggregate_tokens(x: jax.Array, mask: jax.Array, mode: str = "token_mean") -> jax.Array:
    """Reduce per-token terms ``x [N, R]`` of ``N`` responses to a scalar; ``mask [N, R]`` selects the response
    tokens (padding never counts, whatever ``x`` holds there). ``mode`` is one of :data:`AGGREGATIONS`
    (module docstring). Every mode returns 0 when no token is valid."""
    m = jnp.asarray(mask, bool)
    xm = jnp.where(m, x, 0.0)  # `where`, not `x * m`: a NaN/inf at a padded position must not leak in
    mf = m.astype(jnp.float32)
    if mode == "token_mean":
        return jnp.sum(xm) / jnp.maximum(jnp.sum(mf), 1.0)
    if mode == "seq_mean_token_mean":
        count = jnp.sum(mf, axis=-1)
        per_seq = jnp.sum(xm, axis=-1) / jnp.maximum(count, 1.0)
        has = (count > 0).astype(jnp.float32)
        return jnp.sum(per_seq * has) / jnp.maximum(jnp.sum(has), 1.0)
    if mode == "seq_mean_token_sum_norm":
        return jnp.sum(xm) / (x.shape[0] * x.shape[-1])
    raise ValueError(f"unknown token aggregation {mode!r}; allowed: {AGGREGATIONS}")
