"""Tests for LM pretraining (lm/pretrain.py), evaluation (lm/evaluate.py), majority vote (lm/majority.py),
the shipped base models (lm/base_models.py) and the ``pretrain`` / ``eval-lm`` commands.

References are plain Python/numpy: ``collections.Counter`` for majority votes, ``math.comb`` for pass@k, a
numpy log-softmax over exactly the solution positions for the loss, hand-built oracle and corrupted responses
for the evaluator.
"""
from __future__ import annotations

import collections
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import envs, lm
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB
from jaxrl_self.lm import base_models
from jaxrl_self.run import pretrain as pretrain_driver
from jaxrl_self.lm.evaluate import grade, held_out_problems, pass_at_k, summarize
from jaxrl_self.lm.majority import majority_vote
from jaxrl_self.lm.pretrain import (PretrainConfig, learning_rate_at, make_packed_sequences, make_problem_sampler,
                                    make_sequences, make_train, sequence_loss, token_nll)
from jaxrl_self.nets.transformer import TransformerConfig, apply, causal_mask, init_params

TINY = TransformerConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, max_len=16, positional="learned")


# ============================================================================================ majority vote
def _counter_vote(answers: np.ndarray, valid: np.ndarray):
    """Reference: most common valid answer; ties -> the tied answer whose first occurrence is earliest."""
    rows = [tuple(a) for a, v in zip(answers.tolist(), valid.tolist()) if v]
    if not rows:
        return None, 0
    counts = collections.Counter(rows)
    best = max(counts.values())
    first = {}
    for i, (a, v) in enumerate(zip(answers.tolist(), valid.tolist())):
        if v and tuple(a) not in first:
            first[tuple(a)] = i
    winner = min((a for a, c in counts.items() if c == best), key=lambda a: first[a])
    return winner, best


@pytest.mark.parametrize("n", [1, 12])  # smaller sets are covered too: rows marked invalid never vote
def test_majority_vote_matches_counter(n):
    rng = np.random.default_rng(n)
    batch = 300
    # a 3-letter alphabet over 2 tokens: 9 distinct answers, so ties and repeats are frequent
    answers = rng.integers(0, 3, size=(batch, n, 2)).astype(np.int32)
    valid = rng.random((batch, n)) < rng.choice([0.0, 0.5, 0.9, 1.0], size=(batch, 1))
    vote = jax.jit(jax.vmap(majority_vote))(answers, valid)
    ties_seen = 0
    for b in range(batch):
        want, count = _counter_vote(answers[b], valid[b])
        assert int(vote.count[b]) == count
        assert bool(vote.has_majority[b]) == (want is not None)
        if want is None:
            assert np.all(np.asarray(vote.answer[b]) == VOCAB.PAD)
        else:
            assert tuple(np.asarray(vote.answer[b]).tolist()) == want
            c = collections.Counter(tuple(a) for a, v in zip(answers[b].tolist(), valid[b].tolist()) if v)
            ties_seen += sum(1 for x in c.values() if x == count) > 1
    if n > 1:
        assert ties_seen > 10  # the tie-break was really exercised


def test_majority_vote_invalid_rows_never_win():
    # the invalid answer (7, 7) appears 3 times, the valid (1, 2) once: the valid one wins with count 1
    answers = np.array([[7, 7], [7, 7], [1, 2], [7, 7]], np.int32)
    valid = np.array([False, False, True, False])
    vote = majority_vote(answers, valid)
    assert vote.answer.tolist() == [1, 2] and int(vote.count) == 1 and bool(vote.has_majority)
    with pytest.raises(ConfigError, match="valid.shape"):
        majority_vote(answers, valid[:3])


