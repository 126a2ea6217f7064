"""Prioritised level replay: a level buffer that lives inside the compiled training program.

The machinery shared by PLR (Jiang et al., 2021a, "Prioritized Level Replay"), robust PLR / PLR⊥ and
ACCEL (Jiang et al., 2021b, "Replay-Guided Adversarial Environment Design"; Parker-Holder et al., 2022) and
their parallel variants. Two objects, in the jaxued style:

* :class:`LevelSamplerConfig`: a frozen ``flax.struct`` dataclass. ``capacity``, ``prioritization``,
  ``top_k`` and ``duplicate_check`` fix shapes or Python control flow and are static; ``temperature``,
  ``staleness_coef``, ``replay_prob`` and ``minimum_fill_ratio`` are pytree leaves that may be traced (a
  vmapped sweep over them is one program).
* :class:`LevelBuffer`: the state, a ``flax.struct`` pytree (levels, scores, timestamps, max returns, fill
  count, clock). It is passed in and out of every function; nothing is stored on the Python side.
* :class:`LevelSampler`: stateless, holds only the config; every method is a pure, jit-able function of a
  buffer (``jax.vmap`` over a batch of buffers gives one buffer per seed).

Replay distribution (the papers' definitions). For the filled slots ``i`` of the buffer::

    P_replay(i) = (1 - ρ) · P_S(i) + ρ · P_C(i)
    P_S(i) = h(S_i)^(1/β) / Σ_j h(S_j)^(1/β),    h(S_i) = 1 / rank(S_i)      ("rank"; rank 1 = highest score)
    P_S(i) = 1[rank(S_i) <= k] / min(k, size)                                  ("topk")
    P_C(i) = (c - C_i) / Σ_j (c - C_j)

with ``β`` the temperature, ``ρ`` the staleness coefficient, ``c`` the buffer's clock and ``C_i`` the clock
value when level ``i`` was last visited. Empty slots have probability 0.

Exact semantics chosen where the references differ (see also ``docs/``):

* **Clock** (``c``): counts level *visits* that go through the sampler: +1 for every level drawn by
  :meth:`LevelSampler.sample_replay_levels` and +1 for every level offered to :meth:`LevelSampler.insert`
  (inserted, rejected, a duplicate, or invalid alike). A visit stamps ``C_i = c`` on the slot it touched
  (drawn, newly inserted, or duplicate-updated), so a freshly inserted level has staleness 0. This is
  jaxued's ``episode_count``; minimax's per-slot ``ages`` count the same thing except that a level inserted
  into an evicted slot inherits the evicted level's age there.
* **Ranks and ties**: ranks come from a *stable* sort of the filled slots by descending score, so tied scores
  are ranked by slot index, lower index first (the order jaxued's and minimax v0.2's ``argsort`` give).
  ``-0.0`` and ``0.0`` are the same score. Rank weights are ``(1/rank)^(1/β)`` with ranks starting at 1: the
  two PLR bugs minimax fixed in v0.2.0 (``1/0`` for the top rank; temperature applied as a division) do not
  arise.
* **Top-k**: uniform over the ``min(k, size)`` best-ranked filled slots (ties as above). jaxued instead
  takes a softmax of the raw scores restricted to the top k; minimax has no top-k.
* **Staleness fallback**: when ``Σ_j (c - C_j) = 0`` (only possible with one filled slot), ``P_C`` is
  uniform over the filled slots (jaxued, and the original PyTorch PLR); minimax falls back to ``P_S``.
* **Replay decision**: replay with probability ``replay_prob`` once ``size / capacity >=
  minimum_fill_ratio`` and the buffer is non-empty (the non-empty guard is ours: with a fill ratio of 0 the
  references would replay from an empty buffer).
* **Insertion** (:meth:`LevelSampler.insert`): a level whose ``valid`` flag is False (no completed episode
  in the scoring rollout) or whose score is not finite is not inserted. With ``duplicate_check``, a level
  equal (every leaf, exactly) to a filled slot updates that slot instead: score overwritten by the new one
  (both references overwrite), ``max_return`` becomes the max of the two, the slot is stamped visited.
  Otherwise, while the buffer is not full the level goes into the next free slot; when it is full, the
  candidate is the filled slot with the lowest replay probability ``P_replay`` (ties: lowest slot index;
  jaxued, minimax and the original PLR code all evict by replay weight, not by score), and the level replaces
  it only if its score is *strictly* higher than the candidate's score (jaxued; minimax replaces on ``>=``).
  :meth:`LevelSampler.insert_batch` inserts a batch one level at a time under ``lax.scan``, so a duplicate
  later in the same batch finds and updates the copy inserted earlier (minimax instead drops later copies).
* **Replayed levels** (:meth:`LevelSampler.update_scores`): score overwritten, ``max_return`` = max of old and
  new, no clock change (the draw already counted the visit).

Replay rollouts must reset to the *same* level when an episode ends (``jaxrl_self.envs.wrappers.ReplayLevel``):
the third bug minimax fixed in v0.2.0 is that its PLR rollouts auto-reset to random levels, so scores and
max returns mixed levels. This module scores whatever rollout it is given; the curriculum must get that right.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.errors import check_field

__all__ = [
    "Prioritization",
    "LevelSamplerConfig",
    "LevelBuffer",
    "BufferStats",
    "LevelSampler",
]

Prioritization = Literal["rank", "topk"]
_PRIORITIZATIONS = ("rank", "topk")


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _numbers(value: Any) -> np.ndarray | None:
    """``value`` as a non-empty float array, or None when it is not numbers (a string, None, an object)."""
    if isinstance(value, (str, bytes)):
        return None
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return v if v.size else None


@struct.dataclass
class LevelSamplerConfig:
    """Hyper-parameters of the level buffer. Defaults are those of jaxued's maze PLR/ACCEL scripts."""

    capacity: int = struct.field(pytree_node=False, default=4000)
    """Number of level slots in the buffer (static: fixes array shapes)."""
    prioritization: str = struct.field(pytree_node=False, default="rank")
    """Score prioritisation: "rank" ((1/rank)^(1/temperature)) or "topk" (uniform over the top_k scores)."""
    top_k: int = struct.field(pytree_node=False, default=4)
    """k for prioritization="topk" (ignored for "rank")."""
    duplicate_check: bool = struct.field(pytree_node=False, default=True)
    """Update the existing entry instead of inserting a level already in the buffer."""
    temperature: float = 0.3
    """β in P_S ∝ (1/rank)^(1/β); lower is greedier. > 0."""
    staleness_coef: float = 0.3
    """ρ in P_replay = (1-ρ) P_S + ρ P_C, in [0, 1]."""
    replay_prob: float = 0.8
    """Probability of a replay step (once the buffer is filled enough), in [0, 1]."""
    minimum_fill_ratio: float = 0.5
    """No replay until size / capacity >= this, in [0, 1]."""

    def validate(self) -> None:
        """Raise :class:`jaxrl_self.core.ConfigError` for a bad value (traced values are skipped)."""
        owner = "LevelSamplerConfig"
        check_field(owner, "capacity", self.capacity,
                    isinstance(self.capacity, (int, np.integer)) and not isinstance(self.capacity, bool)
                    and self.capacity >= 1, "an int >= 1")
        check_field(owner, "prioritization", self.prioritization, self.prioritization in _PRIORITIZATIONS,
                    f"one of {_PRIORITIZATIONS}")
        check_field(owner, "top_k", self.top_k,
                    isinstance(self.top_k, (int, np.integer)) and not isinstance(self.top_k, bool) and self.top_k >= 1,
                    "an int >= 1")
        check_field(owner, "duplicate_check", self.duplicate_check, isinstance(self.duplicate_check, bool),
                    "True or False")
        if _is_concrete(self.temperature):
            v = _numbers(self.temperature)
            check_field(owner, "temperature", self.temperature, v is not None and bool(np.all(v > 0)), "a number > 0")
        for name in ("staleness_coef", "replay_prob", "minimum_fill_ratio"):
            value = getattr(self, name)
            if _is_concrete(value):
                v = _numbers(value)
                check_field(owner, name, value, v is not None and bool(np.all((v >= 0) & (v <= 1))),
                            "a number in [0, 1]")


