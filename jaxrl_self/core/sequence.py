"""The sequence-task contract for language-model-style RL: :class:`Vocabulary`, :class:`Problem`,
:class:`SequenceTask`.

Every token task shares one fixed vocabulary (so one model, teacher or student, can read and write any task)
and one response format::

    prompt   = BOS <q> ...question tokens... </q>                       (right-padded with PAD)
    response = [<think> ...reasoning tokens... </think>] <a> ...answer tokens... </a> EOS

A task samples :class:`Problem` pytrees under jit/vmap; :meth:`SequenceTask.extract_answer` parses a response
(any fixed-length token array) into a PAD-padded answer array plus a validity flag, and
:meth:`SequenceTask.is_correct` is the verifier. Everything except ``to_text`` is a pure JAX function.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = ["Vocabulary", "VOCAB", "Problem", "SequenceTask", "TaskParams"]


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """A fixed token vocabulary. ``tokens[i]`` is the text of token id ``i``."""

    tokens: tuple[str, ...]

    def __post_init__(self):
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("Vocabulary tokens must be unique")

    @property
    def size(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        try:
            return self._index[token]
        except KeyError:
            raise KeyError(f"unknown token {token!r}; the vocabulary has {list(self.tokens)}") from None

    @property
    def _index(self) -> dict[str, int]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {t: i for i, t in enumerate(self.tokens)}
            object.__setattr__(self, "_idx", idx)
        return idx

    def encode(self, text: str | Sequence[str]) -> np.ndarray:
        """Encode a whitespace-separated string (or a list of token strings) into int32 ids."""
        parts = text.split() if isinstance(text, str) else list(text)
        return np.asarray([self.id(t) for t in parts], dtype=np.int32)

    def decode(self, ids: Any, skip_pad: bool = True) -> str:
        """Token ids to text, tokens separated by spaces; PAD dropped by default."""
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if skip_pad and i == self.PAD:
                continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else f"<unk:{i}>")
        return " ".join(out)

    # the special tokens, by name
    @property
    def PAD(self) -> int:
        return self.id("<pad>")

    @property
    def BOS(self) -> int:
        return self.id("<bos>")

    @property
    def EOS(self) -> int:
        return self.id("<eos>")

    @property
    def Q(self) -> int:
        return self.id("<q>")

    @property
    def Q_END(self) -> int:
        return self.id("</q>")

    @property
    def A(self) -> int:
        return self.id("<a>")

    @property
    def A_END(self) -> int:
        return self.id("</a>")

    @property
    def THINK(self) -> int:
        return self.id("<think>")

    @property
    def THINK_END(self) -> int:
        return self.id("</think>")

    def digit(self, d: Any) -> Any:
        """Token id(s) of decimal digit(s) ``d`` (works on traced arrays)."""
        return self.id("0") + d

    def digit_value(self, tok: Any) -> Any:
        """Inverse of :meth:`digit`; -1 for non-digit tokens."""
        v = tok - self.id("0")
        return jnp.where((v >= 0) & (v <= 9), v, -1)


_SPECIAL = ("<pad>", "<bos>", "<eos>", "<q>", "</q>", "<a>", "</a>", "<think>", "</think>")
_DIGITS = tuple(str(d) for d in range(10))
_SYMBOLS = ("+", "-", "*", "/", "%", "=", "(", ")", ",", ";", ":", "?", ">", "<", "|", "#")
_LETTERS = tuple(chr(c) for c in range(ord("a"), ord("z") + 1))
_RESERVED = tuple(f"<r{i}>" for i in range(64 - len(_SPECIAL) - len(_DIGITS) - len(_SYMBOLS) - len(_LETTERS)))

#: The one vocabulary all token tasks share (64 tokens; PAD is 0).
VOCAB = Vocabulary(_SPECIAL + _DIGITS + _SYMBOLS + _LETTERS + _RESERVED)


@struct.dataclass
class Problem:
    """One problem. All arrays are int32 and right-padded with PAD to the task's static lengths.

    * ``prompt``: ``BOS <q> question </q>``
    * ``answer``: the answer tokens alone (what :meth:`SequenceTask.extract_answer` must return)
    * ``solution``: a reference response (``[<think> .. </think>] <a> answer </a> EOS``) for supervised
      pretraining, distillation and teachers that are shown the solution
    * ``difficulty``: the task's difficulty knob for this problem (digits, chain length...)
    """

    prompt: jax.Array
    answer: jax.Array
    solution: jax.Array
    difficulty: jax.Array


@struct.dataclass
class TaskParams:
    """Base class for a task's vmappable parameters (difficulty ranges etc.)."""


def _first_index(mask: jax.Array, default: int) -> jax.Array:
    """Index of the first True in a 1-D mask, or ``default``."""
    idx = jnp.argmax(mask)
    return jnp.where(mask.any(), idx, default).astype(jnp.int32)


