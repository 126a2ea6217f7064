"""Where an LM-RL run's problems come from, and what a reward may see of them.

::

    source = lm.problem_source(task, task_params)                       # fresh problems every update
    source = lm.problem_source(task, problems=lm.ProblemSet.of(test))   # a fixed set, cycled in shuffled passes
    state = source.init(key)                   # or source.init(key, data=other_set): the data is run state
    state, batch = source.draw(state, key, 16)  # batch.problems [16], batch.valid [16], batch.stats {...}

**Sources.** A source is a static object (it fixes the program); what changes between updates, and between
the copies of a vmapped run, lives in its state (a pytree inside ``RunState``):

* :class:`TaskSource`: ``num`` independent problems from the task's sampler every update (state ``None``);
  exactly what the LM algorithms did before sources existed (same keys, same problems).
* :class:`SetSource`: a :class:`ProblemSet` (``N`` problems and a validity mask) **held in the run state**, so
  one compiled program trains different copies on different sets (``jax.vmap(train.init)(keys, problems=sets)``)
  and an outer program can inject a freshly generated dataset. It is read in *passes*: every pass visits each
  valid problem exactly once, in a new random order per pass (``shuffle=True``; the order of pass ``p`` is a
  permutation drawn with ``fold_in(set_key, p)``) or in the set's order (``shuffle=False``). A batch may straddle
  two passes; ``stats["problem_pass"]`` is the pass its first problem belongs to (0-based) and ``stats[
  "problems_valid"]`` the number of valid problems. Invalid rows (e.g. malformed generated problems) are never
  drawn; a set with no valid problem yields batches whose ``valid`` is all False, which the learners turn into
  zero-weight rows.

**Prompt side.** :class:`PromptSide` is what a label-free reward receives: the prompt tokens and the
difficulty, structurally without ``answer`` or ``solution`` (reading them fails when the reward is traced).
Answers are read only by rewards that declare it (:func:`jaxrl_self.lm.rewards.labelled_reward`, e.g. the
verifier) and by the ground-truth diagnostics (:mod:`jaxrl_self.lm.diagnostics`).
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import Problem, SequenceTask

__all__ = ["PromptSide", "ProblemSet", "SetState", "Draw", "TaskSource", "SetSource", "problem_source",
           "sample_problems", "cycle_indices"]


@struct.dataclass
class PromptSide:
    """The part of a :class:`~jaxrl_self.core.Problem` a label-free reward may read: no answer, no solution."""

    prompt: jax.Array  # [P] int32 (or [B, P]): BOS <q> question </q>, PAD-padded
    difficulty: jax.Array  # int32: what the question itself shows (digits, chain steps)

    @classmethod
    def of(cls, problem: Problem) -> "PromptSide":
        return cls(prompt=problem.prompt, difficulty=problem.difficulty)


@struct.dataclass
class ProblemSet:
    """``N`` problems (leaves ``[N, ...]``) and which of them are usable (``valid [N]`` bool)."""

    problems: Problem
    valid: jax.Array

    @classmethod
    def of(cls, problems: Problem, valid: Optional[jax.Array] = None) -> "ProblemSet":
        n = problems.prompt.shape[0]
        valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
        if valid.shape != (n,):
            raise ConfigError("valid.shape", valid.shape, f"({n},), one flag per problem", "ProblemSet")
        return cls(problems=problems, valid=valid)

    @property
    def size(self) -> int:
        return int(self.valid.shape[-1])


@struct.dataclass
class SetState:
    """What a run carries of a :class:`SetSource`: the set itself, its shuffle key and how many problems were
    drawn so far (the position in the endless sequence of passes)."""

    data: ProblemSet
    key: jax.Array
    drawn: jax.Array  # int32


@struct.dataclass
class Draw:
    """One batch of problems: ``problems`` ``[num]`` leaves, ``valid [num]`` bool, ``index [num]`` int32 (each
    problem's row in the set; -1 from the task's sampler), ``stats`` scalar metrics."""

    problems: Problem
    valid: jax.Array
    index: jax.Array
    stats: dict


def sample_problems(key: jax.Array, task: SequenceTask, task_params: Any, num: int) -> Problem:
    """``num`` independent problems (leaves ``[num, ...]``)."""
    return jax.vmap(lambda k: task.sample_problem(k, task_params))(jax.random.split(key, num))


def cycle_indices(key: jax.Array, drawn: jax.Array, num: int, valid: jax.Array, shuffle: bool = True
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Rows ``drawn, ..., drawn + num - 1`` of the endless sequence of passes over the valid rows of a set.

    Pass ``p`` visits every valid row once, in the order of ``argsort`` of uniforms drawn with
    ``fold_in(key, p)`` (``shuffle``) or in row order; invalid rows are never visited. Returns ``(indices [num]
    int32, row_valid [num] bool, pass [num] int32)``; with no valid row, every ``row_valid`` is False.
    """
    valid = jnp.asarray(valid, bool)
    n = valid.shape[0]
    n_valid = jnp.sum(valid, dtype=jnp.int32)
    position = jnp.asarray(drawn, jnp.int32) + jnp.arange(num, dtype=jnp.int32)
    per_pass = jnp.maximum(n_valid, 1)
    passes, offset = position // per_pass, position % per_pass

    def order(p):  # the valid rows first, in this pass's order
        ranks = jax.random.uniform(jax.random.fold_in(key, p), (n,)) if shuffle else jnp.arange(n) / n
        return jnp.argsort(jnp.where(valid, ranks, 2.0), stable=True)

    indices = jax.vmap(lambda p, j: order(p)[j])(passes, offset).astype(jnp.int32)
    return indices, jnp.broadcast_to(n_valid > 0, (num,)), passes


