"""The environment contracts: :class:`Environment` and :class:`LevelEnv`.

The API is gymnax-compatible on purpose::

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

* Everything is a pure function of its arguments; the environment object itself only holds *structural*
  settings (grid size, view size, sequence length...) fixed at construction. Numbers that a sweep or a
  curriculum varies live in an ``EnvParams`` pytree (a ``flax.struct`` dataclass), so ``jax.vmap`` over
  params works.
* ``step`` auto-resets in the same step: when ``terminated | truncated``, the returned ``obs``/``state`` are
  those of the next episode's first step, and ``info["final_obs"]`` holds the observation the episode ended
  on (needed to bootstrap the value of truncated episodes). ``info["final_obs"]`` is present on every step
  (equal to ``obs`` when the episode continues) so that the info pytree has a fixed structure under ``scan``.
* ``terminated`` (a terminal state: no bootstrap) and ``truncated`` (time limit: bootstrap from
  ``final_obs``) are separate booleans. ``reward`` is float32.

Subclasses implement ``reset_env`` and ``step_env`` (no auto-reset) and the two spaces. The auto-reset is
done once, here, by ``step``; what a reset *means* is the ``auto_reset`` hook, which reset-policy wrappers
(replay the same level, resample, a finite set) override.
"""
from __future__ import annotations

from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.spaces import Space

__all__ = [
    "EnvParams",
    "EnvState",
    "Environment",
    "LevelEnv",
    "Wrapper",
    "StepResult",
    "tree_select",
]

TState = TypeVar("TState")
TParams = TypeVar("TParams")
TLevel = TypeVar("TLevel")

# (obs, state, reward, terminated, truncated, info)
StepResult = tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict]


@struct.dataclass
class EnvParams:
    """Base class for vmappable environment parameters. Subclass with ``@struct.dataclass``."""

    max_steps_in_episode: int = 1000


@struct.dataclass
class EnvState:
    """Base class for environment state pytrees. ``time`` counts steps in the current episode."""

    time: jax.Array


def tree_select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leaf-wise ``where(pred, on_true, on_false)`` for two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class Environment(Generic[TState, TParams]):
    """A pure-function environment with same-step auto-reset. See the module docstring."""

    #: Set True in a subclass whose ``step_env`` ignores its key (deterministic dynamics): ``step`` then hands
    #: the whole key to the auto-reset instead of splitting it, which saves one key split per step.
    deterministic_step: bool = False

    # ------------------------------------------------------------------ to implement
    @property
    def default_params(self) -> TParams:
        return EnvParams()  # type: ignore[return-value]

    def reset_env(self, key: jax.Array, params: TParams) -> tuple[Any, TState]:
        """Start an episode. Returns ``(obs, state)``."""
        raise NotImplementedError

    def step_env(self, key: jax.Array, state: TState, action: Any, params: TParams) -> StepResult:
        """One transition *without* auto-reset: ``(obs, state, reward, terminated, truncated, info)``."""
        raise NotImplementedError

    def observation_space(self, params: TParams | None = None) -> Space:
        raise NotImplementedError

    def action_space(self, params: TParams | None = None) -> Space:
        raise NotImplementedError

    # ------------------------------------------------------------------ provided
    def auto_reset(self, key: jax.Array, state: TState, params: TParams) -> tuple[Any, TState]:
        """How the environment starts its next episode after ``state`` ended. Default: a fresh ``reset_env``."""
        del state
        return self.reset_env(key, params)

    def reset(self, key: jax.Array, params: TParams | None = None) -> tuple[Any, TState]:
        if params is None:
            params = self.default_params
        return self.reset_env(key, params)

    def step(self, key: jax.Array, state: TState, action: Any, params: TParams | None = None) -> StepResult:
        if params is None:
            params = self.default_params
        key_step, key_reset = (key, key) if self.deterministic_step else jax.random.split(key)
        obs_st, state_st, reward, terminated, truncated, info = self.step_env(key_step, state, action, params)
        terminated = jnp.asarray(terminated, dtype=jnp.bool_)
        truncated = jnp.asarray(truncated, dtype=jnp.bool_)
        done = jnp.logical_or(terminated, truncated)
        obs_re, state_re = self.auto_reset(key_reset, state_st, params)
        state = tree_select(done, state_re, state_st)
        obs = tree_select(done, obs_re, obs_st)
        info = {**info, "final_obs": obs_st}
        return obs, state, jnp.asarray(reward, jnp.float32), terminated, truncated, info

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def num_actions(self) -> int:
        """Number of actions of a discrete action space."""
        space = self.action_space(self.default_params)
        n = getattr(space, "n", None)
        if n is None:
            raise AttributeError(f"{self.name} has a non-discrete action space {space!r}")
        return int(n)

    @property
    def unwrapped(self) -> "Environment":
        return self

    def __repr__(self) -> str:
        return f"{self.name}()"