# ============================================================================================ pass@k
def test_pass_at_k_matches_exact_formula():
    for n in (1, 2, 7, 10):  # every k and c for each n (each n is a new shape: few n keep the test cheap)
        c = np.arange(n + 1)
        for k in range(1, n + 1):
            want = np.array([1.0 - math.comb(n - ci, k) / math.comb(n, k) for ci in c])
            np.testing.assert_allclose(np.asarray(pass_at_k(n, c, k)), want, rtol=1e-5, atol=1e-6)
    # n = 1, k = 1 is the plain accuracy; c = n is always 1
    assert float(pass_at_k(16, 16, 4)) == 1.0
    with pytest.raises(ConfigError, match="k"):
        pass_at_k(4, 1, 5)


# ============================================================================================ evaluator on oracles
@functools.lru_cache(maxsize=None)
def _problems(task_name: str):
    if task_name == "addition":
        task = envs.make("addition", max_digits=3)
        return task, held_out_problems(task, (1, 2, 3), 12)
    task = envs.make("chain", max_steps_cap=8)
    return task, held_out_problems(task, (1, 3, 8), 12)


@functools.lru_cache(maxsize=None)
def _grade(task):
    return jax.jit(functools.partial(grade, task))


@functools.lru_cache(maxsize=None)
def _summarize(ks, max_difficulty):
    return jax.jit(functools.partial(summarize, ks=ks, max_difficulty=max_difficulty))


def _solution_mask(problems):
    return problems.solution != VOCAB.PAD


def _corrupt(task, problems):
    """Responses whose answer's first token is a different digit (still well formed, always wrong)."""
    sol = np.asarray(problems.solution).copy()
    a_pos = np.argmax(sol == VOCAB.A, axis=1)
    rows = np.arange(sol.shape[0])
    d = sol[rows, a_pos + 1] - VOCAB.digit(0)
    sol[rows, a_pos + 1] = VOCAB.digit((d + 1) % 10)
    return jnp.asarray(sol)


@pytest.mark.parametrize("task_name", ["addition", "chain"])
def test_evaluation_oracle_and_corrupted(task_name):
    task, problems = _problems(task_name)
    n, ks = 4, (1, 2, 4)  # the same shapes as the mixed-samples test (shared compiled programs)
    mask = _solution_mask(problems)
    tile = lambda x: jnp.repeat(x[:, None], n, axis=1)  # noqa: E731
    top = 8 if task_name == "chain" else 3
    oracle = _grade(task)(problems, problems.solution, mask)
    oracle_s = _grade(task)(problems, tile(problems.solution), tile(mask))
    res = _summarize(ks, top)(problems, oracle, oracle_s)
    d = res.to_dict()
    for row in [d["overall"], *d["by_difficulty"].values()]:
        for key in ("greedy_accuracy", "greedy_well_formed", "pass_at_1", "pass@1", "pass@4", "maj@1", "maj@4",
                    "well_formed"):
            assert row[key] == 1.0, (key, row)
    # response lengths are the reference solutions' lengths
    sol_len = np.asarray(mask.sum(1))
    diff = np.asarray(problems.difficulty)
    for dd, row in d["by_difficulty"].items():
        sel = sol_len[diff == int(dd)]
        assert row["num_problems"] == sel.size
        np.testing.assert_allclose(row["length_mean"], sel.mean(), rtol=1e-6)
        np.testing.assert_allclose(row["length_median"], np.quantile(sel, 0.5), rtol=1e-6)
        np.testing.assert_allclose(row["length_p95"], np.quantile(sel, 0.95), rtol=1e-6)
    assert set(d["by_difficulty"]) == {str(x) for x in np.unique(diff)}  # empty difficulties are left out
    assert np.bincount(diff).tolist()[1:] == ([12, 12, 12] if task_name == "addition" else [12, 0, 12] + [0] * 4 + [12])

    bad = _corrupt(task, problems)
    wrong = _grade(task)(problems, bad, mask)
    wrong_s = _grade(task)(problems, tile(bad), tile(mask))
    res = _summarize(ks, top)(problems, wrong, wrong_s)
    o = res.to_dict()["overall"]
    assert o["greedy_accuracy"] == 0.0 and o["pass_at_1"] == 0.0 and o["pass@4"] == 0.0 and o["maj@4"] == 0.0
    assert o["well_formed"] == 1.0 and o["greedy_well_formed"] == 1.0
    # malformed: no <a> at all -> invalid, never correct
    no_a = jnp.where(problems.solution == VOCAB.A, VOCAB.id("+"), problems.solution)
    g = _grade(task)(problems, no_a, mask)
    assert not np.any(np.asarray(g.valid)) and not np.any(np.asarray(g.correct))


