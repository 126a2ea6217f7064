"""Kinetix (open-ended 2D physics, on Jax2D) as a level environment behind the ``kinetix:`` prefix.

    import jax
    from jaxrl_self import envs
    env = envs.make("kinetix:s")                       # = make_kinetix("s"): small levels, random generator
    level = env.sample_level(jax.random.key(0))        # a Kinetix EnvState: the level's initial world
    obs, state = env.reset_to_level(jax.random.key(1), level)   # obs: float32[F], symbolic flat
    obs, state, reward, terminated, truncated, info = env.step(jax.random.key(2), state, 4)  # 4 = no-op at "s"

    jaxrl-self train accel --env kinetix:s --total-timesteps 1000000    # the curricula drive it unchanged

Kinetix (Matthews et al. 2025, ``kinetix-env`` on PyPI) follows jaxued's level API: a level is the initial
``kinetix.environment.env_state.EnvState`` of a physics world (shapes, joints, thrusters, motors and their
roles), ``reset`` can start from any given level (``override_reset_state``) and the package ships a random
level generator, an ACCEL mutation operator and hand-designed evaluation levels. :class:`KinetixLevelEnv` puts
these behind our :class:`~jaxrl_self.core.LevelEnv`, so DR, PLR, PLR⊥ and ACCEL run on it as on the maze.

**Install.** ``kinetix-env`` 3.0.2 pins ``jax<=0.9.0``; jaxrl_self declares ``jax>=0.6``, so this adapter is
used (and tested) in a venv of its own: ``pip install 'jaxrl-self' 'kinetix-env==3.0.2'`` resolves to jax
0.9.0. It is therefore not in the ``dev`` extra; ``tests/test_adapter_kinetix.py`` skips without kinetix.

How Kinetix maps onto our contract (kinetix-env 3.0.2, checked against ``kinetix/environment/env.py``):

* **Name.** ``kinetix:SIZE`` with ``SIZE`` one of ``s``, ``m``, ``l``: the Kinetix paper's level sizes
  (``static_env_params_from_size``: ``s`` = 5 polygons, 2 circles, 1 joint, 1 thruster, 2 physics substeps per
  step). Keywords: ``action`` (``"discrete"``, default, or ``"multi_discrete"``/``"continuous"``; our PPO
  and curricula use ``Discrete``), ``observation`` (``"symbolic_flat"``, default: one float32 vector; or
  ``"pixels"``, ``"symbolic_flat_padded"``), ``max_steps`` (episode limit, default Kinetix's 256),
  ``dense_reward_scale`` (Kinetix's default 0.1), ``max_edits`` (see mutation).
* **Levels.** ``sample_level(key)`` is Kinetix's own generator (``make_reset_fn_sample_kinetix_level`` with
  default ``UEDParams``, the paper's "random" distribution, unfiltered). ``reset_env_to_level`` starts an
  episode from the level with Kinetix's ``timestep`` and ``last_distance`` reset (0 and -1).
* **Held-out levels.** :meth:`KinetixLevelEnv.heldout_levels` returns the evaluation levels the package ships
  for the size (``kinetix/levels/{s,m,l}/*.json``; ten at ``s``: ``h0_weak_thrust`` ... ``h9_explode_then_
  thrust_over``), loaded with ``load_evaluation_levels`` at this env's static sizes. The curricula's
  held-out evaluation reports one group per level, and ``jaxrl-self eval`` uses them.
* **Stepping.** ``step_env`` calls ``KinetixEnv.step_env`` (the physics, no auto-reset; Kinetix's own ``step``
  auto-resets through its reset function). Kinetix's step key is unused (its physics is deterministic), so
  ``deterministic_step = True`` and the step key goes to our auto-reset, which restarts the *same* level
  through the replay wrappers the curricula use, or a new random one for plain ``reset``.
* **terminated / truncated.** Kinetix ends an episode when a green shape touches a blue one (reward +1) or a
  red one (reward -1), or a state value becomes NaN; that is ``terminated``. Its own time limit
  (``EnvParams.max_timesteps``) is set out of reach inside ``step_env``; ours is ``max_steps_in_episode``
  (default ``max_steps``): ``truncated = ~terminated & (time >= max_steps_in_episode)``.
* **Rewards.** Kinetix's: ±1 on the terminal contact plus the dense shaping ``dense_reward_scale x (decrease
  of the green-to-blue distance)`` each step. The shaping telescopes, so an unsolved episode can still return
  more than 0. Held-out evaluation therefore plays with ``dense_reward_scale = 0``
  (:meth:`KinetixLevelEnv.heldout_params`): there "solved" (return > 0) is exactly "green touched blue".
* **Mutation (ACCEL).** ``mutate_level(key, level, n)`` applies ``n`` of Kinetix's own ``make_mutate_env``
  edits (add/remove shapes and thrusters, swap roles, move, resize, rotate, toggle fixture). Kinetix scans a
  static number of edits; a traced ``n`` (a vmapped sweep over ``num_edits``) runs ``max_edits`` (default
  8) edit slots and keeps the first ``n``.
* **Shortest path.** A physics level has no computable solution length: ``shortest_path`` is 0 for every
  level ("solvable, length unknown"), so the curricula's buffer statistics ``solvable`` and
  ``shortest_path`` are constant on Kinetix and mean nothing there; ``num_walls`` is 0 (no ``wall_map``).
* **Text.** ``level_to_str``/``level_from_str`` write a level as JSON of its arrays (dtype, shape, values),
  which round-trips exactly (Kinetix's own JSON format drops derived fields and recomputes them).
"""
from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, struct

