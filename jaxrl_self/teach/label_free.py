"""Label-free rewards on groups of sampled answers, the answer-flip signal, and TTRL's ground-truth diagnostics.

Every function here is pure and works on ONE prompt's group of ``N`` samples (vmap it over prompts); answers are
the *strictly* extracted answers (:meth:`~jaxrl_self.core.SequenceTask.extract_answer` with ``strict=True``),
``[N, A]`` PAD-padded, with ``valid [N]``. Invalid answers never vote and are never "the majority".

* :func:`majority_rewards` (TTRL): ``r_i = 1[a_i = maj]``, ``maj`` the most frequent valid answer (ties: the
  answer seen first, :func:`jaxrl_self.lm.majority_vote`);
* :func:`novelty_rewards` (EVOL-RL): majority answers get ``0.5 + 0.5 ũ_i`` in ``[0.5, 1]``, valid minority
  answers ``-1 + 0.5 ũ_i`` in ``[-1, -0.5]``, invalid ones ``-1``; ``u_i = 1 - (0.5 s̄_i + 0.5 s_i^max)`` from the
  similarities ``s_ij`` of the responses, ``s̄_i`` the mean over the other members of ``i``'s side (majority or
  minority; all others when ``i`` is alone there), ``s_i^max`` the largest over all others; ``ũ`` min-max
  normalised within each side (a side of one gets ``ũ = 1``, a side whose ``u`` are all equal ``ũ = 0.5``).
  EVOL-RL embeds the text after ``</think>`` with Qwen3-Embedding-4B; we have no embedding model at this scale and
  use the cosine of the responses' token-count vectors (:func:`token_similarity`), clipped to ``[0, 1]``;
* :func:`semantic_entropy_rewards` (EMPO): clusters are equal valid answers; ``r_i = |c(a_i)| / N`` (0 when
  invalid), and every reward is 0 when the semantic entropy ``H = -Σ_c p_c log p_c`` reaches ``log N`` (all
  answers differ: nothing to agree on), as EMPO's math code does;
* :func:`self_certainty` (Intuitor): the token mean over the response of ``logsumexp(z_t) - mean_v z_t(v) =
  KL(U || p_t) + log |V|`` (the constant cancels in the group advantage), under the policy that sampled;
* :func:`flip_signal` / :func:`guard_step`: how often a prompt's majority answer changes, against the previous
  visit (TTRL-Guard's flip rate) and against the base model's vote, beyond the base's own resampling noise;
* :func:`vote_diagnostics`: the reference code's label accuracy, reward accuracy, majority ratio, pass@1, maj@N,
  pass@N, the only function here that reads the true answer.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.lm.majority import majority_vote

__all__ = ["Vote", "vote", "majority_rewards", "token_similarity", "novelty_rewards", "semantic_entropy_rewards",
           "self_certainty", "minority_bonus", "GuardState", "guard_init", "guard_step", "vote_diagnostics"]


@struct.dataclass
class Vote:
    """The vote of one group: the majority answer, how many of the ``N`` samples gave it (``count``), whether
    any sample was valid, each sample's cluster size (``support [N]``: samples with the same valid answer, 0 when
    invalid) and whether it agrees with the majority (``agree [N]``)."""

    answer: jax.Array  # [A] int32
    count: jax.Array  # int32
    has_majority: jax.Array  # bool
    support: jax.Array  # [N] int32
    agree: jax.Array  # [N] bool


def vote(answers: jax.Array, valid: jax.Array) -> Vote:
    """Majority vote and cluster sizes of ``N`` strictly extracted answers ``[N, A]`` (``valid [N]``)."""
    valid = jnp.asarray(valid, bool)
    mv = majority_vote(answers, valid)
    same = jnp.all(answers[:, None, :] == answers[None, :, :], axis=-1) & valid[:, None] & valid[None, :]
    support = jnp.sum(same, axis=1).astype(jnp.int32)
    agree = valid & mv.has_majority & jnp.all(answers == mv.answer[None, :], axis=-1)
    return Vote(answer=mv.answer, count=mv.count, has_majority=mv.has_majority, support=support, agree=agree)


def majority_rewards(v: Vote) -> jax.Array:
    """TTRL: ``[N]`` float32, 1 for the samples that agree with the majority answer, else 0."""
    return v.agree.astype(jnp.float32)


def token_similarity(responses: jax.Array, mask: jax.Array, vocab_size: int) -> jax.Array:
    """``[N, N]`` cosine similarity of the responses' token-count vectors, clipped to ``[0, 1]`` (0 for empty)."""
    counts = jnp.sum(jax.nn.one_hot(responses, vocab_size) * mask[..., None], axis=1)  # [N, V]
    norm = jnp.linalg.norm(counts, axis=-1)
    cos = counts @ counts.T / jnp.maximum(norm[:, None] * norm[None, :], 1e-12)
    return jnp.clip(cos, 0.0, 1.0)