def test_summarize_matches_numpy_reference_on_mixed_samples():
    """Each sample is the right answer, one of two wrong answers, or malformed; metrics vs numpy/Counter."""
    task, problems = _problems("addition")
    M, n, ks = problems.prompt.shape[0], 4, (1, 2, 4)
    rng = np.random.default_rng(0)
    kind = rng.choice(4, size=(M, n), p=[0.35, 0.25, 0.2, 0.2])  # 0 right, 1 wrong A, 2 wrong B, 3 malformed
    sol = np.asarray(problems.solution)
    wrong_a = np.asarray(_corrupt(task, problems))
    wrong_b = np.asarray(_corrupt(task, problems.replace(solution=jnp.asarray(wrong_a))))
    malformed = np.where(sol == VOCAB.A, VOCAB.id("+"), sol)
    options = np.stack([sol, wrong_a, wrong_b, malformed], axis=1)  # [M, 4, S]
    responses = options[np.arange(M)[:, None], kind]  # [M, n, S]
    samples = _grade(task)(problems, jnp.asarray(responses), jnp.asarray(responses != VOCAB.PAD))
    greedy = _grade(task)(problems, jnp.asarray(responses[:, 0]), jnp.asarray(responses[:, 0] != VOCAB.PAD))
    d = _summarize(ks, 3)(problems, greedy, samples).to_dict()

    correct = kind == 0
    valid = kind != 3
    diff = np.asarray(problems.difficulty)
    lengths = (responses != VOCAB.PAD).sum(-1)
    for group, sel in [("overall", np.ones(M, bool))] + [(str(x), diff == x) for x in (1, 2, 3)]:
        row = d["overall"] if group == "overall" else d["by_difficulty"][group]
        np.testing.assert_allclose(row["greedy_accuracy"], correct[sel, 0].mean(), rtol=1e-6)
        np.testing.assert_allclose(row["pass_at_1"], correct[sel].mean(), rtol=1e-6)
        np.testing.assert_allclose(row["well_formed"], valid[sel].mean(), rtol=1e-6)
        np.testing.assert_allclose(row["length_mean"], lengths[sel].mean(), rtol=1e-6)
        for k in ks:
            c = correct[sel].sum(1)
            want = np.mean([1.0 - math.comb(n - ci, k) / math.comb(n, k) for ci in c])
            np.testing.assert_allclose(row[f"pass@{k}"], want, rtol=1e-5)
            maj = []
            for m in np.nonzero(sel)[0]:
                winner, _ = _counter_vote(kind[m, :k][:, None], valid[m, :k])
                maj.append(winner is not None and winner[0] == 0)
            np.testing.assert_allclose(row[f"maj@{k}"], np.mean(maj), rtol=1e-6)


def test_held_out_sets_are_deterministic_prefix_stable_and_exact():
    task, problems = _problems("addition")  # (1, 2, 3) x 12
    again = held_out_problems(task, (3, 1, 2), 12)  # other order, same problems per difficulty
    for j, d in enumerate((3, 1, 2)):
        np.testing.assert_array_equal(np.asarray(again.prompt[12 * j:12 * (j + 1)]),
                                      np.asarray(problems.prompt[12 * (d - 1):12 * d]))
    assert np.asarray(again.difficulty).tolist() == [3] * 12 + [1] * 12 + [2] * 12
    prefix = held_out_problems(task, (2,), 5)  # a smaller set is a prefix of a larger one
    np.testing.assert_array_equal(np.asarray(prefix.prompt), np.asarray(problems.prompt[12:17]))
    with pytest.raises(ConfigError, match="difficulties"):
        held_out_problems(task, (4,), 3)


