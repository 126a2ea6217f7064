"""The non-finite guard every learner shares: from the first update whose loss (or parameters) is NaN/inf on,
parameters and optimiser state stay as they were, and the run records which update it was.

::

    finite = rl.all_finite(stats["loss"]) & rl.all_finite(params)
    (params, opt_state), nonfinite_update, keep = rl.keep_if_finite(
        state.nonfinite_update, state.update_step, finite, (params, opt_state), (state.params, state.opt_state))

``nonfinite_update`` is ``-1`` while the run is healthy, else the index of the first bad update. Once it is set,
every later update is discarded too (``keep`` False), so a run never continues from parameters that a NaN
touched; the runner then stops with :class:`~jaxrl_self.core.NonFiniteLossError` at the chunk boundary.
What counts as finite is the caller's choice (losses and gradient norms for PPO, losses and parameters for the
language-model learners): finite losses and gradient norms at every minibatch imply finite Adam steps.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_self.core.environment import tree_select

__all__ = ["all_finite", "keep_if_finite"]


def all_finite(tree: Any) -> jax.Array:
    """True (a bool scalar) when every element of every leaf of ``tree`` is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def keep_if_finite(nonfinite_update: jax.Array, update_step: jax.Array, finite: jax.Array, new: Any,
                   old: Any) -> tuple[Any, jax.Array, jax.Array]:
    """``(new if the run stays healthy else old, nonfinite_update, keep)``.

    Args:
      nonfinite_update: int32, ``-1`` or the first bad update so far (``RunState.nonfinite_update``).
      update_step: int32, the index of this update.
      finite: bool scalar, this update's loss (and whatever else the caller checks) is finite.
      new, old: pytrees of the same structure (e.g. ``(params, opt_state)`` after and before the update).

    Returns:
      The selected pytree, the new ``nonfinite_update`` (this update's index if it is the first bad one) and
      ``keep`` (the run was healthy and this update is finite).
    """
    healthy = nonfinite_update < 0
    keep = healthy & finite
    return tree_select(keep, new, old), jnp.where(healthy & ~finite, update_step, nonfinite_update), keep
