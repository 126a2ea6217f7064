"""CartPole-v1 with the classic cart-pole dynamics, step-for-step equal to gymnasium's ``CartPole-v1``.

A pole is hinged on a cart that moves along a frictionless track; the agent pushes the cart left or right
with a fixed force and must keep the pole upright (Barto, Sutton & Anderson, 1983).

* **Observation**: ``Box(float32, shape (4,))`` = ``[x, x_dot, theta, theta_dot]`` (cart position in m, cart
  velocity, pole angle in rad with 0 = upright, pole angular velocity). Space bounds as in gymnasium:
  ``|x| <= 2 * x_threshold`` (4.8), ``|theta| <= 2 * theta_threshold_radians`` (~0.419), velocities unbounded.
* **Action**: ``Discrete(2)``: 0 pushes the cart left (force ``-force_mag``), 1 pushes it right (``+force_mag``).
* **Reward**: ``1.0`` (float32) on every step, including the step that terminates the episode.
* **Termination**: after the Euler update, the *new* state has ``|x| > x_threshold`` (2.4) or
  ``|theta| > theta_threshold_radians`` (12 degrees).
* **Truncation**: the ``max_steps_in_episode``-th step of an episode (500) is truncated (``state.time`` counts
  steps since the reset), exactly like gymnasium's ``TimeLimit(max_episode_steps=500)``. A step can be both
  terminated and truncated.
* **Reset**: all four state variables uniform in ``[-0.05, 0.05)``; ``time = 0``.

Dynamics (explicit Euler, ``tau = 0.02`` s), with ``F = ±force_mag``, ``m = masspole``, ``M = masscart + m``
and ``l = length`` (half the pole's length)::

    temp      = (F + m l theta_dot^2 sin(theta)) / M
    theta_acc = (g sin(theta) - cos(theta) temp) / (l (4/3 - m cos(theta)^2 / M))
    x_acc     = temp - m l theta_acc cos(theta) / M
    x, x_dot, theta, theta_dot += tau * (x_dot, x_acc, theta_dot, theta_acc)     # all from the old state

Every physical constant is a traced field of :class:`CartPoleParams`, so one program can ``jax.vmap`` over,
say, pole lengths. The derived quantities (total mass, ``m l``) are computed from the primary ones inside the
step, so changing ``masspole`` or ``length`` alone is always consistent. gymnasium computes in float64, we in
float32: one step agrees to about 1e-6 relative (see ``tests/test_cartpole.py``).
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.environment import Environment, EnvParams, EnvState, StepResult
from jaxrl_self.core.spaces import Box, Discrete

__all__ = ["CartPole", "CartPoleParams", "CartPoleState"]


@struct.dataclass
class CartPoleParams(EnvParams):
    """Physical constants and the time limit (all traced: vmap over any of them).

    Defaults are gymnasium's CartPole-v1.
    """

    gravity: float = 9.8  # m/s^2
    masscart: float = 1.0  # kg
    masspole: float = 0.1  # kg
    length: float = 0.5  # m, half the pole's length (distance from the hinge to the pole's centre of mass)
    force_mag: float = 10.0  # N, magnitude of the push
    tau: float = 0.02  # s, Euler time step
    theta_threshold_radians: float = 12 * 2 * math.pi / 360  # |theta| above this terminates
    x_threshold: float = 2.4  # m, |x| above this terminates
    reset_bound: float = 0.05  # reset state uniform in [-reset_bound, reset_bound)^4
    max_steps_in_episode: int = 500  # the step that reaches this count is truncated


@struct.dataclass
class CartPoleState(EnvState):
    """Scalars (float32; ``time`` int32). ``time``: steps taken in the current episode, 0 after a reset."""

    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array


def _f32(value: Any) -> jax.Array:
    """A param as float32 (params may hold Python floats or arrays)."""
    return jnp.asarray(value, jnp.float32)


def _concrete_max(value: Any, default: float) -> float:
    """``max(value)`` as a Python float when ``value`` is concrete (scalar or batched), else ``default``."""
    try:
        return float(np.max(np.asarray(value)))
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError, TypeError):
        return default


class CartPole(Environment[CartPoleState, CartPoleParams]):
    """CartPole-v1 (gymnasium parity). See the module docstring for observation, action, reward, termination
    and truncation. No constructor arguments: everything numeric is in :class:`CartPoleParams`."""

    deterministic_step = True  # the dynamics use no randomness: step() gives its whole key to the auto-reset

    @property
    def default_params(self) -> CartPoleParams:
        return CartPoleParams()

    @property
    def name(self) -> str:
        return "CartPole-v1"

    def observation_space(self, params: CartPoleParams | None = None) -> Box:
        """``Box((4,), float32)``. Bounds come from ``params`` when they are concrete (the largest value over a
        batch of params), otherwise from the defaults; they are informational, observations are never clipped."""
        default = CartPoleParams()
        p = default if params is None else params
        x_thr = _concrete_max(p.x_threshold, default.x_threshold)
        th_thr = _concrete_max(p.theta_threshold_radians, default.theta_threshold_radians)
        high = np.array([2 * x_thr, np.inf, 2 * th_thr, np.inf], dtype=np.float32)
        return Box(-high, high, (4,), jnp.float32)

    def action_space(self, params: CartPoleParams | None = None) -> Discrete:
        return Discrete(2)

    @staticmethod
    def get_obs(state: CartPoleState) -> jax.Array:
        """``[x, x_dot, theta, theta_dot]`` as a float32 ``(4,)`` vector."""
        return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(jnp.float32)

    def reset_env(self, key: jax.Array, params: CartPoleParams) -> tuple[jax.Array, CartPoleState]:
        """Uniform ``[-reset_bound, reset_bound)^4`` start, ``time = 0``."""
        bound = jnp.asarray(params.reset_bound, jnp.float32)
        u = jax.random.uniform(key, (4,), jnp.float32, minval=-bound, maxval=bound)
        state = CartPoleState(time=jnp.zeros((), jnp.int32), x=u[0], x_dot=u[1], theta=u[2], theta_dot=u[3])
        return u, state

    def step_env(self, key: jax.Array, state: CartPoleState, action: jax.Array, params: CartPoleParams) -> StepResult:
        """One Euler step (no auto-reset; ``key`` is unused: the dynamics are deterministic)."""
        del key
        g, mc, mp, length = _f32(params.gravity), _f32(params.masscart), _f32(params.masspole), _f32(params.length)
        force_mag, tau = _f32(params.force_mag), _f32(params.tau)
        total_mass = mc + mp
        polemass_length = mp * length

        force = jnp.where(action == 1, force_mag, -force_mag)
        cos, sin = jnp.cos(state.theta), jnp.sin(state.theta)
        temp = (force + polemass_length * state.theta_dot**2 * sin) / total_mass
        theta_acc = (g * sin - cos * temp) / (length * (4.0 / 3.0 - mp * cos**2 / total_mass))
        x_acc = temp - polemass_length * theta_acc * cos / total_mass

        new = CartPoleState(
            time=state.time + 1,
            x=state.x + tau * state.x_dot,
            x_dot=state.x_dot + tau * x_acc,
            theta=state.theta + tau * state.theta_dot,
            theta_dot=state.theta_dot + tau * theta_acc,
        )
        terminated = (jnp.abs(new.x) > _f32(params.x_threshold)) | (
            jnp.abs(new.theta) > _f32(params.theta_threshold_radians)
        )
        truncated = new.time >= params.max_steps_in_episode
        reward = jnp.ones((), jnp.float32)
        return self.get_obs(new), new, reward, terminated, truncated, {}
