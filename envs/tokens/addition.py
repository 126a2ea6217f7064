"""Multi-digit addition with a verifier: :class:`AdditionTask` and its :class:`AdditionParams`.

Format (tokens separated by spaces; ``a``, ``b`` written most-significant digit first)::

    prompt   = <bos> <q> 5 7 + 6 8 = </q>                               (right-padded with <pad>)
    solution = <a> 5 2 1 </a> <eos>                                      reverse_answer=True (default): 125
    solution = <a> 1 2 5 </a> <eos>                                      reverse_answer=False
    solution = <think> 5 1 , 2 1 </think> <a> 5 2 1 </a> <eos>           scratchpad=True

* **Reversed answers (default).** The sum is written least-significant digit first. Written
  most-significant-first, the first output digit already depends on the carry chain through every column,
  which a small causal Transformer must resolve in one forward pass; written least-significant-first, each
  output digit depends only on two operand digits and the carry of the previous output step, a local rule
  that few-layer models learn quickly and extrapolate better (Lee et al., 2023, "Teaching Arithmetic to Small
  Transformers"). ``reverse_answer=False`` gives the usual order.
* **Scratchpad** (``scratchpad=True``): inside ``<think> .. </think>``, one group per column, least
  significant column first: ``s_k c_k`` = the sum digit and the carry *out* of column ``k``
  (``a_k + b_k + c_{k-1} = 10 c_k + s_k``), groups separated by ``,`` (the "simplified scratchpad" of Lee et
  al.). It has exactly ``max(len a, len b)`` groups.
* **Numbers are canonical**: no leading zeros (``0`` itself is the single digit ``0``); the answer has
  ``n`` or ``n + 1`` digits.
* **Difficulty** ``n``: :meth:`AdditionTask.sample_problem` draws ``n`` uniformly in
  ``[params.min_digits, params.max_digits]`` and both operands with *exactly* ``n`` digits: the leading digit
  is uniform in 1..9 (0..9 when ``n == 1``), the others uniform in 0..9. ``Problem.difficulty = n``
  (``max(len a, len b)`` for problems built from ints or parsed from a teacher).

Static lengths for ``max_digits = D``: ``prompt_len = 2D + 5``, ``answer_len = D + 1``,
``solution_len = D + 4`` (``4D + 5`` with the scratchpad).
"""
from __future__ import annotations

from typing import Any

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
    first_index,
    interleave,
    lsb_to_msb,
    pack,
    random_ints,
    take,
)

__all__ = ["AdditionParams", "AdditionTask"]

#: Largest supported ``AdditionTask(max_digits=...)`` (a sanity bound; the arithmetic is digit-wise, any width works).
MAX_DIGITS_LIMIT = 64


@struct.dataclass
class AdditionParams(TaskParams):
    """Vmappable difficulty range of :class:`AdditionTask` (int32 scalars, or batched arrays under vmap).

    Both operands get exactly ``n`` digits with ``n ~ Uniform{min_digits, ..., max_digits}``. Allowed:
    ``1 <= min_digits <= max_digits <= task.max_digits``; concrete values are checked by
    :meth:`AdditionTask.validate_params` (called by ``sample_problem``); traced values are clamped into range.
    """

    min_digits: Any = 1
    max_digits: Any = 6


