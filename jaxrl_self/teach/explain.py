"""The pieces of RLT (reinforcement-learned teachers) that are pure functions: the two contexts with their token
spans, the explanation parser, and the reward, against hand-computed values in ``tests/test_rlt.py``.

**Contexts** (token arrays built by concatenating token segments, so every span is known exactly from its
position; the reference code re-tokenises text to find them and has alignment failures there)::

    teacher: <bos> <q> a + b = </q> <a> d </a> <think>            -> writes   E </think> <eos>
    student: <bos> <q> a + b = </q> <think> E </think> <a> d </a> <eos>

``d`` are the answer's digits, ``E`` the explanation. An explanation is *well formed* when the teacher wrote
``1..max_len`` tokens of digits and commas and closed them with ``</think>`` followed by ``<eos>`` (or the end of
its budget); a malformed one gets the format penalty and is scored as if closed after its valid prefix.

**Reward** (the reference code, ``trainers/teacher_rewards.py``, with ``teacher_rlt.yaml``'s coefficients)::

    r    = r_SS - λ r_KL + r_fmt
    r_SS = mean_{t ∈ d} log π_S(t | student context)  +  α min_{t ∈ d} log π_S(t | ...)
    r_KL = mean_{t ∈ E} [log π_T(t | teacher context) - log π_S(t | student context)]  +  α max_{t ∈ E} [...]

over the answer digits ``d`` (the solution's content, not its tags) and the explanation tokens ``E``; ``π_S``
is the frozen student at temperature ``student_temperature`` (0.7 in the reference), ``π_T`` the teacher being
trained at its sampling temperature; the KL term is not clipped (a negative difference lowers ``r_KL``). An empty
span makes its term NaN in the reference, replaced by ``-1`` for ``r_SS`` and ``+1`` for ``r_KL``; the same here.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.sequence import VOCAB, Problem
from jaxrl_self.lm.evaluate import prompt_lengths
from jaxrl_self.lm.scoring import concat_segments

__all__ = ["Contexts", "teacher_contexts", "parse_explanations", "student_contexts", "span_mask", "span_reduce",
           "RewardParts", "rlt_reward", "EXPLANATION_TOKENS"]

#: The tokens an explanation may use: digits and commas (the task's scratchpad writes ``s c , s c ...``).
EXPLANATION_TOKENS = tuple(VOCAB.id(str(d)) for d in range(10)) + (VOCAB.id(","),)


@struct.dataclass
class Contexts:
    """A batch of contexts ``tokens [B, T]`` (PAD after ``length``) with the spans that are scored."""

    tokens: jax.Array
    length: jax.Array  # [B] int32
    explanation_start: jax.Array  # [B] int32
    explanation_len: jax.Array  # [B] int32
    answer_start: jax.Array  # [B] int32, the answer digits (the solution's content)
    answer_len: jax.Array  # [B] int32


def _answer_digits(problems: Problem) -> tuple[jax.Array, jax.Array]:
    a = problems.answer
    return a, jnp.sum(a != VOCAB.PAD, axis=-1).astype(jnp.int32)


def _const(token: str, batch: int) -> tuple[jax.Array, jax.Array]:
    return jnp.full((batch, 1), VOCAB.id(token), jnp.int32), jnp.ones((batch,), jnp.int32)


def teacher_contexts(problems: Problem) -> Contexts:
    """``<bos> <q> question </q> <a> d </a> <think>``: what the teacher reads before it explains (packed layout)."""
    B = problems.prompt.shape[0]
    qlen = prompt_lengths(problems.prompt, "packed")
    digits, dlen = _answer_digits(problems)
    tokens, starts, total = concat_segments([(problems.prompt, qlen), _const("<a>", B), (digits, dlen),
                                             _const("</a>", B), _const("<think>", B)])
    return Contexts(tokens=tokens, length=total, explanation_start=total, explanation_len=jnp.zeros_like(total),
                    answer_start=starts[:, 2], answer_len=dlen)


def parse_explanations(responses: jax.Array, mask: jax.Array, max_len: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(explanation [B, max_len] PAD-padded, length [B], well_formed [B])`` from the teacher's responses.

    The explanation is the longest prefix of digits and commas (at most ``max_len``); it is well formed when it is
    not empty and is followed by ``</think>`` and then ``<eos>`` or the end of the response."""
    r = jnp.where(mask, responses, VOCAB.PAD)
    R = r.shape[1]
    allowed = jnp.any(r[..., None] == jnp.asarray(EXPLANATION_TOKENS)[None, None, :], axis=-1)
    prefix = jnp.cumprod(allowed.astype(jnp.int32), axis=1).astype(bool)
    length = jnp.minimum(jnp.sum(prefix, axis=1), max_len).astype(jnp.int32)
    at = lambda i: jnp.take_along_axis(r, jnp.clip(i, 0, R - 1)[:, None], axis=1)[:, 0]  # noqa: E731
    closes = (length < R) & (at(length) == VOCAB.THINK_END)
    after = jnp.where(length + 1 < R, at(length + 1), VOCAB.EOS)
    well_formed = (length >= 1) & closes & ((after == VOCAB.EOS) | (after == VOCAB.PAD))
    width = max(max_len, 1)
    idx = jnp.arange(width)[None, :]
    explanation = jnp.where(idx < length[:, None], jnp.take_along_axis(r, jnp.clip(idx, 0, R - 1), axis=1), VOCAB.PAD)
    return explanation.astype(jnp.int32), length, well_formed


