"""Brax continuous-control environments behind the ``brax:`` prefix.

    import jax
    from jaxrl_self import envs
    env = envs.make("brax:inverted_pendulum")                # = make_brax("inverted_pendulum")
    obs, state = env.reset(jax.random.key(0))                # obs: float32[4]
    action = env.action_space().sample(jax.random.key(1))    # float32[1] in [-1, 1]
    obs, state, reward, terminated, truncated, info = env.step(jax.random.key(2), state, action)

    hopper = envs.make("brax:hopper", backend="generalized", episode_length=500, terminate_when_unhealthy=False)

``make_brax(name, backend="auto", episode_length=1000, **env_kwargs)`` is :class:`BraxAdapter` over the *raw*
``brax.envs.get_environment(name, backend=..., **env_kwargs)``, not over ``brax.envs.create`` (which adds
brax's ``EpisodeWrapper``/``AutoResetWrapper`` training wrappers): the time limit and the auto-reset are ours.
Every other keyword goes to the brax env's constructor (``terminate_when_unhealthy``, ``reset_noise_scale``,
``n_frames``, ...). ``brax`` is imported when an environment is made, not when this module is.

How Brax maps onto our contract (brax 0.14.2, checked against ``brax/envs/base.py`` and the env files):

* **State.** :class:`BraxState` holds brax's whole ``brax.envs.State`` (``pipeline_state``, ``obs``,
  ``reward``, ``done``, ``metrics``, ``info``) and ``time``, the number of steps since the reset. Brax's
  ``reward`` and ``done`` are stored as float32 arrays: some envs put a Python float there on ``step``
  (``inverted_pendulum``'s ``reward = 1.0``), which would otherwise change the state's leaf types between
  ``reset`` and ``step``.
* **Reset.** ``reset_env(key)`` is ``brax_env.reset(key)`` (brax's reset takes one key; typed
  ``jax.random.key`` keys and raw ``PRNGKey`` ones both work).
* **terminated / truncated.** ``terminated = brax done`` (a float 0/1 in brax, converted to bool): brax's own
  termination, e.g. a hopper that fell or a pendulum past 0.2 rad; an env built with
  ``terminate_when_unhealthy=False`` never terminates. ``truncated = ~terminated & (time >=
  params.max_steps_in_episode)``; the limit is our ``EnvParams.max_steps_in_episode``, default
  ``episode_length`` (1000, brax's and MuJoCo's usual limit), traced, so it can vary under ``vmap``. A
  termination on the last allowed step is reported as terminated, not truncated.
* **Auto-reset and final_obs.** ``step_env`` calls brax's ``env.step(state, action)`` and never resets;
  our base-class ``step`` auto-resets in the same step with a *fresh* ``brax_env.reset`` from the step key
  and puts the last observation in ``info["final_obs"]`` (for bootstrapping truncated episodes). This differs
  from brax's ``AutoResetWrapper``, which restores the batch's *first* initial state (one initial state per
  env for the whole run); ours draws a new initial state every episode, as gymnasium and gymnax do. Brax's
  ``info["truncation"]``/``info["steps"]`` (``EpisodeWrapper``'s) do not exist here: the raw env has none.
* **Keys.** Brax's ``step`` takes no key (the physics is deterministic given the state and action), so
  ``step_env`` ignores its key (``deterministic_step = True``) and the whole step key goes to the auto-reset.
* **info.** ``info["brax_metrics"]`` is brax's ``state.metrics`` after the step (a dict of float scalars: the
  reward terms ``reward_forward``, ``reward_ctrl``, ``reward_healthy``, positions, velocities, ... for the
  locomotion envs; empty ``{}`` for ``inverted_pendulum``). Brax's ``state.info`` (env-internal bookkeeping,
  e.g. ``inverted_pendulum``'s ``time_out``, which is just ``done`` again) is not passed through; it stays in
  ``state.brax_state.info``.
* **Spaces.** Observations: ``Box(-inf, inf, (observation_size,), float32)``, the shape found by
  ``jax.eval_shape`` of the reset (tracing, no run); an env with dict observations (brax's ``fast`` test env
  with ``obs_mode``) gets a :class:`~jaxrl_self.core.spaces.Dict` of such boxes. Actions: ``Box(-1, 1,
  (action_size,), float32)``: every brax env rescales ``[-1, 1]`` to its actuators' ``ctrl_range``. The adapter
  does not clip actions (brax does not either, before its rescaling); ``jaxrl_self.algos.ppo`` clips its
  Gaussian samples to the box with ``ClipAction``.
* **Rewards** are brax's ``state.reward`` as float32; observations are brax's ``state.obs`` as float32.
* **Eager calls.** Called outside any transformation (concrete arrays, no tracers), ``reset_env``/``step_env``
  run brax's ``reset``/``step`` through one ``jax.jit`` each, compiled on the first call: op by op, brax's step
  would re-trace its ``n_frames`` scan on every call (seconds per step). Under ``jit``/``vmap``/``scan`` they
  call brax directly, so a jitted rollout of the adapter computes exactly what a jitted rollout of the brax env
  does (bit for bit, tested). A nested ``jax.jit`` would not: its call boundary changes XLA's fusion and the
  float32 results drift by round-off (about 1e-4 relative after a few dozen steps), which is why the jit is
  used only for eager calls; eager results can differ from jitted ones by that round-off too.
* **Backend.** ``backend="auto"`` picks ``"spring"``, brax's cheapest pipeline (impulse-based; brax describes
  it as the fast, less accurate choice for quick experiments, ``"generalized"`` as the accurate one), because
  on a CPU, where these envs are usually compiled and run in tests and small experiments, it does the least
  work per step; ``swimmer`` accepts only ``"generalized"`` and gets that. The envs tune their timestep
  and ``n_frames`` per backend (``inverted_pendulum``: spring/positional 0.005 s x 4 frames, generalized
  0.01 s x 2 frames), so the dynamics and scores differ between backends; pass ``backend="generalized"`` for
  brax's most accurate physics (and its own default), or ``"positional"``. ``"mjx"`` needs MuJoCo's ``mjx``
  and is untested here.
* **float64.** Brax computes in float32 with JAX's default ``jax_enable_x64=False``; the adapter casts the
  returned observation and reward to float32 at the boundary (a no-op then). Under ``jax_enable_x64=True``
  brax may mix float32 and float64 inside its state; that configuration is untested.
* Importing brax prints "Failed to import warp" lines (brax probes for the optional ``warp`` package) and
  ``brax.io.mjcf`` warns that brax is no longer actively maintained (MJX / MuJoCo Playground are its
  successors); both are harmless.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core import spaces as ours
from jaxrl_self.core.environment import Environment, EnvParams, EnvState
from jaxrl_self.envs.registry import UnknownEnvironmentError

__all__ = ["BraxAdapter", "BraxParams", "BraxState", "make_brax", "default_backend"]

# envs whose constructor accepts only the generalized pipeline (brax/envs/swimmer.py raises otherwise)
_GENERALIZED_ONLY = frozenset({"swimmer"})


def _brax_envs():
    try:
        from brax import envs as brax_envs  # absolute import: the Brax library, not this module
    except ImportError as e:  # pragma: no cover - depends on the user's install
        raise ImportError("brax environments need brax: pip install 'jaxrl-self[brax]'") from e
    return brax_envs


@struct.dataclass
class BraxParams(EnvParams):
    """Our time limit (``max_steps_in_episode``, default ``make_brax``'s ``episode_length``); brax has no params."""


@struct.dataclass
class BraxState(EnvState):
    """``time``: steps in the episode; ``brax_state``: brax's ``brax.envs.State`` (reward/done as float32)."""

    brax_state: Any


def default_backend(name: str) -> str:
    """The pipeline ``backend="auto"`` picks for the brax env ``name``: "spring", or "generalized" where that is
    the only one the env accepts."""
    return "generalized" if name in _GENERALIZED_ONLY else "spring"


def _traced(tree: Any) -> bool:
    """Whether any leaf of ``tree`` is being traced (we are inside a jit, vmap, scan, grad...)."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def _space_of(shape_tree: Any) -> ours.Space:
    if isinstance(shape_tree, dict):
        return ours.Dict({k: _space_of(v) for k, v in shape_tree.items()})
    return ours.Box(-jnp.inf, jnp.inf, tuple(shape_tree.shape), jnp.float32)


class BraxAdapter(Environment):
    """A raw brax env (``brax.envs.Env``) under our contract. See the module docstring for every mapping."""

    deterministic_step = True  # brax's step takes no key

    def __init__(self, env: Any, name: str | None = None, episode_length: int = 1000):
        if not callable(getattr(env, "reset", None)) or not callable(getattr(env, "step", None)):
            raise TypeError(f"{type(env).__name__} lacks brax.envs.Env's reset/step")
        if int(episode_length) < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        self._env = env
        self._name = name or type(env).__name__
        self._episode_length = int(episode_length)
        # shapes from tracing brax's reset (brax's own observation_size runs it eagerly, op by op)
        obs_shapes = jax.eval_shape(lambda k: env.reset(k).obs, jax.random.key(0))
        self._obs_space = _space_of(obs_shapes)
        self._act_space = ours.Box(-1.0, 1.0, (int(env.action_size),), jnp.float32)
        # brax's reset/step as one program each, for eager calls only (see "Eager calls" in the module docstring)
        self._reset_fn = lambda key: self._normalize(env.reset(key))
        self._step_fn = lambda bs, action: self._normalize(env.step(bs, action))
        self._reset_jit = jax.jit(self._reset_fn)
        self._step_jit = jax.jit(self._step_fn)

    @property
    def brax_env(self) -> Any:
        """The wrapped raw brax env."""
        return self._env

    @property
    def backend(self) -> str | None:
        return getattr(self._env, "backend", None)

    @property
    def default_params(self) -> BraxParams:
        return BraxParams(max_steps_in_episode=self._episode_length)

    def observation_space(self, params=None) -> ours.Space:
        return self._obs_space

    def action_space(self, params=None) -> ours.Space:
        return self._act_space

    @property
    def name(self) -> str:
        return f"brax:{self._name}"

    def __repr__(self) -> str:
        return f"BraxAdapter({self._name!r}, backend={self.backend!r}, episode_length={self._episode_length})"

    @staticmethod
    def _normalize(brax_state):
        """reward/done as float32 arrays, so reset's and step's states have the same leaf types."""
        return brax_state.replace(reward=jnp.asarray(brax_state.reward, jnp.float32),
                                  done=jnp.asarray(brax_state.done, jnp.float32))

    @staticmethod
    def _obs(brax_state):
        return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), brax_state.obs)

    def reset_env(self, key, params):
        bs = (self._reset_fn if _traced(key) else self._reset_jit)(key)
        return self._obs(bs), BraxState(time=jnp.zeros((), jnp.int32), brax_state=bs)

    def step_env(self, key, state, action, params):
        del key  # see deterministic_step
        action = jnp.asarray(action, jnp.float32)
        step = self._step_fn if _traced((state.brax_state, action)) else self._step_jit
        bs = step(state.brax_state, action)
        time = state.time + 1
        terminated = jnp.asarray(bs.done, jnp.bool_)  # brax: 0.0 or 1.0
        truncated = jnp.logical_and(~terminated, time >= params.max_steps_in_episode)
        info = {"brax_metrics": dict(bs.metrics)}
        return self._obs(bs), BraxState(time=time, brax_state=bs), bs.reward, terminated, truncated, info


def make_brax(name: str, *, backend: str | None = "auto", episode_length: int = 1000,
              **env_kwargs: Any) -> BraxAdapter:
    """``BraxAdapter(brax.envs.get_environment(name, backend=..., **env_kwargs))``; ``envs.make("brax:NAME",
    **kwargs)`` calls this. ``backend="auto"``: :func:`default_backend`; ``None``: the env's own default
    (no ``backend`` argument)."""
    brax_envs = _brax_envs()
    if backend == "auto":
        backend = default_backend(name)
    if backend is not None:
        env_kwargs["backend"] = backend
    try:
        env = brax_envs.get_environment(name, **env_kwargs)
    except KeyError:
        known = ", ".join(sorted(getattr(brax_envs, "_envs", {})))
        raise UnknownEnvironmentError(f"unknown brax environment {name!r}; brax has: {known}") from None
    return BraxAdapter(env, name, episode_length)
