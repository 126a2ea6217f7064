"""Collecting experience: ``num_steps`` steps of ``N`` environments under one ``lax.scan``.

The environments auto-reset in the same step (see :class:`jaxrl_self.core.Environment`), so a rollout is a
plain scan. A *policy step* is any pure function::

    policy_step(noise, carry, obs, first) -> (carry, action, extras)

* ``noise``: the step's randomness. By default a PRNG key (one per step, split up front); with
  ``noise_fn`` it is the ``t``-th slice of ``noise_fn(key)``, randomness drawn for the whole rollout at once
  (e.g. Gumbel noise for categorical sampling), which keeps random-number generation out of the loop body;
* ``obs``: the observations of the ``N`` environments (a pytree with leading axis ``N``);
* ``first``: ``[N]`` bool, ``obs`` is the first observation of an episode (a recurrent policy resets its
  state there);
* ``carry``: the policy's recurrent state (``[N, ...]`` leaves; ``None`` for a feed-forward policy);
* ``extras``: anything per environment the learner needs later (log-probabilities, values, hidden states...);
  it is stored in :attr:`Trajectory.extras` with a leading time axis.

The data comes back time-major, ``[T, N, ...]``, as a :class:`Trajectory`. Everything that must survive
between rollouts (environment state, current observation, ``first`` flags, recurrent carry) is a
:class:`RolloutState`, a pytree that lives in the algorithm's run state.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.environment import Environment
from jaxrl_self.core.mesh import shard_envs

__all__ = ["RolloutState", "Trajectory", "PolicyStep", "reset", "rollout"]

PolicyStep = Callable[[jax.Array, Any, Any, jax.Array], tuple[Any, jax.Array, Any]]


@struct.dataclass
class RolloutState:
    """The environments between two rollouts (all leaves have a leading ``N`` axis).

    ``env_state``: environment states; ``obs``: the observations to act on next; ``first``: bool, ``obs`` starts
    an episode; ``carry``: the policy's recurrent state *before* seeing ``obs`` (``None`` when feed-forward).
    """

    env_state: Any
    obs: Any
    first: jax.Array
    carry: Any = None


@struct.dataclass
class Trajectory:
    """``T`` steps of ``N`` environments, time-major (every leaf ``[T, N, ...]``).

    Step ``t``: the policy saw ``obs[t]`` (``first[t]``: the first observation of an episode), took
    ``action[t]``, received ``reward[t]`` and arrived at ``final_obs[t]`` (the environment's
    ``info["final_obs"]``: equal to ``obs[t+1]`` unless the episode ended at ``t``). ``terminated``/``truncated``
    say how it ended. ``extras`` is what the policy step returned; ``info`` the rest of the environment's info.
    """

    obs: Any
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    first: jax.Array
    final_obs: Any
    extras: Any
    info: dict

    @property
    def done(self) -> jax.Array:
        """``terminated | truncated``: the episode ended at this step."""
        return jnp.logical_or(self.terminated, self.truncated)


def reset(
    key: jax.Array, env: Environment, env_params: Any, num_envs: int, carry: Any = None
) -> RolloutState:
    """Reset ``num_envs`` environments (``env_params`` shared by all) into a :class:`RolloutState`."""
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), env_params)
    return shard_envs(RolloutState(env_state=env_state, obs=obs, first=jnp.ones((num_envs,), jnp.bool_), carry=carry))


def rollout(
    key: jax.Array,
    policy_step: PolicyStep,
    env: Environment,
    env_params: Any,
    state: RolloutState,
    num_steps: int,
    noise_fn: Callable[[jax.Array], Any] | None = None,
    unroll: int = 1,
) -> tuple[RolloutState, Trajectory]:
    """Run ``num_steps`` steps of every environment in ``state`` with ``policy_step``.

    The per-step randomness is drawn once up front: one key per step and environment for the environments,
    and for the policy either one key per step or, with ``noise_fn``, ``noise_fn(key)`` (a pytree with leading
    axis ``num_steps``). The scan body does no key bookkeeping.

    Returns:
      ``(state, trajectory)``: the state after the last step (ready for the next rollout) and the
      ``[T, N, ...]`` :class:`Trajectory`.
    """
    num_envs = state.first.shape[0]
    state = shard_envs(state)  # on a device mesh: each device steps its share of the environments (core.mesh)
    k_policy, k_env = jax.random.split(key)
    policy_noise = jax.random.split(k_policy, num_steps) if noise_fn is None else noise_fn(k_policy)
    env_keys = jax.random.split(k_env, (num_steps, num_envs))
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def step(s: RolloutState, keys):
        kp, ke = keys
        carry, action, extras = policy_step(kp, s.carry, s.obs, s.first)
        obs, env_state, reward, terminated, truncated, info = vstep(ke, s.env_state, action, env_params)
        info = dict(info)
        final_obs = info.pop("final_obs")
        out = Trajectory(
            obs=s.obs,
            action=action,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            first=s.first,
            final_obs=final_obs,
            extras=extras,
            info=info,
        )
        s = RolloutState(env_state=env_state, obs=obs, first=jnp.logical_or(terminated, truncated), carry=carry)
        return s, out

    state, traj = jax.lax.scan(step, state, (policy_noise, env_keys), unroll=unroll)
    return shard_envs(state), shard_envs(traj, axis=1)
