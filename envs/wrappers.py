"""Wrappers: episode logging, observation flattening, and reset policies for level environments.

Order matters. Reset-policy wrappers (:class:`ReplayLevel`, :class:`ResampleLevel`, :class:`LevelSet`) decide
what an auto-reset does, so they go directly around a :class:`~jaxrl_self.core.LevelEnv`. Observation and
logging wrappers go outside::

    env = LogWrapper(FlattenObservation(ReplayLevel(Maze())))
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.environment import Environment, LevelEnv, Wrapper
from jaxrl_self.core.spaces import Box, Dict, Discrete, Space, flat_dim

__all__ = [
    "LogWrapper",
    "LogState",
    "FlattenObservation",
    "flatten_observation",
    "ClipAction",
    "ReplayLevel",
    "ResampleLevel",
    "LevelSet",
]


# ---------------------------------------------------------------------------------------------- logging
@struct.dataclass
class LogState:
    env_state: Any
    episode_return: jax.Array  # running return of the current episode
    episode_length: jax.Array
    returned_episode_return: jax.Array  # return of the last finished episode (valid once has_returned)
    returned_episode_length: jax.Array
    has_returned: jax.Array  # at least one episode has finished


class LogWrapper(Wrapper):
    """Tracks undiscounted episode returns and lengths.

    Adds to ``info``:

    * ``returned_episode``: True on the step an episode ended (terminated or truncated);
    * ``returned_episode_return`` / ``returned_episode_length``: of the most recent finished episode;
    * ``returned_episode_valid``: False until the first episode has finished.

    The mean return of the episodes that finished in a rollout is
    ``sum(ret * returned_episode) / max(sum(returned_episode), 1)``; the validity flag says whether there
    were any, so placeholder zeros are never averaged in.
    """

    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        zf, zi = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
        return obs, LogState(env_state, zf, zi, zf, zi, jnp.zeros((), jnp.bool_))

    def step(self, key, state: LogState, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(key, state.env_state, action, params)
        done = jnp.logical_or(terminated, truncated)
        ret = state.episode_return + reward
        length = state.episode_length + 1
        new = LogState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, ret),
            episode_length=jnp.where(done, 0, length),
            returned_episode_return=jnp.where(done, ret, state.returned_episode_return),
            returned_episode_length=jnp.where(done, length, state.returned_episode_length),
            has_returned=jnp.logical_or(state.has_returned, done),
        )
        info = {
            **info,
            "returned_episode": done,
            "returned_episode_return": new.returned_episode_return,
            "returned_episode_length": new.returned_episode_length,
            "returned_episode_valid": new.has_returned,
        }
        return obs, new, reward, terminated, truncated, info

    def reset_env(self, key, params):  # pragma: no cover - guard against misuse
        raise TypeError("LogWrapper must be the outermost wrapper; call reset(), not reset_env()")

    def step_env(self, key, state, action, params):  # pragma: no cover
        raise TypeError("LogWrapper must be the outermost wrapper; call step(), not step_env()")


# ---------------------------------------------------------------------------------------------- flattening
def flatten_observation(space: Space, obs: Any) -> jax.Array:
    """Flatten one observation of ``space`` into a float32 vector (Discrete -> one-hot, Dict -> concatenation
    in declaration order). Works on a batch too: leading axes are kept."""
    if isinstance(space, Discrete):
        return jax.nn.one_hot(obs, space.n, dtype=jnp.float32)
    if isinstance(space, Box):
        x = jnp.asarray(obs, jnp.float32)
        batch = x.shape[: x.ndim - len(space.shape)]
        return x.reshape(batch + (-1,)) if space.shape else x[..., None]
    if isinstance(space, Dict):
        return jnp.concatenate([flatten_observation(s, obs[k]) for k, s in space.spaces.items()], axis=-1)
    raise TypeError(f"cannot flatten observations of {space!r}")


class FlattenObservation(Wrapper):
    """Observations (and ``info["final_obs"]``) become flat float32 vectors."""

    def observation_space(self, params=None) -> Box:
        inner = self._env.observation_space(params)
        return Box(-jnp.inf, jnp.inf, (flat_dim(inner),), jnp.float32)

    def _flat(self, obs, params):
        return flatten_observation(self._env.observation_space(params), obs)

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return self._flat(obs, params), state

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        info = {**info, "final_obs": self._flat(info["final_obs"], params)}
        return self._flat(obs, params), state, reward, terminated, truncated, info


class ClipAction(Wrapper):
    """Continuous actions are clipped to the action :class:`Box`'s bounds before the inner ``step`` (PureJaxRL's
    ``ClipAction``). The agent keeps its unclipped sample, whose log-probability PPO's ratio uses; the
    environment never sees an out-of-range action."""

    def step(self, key, state, action, params=None):
        space = self._env.action_space(self.default_params if params is None else params)
        low = jnp.asarray(space.low, jnp.float32)
        high = jnp.asarray(space.high, jnp.float32)
        return self._env.step(key, state, jnp.clip(action, low, high), params)


# ---------------------------------------------------------------------------------------------- reset policies
class _ResetPolicy(Wrapper):
    """Base for reset-policy wrappers: reuses :meth:`Environment.step` (auto-reset) on the inner ``step_env``
    with this wrapper's :meth:`auto_reset`."""

    def __init__(self, env: LevelEnv):
        if not isinstance(env, LevelEnv):
            raise TypeError(
                f"{type(self).__name__} wraps a LevelEnv directly (innermost), got {type(env).__name__}; "
                "put logging/observation wrappers outside it"
            )
        super().__init__(env)

    def reset(self, key, params=None):
        return Environment.reset(self, key, params)

    def step(self, key, state, action, params=None):
        return Environment.step(self, key, state, action, params)


class ReplayLevel(_ResetPolicy):
    """Auto-reset replays the level the episode was played on (what PLR needs to score a level over several
    episodes). ``reset`` samples a level; use ``reset_to_level`` to choose it."""

    def auto_reset(self, key, state, params):
        return self._env.reset_env_to_level(key, self._env.get_level(state), params)


class ResampleLevel(_ResetPolicy):
    """Every reset samples a new level from the generator: domain randomisation."""

    def reset_env(self, key, params):
        k_level, k_reset = jax.random.split(key)
        return self._env.reset_env_to_level(k_reset, self._env.sample_level(k_level), params)

    def auto_reset(self, key, state, params):
        return self.reset_env(key, params)


class LevelSet(_ResetPolicy):
    """Every reset draws uniformly from a finite set of levels (a ``Level`` pytree with a leading axis)."""

    def __init__(self, env: LevelEnv, levels: Any):
        super().__init__(env)
        sizes = {x.shape[0] for x in jax.tree.leaves(levels)}
        if len(sizes) != 1:
            raise ValueError(f"LevelSet.levels must share one leading axis, got leading sizes {sorted(sizes)}")
        self.levels = levels
        self.num_levels = sizes.pop()

    def reset_env(self, key, params):
        k_idx, k_reset = jax.random.split(key)
        i = jax.random.randint(k_idx, (), 0, self.num_levels)
        level = jax.tree.map(lambda x: x[i], self.levels)
        return self._env.reset_env_to_level(k_reset, level, params)

    def auto_reset(self, key, state, params):
        return self.reset_env(key, params)
