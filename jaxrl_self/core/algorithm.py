"""The algorithm contract shared by every ``make_train``.

``make_train(config, env, ...)`` returns a :class:`Train`: a pure, jittable callable
``train(key) -> (run_state, metrics)`` whose whole run is one XLA program. It also exposes the two pieces the
runner needs to cut a run into chunks of *the same* compiled program::

    train = ppo.make_train(ppo.Config(...), env)
    state, metrics = jax.jit(train)(key)                      # one program
    state = train.init(key)                                  # or: chunked, e.g. with checkpoints between
    chunk = jax.jit(functools.partial(train.run, num_updates=10))
    state, m1 = chunk(state); state, m2 = chunk(state)        # no recompilation

* ``init(key) -> RunState``: everything a run needs to continue (params, optimiser state, RNG, env state,
  curriculum buffer, counters) as one pytree.
* ``update(run_state) -> (run_state, metrics_row)``: one update (collect + learn); ``metrics_row`` is a pytree
  of scalars (per seed), one row of the run's metrics table.
* ``num_updates``: how many updates the configured run has.

Configs are frozen ``flax.struct`` dataclasses: fields that fix shapes or Python control flow are static
(``pytree_node=False``), numeric ones are traced leaves, so ``jax.vmap`` over a stacked batch of configs (with
``make_train`` called *inside* the vmapped function) is a hyper-parameter sweep in one program.

An algorithm module also says what it trains on: ``ENV_KINDS``, a tuple of kinds of :data:`ENVIRONMENT_KINDS`
(``("env",)`` for PPO, ``("level",)`` for a curriculum, ``("task",)`` for a language-model method) or of registered
environment names (RLT: ``("addition",)``). ``jaxrl-self list`` shows each algorithm with the registered
environments that fit (:func:`env_kinds`); the config's ``validate(env)`` refuses the others with a
``ConfigError`` on ``env`` (a test holds the two to agreement).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, TypeVar

import jax
import jax.numpy as jnp
import tyro

__all__ = ["Train", "scan_updates", "SEED_AXIS", "uniform_over_seeds", "static_field", "FLAT_FLAGS",
           "ENVIRONMENT_KINDS", "env_kinds"]

#: Name of the vmapped axis over seeds under which the runner calls ``Train.update``
#: (``jax.vmap(train.update, axis_name=SEED_AXIS)``).
SEED_AXIS = "seed"

#: Marks a nested config whose command-line flags carry no prefix: a field annotated
#: ``Annotated[ppo.Config, FLAT_FLAGS]`` gives ``--learning-rate``, not ``--ppo.learning-rate`` (``jaxrl-self``
#: keeps a nested config's prefix otherwise, e.g. ``--adversary.learning-rate``). Only the command line reads it.
FLAT_FLAGS = tyro.conf.arg(name="")


#: The kinds of environment an algorithm module's ``ENV_KINDS`` can name, with what each means.
ENVIRONMENT_KINDS: dict[str, str] = {
    "env": "any environment with observations and actions, not token tasks",
    "level": "any level environment, a LevelEnv whose levels a curriculum chooses",
    "task": "any token task, a SequenceTask",
}


def env_kinds(env: Any) -> frozenset[str]:
    """The :data:`ENVIRONMENT_KINDS` ``env`` is: a token task is ``task``; anything else with an action space is
    ``env``, and also ``level`` if it is a :class:`~jaxrl_self.core.LevelEnv`."""
    from jaxrl_self.core.environment import LevelEnv
    from jaxrl_self.core.sequence import SequenceTask

    if isinstance(env, SequenceTask):
        return frozenset({"task"})
    kinds = {"env"} if hasattr(env, "action_space") else set()
    if isinstance(env, LevelEnv):
        kinds.add("level")
    return frozenset(kinds)


def static_field(default: Any) -> Any:
    """A config field that is *static* (``pytree_node=False``): it fixes shapes or Python control flow, so it
    is part of the compiled program rather than a traced leaf, and configs that differ in it cannot be vmapped
    together. Numeric hyper-parameters are ordinary (traced) fields."""
    from flax import struct

    return struct.field(pytree_node=False, default=default)


S = TypeVar("S")


def scan_updates(update: Callable[[S], tuple[S, Any]], state: S, num_updates: int) -> tuple[S, Any]:
    """Run ``update`` ``num_updates`` times under ``lax.scan``; metrics rows are stacked along axis 0."""

    def body(s, _):
        return update(s)

    return jax.lax.scan(body, state, None, length=int(num_updates))


def uniform_over_seeds(pred: jax.Array) -> jax.Array:
    """A boolean that is the same for every seed (e.g. ``update_step % k == 0``, seeds run in lockstep) made
    *unbatched* when the update runs under the runner's seed vmap, so that ``lax.cond(pred, ...)`` executes one
    branch instead of both.

    Under ``jax.vmap`` a ``lax.cond`` whose predicate is batched becomes a ``select`` that computes both branches
    (a periodic evaluation would then run at every update). Inside the runner's vmap (axis :data:`SEED_AXIS`
    bound) this returns ``any`` of ``pred`` over seeds, which is unbatched; elsewhere (plain ``jit``, an unnamed
    ``vmap``) it returns ``pred`` unchanged, which is still correct, only slower under an unnamed vmap.
    """
    try:
        jax.lax.axis_size(SEED_AXIS)
    except NameError:  # not under the runner's seed vmap
        return jnp.asarray(pred, jnp.bool_)
    return jax.lax.pmax(jnp.asarray(pred, jnp.int32), SEED_AXIS) > 0


@dataclasses.dataclass(frozen=True)
class Train(Generic[S]):
    """A training run as pure functions. See the module docstring."""

    init: Callable[[jax.Array], S]
    update: Callable[[S], tuple[S, Any]]
    num_updates: int
    config: Any = None

    def run(self, state: S, num_updates: int | None = None) -> tuple[S, Any]:
        """``num_updates`` updates from ``state`` (default: all of them) as one ``lax.scan``."""
        return scan_updates(self.update, state, self.num_updates if num_updates is None else num_updates)

    def __call__(self, key: jax.Array) -> tuple[S, Any]:
        return self.run(self.init(key))
