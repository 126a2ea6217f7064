"""Jumanji (InstaDeep) environments behind the ``jumanji:`` prefix.

    from jaxrl_self import envs
    env = envs.make("jumanji:Snake-v1")                     # = make_jumanji("Snake-v1")
    obs, state = env.reset(jax.random.key(0))               # obs: {"grid": f32[12, 12, 5], "step_count": i32[],
                                                            #       "action_mask": bool[4]}
    obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, 1)  # 1 = right
    small = envs.make("jumanji:Snake-v1", num_rows=6, num_cols=6)   # keywords go to jumanji.make

``make_jumanji(name, **kwargs)`` is :class:`JumanjiAdapter` over ``jumanji.make(name, **kwargs)``; every
keyword goes to the Jumanji environment's constructor (``num_rows``, ``time_limit``, ``generator``, ...).
``jumanji`` is imported when an environment is made, not when this module is.

How Jumanji maps onto our contract (jumanji 1.1.2, checked against ``jumanji/types.py`` and ``jumanji/env.py``):

* **Supported environments: a single scalar ``specs.DiscreteArray`` action spec** (our spaces have no
  MultiDiscrete). Of the registered environments that is Snake-v1, Maze-v0, Game2048-v1, PacMan-v1,
  SlidingTilePuzzle-v0, Knapsack-v1, TSP-v1, CVRP-v1 and GraphColoring-v1 (Sokoban-v0 also has a discrete
  action spec but downloads its levels from the Hugging Face Hub when made). Any other action spec
  (``MultiDiscreteArray``: Cleaner, Connector, Tetris, RubiksCube, Sudoku, Minesweeper, BinPack, JobShop,
  FlatPack, LevelBasedForaging, RobotWarehouse, MMST; a ``BoundedArray``: MultiCVRP, SearchAndRescue) is
  refused at construction with a one-line :class:`UnsupportedJumanjiEnvError` naming the spec.
* **Stepping, keys, auto-reset.** Jumanji's environments do not auto-reset (``jumanji.make`` returns the bare
  environment; the auto-reset lives in its optional wrappers), so :meth:`JumanjiAdapter.step_env` is one
  ``env.step(state, action)`` and our base-class ``step`` auto-resets in the same step with a fresh
  ``env.reset(key)``; ``info["final_obs"]`` is the observation of the episode's ``LAST`` timestep. Jumanji keeps
  its randomness in its state (``state.key``, split by ``step`` where needed, e.g. Snake's next fruit), so
  ``step_env`` ignores its key (``deterministic_step = True``) and the whole step key goes to the auto-reset.
* **terminated / truncated.** Jumanji marks the end of an episode by ``timestep.step_type == StepType.LAST``;
  ``types.termination`` sets ``discount = 0``, ``types.truncation`` keeps ``discount = 1`` (its default). So
  ``terminated = last & (discount == 0)`` and ``truncated = last & (discount != 0)``. Note that most Jumanji
  environments (Snake, Maze, PacMan, SlidingTilePuzzle...) end their *own* time limit (the constructor's
  ``time_limit``) with ``termination``, i.e. discount 0: we report that as ``terminated``, faithfully to
  Jumanji, so PPO does not bootstrap there (in jumanji 1.1.2 only Connector and LevelBasedForaging, both
  unsupported here, use ``truncation``). On top of that the adapter has a vmappable time limit of its own,
  ``JumanjiParams.max_steps_in_episode`` (default ``2**31 - 1``: none): ``truncated |= ~terminated & (time >=
  max_steps_in_episode)``; it is what :func:`~jaxrl_self.envs.check_env` shortens.
* **State.** :class:`JumanjiState` holds Jumanji's state (``env_state``) and ``time`` (our step count since the
  reset; Jumanji's own ``step_count``, where an env has one, is left alone).
* **Observations.** Jumanji's observation (a NamedTuple, possibly nested, e.g. Maze's ``agent_position`` is a
  ``Position(row, col)``) becomes a ``dict`` of arrays keyed by the spec's field names (nested dicts for
  nested specs) and its ``observation_spec`` our :class:`~jaxrl_self.core.spaces.Dict`. Every array leaf
  becomes a :class:`~jaxrl_self.core.spaces.Box` with the spec's shape, *dtype* and bounds: a ``BoundedArray``
  (``DiscreteArray`` included, e.g. Snake's ``step_count`` is ``Box(0, time_limit - 1)`` int32, not a
  one-hot ``Discrete``) keeps its ``minimum``/``maximum``; an unbounded ``Array`` gets ``-inf..inf`` (floats)
  or its integer type's range. Booleans (``action_mask``, Maze's ``walls``) stay ``bool`` with ``Box(False,
  True)``. Values are exactly Jumanji's (cast to the declared dtype, which they already have); ``ppo`` with the
  MLP flattens everything to float32 (booleans to 0/1, integers raw: no one-hot, no scaling). An observation
  spec that is a single array gives a single Box.
* **Action masks are observed, not enforced.** The ``action_mask`` entry is just part of the observation; our
  PPO does not mask logits, so the agent may pick a masked action, and what happens is the environment's
  rule: **Snake** ends the episode (``termination``, reward 0) when the snake leaves the grid or bites itself
  (its masked moves), so the agent learns to avoid them; **Maze** and **PacMan** turn a masked move into a
  no-op, as does **SlidingTilePuzzle**; **Game2048** leaves the board unchanged (no new tile); **Knapsack**,
  **TSP** and **CVRP** end the episode (``termination``) on an invalid item/city/node, **GraphColoring** too,
  with reward ``-num_nodes``.
* **Actions.** ``Discrete(num_values)`` int32; the action is cast to the spec's dtype before ``env.step``.
* **Rewards** are ``timestep.reward`` as float32 (Snake: 1.0 per fruit eaten). ``info["extras"]`` is
  ``timestep.extras`` (e.g. Game2048's ``highest_tile``; ``{}`` for most environments).
"""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core import spaces as ours
from jaxrl_self.core.environment import Environment, EnvParams, EnvState
from jaxrl_self.envs.registry import UnknownEnvironmentError

