"""Evaluation of a language model on a :class:`~jaxrl_self.core.SequenceTask`, per difficulty, in one program.

::

    from jaxrl_self import lm
    problems = lm.held_out_problems(task, difficulties=(1, 2, 3, 4), num_per_difficulty=256)
    evaluate = lm.make_evaluate(model_config, task, lm.EvalConfig(num_samples=16, ks=(1, 4, 16)),
                                prompt_layout="packed")
    result = jax.jit(evaluate)(params, jax.random.key(0), problems)   # EvalResult (arrays)
    print(result.table()); result.to_dict()                            # host side

What is measured, per difficulty and overall (every problem weighs the same):

* **greedy accuracy**: one greedy (argmax) response per problem, verified by ``task.is_correct``;
* **pass@1**: the fraction of correct responses among ``n = num_samples`` samples at ``temperature``
  (the mean over samples, i.e. the expected accuracy of one sample);
* **pass@k** for each ``k`` in ``ks``: the unbiased estimator of Chen et al. (2021),
  ``1 - C(n - c, k) / C(n, k)`` with ``c`` correct samples out of ``n >= k`` (:func:`pass_at_k`);
* **maj@k**: the majority vote (:func:`jaxrl_self.lm.majority.majority_vote`) over the extracted answers of the
  *first* ``k`` samples is correct. Invalid (malformed) answers never vote, ties go to the answer seen first,
  and a problem whose ``k`` samples are all malformed counts as wrong;
* **well-formed**: fraction of responses with a parsable answer (``extract_answer`` valid), sampled and greedy;
* **response length**: generated tokens including ``EOS`` (mean, median, p95 over samples; greedy mean).
  Quantiles use linear interpolation (``numpy.quantile``'s default).

Groups: difficulty ``d`` is ``Problem.difficulty`` (digits, chain steps...); ``EvalResult.by_difficulty`` has
one row per ``d = 1..max_difficulty(task)`` (row ``d - 1``), NaN where the set has no problem of that
difficulty (never a placeholder zero).

**Prompt layout.** How a right-padded :class:`~jaxrl_self.core.Problem` prompt is shown to the model is a
property of the model (it was trained that way) and is recorded with every base model:

* ``"packed"``: the prompt is its tokens up to the first ``PAD``; the response follows right after it;
* ``"padded"``: the whole static-length prompt, ``PAD`` tokens included, is the context; every response starts
  at position ``task.prompt_len``. Chain tasks need it for position-aligned reasoning (see
  :mod:`jaxrl_self.envs.tokens.chain`).

:func:`prompt_lengths` turns a layout into the ``prompt_len`` array that :func:`~jaxrl_self.lm.generate`
takes; training, evaluation and RL must use the same layout.

**Held-out sets.** :func:`held_out_problems` builds a fixed set per difficulty from a fixed seed; problem ``i``
of difficulty ``d`` is drawn with ``fold_in(fold_in(key(seed), d), i)``, so a set is the same whatever
``num_per_difficulty`` (a smaller set is a prefix of a larger one) and whatever other difficulties are asked
for. The sets are not made disjoint from training data (training samples fresh problems every step; for
small difficulties, e.g. 1-digit addition with 100 distinct problems, overlap is unavoidable).

Tasks other than :class:`~jaxrl_self.envs.tokens.AdditionTask` and
:class:`~jaxrl_self.envs.tokens.ChainTask` plug in by defining ``max_difficulty`` (int) and
``difficulty_params(d)`` (task params that sample exactly difficulty ``d``; ``d`` may be traced).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.algorithm import static_field as _static
from jaxrl_self.core.sequence import VOCAB, Problem, SequenceTask
from jaxrl_self.lm.generate import generate
from jaxrl_self.lm.majority import majority_vote
from jaxrl_self.lm.sampling import SamplingConfig
from jaxrl_self.nets.transformer import Params, TransformerConfig

__all__ = [
    "PROMPT_LAYOUTS",
    "HELD_OUT_SEED",
    "prompt_lengths",
    "max_difficulty",
    "difficulty_params",
    "held_out_problems",
    "pass_at_k",
    "Graded",
    "grade",
    "EvalStats",
    "EvalResult",
    "summarize",
    "EvalConfig",
    "make_evaluate",
]

PROMPT_LAYOUTS = ("packed", "padded")
#: Default seed of the held-out problem sets.
HELD_OUT_SEED = 20240601


# ============================================================================================ problems and prompts
def check_prompt_layout(layout: str, owner: str = "prompt_layout") -> str:
    if layout not in PROMPT_LAYOUTS:
        raise ConfigError("prompt_layout", layout, f"one of {PROMPT_LAYOUTS}", owner)
    return layout


def prompt_lengths(prompts: jax.Array, layout: str, pad_id: int = VOCAB.PAD) -> jax.Array:
    """``[B]`` int32 prompt lengths to pass to :func:`~jaxrl_self.lm.generate` for right-padded ``prompts [B, P]``.

    ``"packed"``: the index of the first ``pad_id`` (``P`` if none); ``"padded"``: ``P`` for every row.
    """
    check_prompt_layout(layout)
    B, P = prompts.shape
    if layout == "padded":
        return jnp.full((B,), P, jnp.int32)
    is_pad = prompts == pad_id
    return jnp.where(is_pad.any(axis=1), jnp.argmax(is_pad, axis=1), P).astype(jnp.int32)


def max_difficulty(task: SequenceTask) -> int:
    """The largest difficulty ``task`` can sample (addition: ``max_digits``; chain: ``max_steps_cap``)."""
    from jaxrl_self.envs.tokens import AdditionTask, ChainTask

    if hasattr(task, "max_difficulty"):
        return int(task.max_difficulty)
    if isinstance(task, AdditionTask):
        return task.max_digits
    if isinstance(task, ChainTask):
        return task.max_steps_cap
    raise ConfigError("task", type(task).__name__, "AdditionTask, ChainTask, or a SequenceTask defining "
                      "max_difficulty and difficulty_params(d)", "max_difficulty")


def difficulty_params(task: SequenceTask, d: Any) -> Any:
    """Task params under which ``task.sample_problem`` draws problems of exactly difficulty ``d`` (may be traced).

    Addition: ``AdditionParams(min_digits=d, max_digits=d)``; chain: ``ChainParams(alpha=0, min_steps=d,
    max_steps=d)``; other tasks: ``task.difficulty_params(d)``.
    """
    from jaxrl_self.envs.tokens import AdditionParams, AdditionTask, ChainParams, ChainTask

    if hasattr(task, "difficulty_params"):
        return task.difficulty_params(d)
    d = jnp.asarray(d, jnp.int32)
    if isinstance(task, AdditionTask):
        return AdditionParams(min_digits=d, max_digits=d)
    if isinstance(task, ChainTask):
        return ChainParams(alpha=jnp.zeros((), jnp.float32), min_steps=d, max_steps=d)
    raise ConfigError("task", type(task).__name__, "AdditionTask, ChainTask, or a SequenceTask defining "
                      "max_difficulty and difficulty_params(d)", "difficulty_params")


def _check_difficulties(task: SequenceTask, difficulties: Sequence[int], owner: str) -> tuple[int, ...]:
    top = max_difficulty(task)
    out = tuple(difficulties)
    if not out or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 1 <= d <= top
                          for d in out):
        raise ConfigError("difficulties", out, f"a non-empty sequence of ints in [1, {top}] for {task!r}", owner)
    return tuple(int(d) for d in out)


def held_out_problems(task: SequenceTask, difficulties: Sequence[int], num_per_difficulty: int,
                      seed: int = HELD_OUT_SEED) -> Problem:
    """A fixed, deterministic problem set: ``num_per_difficulty`` problems of each difficulty, stacked.

    Returns a :class:`Problem` with leading axis ``len(difficulties) * num_per_difficulty``, ordered by
    difficulty (as given) then index. See the module docstring for the key scheme (prefix-stable).
    """
    owner = "held_out_problems"
    ds = _check_difficulties(task, difficulties, owner)
    if not isinstance(num_per_difficulty, (int, np.integer)) or num_per_difficulty < 1:
        raise ConfigError("num_per_difficulty", num_per_difficulty, "a positive int", owner)
    d = np.repeat(np.asarray(ds, np.int32), num_per_difficulty)
    i = np.tile(np.arange(num_per_difficulty, dtype=np.int32), len(ds))
    return _build_problems(task, jax.random.key(int(seed)), d, i)


@functools.partial(jax.jit, static_argnums=0)  # one compile per (task object, set size)
def _build_problems(task: SequenceTask, base: jax.Array, d: jax.Array, i: jax.Array) -> Problem:
    def one(d, i):
        key = jax.random.fold_in(jax.random.fold_in(base, d), i)
        return task.sample_problem(key, difficulty_params(task, d))

    return jax.vmap(one)(d, i)


# ============================================================================================ estimators
def pass_at_k(n: int, c: Any, k: int) -> jax.Array:
    """Unbiased pass@k estimate ``1 - C(n - c, k) / C(n, k)`` from ``c`` correct out of ``n`` samples.

    Chen et al. (2021), "Evaluating Large Language Models Trained on Code", computed as the stable product
    ``1 - prod_{i = n - c + 1}^{n} (1 - k / i)``; exactly 1 when ``n - c < k``.

    Args:
        n: samples per problem (static int >= k).
        c: correct samples, int array of any shape (values in ``[0, n]``).
        k: static int in ``[1, n]``.

    Returns:
        float32 array shaped like ``c``.
    """
    if not (isinstance(n, (int, np.integer)) and isinstance(k, (int, np.integer)) and 1 <= k <= n):
        raise ConfigError("k", k, f"an int in [1, n] (n={n} samples)", "pass_at_k")
    c = jnp.asarray(c, jnp.int32)[..., None]
    i = jnp.arange(1, n + 1, dtype=jnp.float32)
    terms = jnp.where(i > (n - c), 1.0 - k / i, 1.0)
    est = 1.0 - jnp.prod(terms, axis=-1)
    return jnp.where((n - c[..., 0]) < k, 1.0, est).astype(jnp.float32)


# ============================================================================================ grading
@struct.dataclass
class Graded:
    """Verified responses; every field has the same leading shape ``[...]`` (e.g. ``[M]`` or ``[M, n]``).

    Attributes:
        answer: ``[..., answer_len]`` int32 extracted answer (all PAD when malformed).
        valid: bool, the response has a well-formed answer.
        correct: bool, ``task.is_correct`` (valid and equal to the reference answer).
        length: int32, generated tokens (the response mask's count, ``EOS`` included).
    """

    answer: jax.Array
    valid: jax.Array
    correct: jax.Array
    length: jax.Array


def grade(task: SequenceTask, problems: Problem, responses: jax.Array, response_mask: jax.Array) -> Graded:
    """Extract and verify answers of ``responses [M, ..., R]`` to ``problems`` (leading axis ``M``).

    Extra axes between ``M`` and ``R`` (e.g. ``n`` samples per problem) are broadcast against the problems.
    ``response_mask`` (same shape as ``responses``) only counts tokens for ``length``; parsing reads the tokens
    (generation writes PAD where the mask is False).
    """
    lead = responses.shape[:-1]
    flat = responses.reshape(-1, responses.shape[-1])
    reps = int(np.prod(lead[1:])) if len(lead) > 1 else 1
    target = jnp.repeat(problems.answer, reps, axis=0)
    answer, valid = jax.vmap(task.extract_answer)(flat)
    correct = valid & jnp.all(answer == target, axis=-1)
    return Graded(answer=answer.reshape(lead + answer.shape[-1:]), valid=valid.reshape(lead),
                  correct=correct.reshape(lead),
                  length=jnp.sum(response_mask, axis=-1).astype(jnp.int32).reshape(lead))


# ============================================================================================ results
@struct.dataclass
class EvalStats:
    """Metrics of one group of problems (float32 scalars; leading axes add groups). NaN = no data.

    ``pass_at_k`` and ``maj_at_k`` have a trailing axis over ``EvalResult.ks``. Sample-based fields are NaN
    when ``num_samples == 0``.
    """

    num_problems: jax.Array  # int32
    greedy_accuracy: jax.Array
    greedy_well_formed: jax.Array
    greedy_length_mean: jax.Array
    pass_at_1: jax.Array  # mean over the n samples
    pass_at_k: jax.Array  # [K]
    maj_at_k: jax.Array  # [K]
    well_formed: jax.Array  # fraction of samples with a well-formed answer
    length_mean: jax.Array  # over samples
    length_median: jax.Array
    length_p95: jax.Array


_SCALAR_FIELDS = ("greedy_accuracy", "greedy_well_formed", "greedy_length_mean", "pass_at_1", "well_formed",
                  "length_mean", "length_median", "length_p95")


@struct.dataclass
class EvalResult:
    """Evaluation of a model on a problem set (see the module docstring).

    Attributes:
        overall: :class:`EvalStats` over all problems.
        by_difficulty: :class:`EvalStats` with a leading ``[max_difficulty]`` axis; row ``d - 1`` is difficulty
            ``d`` (``num_problems == 0`` and NaN metrics where the set has none).
        temperature: sampling temperature (float32).
        ks: the ``k`` of ``pass_at_k`` / ``maj_at_k`` (static).
        num_samples: samples per problem ``n`` (static).
    """

    overall: EvalStats
    by_difficulty: EvalStats
    temperature: jax.Array
    ks: tuple[int, ...] = _static(())
    num_samples: int = _static(0)

    # ------------------------------------------------------------------ host side
    def _row(self, stats: EvalStats, idx: tuple = ()) -> dict[str, Any]:
        def f(x, extra=()):
            v = float(np.asarray(x)[idx + extra])
            return None if math.isnan(v) else v

        row: dict[str, Any] = {"num_problems": int(np.asarray(stats.num_problems)[idx])}
        row.update({name: f(getattr(stats, name)) for name in _SCALAR_FIELDS})
        for j, k in enumerate(self.ks):
            row[f"pass@{k}"] = f(stats.pass_at_k, (j,))
            row[f"maj@{k}"] = f(stats.maj_at_k, (j,))
        return row

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"num_samples", "ks", "temperature", "overall": {...}, "by_difficulty": {"d": {...}}}``
        (difficulties without problems are left out; NaN becomes None). Host-side only."""
        counts = np.asarray(self.by_difficulty.num_problems)
        return {
            "num_samples": self.num_samples,
            "ks": list(self.ks),
            "temperature": float(np.asarray(self.temperature)),
            "overall": self._row(self.overall),
            "by_difficulty": {str(d + 1): self._row(self.by_difficulty, (d,)) for d in range(counts.shape[0])
                              if counts[d] > 0},
        }

    def table(self) -> str:
        """A markdown table, one row per difficulty present plus "all". Host-side only."""
        data = self.to_dict()
        cols = ["num_problems", "greedy_accuracy"]
        if self.num_samples:
            cols += ["pass@1"] + [f"pass@{k}" for k in self.ks if k != 1] + [f"maj@{k}" for k in self.ks]
            cols += ["well_formed", "length_mean", "length_p95"]
        else:
            cols += ["greedy_well_formed", "greedy_length_mean"]
        cols = [c if c != "pass@1" else "pass_at_1" for c in cols]

        def cell(v):
            return "-" if v is None else (str(v) if isinstance(v, int) else f"{v:.3f}")

        lines = ["| difficulty | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
        rows = list(data["by_difficulty"].items()) + [("all", data["overall"])]
        for name, row in rows:
            lines.append(f"| {name} | " + " | ".join(cell(row[c]) for c in cols) + " |")
        return "\n".join(lines)


def _group_stats(groups: jax.Array, greedy: Graded, samples: Optional[Graded], target: jax.Array,
                 ks: tuple[int, ...]) -> EvalStats:
    """Stats per group; ``groups [G, M]`` bool membership, ``greedy [M]``, ``samples [M, n]`` or None."""
    G, M = groups.shape
    w = groups.astype(jnp.float32)
    cnt = jnp.sum(w, axis=1)
    nan = jnp.full((G,), jnp.nan, jnp.float32)

    def mean(x):  # per-problem values [M] or [M, K] -> group means [G] or [G, K]
        x = jnp.asarray(x, jnp.float32)
        s = jnp.tensordot(w, x, axes=(1, 0))
        c = cnt.reshape((G,) + (1,) * (x.ndim - 1))
        return jnp.where(c > 0, s / jnp.maximum(c, 1.0), jnp.nan)

    K = len(ks)
    if samples is None:
        pass1 = well = lmean = lmed = lp95 = nan
        passk = majk = jnp.full((G, K), jnp.nan, jnp.float32)
    else:
        n = samples.correct.shape[1]
        c = jnp.sum(samples.correct, axis=1)
        pass1 = mean(c / n)
        passk = mean(jnp.stack([pass_at_k(n, c, k) for k in ks], axis=-1)) if K else jnp.zeros((G, 0))
        maj = []
        for k in ks:
            vote = jax.vmap(majority_vote)(samples.answer[:, :k], samples.valid[:, :k])
            maj.append(vote.has_majority & jnp.all(vote.answer == target, axis=-1))
        majk = mean(jnp.stack(maj, axis=-1)) if K else jnp.zeros((G, 0))
        well = mean(jnp.mean(samples.valid, axis=1))
        lmean = mean(jnp.mean(samples.length, axis=1))
        lengths = jnp.where(groups[:, :, None], samples.length[None].astype(jnp.float32), jnp.nan).reshape(G, -1)
        q = jnp.nanquantile(lengths, jnp.asarray([0.5, 0.95], jnp.float32), axis=1)
        lmed, lp95 = q[0], q[1]
    return EvalStats(
        num_problems=cnt.astype(jnp.int32),
        greedy_accuracy=mean(greedy.correct),
        greedy_well_formed=mean(greedy.valid),
        greedy_length_mean=mean(greedy.length),
        pass_at_1=pass1,
        pass_at_k=passk,
        maj_at_k=majk,
        well_formed=well,
        length_mean=lmean,
        length_median=lmed,
        length_p95=lp95,
    )


def summarize(problems: Problem, greedy: Graded, samples: Optional[Graded], *, ks: Sequence[int],
              max_difficulty: int, temperature: Any = 1.0) -> EvalResult:
    """Aggregate graded responses into an :class:`EvalResult` (pure; jit-able).

    Args:
        problems: the problem set, leading axis ``M`` (uses ``answer`` and ``difficulty``).
        greedy: :class:`Graded` ``[M]``, one greedy response per problem.
        samples: :class:`Graded` ``[M, n]`` sampled responses, or None (``n = 0``).
        ks: the ``k`` for pass@k / maj@k, each in ``[1, n]``.
        max_difficulty: number of difficulty rows (difficulties outside ``[1, max_difficulty]`` count only
            in ``overall``).
        temperature: recorded in the result.
    """
    ks = tuple(int(k) for k in ks)
    n = 0 if samples is None else int(samples.correct.shape[1])
    if any(not 1 <= k <= n for k in ks):
        raise ConfigError("ks", ks, f"ints in [1, num_samples={n}]", "summarize")
    d = jnp.asarray(problems.difficulty, jnp.int32)
    by_d = d[None, :] == jnp.arange(1, max_difficulty + 1, dtype=jnp.int32)[:, None]
    every = jnp.ones((1, d.shape[0]), bool)
    overall = jax.tree.map(lambda x: x[0], _group_stats(every, greedy, samples, problems.answer, ks))
    return EvalResult(overall=overall, by_difficulty=_group_stats(by_d, greedy, samples, problems.answer, ks),
                      temperature=jnp.asarray(temperature, jnp.float32), ks=ks, num_samples=n)


# ============================================================================================ the evaluator
@struct.dataclass
class EvalConfig:
    """How to evaluate. ``num_samples``, ``ks``, ``max_new_tokens`` are static; ``temperature``/``top_k`` traced."""

    num_samples: int = _static(16)
    """samples per problem at `temperature` (0 = greedy only)"""
    ks: tuple[int, ...] = _static((1, 4, 16))
    """k of pass@k (unbiased, from num_samples) and maj@k (first k samples); each in [1, num_samples]"""
    max_new_tokens: Optional[int] = _static(None)
    """response budget (default: the task's solution_len)"""
    temperature: float = 1.0
    """sampling temperature of the num_samples samples (> 0)"""
    top_k: int = 0
    """sample among the top_k tokens only (0 = all)"""

    def validate(self, task: SequenceTask | None = None) -> None:
        owner = "EvalConfig"
        n = self.num_samples
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ConfigError("num_samples", n, "an int >= 0", owner)
        if not isinstance(self.ks, tuple) or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool)
                                                     and 1 <= k <= n for k in self.ks):
            raise ConfigError("ks", self.ks, f"a tuple of ints in [1, num_samples={n}] (empty when num_samples=0)",
                              owner)
        m = self.max_new_tokens
        if m is not None and (not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m < 1):
            raise ConfigError("max_new_tokens", m, "None or a positive int", owner)
        t = None if isinstance(self.temperature, jax.core.Tracer) else np.asarray(self.temperature)
        if t is not None and not np.all(t > 0):
            raise ConfigError("temperature", self.temperature, "a float > 0", owner)
        k = None if isinstance(self.top_k, jax.core.Tracer) else np.asarray(self.top_k)
        if k is not None and not np.all(k >= 0):
            raise ConfigError("top_k", self.top_k, "an int >= 0 (0 = no top-k)", owner)

    def response_len(self, task: SequenceTask) -> int:
        return int(task.solution_len if self.max_new_tokens is None else self.max_new_tokens)


