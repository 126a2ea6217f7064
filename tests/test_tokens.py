"""Token tasks (jaxrl_self.envs.tokens): formats, arithmetic, verifier, difficulty ranges, length law, parser.

Every check decodes tokens to text and recomputes the arithmetic in plain Python.
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self.core.sequence import VOCAB, Problem
from jaxrl_self.envs import check_env, make
from jaxrl_self.envs.tokens import AdditionParams, AdditionTask, ChainParams, ChainTask

N_SAMPLES = 300


# Compiling is the cost on a small CPU machine: tasks and their jitted functions are cached so that each program
# is compiled once per session, and params are passed as traced arguments (one program for every range).
def addition(max_digits: int = 4, reverse: bool = True, scratch: bool = False) -> AdditionTask:
    return _cached(AdditionTask, max_digits, reverse_answer=reverse, scratchpad=scratch)


def chain(cap: int = 12, echo: bool = False) -> ChainTask:
    return _cached(ChainTask, cap, echo_ops=echo)


@functools.lru_cache(maxsize=None)
def _cached(cls, *args, **kwargs):
    return cls(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def sampler(task):
    """Jitted ``(keys[B], params) -> Problem[B]``."""
    return jax.jit(jax.vmap(task.sample_problem, (0, None)))


@functools.lru_cache(maxsize=None)
def judge_batch(task):
    """Jitted ``(Problem[B], responses[B, L]) -> bool[B]``."""
    return jax.jit(jax.vmap(task.is_correct))


@functools.lru_cache(maxsize=None)
def extractor(task):
    """Jitted ``responses[B, L] -> (answers[B, answer_len], valid[B])``."""
    return jax.jit(jax.vmap(task.extract_answer))


@functools.lru_cache(maxsize=None)
def parser(task):
    """Jitted ``tokens[B, T] -> (Problem[B], valid[B])``."""
    return jax.jit(jax.vmap(task.parse_problem))


def repeat(problem: Problem, rows: int = 64) -> Problem:
    return jax.tree.map(lambda x: np.broadcast_to(x, (rows, *np.shape(x))), jax.device_get(problem))


BATCH = 1024  # every sampler call uses this batch size (one compiled program per task)


def sample(task, n, params=None, seed=0) -> Problem:
    """``n`` problems (host numpy), drawn in fixed-size vmapped batches."""
    params = task.default_params if params is None else params
    keys = jax.random.split(jax.random.key(seed), -(-n // BATCH) * BATCH).reshape(-1, BATCH)
    chunks = [jax.device_get(sampler(task)(k, params)) for k in keys]
    return jax.tree.map(lambda *x: np.concatenate(x)[:n], *chunks)


def row(problems: Problem, i: int) -> Problem:
    return jax.tree.map(lambda x: x[i], problems)


def words(task, tokens) -> list[str]:
    return task.to_text(tokens).split()


def response(text: str, length: int) -> np.ndarray:
    """Encode a response string, right-padded with PAD to ``length``."""
    ids = VOCAB.encode(text)
    return np.pad(ids, (0, length - len(ids))).astype(np.int32)


def responses(texts: list[str], length: int, rows: int = 64) -> np.ndarray:
    """``[rows, length]``: the encoded texts, then all-PAD rows (a fixed batch shape: one compiled program)."""
    out = np.zeros((rows, length), np.int32)
    out[: len(texts)] = [response(t, length) for t in texts]
    return out


def same(p: Problem, q: Problem) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(q)))


# ------------------------------------------------------------------------------------------- reference maths
def reference_addition(a_str: str, b_str: str):
    """Plain-Python sum digits and scratchpad groups (least-significant column first)."""
    a, b = int(a_str), int(b_str)
    cols = max(len(a_str), len(b_str))
    carry, groups = 0, []
    for k in range(cols):
        total = (a // 10**k) % 10 + (b // 10**k) % 10 + carry
        carry = total // 10
        groups.append((str(total % 10), str(carry)))
    return str(a + b), groups


def reference_chain(x0: int, ops: list[tuple[str, int]]) -> list[int]:
    values, v = [], x0
    for op, d in ops:
        v = {"+": v + d, "-": v - d, "*": v * d}[op] % 10
        values.append(v)
    return values


def truncated_power_law(alpha: float, lo: int, hi: int, cap: int) -> np.ndarray:
    n = np.arange(1, cap + 1, dtype=np.float64)
    p = np.where((n >= lo) & (n <= hi), n ** -alpha, 0.0)
    return p / p.sum()


# ------------------------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", ["addition", "chain"])
def test_check_env_registered(name):
    report = check_env(make(name))
    assert report["kind"] == "SequenceTask"


def test_static_lengths():
    a = AdditionTask(6)
    assert (a.prompt_len, a.answer_len, a.solution_len) == (17, 7, 10)
    assert AdditionTask(6, scratchpad=True).solution_len == 29
    c = ChainTask(32)
    assert (c.prompt_len, c.answer_len, c.solution_len) == (68, 1, 38)
    assert ChainTask(32, echo_ops=True).solution_len == 102
    assert (make("addition").max_digits, make("chain").max_steps_cap) == (6, 32)


# ------------------------------------------------------------------------------------------- addition
@pytest.mark.parametrize("reverse,scratch", [(True, False), (False, False), (True, True), (False, True)])
def test_addition_arithmetic(reverse, scratch):
    task = addition(4, reverse, scratch)
    ps = sample(task, N_SAMPLES)
    seen_n = set()
    for i in range(N_SAMPLES):
        prompt = words(task, ps.prompt[i])
        assert prompt[:2] == ["<bos>", "<q>"] and prompt[-2:] == ["=", "</q>"]
        body = prompt[2:-2]
        plus = body.index("+")
        a_str, b_str = "".join(body[:plus]), "".join(body[plus + 1:])
        n = len(a_str)
        assert len(b_str) == n == int(ps.difficulty[i]) and 1 <= n <= 4
        assert n == 1 or (a_str[0] != "0" and b_str[0] != "0")  # exactly n digits
        seen_n.add(n)
        total, groups = reference_addition(a_str, b_str)
        answer = list(total[::-1] if reverse else total)
        assert words(task, ps.answer[i]) == answer
        expected = ["<a>", *answer, "</a>", "<eos>"]
        if scratch:
            think = [t for k, (s, c) in enumerate(groups) for t in ((",",) if k else ()) + (s, c)]
            expected = ["<think>", *think, "</think>", *expected]
        assert words(task, ps.solution[i]) == expected, task.problem_to_text(row(ps, i))
    assert seen_n == {1, 2, 3, 4}


def test_addition_hand_computed_and_text():
    task = addition(4, True, True)
    p = task.problem_from_ints(57, 68)  # 7+8 = 15: digit 5 carry 1; 5+6+1 = 12: digit 2 carry 1; 125
    assert task.problem_to_text(p) == "<bos> <q> 5 7 + 6 8 = </q>  =>  <think> 5 1 , 2 1 </think> <a> 5 2 1 </a> <eos>"
    assert task.to_text(p.answer) == "5 2 1" and int(p.difficulty) == 2
    assert task.to_text(task.problem_from_ints(12, 34).solution) == "<think> 6 0 , 4 0 </think> <a> 6 4 </a> <eos>"
    assert repr(task) == "AdditionTask(max_digits=4, reverse_answer=True, scratchpad=True)"
    plain = addition(4, False, False)
    assert plain.to_text(plain.problem_from_ints(12, 34).prompt) == "<bos> <q> 1 2 + 3 4 = </q>"
    assert plain.to_text(plain.problem_from_ints(999, 1).solution) == "<a> 1 0 0 0 </a> <eos>"
    assert int(plain.problem_from_ints(999, 1).difficulty) == 3  # unequal lengths: the longer one
    assert plain.to_text(plain.problem_from_ints(0, 0).solution) == "<a> 0 </a> <eos>"
    longest = plain.problem_from_ints(9999, 9999)  # fills every array exactly
    assert plain.to_text(longest.answer) == "1 9 9 9 8"
    assert int(longest.prompt[-1]) == VOCAB.Q_END and int(longest.solution[-1]) == VOCAB.EOS
    # problem_from_ints agrees with the sampler
    ps = sample(task, 4, seed=3)
    for i in range(4):
        body = words(task, ps.prompt[i])[2:-2]
        plus = body.index("+")
        assert same(task.problem_from_ints(int("".join(body[:plus])), int("".join(body[plus + 1:]))), row(ps, i))


def test_addition_difficulty_range_and_vmapped_params():
    task = addition(4)
    # (params are passed as int32 arrays, like default_params, so that the compiled sampler is reused)
    ps = sample(task, 400, AdditionParams(min_digits=jnp.int32(2), max_digits=jnp.int32(3)))
    counts = np.bincount(ps.difficulty, minlength=5)
    assert counts[[0, 1, 4]].sum() == 0 and counts[2] > 150 and counts[3] > 150
    assert [words(task, p).index("+") - 2 for p in ps.prompt[:50]] == list(ps.difficulty[:50])
    assert task.max_difficulty == 4
    assert set(sample(task, 64, task.difficulty_params(3)).difficulty.tolist()) == {3}
    # n == 1: operands are 0..9 (a leading zero is allowed only there)
    ones = sample(task, 300, AdditionParams(jnp.int32(1), jnp.int32(1)), seed=5)
    assert {words(task, p)[2] for p in ones.prompt} == {str(d) for d in range(10)}
    # a batch of params (one range per lane), vmapped together with the keys
    params = AdditionParams(min_digits=jnp.asarray([1, 3, 4, 2]), max_digits=jnp.asarray([1, 3, 4, 4]))
    keys = jax.random.split(jax.random.key(1), (4, 64))
    difficulty = jax.vmap(jax.vmap(lambda k, p: task.sample_problem(k, p).difficulty, (0, None)))  # small program
    d = np.asarray(jax.jit(difficulty)(keys, params))
    assert (d[0] == 1).all() and (d[1] == 3).all() and (d[2] == 4).all() and set(d[3].tolist()) == {2, 3, 4}


# ------------------------------------------------------------------------------------------- verifier
def test_is_correct_accepts_and_rejects():
    task = addition(4)
    p = task.problem_from_ints(57, 68)  # reversed answer: 5 2 1; answer_len = 5
    cases = {
        "<a> 5 2 1 </a> <eos>": True,
        "<think> 5 1 , 2 1 </think> <a> 5 2 1 </a> <eos>": True,  # after a scratchpad
        "<think> 7 + 8 </think> <a> 5 2 1 </a> <eos>": True,  # any reasoning
        "<a> 5 2 1 <eos>": True,  # closed by <eos>
        "<a> 5 2 1 </a> <eos> 9 9 <a> 1": True,  # what follows is ignored
        "<a> 5 3 1 </a> <eos>": False,  # wrong digit
        "<a> 1 2 5 </a> <eos>": False,  # not reversed
        "5 2 1 </a> <eos>": False,  # missing <a>
        "<a> 5 2 1": False,  # missing closing tag (then PAD)
        "<a> 5 2 1 0 </a> <eos>": False,  # an extra digit
        "<a> 5 2 </a> <eos>": False,  # a missing digit
        "<a> 5 2 1 0 0 0 </a> <eos>": False,  # longer than answer_len
        "<a> </a> <eos>": False,  # empty
        "": False,  # all PAD
    }
    texts = list(cases)
    got = np.asarray(judge_batch(task)(repeat(p), responses(texts, 24)))
    assert dict(zip(texts, got[: len(texts)].tolist())) == cases
    answers, valid = jax.device_get(extractor(task)(responses(texts, 24)))
    assert words(task, answers[0]) == ["5", "2", "1"] and valid[0]
    too_long = texts.index("<a> 5 2 1 0 0 0 </a> <eos>")
    assert not valid[too_long] and (answers[too_long] == VOCAB.PAD).all()  # invalid answers come back all-PAD


def test_is_correct_chain():
    task = chain(12)
    p = task.problem_from_ops(7, [("+", 3), ("*", 2), ("-", 4)])
    assert task.problem_to_text(p) == "<bos> <q> 7 + 3 * 2 - 4 </q>  =>  <think> 0 0 6 </think> <a> 6 </a> <eos>"
    assert task.to_text(task.problem_from_ops(4, [("-", 7)]).solution) == "<think> 7 </think> <a> 7 </a> <eos>"
    assert repr(task) == "ChainTask(max_steps_cap=12, echo_ops=False)"
    cases = {
        "<think> 0 0 6 </think> <a> 6 </a> <eos>": True,
        "<think> 1 </think> <a> 6 </a> <eos>": True,
        "<think> + 3 0 * 2 0 - 4 6 </think> <a> 6 </a> <eos>": True,  # echo_ops format
        "<a> 5 </a> <eos>": False,
        "<a> 6 6 </a> <eos>": False,  # too long (answer_len = 1)
        "<think> 0 0 6 </think> 6 </a>": False,
        "<a> 6": False,
    }
    texts = list(cases)
    got = np.asarray(judge_batch(task)(repeat(p), responses(texts, task.solution_len)))
    assert dict(zip(texts, got[: len(texts)].tolist())) == cases


# ------------------------------------------------------------------------------------------- chain
@pytest.mark.parametrize("echo", [False, True])
def test_chain_arithmetic(echo):
    task = chain(12, echo)
    ps = sample(task, N_SAMPLES, seed=1)
    mul_operands = set()
    for i in range(N_SAMPLES):
        prompt = words(task, ps.prompt[i])
        assert prompt[:2] == ["<bos>", "<q>"] and prompt[-1] == "</q>"
        x0, rest = int(prompt[2]), prompt[3:-1]
        ops = [(rest[2 * k], int(rest[2 * k + 1])) for k in range(len(rest) // 2)]
        assert len(rest) == 2 * len(ops) and len(ops) == int(ps.difficulty[i])
        mul_operands |= {d for op, d in ops if op == "*"}
        values = reference_chain(x0, ops)
        think = [t for (op, d), v in zip(ops, values) for t in ((op, str(d), str(v)) if echo else (str(v),))]
        assert words(task, ps.solution[i]) == ["<think>", *think, "</think>", "<a>", str(values[-1]), "</a>", "<eos>"]
        assert words(task, ps.answer[i]) == [str(values[-1])]
        assert len(words(task, ps.solution[i])) == task.response_length(len(ops))
    assert mul_operands == {1, 3, 7, 9}  # the units mod 10: every step is a bijection
    assert task.max_difficulty == 12
    assert set(sample(task, 64, task.difficulty_params(7)).difficulty.tolist()) == {7}
    if not echo:  # x0 uniform and every step a bijection: the answer is uniform over 0..9
        many = sample(task, 4000, seed=2)
        freq = np.bincount(np.asarray(many.answer[:, 0]) - VOCAB.digit(0), minlength=10) / 4000
        assert np.abs(freq - 0.1).max() < 0.025


def chi_square(counts: np.ndarray, probs: np.ndarray, total: int) -> tuple[float, float]:
    """Pearson chi-square over cells with expected count >= 5 (the rest merged), and the 99.9 % quantile of
    the chi-square law with the matching degrees of freedom (Wilson-Hilferty approximation)."""
    expected = probs * total
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    df = keep.sum() - 1
    z = 3.09
    return stat, df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("alpha,lo,hi", [(1.2, 1, 32), (2.0, 3, 20), (0.0, 5, 9)])
def test_chain_length_law(alpha, lo, hi):
    task = chain(32)
    probs = truncated_power_law(alpha, lo, hi, 32)
    params = ChainParams(alpha=jnp.float32(alpha), min_steps=jnp.int32(lo), max_steps=jnp.int32(hi))
    np.testing.assert_allclose(np.asarray(jax.jit(task.step_probs)(params)), probs, rtol=1e-5, atol=1e-7)
    total = 20_000
    n = np.asarray(sample(task, total, params, seed=7).difficulty)
    assert n.min() >= lo and n.max() <= hi
    stat, threshold = chi_square(np.bincount(n - 1, minlength=32), probs, total)
    assert stat < threshold, (stat, threshold)
    if alpha > 0:  # heavy tail: most chains short, a few long
        assert np.median(n) <= lo + 2 and (n > hi // 2).mean() > 0.01


def test_chain_length_stats_defaults():
    stats = chain(32).length_stats()
    p = truncated_power_law(1.2, 1, 32, 32)
    n = np.arange(1, 33)
    cdf = np.cumsum(p)
    assert stats["steps_mean"] == pytest.approx(p @ n, rel=1e-5)
    assert stats["response_mean"] == pytest.approx(p @ n + 6, rel=1e-5)
    for key, q in (("median", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert stats[f"steps_{key}"] == n[np.argmax(cdf >= q)]
        assert stats[f"response_{key}"] == stats[f"steps_{key}"] + 6
    assert stats["response_max"] == 38


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("make_bad,pattern", [
    (lambda: AdditionTask(0), r"max_digits=0 .*\[1, 64\]"),
    (lambda: AdditionTask(6.0), r"max_digits=6\.0"),
    (lambda: AdditionTask(6, reverse_answer=1), r"reverse_answer=1 .*True or False"),
    (lambda: AdditionTask(3, min_digits=4), r"min_digits=4 .*min_digits <= max_digits \(= 3\)"),
    (lambda: ChainTask(0), r"max_steps_cap=0"),
    (lambda: ChainTask(8, max_steps=9), r"max_steps=9 .*<= 8"),
    (lambda: ChainTask(8, min_steps=0), r"min_steps=0 .*1 <= min_steps"),
    (lambda: ChainTask(8, alpha=float("nan")), r"alpha=nan .*finite"),
    (lambda: ChainTask(8, echo_ops="yes"), r"echo_ops='yes'"),
    (lambda: make("addition", max_digits=-1), r"max_digits=-1"),
])
def test_constructor_errors(make_bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_bad()


def test_param_errors_name_field_value_and_range():
    task = addition(4)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"AdditionParams\.min_digits=4 .*max_digits \(= 3\)"):
        task.sample_problem(key, AdditionParams(min_digits=4, max_digits=3))
    with pytest.raises(ValueError, match=r"max_digits=7 .*1 <= max_digits <= 4"):
        task.sample_problem(key, AdditionParams(min_digits=1, max_digits=7))
    with pytest.raises(ValueError, match=r"min_digits=0"):  # batched params are checked element-wise
        task.validate_params(AdditionParams(min_digits=jnp.asarray([1, 0]), max_digits=jnp.asarray([2, 2])))
    with pytest.raises(ValueError, match=r"min_digits=1\.5 .*integer"):
        task.validate_params(AdditionParams(min_digits=1.5, max_digits=3))
    with pytest.raises(ValueError, match=r"a=-1"):
        task.problem_from_ints(-1, 3)
    with pytest.raises(ValueError, match=r"b=12345 .*at most max_digits=4"):
        task.problem_from_ints(1, 12345)
    c = chain(12)
    with pytest.raises(ValueError, match=r"ChainParams\.max_steps=13 .*<= 12"):
        c.sample_problem(key, ChainParams(alpha=1.0, min_steps=1, max_steps=13))
    with pytest.raises(ValueError, match=r"min_steps=5 .*max_steps \(= 4\)"):
        c.sample_problem(key, ChainParams(alpha=1.0, min_steps=5, max_steps=4))
    with pytest.raises(ValueError, match=r"ops\[1\]=\('/', 2\)"):
        c.problem_from_ops(3, [("+", 1), ("/", 2)])
    with pytest.raises(ValueError, match=r"x0=10"):
        c.problem_from_ops(10, [("+", 1)])
    # traced params cannot be checked; they are clamped into range instead
    bad = ChainParams(alpha=jnp.float32(1.0), min_steps=jnp.int32(0), max_steps=jnp.int32(99))
    d = np.asarray(sample(c, 64, bad).difficulty)
    assert d.min() >= 1 and d.max() <= 12


# ------------------------------------------------------------------------------------------- teacher parser
def test_parse_problem_valid():
    task = addition(4)
    texts = [
        "<bos> <q> 5 7 + 6 8 = </q> <a> 5 2 1 </a> <eos>",
        "<q> 1 2 3 + 4 = </q> <a> 9 9 </a>",  # no <bos>, no <eos> (both optional); a wrong answer is well formed
    ]
    tokens = responses(texts, 24)
    ps, ok = jax.device_get(parser(task)(tokens))
    assert ok[:2].all()
    assert same(row(ps, 0), task.problem_from_ints(57, 68)) and same(row(ps, 1), task.problem_from_ints(123, 4))
    # was the teacher right? is_correct reads the <a> .. </a> the teacher wrote
    assert np.asarray(judge_batch(task)(ps, tokens))[:2].tolist() == [True, False]
    written = row(ps, 1).replace(answer=extractor(task)(tokens)[0][1])  # train on the answer as written
    assert task.to_text(written.answer) == "9 9"
    # every sampled problem, written out as a teacher would, parses back to itself
    sampled = sample(task, 64, seed=4)
    texts = [f"{task.to_text(sampled.prompt[i])} {task.to_text(sampled.solution[i])}" for i in range(64)]
    written = responses(texts, 24)
    back, ok = jax.device_get(parser(task)(written))
    assert ok.all() and same(back, sampled)


REJECTED = [
    "<bos> <q> 0 7 + 6 8 = </q> <a> 5 </a> <eos>",          # leading zero
    "<bos> <q> 5 7 + 6 8 </q> <a> 5 </a> <eos>",            # no '='
    "<bos> <q> 5 7 - 6 8 = </q> <a> 5 </a> <eos>",          # wrong operator
    "<bos> <q> 5 7 + 6 + 8 = </q> <a> 5 </a> <eos>",        # three operands
    "<bos> <q> 5 a + 6 8 = </q> <a> 5 </a> <eos>",          # a letter
    "<bos> <q> + 6 8 = </q> <a> 5 </a> <eos>",              # empty operand
    "<bos> <q> 1 2 3 4 5 + 6 = </q> <a> 5 </a> <eos>",      # more than max_digits
    "<bos> <q> 5 7 + 6 8 = </q> <a> 5 2 1 <eos>",           # answer not closed
    "<bos> <q> 5 7 + 6 8 = </q> <a> </a> <eos>",            # empty answer
    "<bos> <q> 5 7 + 6 8 = </q> <a> 5 2 1 2 3 4 </a> <eos>",  # answer too long
    "<bos> <q> 5 7 + 6 8 = </q> <a> 5 , 1 </a> <eos>",      # non-digit answer
    "<bos> <q> 5 7 + 6 8 = </q> <a> 5 2 1 </a> 7 <eos>",    # junk after </a>
    "<bos> <q> 5 7 + 6 8 = <a> 5 2 1 </a> <eos>",           # no </q>
    "<bos> 5 7 + 6 8 = </q> <a> 5 2 1 </a> <eos>",          # no <q>
    "",                                                      # nothing
]


def test_parse_problem_rejects():
    task = addition(4)
    ps, ok = jax.device_get(parser(task)(responses(REJECTED, 24)))
    assert dict(zip(REJECTED, ok[: len(REJECTED)].tolist())) == {t: False for t in REJECTED}
    assert {task.to_text(p) for p in ps.prompt} == {"<bos> <q> 0 + 0 = </q>"}  # the placeholder


CHAIN_REJECTED = [
    "<bos> <q> 7 + 3 * </q> <a> 5 </a> <eos>",        # an op without its digit
    "<bos> <q> 7 3 + 3 </q> <a> 5 </a> <eos>",        # two digits in a row
    "<bos> <q> 7 / 3 </q> <a> 5 </a> <eos>",          # not one of + - *
    "<bos> <q> 7 </q> <a> 7 </a> <eos>",              # no step
    "<bos> <q> 7 + 1 + 1 + 1 + 1 + 1 </q> <a> 2 </a> <eos>",  # more steps than max_steps_cap=4
    "<bos> <q> 7 + 3 </q> <a> 1 0 </a> <eos>",        # answer longer than answer_len=1
    "<bos> <q> 7 + 3 </q> <a> 0 <eos>",               # answer not closed by </a>
    "<bos> <q> 7 + 3 </q> <a> 0 </a> + <eos>",        # junk after </a>
    "<q> + 3 </q> <a> 0 </a>",                        # no start digit
]


def test_chain_parse_problem():
    task = chain(4)
    texts = ["<bos> <q> 7 + 3 * 9 - 4 </q> <a> 6 </a> <eos>", "<q> 2 * 5 </q> <a> 3 </a>"]  # right, wrong
    ps, ok = jax.device_get(parser(task)(responses(texts, 24)))
    assert ok[:2].all()
    assert same(row(ps, 0), task.problem_from_ops(7, [("+", 3), ("*", 9), ("-", 4)]))
    assert same(row(ps, 1), task.problem_from_ops(2, [("*", 5)]))  # any digit operand, as problem_from_ops
    assert np.asarray(judge_batch(task)(ps, responses(texts, 24)))[:2].tolist() == [True, False]
    # every sampled problem, written out, parses back to itself
    sampled = sample(task, 64, seed=5)
    written = responses([f"{task.to_text(sampled.prompt[i])} <a> {task.to_text(sampled.answer[i])} </a> <eos>"
                         for i in range(64)], 24)
    back, ok = jax.device_get(parser(task)(written))
    assert ok.all() and same(back, sampled)
    ps, ok = jax.device_get(parser(task)(responses(CHAIN_REJECTED, 24)))
    assert dict(zip(CHAIN_REJECTED, ok[: len(CHAIN_REJECTED)].tolist())) == {t: False for t in CHAIN_REJECTED}
    assert {task.to_text(p) for p in ps.prompt} == {"<bos> <q> 0 + 0 </q>"}  # the placeholder


STRICT = [  # (response, lenient valid, strict valid)
    ("<a> 5 2 1 </a> <eos>", True, True),
    ("<think> 1 0 </think> <a> 5 2 1 </a> <eos> <pad>", True, True),
    ("<a> 5 2 1 </a>", True, True),                   # cut right after </a>: nothing follows
    ("<a> 5 2 1 </a> <eos> <eos>", True, True),
    ("<a> 5 2 1 </a> 7 7 + <q>", True, False),         # junk after </a>
    ("<a> 5 2 1 <eos>", True, False),                  # closed by EOS, not </a>
    ("<a> + </a>", True, False),                       # not digits
    ("<a> 5 a </a> <eos>", True, False),
    ("<a> </a> <eos>", False, False),
    ("5 2 1 </a> <eos>", False, False),
]


def test_strict_answers():
    task = addition(4)
    texts = [t for t, _, _ in STRICT]
    tokens = responses(texts, 16)
    lenient = np.asarray(extractor(task)(tokens)[1])[: len(STRICT)]
    answers, strict = jax.device_get(jax.jit(jax.vmap(lambda r: task.extract_answer(r, strict=True)))(tokens))
    assert dict(zip(texts, lenient.tolist())) == {t: a for t, a, _ in STRICT}
    assert dict(zip(texts, strict[: len(STRICT)].tolist())) == {t: b for t, _, b in STRICT}
    assert task.to_text(answers[0]) == "5 2 1" and task.to_text(answers[4]) == ""  # invalid: all PAD
    # the strict verifier agrees with the problem parser: a written problem's answer is valid in both or neither
    problem = task.problem_from_ints(57, 68)  # 125, written reversed: 5 2 1
    ok = jax.vmap(lambda r: task.is_correct(problem, r, strict=True))(tokens)
    assert np.asarray(ok)[: len(STRICT)].tolist() == [b and "5 2 1" in t for t, _, b in STRICT]
    plain = [(i, t) for i, t in enumerate(texts) if "<think>" not in t]  # a written problem has no reasoning
    prefixed = responses([f"<q> 5 7 + 6 8 = </q> {t}" for _, t in plain], 24)
    parsed_ok = np.asarray(parser(task)(prefixed)[1])[: len(plain)]
    assert parsed_ok.tolist() == [bool(strict[i]) for i, _ in plain]


# ------------------------------------------------------------------------------------------- speed
def test_vmap_1024_fast():
    for task in (addition(4), chain(32)):
        keys = jax.random.split(jax.random.key(0), 1024)
        fn = sampler(task)
        jax.block_until_ready(fn(keys, task.default_params))  # compile
        t0 = time.perf_counter()
        ps = jax.block_until_ready(fn(keys, task.default_params))
        assert time.perf_counter() - t0 < 1.0  # (about a millisecond when the machine is idle)
        assert ps.prompt.shape == (1024, task.prompt_len) and ps.prompt.dtype == jnp.int32
        assert ps.solution.shape == (1024, task.solution_len) and ps.difficulty.shape == (1024,)
