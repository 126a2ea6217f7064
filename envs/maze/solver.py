"""Shortest paths on a maze level, in JAX (jit/vmap-able; breadth-first search as frontier expansion).

* :func:`shortest_path` — number of cell moves from the agent's start to the goal (the last move is the one
  into the goal cell, which is what ends the episode), or ``-1`` when the goal is unreachable.
* :func:`shortest_path_actions` — the least number of *actions* (turns included) that reach the goal from the
  start position *and direction*, or ``-1``. With it, the best possible return on a level is
  ``1 - 0.9 * n / max_steps_in_episode`` (when ``n <= max_steps_in_episode``).

Both expand a boolean frontier over the whole grid inside a ``lax.while_loop`` that stops when the goal is
reached or the frontier stops growing, so they cost ``O(path length x H x W)`` elementwise work and vmap over
thousands of levels (under ``vmap`` the loop runs until every level in the batch is done).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_self.envs.maze.level import DIR_TO_VEC, Level

__all__ = ["shortest_path", "shortest_path_actions", "distance_map"]


def _shift(m: jax.Array, dx: int, dy: int) -> jax.Array:
    """``out[..., y, x] = m[..., y - dy, x - dx]``, False where that falls outside the grid (dx, dy in -1..1)."""
    h, w = m.shape[-2:]
    pad = [(0, 0)] * (m.ndim - 2) + [(max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0))]
    padded = jnp.pad(m, pad)
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return padded[..., y0 : y0 + h, x0 : x0 + w]


def _dilate(m: jax.Array) -> jax.Array:
    """A boolean map grown by one step in the four grid directions."""
    return m | _shift(m, 1, 0) | _shift(m, -1, 0) | _shift(m, 0, 1) | _shift(m, 0, -1)


def _one_hot_cell(pos: jax.Array, h: int, w: int) -> jax.Array:
    ys = jnp.arange(h, dtype=jnp.int32)[:, None]
    xs = jnp.arange(w, dtype=jnp.int32)[None, :]
    return (ys == pos[1]) & (xs == pos[0])


@jax.jit
def shortest_path(level: Level) -> jax.Array:
    """Length (int32) of the shortest 4-connected path of free cells from ``agent_pos`` to ``goal_pos``, counted
    in moves (a goal next to the agent is 1); ``-1`` when there is none. One unbatched level; vmap for more."""
    h, w = level.wall_map.shape
    free = ~level.wall_map
    goal = _one_hot_cell(level.goal_pos, h, w)

    def cond(carry):
        _, k, found, grew = carry
        return ~found & grew

    def body(carry):
        reached, k, _, _ = carry
        new = _dilate(reached) & free
        return new, k + 1, jnp.any(new & goal), jnp.any(new != reached)

    init = (_one_hot_cell(level.agent_pos, h, w) & free, jnp.int32(0), jnp.bool_(False), jnp.bool_(True))
    _, k, found, _ = jax.lax.while_loop(cond, body, init)
    return jnp.where(found, k, -1).astype(jnp.int32)


@jax.jit
def distance_map(level: Level) -> jax.Array:
    """``int32[H, W]`` number of moves from ``agent_pos`` to every free cell (``-1`` for walls and unreachable
    cells; the goal cell gets its distance like any free cell). Used for analysis and rendering."""
    h, w = level.wall_map.shape
    free = ~level.wall_map

    def cond(carry):
        return carry[3]

    def body(carry):
        reached, dist, k, _ = carry
        new = _dilate(reached) & free
        fresh = new & ~reached
        return new, jnp.where(fresh, k + 1, dist), k + 1, jnp.any(fresh)

    start = _one_hot_cell(level.agent_pos, h, w) & free
    init = (start, jnp.where(start, 0, -1).astype(jnp.int32), jnp.int32(0), jnp.bool_(True))
    return jax.lax.while_loop(cond, body, init)[1]


@jax.jit
def shortest_path_actions(level: Level) -> jax.Array:
    """Least number of actions (turn left, turn right, forward) that end the episode at the goal, from the start
    position and direction; ``-1`` when the goal is unreachable. Breadth-first search over the ``4 x H x W``
    (direction, y, x) states; the goal cell itself is not enterable (bumping into it from a neighbouring cell is
    the last action, as in the environment)."""
    h, w = level.wall_map.shape
    goal = _one_hot_cell(level.goal_pos, h, w)
    standable = ~level.wall_map & ~goal  # cells the agent can occupy
    # goal_ahead[d, y, x]: standing on (x, y) facing d, "forward" hits the goal.
    goal_ahead = jnp.stack([_shift(goal, -int(dx), -int(dy)) for dx, dy in DIR_TO_VEC]) & standable

    def expand(reached):
        turned = jnp.roll(reached, 1, axis=0) | jnp.roll(reached, -1, axis=0)
        moved = jnp.stack([_shift(reached[d], int(dx), int(dy)) for d, (dx, dy) in enumerate(DIR_TO_VEC)])
        return reached | turned | (moved & standable)

    def cond(carry):
        _, _, found, grew = carry
        return ~found & grew

    def body(carry):
        reached, k, _, _ = carry
        new = expand(reached)
        return new, k + 1, jnp.any(new & goal_ahead), jnp.any(new != reached)

    dirs = jnp.arange(4, dtype=jnp.int32)[:, None, None]
    start = (dirs == level.agent_dir) & _one_hot_cell(level.agent_pos, h, w)[None] & standable[None]
    init = (start, jnp.int32(0), jnp.any(start & goal_ahead), jnp.bool_(True))
    _, k, found, _ = jax.lax.while_loop(cond, body, init)
    return jnp.where(found, k + 1, -1).astype(jnp.int32)