def student_contexts(problems: Problem, explanation: jax.Array, explanation_len: jax.Array) -> Contexts:
    """``<bos> <q> question </q> <think> E </think> <a> d </a> <eos>`` with the spans of ``E`` and ``d``."""
    B = problems.prompt.shape[0]
    qlen = prompt_lengths(problems.prompt, "packed")
    digits, dlen = _answer_digits(problems)
    tokens, starts, total = concat_segments([
        (problems.prompt, qlen), _const("<think>", B), (explanation, explanation_len), _const("</think>", B),
        _const("<a>", B), (digits, dlen), _const("</a>", B), _const("<eos>", B)])
    return Contexts(tokens=tokens, length=total, explanation_start=starts[:, 2], explanation_len=explanation_len,
                    answer_start=starts[:, 5], answer_len=dlen)


def span_mask(start: jax.Array, length: jax.Array, width: int) -> jax.Array:
    """``[B, width]`` bool, True on ``[start, start + length)`` of each row."""
    t = jnp.arange(width)[None, :]
    return (t >= start[:, None]) & (t < (start + length)[:, None])


def span_reduce(values: jax.Array, mask: jax.Array, how: str) -> jax.Array:
    """Masked ``mean``/``min``/``max`` over the last axis; NaN for an empty span (as the reference code)."""
    n = jnp.sum(mask, axis=-1)
    if how == "mean":
        out = jnp.sum(jnp.where(mask, values, 0.0), -1) / jnp.maximum(n, 1)
    elif how == "min":
        out = jnp.min(jnp.where(mask, values, jnp.inf), -1)
    else:
        out = jnp.max(jnp.where(mask, values, -jnp.inf), -1)
    return jnp.where(n > 0, out, jnp.nan)


@struct.dataclass
class RewardParts:
    """The reward and its parts, ``[B]`` each."""

    reward: jax.Array
    r_ss: jax.Array
    r_kl: jax.Array
    r_fmt: jax.Array


def rlt_reward(student_answer_logp: jax.Array, answer_mask: jax.Array, teacher_logp: jax.Array,
               student_expl_logp: jax.Array, explanation_mask: jax.Array, well_formed: jax.Array, *,
               kl_coef: float | jax.Array = 3.0, alpha: float | jax.Array = 0.01,
               format_penalty: float | jax.Array = 1.0) -> RewardParts:
    """``r = r_SS - λ r_KL + r_fmt`` (module docstring) from per-token log-probs on aligned spans.

    Args:
      student_answer_logp, answer_mask: ``[B, T_a]`` the student's log-probs of the answer digits and their mask.
      teacher_logp, student_expl_logp, explanation_mask: ``[B, T_e]`` the teacher's (own context) and the
        student's (student context) log-probs of the explanation tokens, aligned token by token, and their mask.
      well_formed: ``[B]`` bool; malformed explanations get ``-format_penalty``.
      kl_coef (λ), alpha (α): the reference ``[1, α]`` for ``r_SS`` and ``λ [1, α]`` for ``r_KL``.
    """
    r_ss = span_reduce(student_answer_logp, answer_mask, "mean") + alpha * span_reduce(student_answer_logp,
                                                                                       answer_mask, "min")
    r_ss = jnp.where(jnp.isnan(r_ss), -1.0, r_ss)
    diff = teacher_logp - student_expl_logp
    r_kl = span_reduce(diff, explanation_mask, "mean") + alpha * span_reduce(diff, explanation_mask, "max")
    r_kl = jnp.where(jnp.isnan(r_kl), 1.0, r_kl)
    r_fmt = jnp.where(well_formed, 0.0, -jnp.asarray(format_penalty, jnp.float32))
    return RewardParts(reward=(r_ss - kl_coef * r_kl + r_fmt).astype(jnp.float32), r_ss=r_ss, r_kl=r_kl,
                       r_fmt=r_fmt)
