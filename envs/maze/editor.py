"""The maze editor: an :class:`~jaxrl_self.core.Environment` whose episode *builds* a maze
:class:`~jaxrl_self.envs.maze.level.Level`, one cell per step (PAIRED's adversary environment).

    from jaxrl_self.envs.maze import MazeEditor
    editor = MazeEditor(n_walls=60, noise_dim=50)          # 13 x 13, 62 design steps
    obs, state = editor.reset(key)
    obs, state, reward, terminated, truncated, info = editor.step(key, state, action)
    level = info["level"]                                  # the level as built so far (before any auto-reset)

This is Dennis et al. (2020)'s adversary environment as in dcd (``envs/multigrid/adversarial.py``), minimax
(``envs/maze/maze_ued.py``) and jaxued (``environments/maze/env_editor.py``), on our maze conventions
(positions ``(x, y)``, ``wall_map[y, x]``, directions 0 right, 1 down, 2 left, 3 up).

* **Action** ``Discrete(H * W)``: a cell index ``i``, the cell ``(x, y) = (i % W, i // W)``.
* **Episode**: exactly ``n_steps = n_walls + 2`` steps, then ``terminated=True`` (the design is finished; the
  editor's reward is always 0 — a curriculum such as PAIRED gives the adversary its reward, the regret, on
  the last step). With ``order="goal_first"`` (dcd's PAIRED default, jaxued) step 0 places the goal, step 1
  the agent and steps ``2 .. n_walls + 1`` one wall each; with ``order="walls_first"`` (minimax's
  ``fixed_n_wall_steps=True`` as in its PAIRED config, dcd's "GoalLast" envs) steps ``0 .. n_walls - 1``
  place walls, then the goal, then the agent.
* **Placement rules** (deterministic except for one case):

  - *goal*: the goal goes to the chosen cell; a wall there is removed (only possible with ``walls_first``).
  - *agent*: the agent goes to the chosen cell and a wall there is removed; **if the cell holds the goal** the
    agent is put on a cell drawn uniformly among the free cells other than the goal's (from the step's key).
    All three references do this (the agent must exist); it is the only random placement.
  - *wall*: a wall is added on the chosen cell unless it already holds a wall, the goal or the agent, in
    which case **the step does nothing** (dcd: "if there is already an object there, action does nothing";
    minimax with ``replace_wall_pos=True``, its PAIRED setting, also leaves a repeated wall as one wall).

  So a finished design is always a valid level (goal and agent on distinct free cells) with at most
  ``n_walls`` walls. Not yet placed, the goal and agent positions read ``(-1, -1)``.
* **Start direction** of the agent: uniform over the four, drawn at reset (dcd, and minimax with
  ``set_agent_dir=False``); the adversary does not choose it.
* **Observation** ``{"image", "time", "noise"}``:

  - ``image``: ``float32[H, W, 3]``, one-hot channels ``(wall, goal, agent)`` of the level built so far (the
    inner grid; the implicit border wall is not drawn). minimax shows its adversary the minigrid encoding of the
    padded ``(H+2) x (W+2)`` map divided by 10; three binary channels carry the same information.
  - ``time``: ``int32``, steps taken in this design episode (``0 .. n_steps``).
  - ``noise``: ``float32[noise_dim]``, uniform in ``[0, 1)``, drawn at reset **from the reset key** and kept
    for the whole episode (a latent "design seed" the adversary's policy can condition on); with
    ``noise_per_step=True`` it is redrawn on every step from the step's key, as dcd and minimax do. jaxued
    multiplies its noise by ``zero_out_random_z``, default ``False``, so its adversary sees zeros: here the
    noise is always random (``noise_dim=0`` removes it).

The built level is read with :meth:`MazeEditor.get_level` on a state, or from ``info["level"]`` of
:meth:`~jaxrl_self.core.Environment.step`, which holds the level *before* the auto-reset of the last step
(the state returned by that step already starts a fresh design).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.environment import Environment, StepResult
from jaxrl_self.core.spaces import Box, Dict, Discrete
from jaxrl_self.envs.maze.generators import random_words, sample_free_cell
from jaxrl_self.envs.maze.level import Level

__all__ = ["MazeEditor", "EditorParams", "EditorState", "EDITOR_ORDERS"]

#: Placement orders of :class:`MazeEditor`.
EDITOR_ORDERS = ("goal_first", "walls_first")


@struct.dataclass
class EditorParams:
    """The editor has no traced parameters (its structure is fixed at construction); an empty pytree."""


@struct.dataclass
class EditorState:
    """``time``: int32 design steps taken (0 after reset); ``level``: the level built so far (unplaced goal or
    agent at ``(-1, -1)``); ``noise``: float32[noise_dim], the episode's noise vector."""

    time: jax.Array
    level: Level
    noise: jax.Array


