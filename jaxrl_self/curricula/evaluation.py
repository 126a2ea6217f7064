"""Held-out evaluation inside the training program: solved rate and return per held-out maze.

Every curriculum (DR, PLR, robust PLR, ACCEL, their parallel variants, PAIRED) reports how its student does on
levels it never trains on. The pieces, all pure and jit/vmap-able:

* :class:`HeldOutSet` (:func:`heldout_set`): a *fixed* stack of levels and the groups they are reported under:
  the eight named mazes of the UED literature (SixteenRooms, SixteenRooms2, Labyrinth, LabyrinthFlipped,
  Labyrinth2, StandardMaze, StandardMaze2, StandardMaze3), one group each, plus ``num_procedural`` levels
  each of the procedural families ``PerfectMaze`` (recursive backtracker) and ``FourRooms``, drawn once from
  ``jax.random.key(seed)`` and reported as one group per family.
* :func:`make_heldout_eval` -> ``evaluate(params, key) -> EvalResult``: ``num_attempts`` independent episodes
  on every level (``L x K`` environments side by side, level-major: environment ``i`` plays level
  ``i // K``), each the *first* episode of a ``max_steps``-step rollout of the current policy from a zero
  recurrent state; ``EvalResult.returns[l, k]`` is the undiscounted return of attempt ``k`` on level ``l``.
* :func:`summarize` -> :class:`EvalMetrics`: per group, the **solved rate** (fraction of attempts with return
  > 0; the maze pays only at the goal) and the **mean return**, plus their means over the named mazes and over
  all groups.
* :func:`periodic_eval`: the evaluation under a ``lax.cond`` that fires after every ``eval_every``-th update and
  after the last one; other updates return zeros with ``valid=False``. Put the result in the metrics row as
  ``eval`` with the flag ``eval_valid``: the run's metric files then leave every ``eval.*`` value of a
  non-evaluation row empty, and means over seeds skip them (see :mod:`jaxrl_self.run.metrics`).

The episode time limit of evaluation is ``max_steps`` (``env_params.max_steps_in_episode`` is replaced by it,
which also sets ``T`` in the maze's reward ``1 - 0.9 t / T``). jaxued evaluates at the training limit, 250 steps;
that is our default too.

Under the runner's seed vmap the ``lax.cond`` predicate is made unbatched with
:func:`jaxrl_self.core.uniform_over_seeds`, so the evaluation is computed only at evaluation updates.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.algorithm import uniform_over_seeds
from jaxrl_self.core.environment import LevelEnv
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.envs.wrappers import ReplayLevel
from jaxrl_self.rl.rollout import RolloutState

__all__ = [
    "PROCEDURAL_FAMILIES",
    "HeldOutSet",
    "heldout_set",
    "env_heldout_set",
    "EvalResult",
    "EvalMetrics",
    "play_levels",
    "make_heldout_eval",
    "summarize",
    "empty_metrics",
    "periodic_eval",
    "eval_due",
]

#: The procedural families of the held-out set, in report order.
PROCEDURAL_FAMILIES = ("PerfectMaze", "FourRooms")


# ============================================================================================ the held-out set
@dataclasses.dataclass(frozen=True)
class HeldOutSet:
    """A fixed batch of evaluation levels and the groups results are reported under.

    Attributes:
        levels: the env's ``Level`` pytree with a leading ``L`` axis.
        level_names: ``L`` names, e.g. ``"Labyrinth"`` or ``"PerfectMaze/3"``.
        groups: the report groups, in order (each named maze, then ``"PerfectMaze"``, ``"FourRooms"``).
        level_group: ``L`` indices into ``groups``.
        named_groups: how many leading groups are named mazes (their mean is ``solved_rate_named``).
    """

    levels: Any
    level_names: tuple[str, ...]
    groups: tuple[str, ...]
    level_group: tuple[int, ...]
    named_groups: int

    @property
    def num_levels(self) -> int:
        return len(self.level_names)

    def group_matrix(self) -> np.ndarray:
        """``float32[G, L]``: row ``g`` averages the levels of group ``g``."""
        m = np.zeros((len(self.groups), self.num_levels), np.float32)
        for i, g in enumerate(self.level_group):
            m[g, i] = 1.0
        return m / m.sum(axis=1, keepdims=True)


def heldout_set(env: Any = None, num_procedural: int = 4, seed: int = 0,
                named: tuple[str, ...] | None = None) -> HeldOutSet:
    """The maze held-out set: the named mazes (all eight by default, or ``named``) and ``num_procedural``
    PerfectMaze and FourRooms levels each, drawn from ``jax.random.key(seed)`` (the same levels in every run).

    ``env`` (optional) is checked to be a 13 x 13 maze, the size of the named mazes. An environment that ships
    its own held-out levels (:meth:`~jaxrl_self.core.LevelEnv.heldout_levels`, e.g. ``kinetix:``) gets those
    instead (:func:`env_heldout_set`; ``num_procedural`` and ``seed`` apply to the maze only).
    """
    from jaxrl_self.envs.maze import NAMED_LEVEL_NAMES, named_levels

    if not isinstance(num_procedural, (int, np.integer)) or num_procedural < 0:
        raise ConfigError("eval_procedural", num_procedural, "an int >= 0", "heldout_set")
    if env is not None:
        base = getattr(env, "unwrapped", env)
        own = base.heldout_levels() if isinstance(base, LevelEnv) else None
        if own is not None:
            return env_heldout_set(own, named)
        if (getattr(base, "height", None), getattr(base, "width", None)) != (13, 13):
            raise ConfigError("env", repr(env), "a 13x13 maze (the held-out named mazes are 13x13)", "heldout_set")
    names = tuple(NAMED_LEVEL_NAMES if named is None else named)
    unknown = [n for n in names if n not in named_levels()]
    if unknown:
        raise ConfigError("named", unknown, f"names from {NAMED_LEVEL_NAMES}", "heldout_set")
    return _build_heldout_set(int(num_procedural), int(seed), names)


def env_heldout_set(table: dict[str, Any], named: tuple[str, ...] | None = None) -> HeldOutSet:
    """The held-out set of an environment that ships its own named levels (:meth:`LevelEnv.heldout_levels`, e.g.
    Kinetix's evaluation levels): one group per level, all of them named (``named``: a subset, in that order);
    no procedural families."""
    names = tuple(table) if named is None else tuple(named)
    unknown = [n for n in names if n not in table]
    if unknown or not names:
        raise ConfigError("named", unknown or names, f"names from {tuple(table)}", "heldout_set")
    with jax.ensure_compile_time_eval():  # arrays, never tracers, even when make_train runs inside a trace
        levels = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *[table[n] for n in names])
    return HeldOutSet(levels=levels, level_names=names, groups=names, level_group=tuple(range(len(names))),
                      named_groups=len(names))


def _build_heldout_set(num_procedural: int, seed: int, names: tuple[str, ...]) -> HeldOutSet:
    from jaxrl_self.envs.maze import named_levels, stack_levels

    table = named_levels()
    levels = [table[n] for n in names]
    level_names = list(names)
    level_group = list(range(len(names)))
    groups = list(names)
    for family, batch in zip(PROCEDURAL_FAMILIES, _procedural_levels(num_procedural, seed)):
        for i in range(num_procedural):
            levels.append(jax.tree.map(lambda x, i=i: x[i], batch))
            level_names.append(f"{family}/{i}")
            level_group.append(len(groups))
        groups.append(family)
    return HeldOutSet(levels=stack_levels(levels), level_names=tuple(level_names), groups=tuple(groups),
                      level_group=tuple(level_group), named_groups=len(names))


@functools.lru_cache(maxsize=16)
def _procedural_levels(num_procedural: int, seed: int) -> tuple[Any, ...]:
    """``num_procedural`` PerfectMaze and FourRooms levels (one Level batch per family of
    :data:`PROCEDURAL_FAMILIES`; none when 0), drawn once per ``(num_procedural, seed)``: every curriculum's
    ``make_train`` asks for them and drawing them takes about a second on a CPU. Computed eagerly even when
    ``make_train`` runs inside a trace (a vmapped sweep), so the cache holds arrays, never tracers."""
    from jaxrl_self.envs.maze import four_rooms, perfect_maze

    if not num_procedural:
        return ()
    with jax.ensure_compile_time_eval():
        k_perfect, k_rooms = jax.random.split(jax.random.key(seed))
        return tuple(jax.vmap(gen)(jax.random.split(key, num_procedural))
                     for gen, key in ((perfect_maze, k_perfect), (four_rooms, k_rooms)))


# ============================================================================================ evaluating
@struct.dataclass
class EvalResult:
    """Raw held-out results, ``[L, K]`` (levels x attempts).

    Attributes:
        returns: ``float32``, undiscounted return of the first episode (0 if it did not finish).
        lengths: ``int32``, its length (``max_steps`` if it did not finish).
        solved: ``bool``, ``returns > 0``.
    """

    returns: jax.Array
    lengths: jax.Array
    solved: jax.Array


@struct.dataclass
class EvalMetrics:
    """Held-out results per report group (scalars per seed in a metrics row).

    Attributes:
        solved_rate: group name -> fraction of attempts with return > 0 (float32).
        mean_return: group name -> mean undiscounted return over the group's levels and attempts.
        solved_rate_named: mean solved rate over the named mazes (each maze weighted equally).
        mean_return_named: mean return over the named mazes.
        solved_rate_all: mean solved rate over all groups (each group weighted equally).
        mean_length: mean episode length over all levels and attempts.
    """

    solved_rate: dict[str, jax.Array]
    mean_return: dict[str, jax.Array]
    solved_rate_named: jax.Array
    mean_return_named: jax.Array
    solved_rate_all: jax.Array
    mean_length: jax.Array


def play_levels(network: nn.Module, env: LevelEnv, params: Any, key: jax.Array, levels: Any, *,
                num_attempts: int, max_steps: int, env_params: Any = None, greedy: bool = False) -> EvalResult:
    """``EvalResult [L, num_attempts]`` of a policy ``network`` (a :mod:`jaxrl_self.algos.ppo` network) with
    ``params`` on ``levels`` (a Level pytree ``[L, ...]``, traced or not).

    ``L * num_attempts`` environments (level-major: environment ``i`` plays level ``i // num_attempts``) start on
    their level with a zero recurrent state and act for ``max_steps`` steps (actions sampled from the policy, or
    its most likely action with ``greedy``); only each environment's first episode counts.
    """
    from jaxrl_self.algos import ppo

    params0 = env.default_params if env_params is None else env_params
    eval_params = env.heldout_params(params0.replace(max_steps_in_episode=int(max_steps)))
    num_levels, k = jax.tree.leaves(levels)[0].shape[0], int(num_attempts)
    n = num_levels * k
    levels = jax.tree.map(lambda x: jnp.repeat(jnp.asarray(x), k, axis=0), levels)
    k_reset, k_run = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset_to_level, (0, 0, None))(jax.random.split(k_reset, n), levels, eval_params)
    start = RolloutState(env_state=env_state, obs=obs, first=jnp.ones((n,), jnp.bool_),
                         carry=ppo.initial_carry(network, n))
    _, traj = ppo.collect(k_run, network, params, ReplayLevel(env), eval_params, start, int(max_steps), greedy=greedy)
    done = traj.done  # [T, n]
    before_first_end = jnp.cumsum(done, axis=0) - done == 0  # steps up to and including the first end
    returns = jnp.sum(jnp.where(before_first_end, traj.reward, 0.0), axis=0)
    finished = jnp.any(done, axis=0)
    lengths = jnp.where(finished, jnp.argmax(done, axis=0) + 1, max_steps).astype(jnp.int32)
    returns = returns.reshape(num_levels, k)
    return EvalResult(returns=returns, lengths=lengths.reshape(num_levels, k), solved=returns > 0)


def make_heldout_eval(
    network: nn.Module,
    env: LevelEnv,
    heldout: HeldOutSet,
    *,
    num_attempts: int = 10,
    max_steps: int = 250,
    env_params: Any = None,
    greedy: bool = False,
) -> Callable[[Any, jax.Array], EvalResult]:
    """``evaluate(params, key) -> EvalResult`` for a policy ``network`` (a :mod:`jaxrl_self.algos.ppo` network:
    the recurrent maze agent or a feed-forward one) on ``heldout``: :func:`play_levels` on its levels."""
    if not isinstance(env, LevelEnv):
        raise TypeError(f"held-out evaluation needs a LevelEnv (reset_to_level), got {type(env).__name__}")
    for name, v in (("num_attempts", num_attempts), ("max_steps", max_steps)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(name, v, "an int >= 1", "make_heldout_eval")

    def evaluate(params: Any, key: jax.Array) -> EvalResult:
        return play_levels(network, env, params, key, heldout.levels, num_attempts=num_attempts,
                           max_steps=max_steps, env_params=env_params, greedy=greedy)

    return evaluate


def summarize(heldout: HeldOutSet, result: EvalResult) -> EvalMetrics:
    """Group the per-level results of :func:`make_heldout_eval` (see :class:`EvalMetrics`)."""
    m = jnp.asarray(heldout.group_matrix())  # [G, L]
    solved = m @ result.solved.astype(jnp.float32).mean(axis=1)  # [G]
    ret = m @ result.returns.mean(axis=1)
    ng = heldout.named_groups
    return EvalMetrics(
        solved_rate={g: solved[i] for i, g in enumerate(heldout.groups)},
        mean_return={g: ret[i] for i, g in enumerate(heldout.groups)},
        solved_rate_named=solved[:ng].mean() if ng else jnp.float32(0.0),
        mean_return_named=ret[:ng].mean() if ng else jnp.float32(0.0),
        solved_rate_all=solved.mean(),
        mean_length=result.lengths.astype(jnp.float32).mean(),
    )


def empty_metrics(heldout: HeldOutSet) -> EvalMetrics:
    """All-zero :class:`EvalMetrics` (the placeholder of a non-evaluation update; pair it with valid=False)."""
    zero = jnp.zeros((), jnp.float32)
    return EvalMetrics(solved_rate={g: zero for g in heldout.groups}, mean_return={g: zero for g in heldout.groups},
                       solved_rate_named=zero, mean_return_named=zero, solved_rate_all=zero, mean_length=zero)


def eval_due(update_step: jax.Array, eval_every: int, num_updates: int) -> jax.Array:
    """``bool``: evaluate after update ``update_step`` (0-based): after every ``eval_every``-th update and after
    the last one (``eval_every == 0``: only after the last one; ``eval_every < 0``: never)."""
    done = jnp.asarray(update_step, jnp.int32) + 1
    last = done == num_updates
    if eval_every < 0:
        return jnp.zeros_like(last)
    if eval_every == 0:
        return last
    return (done % eval_every == 0) | last


def periodic_eval(
    evaluate: Callable[[Any, jax.Array], EvalResult],
    heldout: HeldOutSet,
    params: Any,
    key: jax.Array,
    update_step: jax.Array,
    *,
    eval_every: int,
    num_updates: int,
) -> tuple[EvalMetrics, jax.Array]:
    """``(EvalMetrics, valid)``: the held-out evaluation of ``params`` when :func:`eval_due`, else zeros with
    ``valid=False``. One ``lax.cond``; under the runner's seed vmap its predicate is unbatched (the update counter
    is the same for every seed), so the evaluation is only computed when due. ``eval_every < 0``: never, and the
    evaluation is not even part of the program."""
    if eval_every < 0:
        return empty_metrics(heldout), jnp.zeros_like(jnp.asarray(update_step) >= 0)
    due = uniform_over_seeds(eval_due(update_step, eval_every, num_updates))
    metrics = jax.lax.cond(due, lambda: summarize(heldout, evaluate(params, key)), lambda: empty_metrics(heldout))
    return metrics, due
