"""Level generators and the ACCEL edit operator, all pure JAX (jit/vmap-able).

* :func:`random_walls_level` — the UED domain-randomisation generator of minimax/jaxued (``Maze.sample_level``).
* :func:`mutate_level` — ACCEL's edits: flip a wall, move the goal, move the agent (``Maze.mutate_level``).
* :func:`perfect_maze` — a recursive-backtracker (depth-first search) perfect maze, like minimax's PerfectMaze.
* :func:`four_rooms` — minigrid's FourRooms layout in the inner grid, random doors, goal and agent.

Conventions (positions ``(x, y)``, ``wall_map[y, x]``, directions 0 right / 1 down / 2 left / 3 up) are those
of :mod:`jaxrl_self.envs.maze.level`.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_self.envs.maze.level import Level

__all__ = [
    "random_walls_level",
    "mutate_level",
    "perfect_maze",
    "four_rooms",
    "EDIT_KINDS",
    "random_words",
    "uniform_below",
    "kth_true",
    "sample_free_cell",
]


def uniform_below(word: jax.Array, n: jax.Array | int) -> jax.Array:
    """An int32 in ``[0, n)`` from a uniform uint32 ``word`` (``n >= 1``): ``word % n``. The modulo bias is at
    most ``n / 2**32`` in relative probability (below 1e-7 for any grid up to 400 cells), far below what any
    test or training run can see; in exchange every draw costs one random word."""
    return jax.lax.rem(word, jnp.asarray(n).astype(jnp.uint32)).astype(jnp.int32)


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijective mixer with full avalanche (uint32 -> uint32)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def random_words(key: jax.Array, n: int) -> jax.Array:
    """``n`` uniform uint32 words from ``key``: one 64-bit seed from ``jax.random.bits``, expanded with a
    counter-based mixer (two rounds of MurmurHash3's finaliser over ``(seed, counter)``).

    Threefry costs about as much per word as per key, and under ``vmap`` on CPU ``jax.random.bits(key, (29,))``
    is ~5-10x slower than this; it matters because domain randomisation samples a level on *every* step (the
    auto-reset branch is computed every step under ``vmap``). The words are only used to place walls, goal and
    agent, where the mixer's statistical quality is far more than enough.
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)
    counter = jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9)
    return _fmix32(_fmix32(seed[0] ^ counter) + seed[1])


def _row_bits(mask: jax.Array) -> jax.Array:
    """Pack a boolean ``[H, W]`` mask (``W <= 32``) into ``uint32[H]`` row words, bit ``x`` = column ``x``."""
    w = mask.shape[-1]
    weights = jnp.left_shift(jnp.uint32(1), jnp.arange(w, dtype=jnp.uint32))
    return jnp.sum(jnp.where(mask, weights, jnp.uint32(0)), axis=-1, dtype=jnp.uint32)


def _select_bit(word: jax.Array, k: jax.Array, width: int) -> jax.Array:
    """Position (int32) of the ``k``-th (0-based) set bit of ``word``: the largest ``p`` with
    ``popcount(word & (2**p - 1)) <= k``, by binary search (``k < popcount(word)``; ``width <= 32``)."""
    steps = [1 << b for b in reversed(range(max(1, (width - 1).bit_length())))]
    lo = jnp.zeros((), jnp.uint32)
    for step in steps:
        m = lo + jnp.uint32(step)
        below = jax.lax.population_count(word & ((jnp.uint32(1) << m) - jnp.uint32(1))).astype(jnp.int32)
        lo = jnp.where(below <= k, m, lo)
    return lo.astype(jnp.int32)


def _kth_in_rows(row_bits: jax.Array, k: jax.Array, width: int) -> jax.Array:
    """Flat index (int32) of the ``k``-th set bit, row-major, of packed rows ``uint32[H]``."""
    h = row_bits.shape[0]
    rows = jnp.arange(h, dtype=jnp.int32)
    counts = jax.lax.population_count(row_bits).astype(jnp.int32)
    inclusive = jnp.sum(jnp.where(rows[:, None] >= rows[None, :], counts[None, :], 0), axis=1)
    y = jnp.sum(inclusive <= k, dtype=jnp.int32)  # the first row whose inclusive count exceeds k
    before = jnp.sum(jnp.where(rows < y, counts, 0))
    word = jnp.sum(jnp.where(rows == y, row_bits, jnp.uint32(0)), dtype=jnp.uint32)
    return y * width + _select_bit(word, k - before, width)


