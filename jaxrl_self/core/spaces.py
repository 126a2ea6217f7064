"""Observation and action spaces: Discrete, Box and Dict.

Spaces are plain (hashable, frozen) Python objects that describe array shapes and dtypes; they are static
information, never traced. Each space can ``sample`` a value under jit and report whether a value
``contains`` it (a traced boolean), and :func:`describe_mismatch` explains in words why a concrete value
does not fit, which is what :func:`jaxrl_self.envs.check_env` uses for its error messages.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Space", "Discrete", "Box", "Dict", "describe_mismatch", "flat_dim"]


class Space:
    """Base class. Subclasses are frozen dataclasses."""

    shape: tuple[int, ...]
    dtype: Any

    def sample(self, key: jax.Array) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, x: Any) -> jax.Array:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Discrete(Space):
    """Integers ``0 .. n-1`` (scalar)."""

    n: int
    dtype: Any = jnp.int32

    def __post_init__(self):
        if int(self.n) < 1:
            raise ValueError(f"Discrete.n must be >= 1, got {self.n}")

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (), 0, self.n, dtype=self.dtype)

    def contains(self, x: Any) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.logical_and(x >= 0, x < self.n).all()


@dataclasses.dataclass(frozen=True, eq=False)
class Box(Space):
    """A box ``low <= x <= high`` of fixed shape; ``low``/``high`` are scalars or arrays of that shape."""

    low: Any
    high: Any
    shape: tuple[int, ...]
    dtype: Any = jnp.float32

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        for name in ("low", "high"):
            v = np.asarray(getattr(self, name))
            if v.shape not in ((), self.shape):
                raise ValueError(f"Box.{name} must be a scalar or have shape {self.shape}, got {v.shape}")

    def __eq__(self, other):
        return (
            isinstance(other, Box)
            and self.shape == other.shape
            and jnp.dtype(self.dtype) == jnp.dtype(other.dtype)
            and np.array_equal(np.broadcast_to(self.low, self.shape), np.broadcast_to(other.low, other.shape))
            and np.array_equal(np.broadcast_to(self.high, self.shape), np.broadcast_to(other.high, other.shape))
        )

    def __hash__(self):
        return hash((self.shape, str(jnp.dtype(self.dtype))))

    def sample(self, key: jax.Array) -> jax.Array:
        low = jnp.broadcast_to(jnp.asarray(self.low, jnp.float32), self.shape)
        high = jnp.broadcast_to(jnp.asarray(self.high, jnp.float32), self.shape)
        if jnp.issubdtype(self.dtype, jnp.integer):
            return jax.random.randint(key, self.shape, low.astype(jnp.int32), high.astype(jnp.int32) + 1).astype(
                self.dtype
            )
        # unbounded dimensions sample from a standard normal
        finite = jnp.isfinite(low) & jnp.isfinite(high)
        u = jax.random.uniform(key, self.shape)
        n = jax.random.normal(key, self.shape)
        return jnp.where(finite, low + u * (jnp.where(finite, high, 1.0) - jnp.where(finite, low, 0.0)), n).astype(
            self.dtype
        )

    def contains(self, x: Any) -> jax.Array:
        x = jnp.asarray(x)
        ok_shape = x.shape == self.shape
        if not ok_shape:
            return jnp.asarray(False)
        return jnp.logical_and(x >= self.low, x <= self.high).all()


@dataclasses.dataclass(frozen=True, eq=False)
class Dict(Space):
    """A dictionary of named sub-spaces; values are ``dict`` pytrees with the same keys."""

    spaces: Mapping[str, Space]

    def __post_init__(self):
        object.__setattr__(self, "spaces", dict(self.spaces))

    def __eq__(self, other):
        return isinstance(other, Dict) and self.spaces == other.spaces

    def __hash__(self):
        return hash(tuple(sorted(self.spaces)))

    @property
    def shape(self):  # a Dict has no single shape
        return {k: s.shape for k, s in self.spaces.items()}

    @property
    def dtype(self):
        return {k: s.dtype for k, s in self.spaces.items()}

    def sample(self, key: jax.Array) -> dict:
        keys = jax.random.split(key, len(self.spaces))
        return {name: s.sample(k) for (name, s), k in zip(self.spaces.items(), keys)}

    def contains(self, x: Any) -> jax.Array:
        if not isinstance(x, Mapping) or set(x) != set(self.spaces):
            return jnp.asarray(False)
        return jnp.all(jnp.stack([jnp.asarray(s.contains(x[k])) for k, s in self.spaces.items()]))


def describe_mismatch(space: Space, x: Any, batch_shape: tuple[int, ...] = (), where: str = "value") -> str | None:
    """Explain why ``x`` (a concrete value, possibly with leading ``batch_shape``) does not fit ``space``.

    Returns None when it fits in structure, shape, dtype and bounds.
    """
    if isinstance(space, Dict):
        if not isinstance(x, Mapping):
            return f"{where} should be a dict with keys {sorted(space.spaces)}, got {type(x).__name__}"
        if set(x) != set(space.spaces):
            return f"{where} has keys {sorted(x)}, the space declares {sorted(space.spaces)}"
        for k, s in space.spaces.items():
            msg = describe_mismatch(s, x[k], batch_shape, f"{where}[{k!r}]")
            if msg:
                return msg
        return None
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        return f"{where} should be an array, got {type(x).__name__}"
    want_shape = tuple(batch_shape) + tuple(space.shape)
    if tuple(x.shape) != want_shape:
        return f"{where} has shape {tuple(x.shape)}, the space declares {want_shape}"
    if jnp.dtype(x.dtype) != jnp.dtype(space.dtype):
        return f"{where} has dtype {jnp.dtype(x.dtype)}, the space declares {jnp.dtype(space.dtype)}"
    arr = np.asarray(x)
    if isinstance(space, Discrete):
        if arr.size and (arr.min() < 0 or arr.max() >= space.n):
            return f"{where} holds values in [{arr.min()}, {arr.max()}], outside Discrete({space.n})"
    elif isinstance(space, Box):
        if arr.size and (np.any(arr < np.asarray(space.low)) or np.any(arr > np.asarray(space.high))):
            return f"{where} holds values in [{arr.min()}, {arr.max()}], outside the Box bounds"
        if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
            return f"{where} holds NaN"
    return None


def flat_dim(space: Space) -> int:
    """Length of the float vector that :class:`jaxrl_self.envs.FlattenObservation` produces for ``space``."""
    if isinstance(space, Discrete):
        return int(space.n)
    if isinstance(space, Box):
        return int(np.prod(space.shape)) if space.shape else 1
    if isinstance(space, Dict):
        return sum(flat_dim(s) for s in space.spaces.values())
    raise TypeError(f"unsupported space {space!r}")
