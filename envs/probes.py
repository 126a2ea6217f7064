"""Probe environments: tiny tasks whose optimal value function and policy are known in closed form.

They isolate one part of an RL algorithm at a time (after Andy Jones' "debugging RL without the agony" probes
and rejax's probe tests): if the learned value or policy misses the analytic answer, the bug is in the part
the probe exercises. All have a small float32 ``Box`` observation and ``Discrete(2)`` actions, except
``probe-continuous`` (a ``Box`` action), and all pass :func:`jaxrl_self.envs.check_env`.

=====================  =============================================  ==========================================
name                   what happens                                   analytic answer (discount γ, reward r)
=====================  =============================================  ==========================================
``probe-constant``     obs ``[0]``, reward ``r`` every step; the      ``terminated`` end (default, 1 step):
                       episode ends after ``max_steps_in_episode``    ``V = r``; ``truncate=True``: the time limit
                       steps by termination or, with                  must be bootstrapped, ``V = r / (1 - γ)``
                       ``truncate=True``, by truncation               for any episode length
``probe-observation``  obs ``[±1]`` at random, one step, reward =     ``V(±1) = ±r``
                       ``obs * r``
``probe-action``       obs ``[0]``, one step, reward ``+r`` for       ``π(1) = 1``, ``V = r``; under a policy with
                       action 1 and ``-r`` for action 0               ``p = π(1)``: ``V = r (2p - 1)``
``probe-credit``       step 0: obs one-hot cue ``c ∈ {0, 1}`` of 3,   ``π(a_0 = c | c) = 1``; with ``p`` that
                       no reward; step 1: obs ``[0, 0, 1]``, reward   probability: ``V(step 1) = r (2p - 1)``,
                       ``+r`` if ``a_0 == c`` else ``-r``, terminal   ``V(cue) = γ r (2p - 1)``
``probe-memory``       like ``probe-credit`` but the reward at step   recurrent agents: ``π(a_1 = c) = 1``,
                       1 is for ``a_1 == c``: the cue must be         ``V(cue) = γ r``; feed-forward agents
                       remembered                                     cannot beat ``V = 0``
``probe-continuous``   obs ``[±1]`` at random, one step, action in    ``a = obs``, ``V = 0``; a Gaussian policy
                       ``Box(-2, 2, (1,))``, reward                   with mean ``m`` and std ``s``:
                       ``-r (a - obs)^2``                             ``V = -r ((m - obs)^2 + s^2)`` (unclipped)
=====================  =============================================  ==========================================

``ProbeParams.nan_reward_after`` (testing only) makes the reward NaN from that step on, counted per
environment across episodes (``state.total_steps``), so a training run hits a non-finite loss at a known
update.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.environment import Environment, EnvParams, EnvState, StepResult
from jaxrl_self.core.spaces import Box, Discrete

__all__ = [
    "ProbeParams",
    "ProbeState",
    "ProbeConstant",
    "ProbeObservation",
    "ProbeAction",
    "ProbeCredit",
    "ProbeMemory",
    "ProbeContinuous",
]


@struct.dataclass
class ProbeParams(EnvParams):
    """Traced parameters shared by all probes."""

    max_steps_in_episode: int = 1  # probe-constant: episode length; the others: a time limit (never reached)
    reward: float = 1.0  # r, the reward scale
    truncate: bool = False  # probe-constant: end episodes by truncation (time limit) instead of termination
    nan_reward_after: int = -1  # testing: reward is NaN once state.total_steps >= this (-1: never)


@struct.dataclass
class ProbeState(EnvState):
    """``time``: steps in this episode; ``cue``: the episode's random bit (int32; 1 where unused);
    ``memo``: what step 1 must know (probe-credit: 1 if action 0 was right); ``total_steps``: steps this
    environment has taken over all episodes (survives auto-resets)."""

    cue: jax.Array
    memo: jax.Array
    total_steps: jax.Array


class _Probe(Environment[ProbeState, ProbeParams]):
    obs_dim: int = 1

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=10)  # a time limit the episodes never reach

    def observation_space(self, params=None) -> Box:
        return Box(-1.0, 1.0, (self.obs_dim,), jnp.float32)

    def action_space(self, params=None) -> Discrete:
        return Discrete(2)

    @property
    def name(self) -> str:
        return "probe-" + type(self).__name__.removeprefix("Probe").lower()

    # -- helpers ------------------------------------------------------------------------------------------
    def _start(self, cue: jax.Array) -> ProbeState:
        z = jnp.zeros((), jnp.int32)
        return ProbeState(time=z, cue=cue.astype(jnp.int32), memo=z, total_steps=z)

    def auto_reset(self, key, state, params):
        obs, new = self.reset_env(key, params)
        return obs, new.replace(total_steps=state.total_steps)

    @staticmethod
    def _reward(value, state: ProbeState, params: ProbeParams) -> jax.Array:
        r = jnp.asarray(value, jnp.float32) * jnp.asarray(params.reward, jnp.float32)
        poisoned = (params.nan_reward_after >= 0) & (state.total_steps >= params.nan_reward_after)
        return jnp.where(poisoned, jnp.nan, r)

    @staticmethod
    def _advance(state: ProbeState, **changes) -> ProbeState:
        return state.replace(time=state.time + 1, total_steps=state.total_steps + 1, **changes)

    def _time_limit(self, new: ProbeState, params: ProbeParams) -> jax.Array:
        return new.time >= params.max_steps_in_episode


class ProbeConstant(_Probe):
    """Constant observation ``[0]`` and constant reward ``r``. See the module table."""

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=1)  # the episode length

    def reset_env(self, key, params):
        return jnp.zeros((1,), jnp.float32), self._start(jnp.ones((), jnp.int32))

    def step_env(self, key, state, action, params) -> StepResult:
        new = self._advance(state)
        end = self._time_limit(new, params)
        truncate = jnp.asarray(params.truncate, jnp.bool_)
        return (
            jnp.zeros((1,), jnp.float32),
            new,
            self._reward(1.0, state, params),
            end & ~truncate,
            end & truncate,
            {},
        )


class ProbeObservation(_Probe):
    """Observation ``[±1]``; one step; reward ``obs * r``."""

    def reset_env(self, key, params):
        cue = jax.random.bernoulli(key).astype(jnp.int32)
        return (2.0 * cue - 1.0).astype(jnp.float32)[None], self._start(cue)

    def step_env(self, key, state, action, params) -> StepResult:
        new = self._advance(state)
        obs = (2.0 * state.cue - 1.0).astype(jnp.float32)[None]
        return obs, new, self._reward(2.0 * state.cue - 1.0, state, params), jnp.ones((), jnp.bool_), \
            self._time_limit(new, params), {}


class ProbeAction(_Probe):
    """Observation ``[0]``; one step; reward ``+r`` for action 1, ``-r`` for action 0."""

    def reset_env(self, key, params):
        return jnp.zeros((1,), jnp.float32), self._start(jnp.ones((), jnp.int32))

    def step_env(self, key, state, action, params) -> StepResult:
        new = self._advance(state)
        reward = self._reward(jnp.where(action == 1, 1.0, -1.0), state, params)
        return jnp.zeros((1,), jnp.float32), new, reward, jnp.ones((), jnp.bool_), self._time_limit(new, params), {}


class _TwoStep(_Probe):
    """Step 0 shows the cue one-hot (``[1, 0, 0]`` or ``[0, 1, 0]``), step 1 shows ``[0, 0, 1]``; the reward
    comes at the end of step 1, which terminates."""

    obs_dim = 3

    @staticmethod
    def _obs(time: jax.Array, cue: jax.Array) -> jax.Array:
        index = jnp.where(time == 0, cue, 2)
        return jax.nn.one_hot(index, 3, dtype=jnp.float32)

    def reset_env(self, key, params):
        cue = jax.random.bernoulli(key).astype(jnp.int32)
        return self._obs(jnp.zeros((), jnp.int32), cue), self._start(cue)

    def _judged_action_correct(self, state: ProbeState, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(memo after step 0, whether step 1 earns +r)."""
        raise NotImplementedError

    def step_env(self, key, state, action, params) -> StepResult:
        memo, correct = self._judged_action_correct(state, action)
        new = self._advance(state, memo=memo)
        second = state.time >= 1
        reward = self._reward(jnp.where(second, jnp.where(correct, 1.0, -1.0), 0.0), state, params)
        return self._obs(new.time, state.cue), new, reward, second, self._time_limit(new, params), {}


