"""Majority vote over sampled answers: the pseudo-label of TTRL and the prediction of maj@k.

::

    vote = majority_vote(answers, valid)        # answers [N, A] int, valid [N] bool
    vote.answer, vote.count, vote.has_majority  # [A] int32, int32 scalar, bool scalar

Semantics (exact, no sampling):

* Two answers are **the same** when all ``A`` tokens are equal. Answers come from
  :meth:`~jaxrl_self.core.SequenceTask.extract_answer`, PAD-padded to ``A``, so token equality is the
  verifier's own notion of equality (``"0 5"`` and ``"5"`` are different answers).
* **Invalid answers never vote**: rows with ``valid[i] == False`` are ignored whatever their content.
* The majority answer is the valid answer with the most occurrences. **Ties** go to the tied answer whose
  *first occurrence* comes earliest in ``answers`` (row order). With samples drawn i.i.d. this is an unbiased
  tie-break (a uniformly random one) and it makes the vote a deterministic function of its inputs.
* ``has_majority`` is True iff at least one answer is valid (then a winner always exists; ``count >= 1``).
  Without any valid answer, ``answer`` is all ``pad_id`` and ``count`` is 0.
* ``count`` is the number of rows (votes) equal to the winner, so the "majority ratio" that TTRL logs is
  ``count / N`` (or ``count / valid.sum()`` for the share among well-formed answers).

Cost: ``O(N^2 A)`` comparisons (an ``[N, N]`` equality matrix). For the ``N <= 64`` samples per prompt that
TTRL and maj@k use this is a few thousand compares, cheaper than sorting on every backend. Pure and
jit/vmap-able: vmap it over prompts.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB

__all__ = ["MajorityVote", "majority_vote"]


class MajorityVote(NamedTuple):
    """Result of :func:`majority_vote` (unpacks as ``answer, count, has_majority``).

    Attributes:
        answer: ``[A]`` int32, the winning answer (all ``pad_id`` when no answer is valid).
        count: int32 scalar, votes for the winner (0 when no answer is valid).
        has_majority: bool scalar, at least one valid answer (so ``answer`` is meaningful).
    """

    answer: jax.Array
    count: jax.Array
    has_majority: jax.Array


def majority_vote(answers: jax.Array, valid: jax.Array, pad_id: int = VOCAB.PAD) -> MajorityVote:
    """The most frequent valid answer among ``N`` candidates; ties -> the earliest first occurrence.

    Args:
        answers: ``[N, A]`` int token arrays (e.g. extracted answers of N samples of one prompt).
        valid: ``[N]`` bool, which rows are well-formed answers; invalid rows never vote.
        pad_id: fill value of ``answer`` when nothing is valid.

    Returns:
        :class:`MajorityVote` ``(answer [A] int32, count int32, has_majority bool)``; see the module docstring.
    """
    answers = jnp.asarray(answers)
    valid = jnp.asarray(valid, bool)
    if answers.ndim != 2:
        raise ConfigError("answers.shape", answers.shape, "[N, A] (vmap for a batch of prompts)", "majority_vote")
    if valid.shape != answers.shape[:1]:
        raise ConfigError("valid.shape", valid.shape, f"({answers.shape[0]},) matching answers [N, A]",
                          "majority_vote")
    same = jnp.all(answers[:, None, :] == answers[None, :, :], axis=-1)  # [N, N]
    same = same & valid[:, None] & valid[None, :]
    counts = jnp.sum(same, axis=1).astype(jnp.int32)  # votes for row i's answer (0 for invalid rows)
    # argmax returns the first maximal index; the first row holding a tied answer is its first occurrence,
    # so among tied answers the one that occurs first wins.
    winner = jnp.argmax(counts)
    count = counts[winner]
    has = count > 0
    answer = jnp.where(has, answers[winner], jnp.asarray(pad_id, answers.dtype)).astype(jnp.int32)
    return MajorityVote(answer=answer, count=count, has_majority=has)
