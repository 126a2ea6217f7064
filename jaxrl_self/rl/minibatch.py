"""Shuffling a batch and cutting it into minibatches.

Two layouts:

* **Flat samples** (feed-forward nets): a pytree whose leaves share a leading batch axis ``[B, ...]`` is
  permuted along that axis and reshaped to ``[M, B // M, ...]``; ``lax.scan`` over the leading axis then
  visits every sample exactly once per epoch.
* **Whole sequences** (recurrent nets): time-major ``[T, N, ...]`` data is permuted along the *environment*
  axis (axis 1) and cut into ``[M, T, N // M, ...]``, so each minibatch holds complete length-``T`` sequences
  and the recurrent state can be replayed from the rollout's initial carry (``[N, ...]``, axis 0), which is
  permuted the same way.

:func:`shuffle_split` does both: the same ``key`` and the same axis length give the same permutation, so
call it once per pytree with the appropriate ``axis``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["flatten_time", "shuffle_split", "split"]


def flatten_time(tree: Any, num_axes: int = 2) -> Any:
    """Merge the leading ``num_axes`` axes of every leaf: ``[T, N, ...] -> [T * N, ...]``."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[num_axes:]), tree)


def split(tree: Any, num_minibatches: int, axis: int = 0) -> Any:
    """Cut ``axis`` of every leaf into ``num_minibatches`` consecutive pieces, stacked on a new leading axis.

    ``[..., B, ...] -> [M, ..., B // M, ...]`` (``B`` at ``axis``). ``B`` must be divisible by ``M``.
    """

    def cut(x):
        size = x.shape[axis]
        if size % num_minibatches:
            raise ValueError(f"axis {axis} of size {size} is not divisible into {num_minibatches} minibatches")
        x = x.reshape(x.shape[:axis] + (num_minibatches, size // num_minibatches) + x.shape[axis + 1 :])
        return jnp.moveaxis(x, axis, 0)

    return jax.tree.map(cut, tree)


def shuffle_split(key: jax.Array, tree: Any, num_minibatches: int, axis: int = 0) -> Any:
    """Randomly permute ``axis`` (same permutation for every leaf) and :func:`split` it into minibatches.

    Args:
      key: PRNG key; the permutation depends only on ``key`` and the length of ``axis``.
      tree: pytree of arrays sharing the size ``B`` of ``axis``.
      num_minibatches: ``M``; must divide ``B``.
      axis: the axis to shuffle (0 for flat samples, 1 for time-major sequences).

    Returns:
      The same pytree with leaves ``[M, ..., B // M, ...]``.
    """
    sizes = {x.shape[axis] for x in jax.tree.leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"all leaves must share the size of axis {axis}; got sizes {sorted(sizes)}")
    perm = jax.random.permutation(key, sizes.pop())
    shuffled = jax.tree.map(lambda x: jnp.take(x, perm, axis=axis), tree)
    return split(shuffled, num_minibatches, axis)