from jaxrl_self.core import spaces as ours
from jaxrl_self.core.environment import EnvParams, EnvState, LevelEnv
from jaxrl_self.envs.registry import UnknownEnvironmentError

__all__ = ["KinetixLevelEnv", "KinetixParams", "KinetixState", "make_kinetix", "SIZES"]

SIZES = ("s", "m", "l")
_ACTIONS = {"discrete": "DISCRETE", "multi_discrete": "MULTI_DISCRETE", "continuous": "CONTINUOUS"}
_OBSERVATIONS = {"symbolic_flat": "SYMBOLIC_FLAT", "symbolic_flat_padded": "SYMBOLIC_FLAT_PADDED",
                 "pixels": "PIXELS"}
_NO_LIMIT = 2**30  # Kinetix's own max_timesteps inside step_env: ours ends the episode


def _kinetix():
    try:
        import kinetix.environment.env as kenv  # absolute import: the Kinetix library
        import kinetix.environment.ued.ued as kued
        import kinetix.environment.utils as kutils
        import kinetix.util.saving as ksaving
        from kinetix.environment import spaces as kspaces
        from kinetix.environment.env_state import EnvParams as KEnvParams
        from kinetix.environment.ued.ued_state import UEDParams
    except ImportError as e:  # pragma: no cover - depends on the user's install
        raise ImportError("kinetix environments need kinetix-env (it pins jax<=0.9, use a venv of its own): "
                          "pip install 'kinetix-env==3.0.2'") from e
    return kenv, kued, kutils, ksaving, kspaces, KEnvParams, UEDParams


@struct.dataclass
class KinetixParams(EnvParams):
    """Our episode limit (``max_steps_in_episode``) and Kinetix's own ``EnvParams`` (``kinetix``: gravity,
    dense_reward_scale, ...)."""

    kinetix: Any = None


@struct.dataclass
class KinetixState(EnvState):
    """``time``: steps in the episode; ``world``: Kinetix's ``EnvState`` now; ``level``: the one it started from."""

    world: Any
    level: Any


def _convert_space(space: Any) -> ours.Space:
    name = type(space).__name__
    if name == "Discrete":
        return ours.Discrete(int(space.n))
    if name == "Box":
        shape = tuple(int(s) for s in space.shape)
        return ours.Box(jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), shape),
                        jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), shape), shape,
                        jnp.dtype(space.dtype))
    raise TypeError(f"unsupported Kinetix space {name} (use action='discrete' or 'continuous')")


