"""An arithmetic chain with a heavy-tailed number of steps: :class:`ChainTask` and its :class:`ChainParams`.

The long-tailed chain-of-thought task: most responses are short, a few are long (what Truncated PPO is for).

Format (tokens separated by spaces; every value is a single digit, all arithmetic modulo 10)::

    prompt   = <bos> <q> 7 + 3 * 9 - 4 </q>                       x0 op_1 d_1 op_2 d_2 ... op_n d_n
    solution = <think> 0 0 6 </think> <a> 6 </a> <eos>           v_1 ... v_n, answer v_n
    solution = <think> + 3 0 * 9 0 - 4 6 </think> <a> 6 </a> <eos>    echo_ops=True: op_k d_k v_k

with ``v_0 = x0`` and ``v_k = (v_{k-1} op_k d_k) mod 10`` (``-`` is taken modulo 10 into 0..9).

* **Alignment.** Reasoning step ``k`` is the ``k``-th token after ``<think>`` and belongs to the ``k``-th
  ``op d`` pair of the prompt, which sits at prompt positions ``2k + 1`` (op) and ``2k + 2`` (digit), counting
  ``<bos>`` as 0. Prompts are right-padded to the static ``prompt_len``, so a response starting at position
  ``prompt_len`` puts step ``k`` at the fixed absolute position ``prompt_len + k``: the step-to-op map does not
  depend on ``n`` and a learned (absolute) position embedding can express it; the other input of step ``k``
  is the previous token ``v_{k-1}``. ``echo_ops=True`` additionally copies ``op_k d_k`` before each value,
  which lets a model align by content (an induction-head style copy of "the pair after the pair I just
  wrote") at the price of 3x longer responses.
* **Every step matters.** Operands of ``+`` and ``-`` are uniform in 0..9; operands of ``*`` are uniform in
  {1, 3, 7, 9}, the units modulo 10, so every step is a bijection of 0..9. With ``x0`` uniform the answer is
  uniform over 0..9 (chance accuracy 10 %) and no suffix of the chain can be skipped.
  (:meth:`ChainTask.problem_from_ops` accepts any operand 0..9.)
* **Length distribution.** ``n`` follows a truncated discrete power law ``P(n) ∝ n^-alpha`` on
  ``[min_steps, max_steps]`` (``alpha`` may be traced, and 0 gives the uniform law; negative values favour
  long chains). ``Problem.difficulty = n``; the reference response has ``n + 6`` tokens (``3n + 6`` with
  ``echo_ops``). :meth:`ChainTask.step_probs` gives the exact law and :meth:`ChainTask.length_stats` its
  summary. Defaults (``alpha = 1.2`` on ``[1, 32]``): ``n`` has mean 6.3, median 3, p95 24, p99 31; the
  response has mean 12.3, median 9, p90 24, p95 30, p99 37 and max 38 tokens (max / mean = 3.1), i.e. a
  fixed-length batch is mostly padding, the regime Truncated PPO targets.

Static lengths for ``max_steps_cap = C``: ``prompt_len = 2C + 4``, ``answer_len = 1``,
``solution_len = C + 6`` (``3C + 6`` with ``echo_ops``).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import Problem, SequenceTask, TaskParams
from jaxrl_self.envs.tokens._common import (
    check_param_int,
    check_static_bool,
    check_static_int,
    concrete,
    const,
    interleave,
    pack,
    random_ints,
    random_unit,
)

__all__ = ["ChainParams", "ChainTask", "OPS"]

#: The operations, in the order of their integer codes 0, 1, 2.
OPS = ("+", "-", "*")
_MUL_OPERANDS = (1, 3, 7, 9)  # units modulo 10: multiplication by these is a bijection of 0..9
#: Largest supported ``max_steps_cap`` (a sanity bound on array sizes).
MAX_STEPS_LIMIT = 1024


@struct.dataclass
class ChainParams(TaskParams):
    """Vmappable length distribution of :class:`ChainTask`: ``P(n) ∝ n^-alpha`` on ``[min_steps, max_steps]``.

    ``alpha`` float32, ``min_steps``/``max_steps`` int32 (scalars, or batched arrays under vmap). Allowed:
    ``alpha`` finite, ``1 <= min_steps <= max_steps <= task.max_steps_cap``; concrete values are checked by
    :meth:`ChainTask.validate_params` (called by ``sample_problem``), traced ones are clamped into range.
    """

    alpha: Any = 1.2
    min_steps: Any = 1
    max_steps: Any = 32


def apply_op(value: jax.Array, op: jax.Array, operand: jax.Array) -> jax.Array:
    """``(value op operand) mod 10`` for op codes 0 ``+``, 1 ``-``, 2 ``*`` (elementwise, int32 in 0..9)."""
    out = jnp.where(op == 0, value + operand, jnp.where(op == 1, value - operand, value * operand))
    return jnp.remainder(out, 10).astype(jnp.int32)


class ChainTask(SequenceTask):
    """Start digit and ``n`` operations modulo 10, with every intermediate value written as reasoning.

    See the module docstring for the exact format and why.

    Args:
      max_steps_cap: static cap on ``n``; fixes ``prompt_len`` and ``solution_len``. Default 32.
      alpha, min_steps, max_steps: defaults of :attr:`default_params` (``max_steps=None`` means the cap).
      echo_ops: write ``op_k d_k v_k`` per step instead of ``v_k`` (content-based alignment, 3x longer).
    """

    def __init__(self, max_steps_cap: int = 32, *, alpha: float = 1.2, min_steps: int = 1,
                 max_steps: int | None = None, echo_ops: bool = False):
        self.max_steps_cap = check_static_int(self.name, "max_steps_cap", max_steps_cap, 1, MAX_STEPS_LIMIT)
        self.echo_ops = check_static_bool(self.name, "echo_ops", echo_ops)
        c = self.max_steps_cap
        self.tokens_per_step = 3 if self.echo_ops else 1
        self.prompt_len = 2 * c + 4                              # <bos> <q> x0 (op d) * c </q>
        self.answer_len = 1
        self.solution_len = self.tokens_per_step * c + 6         # <think> .. </think> <a> v </a> <eos>
        max_steps = c if max_steps is None else max_steps
        params = ChainParams(alpha=alpha, min_steps=min_steps, max_steps=max_steps)
        self.validate_params(params)
        self._default_params = ChainParams(jnp.asarray(alpha, jnp.float32), jnp.asarray(min_steps, jnp.int32),
                                           jnp.asarray(max_steps, jnp.int32))
        self._build_jit = jax.jit(self._build)

    @property
    def default_params(self) -> ChainParams:
        return self._default_params

    def validate_params(self, params: ChainParams) -> None:
        """Raise :class:`~jaxrl_self.core.errors.ConfigError` (a ValueError) for concrete out-of-range params.

        Works on batched (stacked) params too; traced fields are skipped.
        """
        if not isinstance(params, ChainParams):
            raise ConfigError("params", type(params).__name__, "a ChainParams", self.name)
        c = self.max_steps_cap
        alpha = concrete(params.alpha)
        if alpha is not None and not np.all(np.isfinite(alpha.astype(np.float64))):
            raise ConfigError("alpha", alpha.tolist(), "a finite float (P(n) ∝ n^-alpha)", "ChainParams")
        check_param_int("ChainParams", "max_steps", params.max_steps, 1, c,
                        f"1 <= max_steps <= {c} (the static cap of ChainTask(max_steps_cap={c}))")
        hi = concrete(params.max_steps)
        check_param_int("ChainParams", "min_steps", params.min_steps, 1, params.max_steps,
                        "1 <= min_steps <= max_steps" + (f" (= {hi.tolist()!r})" if hi is not None else ""))

    @property
    def max_difficulty(self) -> int:
        """The largest difficulty the task can sample: ``max_steps_cap``."""
        return self.max_steps_cap

    def difficulty_params(self, d: Any) -> ChainParams:
        """Params that sample exactly ``d`` steps; ``d`` may be traced."""
        d = jnp.asarray(d, jnp.int32)
        return ChainParams(alpha=jnp.zeros((), jnp.float32), min_steps=d, max_steps=d)

    # ------------------------------------------------------------------------------------------ lengths
    def step_logits(self, params: ChainParams | None = None) -> jax.Array:
        """float32 ``[max_steps_cap]``: unnormalised log-probabilities of ``n = 1..cap`` (``-inf`` outside the
        range). Traced params are clamped into ``1 <= min_steps <= max_steps <= cap``."""
        params = self.default_params if params is None else params
        n = jnp.arange(1, self.max_steps_cap + 1, dtype=jnp.float32)
        lo, hi = self._step_range(params)
        inside = (n >= lo) & (n <= hi)
        return jnp.where(inside, -jnp.asarray(params.alpha, jnp.float32) * jnp.log(n), -jnp.inf)

    def _step_range(self, params: ChainParams) -> tuple[jax.Array, jax.Array]:
        """``(min_steps, max_steps)`` clamped into ``1 <= min_steps <= max_steps <= cap`` (int32)."""
        c = self.max_steps_cap
        lo = jnp.clip(jnp.asarray(params.min_steps, jnp.int32), 1, c)
        return lo, jnp.clip(jnp.asarray(params.max_steps, jnp.int32), lo, c)

    def step_probs(self, params: ChainParams | None = None) -> jax.Array:
        """float32 ``[max_steps_cap]``: the exact ``P(n)`` for ``n = 1..cap`` (entry ``i`` is ``n = i + 1``)."""
        return jax.nn.softmax(self.step_logits(params))

    def response_length(self, n: Any) -> Any:
        """Tokens in the reference response for ``n`` steps, including ``<eos>``: ``n + 6`` (``3n + 6``)."""
        return self.tokens_per_step * n + 6

    def length_stats(self, params: ChainParams | None = None) -> dict[str, float]:
        """Exact summary of ``n`` and of the reference response length under ``params`` (host-side).

        Keys: ``steps_{mean,median,p90,p95,p99,max}`` and ``response_{mean,median,p90,p95,p99,max}`` (quantile
        ``q`` = the smallest ``n`` with ``P(N <= n) >= q``).
        """
        p = np.asarray(self.step_probs(params), np.float64)
        n = np.arange(1, self.max_steps_cap + 1)
        cdf = np.cumsum(p)
        out: dict[str, float] = {}
        qs = {"median": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
        for what, val in (("steps", n), ("response", self.response_length(n))):
            out[f"{what}_mean"] = float(p @ val)
            for name, q in qs.items():
                out[f"{what}_{name}"] = float(val[min(np.searchsorted(cdf, q - 1e-12), len(n) - 1)])
            out[f"{what}_max"] = float(val[np.nonzero(p > 0)[0].max()])
        return out

    # ------------------------------------------------------------------------------------------ sampling
    def sample_problem(self, key: jax.Array, params: ChainParams | None = None) -> Problem:
        """A random chain (jit/vmap-able): ``n`` from the truncated power law (inverse CDF), ``x0`` and ops
        uniform, ``+``/``-`` operands uniform in 0..9, ``*`` operands uniform in {1, 3, 7, 9}."""
        params = self.default_params if params is None else params
        self.validate_params(params)
        c = self.max_steps_cap
        bits = jax.random.bits(key, (2 + 3 * c,), jnp.uint32)  # one threefry call (see _common.random_ints)
        # n by inverting the CDF of the truncated power law at a uniform u
        cdf = jnp.cumsum(self.step_probs(params))
        lo, hi = self._step_range(params)
        n = jnp.clip(1 + jnp.sum(cdf <= random_unit(bits[0])), lo, hi).astype(jnp.int32)  # clip: float round-off
        x0 = random_ints(bits[1], 0, 9)
        ops = random_ints(bits[2:c + 2], 0, len(OPS) - 1)
        add_operand = random_ints(bits[c + 2:2 * c + 2], 0, 9)
        mul_operand = jnp.asarray(_MUL_OPERANDS, jnp.int32)[random_ints(bits[2 * c + 2:], 0, len(_MUL_OPERANDS) - 1)]
        operands = jnp.where(ops == 2, mul_operand, add_operand)
        return self._build(x0, ops, operands, n)

    def problem_from_ops(self, x0: int, ops: Sequence[tuple[str, int]]) -> Problem:
        """The chain ``x0 op_1 d_1 ... op_n d_n`` from concrete values, e.g. ``(7, [("+", 3), ("*", 2)])``.

        Any digit operand 0..9 is accepted (also for ``*``); ``1 <= n <= max_steps_cap``. Host-side.
        """
        owner = f"{self.name}.problem_from_ops"
        c = self.max_steps_cap
        if isinstance(x0, (bool, np.bool_)) or not isinstance(x0, (int, np.integer)) or not 0 <= x0 <= 9:
            raise ConfigError("x0", x0, "a digit 0..9", owner)
        ops = list(ops)
        if not 1 <= len(ops) <= c:
            raise ConfigError("ops", ops, f"1 to {c} (op, digit) pairs (max_steps_cap={c})", owner)
        codes = np.zeros(c, np.int32)
        digits = np.zeros(c, np.int32)
        for i, pair in enumerate(ops):
            op, d = pair if isinstance(pair, (tuple, list)) and len(pair) == 2 else (None, None)
            digit_ok = isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and 0 <= d <= 9
            if op not in OPS or not digit_ok:
                raise ConfigError(f"ops[{i}]", pair, f"(op, digit) with op in {OPS} and digit 0..9", owner)
            codes[i], digits[i] = OPS.index(op), d
        return self._build_jit(np.int32(x0), codes, digits, np.int32(len(ops)))

    def _build(self, x0: jax.Array, ops: jax.Array, operands: jax.Array, n: jax.Array) -> Problem:
        """The problem for start digit ``x0``, op codes/operands int32 ``[cap]`` (only the first ``n`` used)."""
        v = self.vocab
        n = jnp.asarray(n, jnp.int32)

        def step(value, op_d):
            new = apply_op(value, *op_d)
            return new, new

        _, values = jax.lax.scan(step, jnp.asarray(x0, jnp.int32), (ops, operands))  # values[k] = v_{k+1}
        answer = values[n - 1]
        op_tokens = jnp.asarray([v.id(o) for o in OPS], jnp.int32)[ops]
        prompt = pack([const("<bos>", "<q>"), (v.digit(x0)[None], 1),
                       (interleave(op_tokens, v.digit(operands)), 2 * n), const("</q>")], self.prompt_len)
        if self.echo_ops:
            think = interleave(op_tokens, v.digit(operands), v.digit(values))
        else:
            think = v.digit(values)
        solution = pack([const("<think>"), (think, self.tokens_per_step * n), const("</think>", "<a>"),
                         (v.digit(answer)[None], 1), const("</a>", "<eos>")], self.solution_len)
        return Problem(prompt=prompt, answer=v.digit(answer)[None].astype(jnp.int32), solution=solution,
                       difficulty=n)

    # ------------------------------------------------------------------------------------------ teachers
    def parse_problem(self, tokens: jax.Array) -> tuple[Problem, jax.Array]:
        """Parse a teacher-written problem ``[<bos>] <q> x0 op d ... op d </q> <a> answer </a> [<eos>]``
        (jit/vmap-able), as :meth:`AdditionTask.parse_problem <jaxrl_self.envs.tokens.AdditionTask.parse_problem>`.

        Args:
          tokens: int32 ``[T]`` for any static ``T``; the frame (``<q>``, ``</q> <a>``, a one-digit answer closed by
            ``</a>`` and followed by ``<eos>``, ``<pad>`` or the end) is
            :meth:`~jaxrl_self.core.SequenceTask.parse_frame`.

        Returns:
          ``(problem, valid)``. ``valid`` is True when the frame is well formed and the question is a start digit
          followed by ``1..max_steps_cap`` pairs of an op (``+ - *``) and a digit (any digit, as
          :meth:`problem_from_ops`). ``problem`` is built from the question with the *true* answer (exactly what
          :meth:`problem_from_ops` gives); when invalid it is the placeholder ``0 + 0``. The teacher's own answer
          is ``extract_answer(tokens, strict=True)``.
        """
        v, c = self.vocab, self.max_steps_cap
        t = jnp.asarray(tokens, jnp.int32)
        n_tok = t.shape[-1]
        frame = self.parse_frame(t)
        q_start, length = frame["q_start"], frame["q_end"] - frame["q_start"]
        n = (length - 1) // 2
        k = jnp.arange(c, dtype=jnp.int32)
        at = lambda i: jnp.where(i < n_tok, t[jnp.clip(i, 0, n_tok - 1)], v.PAD)  # noqa: E731
        op_tokens = jnp.asarray([v.id(o) for o in OPS], jnp.int32)
        op_at = at(q_start + 1 + 2 * k)
        op_code = jnp.argmax(op_at[:, None] == op_tokens[None, :], axis=1).astype(jnp.int32)
        operand = v.digit_value(at(q_start + 2 + 2 * k))
        used = k < n
        ops_ok = jnp.all(~used | jnp.any(op_at[:, None] == op_tokens[None, :], axis=1))
        x0 = v.digit_value(at(q_start))
        valid = (frame["valid"] & (length % 2 == 1) & (n >= 1) & (n <= c) & (x0 >= 0) & ops_ok
                 & jnp.all(~used | (operand >= 0)))
        zero = jnp.zeros((), jnp.int32)
        problem = self._build(jnp.where(valid, x0, zero), jnp.where(valid & used, op_code, 0),
                              jnp.where(valid & used, operand, 0), jnp.where(valid, n, 1))
        return problem, valid

    def __repr__(self) -> str:
        return f"{self.name}(max_steps_cap={self.max_steps_cap}, echo_ops={self.echo_ops})"