class SequenceTask:
    """Base class for token tasks with a verifier.

    Subclasses set the static lengths ``prompt_len``, ``answer_len``, ``solution_len`` in ``__init__`` and
    implement :meth:`sample_problem`. Parsing and verifying are shared: the answer is the tokens after the
    first ``<a>``, up to (not including) the first ``</a>``, ``EOS`` or ``PAD``.
    """

    vocab: Vocabulary = VOCAB
    prompt_len: int
    answer_len: int
    solution_len: int

    @property
    def default_params(self) -> Any:
        return TaskParams()

    def sample_problem(self, key: jax.Array, params: Any = None) -> Problem:
        raise NotImplementedError

    # ------------------------------------------------------------------ parsing and verifying
    def extract_answer(self, response: jax.Array, strict: bool = False) -> tuple[jax.Array, jax.Array]:
        """Parse a 1-D response into ``(answer[answer_len], valid)``.

        ``valid`` is True when the response contains ``<a>``, the answer is non-empty, fits in ``answer_len``
        tokens, and is closed by ``</a>`` or ``EOS``. Invalid answers come back all-PAD.

        ``strict=True`` (used wherever a model's output becomes a label or a problem: majority votes, written
        problems) also demands that the answer is digits only, that it is closed by ``</a>``, and that nothing
        but ``EOS``/``PAD`` follows the ``</a>``: ``<a> 5 2 1 </a> 7 7 + <q>``, ``<a> 5 2 1 <eos>`` and
        ``<a> + </a>`` are well formed only in the lenient default.
        """
        v = self.vocab
        response = jnp.asarray(response, jnp.int32)
        n = response.shape[-1]
        pos = jnp.arange(n)
        start = _first_index(response == v.A, n) + 1  # first token after <a>
        stop_mask = (pos >= start) & ((response == v.A_END) | (response == v.EOS) | (response == v.PAD))
        stop = _first_index(stop_mask, n)
        length = stop - start
        closed = stop < n
        closer = response[jnp.minimum(stop, n - 1)]
        closed = closed & ((closer == v.A_END) | (closer == v.EOS))
        valid = (start <= n) & (length > 0) & (length <= self.answer_len) & closed
        if strict:
            inside = (pos >= start) & (pos < stop)
            digits = jnp.all(~inside | (v.digit_value(response) >= 0))
            tail = jnp.all((pos <= stop) | (response == v.EOS) | (response == v.PAD))
            valid = valid & digits & (closer == v.A_END) & tail
        idx = start + jnp.arange(self.answer_len)
        taken = jnp.where(idx < stop, response[jnp.clip(idx, 0, n - 1)], v.PAD)
        answer = jnp.where(valid, taken, v.PAD).astype(jnp.int32)
        return answer, valid

    def is_correct(self, problem: Problem, response: jax.Array, strict: bool = False) -> jax.Array:
        """The verifier: the extracted answer (:meth:`extract_answer`, ``strict`` or not) equals
        ``problem.answer`` exactly."""
        answer, valid = self.extract_answer(response, strict)
        return valid & jnp.all(answer == problem.answer)

    # ------------------------------------------------------------------ problems written by a model
    def parse_frame(self, tokens: jax.Array) -> dict[str, jax.Array]:
        """The frame every written problem shares: ``[<bos>] <q> QUESTION </q> <a> ANSWER </a> [<eos>|<pad>]``.

        Returns (all jit/vmap-able scalars unless noted): ``q_start`` (index of the question's first token),
        ``q_end`` (index of ``</q>``; the question is ``tokens[q_start:q_end]``), ``answer`` (``[answer_len]``,
        PAD-padded, the written answer), ``valid`` (the frame is well formed: ``<q>`` first (after an optional
        ``<bos>``), ``<a>`` right after ``</q>``, an answer of ``1..answer_len`` digits closed by ``</a>``,
        followed by ``<eos>``, ``<pad>`` or the end of the array; everything after that token is ignored).
        A task's ``parse_problem`` checks the question itself.
        """
        v = self.vocab
        t = jnp.asarray(tokens, jnp.int32)
        n_tok = t.shape[-1]
        pos = jnp.arange(n_tok)
        at = lambda i: jnp.where((i >= 0) & (i < n_tok), t[jnp.clip(i, 0, n_tok - 1)], v.PAD)  # noqa: E731
        q = (t[0] == v.BOS).astype(jnp.int32)  # position of <q> (the leading <bos> is optional)
        q_end = _first_index((pos > q) & (t == v.Q_END), n_tok)
        a_end = _first_index((pos > q_end + 1) & (t == v.A_END), n_tok)
        l_ans = a_end - q_end - 2
        in_answer = (pos > q_end + 1) & (pos < a_end)
        digits = jnp.all(~in_answer | (v.digit_value(t) >= 0))
        after = at(a_end + 1)
        valid = ((at(q) == v.Q) & (q_end < n_tok) & (at(q_end + 1) == v.A) & (a_end < n_tok) & (l_ans >= 1)
                 & (l_ans <= self.answer_len) & digits & ((after == v.EOS) | (after == v.PAD)))
        idx = q_end + 2 + jnp.arange(self.answer_len)
        answer = jnp.where(valid & (idx < a_end), at(idx), v.PAD).astype(jnp.int32)
        return {"q_start": q + 1, "q_end": q_end, "answer": answer, "valid": valid}

    # ------------------------------------------------------------------ humans
    def to_text(self, tokens: Any) -> str:
        """Tokens (prompt, response, solution...) as text, e.g. ``<q> 1 2 + 3 4 = </q>``. Host-side only."""
        return self.vocab.decode(tokens)

    def problem_to_text(self, problem: Problem) -> str:
        return f"{self.to_text(problem.prompt)}  =>  {self.to_text(problem.solution)}"

    # ------------------------------------------------------------------ helpers for subclasses
    def pad_to(self, tokens: jax.Array, length: int) -> jax.Array:
        """Right-pad (or check) a 1-D token array to ``length``."""
        n = tokens.shape[-1]
        if n > length:
            raise ValueError(f"{n} tokens do not fit in {length}")
        return jnp.concatenate([tokens, jnp.full((length - n,), self.vocab.PAD, jnp.int32)]).astype(jnp.int32)

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}()"
