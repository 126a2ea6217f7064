"""The UED maze: minimax's AMaze / jaxued's ``Maze`` as a :class:`~jaxrl_self.core.LevelEnv`.

A partially observable navigation task on an ``H x W`` grid (13 x 13 by default) whose outer border wall is
implicit. A :class:`~jaxrl_self.envs.maze.level.Level` fixes the walls, the goal and the agent's start position
and direction; curricula choose levels (see :mod:`jaxrl_self.envs.wrappers` for reset policies).

Conventions: positions are ``(x, y)`` with ``wall_map[y, x]``; directions 0 right, 1 down, 2 left, 3 up.

* **Actions** ``Discrete(3)``: 0 turn left (direction - 1 mod 4), 1 turn right (+1 mod 4), 2 move forward.
  Moving into a wall or the border leaves the agent where it is. The goal cell is never entered: moving
  forward into it ends the episode with the agent still in front of it (as in minimax and jaxued; their action
  spaces declare 7 minigrid actions of which 3..6 do nothing — here only the 3 that act exist, unless
  ``num_actions=7`` asks for jaxued's action space, whose actions 3..6 leave everything as it is but the clock).
* **Reward** on the step that moves into the goal: ``1 - 0.9 * t / T`` with ``t`` the number of steps taken in
  the episode *including this one* (``state.time`` after the step; jaxued/minimax compute
  ``(state.time + 1) / T`` before incrementing, the same number) and ``T = params.max_steps_in_episode``.
  0 otherwise. With ``penalize_time=False`` the goal reward is 1.
* **Termination**: moving into the goal (``terminated=True``). **Truncation**: ``state.time`` reaches ``T``
  without reaching the goal (``truncated = ~terminated & (time >= T)``, so at most one of the two is set).
  Evaluation commonly uses ``params.replace(max_steps_in_episode=450)`` (minimax: ``2 * 15 * 15`` for 13 x 13).
* **Observation** ``{"image": uint8[V, V, 3], "agent_dir": int32}``: the egocentric ``V x V`` view (``V =
  view_size``, 5) in front of the agent, encoded like minigrid/jaxued: per cell ``(object, colour, state)``
  with empty ``(1, 0, 0)``, wall ``(2, 5, 0)`` (grey), goal ``(8, 1, 0)`` (green), and, when ``see_agent``,
  the agent ``(10, 0, dir)`` on its own cell. Cells outside the grid read as walls; there is no occlusion
  (minigrid's ``see_through_walls=True``). The image is indexed ``image[i, j]`` in minigrid's
  ``(x, y)`` order *of the view*: ``i`` runs across the view from the agent's left (0) to its right (V - 1),
  ``j`` from the farthest row (0) to the agent's row (V - 1). So the agent sits at ``image[V // 2, V - 1]``,
  "bottom centre" facing "up" (towards ``j = 0``), and ``image[V // 2, V - 1 - k]`` is the cell ``k`` steps
  ahead. This is exactly jaxued's layout (minimax's is its transpose). With ``normalize_obs`` the image is
  ``float32`` divided by 10 (as jaxued's training scripts use).

Performance: ``step`` also computes the auto-reset observation (and, for domain randomisation, a new level)
on every step, so both are kept cheap under ``vmap``: the observation is one ``dynamic_slice`` of the padded
object map turned by a static flip/transpose (see :meth:`Maze.get_obs`), the generator needs one threefry call
(see :func:`~jaxrl_self.envs.maze.generators.random_words`), and the state holds nothing but the level,
position, direction and time.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.environment import EnvParams, EnvState, LevelEnv, StepResult
from jaxrl_self.core.spaces import Box, Dict, Discrete
from jaxrl_self.envs.maze import generators, solver
from jaxrl_self.envs.maze.level import DIR_TO_VEC, Level, level_from_str, level_to_str

__all__ = ["Maze", "MazeParams", "MazeState", "OBJECT_TO_INDEX", "COLOR_TO_INDEX"]

#: minigrid's object ids (the first image channel).
OBJECT_TO_INDEX = {"unseen": 0, "empty": 1, "wall": 2, "floor": 3, "door": 4, "key": 5, "ball": 6, "box": 7,
                   "goal": 8, "lava": 9, "agent": 10}
#: minigrid's colour ids (the second image channel).
COLOR_TO_INDEX = {"red": 0, "green": 1, "blue": 2, "purple": 3, "yellow": 4, "grey": 5}

_EMPTY, _WALL, _GOAL, _AGENT = (OBJECT_TO_INDEX[k] for k in ("empty", "wall", "goal", "agent"))
_GREY, _GREEN, _RED = (COLOR_TO_INDEX[k] for k in ("grey", "green", "red"))


@struct.dataclass
class MazeParams(EnvParams):
    """Traced numbers. ``max_steps_in_episode`` is ``T`` of the reward ``1 - 0.9 t / T`` and the time limit
    (250 for training as in minimax/jaxued; evaluate with ``params.replace(max_steps_in_episode=450)``)."""

    max_steps_in_episode: int = 250


@struct.dataclass
class MazeState(EnvState):
    """``time``: int32 steps taken in this episode (0 after reset); ``level``: the level being played (its
    ``agent_pos``/``agent_dir`` are the *start*); ``agent_pos``: int32[2] current ``(x, y)``; ``agent_dir``:
    int32 current direction."""

    level: Level
    agent_pos: jax.Array
    agent_dir: jax.Array


def _dir_vec(d: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(dx, dy)`` of direction ``d`` by arithmetic (no table gather)."""
    d = d.astype(jnp.int32)
    return (d == 0).astype(jnp.int32) - (d == 2), (d == 1).astype(jnp.int32) - (d == 3)