class LevelEnv(Environment[TState, TParams], Generic[TState, TParams, TLevel]):
    """An environment whose episodes are specified by a ``Level`` pytree (an underspecified POMDP).

    Curricula (DR, PLR, ACCEL, PAIRED) only need this interface. The state of a level env must expose the level
    it is playing through :meth:`get_level` (default: ``state.level``).

    Default reset: sample a new level (domain randomisation). The reset-policy wrappers in
    :mod:`jaxrl_self.envs.wrappers` replay the same level, resample, or draw from a finite set.
    """

    # ------------------------------------------------------------------ to implement
    def reset_env_to_level(self, key: jax.Array, level: TLevel, params: TParams) -> tuple[Any, TState]:
        raise NotImplementedError

    def sample_level(self, key: jax.Array) -> TLevel:
        """A random level from the environment's generator (jit/vmap-able)."""
        raise NotImplementedError

    def mutate_level(self, key: jax.Array, level: TLevel, n_edits: int | jax.Array) -> TLevel:
        """Apply ``n_edits`` random edits (ACCEL's mutation operator). ``n_edits`` may be traced."""
        raise NotImplementedError

    def level_to_str(self, level: TLevel) -> str:
        """Human-readable text of one (unbatched, concrete) level; ``level_from_str`` must invert it exactly."""
        raise NotImplementedError

    def level_from_str(self, text: str) -> TLevel:
        raise NotImplementedError

    def shortest_path(self, level: TLevel) -> jax.Array:
        """Length of the shortest solution (int32), or -1 when the level is unsolvable. Computed in JAX."""
        raise NotImplementedError

    def heldout_levels(self) -> dict[str, TLevel] | None:
        """Named held-out levels this environment ships (name -> one unbatched level), which the curricula's
        held-out evaluation reports one group each; None (the default) when it ships none. The maze's own
        held-out set (named mazes plus procedural families) is built by
        :func:`jaxrl_self.curricula.evaluation.heldout_set` and does not use this."""
        return None

    def heldout_params(self, params: TParams) -> TParams:
        """The parameters held-out evaluation plays under, from the training ones (default: the same). An env
        whose training reward is shaped returns its sparse-reward parameters here, so that "solved" (return > 0)
        keeps its meaning (e.g. ``kinetix:``)."""
        return params

    # ------------------------------------------------------------------ provided
    def is_solvable(self, level: TLevel) -> jax.Array:
        return self.shortest_path(level) >= 0

    def get_level(self, state: TState) -> TLevel:
        return state.level  # type: ignore[attr-defined]

    def reset_to_level(self, key: jax.Array, level: TLevel, params: TParams | None = None) -> tuple[Any, TState]:
        if params is None:
            params = self.default_params
        return self.reset_env_to_level(key, level, params)

    def reset_env(self, key: jax.Array, params: TParams) -> tuple[Any, TState]:
        key_level, key_reset = jax.random.split(key)
        return self.reset_env_to_level(key_reset, self.sample_level(key_level), params)


class Wrapper(Environment):
    """Transparent wrapper: delegates everything (including unknown attributes) to the wrapped environment.

    Wrappers that change observations or state override ``reset``/``step`` and call the inner ``reset``/``step``
    (which already auto-resets). Reset-policy wrappers instead override ``auto_reset``/``reset_env`` and reuse
    :meth:`Environment.step` on the inner ``step_env``; see :mod:`jaxrl_self.envs.wrappers`.
    """

    def __init__(self, env: Environment):
        self._env = env

    def __getattr__(self, name: str):
        if name == "_env":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self._env, name)

    @property
    def default_params(self):
        return self._env.default_params

    @property
    def deterministic_step(self) -> bool:  # type: ignore[override]
        return self._env.deterministic_step

    def observation_space(self, params=None) -> Space:
        return self._env.observation_space(params)

    def action_space(self, params=None) -> Space:
        return self._env.action_space(params)

    def reset_env(self, key, params):
        return self._env.reset_env(key, params)

    def step_env(self, key, state, action, params):
        return self._env.step_env(key, state, action, params)

    def auto_reset(self, key, state, params):
        return self._env.auto_reset(key, state, params)

    def reset(self, key, params=None):
        return self._env.reset(key, params)

    def step(self, key, state, action, params=None):
        return self._env.step(key, state, action, params)

    @property
    def name(self) -> str:
        return self._env.name

    @property
    def unwrapped(self) -> Environment:
        return self._env.unwrapped

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._env!r})"
