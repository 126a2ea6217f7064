"""Reward functions for language-model RL, and the one place that calls them.

A reward sees **one prompt at a time** and never its answer unless it says so:

* :class:`RewardFn` ``(prompt, response [R], response_mask [R], key, extras) -> r`` scores one response;
  the learners vmap it over the batch (each response gets its own key);
* :class:`GroupRewardFn` ``(prompt, responses [G, R], response_mask [G, R], key, extras) -> r [G]`` scores
  the ``G`` responses of one prompt together (TTRL's majority vote, semantic entropy); mark it with
  :func:`group_reward`.

``prompt`` is a :class:`~jaxrl_self.lm.problems.PromptSide` (prompt tokens and difficulty only): a reward that
reads ``prompt.answer`` fails when it is traced. A reward that needs the ground truth (the task's verifier, for
RL with true labels) is marked with :func:`labelled_reward` and then receives the whole
:class:`~jaxrl_self.core.Problem`; label-free methods (TTRL) refuse such rewards when the run is built.
``extras`` is ``RunState.reward_extras``: any pytree the reward needs (a frozen student's parameters for RLT),
replaceable between updates by an outer program.

A reward returns either its value (float32 scalar / ``[G]``) or ``(value, metrics)``, ``metrics`` a dict of
float32 scalars (per response or per group); the learners log their batch means as ``reward.<name>`` beside
their own metrics. :func:`compute_rewards` is the only caller; it also decides which side of the problem a
reward gets.
"""
from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp

from jaxrl_self.core.sequence import Problem, SequenceTask
from jaxrl_self.lm.problems import PromptSide

__all__ = ["RewardFn", "GroupRewardFn", "group_reward", "is_group_reward", "labelled_reward", "is_labelled",
           "verifier_reward", "compute_rewards", "score_each", "mean_metrics"]


class RewardFn(Protocol):
    """Reward of ONE response: ``(prompt, response [R], response_mask [R], key, extras) -> r | (r, metrics)``."""

    def __call__(self, prompt: PromptSide, response: jax.Array, response_mask: jax.Array, key: jax.Array,
                 extras: Any) -> Any: ...


class GroupRewardFn(Protocol):
    """Rewards of the ``G`` responses of ONE prompt, marked with :func:`group_reward`:
    ``(prompt, responses [G, R], response_mask [G, R], key, extras) -> r [G] | (r [G], metrics)``."""

    def __call__(self, prompt: PromptSide, responses: jax.Array, response_mask: jax.Array, key: jax.Array,
                 extras: Any) -> Any: ...


def group_reward(fn: Any) -> Any:
    """Mark ``fn`` as a :class:`GroupRewardFn` (it sees a whole group). Returns ``fn``."""
    fn.per_group = True
    return fn


def is_group_reward(fn: Any) -> bool:
    return bool(getattr(fn, "per_group", False))


def labelled_reward(fn: Any) -> Any:
    """Mark ``fn`` as reading ground truth: it receives the whole :class:`~jaxrl_self.core.Problem` (answer and
    solution included) instead of a :class:`PromptSide`. Returns ``fn``."""
    fn.reads_answers = True
    return fn


def is_labelled(fn: Any) -> bool:
    return bool(getattr(fn, "reads_answers", False))


def verifier_reward(task: SequenceTask, format_penalty: float | jax.Array = 0.0) -> RewardFn:
    """RL with true labels: ``1`` if ``task.is_correct(problem, response)``, else ``0``, minus ``format_penalty``
    when no answer can be parsed (``task.extract_answer`` invalid). A :func:`labelled_reward`; ``format_penalty``
    may be traced."""

    def reward(problem: Problem, response: jax.Array, response_mask: jax.Array, key: jax.Array, extras: Any):
        del key, extras
        response = jnp.where(response_mask, response, task.vocab.PAD)
        correct = task.is_correct(problem, response)
        _, valid = task.extract_answer(response)
        return correct.astype(jnp.float32) - jnp.where(valid, 0.0, jnp.asarray(format_penalty, jnp.float32))

    return labelled_reward(reward)


def _split(out: Any) -> tuple[jax.Array, dict]:
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        return jnp.asarray(out[0], jnp.float32), {k: jnp.asarray(v, jnp.float32) for k, v in out[1].items()}
    return jnp.asarray(out, jnp.float32), {}


def _side(fn: Any, problem: Problem) -> Problem | PromptSide:
    return problem if is_labelled(fn) else PromptSide.of(problem)


def compute_rewards(key: jax.Array, reward_fn: RewardFn | GroupRewardFn, problems: Problem, responses: jax.Array,
                    mask: jax.Array, group_size: int, extras: Any = None) -> tuple[jax.Array, dict]:
    """Rewards ``[B, G]`` float32 of ``G`` responses to each of ``B`` problems, and the reward's own metrics.

    ``responses``/``mask`` are ``[B * G, R]`` (row ``b * G + g`` answers problem ``b``). A :class:`RewardFn`
    is vmapped over groups and members (keys ``split(key, B * G)``), a :class:`GroupRewardFn` over groups (keys
    ``split(key, B)``). ``metrics`` keep their batch axes (``[B, G]`` or ``[B]``): see :func:`mean_metrics`.
    """
    B = problems.prompt.shape[0]
    side = _side(reward_fn, problems)
    responses = responses.reshape(B, group_size, -1)
    masks = mask.reshape(B, group_size, -1)
    if is_group_reward(reward_fn):
        fn = jax.vmap(lambda *a: _split(reward_fn(*a)), in_axes=(0, 0, 0, 0, None))
        rewards, metrics = fn(side, responses, masks, jax.random.split(key, B), extras)
    else:
        keys = jax.random.split(key, B * group_size).reshape(B, group_size)
        one = lambda *a: _split(reward_fn(*a))  # noqa: E731
        fn = jax.vmap(jax.vmap(one, in_axes=(None, 0, 0, 0, None)), in_axes=(0, 0, 0, 0, None))
        rewards, metrics = fn(side, responses, masks, keys, extras)
    return rewards.reshape(B, group_size), metrics


def score_each(key: jax.Array, reward_fn: RewardFn, problems: Problem, responses: jax.Array, mask: jax.Array,
               extras: Any = None) -> tuple[jax.Array, dict]:
    """Rewards ``[N]`` of ``N`` responses, one per problem (``problems`` leaves ``[N]``; T-PPO's slots), and
    the per-response metrics (``[N]`` each). Keys ``split(key, N)``."""
    n = responses.shape[0]
    fn = jax.vmap(lambda *a: _split(reward_fn(*a)), in_axes=(0, 0, 0, 0, None))
    return fn(_side(reward_fn, problems), responses, mask, jax.random.split(key, n), extras)


def mean_metrics(metrics: dict, where: jax.Array | None = None) -> dict:
    """Batch means of a reward's metrics (over ``where`` only, NaN when it selects nothing)."""
    if where is None:
        return {k: jnp.mean(v) for k, v in metrics.items()}
    out = {}
    for k, v in metrics.items():
        w = jnp.broadcast_to(where, v.shape)
        n = jnp.sum(w)
        out[k] = jnp.where(n > 0, jnp.sum(jnp.where(w, v, 0.0)) / jnp.maximum(n, 1), jnp.nan)
    return out