class MazeEditor(Environment[EditorState, EditorParams]):
    """Builds a maze level cell by cell. See the module docstring for the full specification.

    Args (structural):
        height, width: the grid of the levels built (13 x 13: the UED maze).
        n_walls: wall-placement steps per design (60: minimax's PAIRED config; dcd used 50).
        noise_dim: length of the noise vector in the observation (50: minimax; 0 disables it).
        order: ``"goal_first"`` (goal, agent, then walls) or ``"walls_first"`` (walls, then goal, agent).
        noise_per_step: redraw the noise on every step instead of once per design.
    """

    def __init__(self, height: int = 13, width: int = 13, n_walls: int = 60, noise_dim: int = 50, *,
                 order: str = "goal_first", noise_per_step: bool = False):
        for name, v, low in (("height", height, 1), ("width", width, 1), ("n_walls", n_walls, 0),
                             ("noise_dim", noise_dim, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"MazeEditor.{name} must be an int >= {low}, got {v!r}")
        if height * width < 2:
            raise ValueError(f"MazeEditor needs at least 2 cells (goal and agent), got {height}x{width}")
        if order not in EDITOR_ORDERS:
            raise ValueError(f"MazeEditor.order={order!r}; allowed: {EDITOR_ORDERS}")
        self.height, self.width = int(height), int(width)
        self.n_walls, self.noise_dim = int(n_walls), int(noise_dim)
        self.order = order
        self.noise_per_step = bool(noise_per_step)

    # ------------------------------------------------------------------ structure
    @property
    def n_steps(self) -> int:
        """Steps per design episode: ``n_walls + 2`` (goal and agent)."""
        return self.n_walls + 2

    @property
    def num_cells(self) -> int:
        return self.height * self.width

    @property
    def default_params(self) -> EditorParams:
        return EditorParams()

    def observation_space(self, params: EditorParams | None = None) -> Dict:
        return Dict({
            "image": Box(0.0, 1.0, (self.height, self.width, 3), jnp.float32),
            "time": Discrete(self.n_steps + 1),
            "noise": Box(0.0, 1.0, (self.noise_dim,), jnp.float32),
        })

    def action_space(self, params: EditorParams | None = None) -> Discrete:
        return Discrete(self.num_cells)

    @property
    def name(self) -> str:
        return "MazeEditor"

    def __repr__(self) -> str:
        return (f"MazeEditor(height={self.height}, width={self.width}, n_walls={self.n_walls}, "
                f"noise_dim={self.noise_dim}, order={self.order!r})")

    # ------------------------------------------------------------------ episode
    def _noise(self, key: jax.Array) -> jax.Array:
        return jax.random.uniform(key, (self.noise_dim,), jnp.float32)

    def reset_env(self, key: jax.Array, params: EditorParams) -> tuple[dict, EditorState]:
        """An empty grid, no goal or agent, a random start direction and a fresh noise vector from ``key``."""
        k_noise, k_dir = jax.random.split(key)
        unplaced = jnp.full((2,), -1, jnp.int32)
        level = Level(wall_map=jnp.zeros((self.height, self.width), jnp.bool_), goal_pos=unplaced,
                      agent_pos=unplaced, agent_dir=jax.random.randint(k_dir, (), 0, 4, jnp.int32))
        state = EditorState(time=jnp.zeros((), jnp.int32), level=level, noise=self._noise(k_noise))
        return self.get_obs(state), state

    def phase(self, time: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(is_goal_step, is_agent_step, is_wall_step)`` for the step taken at ``time`` (before it)."""
        if self.order == "goal_first":
            goal, agent = time == 0, time == 1
        else:
            goal, agent = time == self.n_walls, time == self.n_walls + 1
        return goal, agent, ~goal & ~agent

    def step_env(self, key: jax.Array, state: EditorState, action: Any, params: EditorParams) -> StepResult:
        """Place the goal, the agent or a wall at cell ``action`` (see the module docstring). ``info["level"]``
        is the level after this step."""
        h, w = self.height, self.width
        cell = jnp.clip(jnp.asarray(action, jnp.int32), 0, self.num_cells - 1)
        xy = jnp.stack([cell % w, cell // w]).astype(jnp.int32)
        level = state.level
        is_goal, is_agent, is_wall = self.phase(state.time)
        at_cell = _cell_mask(xy, h, w)
        goal_mask = _cell_mask(level.goal_pos, h, w)
        agent_mask = _cell_mask(level.agent_pos, h, w)

        # agent: onto the goal -> a uniformly drawn free cell other than the goal's (a wall-free one if any)
        on_goal = jnp.all(xy == level.goal_pos)
        free = ~level.wall_map & ~goal_mask
        candidates = jnp.where(jnp.any(free), free, ~goal_mask)
        fallback = sample_free_cell(random_words(key, 1)[0], candidates)
        agent_xy = jnp.where(on_goal, jnp.stack([fallback % w, fallback // w]), xy).astype(jnp.int32)

        # wall: no-op on a wall, the goal or the agent (an existing wall stays one wall)
        wall_ok = ~jnp.any(at_cell & (goal_mask | agent_mask))
        walls = level.wall_map
        walls = jnp.where(is_goal, walls & ~at_cell, walls)
        walls = jnp.where(is_agent, walls & ~_cell_mask(agent_xy, h, w), walls)
        walls = jnp.where(is_wall & wall_ok, walls | at_cell, walls)
        new_level = Level(
            wall_map=walls,
            goal_pos=jnp.where(is_goal, xy, level.goal_pos),
            agent_pos=jnp.where(is_agent, agent_xy, level.agent_pos),
            agent_dir=level.agent_dir,
        )
        time = state.time + 1
        noise = self._noise(key) if self.noise_per_step else state.noise
        new = EditorState(time=time, level=new_level, noise=noise)
        done = time >= self.n_steps
        return self.get_obs(new), new, jnp.zeros((), jnp.float32), done, jnp.zeros((), jnp.bool_), {"level": new_level}

    def get_obs(self, state: EditorState) -> dict[str, jax.Array]:
        """``image`` (wall, goal, agent one-hot channels), ``time`` and ``noise`` of ``state``."""
        h, w = self.height, self.width
        lv = state.level
        image = jnp.stack([lv.wall_map, _cell_mask(lv.goal_pos, h, w), _cell_mask(lv.agent_pos, h, w)], axis=-1)
        return {"image": image.astype(jnp.float32), "time": state.time.astype(jnp.int32), "noise": state.noise}

    def get_level(self, state: EditorState) -> Level:
        """The level built so far (complete once ``state.time == n_steps``; see the module docstring)."""
        return state.level


def _cell_mask(pos: jax.Array, h: int, w: int) -> jax.Array:
    """``bool[h, w]``, True at ``pos = (x, y)`` (all False for an unplaced ``(-1, -1)``)."""
    ys = jnp.arange(h, dtype=jnp.int32)[:, None]
    xs = jnp.arange(w, dtype=jnp.int32)[None, :]
    return (ys == pos[1]) & (xs == pos[0])