@struct.dataclass
class LevelBuffer:
    """The level buffer's state: one pytree, carried through the training program.

    ``cap`` is ``LevelSamplerConfig.capacity``. Slots ``0 .. size-1`` are filled (slots fill in order and are
    never emptied); the content of the other slots is a placeholder and never read.

    Attributes:
        levels: the stored levels, the env's ``Level`` pytree with a leading ``cap`` axis on every leaf.
        scores: ``float32[cap]``, each level's latest score (0 in empty slots).
        max_returns: ``float32[cap]``, the highest undiscounted episodic return seen on each level (MaxMC);
            ``-inf`` in empty slots.
        timestamps: ``int32[cap]``, the clock value at the level's last visit (staleness = ``clock - t``).
        size: ``int32[]``, number of filled slots.
        clock: ``int32[]``, number of level visits so far (see the module docstring).
        extra: optional per-level data (a pytree with a leading ``cap`` axis, e.g. ACCEL's mutation count),
            or None. Written on insertion, kept on a duplicate update.
    """

    levels: Any
    scores: jax.Array
    max_returns: jax.Array
    timestamps: jax.Array
    size: jax.Array
    clock: jax.Array
    extra: Any = None

    @property
    def capacity(self) -> int:
        return int(self.scores.shape[-1])

    @property
    def filled(self) -> jax.Array:
        """``bool[cap]``: which slots hold a level (unbatched buffers only)."""
        return jnp.arange(self.capacity) < self.size