def _canonical(level: Level) -> Level:
    return Level(
        wall_map=jnp.asarray(level.wall_map, jnp.bool_),
        goal_pos=jnp.asarray(level.goal_pos, jnp.int32),
        agent_pos=jnp.asarray(level.agent_pos, jnp.int32),
        agent_dir=jnp.asarray(level.agent_dir, jnp.int32),
    )


class Maze(LevelEnv[MazeState, MazeParams, Level]):
    """UED maze (minimax AMaze / jaxued Maze). See the module docstring for the full specification.

    Args (structural, fixed at construction):
        height, width: inner grid size (13 x 13).
        view_size: side ``V`` of the square egocentric view (odd, 5).
        max_walls: wall budget of :meth:`sample_level` (25; ``"maze-60"`` uses 60).
        replace_wall_pos: draw the ``max_walls`` wall cells with replacement (True: jaxued's generator and the
            minimax training configs; a level then has at most ``max_walls`` walls) or without (exactly
            ``max_walls``).
        sample_n_walls: keep only the first ``n ~ U{0..max_walls}`` wall draws (minimax's option).
        see_agent: draw the agent on its own cell of the view (jaxued/minimax default False).
        num_actions: 3 (the actions that act) or 7 (jaxued's and minimax's minigrid action space: 3..6 are
            no-ops that spend a step; a uniform policy then moves forward 1/7 instead of 1/3 of the time).
        normalize_obs: float32 image divided by 10 instead of uint8 (default False, as jaxued's env).
        penalize_time: goal reward ``1 - 0.9 t / T`` (True) or 1.
        mutation_weights: probabilities (up to scale) of the edit kinds ``(no_op, flip_wall, move_goal,
            move_agent)`` of :meth:`mutate_level`; default ``(1, 1, 1, 0)`` = minimax/jaxued ACCEL.
    """

    #: ``step_env`` ignores its key, so :meth:`Environment.step` passes the whole key to the auto-reset unsplit.
    deterministic_step = True

    def __init__(
        self,
        height: int = 13,
        width: int = 13,
        view_size: int = 5,
        max_walls: int = 25,
        *,
        replace_wall_pos: bool = True,
        sample_n_walls: bool = False,
        see_agent: bool = False,
        num_actions: int = 3,
        normalize_obs: bool = False,
        penalize_time: bool = True,
        mutation_weights: Sequence[float] = (1.0, 1.0, 1.0, 0.0),
    ):
        for name, v in (("height", height), ("width", width), ("view_size", view_size)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Maze.{name} must be an int >= 1, got {v!r}")
        if height * width < 2:
            raise ValueError(f"Maze needs at least 2 cells (goal and agent), got height={height}, width={width}")
        if view_size % 2 == 0:
            raise ValueError(f"Maze.view_size must be odd (the agent sits in the middle column), got {view_size}")
        if not isinstance(max_walls, (int, np.integer)) or not 0 <= max_walls <= height * width - 2:
            raise ValueError(f"Maze.max_walls must be an int in [0, height*width - 2] = [0, {height * width - 2}] "
                             f"(room for the goal and the agent), got {max_walls!r}")
        if num_actions not in (3, 7) or isinstance(num_actions, bool):
            raise ValueError(f"Maze.num_actions must be 3 (turn left, turn right, forward) or 7 (jaxued's minigrid "
                             f"action space, 3..6 no-ops), got {num_actions!r}")
        weights = tuple(float(x) for x in mutation_weights)
        if len(weights) != 4 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("Maze.mutation_weights must be 4 non-negative numbers (no_op, flip_wall, move_goal, "
                             f"move_agent) with a positive sum, got {tuple(mutation_weights)}")
        self.height, self.width, self.view_size = int(height), int(width), int(view_size)
        self.max_walls = int(max_walls)
        self.replace_wall_pos = bool(replace_wall_pos)
        self.sample_n_walls = bool(sample_n_walls)
        self.see_agent = bool(see_agent)
        self._num_actions = int(num_actions)
        self.normalize_obs = bool(normalize_obs)
        self.penalize_time = bool(penalize_time)
        self.mutation_weights = weights
        # Corner (in the padded map, offset by the padding V - 1) of the V x V box seen facing each direction:
        # the view spans `fwd` in [0, V - 1] steps ahead and `lat` in [-V//2, V//2] steps to the side.
        v, c = self.view_size, self.view_size // 2
        self._box_row = tuple(int(v - 1 + min(0, (v - 1) * vy) - c * abs(vx)) for vx, vy in DIR_TO_VEC)
        self._box_col = tuple(int(v - 1 + min(0, (v - 1) * vx) - c * abs(vy)) for vx, vy in DIR_TO_VEC)

    # ------------------------------------------------------------------ spaces and params
    @property
    def default_params(self) -> MazeParams:
        return MazeParams()

    def observation_space(self, params: MazeParams | None = None) -> Dict:
        shape = (self.view_size, self.view_size, 3)
        image = Box(0.0, 1.0, shape, jnp.float32) if self.normalize_obs else Box(0, 10, shape, jnp.uint8)
        return Dict({"image": image, "agent_dir": Discrete(4)})

    def action_space(self, params: MazeParams | None = None) -> Discrete:
        return Discrete(self._num_actions)

    @property
    def name(self) -> str:
        return "Maze"

    def __repr__(self) -> str:
        return (f"Maze(height={self.height}, width={self.width}, view_size={self.view_size}, "
                f"max_walls={self.max_walls})")

    # ------------------------------------------------------------------ dynamics
    def get_obs(self, level: Level, agent_pos: jax.Array, agent_dir: jax.Array) -> dict[str, jax.Array]:
        """The observation of an agent at ``agent_pos`` facing ``agent_dir`` in ``level`` (see module doc).

        Implementation: the level's object-id map (goal included) is padded with ``V - 1`` walls, the ``V x V``
        box the agent sees is cut with one ``dynamic_slice`` (its corner depends on the direction), and the box
        is turned to the agent's frame by one of four static flips/transposes. Under ``vmap`` this is several
        times cheaper on CPU than gathering the cells one by one, or jaxued's four ``rot90`` products.
        """
        v, p = self.view_size, self.view_size - 1
        ys = jnp.arange(self.height, dtype=jnp.int32)[:, None]
        xs = jnp.arange(self.width, dtype=jnp.int32)[None, :]
        obj = jnp.where(level.wall_map, jnp.uint8(_WALL), jnp.uint8(_EMPTY))
        obj = jnp.where((ys == level.goal_pos[1]) & (xs == level.goal_pos[0]), jnp.uint8(_GOAL), obj)
        padded = jnp.pad(obj, p, constant_values=_WALL)
        d = agent_dir.astype(jnp.int32)
        is_dir = [d == k for k in range(3)]  # direction 3 (up) is the default branch of the selects
        row0 = agent_pos[1] + jnp.select(is_dir, [jnp.int32(r) for r in self._box_row[:3]], self._box_row[3])
        col0 = agent_pos[0] + jnp.select(is_dir, [jnp.int32(c) for c in self._box_col[:3]], self._box_col[3])
        box = jax.lax.dynamic_slice(padded, (row0, col0), (v, v))  # [row, col] of the grid
        # image[i, j]: i = lateral (agent's left .. right), j = depth (farthest .. the agent's row)
        facing_right, facing_down, facing_left, facing_up = box[:, ::-1], box[::-1, ::-1].T, box[::-1, :], box.T
        obj = jnp.select(is_dir, [facing_right, facing_down, facing_left], facing_up)
        colour = jnp.where(obj == _WALL, jnp.uint8(_GREY), jnp.where(obj == _GOAL, jnp.uint8(_GREEN), jnp.uint8(0)))
        image = jnp.stack([obj, colour, jnp.zeros_like(obj)], axis=-1)
        if self.see_agent:
            agent = jnp.stack([jnp.int32(_AGENT), jnp.int32(_RED), d]).astype(jnp.uint8)
            image = image.at[v // 2, v - 1].set(agent)
        if self.normalize_obs:
            image = image.astype(jnp.float32) / 10.0
        return {"image": image, "agent_dir": d}

    def reset_env(self, key: jax.Array, params: MazeParams) -> tuple[dict, MazeState]:
        """Domain randomisation: a fresh :meth:`sample_level` (the key is not split: resetting to a level uses no
        randomness, and this runs on every step inside the auto-reset)."""
        return self.reset_env_to_level(key, self.sample_level(key), params)

    def reset_env_to_level(self, key: jax.Array, level: Level, params: MazeParams) -> tuple[dict, MazeState]:
        """Start an episode on ``level`` (deterministic: ``key`` is unused)."""
        del key, params
        level = _canonical(level)
        state = MazeState(time=jnp.zeros((), jnp.int32), level=level, agent_pos=level.agent_pos,
                          agent_dir=level.agent_dir)
        return self.get_obs(level, state.agent_pos, state.agent_dir), state

    def step_env(self, key: jax.Array, state: MazeState, action: Any, params: MazeParams) -> StepResult:
        """One transition, no auto-reset (``key`` is unused: the dynamics are deterministic)."""
        del key
        h, w = self.height, self.width
        level = state.level
        action = jnp.asarray(action, jnp.int32)
        dx, dy = _dir_vec(state.agent_dir)
        forward = (action == 2).astype(jnp.int32)
        nx = state.agent_pos[0] + forward * dx
        ny = state.agent_pos[1] + forward * dy
        inside = (nx >= 0) & (nx < w) & (ny >= 0) & (ny < h)
        wall = level.wall_map[jnp.clip(ny, 0, h - 1), jnp.clip(nx, 0, w - 1)] | ~inside
        at_goal = (forward == 1) & (nx == level.goal_pos[0]) & (ny == level.goal_pos[1])
        stay = wall | at_goal
        agent_pos = jnp.where(stay, state.agent_pos, jnp.stack([nx, ny]))
        agent_dir = (state.agent_dir + (action == 1) - (action == 0)) & 3
        time = state.time + 1
        if self.penalize_time:
            t_frac = time.astype(jnp.float32) / jnp.asarray(params.max_steps_in_episode, jnp.float32)
            reward = jnp.where(at_goal, 1.0 - 0.9 * t_frac, 0.0)
        else:
            reward = at_goal.astype(jnp.float32)
        truncated = ~at_goal & (time >= params.max_steps_in_episode)
        new = MazeState(time=time, level=level, agent_pos=agent_pos.astype(jnp.int32),
                        agent_dir=agent_dir.astype(jnp.int32))
        obs = self.get_obs(level, new.agent_pos, new.agent_dir)
        return obs, new, reward.astype(jnp.float32), at_goal, truncated, {}

    # ------------------------------------------------------------------ levels
    def sample_level(self, key: jax.Array) -> Level:
        """A domain-randomisation level; see :func:`jaxrl_self.envs.maze.generators.random_walls_level`."""
        return generators.random_walls_level(key, self.height, self.width, self.max_walls,
                                             self.replace_wall_pos, self.sample_n_walls)

    def mutate_level(self, key: jax.Array, level: Level, n_edits: int | jax.Array) -> Level:
        """ACCEL edits; see :func:`jaxrl_self.envs.maze.generators.mutate_level`."""
        return generators.mutate_level(key, level, n_edits, self.mutation_weights)

    def level_to_str(self, level: Level) -> str:
        return level_to_str(level)

    def level_from_str(self, text: str) -> Level:
        """Parse the ASCII format of :mod:`jaxrl_self.envs.maze.level`; the grid must be ``height x width``."""
        return level_from_str(text, self.height, self.width)

    def shortest_path(self, level: Level) -> jax.Array:
        """Moves from the agent's start cell to the goal (int32), ``-1`` if unreachable (BFS in JAX)."""
        return solver.shortest_path(level)

    def shortest_path_actions(self, level: Level) -> jax.Array:
        """Least number of actions (turns included) from the start state to the goal, ``-1`` if unreachable."""
        return solver.shortest_path_actions(level)

    def optimal_return(self, level: Level, params: MazeParams | None = None) -> jax.Array:
        """The best achievable return on ``level`` (float32): ``1 - 0.9 n / T`` for the least action count
        ``n <= T`` (1 when ``penalize_time`` is off), 0 when unsolvable or ``n > T``."""
        params = self.default_params if params is None else params
        n = self.shortest_path_actions(level)
        t_max = jnp.asarray(params.max_steps_in_episode, jnp.float32)
        ok = (n >= 0) & (n <= params.max_steps_in_episode)
        best = 1.0 - 0.9 * n.astype(jnp.float32) / t_max if self.penalize_time else jnp.float32(1.0)
        return jnp.where(ok, best, 0.0).astype(jnp.float32)