class AdditionTask(SequenceTask):
    """``a + b`` with both operands of ``n`` digits; see the module docstring for the exact token format.

    Args:
      max_digits: static cap on the operand length; fixes ``prompt_len``, ``answer_len``, ``solution_len``.
        Also the default ``params.max_digits``.
      min_digits: default ``params.min_digits``.
      reverse_answer: write the sum least-significant digit first (default True: learnable by small causal
        Transformers, see the module docstring). ``Problem.answer`` holds the digits in the written order.
      scratchpad: put the per-column sum digit and carry inside ``<think> .. </think>`` before the answer.
    """

    def __init__(self, max_digits: int = 6, *, min_digits: int = 1, reverse_answer: bool = True,
                 scratchpad: bool = False):
        self.max_digits = check_static_int(self.name, "max_digits", max_digits, 1, MAX_DIGITS_LIMIT)
        self.reverse_answer = check_static_bool(self.name, "reverse_answer", reverse_answer)
        self.scratchpad = check_static_bool(self.name, "scratchpad", scratchpad)
        d = self.max_digits
        self.prompt_len = 2 * d + 5                           # <bos> <q> a + b = </q>
        self.answer_len = d + 1                               # the sum has at most d + 1 digits
        self.think_len = 3 * d + 1 if self.scratchpad else 0  # <think> (s c ,) * d minus the last , </think>
        self.solution_len = self.think_len + self.answer_len + 3  # + <a> </a> <eos>
        params = AdditionParams(min_digits=min_digits, max_digits=d)
        self.validate_params(params)
        self._default_params = AdditionParams(jnp.asarray(min_digits, jnp.int32), jnp.asarray(d, jnp.int32))
        self._build_jit = jax.jit(self._build)

    @property
    def default_params(self) -> AdditionParams:
        return self._default_params

    def validate_params(self, params: AdditionParams) -> None:
        """Raise :class:`~jaxrl_self.core.errors.ConfigError` (a ValueError) for concrete out-of-range params.

        Works on batched (stacked) params too; traced fields are skipped.
        """
        if not isinstance(params, AdditionParams):
            raise ConfigError("params", type(params).__name__, "an AdditionParams", self.name)
        d = self.max_digits
        check_param_int("AdditionParams", "max_digits", params.max_digits, 1, d,
                        f"1 <= max_digits <= {d} (the static cap of AdditionTask(max_digits={d}))")
        hi = concrete(params.max_digits)
        check_param_int("AdditionParams", "min_digits", params.min_digits, 1, params.max_digits,
                        "1 <= min_digits <= max_digits" + (f" (= {hi.tolist()!r})" if hi is not None else ""))

    @property
    def max_difficulty(self) -> int:
        """The largest difficulty the task can sample: ``max_digits``."""
        return self.max_digits

    def difficulty_params(self, d: Any) -> AdditionParams:
        """Params that sample exactly difficulty ``d`` (``d``-digit operands); ``d`` may be traced."""
        d = jnp.asarray(d, jnp.int32)
        return AdditionParams(min_digits=d, max_digits=d)

    # ------------------------------------------------------------------------------------------ sampling
    def sample_problem(self, key: jax.Array, params: AdditionParams | None = None) -> Problem:
        """A random problem (jit/vmap-able): ``n ~ U{min_digits..max_digits}``, both operands of ``n`` digits."""
        params = self.default_params if params is None else params
        self.validate_params(params)
        d = self.max_digits
        lo = jnp.clip(jnp.asarray(params.min_digits, jnp.int32), 1, d)
        hi = jnp.clip(jnp.asarray(params.max_digits, jnp.int32), lo, d)
        bits = jax.random.bits(key, (1 + 2 * d,), jnp.uint32)  # one threefry call (see _common.random_ints)
        n = random_ints(bits[0], lo, hi)
        return self._build(self._random_operand(bits[1:d + 1], n), n, self._random_operand(bits[d + 1:], n), n)

    def _random_operand(self, bits: jax.Array, n: jax.Array) -> jax.Array:
        """Digits (least-significant first, int32 ``[max_digits]``, zero beyond ``n``) of a uniform ``n``-digit
        number: leading digit in 1..9 unless ``n == 1``. ``bits``: uint32 ``[max_digits]`` random words."""
        k = jnp.arange(self.max_digits, dtype=jnp.int32)
        lowest = jnp.where((k == n - 1) & (n > 1), 1, 0)
        return jnp.where(k < n, random_ints(bits, lowest, 9), 0)

    def problem_from_ints(self, a: int, b: int) -> Problem:
        """The problem ``a + b`` for concrete non-negative ints of at most ``max_digits`` digits (host-side).

        The operands may have different lengths; ``difficulty = max(len(str(a)), len(str(b)))``.
        """
        d = self.max_digits
        digits = []
        for field, x in (("a", a), ("b", b)):
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or not 0 <= x < 10**d:
                raise ConfigError(field, x, f"an int in [0, {10**d - 1}] (at most max_digits={d} digits)",
                                  f"{self.name}.problem_from_ints")
            s = str(int(x))
            digits.append((np.asarray([int(c) for c in reversed(s)] + [0] * (d - len(s)), np.int32), len(s)))
        (da, la), (db, lb) = digits
        return self._build_jit(da, np.int32(la), db, np.int32(lb))

    def _build(self, a: jax.Array, la: jax.Array, b: jax.Array, lb: jax.Array) -> Problem:
        """The problem for operand digits ``a``, ``b`` (int32 ``[max_digits]``, least-significant first, zero
        beyond their lengths ``la``, ``lb``, canonical numbers)."""
        v, d = self.vocab, self.max_digits
        la, lb = jnp.asarray(la, jnp.int32), jnp.asarray(lb, jnp.int32)
        m = jnp.maximum(la, lb)
        zero = jnp.zeros((1,), jnp.int32)

        def column(carry, ab):  # a_k + b_k + carry_in = 10 * carry_out + s_k
            total = ab[0] + ab[1] + carry
            return total // 10, (total % 10, total // 10)

        columns = (jnp.concatenate([a, zero]), jnp.concatenate([b, zero]))  # d + 1 columns: room for the final carry
        _, (s, c) = jax.lax.scan(column, jnp.zeros((), jnp.int32), columns)
        n_sum = m + c[m - 1]  # s[m] is the final carry; s[k > m] = 0
        digits = s if self.reverse_answer else lsb_to_msb(s, n_sum)
        answer_tokens = v.digit(digits)

        prompt = pack([const("<bos>", "<q>"), (v.digit(lsb_to_msb(a, la)), la), const("+"),
                       (v.digit(lsb_to_msb(b, lb)), lb), const("=", "</q>")], self.prompt_len)
        segments = []
        if self.scratchpad:
            comma = jnp.full((d,), v.id(","), jnp.int32)
            groups = interleave(v.digit(s[:d]), v.digit(c[:d]), comma)  # s_0 c_0 , s_1 c_1 , ...
            segments += [const("<think>"), (groups, 3 * m - 1), const("</think>")]
        segments += [const("<a>"), (answer_tokens, n_sum), const("</a>", "<eos>")]
        return Problem(
            prompt=prompt,
            answer=pack([(answer_tokens, n_sum)], self.answer_len),
            solution=pack(segments, self.solution_len),
            difficulty=m,
        )

    # ------------------------------------------------------------------------------------------ teachers
    def parse_problem(self, tokens: jax.Array) -> tuple[Problem, jax.Array]:
        """Parse a teacher-written problem ``[<bos>] <q> a + b = </q> <a> answer </a> [<eos>]`` (jit/vmap-able).

        Args:
          tokens: int32 ``[T]`` for any static ``T``; everything after ``</a> <eos>`` is ignored, ``</a>``
            must be followed by ``<eos>``, ``<pad>`` or the end of the array.

        Returns:
          ``(problem, valid)``. ``valid`` (bool scalar) is True when the question is well formed (``a`` and
          ``b`` canonical numbers of 1..max_digits digits, i.e. no leading zeros) and the written answer is
          1..answer_len digits. ``problem`` is built from the question with the *true* sum as its answer (so
          it is exactly what :meth:`problem_from_ints` gives); when invalid it is the placeholder ``0 + 0``.
          The teacher's own answer is ``extract_answer(tokens)`` and was right iff
          ``is_correct(problem, tokens)``; to train on it as written (SOAR does not verify answers) use
          ``problem.replace(answer=extract_answer(tokens, strict=True)[0])``. The frame (``<q>``, ``</q> <a>``,
          the answer, what may follow ``</a>``) is :meth:`~jaxrl_self.core.SequenceTask.parse_frame`, shared by
          every task.
        """
        v, d = self.vocab, self.max_digits
        t = jnp.asarray(tokens, jnp.int32)
        n_tok = t.shape[-1]
        pos = jnp.arange(n_tok)
        is_digit = v.digit_value(t) >= 0
        frame = self.parse_frame(t)  # [<bos>] <q> ... </q> <a> digits </a> [<eos>|<pad>]
        q_start, eq = frame["q_start"], frame["q_end"] - 1  # the question must end with "="

        def at(i):
            return take(t, i, v.PAD)

        plus = first_index((pos >= q_start) & (pos < eq) & (t == v.id("+")), n_tok)
        la, lb = plus - q_start, eq - plus - 1

        def canonical(start, length):
            region = (pos >= start) & (pos < start + length)
            no_leading_zero = (length == 1) | (at(start) != v.digit(0))
            return (length >= 1) & (length <= d) & jnp.all(is_digit | ~region) & no_leading_zero

        valid = frame["valid"] & (at(eq) == v.id("=")) & canonical(q_start, la) & canonical(plus + 1, lb)
        k = jnp.arange(d, dtype=jnp.int32)
        a = jnp.where(valid & (k < la), v.digit_value(at(plus - 1 - k)), 0)
        b = jnp.where(valid & (k < lb), v.digit_value(at(eq - 1 - k)), 0)
        one = jnp.ones((), jnp.int32)
        return self._build(a, jnp.where(valid, la, one), b, jnp.where(valid, lb, one)), valid

    def __repr__(self) -> str:
        return (f"{self.name}(max_digits={self.max_digits}, reverse_answer={self.reverse_answer}, "
                f"scratchpad={self.scratchpad})")