class ProbeCredit(_TwoStep):
    """Reward at step 1 for the action taken at step 0 matching the cue (credit assignment over one step)."""

    def _judged_action_correct(self, state, action):
        memo = jnp.where(state.time == 0, (action == state.cue).astype(jnp.int32), state.memo)
        return memo, state.memo == 1


class ProbeMemory(_TwoStep):
    """Reward at step 1 for the action taken at step 1 matching the cue shown at step 0 (needs memory)."""

    def _judged_action_correct(self, state, action):
        return state.memo, action == state.cue


class ProbeContinuous(_Probe):
    """Observation ``[±1]``; one step; a continuous action ``a`` in ``[-2, 2]``; reward ``-r (a - obs)^2``: the
    policy's mean must follow the observation and its spread must shrink."""

    def action_space(self, params=None) -> Box:
        return Box(-2.0, 2.0, (1,), jnp.float32)

    def reset_env(self, key, params):
        cue = jax.random.bernoulli(key).astype(jnp.int32)
        return (2.0 * cue - 1.0).astype(jnp.float32)[None], self._start(cue)

    def step_env(self, key, state, action, params) -> StepResult:
        new = self._advance(state)
        target = (2.0 * state.cue - 1.0).astype(jnp.float32)
        obs = target[None]
        reward = self._reward(-jnp.square(jnp.asarray(action, jnp.float32)[0] - target), state, params)
        return obs, new, reward, jnp.ones((), jnp.bool_), self._time_limit(new, params), {}