class KinetixLevelEnv(LevelEnv):
    """Kinetix under our :class:`~jaxrl_self.core.LevelEnv` contract. See the module docstring for every mapping."""

    deterministic_step = True  # Kinetix's physics step uses no key

    def __init__(self, size: str = "s", action: str = "discrete", observation: str = "symbolic_flat",
                 max_steps: int = 256, dense_reward_scale: float = 0.1, max_edits: int = 8):
        if size not in SIZES:
            raise UnknownEnvironmentError(f"kinetix:{size} (sizes: {', '.join(SIZES)})")
        if action not in _ACTIONS:
            raise ValueError(f"action must be one of {tuple(_ACTIONS)}, got {action!r}")
        if observation not in _OBSERVATIONS:
            raise ValueError(f"observation must be one of {tuple(_OBSERVATIONS)}, got {observation!r}")
        if int(max_steps) < 1 or int(max_edits) < 1:
            raise ValueError(f"max_steps and max_edits must be >= 1, got {max_steps}, {max_edits}")
        kenv, kued, kutils, _, kspaces, KEnvParams, UEDParams = _kinetix()
        self._size, self._action, self._observation = size, action, observation
        self._max_steps, self._max_edits = int(max_steps), int(max_edits)
        self.static_params = kutils.static_env_params_from_size(size)
        self.kinetix_params = KEnvParams(max_timesteps=self._max_steps, dense_reward_scale=float(dense_reward_scale))
        self._sampler = kued.make_reset_fn_sample_kinetix_level(self.kinetix_params, self.static_params)
        self._mutate = kued.make_mutate_env(self.static_params, self.kinetix_params, UEDParams())
        self._env = kenv.make_kinetix_env(getattr(kspaces.ActionType, _ACTIONS[action]),
                                          getattr(kspaces.ObservationType, _OBSERVATIONS[observation]),
                                          self._sampler, self.kinetix_params, self.static_params, auto_reset=False)
        self._obs_space = _convert_space(self._env.observation_space(self.kinetix_params))
        self._act_space = _convert_space(self._env.action_space(self.kinetix_params))
        self._template = kutils.create_empty_env(self.static_params)
        self._heldout: dict[str, Any] | None = None

    # ------------------------------------------------------------------ description
    @property
    def kinetix_env(self) -> Any:
        """The wrapped ``kinetix.environment.env.KinetixEnv`` (built with ``auto_reset=False``)."""
        return self._env

    @property
    def default_params(self) -> KinetixParams:
        return KinetixParams(max_steps_in_episode=self._max_steps, kinetix=self.kinetix_params)

    def observation_space(self, params=None) -> ours.Space:
        return self._obs_space

    def action_space(self, params=None) -> ours.Space:
        return self._act_space

    @property
    def name(self) -> str:
        return f"kinetix:{self._size}"

    def __repr__(self) -> str:
        return (f"KinetixLevelEnv({self._size!r}, action={self._action!r}, observation={self._observation!r}, "
                f"max_steps={self._max_steps})")

    # ------------------------------------------------------------------ episodes
    @staticmethod
    def _strong(level):
        """``timestep``/``last_distance`` as strongly typed int32/float32: Kinetix's loaded and empty levels carry
        weak-typed Python scalars there, and a stepped state strong ones, which would retrace jitted functions."""
        return level.replace(timestep=jnp.asarray(level.timestep).astype(jnp.int32),
                             last_distance=jnp.asarray(level.last_distance).astype(jnp.float32))

    def reset_env_to_level(self, key, level, params):
        del key  # a level fixes the whole initial world
        level = self._strong(level)
        world = level.replace(timestep=jnp.zeros((), jnp.int32), last_distance=jnp.full((), -1.0, jnp.float32))
        obs = self._env.get_obs(world)
        return obs, KinetixState(time=jnp.zeros((), jnp.int32), world=world, level=level)

    def step_env(self, key, state, action, params):
        kparams = params.kinetix.replace(max_timesteps=_NO_LIMIT)
        obs, world, reward, done, info = self._env.step_env(key, state.world, action, kparams)
        time = state.time + 1
        terminated = jnp.asarray(done, bool)
        truncated = jnp.logical_and(~terminated, time >= params.max_steps_in_episode)
        new_state = KinetixState(time=time, world=world, level=state.level)
        return obs, new_state, jnp.asarray(reward, jnp.float32), terminated, truncated, {
            "solved": jnp.asarray(info["GoalR"], bool)}

    def heldout_params(self, params: KinetixParams) -> KinetixParams:
        """Sparse reward for held-out evaluation (``dense_reward_scale = 0``): return > 0 iff solved."""
        return params.replace(kinetix=params.kinetix.replace(dense_reward_scale=0.0))

    # ------------------------------------------------------------------ levels
    def sample_level(self, key):
        return self._strong(self._sampler(key))

    def mutate_level(self, key, level, n_edits):
        if isinstance(n_edits, (int, np.integer)):
            return self._strong(self._mutate(key, level, int(n_edits))) if int(n_edits) > 0 else level
        n_edits = jnp.asarray(n_edits, jnp.int32)

        def edit(carry, i):
            lvl, k = carry
            k, k_edit = jax.random.split(k)
            new = self._strong(self._mutate(k_edit, lvl, 1))
            return (jax.tree.map(lambda a, b: jnp.where(i < n_edits, a, b), new, lvl), k), None

        (level, _), _ = jax.lax.scan(edit, (self._strong(level), key), jnp.arange(self._max_edits))
        return level

    def shortest_path(self, level) -> jax.Array:
        return jnp.zeros((), jnp.int32)  # unknown for a physics level (see the module docstring)

    def heldout_levels(self) -> dict[str, Any]:
        if self._heldout is None:
            import importlib.resources
            import os

            _, _, _, ksaving, _, _, _ = _kinetix()
            folder = importlib.resources.files("kinetix") / "levels" / self._size
            names = sorted(os.path.splitext(p.name)[0] for p in folder.iterdir() if p.name.endswith(".json"))
            stacked, _ = ksaving.load_evaluation_levels([f"{self._size}/{n}" for n in names], self.static_params)
            stacked = self._strong(stacked)
            self._heldout = {n: jax.tree.map(lambda x, i=i: np.asarray(x[i]), stacked) for i, n in enumerate(names)}
        return dict(self._heldout)

    def level_to_str(self, level) -> str:
        flat = jax.tree_util.tree_leaves_with_path(serialization.to_state_dict(level))
        return json.dumps({jax.tree_util.keystr(p): {"dtype": str(np.asarray(x).dtype), "shape": list(np.shape(x)),
                                                     "data": np.asarray(x).ravel().tolist()} for p, x in flat})

    def level_from_str(self, text: str):
        entries = json.loads(text)
        paths = [jax.tree_util.keystr(p) for p, _ in
                 jax.tree_util.tree_leaves_with_path(serialization.to_state_dict(self._template))]
        if sorted(entries) != sorted(paths):
            raise ValueError("not a Kinetix level of this size (its fields differ)")
        leaves = [np.asarray(entries[p]["data"], entries[p]["dtype"]).reshape(entries[p]["shape"]) for p in paths]
        state_dict = jax.tree.unflatten(jax.tree.structure(serialization.to_state_dict(self._template)), leaves)
        return serialization.from_state_dict(self._template, state_dict)


def make_kinetix(name: str = "s", **kwargs: Any) -> KinetixLevelEnv:
    """``KinetixLevelEnv(size=name, **kwargs)``; ``envs.make("kinetix:SIZE", **kwargs)`` calls this."""
    return KinetixLevelEnv(name, **kwargs)