__all__ = ["JumanjiAdapter", "JumanjiParams", "JumanjiState", "UnsupportedJumanjiEnvError", "make_jumanji",
           "convert_spec"]

NO_TIME_LIMIT = 2**31 - 1


def _jumanji():
    try:
        import jumanji  # absolute import: the Jumanji library, not this module
    except ImportError as e:  # pragma: no cover - depends on the user's install
        raise ImportError("jumanji environments need jumanji: pip install 'jaxrl-self[jumanji]'") from e
    return jumanji


class UnsupportedJumanjiEnvError(UnknownEnvironmentError):
    """A Jumanji environment whose action spec is not a single scalar ``DiscreteArray``."""


@struct.dataclass
class JumanjiParams(EnvParams):
    """``max_steps_in_episode``: the adapter's own time limit (``truncated`` when reached), on top of the
    Jumanji environment's ``time_limit``; default: none."""

    max_steps_in_episode: int = NO_TIME_LIMIT


@struct.dataclass
class JumanjiState(EnvState):
    env_state: Any  # Jumanji's state


def _sub_specs(spec: Any) -> dict[str, Any]:
    """The named children of a nested Jumanji ``Spec`` (as ``jumanji.specs.jumanji_specs_to_gym_spaces``)."""
    specs = _jumanji().specs
    return {k: v for k, v in vars(spec).items() if not k.startswith("_") and isinstance(v, specs.Spec)}


def convert_spec(spec: Any) -> ours.Space:
    """Our space for a Jumanji observation spec: nested specs -> Dict, array specs -> Box (see the module doc)."""
    specs = _jumanji().specs
    if isinstance(spec, specs.Array):
        shape, dtype = tuple(int(s) for s in spec.shape), jnp.dtype(spec.dtype)
        if isinstance(spec, specs.BoundedArray):
            low, high = np.asarray(spec.minimum), np.asarray(spec.maximum)
            if low.shape not in ((), shape):
                low = np.broadcast_to(low, shape)
            if high.shape not in ((), shape):
                high = np.broadcast_to(high, shape)
        elif dtype == jnp.bool_:
            low, high = np.asarray(False), np.asarray(True)
        elif jnp.issubdtype(dtype, jnp.integer):
            info = np.iinfo(dtype)
            low, high = np.asarray(info.min, dtype), np.asarray(info.max, dtype)
        else:
            low, high = -np.inf, np.inf
        return ours.Box(low, high, shape, dtype)
    children = _sub_specs(spec)
    if not children:
        raise TypeError(f"cannot convert the Jumanji spec {type(spec).__name__} {getattr(spec, 'name', '')!r}")
    return ours.Dict({k: convert_spec(v) for k, v in children.items()})