# ============================================================================================ pretraining pieces
def test_loss_masks_prompt_and_padding():
    task, problems = _problems("addition")
    problems = jax.tree.map(lambda x: x[::5][:8], problems)  # 8 problems of 1-3 digits
    cfg = TransformerConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, max_len=24, positional="learned")
    params = jax.jit(functools.partial(init_params, config=cfg))(jax.random.key(1))
    # sharpen the random model so the loss depends visibly on the context
    params = jax.tree.map(lambda x: x * 8.0 if x.ndim == 2 else x, params)
    for layout in ("packed", "padded"):
        tokens, plen, length = jax.jit(make_sequences, static_argnums=1)(problems, layout)
        loss_fn = jax.jit(functools.partial(sequence_loss, config=cfg))
        loss, _ = loss_fn(params, tokens, plen, length)
        # numpy reference over exactly the solution positions
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        logits = np.asarray(jax.jit(functools.partial(apply, config=cfg))(
            params, tokens, positions, causal_mask(tokens.shape[1])).logits, np.float64)
        tok = np.asarray(tokens)
        nll = []
        for b in range(tok.shape[0]):
            for t in range(int(plen[b]), int(length[b])):
                z = logits[b, t - 1]
                nll.append(-(z[tok[b, t]] - z.max() - np.log(np.exp(z - z.max()).sum())))
        np.testing.assert_allclose(float(loss), np.mean(nll), rtol=1e-5)
        # content after the solution (padding) never matters
        idx = np.arange(tok.shape[1])[None, :]
        noisy = np.where(idx >= np.asarray(length)[:, None], np.random.default_rng(0).integers(1, 64, tok.shape), tok)
        np.testing.assert_allclose(float(loss_fn(params, jnp.asarray(noisy), plen, length)[0]), float(loss), rtol=1e-6)
    # token_nll: logits and targets at unmasked (prompt / pad) positions are never read
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=(4, 9, 64)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 64, (4, 9)), jnp.int32)
    mask = jnp.asarray(rng.random((4, 9)) < 0.5)
    nll_fn = jax.jit(token_nll)
    base = nll_fn(logits, targets, mask)
    logits2 = jnp.where(mask[..., None], logits, jnp.asarray(rng.normal(size=(4, 9, 64)) * 50, jnp.float32))
    targets2 = jnp.where(mask, targets, (targets + 7) % 64)
    other = nll_fn(logits2, targets2, mask)
    np.testing.assert_allclose(float(other[0]), float(base[0]), rtol=1e-6)
    for k in ("token_accuracy", "sequence_accuracy"):
        assert float(other[1][k]) == float(base[1][k])


def test_learning_rate_schedule_and_validation():
    cfg = PretrainConfig(num_steps=101, learning_rate=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    steps = np.arange(101)
    want = np.where(steps < 10, 1e-3 * (steps + 1) / 10,
                    1e-3 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.clip((steps - 10) / 90, 0, 1)))))
    np.testing.assert_allclose(np.asarray(learning_rate_at(cfg, steps)), want, rtol=1e-5)
    task = envs.make("addition", max_digits=3)
    for bad, field in [(PretrainConfig(prompt_layout="left"), "prompt_layout"),
                       (PretrainConfig(difficulty_weights=(1.0, 1.0, 1.0, 1.0)), "difficulty_weights"),
                       (PretrainConfig(difficulty_weights=(0.0, 0.0)), "difficulty_weights"),
                       (PretrainConfig(model=TransformerConfig(max_len=8)), "model.max_len"),
                       (PretrainConfig(learning_rate=-1.0), "learning_rate"),
                       (PretrainConfig(batch_size=0), "batch_size")]:
        with pytest.raises(ConfigError, match=field):
            make_train(bad, task)