def make_evaluate(model_config: TransformerConfig, task: SequenceTask, config: EvalConfig = EvalConfig(), *,
                  prompt_layout: str):
    """Build ``evaluate(params, key, problems) -> EvalResult`` (pure, jit-able; one program per problem-set shape).

    Greedy responses and ``num_samples`` sampled responses (``lax.map`` over samples, each a batch of all ``M``
    problems) are generated with the KV cache, graded and summarised. ``prompt_layout`` must be the one the
    model was trained with (a base model's ``metadata["prompt_layout"]``).
    """
    config.validate(task)
    check_prompt_layout(prompt_layout, "make_evaluate")
    R = config.response_len(task)
    if task.prompt_len + R > model_config.max_len:
        raise ConfigError("max_new_tokens", R, f"prompt_len ({task.prompt_len}) + max_new_tokens <= model max_len "
                          f"({model_config.max_len})", "EvalConfig")
    top = max_difficulty(task)
    n = config.num_samples

    def respond(params: Params, key: jax.Array, problems: Problem, sampling: SamplingConfig) -> Graded:
        plen = prompt_lengths(problems.prompt, prompt_layout)
        _, out = generate(params, problems.prompt, plen, key, config=model_config, sampling=sampling)
        return grade(task, problems, out.tokens, out.mask)

    def evaluate(params: Params, key: jax.Array, problems: Problem) -> EvalResult:
        k_greedy, k_samples = jax.random.split(key)
        greedy = respond(params, k_greedy, problems, SamplingConfig(max_new_tokens=R, greedy=True))
        samples = None
        if n:
            sampling = SamplingConfig(max_new_tokens=R, temperature=config.temperature, top_k=config.top_k)
            per_sample = jax.lax.map(lambda k: respond(params, k, problems, sampling), jax.random.split(k_samples, n))
            samples = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), per_sample)  # [n, M, ...] -> [M, n, ...]
        return summarize(problems, greedy, samples, ks=config.ks, max_difficulty=top,
                         temperature=config.temperature)

    return evaluate
