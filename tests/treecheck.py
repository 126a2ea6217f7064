"""Bit-for-bit comparison of pytrees (states, parameters, metrics) for the resume and determinism tests."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def leaves(tree) -> list[np.ndarray]:
    """The tree's leaves as numpy arrays; typed PRNG keys as their key data."""
    return [np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree.leaves(tree)]


def assert_bitwise(a, b) -> None:
    """``a`` and ``b`` have the same leaves: count, dtypes, shapes and every bit."""
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb), f"{len(la)} leaves vs {len(lb)}"
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape, f"{x.dtype}{x.shape} vs {y.dtype}{y.shape}"
        np.testing.assert_array_equal(x, y)
