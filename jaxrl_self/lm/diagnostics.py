"""Ground-truth diagnostics: the evaluation path, and (with labelled rewards) the only place answers are read.

Training never needs these numbers: rewards see a :class:`~jaxrl_self.lm.problems.PromptSide` unless they are
marked :func:`~jaxrl_self.lm.rewards.labelled_reward`. What a run *logs* about correctness (the verifier's
accuracy of the sampled responses) and what :func:`make_eval` measures on held-out problems are computed here,
from the task's verifier, and a method switches the training-time part off with
``config.ground_truth_metrics=False`` (the accuracy metric is then NaN). Format statistics (is an answer
parseable, how long are responses) read only the responses and are always logged.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.sequence import SequenceTask
from jaxrl_self.lm.config import load_policy, task_params_for
from jaxrl_self.lm.learner import Rollout, rollout
from jaxrl_self.lm.problems import sample_problems
from jaxrl_self.nets.transformer import TransformerConfig

__all__ = ["verify", "format_valid", "rollout_stats", "EvalResult", "make_eval"]


def format_valid(task: SequenceTask, responses: jax.Array, mask: jax.Array) -> jax.Array:
    """``[N]`` bool: the response holds a parseable answer (reads no answer)."""
    return jax.vmap(task.extract_answer)(jnp.where(mask, responses, task.vocab.PAD))[1]


def verify(task: SequenceTask, ro: Rollout, group_size: int) -> tuple[jax.Array, jax.Array]:
    """``(correct, format_valid)``, both ``[B * G]`` bool, from the task's verifier (reads the answers)."""
    problems = jax.tree.map(lambda x: jnp.repeat(x, group_size, axis=0), ro.problem)
    responses = jnp.where(ro.mask, ro.responses, task.vocab.PAD)
    correct = jax.vmap(task.is_correct)(problems, responses)
    valid = jax.vmap(task.extract_answer)(responses)[1]
    return correct, valid


def rollout_stats(task: SequenceTask, ro: Rollout, rewards: jax.Array, group_size: int, max_new_tokens: int,
                  ground_truth: bool = True) -> dict[str, jax.Array]:
    """Rollout metrics: reward mean/std, verifier accuracy (NaN unless ``ground_truth``), parseable fraction,
    response length, truncation."""
    if ground_truth:
        correct, valid = verify(task, ro, group_size)
        accuracy = jnp.mean(correct.astype(jnp.float32))
    else:
        valid = format_valid(task, ro.responses, ro.mask)
        accuracy = jnp.full((), jnp.nan, jnp.float32)
    length = ro.response_len
    last = jnp.take_along_axis(ro.responses, jnp.maximum(length - 1, 0)[:, None], axis=1)[:, 0]
    truncated = (length >= max_new_tokens) & (last != task.vocab.EOS)
    return {
        "reward_mean": jnp.mean(rewards),
        "reward_std": jnp.std(rewards),
        "accuracy": accuracy,
        "format_valid": jnp.mean(valid.astype(jnp.float32)),
        "response_length": jnp.mean(length.astype(jnp.float32)),
        "truncated": jnp.mean(truncated.astype(jnp.float32)),
    }


@struct.dataclass
class EvalResult:
    """Per held-out problem (``[num_episodes]`` each): one response per problem, greedy or sampled."""

    episode_return: jax.Array  # float32, 1.0 where the verifier accepts the response (what `jaxrl-self eval` reads)
    correct: jax.Array  # bool
    format_valid: jax.Array  # bool, a parseable answer
    response_length: jax.Array  # int32
    difficulty: jax.Array  # int32, the problem's difficulty

    @property
    def accuracy(self) -> jax.Array:
        return jnp.mean(self.correct.astype(jnp.float32))


def make_eval(config: Any, env: SequenceTask, env_params: Any = None, *,
              model_config: TransformerConfig | None = None, greedy: bool = True, value_head: bool = False):
    """``evaluate(params, key, env_params=None, num_episodes=256, temperature=1.0) -> EvalResult``.

    ``num_episodes`` problems drawn with ``key`` from the task (difficulty range of ``config`` applied), one
    response each: greedy (default; greedy accuracy) or sampled at ``temperature`` (``greedy=False``: the
    mean of ``correct`` is an unbiased pass@1). Use a key no training run uses for a held-out set; the same key
    gives the same problems. ``model_config`` defaults to the one the method's ``make_train`` would use
    (``value_head=True``: with a value head, as token PPO's). Jit it with ``num_episodes`` static. (For pass@k,
    maj@k and per-difficulty tables see :func:`jaxrl_self.lm.evaluate.make_evaluate`.)
    """
    task = env
    base_params = task_params_for(config, task, env_params)
    policy = load_policy(config, task, value_head=value_head)
    model_config = policy.model_config if model_config is None else model_config

    def evaluate(params, key, env_params=None, num_episodes: int = 256, temperature: float = 1.0) -> EvalResult:
        tp = base_params if env_params is None else task_params_for(config, task, env_params)
        k_prob, k_gen = jax.random.split(key)
        problems = sample_problems(k_prob, task, tp, num_episodes)
        ro = rollout(k_gen, params, model_config, problems, 1, config.max_new_tokens, temperature, greedy,
                     prompt_layout=policy.prompt_layout)
        correct, valid = verify(task, ro, 1)
        return EvalResult(episode_return=correct.astype(jnp.float32), correct=correct, format_valid=valid,
                          response_length=ro.response_len, difficulty=jnp.asarray(problems.difficulty, jnp.int32))

    return evaluate
