"""Small pure helpers shared by the token tasks: packing variable-length token segments into fixed-length
arrays under jit, digit reordering, and eager validation of (possibly traced) parameters.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB

__all__ = [
    "pack",
    "const",
    "first_index",
    "take",
    "lsb_to_msb",
    "interleave",
    "random_ints",
    "random_unit",
    "concrete",
    "check_static_int",
    "check_static_bool",
    "check_param_int",
]

Segment = tuple[jax.Array, Any]  # (tokens[L] int32, number of leading tokens to keep, scalar int)


def const(*tokens: str) -> Segment:
    """A fixed segment of named tokens, e.g. ``const("<bos>", "<q>")``."""
    return jnp.asarray([VOCAB.id(t) for t in tokens], jnp.int32), len(tokens)


def pack(segments: Sequence[Segment], length: int) -> jax.Array:
    """Concatenate the first ``n_i`` tokens of each segment and right-pad with PAD to ``length``.

    Args:
      segments: ``(tokens, n)`` pairs; ``tokens`` is a 1-D int32 array of static length ``L_i`` and ``n`` a
        (possibly traced) int in ``[0, L_i]``.
      length: static output length; it should be ``>= sum(n_i)`` (tokens that would land at or past
        ``length`` are dropped).

    Returns:
      int32 array ``[length]``. Works under jit and vmap (one masked scatter per segment).
    """
    out = jnp.full((length,), VOCAB.PAD, jnp.int32)
    offset = jnp.zeros((), jnp.int32)
    for tokens, n in segments:
        tokens = jnp.asarray(tokens, jnp.int32)
        i = jnp.arange(tokens.shape[0], dtype=jnp.int32)
        idx = jnp.where(i < n, offset + i, length)  # index `length` is out of bounds: dropped
        out = out.at[idx].set(tokens, mode="drop")
        offset = offset + jnp.asarray(n, jnp.int32)
    return out


def first_index(mask: jax.Array, default: int | jax.Array) -> jax.Array:
    """Index of the first True in a 1-D mask, or ``default`` (int32)."""
    return jnp.where(mask.any(), jnp.argmax(mask), default).astype(jnp.int32)


def take(x: jax.Array, i: jax.Array, fill: int) -> jax.Array:
    """``x[i]`` for a 1-D ``x``, or ``fill`` where ``i`` is out of range (no clipping surprises)."""
    n = x.shape[0]
    return jnp.where((i >= 0) & (i < n), x[jnp.clip(i, 0, n - 1)], fill)


def lsb_to_msb(digits: jax.Array, n: jax.Array) -> jax.Array:
    """Reverse the first ``n`` entries of ``digits`` (same length; entries at ``>= n`` become 0).

    ``digits[k]`` is the ``10**k`` digit of a number with ``n`` digits; the result lists them most-significant
    first.
    """
    k = jnp.arange(digits.shape[0])
    return jnp.where(k < n, digits[jnp.clip(n - 1 - k, 0, digits.shape[0] - 1)], 0)


def interleave(*arrays: jax.Array) -> jax.Array:
    """``interleave([a0, a1], [b0, b1]) == [a0, b0, a1, b1]`` for equal-length 1-D arrays."""
    return jnp.stack(arrays, axis=-1).reshape(-1)


# ---------------------------------------------------------------------------------------------- randomness
# The samplers draw all their randomness with ONE ``jax.random.bits`` call and map the words with the two helpers
# below. Each ``jax.random`` call is a separate threefry kernel, and vmapped threefry kernels dominate XLA:CPU
# compile time (about 1 s each on a small machine); one call instead of ten keeps the programs that embed a
# sampler quick to compile.
def random_ints(bits: jax.Array, lo: Any, hi: Any) -> jax.Array:
    """int32 uniform in ``[lo, hi]`` (inclusive, ``hi >= lo``, broadcasting) from uint32 random ``bits``.

    Uses ``lo + bits % (hi - lo + 1)``: for a range of ``m`` values the modulo bias is below ``m / 2**32``
    (2.3e-9 relative for ``m = 10``), far below anything a test or a training run can see.
    """
    span = (jnp.asarray(hi, jnp.int32) - jnp.asarray(lo, jnp.int32) + 1).astype(jnp.uint32)
    return jnp.asarray(lo, jnp.int32) + (bits % span).astype(jnp.int32)


def random_unit(bits: jax.Array) -> jax.Array:
    """float32 uniform in ``[0, 1)`` on a grid of ``2**-24`` from uint32 random ``bits``."""
    return (bits >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)


# ---------------------------------------------------------------------------------------------- validation
def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a numpy array, or None when ``x`` is traced (validation is then skipped)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def check_static_int(owner: str, field: str, value: Any, lo: int, hi: int) -> int:
    """A static (constructor) integer in ``[lo, hi]``; returns it as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(field, value, f"a Python int in [{lo}, {hi}] (it fixes array shapes)", owner)
    if not lo <= int(value) <= hi:
        raise ConfigError(field, value, f"an int in [{lo}, {hi}]", owner)
    return int(value)


def check_static_bool(owner: str, field: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(field, value, "True or False", owner)
    return bool(value)


def check_param_int(owner: str, field: str, value: Any, lo: Any, hi: Any, allowed: str) -> None:
    """Check a (possibly batched) integer parameter against ``lo <= value <= hi`` when it is concrete.

    ``lo``/``hi`` may be arrays broadcasting against ``value`` (e.g. another field of the same params).
    ``allowed`` is the human-readable range used in the error message.
    """
    v = concrete(value)
    if v is None:
        return
    lo_c, hi_c = concrete(lo), concrete(hi)
    if np.issubdtype(v.dtype, np.floating) and not np.all(v == np.round(v)):
        raise ConfigError(field, _show(v), f"an integer; {allowed}", owner)
    conds = [c for c in ((v < lo_c) if lo_c is not None else None, (v > hi_c) if hi_c is not None else None)
             if c is not None]
    if not conds:
        return
    conds = np.broadcast_arrays(*conds)
    bad = np.logical_or.reduce(conds) if len(conds) > 1 else conds[0]
    if np.any(bad):
        raise ConfigError(field, _show(np.broadcast_to(v, bad.shape)[bad]), allowed, owner)


def _show(v: np.ndarray) -> Any:
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()