def _minmax_within(u: jax.Array, side: jax.Array) -> jax.Array:
    """Min-max normalise ``u`` over the members of ``side``; 1 for a side of one, 0.5 when all are equal."""
    n = jnp.sum(side)
    lo = jnp.min(jnp.where(side, u, jnp.inf))
    hi = jnp.max(jnp.where(side, u, -jnp.inf))
    span = hi - lo
    scaled = jnp.where(span > 0, (u - lo) / jnp.where(span > 0, span, 1.0), 0.5)
    return jnp.where(n == 1, 1.0, scaled)


def novelty_rewards(v: Vote, valid: jax.Array, similarity: jax.Array) -> tuple[jax.Array, jax.Array]:
    """EVOL-RL's rewards (module docstring) from the vote and the ``[N, N]`` similarities; also returns ``u``."""
    valid = jnp.asarray(valid, bool)
    N = valid.shape[0]
    others = valid[None, :] & ~jnp.eye(N, dtype=bool)  # invalid responses take no part in the similarities
    same_side = (v.agree[:, None] == v.agree[None, :]) & others
    alone = jnp.sum(same_side, axis=1) == 0
    peers = jnp.where(alone[:, None], others, same_side)
    s_mean = jnp.sum(jnp.where(peers, similarity, 0.0), 1) / jnp.maximum(jnp.sum(peers, 1), 1)
    s_max = jnp.max(jnp.where(others, similarity, 0.0), axis=1)
    u = 1.0 - (0.5 * s_mean + 0.5 * s_max)
    majority, minority = v.agree, valid & ~v.agree
    u_major, u_minor = _minmax_within(u, majority), _minmax_within(u, minority)
    r = jnp.where(majority, 0.5 + 0.5 * u_major, jnp.where(minority, -1.0 + 0.5 * u_minor, -1.0))
    return r.astype(jnp.float32), u


