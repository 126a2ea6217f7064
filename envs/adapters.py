"""Adapters that bring environments written for other JAX APIs into our contract.

:class:`GymnaxAdapter` accepts any object with the gymnax API, old (0.x: ``step`` returns
``obs, state, reward, done, info``) or new (1.x: ``obs, state, reward, terminated, truncated, info``),
detected automatically from the number of values returned at trace time.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_self.core import spaces as ours
from jaxrl_self.core.environment import Environment

__all__ = ["GymnaxAdapter", "from_gymnax", "convert_space"]


def convert_space(space: Any) -> ours.Space:
    """Convert a gymnax (or gymnax-like) space to ours, by duck typing."""
    if isinstance(space, ours.Space):
        return space
    kind = type(space).__name__
    if kind == "Discrete" or (hasattr(space, "n") and not hasattr(space, "low")):
        return ours.Discrete(int(space.n), dtype=getattr(space, "dtype", jnp.int32))
    if kind == "Box" or hasattr(space, "low"):
        return ours.Box(space.low, space.high, tuple(space.shape), getattr(space, "dtype", jnp.float32))
    if kind == "Dict" or hasattr(space, "spaces"):
        return ours.Dict({k: convert_space(v) for k, v in dict(space.spaces).items()})
    raise TypeError(f"cannot convert space {space!r} (type {kind}); supported: Discrete, Box, Dict")


class GymnaxAdapter(Environment):
    """Wrap a gymnax-API environment.

    When the wrapped env exposes ``step_env``/``reset_env`` (every gymnax env does), the adapter steps
    without the inner auto-reset and resets itself, so ``info["final_obs"]`` is the true last observation.

    * gymnax 1.x (``step_env`` returns ``terminated``, ``is_truncated`` exists): terminated/truncated are taken
      as given.
    * gymnax 0.x (a single ``done`` that includes the time limit): ``truncated = done & (state.time >=
      params.max_steps_in_episode)`` when both fields exist, ``terminated = done & ~truncated``. An episode that
      ends naturally on exactly its last allowed step is then reported as truncated.
    * Envs with only ``step``/``reset``: their own auto-reset is used; ``final_obs`` is taken from
      ``info["final_observation"]`` if present, else it is the post-reset observation (no bootstrapping).
    """

    def __init__(self, env: Any, params: Any = None):
        self._env = env
        self._params = params
        self._has_split_api = hasattr(env, "step_env") and hasattr(env, "reset_env")

    @property
    def default_params(self):
        return self._params if self._params is not None else self._env.default_params

    def observation_space(self, params=None):
        return convert_space(self._env.observation_space(params if params is not None else self.default_params))

    def action_space(self, params=None):
        return convert_space(self._env.action_space(params if params is not None else self.default_params))

    @property
    def name(self) -> str:
        inner = getattr(self._env, "name", type(self._env).__name__)
        return f"gymnax:{inner}"

    @property
    def unwrapped(self):
        return self

    # -- split gymnax API ---------------------------------------------------------------------------------
    def reset_env(self, key, params):
        if self._has_split_api:
            return self._env.reset_env(key, params)
        return self._env.reset(key, params)

    def _split_done(self, time, done, params):
        """``time``: the step count of the state the step produced (before any reset), or None if unknown."""
        done = jnp.asarray(done, jnp.bool_)
        if time is not None and hasattr(params, "max_steps_in_episode"):
            truncated = done & (time >= params.max_steps_in_episode)
        else:
            truncated = jnp.zeros_like(done)
        return done & ~truncated, truncated

    def step_env(self, key, state, action, params):
        out = self._env.step_env(key, state, action, params)
        if len(out) == 6:
            obs, state, reward, terminated, truncated, info = out
        elif len(out) == 5:
            obs, state, reward, done, info = out
            if hasattr(self._env, "is_truncated"):  # gymnax 1.x: step_env's flag is the natural termination
                terminated = jnp.asarray(done, jnp.bool_)
                truncated = jnp.asarray(self._env.is_truncated(state, params), jnp.bool_)
            else:
                terminated, truncated = self._split_done(getattr(state, "time", None), done, params)
        else:
            raise TypeError(f"{self.name}.step_env returned {len(out)} values; expected 5 (gymnax 0.x) or 6")
        info = {k: v for k, v in dict(info).items() if k not in ("final_observation", "terminated", "truncated")}
        return obs, state, jnp.asarray(reward, jnp.float32), terminated, truncated, info

    def step(self, key, state, action, params=None):
        if self._has_split_api:
            return super().step(key, state, action, params)
        if params is None:
            params = self.default_params
        # the env auto-resets inside step, so the returned state of an ended episode is already the next one's:
        # count the time limit from the incoming state
        time_after = state.time + 1 if hasattr(state, "time") else None
        out = self._env.step(key, state, action, params)
        if len(out) == 6:
            obs, state, reward, terminated, truncated, info = out
        elif len(out) == 5:
            obs, state, reward, done, info = out
            terminated, truncated = self._split_done(time_after, done, params)
        else:
            raise TypeError(f"{self.name}.step returned {len(out)} values; expected 5 (gymnax 0.x) or 6")
        info = dict(info)
        final_obs = info.pop("final_observation", obs)
        info = {k: v for k, v in info.items() if k not in ("terminated", "truncated")}
        info["final_obs"] = final_obs
        return (
            obs,
            state,
            jnp.asarray(reward, jnp.float32),
            jnp.asarray(terminated, jnp.bool_),
            jnp.asarray(truncated, jnp.bool_),
            info,
        )


def from_gymnax(env_or_name: Any, params: Any = None, **make_kwargs: Any) -> GymnaxAdapter:
    """Adapt a gymnax environment object, or make one by name with ``gymnax.make`` (gymnax must be installed)."""
    if isinstance(env_or_name, str):
        try:
            import gymnax
        except ImportError as e:  # pragma: no cover - depends on the user's install
            raise ImportError("from_gymnax('<name>') needs gymnax: pip install gymnax") from e
        env, default = gymnax.make(env_or_name, **make_kwargs)
        return GymnaxAdapter(env, params if params is not None else default)
    return GymnaxAdapter(env_or_name, params)