class TaskSource:
    """Fresh problems from ``task.sample_problem`` every draw (state ``None``)."""

    def __init__(self, task: SequenceTask, task_params: Any):
        self.task, self.task_params = task, task_params

    def init(self, key: jax.Array, data: Optional[ProblemSet] = None) -> None:
        del key
        if data is not None:
            raise ConfigError("problems", "a ProblemSet", "None: this run samples from the task; pass problems= to "
                              "make_train to train on a problem set", "init")
        return None

    def draw(self, state: None, key: jax.Array, num: int) -> tuple[None, Draw]:
        problems = sample_problems(key, self.task, self.task_params, num)
        return state, Draw(problems=problems, valid=jnp.ones((num,), bool), index=jnp.full((num,), -1, jnp.int32),
                           stats={})


class SetSource:
    """Passes over a :class:`ProblemSet` held in the run state (see the module docstring)."""

    def __init__(self, template: ProblemSet, shuffle: bool = True):
        self.template, self.shuffle = template, bool(shuffle)

    def init(self, key: jax.Array, data: Optional[ProblemSet] = None) -> SetState:
        data = self.template if data is None else data
        want = jax.tree.map(lambda x: (x.shape, x.dtype), self.template)
        got = jax.tree.map(lambda x: (jnp.shape(x), jnp.asarray(x).dtype), data)
        if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(want) != jax.tree.leaves(got):
            raise ConfigError("problems", f"a set of {data.size} problems",
                              f"a ProblemSet shaped like the one given to make_train ({self.template.size} "
                              "problems of the same task): the shapes are part of the compiled program", "init")
        return SetState(data=data, key=jax.random.fold_in(key, 1), drawn=jnp.zeros((), jnp.int32))

    def draw(self, state: SetState, key: jax.Array, num: int) -> tuple[SetState, Draw]:
        del key
        idx, ok, passes = cycle_indices(state.key, state.drawn, num, state.data.valid, self.shuffle)
        problems = jax.tree.map(lambda x: x[idx], state.data.problems)
        stats = {"problem_pass": passes[0], "problems_valid": jnp.sum(state.data.valid, dtype=jnp.int32)}
        return state.replace(drawn=state.drawn + num), Draw(problems=problems, valid=ok, index=idx, stats=stats)


def problem_source(task: SequenceTask, task_params: Any = None, problems: Optional[ProblemSet | Problem] = None,
                   shuffle: bool = True) -> TaskSource | SetSource:
    """The task's sampler (``problems=None``) or passes over ``problems`` (a :class:`ProblemSet`, or a stacked
    :class:`~jaxrl_self.core.Problem`: every row valid)."""
    if problems is None:
        return TaskSource(task, task.default_params if task_params is None else task_params)
    if isinstance(problems, Problem):
        problems = ProblemSet.of(problems)
    if not isinstance(problems, ProblemSet):
        raise ConfigError("problems", type(problems).__name__, "None, a ProblemSet or a stacked Problem",
                          "problem_source")
    if problems.problems.prompt.shape[-1] != task.prompt_len:
        raise ConfigError("problems", f"prompts of {problems.problems.prompt.shape[-1]} tokens",
                          f"problems of {task!r} (prompt_len {task.prompt_len})", "problem_source")
    return SetSource(problems, shuffle)