def convert_observation(spec: Any, obs: Any) -> Any:
    """Jumanji's observation (NamedTuple/dataclass tree) as the dict of arrays that :func:`convert_spec` declares."""
    specs = _jumanji().specs
    if isinstance(spec, specs.Array):
        return jnp.asarray(obs, spec.dtype)
    return {k: convert_observation(s, getattr(obs, k)) for k, s in _sub_specs(spec).items()}


def _describe_spec(spec: Any) -> str:
    """A one-line description of an action spec for error messages."""
    kind = type(spec).__name__
    shape = getattr(spec, "shape", None)
    parts = [f"shape={tuple(shape)}"] if shape is not None else [f"fields={sorted(_sub_specs(spec))}"]
    if hasattr(spec, "num_values"):
        parts.append(f"num_values={np.asarray(spec.num_values).tolist()}")
    if hasattr(spec, "dtype"):
        parts.append(f"dtype={jnp.dtype(spec.dtype)}")
    return f"{kind}({', '.join(parts)})"


class JumanjiAdapter(Environment):
    """Wrap a Jumanji environment whose action spec is a scalar ``DiscreteArray``. See the module docstring."""

    deterministic_step = True  # Jumanji's randomness lives in its state

    def __init__(self, env: Any, name: str | None = None):
        specs = _jumanji().specs
        self._env = env
        self._name = name if name is not None else type(env).__name__
        action_spec = env.action_spec
        if not (isinstance(action_spec, specs.DiscreteArray) and not isinstance(action_spec, specs.MultiDiscreteArray)
                and tuple(action_spec.shape) == ()):
            raise UnsupportedJumanjiEnvError(
                f"jumanji:{self._name} has the action spec {_describe_spec(action_spec)}; the jumanji adapter "
                "supports only a single scalar DiscreteArray action (no MultiDiscrete/continuous actions)")
        self._action_spec = action_spec
        self._obs_spec = env.observation_spec
        self._obs_space = convert_spec(self._obs_spec)
        self._action_space = ours.Discrete(int(action_spec.num_values), jnp.int32)

    @property
    def default_params(self) -> JumanjiParams:
        return JumanjiParams()

    def observation_space(self, params=None) -> ours.Space:
        return self._obs_space

    def action_space(self, params=None) -> ours.Discrete:
        return self._action_space

    @property
    def jumanji_env(self) -> Any:
        """The wrapped Jumanji environment."""
        return self._env

    @property
    def name(self) -> str:
        return f"jumanji:{self._name}"

    @property
    def unwrapped(self):
        return self

    def observation(self, timestep: Any) -> Any:
        """Our observation of a Jumanji ``TimeStep``."""
        return convert_observation(self._obs_spec, timestep.observation)

    def reset_env(self, key, params):
        env_state, timestep = self._env.reset(key)
        return self.observation(timestep), JumanjiState(time=jnp.zeros((), jnp.int32), env_state=env_state)

    def step_env(self, key, state: JumanjiState, action, params):
        del key  # Jumanji's step is a function of its state
        action = jnp.asarray(action).astype(self._action_spec.dtype)
        env_state, timestep = self._env.step(state.env_state, action)
        time = state.time + 1
        last = jnp.asarray(timestep.last(), jnp.bool_)
        discount = jnp.asarray(timestep.discount)
        terminated = last & (discount == 0)
        truncated = (last & (discount != 0)) | (~terminated & (time >= params.max_steps_in_episode))
        info = {"extras": dict(timestep.extras)}
        return (self.observation(timestep), JumanjiState(time=time, env_state=env_state),
                jnp.asarray(timestep.reward, jnp.float32), terminated, truncated, info)

    def __repr__(self) -> str:
        return f"JumanjiAdapter({self._name})"


def make_jumanji(name: str, **kwargs: Any) -> JumanjiAdapter:
    """``JumanjiAdapter(jumanji.make(name, **kwargs))``; the keywords go to the Jumanji environment."""
    jumanji = _jumanji()
    if name not in jumanji.registered_environments():
        known = ", ".join(sorted(jumanji.registered_environments()))
        raise UnknownEnvironmentError(f"unknown jumanji environment {name!r}; jumanji registers: {known}")
    return JumanjiAdapter(jumanji.make(name, **kwargs), name=name)