def _kth_generic(mask: jax.Array, k: jax.Array) -> jax.Array:
    """:func:`kth_true` for any width: the same two-level search with boolean rows instead of bit words."""
    h, w = mask.shape
    rows, cols = jnp.arange(h, dtype=jnp.int32), jnp.arange(w, dtype=jnp.int32)
    counts = jnp.sum(mask, axis=1, dtype=jnp.int32)
    inclusive = jnp.sum(jnp.where(rows[:, None] >= rows[None, :], counts[None, :], 0), axis=1)
    y = jnp.sum(inclusive <= k, dtype=jnp.int32)
    k_in_row = k - jnp.sum(jnp.where(rows < y, counts, 0))
    row = jnp.any(mask & (rows[:, None] == y), axis=0)
    col_inclusive = jnp.sum(jnp.where(cols[:, None] >= cols[None, :], row[None, :].astype(jnp.int32), 0), axis=1)
    return y * w + jnp.sum(col_inclusive <= k_in_row, dtype=jnp.int32)


def kth_true(mask: jax.Array, k: jax.Array) -> jax.Array:
    """Flat index (int32) of the ``k``-th True cell (0-based, row-major) of a boolean ``[H, W]`` mask.

    A two-level search (the row from per-row counts, then the column), ``O(H*W + H^2)`` elementwise work with
    rows packed into bit words when ``W <= 32``: under ``vmap`` on CPU much cheaper than a length-``H*W``
    cumulative sum (a quadratic reduce-window there) or one random number per cell. Requires
    ``0 <= k < mask.sum()``.
    """
    h, w = mask.shape
    if w <= 32:
        return _kth_in_rows(_row_bits(mask), k, w)
    return _kth_generic(mask, k)


def sample_free_cell(word: jax.Array, mask: jax.Array) -> jax.Array:
    """A flat index drawn uniformly among the True cells of the boolean ``[H, W]`` ``mask``, from one uniform
    uint32 ``word`` (the mask must have at least one True cell)."""
    count = jnp.sum(mask, dtype=jnp.int32)
    return kth_true(mask, uniform_below(word, jnp.maximum(count, 1)))


def _to_xy(idx: jax.Array, width: int) -> jax.Array:
    """Flat non-negative index -> int32 ``(x, y)``."""
    idx = idx.astype(jnp.int32)
    return jnp.stack([jax.lax.rem(idx, jnp.int32(width)), jax.lax.div(idx, jnp.int32(width))])


def _place_goal_agent(words: jax.Array, wall: jax.Array) -> Level:
    """Agent uniform over the free cells, goal uniform over the remaining free cells, direction uniform; from
    three uniform uint32 ``words``. ``wall``: bool[H, W]. The goal is drawn by rank among the free cells,
    skipping the agent's rank, so both share one packing of the free-cell mask."""
    h, w = wall.shape
    free = ~wall
    count = jnp.sum(free, dtype=jnp.int32)
    k_agent = uniform_below(words[0], jnp.maximum(count, 1))
    k_goal = uniform_below(words[1], jnp.maximum(count - 1, 1))
    k_goal = k_goal + (k_goal >= k_agent)
    if w <= 32:
        bits = _row_bits(free)
        agent, goal = _kth_in_rows(bits, k_agent, w), _kth_in_rows(bits, k_goal, w)
    else:
        agent, goal = _kth_generic(free, k_agent), _kth_generic(free, k_goal)
    return Level(wall_map=wall, goal_pos=_to_xy(goal, w), agent_pos=_to_xy(agent, w),
                 agent_dir=uniform_below(words[2], 4))


# ---------------------------------------------------------------------------------------------- DR generator
@functools.partial(jax.jit, static_argnames=("height", "width", "max_walls", "replace_wall_pos", "sample_n_walls"))
def random_walls_level(
    key: jax.Array,
    height: int = 13,
    width: int = 13,
    max_walls: int = 25,
    replace_wall_pos: bool = True,
    sample_n_walls: bool = False,
) -> Level:
    """The random-walls generator of minimax's ``Maze.reset_env`` / jaxued's ``make_level_generator``.

    1. Walls: ``max_walls`` cells drawn uniformly from the ``height x width`` grid. With
       ``replace_wall_pos=True`` (the default; jaxued's generator and the minimax training configs) the draws are
       *with* replacement, so a level has at most ``max_walls`` walls (on 13 x 13, 23.3 on average for 25 draws,
       50.6 for 60). With ``replace_wall_pos=False`` the draws are without replacement: exactly ``max_walls``
       walls (minimax's ``EnvParams`` default). With ``sample_n_walls=True`` only the first ``n`` draws are kept,
       ``n`` uniform in ``[0, max_walls]`` (minimax's option).
    2. Agent: uniform over the free cells; direction uniform over the four.
    3. Goal: uniform over the free cells other than the agent's.

    All the randomness is ``max_walls + 4`` uniform 32-bit words from :func:`random_words`.
    Requires ``max_walls <= height * width - 2``.
    """
    n = height * width
    words = random_words(key, max_walls + 4)
    wall = jnp.zeros(n, jnp.bool_)
    if max_walls > 0:
        if replace_wall_pos:
            idx = uniform_below(words[:max_walls], n)
        else:
            idx = jax.random.permutation(jax.random.fold_in(key, 1), n)[:max_walls].astype(jnp.int32)
        keep = jnp.ones((max_walls,), jnp.bool_)
        if sample_n_walls:
            keep = jnp.arange(max_walls) < uniform_below(words[max_walls], max_walls + 1)
        wall = wall.at[idx].max(keep)
    return _place_goal_agent(words[max_walls + 1 :], wall.reshape(height, width))