def test_difficulty_mixture_frequencies():
    task = envs.make("addition", max_digits=4)
    cfg = PretrainConfig(batch_size=4000, difficulty_weights=(1.0, 0.0, 3.0))
    problems = jax.jit(make_problem_sampler(cfg, task))(jax.random.key(0))
    freq = np.bincount(np.asarray(problems.difficulty), minlength=5)[1:] / 4000
    assert freq[1] == 0 and freq[3] == 0
    assert abs(freq[0] - 0.25) < 0.03 and abs(freq[2] - 0.75) < 0.03  # ~4.4 binomial standard deviations
    # the problems really have the drawn difficulty (operands of exactly d digits)
    prompt = np.asarray(problems.prompt)
    plus = np.argmax(prompt == VOCAB.id("+"), axis=1)
    np.testing.assert_array_equal(plus - 2, np.asarray(problems.difficulty))


# ============================================================================================ shipped base models
def test_unknown_base_model_lists_available():
    with pytest.raises(KeyError, match="available: .*addition-base"):
        lm.load_base_model("nope")


@pytest.mark.parametrize("name", ["addition-base", "addition-long", "chain-base"])
def test_shipped_base_model_loads_and_matches_its_metadata(name, tmp_path, capsys):
    """Load, then re-measure greedy accuracy with ``jaxrl-self eval-lm`` on the metadata's check sets."""
    import json

    from jaxrl_self.cli import main

    assert name in lm.available_base_models()
    params, cfg, meta = lm.load_base_model(name)
    assert (base_models.base_model_dir() / f"{name}.msgpack").stat().st_size < 1_000_000
    assert meta["name"] == name and meta["prompt_layout"] in ("packed", "padded")
    assert lm.base_model_task(meta).prompt_len + lm.base_model_task(meta).solution_len <= cfg.max_len
    check = meta["check"]
    out = tmp_path / "eval.json"
    assert main(["eval-lm", name, "--problems", str(check["num_per_difficulty"]), "--samples", "0",
                 "--problem-seed", str(check["seed"]), "--difficulties", *map(str, check["difficulties"]),
                 "--out", str(out)]) == 0
    assert "greedy_accuracy" in capsys.readouterr().out
    got = json.loads(out.read_text())["by_difficulty"]
    for d, acc in check["greedy_accuracy"].items():
        assert abs(got[d]["greedy_accuracy"] - acc) <= 0.05, (d, got[d]["greedy_accuracy"], acc)
    # the promised profile: good at easy problems, much worse at the hardest evaluated
    easy, hard = check["greedy_accuracy"]["1"], check["greedy_accuracy"][str(max(check["difficulties"]))]
    assert easy > 0.85 and hard < easy - 0.3


def test_packed_sequences_put_the_loss_on_every_solution():
    """``problems_per_sequence=m``: m solved problems back to back (later ones without <bos>), the loss mask on
    exactly their solution tokens; the sampler draws m problems per sequence; the model must hold them."""
    task = envs.make("addition", max_digits=2)
    problems = jax.vmap(task.sample_problem)(jax.random.split(jax.random.key(0), 6))
    tokens, mask = jax.device_get(make_packed_sequences(problems, 3))
    assert tokens.shape == (2, 1 + 3 * (task.prompt_len + task.solution_len - 1))
    for b in range(2):
        rows = [jax.tree.map(lambda x: np.asarray(x)[b * 3 + j], problems) for j in range(3)]
        want = ["<bos>"] + [w for p in rows for w in
                            (task.to_text(p.prompt).split()[1:] + task.to_text(p.solution).split())]
        assert task.to_text(tokens[b]).split() == want
        solutions = [w for p in rows for w in task.to_text(p.solution).split()]
        assert task.to_text(np.where(mask[b], tokens[b], VOCAB.PAD)).split() == solutions
    cfg = PretrainConfig(batch_size=4, problems_per_sequence=3,
                         model=TransformerConfig(num_layers=1, d_model=16, num_heads=2, d_ff=32, max_len=43))
    assert make_problem_sampler(cfg, task)(jax.random.key(1)).prompt.shape[0] == 12
    cfg.validate(task)
    with pytest.raises(ConfigError, match="max_len"):
        cfg.replace(model=cfg.model.replace(max_len=42)).validate(task)
    with pytest.raises(ConfigError, match="problems_per_sequence"):
        cfg.replace(prompt_layout="padded").validate(task)


