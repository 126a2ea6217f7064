"""NAVIX (MiniGrid in JAX) environments behind the ``navix:`` prefix.

    import jax
    from jaxrl_self import envs
    env = envs.make("navix:Navix-Empty-5x5-v0")            # = make_navix("Navix-Empty-5x5-v0")
    obs, state = env.reset(jax.random.key(0))               # obs: uint8[5, 5, 3], the symbolic grid
    obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, 2)  # 2 = forward

    import navix
    rgb = envs.make("navix:Navix-Empty-5x5-v0", observation_fn=navix.observations.rgb)  # uint8[40, 40, 3]

``make_navix(name, **kwargs)`` is :class:`NavixAdapter` over ``navix.make(name, **kwargs)``; every keyword
goes to ``navix.make`` (``max_steps``, ``observation_fn``, ``reward_fn``, ``termination_fn``, ``action_set``,
``observation_space``, ...). ``navix`` is imported when an environment is made, not when this module is.

How NAVIX maps onto our contract (navix 0.7.4, checked against ``navix/environments/environment.py``):

* **Stepping without NAVIX's auto-reset.** ``navix.Environment.step(timestep, action)`` resets when the
  *incoming* timestep already ended (``step_type > 0``), one step late and with the key stored in the NAVIX
  state. :meth:`NavixAdapter.step_env` calls NAVIX's one-transition function ``Environment._step(timestep,
  action)`` instead, the same code ``step`` runs on a live timestep (transition, reward, termination,
  observation), so our base-class ``step`` auto-resets in the same step and ``info["final_obs"]`` is the true
  last observation. ``_step`` is private NAVIX API; if a NAVIX release renames it the adapter raises at
  construction. :meth:`NavixAdapter.reset_env` calls the public ``Environment.reset(key)``.
* **Keys.** NAVIX keeps its randomness in the state (``timestep.state.key``, set by ``reset``; stochastic
  transitions such as moving balls split it), so ``step_env`` ignores its key (``deterministic_step = True``)
  and the whole step key goes to the auto-reset. ``reset_env(key)`` equals ``navix_env.reset(key)`` exactly;
  episodes after the first differ from NAVIX's own auto-reset chain, which resets from the stored state key.
* **terminated / truncated.** NAVIX's ``timestep.step_type`` is ``StepType.TRANSITION`` (0), ``TRUNCATION``
  (1: ``t >= max_steps``) or ``TERMINATION`` (2: ``termination_fn``, e.g. the goal reached; it wins over a
  truncation on the same step). ``terminated = step_type == TERMINATION``; ``truncated = ~terminated &
  (time >= params.max_steps_in_episode)``. The time limit is our ``EnvParams.max_steps_in_episode``, whose
  default is the NAVIX env's ``max_steps`` (``navix.make``'s default is **100**, not MiniGrid's
  ``4 * height * width``; pass ``max_steps=...`` to change NAVIX's), so with the default params ``truncated
  == (step_type == TRUNCATION)`` exactly; other params values move the limit under ``vmap``.
* **State.** :class:`NavixState` holds NAVIX's whole ``Timestep`` (its ``state``, ``t``, ``step_type``,
  ``info["return"]``, ...) and ``time``, equal to ``timestep.t`` (steps since the reset).
* **Observations.** The default of every built-in NAVIX env is ``observations.symbolic``: the fully
  observed grid as ``uint8[H, W, 3]`` (object tag, colour, state/direction, MiniGrid's encoding). Choose
  another with ``observation_fn=navix.observations.<fn>``: ``symbolic_first_person`` (``uint8[7, 7, 3]``),
  ``rgb`` (``uint8[H*8, W*8, 3]``), ``rgb_first_person`` (``uint8[56, 56, 3]``), ``categorical``
  (``int32[H, W]``), ``categorical_first_person`` (``int32[7, 7]``). NAVIX declares them as its (non-scalar)
  ``Discrete``; we declare a :class:`~jaxrl_self.core.spaces.Box` with NAVIX's shape and dtype (they match what
  it emits) but *correct bounds*: NAVIX declares ``symbolic`` and ``categorical*`` as ``0..8`` while they hold
  the player tag 10 (and ``categorical*`` also -1 for walls and 100 for cells outside the grid in first
  person), so the uint8 observations are declared ``[0, 255]`` and the ``categorical*`` ones ``[-1, 100]``.
  An ``observation_fn`` of your own keeps NAVIX's declared space (pass ``observation_space=`` to navix.make to
  set it); ``observations.none`` is unsupported (it declares shape ``()`` and emits shape ``(0,)``).
  ``jaxrl_self.algos.ppo`` with the MLP flattens the raw integer values to float32 (no one-hot, no scaling).
* **Actions.** ``Discrete(7)`` int32 for the default (MiniGrid) action set: 0 rotate counter-clockwise,
  1 rotate clockwise, 2 forward, 3 pick up, 4 drop, 5 toggle, 6 done; ``n`` is NAVIX's ``action_space.n``.
* **Rewards** are NAVIX's ``reward_fn`` as float32. The Empty envs use ``rewards.on_goal_reached``: 1.0 on the
  step that reaches the goal (which also terminates), else 0.0 -- *no* MiniGrid-style ``1 - 0.9 t / T``
  decay, so a successful episode returns exactly 1 however long it took (``penality_coeff``, default 0,
  would subtract ``coeff * t / max_steps`` on termination). ``info`` is empty (NAVIX's running
  ``info["return"]`` stays inside the state).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core import spaces as ours
from jaxrl_self.core.environment import Environment, EnvParams, EnvState

__all__ = ["NavixAdapter", "NavixParams", "NavixState", "make_navix"]


def _navix():
    try:
        import navix  # absolute import: the NAVIX library, not this module
    except ImportError as e:  # pragma: no cover - depends on the user's install
        raise ImportError("navix environments need navix: pip install 'jaxrl-self[navix]'") from e
    return navix


@struct.dataclass
class NavixParams(EnvParams):
    """Our time limit (``max_steps_in_episode``, default: the NAVIX env's ``max_steps``); NAVIX has no params."""


@struct.dataclass
class NavixState(EnvState):
    """``time``: steps in the episode (= ``timestep.t``); ``timestep``: NAVIX's ``Timestep``."""

    timestep: Any


# observation functions whose declared NAVIX bounds are wrong -> the bounds we declare (see the docstring)
_UINT8_FNS = ("symbolic", "symbolic_first_person", "rgb", "rgb_first_person")
_CATEGORICAL_FNS = ("categorical", "categorical_first_person")


def _bounds_override(observation_fn) -> tuple[int, int] | None:
    obs_mod = _navix().observations
    for fn_name in _UINT8_FNS:
        if observation_fn is getattr(obs_mod, fn_name, None):
            return 0, 255
    for fn_name in _CATEGORICAL_FNS:
        if observation_fn is getattr(obs_mod, fn_name, None):
            return -1, 100
    return None


def _convert_space(space: Any, bounds: tuple[int, int] | None = None) -> ours.Space:
    """A NAVIX space as ours: a scalar ``Discrete`` -> Discrete(n); anything else -> Box(shape, dtype)."""
    kind = type(space).__name__
    shape = tuple(int(s) for s in space.shape)
    if kind == "Discrete" and shape == ():
        return ours.Discrete(int(space.n), dtype=jnp.int32)
    if bounds is None:
        bounds = (jax.device_get(space.minimum), jax.device_get(space.maximum))
    return ours.Box(bounds[0], bounds[1], shape, jnp.dtype(space.dtype))


class NavixAdapter(Environment):
    """A NAVIX environment under our contract. See the module docstring for every mapping.

    ``keep_declared_bounds=True`` declares NAVIX's own observation bounds instead of the corrected ones.
    """

    deterministic_step = True  # step_env ignores its key: NAVIX's randomness lives in timestep.state.key

    def __init__(self, env: Any, name: str | None = None, keep_declared_bounds: bool = False):
        if not callable(getattr(env, "_step", None)) or not callable(getattr(env, "reset", None)):
            raise TypeError(f"{type(env).__name__} lacks navix.Environment's reset/_step (navix API changed?)")
        self._env = env
        self._name = name or type(env).__name__
        step_type = _navix().environments.environment.StepType
        self._termination = int(step_type.TERMINATION)
        bounds = None if keep_declared_bounds else _bounds_override(env.observation_fn)
        self._obs_space = _convert_space(env.observation_space, bounds)
        self._act_space = _convert_space(env.action_space)

    @property
    def navix_env(self) -> Any:
        """The wrapped ``navix.Environment``."""
        return self._env

    @property
    def default_params(self) -> NavixParams:
        return NavixParams(max_steps_in_episode=int(self._env.max_steps))

    def observation_space(self, params=None) -> ours.Space:
        return self._obs_space

    def action_space(self, params=None) -> ours.Space:
        return self._act_space

    @property
    def name(self) -> str:
        return f"navix:{self._name}"

    def __repr__(self) -> str:
        return f"NavixAdapter({self._name!r})"

    def _obs(self, timestep) -> jax.Array:
        return jnp.asarray(timestep.observation, self._obs_space.dtype)

    def reset_env(self, key, params):
        timestep = self._env.reset(key)
        return self._obs(timestep), NavixState(time=jnp.asarray(timestep.t, jnp.int32), timestep=timestep)

    def step_env(self, key, state, action, params):
        del key  # see deterministic_step
        timestep = self._env._step(state.timestep, jnp.asarray(action, jnp.int32))  # no NAVIX auto-reset
        time = state.time + 1
        terminated = timestep.step_type == self._termination
        truncated = jnp.logical_and(~terminated, time >= params.max_steps_in_episode)
        new_state = NavixState(time=time, timestep=timestep)
        return self._obs(timestep), new_state, jnp.asarray(timestep.reward, jnp.float32), terminated, truncated, {}


def make_navix(name: str, **kwargs: Any) -> NavixAdapter:
    """``NavixAdapter(navix.make(name, **kwargs))``; ``envs.make("navix:NAME", **kwargs)`` calls this."""
    env = _navix().make(name, **kwargs)
    # an explicit observation_space is the user's declaration: keep its bounds
    return NavixAdapter(env, name, keep_declared_bounds="observation_space" in kwargs)