def semantic_entropy_rewards(v: Vote, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """EMPO: ``(r [N], H)``; ``r_i = |c(a_i)| / N`` for valid answers (0 otherwise), all 0 when ``H >= log N``."""
    valid = jnp.asarray(valid, bool)
    N = valid.shape[0]
    p = v.support.astype(jnp.float32) / N  # each sample's cluster probability
    # H = -Σ_c p_c log p_c = -Σ_i (1/N) log p(c_i) over valid samples (each cluster counted |c| times, p_c = |c|/N)
    entropy = -jnp.sum(jnp.where(valid, jnp.log(jnp.where(valid, p, 1.0)), 0.0)) / N
    informative = entropy < jnp.log(N) - 1e-6
    return jnp.where(valid & informative, p, 0.0).astype(jnp.float32), entropy


def self_certainty(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """Intuitor: ``[...]`` the token mean over ``mask [..., R]`` of ``logsumexp(z) - mean(z)`` from ``logits
    [..., R, V]`` (0 for an empty response)."""
    z = logits.astype(jnp.float32)
    per_token = jax.nn.logsumexp(z, axis=-1) - jnp.mean(z, axis=-1)
    m = jnp.asarray(mask, bool)
    return jnp.sum(jnp.where(m, per_token, 0.0), -1) / jnp.maximum(jnp.sum(m, -1), 1)


def minority_bonus(v: Vote, valid: jax.Array, advantages: jax.Array, strength: jax.Array,
                   min_share: float = 0.25) -> jax.Array:
    """TTRL-Guard's minority preservation: samples of a valid *minority* answer held by at least ``min_share``
    of the ``N`` samples get ``strength · (cluster votes / valid votes) · mean |A|`` added to their advantage."""
    valid = jnp.asarray(valid, bool)
    N = valid.shape[0]
    minority = valid & ~v.agree & (v.support >= jnp.ceil(min_share * N))
    share = v.support.astype(jnp.float32) / jnp.maximum(jnp.sum(valid), 1)
    return jnp.where(minority, strength * share * jnp.mean(jnp.abs(advantages)), 0.0)


# ============================================================================================ the flip signal
@struct.dataclass
class GuardState:
    """What the collapse guard remembers per problem of the test set (``[P]``) and over the run."""

    base_label: jax.Array  # [P, A] int32, the base model's majority answer
    base_has: jax.Array  # [P] bool, the base model had a valid majority
    base_noise: jax.Array  # float32, fraction of problems whose two independent base votes disagree
    last_label: jax.Array  # [P, A] int32, the majority answer at the problem's previous visit
    last_has: jax.Array  # [P] bool, it had a valid majority then
    seen: jax.Array  # [P] bool, visited since the start
    departure_ema: jax.Array  # float32, moving average of the departure-from-base rate
    flip_ema: jax.Array  # float32, moving average of the flip rate (against the previous visit)
    low_steps: jax.Array  # int32, consecutive steps with a flip rate below its threshold
    minority_on: jax.Array  # bool, minority preservation switched on
    fired_at: jax.Array  # int32, the update at which the departure signal first exceeded the noise; -1: never


def guard_init(label_a: jax.Array, has_a: jax.Array, label_b: jax.Array, has_b: jax.Array) -> GuardState:
    """From two independent votes of the base model on every problem (``[P, A]`` labels, ``[P]`` flags): the
    first is the reference label, their disagreement rate the resampling noise of a vote."""
    differ = (has_a != has_b) | (has_a & has_b & jnp.any(label_a != label_b, axis=-1))
    noise = jnp.mean(differ.astype(jnp.float32))
    return GuardState(base_label=label_a, base_has=has_a, base_noise=noise, last_label=label_a, last_has=has_a,
                      seen=jnp.zeros(has_a.shape, bool), departure_ema=noise, flip_ema=jnp.zeros((), jnp.float32),
                      low_steps=jnp.zeros((), jnp.int32), minority_on=jnp.zeros((), bool),
                      fired_at=jnp.full((), -1, jnp.int32))


def guard_step(state: GuardState, index: jax.Array, label: jax.Array, has: jax.Array, step: jax.Array, *,
               ema: float | jax.Array, margin: float | jax.Array, flip_threshold: float | jax.Array,
               min_steps: int | jax.Array = 0) -> tuple[GuardState, dict[str, jax.Array]]:
    """Update the guard with this step's votes on the problems ``index [B]`` (labels ``[B, A]``, ``has [B]``).

    * **departure** (the signal the guard acts on): the fraction of the batch whose majority differs from the
      base model's (a valid answer where the base had none counts too), averaged with weight ``1 - ema``; the guard
      *fires* (``fired_at``, once) when that average exceeds the base's resampling noise by ``margin`` after
      ``min_steps`` updates. Majority votes of a model that only resamples stay within the noise; a model that
      drifts onto other answers leaves it;
    * **flip rate** (TTRL-Guard): the fraction of the batch's revisited problems whose majority changed since the
      previous visit, averaged likewise; minority preservation switches on above ``flip_threshold`` and off after
      3 consecutive steps below it.

    Returns the new state and the step's metrics (departure, flip rate, their averages, noise, fired).
    """
    base_label, base_has = state.base_label[index], state.base_has[index]
    departs = has & (~base_has | jnp.any(label != base_label, axis=-1))
    departure = jnp.mean(departs.astype(jnp.float32))
    seen = state.seen[index]
    last_has = state.last_has[index]
    flipped = seen & ((has != last_has) | (has & last_has & jnp.any(label != state.last_label[index], axis=-1)))
    flip = jnp.sum(flipped) / jnp.maximum(jnp.sum(seen), 1)
    dep_ema = ema * state.departure_ema + (1.0 - ema) * departure
    flip_ema = jnp.where(jnp.any(seen), ema * state.flip_ema + (1.0 - ema) * flip, state.flip_ema)
    fires = (state.fired_at < 0) & (step >= min_steps) & (dep_ema > state.base_noise + margin)
    low = jnp.where(flip < flip_threshold, state.low_steps + 1, 0)
    minority_on = jnp.where(flip > flip_threshold, True, jnp.where(low >= 3, False, state.minority_on))
    new = state.replace(last_label=state.last_label.at[index].set(label), last_has=state.last_has.at[index].set(has),
                        seen=state.seen.at[index].set(True),
                        departure_ema=dep_ema, flip_ema=flip_ema, low_steps=low.astype(jnp.int32),
                        minority_on=minority_on, fired_at=jnp.where(fires, step, state.fired_at))
    return new, {"departure": departure, "departure_ema": dep_ema, "flip_rate": flip.astype(jnp.float32),
                 "flip_ema": flip_ema, "base_noise": state.base_noise, "guard_fired": new.fired_at >= 0,
                 "minority_on": minority_on}


# ============================================================================================ ground truth
def vote_diagnostics(v: Vote, correct: jax.Array, truth_answer: jax.Array, pseudo_reward: jax.Array
                     ) -> dict[str, jax.Array]:
    """TTRL's metrics for one group (the reference code's definitions), from the vote, each sample's
    correctness ``[N]`` (the task's verifier: the true reward), the true answer ``[A]`` and each sample's binary
    pseudo-reward ``[N]`` (agreement with the majority):

    * ``label_accuracy``: the majority answer is the true answer (= ``maj@N`` of the strict votes);
    * ``reward_accuracy``: the fraction of samples whose pseudo-reward equals their true reward;
    * ``majority_ratio``: votes for the majority / ``N``;
    * ``pass_at_1``: the mean of ``correct`` over the samples; ``pass_at_n``: any sample correct.
    """
    correct = jnp.asarray(correct, bool)
    label_ok = v.has_majority & jnp.all(v.answer == truth_answer)
    N = correct.shape[0]
    return {
        "label_accuracy": label_ok.astype(jnp.float32),
        "reward_accuracy": jnp.mean((pseudo_reward > 0.5) == correct),
        "majority_ratio": v.count.astype(jnp.float32) / N,
        "pass_at_1": jnp.mean(correct.astype(jnp.float32)),
        "pass_at_n": jnp.any(correct).astype(jnp.float32),
    }