# ---------------------------------------------------------------------------------------------- ACCEL edits
#: The edit kinds of :func:`mutate_level`, in the order of ``mutation_weights``.
EDIT_KINDS = ("no_op", "flip_wall", "move_goal", "move_agent")


def mutate_level(
    key: jax.Array,
    level: Level,
    n_edits: int | jax.Array,
    mutation_weights: Sequence[float] = (1.0, 1.0, 1.0, 0.0),
) -> Level:
    """Apply ``n_edits`` random edits (``n_edits`` may be traced, and batched under vmap).

    Each edit draws its kind from :data:`EDIT_KINDS` with probabilities proportional to ``mutation_weights``:

    * ``no_op`` — nothing;
    * ``flip_wall`` — a cell drawn uniformly among all cells except the goal's and the agent's is flipped
      (a wall is removed or added);
    * ``move_goal`` — the goal moves to a free cell drawn uniformly, other than its own and the agent's;
    * ``move_agent`` — the agent moves likewise (never onto the goal) and gets a uniformly random direction.

    The default weights ``(1, 1, 1, 0)`` are minimax's ``move_goal_flip_walls`` mutator, which jaxued's ACCEL
    uses (``make_level_mutator_minimax``): each edit is a no-op, a wall flip or a goal move with probability 1/3.
    The result is always a valid level, and differs from the input in at most ``n_edits`` edits.
    """
    weights = np.asarray(mutation_weights, dtype=np.float64)
    if weights.shape != (4,) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"mutation_weights must be 4 non-negative numbers for {EDIT_KINDS} with a positive sum, "
                         f"got {tuple(mutation_weights)}")
    return _mutate_level(key, level, n_edits, tuple(float(x) for x in weights))


@functools.partial(jax.jit, static_argnames=("mutation_weights",))
def _mutate_level(key: jax.Array, level: Level, n_edits: int | jax.Array, mutation_weights: tuple) -> Level:
    weights = np.asarray(mutation_weights, dtype=np.float64)
    # kind = number of cumulative thresholds at or below a uniform u in [0, 1); a zero weight is never drawn
    thresholds = jnp.asarray(np.cumsum(weights / weights.sum())[:-1], jnp.float32)
    h, w = level.wall_map.shape
    n = h * w
    cells = jnp.arange(n, dtype=jnp.int32).reshape(h, w)

    def edit(i, lv: Level) -> Level:
        words = jax.random.bits(jax.random.fold_in(key, i), (4,), jnp.uint32)
        u = (words[0] >> 8).astype(jnp.float32) * (1.0 / (1 << 24))
        kind = jnp.sum(u >= thresholds, dtype=jnp.int32)
        wall = lv.wall_map
        a_idx = lv.agent_pos[1] * w + lv.agent_pos[0]
        g_idx = lv.goal_pos[1] * w + lv.goal_pos[0]
        # flip: uniform over the n - 2 cells that are neither the agent's nor the goal's
        lo, hi = jnp.minimum(a_idx, g_idx), jnp.maximum(a_idx, g_idx)
        c = uniform_below(words[1], n - 2)
        c = c + (c >= lo)
        c = c + (c >= hi)
        wall = jnp.where(kind == 1, wall ^ (cells == c), wall)
        # move goal / agent: uniform over the free cells that hold neither
        target_mask = ~wall & (cells != a_idx) & (cells != g_idx)
        can_move = jnp.any(target_mask)
        target = _to_xy(sample_free_cell(words[2], target_mask), w)
        move_goal = (kind == 2) & can_move
        move_agent = (kind == 3) & can_move
        return Level(
            wall_map=wall,
            goal_pos=jnp.where(move_goal, target, lv.goal_pos),
            agent_pos=jnp.where(move_agent, target, lv.agent_pos),
            agent_dir=jnp.where(move_agent, uniform_below(words[3], 4), lv.agent_dir),
        )

    level = Level(
        wall_map=jnp.asarray(level.wall_map, jnp.bool_),
        goal_pos=jnp.asarray(level.goal_pos, jnp.int32),
        agent_pos=jnp.asarray(level.agent_pos, jnp.int32),
        agent_dir=jnp.asarray(level.agent_dir, jnp.int32),
    )
    return jax.lax.fori_loop(0, jnp.asarray(n_edits, jnp.int32), edit, level)