@struct.dataclass
class BufferStats:
    """Scalar summaries of a buffer for logging (all 0 for an empty buffer).

    Attributes:
        size: filled slots (int32). fill_ratio: size / capacity.
        mean_score, min_score, max_score: over filled slots.
        weighted_score: Σ_i P_replay(i) S_i, the expected score of a replayed level.
        mean_staleness, weighted_staleness: (clock - timestamp) averaged uniformly / under P_replay.
        mean_max_return: mean of the stored max returns.
    """

    size: jax.Array
    fill_ratio: jax.Array
    mean_score: jax.Array
    min_score: jax.Array
    max_score: jax.Array
    weighted_score: jax.Array
    mean_staleness: jax.Array
    weighted_staleness: jax.Array
    mean_max_return: jax.Array


def _masked_normalize(w: jax.Array, mask: jax.Array) -> jax.Array:
    """``w / Σ w`` over ``mask`` (zero elsewhere); all zeros when the masked sum is 0."""
    w = jnp.where(mask, w, 0.0)
    z = w.sum()
    return jnp.where(z > 0, w / jnp.where(z > 0, z, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class LevelSampler:
    """Stateless level-replay logic over a :class:`LevelBuffer`. See the module docstring for the semantics.

    ``LevelSampler(config)`` validates the concrete fields of ``config``; it may be built inside a jitted or
    vmapped function from a config whose numeric fields are traced.
    """

    config: LevelSamplerConfig = dataclasses.field(default_factory=LevelSamplerConfig)

    def __post_init__(self):
        if not isinstance(self.config, LevelSamplerConfig):
            raise TypeError(f"LevelSampler expects a LevelSamplerConfig, got {type(self.config).__name__}")
        self.config.validate()

    @property
    def capacity(self) -> int:
        return int(self.config.capacity)

    # ------------------------------------------------------------------ state
    def initialize(self, example_level: Any, example_extra: Any = None) -> LevelBuffer:
        """An empty buffer whose slots have the structure, shapes and dtypes of ``example_level`` (one
        unbatched level; it also fills the empty slots as a placeholder) and, optionally, of ``example_extra``
        (per-level data stored alongside each level)."""
        cap = self.capacity

        def tile(x):
            x = jnp.asarray(x)
            return jnp.broadcast_to(x[None], (cap, *x.shape))

        return LevelBuffer(
            levels=jax.tree.map(tile, example_level),
            scores=jnp.zeros(cap, jnp.float32),
            max_returns=jnp.full(cap, -jnp.inf, jnp.float32),
            timestamps=jnp.zeros(cap, jnp.int32),
            size=jnp.zeros((), jnp.int32),
            clock=jnp.zeros((), jnp.int32),
            extra=None if example_extra is None else jax.tree.map(tile, example_extra),
        )

    def _check_buffer(self, buffer: LevelBuffer) -> None:
        if buffer.scores.ndim != 1:
            raise ValueError(f"LevelSampler methods take one (unbatched) buffer, got scores of shape "
                             f"{buffer.scores.shape}; use jax.vmap over a batch of buffers")
        if buffer.capacity != self.capacity:
            raise ValueError(f"buffer has {buffer.capacity} slots but LevelSamplerConfig.capacity={self.capacity}")

    # ------------------------------------------------------------------ replay distribution
    def ranks(self, buffer: LevelBuffer) -> jax.Array:
        """``int32[cap]``: 1-based rank of each slot by descending score; filled slots take ranks
        ``1..size`` (ties: lower slot index first), empty slots ``size+1..cap``."""
        self._check_buffer(buffer)
        scores = jnp.where(buffer.scores == 0, 0.0, buffer.scores)  # -0.0 ties with 0.0
        sort_key = jnp.where(buffer.filled, -scores, jnp.inf)
        order = jnp.argsort(sort_key, stable=True)
        return jnp.zeros(self.capacity, jnp.int32).at[order].set(jnp.arange(1, self.capacity + 1, dtype=jnp.int32))

    def score_weights(self, buffer: LevelBuffer) -> jax.Array:
        """``float32[cap]``: P_S, the score-prioritised distribution over filled slots (zeros if empty)."""
        ranks = self.ranks(buffer).astype(jnp.float32)
        if self.config.prioritization == "rank":
            h = jnp.power(1.0 / ranks, 1.0 / jnp.asarray(self.config.temperature, jnp.float32))
        else:  # "topk"
            h = (ranks <= self.config.top_k).astype(jnp.float32)
        return _masked_normalize(h, buffer.filled)

    def staleness_weights(self, buffer: LevelBuffer) -> jax.Array:
        """``float32[cap]``: P_C ∝ clock - timestamp over filled slots; uniform over filled slots when all
        staleness is 0; zeros if empty."""
        self._check_buffer(buffer)
        filled = buffer.filled
        staleness = (buffer.clock - buffer.timestamps).astype(jnp.float32)
        p_c = _masked_normalize(staleness, filled)
        uniform = _masked_normalize(jnp.ones(self.capacity, jnp.float32), filled)
        return jnp.where(p_c.sum() > 0, p_c, uniform)

    def _mix(self, p_score: jax.Array, p_stale: jax.Array) -> jax.Array:
        rho = jnp.asarray(self.config.staleness_coef, jnp.float32)
        return (1.0 - rho) * p_score + rho * p_stale

    def level_weights(self, buffer: LevelBuffer) -> jax.Array:
        """``float32[cap]``: the replay distribution ``(1-ρ) P_S + ρ P_C``; sums to 1 over filled slots, 0 on
        empty slots, all zeros for an empty buffer."""
        return self._mix(self.score_weights(buffer), self.staleness_weights(buffer))

    # ------------------------------------------------------------------ sampling
    def sample_replay_decision(self, buffer: LevelBuffer, key: jax.Array) -> jax.Array:
        """``bool[]``: replay (True) or new levels (False). True with probability ``replay_prob`` once the
        buffer is non-empty and ``size / capacity >= minimum_fill_ratio``; always False before."""
        self._check_buffer(buffer)
        warm = (buffer.size > 0) & (buffer.size / self.capacity >= self.config.minimum_fill_ratio)
        return warm & (jax.random.uniform(key) < self.config.replay_prob)

    def sample_replay_levels(self, buffer: LevelBuffer, key: jax.Array, num: int) -> tuple[LevelBuffer, jax.Array, Any]:
        """Draw ``num`` levels one after another (with replacement) from the replay distribution.

        Each draw is a visit: the clock advances by one and the drawn slot is stamped, so staleness changes
        between the draws of one call (as in jaxued and minimax); the score part of the distribution does
        not. On an empty buffer the draws return slot 0 (gate calls with :meth:`sample_replay_decision`).

        Returns:
            ``(buffer, indices int32[num], levels)`` with ``levels`` the Level pytree with a ``num`` axis.
        """
        p_score = self.score_weights(buffer)

        def draw(buf: LevelBuffer, k: jax.Array):
            weights = self._mix(p_score, self.staleness_weights(buf))
            idx = jax.random.categorical(k, jnp.log(weights)).astype(jnp.int32)
            clock = buf.clock + 1
            return buf.replace(clock=clock, timestamps=buf.timestamps.at[idx].set(clock)), idx

        buffer, indices = jax.lax.scan(draw, buffer, jax.random.split(key, num))
        return buffer, indices, self.get_levels(buffer, indices)

    # ------------------------------------------------------------------ lookup
    def get_levels(self, buffer: LevelBuffer, indices: jax.Array) -> Any:
        """The levels at ``indices`` (an int or an int array; the Level pytree gets the same leading shape)."""
        return jax.tree.map(lambda x: x[indices], buffer.levels)

    def get_extra(self, buffer: LevelBuffer, indices: jax.Array) -> Any:
        """The per-level extra data at ``indices``."""
        return jax.tree.map(lambda x: x[indices], buffer.extra)

    def find(self, buffer: LevelBuffer, level: Any) -> jax.Array:
        """``int32[]``: the first filled slot holding a level equal to ``level`` in every leaf, or -1."""
        self._check_buffer(buffer)
        cap = self.capacity
        leaf_eq = jax.tree.leaves(
            jax.tree.map(lambda xs, x: (xs == jnp.asarray(x)[None]).reshape(cap, -1).all(axis=1), buffer.levels, level)
        )
        match = buffer.filled
        for eq in leaf_eq:
            match = match & eq
        return jnp.where(match.any(), jnp.argmax(match), -1).astype(jnp.int32)

    # ------------------------------------------------------------------ insertion and updates
    def insert(
        self,
        buffer: LevelBuffer,
        level: Any,
        score: jax.Array,
        max_return: jax.Array,
        valid: jax.Array | bool = True,
        extra: Any = None,
    ) -> tuple[LevelBuffer, jax.Array]:
        """Offer one new level (with its score and max episodic return) to the buffer.

        See the module docstring for the rule (duplicate update / free slot / replace the lowest-weighted
        slot if strictly better / reject). ``valid=False`` or a non-finite score: nothing is written. The
        clock advances by one in every case.

        Returns:
            ``(buffer, index)``: the slot written (inserted or duplicate-updated), or -1.
        """
        self._check_buffer(buffer)
        if (extra is None) != (buffer.extra is None):
            raise ValueError("insert: pass `extra` exactly when the buffer was initialised with example_extra "
                             f"(buffer.extra is {'None' if buffer.extra is None else 'set'}, extra is "
                             f"{'None' if extra is None else 'set'})")
        score = jnp.asarray(score, jnp.float32)
        max_return = jnp.asarray(max_return, jnp.float32)
        valid = jnp.asarray(valid, jnp.bool_) & jnp.isfinite(score)
        clock = buffer.clock + 1

        if self.config.duplicate_check:
            dup_idx = self.find(buffer, level)
        else:
            dup_idx = jnp.asarray(-1, jnp.int32)
        is_dup = valid & (dup_idx >= 0)

        full = buffer.size >= self.capacity

        def lowest_weight_slot():  # ties: lowest slot index
            return jnp.argmin(jnp.where(buffer.filled, self.level_weights(buffer), jnp.inf)).astype(jnp.int32)

        # (the sort behind the weights is skipped while the buffer fills, except under vmap)
        slot = jax.lax.cond(full, lowest_weight_slot, lambda: buffer.size.astype(jnp.int32))
        is_new = valid & ~is_dup & (~full | (score > buffer.scores[slot]))

        idx = jnp.where(is_dup, dup_idx, slot)
        write = is_dup | is_new

        def put(arr, value, cond):
            return arr.at[idx].set(jnp.where(cond, value, arr[idx]))

        new_max_return = jnp.where(is_dup, jnp.maximum(buffer.max_returns[idx], max_return), max_return)
        buffer = buffer.replace(
            levels=jax.tree.map(lambda xs, x: put(xs, jnp.asarray(x, xs.dtype), is_new), buffer.levels, level),
            scores=put(buffer.scores, score, write),
            max_returns=put(buffer.max_returns, new_max_return, write),
            timestamps=put(buffer.timestamps, clock, write),
            size=buffer.size + (is_new & ~full).astype(jnp.int32),
            clock=clock,
            extra=None if extra is None else jax.tree.map(
                lambda xs, x: put(xs, jnp.asarray(x, xs.dtype), is_new), buffer.extra, extra),
        )
        return buffer, jnp.where(write, idx, -1).astype(jnp.int32)

    def insert_batch(
        self,
        buffer: LevelBuffer,
        levels: Any,
        scores: jax.Array,
        max_returns: jax.Array,
        valid: jax.Array | None = None,
        extras: Any = None,
    ) -> tuple[LevelBuffer, jax.Array]:
        """Offer a batch of ``B`` levels, one after another under ``lax.scan`` (so duplicates within the batch
        update the copy inserted earlier in it).

        Args:
            levels: Level pytree with a leading ``B`` axis. scores, max_returns: ``float32[B]``.
            valid: ``bool[B]`` (default all True); False, e.g. for a level with no completed episode in its
                scoring rollout, means "do not insert". extras: per-level extra data with a ``B`` axis, or None.

        Returns:
            ``(buffer, indices int32[B])``: the slot each level was written to, or -1.
        """
        scores = jnp.asarray(scores, jnp.float32)
        if valid is None:
            valid = jnp.ones(scores.shape, jnp.bool_)

        def step(buf, xs):
            level, score, max_return, ok, extra = xs
            return self.insert(buf, level, score, max_return, ok, extra)

        return jax.lax.scan(step, buffer, (levels, scores, jnp.asarray(max_returns, jnp.float32),
                                           jnp.asarray(valid, jnp.bool_), extras))

    def update_scores(
        self,
        buffer: LevelBuffer,
        indices: jax.Array,
        scores: jax.Array,
        max_returns: jax.Array,
        valid: jax.Array | None = None,
        extras: Any = None,
    ) -> LevelBuffer:
        """After replaying the levels at ``indices`` (``int32[B]``): overwrite their scores and raise their
        max returns to ``max(stored, max_returns)``. Entries with ``valid`` False (no completed episode) are
        skipped; ``extras`` (optional) overwrite the per-level extra data. Applied in order, so a slot drawn
        twice keeps the later score. Timestamps and clock are unchanged (the draw counted the visit)."""
        self._check_buffer(buffer)
        scores = jnp.asarray(scores, jnp.float32)
        if valid is None:
            valid = jnp.ones(scores.shape, jnp.bool_)
        valid = jnp.asarray(valid, jnp.bool_) & jnp.isfinite(scores) & (indices >= 0) & (indices < buffer.size)

        def step(buf: LevelBuffer, xs):
            idx, score, max_return, ok, extra = xs
            buf = buf.replace(
                scores=buf.scores.at[idx].set(jnp.where(ok, score, buf.scores[idx])),
                max_returns=buf.max_returns.at[idx].set(
                    jnp.where(ok, jnp.maximum(buf.max_returns[idx], max_return), buf.max_returns[idx])),
            )
            if extra is not None:
                def put(stored, x):
                    return stored.at[idx].set(jnp.where(ok, jnp.asarray(x, stored.dtype), stored[idx]))

                buf = buf.replace(extra=jax.tree.map(put, buf.extra, extra))
            return buf, None

        idx = jnp.clip(jnp.asarray(indices, jnp.int32), 0, self.capacity - 1)
        buffer, _ = jax.lax.scan(step, buffer, (idx, scores, jnp.asarray(max_returns, jnp.float32), valid, extras))
        return buffer

    # ------------------------------------------------------------------ logging
    def stats(self, buffer: LevelBuffer) -> BufferStats:
        """Scalar summaries for logging; see :class:`BufferStats`."""
        filled = buffer.filled
        n = jnp.maximum(buffer.size, 1).astype(jnp.float32)
        weights = self.level_weights(buffer)
        scores = jnp.where(filled, buffer.scores, 0.0)
        staleness = jnp.where(filled, buffer.clock - buffer.timestamps, 0).astype(jnp.float32)
        finite_max = filled & jnp.isfinite(buffer.max_returns)
        nonempty = buffer.size > 0
        return BufferStats(
            size=buffer.size,
            fill_ratio=buffer.size / self.capacity,
            mean_score=scores.sum() / n,
            min_score=jnp.where(nonempty, jnp.where(filled, buffer.scores, jnp.inf).min(), 0.0),
            max_score=jnp.where(nonempty, jnp.where(filled, buffer.scores, -jnp.inf).max(), 0.0),
            weighted_score=(weights * scores).sum(),
            mean_staleness=staleness.sum() / n,
            weighted_staleness=(weights * staleness).sum(),
            mean_max_return=jnp.where(finite_max, buffer.max_returns, 0.0).sum()
            / jnp.maximum(finite_max.sum(), 1),
        )