# ============================================================================================ a tiny run, CLI
def test_tiny_pretraining_via_cli_learns_and_exports(tmp_path):
    """``jaxrl-self pretrain`` on 1-digit addition (100 distinct problems) with a 1-layer model: the loss
    collapses and the teacher-forced sequence accuracy (= greedy exact match, see lm.pretrain) gets high; the
    export equals the newest checkpoint, restored from the run folder."""
    import csv

    from jaxrl_self.cli import main

    run_dir = tmp_path / "run"
    code = main(["pretrain", "--task", "addition", "--task-kwargs", "max_digits=1", "--num-steps", "240",
                 "--batch-size", "64", "--num-layers", "1", "--d-model", "32", "--num-heads", "2", "--d-ff", "64",
                 "--max-len", "16", "--learning-rate", "0.01", "--warmup-steps", "20", "--weight-decay", "0",
                 "--eval-problems", "0", "--run-dir", str(run_dir), "--chunks", "2", "--no-progress"])
    assert code == 0
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["seed"] == "0"]
    loss = np.array([float(r["loss"]) for r in rows])
    seq_acc = np.array([float(r["sequence_accuracy"]) for r in rows])
    assert len(rows) == 240 and loss[-20:].mean() < 0.2 * loss[:5].mean() and seq_acc[-20:].mean() > 0.9
    params, cfg, meta = lm.load_model(run_dir / "model.msgpack")
    assert cfg == TINY and meta["task"]["kwargs"] == {"max_digits": 1} and meta["prompt_layout"] == "packed"
    assert meta["training"]["steps"] == 240 and meta["training"]["sequence_accuracy_final"] > 0.9
    # the newest checkpoint holds exactly the exported parameters
    ck_params, ck_cfg, ck_meta = pretrain_driver.load_model_or_run(run_dir, step=240)
    assert ck_cfg == cfg and ck_meta["prompt_layout"] == "packed"
    jax.tree.map(np.testing.assert_array_equal, ck_params, params)
    assert main(["pretrain", "--recipe", "nope"]) == 2


def test_training_from_a_base_model_uses_the_task_it_was_trained_on(monkeypatch):
    """``run_training`` (hence ``jaxrl-self train ... --base-model chain-base``) builds the task the model knows,
    ``ChainTask(max_steps_cap=16)``, not the registry's default ``max_steps_cap=32`` (prompts longer than the
    model's ``max_len``, which ``make_train`` would refuse); explicit ``env_kwargs`` and other tasks stand."""
    from jaxrl_self.algos import tppo
    from jaxrl_self.run import runner as runner_lib

    assert runner_lib.default_env_kwargs(tppo.Config(base_model="chain-base"), "chain") == {"max_steps_cap": 16}
    assert runner_lib.default_env_kwargs(tppo.Config(base_model="chain-base"), "addition") is None
    assert runner_lib.default_env_kwargs(tppo.Config(), "chain") is None
    built = {}

    def stop(self):  # nothing is compiled or run: the test is about what the run was built from
        built["description"] = self.description
        return "stopped"

    monkeypatch.setattr(runner_lib.Runner, "run", stop)
    config = tppo.Config(base_model="chain-base", max_new_tokens=22, num_slots=4, num_minibatches=1, window=4)
    assert runner_lib.run_training("tppo", "chain", config, run_dir=False) == "stopped"
    assert built["description"]["env_kwargs"] == {"max_steps_cap": 16}
    with pytest.raises(ConfigError, match="max_len"):  # an explicit task the model cannot read is refused
        runner_lib.run_training("tppo", "chain", config, env_kwargs={"max_steps_cap": 32}, run_dir=False)
