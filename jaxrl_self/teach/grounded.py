"""The grounded teacher reward and SOAR's promotion rule: the pure pieces the teachers share.

A *grounded* teacher (SOAR, Sundaram et al., 2026) is paid by what its material does to students: ``g`` batches of
material (datasets of problems for :mod:`jaxrl_self.teach.soar`, batches of mazes for
:mod:`jaxrl_self.teach.soar_maze`) each train ``r`` copies of the current *baseline* student; batch ``k`` earns the
mean change of its copies' score on hard problems the baseline cannot solve yet. When the moving average of those
rewards stays above a threshold, the median copy of the best batch becomes the new baseline (*promotion*).

These functions hold only that arithmetic, on arrays, so both teachers (and their tests, against hand-computed
values) share one definition.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["grounded_rewards", "promotion_step", "promoted_student"]


def grounded_rewards(student_scores: jax.Array, baseline_score: jax.Array) -> jax.Array:
    """The grounded reward ``[g]`` of ``g`` batches: ``R_k = mean_j (score[k, j] − score_base)`` from the scores
    ``[g, r]`` of the ``r`` students each batch trained (accuracy, solved rate) and the baseline's score."""
    return jnp.mean(student_scores - baseline_score, axis=1)


def promotion_step(window: jax.Array, filled: jax.Array, mean_reward: jax.Array, threshold: jax.Array,
                   enabled: bool = True) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Push this step's ``mean_reward`` into the window of the last ``m`` steps; fire when the window is full and
    its mean exceeds ``threshold``. Returns ``(window, filled, fired, moving_average)``; after firing the window
    restarts (``filled = 0``); the moving average is NaN while the window is not full."""
    m = window.shape[0]
    window = jnp.concatenate([window[1:], jnp.asarray(mean_reward, jnp.float32)[None]])
    filled = jnp.minimum(filled + 1, m)
    full = filled >= m
    average = jnp.where(full, jnp.mean(window), jnp.nan)
    fired = jnp.asarray(enabled) & full & (jnp.mean(window) > threshold)
    return jnp.where(fired, jnp.zeros_like(window), window), jnp.where(fired, 0, filled), fired, average


def promoted_student(rewards: jax.Array, student_scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(best batch, its median student)``: the batch with the highest reward (the first on ties) and the
    student whose score is the lower median of its ``r`` copies (``sorted[(r − 1) // 2]``, stable order)."""
    best = jnp.argmax(rewards).astype(jnp.int32)
    order = jnp.argsort(student_scores[best], stable=True)
    return best, order[(student_scores.shape[1] - 1) // 2].astype(jnp.int32)