# ---------------------------------------------------------------------------------------------- procedural
@functools.partial(jax.jit, static_argnames=("height", "width"))
def perfect_maze(key: jax.Array, height: int = 13, width: int = 13) -> Level:
    """A perfect maze (exactly one path between any two free cells) by the recursive backtracker.

    As in minimax's PerfectMaze, the maze's *cells* sit on the even coordinates of the inner grid (0, 2, ..., 12
    for 13 — the odd coordinates of the grid with its border), passages between neighbouring cells are carved
    on the cells between them, and everything else is wall: 7 x 7 cells and 48 passages on 13 x 13. The DFS runs
    as a fixed-length ``lax.fori_loop`` of ``2 * cells - 2`` push/pop steps with an explicit stack; the start
    cell is uniform, each push picks an unvisited neighbour uniformly. Goal, agent (distinct) and direction are
    then uniform over the free cells. Needs odd ``height`` and ``width``.
    """
    if height % 2 == 0 or width % 2 == 0:
        raise ValueError(f"perfect_maze needs odd height and width, got height={height}, width={width}")
    ch, cw = height // 2 + 1, width // 2 + 1
    nc = ch * cw
    n_steps = 2 * nc - 2
    words = jax.random.bits(key, (n_steps + 4,), jnp.uint32)
    nbr_dx = jnp.array([1, 0, -1, 0], jnp.int32)
    nbr_dy = jnp.array([0, 1, 0, -1], jnp.int32)
    grid = jnp.arange(height * width, dtype=jnp.int32).reshape(height, width)

    start = uniform_below(words[n_steps], nc)
    visited = jnp.zeros(nc, jnp.bool_).at[start].set(True)
    stack = jnp.zeros(nc, jnp.int32).at[0].set(start)
    wall = grid != (2 * (start // cw)) * width + 2 * (start % cw)

    def step(i, carry):
        wall, visited, stack, sp = carry
        top = stack[sp - 1]
        cx, cy = top % cw, top // cw
        nx, ny = cx + nbr_dx, cy + nbr_dy
        inside = (nx >= 0) & (nx < cw) & (ny >= 0) & (ny < ch)
        nidx = jnp.clip(ny, 0, ch - 1) * cw + jnp.clip(nx, 0, cw - 1)
        options = inside & ~visited[nidx]
        push = jnp.any(options)
        r = uniform_below(words[i], jnp.maximum(jnp.sum(options, dtype=jnp.int32), 1))
        j = jnp.sum(jnp.cumsum(options.astype(jnp.int32)) <= r)  # the r-th open neighbour
        j = jnp.minimum(j, 3)
        px, py = 2 * cx + nbr_dx[j], 2 * cy + nbr_dy[j]  # the passage between the two cells
        carve = (grid == py * width + px) | (grid == (2 * ny[j]) * width + 2 * nx[j])
        wall = jnp.where(push, wall & ~carve, wall)
        visited = jnp.where(push, visited.at[nidx[j]].set(True), visited)
        stack = jnp.where(push, stack.at[sp].set(nidx[j]), stack)
        sp = jnp.where(push, sp + 1, sp - 1)
        return wall, visited, stack, sp

    wall, *_ = jax.lax.fori_loop(0, n_steps, step, (wall, visited, stack, jnp.int32(1)))
    return _place_goal_agent(words[n_steps + 1 :], wall)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def four_rooms(key: jax.Array, height: int = 13, width: int = 13) -> Level:
    """Minigrid's FourRooms in the inner grid: a wall row at ``y = height // 2`` and a wall column at
    ``x = width // 2`` split the grid into four rooms (6 x 6 each on 13 x 13); each of the four wall segments gets
    one door at a uniform position. Goal, agent (distinct) and direction uniform over the free cells (so the
    agent and goal may start in the same room). Always solvable. Needs ``height, width >= 3``."""
    if height < 3 or width < 3:
        raise ValueError(f"four_rooms needs height, width >= 3, got height={height}, width={width}")
    words = jax.random.bits(key, (7,), jnp.uint32)
    my, mx = height // 2, width // 2
    door_left = uniform_below(words[0], mx)  # x of a door in the wall row, left of the crossing
    door_right = mx + 1 + uniform_below(words[1], width - mx - 1)
    door_top = uniform_below(words[2], my)  # y of a door in the wall column, above the crossing
    door_bottom = my + 1 + uniform_below(words[3], height - my - 1)
    ys = jnp.arange(height)[:, None]
    xs = jnp.arange(width)[None, :]
    wall = (ys == my) | (xs == mx)
    doors = ((ys == my) & ((xs == door_left) | (xs == door_right))) | (
        (xs == mx) & ((ys == door_top) | (ys == door_bottom))
    )
    return _place_goal_agent(words[4:], wall & ~doors)
