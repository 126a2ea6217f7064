"""RLT (jaxrl_self/teach/explain.py, jaxrl_self/teach/rlt.py).

* r_SS, r_KL and r_fmt against hand-computed values on tiny hand-made log-probs (and the empty-span rule);
* the spans are right for prompts and explanations of different lengths in one batch;
* the student's log-probs of the solution equal a separate scoring of the student context written out by hand;
* distillation masks put the loss on exactly the intended tokens; the oracle is the task's scratchpad;
* a tiny run: warm-ups in init, RL updates, finite rewards and parts; bad configs refused.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import lm
from jaxrl_self.core import ConfigError
from jaxrl_self.core.sequence import VOCAB
from jaxrl_self.nets.transformer import TransformerConfig, init_params
from jaxrl_self.teach import explain as ex
from jaxrl_self.teach import rlt

TASK = lm.base_model_task(lm.read_metadata("addition-long"))  # AdditionTask(max_digits=5)


def enc(text, width):
    t = VOCAB.encode(text)
    return np.pad(t, (0, width - len(t)))


def problems_of(*pairs):
    ps = [TASK.problem_from_ints(a, b) for a, b in pairs]
    return jax.tree.map(lambda *x: jnp.stack(x), *ps)


# ================================================================================================ the reward
def test_reward_parts_hand_computed():
    ans = jnp.log(jnp.array([[0.5, 0.25, 0.9, 0.0], [0.8, 0.8, 0.0, 0.0]]))
    a_mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    t = jnp.array([[-0.1, -0.5, -0.2], [-1.0, 0.0, 0.0]])
    s = jnp.array([[-0.4, -0.3, -1.2], [-0.5, 0.0, 0.0]])
    e_mask = jnp.array([[1, 1, 1], [1, 0, 0]], bool)
    parts = ex.rlt_reward(ans, a_mask, t, s, e_mask, jnp.array([True, False]), kl_coef=3.0, alpha=0.01,
                          format_penalty=1.0)
    lp = [math.log(0.5), math.log(0.25), math.log(0.9)]
    r_ss0 = sum(lp) / 3 + 0.01 * min(lp)
    d0 = [-0.1 + 0.4, -0.5 + 0.3, -0.2 + 1.2]  # teacher - student, not clipped (one is negative)
    r_kl0 = sum(d0) / 3 + 0.01 * max(d0)
    r_ss1 = math.log(0.8) + 0.01 * math.log(0.8)
    r_kl1 = -0.5 + 0.01 * -0.5
    np.testing.assert_allclose(parts.r_ss, [r_ss0, r_ss1], rtol=1e-6)
    np.testing.assert_allclose(parts.r_kl, [r_kl0, r_kl1], rtol=1e-6)
    np.testing.assert_allclose(parts.r_fmt, [0.0, -1.0])
    np.testing.assert_allclose(parts.reward, [r_ss0 - 3 * r_kl0, r_ss1 - 3 * r_kl1 - 1.0], rtol=1e-6)
    # an empty span: r_SS -> -1, r_KL -> +1 (the reference code's NaN rule)
    empty = ex.rlt_reward(ans, jnp.zeros_like(a_mask), t, s, jnp.zeros_like(e_mask), jnp.array([False, False]))
    np.testing.assert_allclose(empty.r_ss, [-1, -1])
    np.testing.assert_allclose(empty.r_kl, [1, 1])
    np.testing.assert_allclose(empty.reward, [-1 - 3 - 1] * 2)


def test_explanations_are_parsed_strictly():
    R = 8
    texts = ["1 0 , 5 0 </think> <eos>", "3 </think>", "1 2 , 3 <a> 4 </a>", "</think> <eos>", "1 2 </think> 4",
             "1 2 3 4 5 6 7 8"]
    resp = jnp.asarray([enc(t, R) for t in texts])
    mask = resp != VOCAB.PAD
    expl, length, ok = ex.parse_explanations(resp, mask, 6)
    assert np.asarray(length).tolist() == [5, 1, 4, 0, 2, 6]
    assert np.asarray(ok).tolist() == [True, True, False, False, False, False]
    assert VOCAB.decode(expl[0]) == "1 0 , 5 0" and VOCAB.decode(expl[2]) == "1 2 , 3"


# ================================================================================================ spans
def test_spans_for_different_lengths_in_one_batch():
    problems = problems_of((7, 5), (12345, 99999), (3, 40))
    expl = jnp.asarray([enc("2 1", 6), enc("4 1 , 4 1 , 4 1", 12)[:6], enc("3 0 , 4 0", 6)])
    length = jnp.array([2, 6, 5])
    ctx = ex.student_contexts(problems, expl, length)
    for b in range(3):
        toks = np.asarray(ctx.tokens[b])
        words = VOCAB.decode(toks).split()
        n = int(length[b])
        assert words[words.index("<think>") + 1: words.index("</think>")] == VOCAB.decode(expl[b]).split()[:n]
        e0, a0 = int(ctx.explanation_start[b]), int(ctx.answer_start[b])
        assert VOCAB.decode(toks[e0:e0 + int(length[b])]) == VOCAB.decode(expl[b][:int(length[b])])
        assert toks[e0 - 1] == VOCAB.THINK and toks[e0 + int(length[b])] == VOCAB.THINK_END
        assert VOCAB.decode(toks[a0:a0 + int(ctx.answer_len[b])]) == VOCAB.decode(problems.answer[b])
        assert toks[a0 - 1] == VOCAB.A and toks[a0 + int(ctx.answer_len[b])] == VOCAB.A_END
        assert int(ctx.length[b]) == len(words)
    teacher = ex.teacher_contexts(problems)
    # 12345 + 99999 = 112344, written reversed
    assert VOCAB.decode(teacher.tokens[1]) == "<bos> <q> 1 2 3 4 5 + 9 9 9 9 9 = </q> <a> 4 4 3 2 1 1 </a> <think>"
    assert int(teacher.answer_start[0]) == len("<bos> <q> 7 + 5 = </q> <a>".split())


def test_student_logprobs_equal_a_separate_scoring_of_the_written_context():
    cfg = TransformerConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, max_len=48, positional="rope")
    params = init_params(jax.random.key(0), cfg)
    problems = problems_of((57, 68), (4, 4))
    expl = jnp.asarray([enc("5 1 , 2 1", 6), enc("8 0", 6)])
    length = jnp.array([5, 2])
    ctx = ex.student_contexts(problems, expl, length)
    logp = lm.score(params, ctx.tokens, jnp.ones_like(ctx.length), ctx.length, config=cfg, temperature=0.7).logp
    for b, text in enumerate(["<bos> <q> 5 7 + 6 8 = </q> <think> 5 1 , 2 1 </think> <a> 5 2 1 </a> <eos>",
                              "<bos> <q> 4 + 4 = </q> <think> 8 0 </think> <a> 8 </a> <eos>"]):
        toks = VOCAB.encode(text)
        out = lm.score(params, jnp.asarray(toks)[None], jnp.ones((1,), jnp.int32), config=cfg, temperature=0.7)
        a0 = text.split().index("<a>") + 1
        n = int(ctx.answer_len[b])
        np.testing.assert_allclose(np.asarray(logp[b, int(ctx.answer_start[b]):int(ctx.answer_start[b]) + n]),
                                   np.asarray(out.logp[0, a0:a0 + n]), rtol=1e-5)
    # tempered: log softmax(z / 0.7), not log softmax(z)
    plain = lm.score(params, ctx.tokens, jnp.ones_like(ctx.length), ctx.length, config=cfg).logp
    assert not np.allclose(plain, logp)


# ================================================================================================ data
def test_oracle_and_format_explanations():
    problems = problems_of((57, 68), (8888, 1822))
    oracle, length = rlt.oracle_explanations(TASK, problems, 16)
    # 57 + 68: column 0: 7 + 8 = 15 -> "5 1"; column 1: 5 + 6 + 1 = 12 -> "2 1"
    assert VOCAB.decode(oracle[0]) == "5 1 , 2 1" and int(length[0]) == 5
    assert VOCAB.decode(oracle[1]) == "0 1 , 1 1 , 7 1 , 0 1" and int(length[1]) == 11
    fmt = rlt.format_explanations(jax.random.key(0), oracle, length)
    words = VOCAB.decode(fmt[1]).split()
    assert words[2] == "," and words[5] == "," and len(words) == 11 and all(w.isdigit() for w in words[:2])
    assert VOCAB.decode(fmt[1]) != VOCAB.decode(oracle[1])


def test_distillation_masks_put_the_loss_on_the_intended_tokens():
    problems = problems_of((57, 68), (4, 4))
    oracle, length = rlt.oracle_explanations(TASK, problems, 16)
    data = rlt.distillation_data(problems, oracle, length)
    for b in range(2):
        toks, mask = np.asarray(data.tokens[b]), np.asarray(data.loss_mask[b])
        words = VOCAB.decode(toks).split()
        trained = VOCAB.decode(np.where(mask, toks, VOCAB.PAD)).split()
        assert trained == words[words.index("<think>"):]  # everything the student must write, nothing of the question
    plain = rlt.distillation_data(problems)
    trained = VOCAB.decode(np.where(np.asarray(plain.loss_mask[0]), np.asarray(plain.tokens[0]), VOCAB.PAD))
    assert trained == "<a> 5 2 1 </a> <eos>"


# ================================================================================================ the run
def test_tiny_run_and_config_errors():
    config = rlt.Config(num_updates=2, reader_steps=3, warmup_steps=3, num_prompts=2, group_size=2, sft_batch=4)
    state, m = jax.jit(rlt.make_train(config, TASK))(jax.random.key(0))
    m = jax.device_get(m)
    for name in ("reward_mean", "r_ss", "r_kl", "r_fmt", "loss"):
        assert np.all(np.isfinite(getattr(m, name))), name
    np.testing.assert_allclose(m.reward_mean, m.r_ss - 3.0 * m.r_kl + m.r_fmt, rtol=1e-4, atol=1e-4)
    assert int(state.update_step) == 2 and state.reward_extras is not None
    for field, value in [("student", "oracle"), ("max_new_tokens", 10), ("group_size", 1),
                         ("student_temperature", 0.0)]:
        with pytest.raises(ConfigError, match=field):
            rlt.make_train(config.replace(**{field: value}), TASK)
    with pytest.raises(ConfigError, match="scratchpad"):
        rlt.make_train(config, lm.base_model_task(lm.read_metadata("addition-long")).__class__(5, scratchpad=True))


def test_cli_trains_a_teacher_and_distils_a_student(tmp_path, capsys):
    """``jaxrl-self train rlt`` (a tiny run from addition-long) then ``jaxrl-self distill`` of its teacher: the
    student is saved in the base-model format and loads as one."""
    from jaxrl_self.cli import main

    run_dir = tmp_path / "rlt"
    assert main(["train", "rlt", "--task", "addition", "--num-updates", "2", "--reader-steps", "2",
                 "--warmup-steps", "2", "--num-prompts", "2", "--group-size", "2", "--sft-batch", "4",
                 "--run-dir", str(run_dir), "--chunks", "1", "--no-progress"]) == 0
    assert main(["distill", str(run_dir), "--problems", "8", "--steps", "2", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "held-out greedy accuracy" in out and "saved:" in out
    params, cfg, meta = lm.load_model(run_dir / "student")
    assert meta["distilled"]["steps"] == 2 and cfg.max_len == 96 and meta["task"]["name"] == "addition"
    assert main(["distill", str(tmp_path)]) == 2  # not a run folder: one line, no traceback


def test_teacher_logprobs_scored_in_its_context_equal_the_samplers():
    """The reward's teacher term from the sampler's log-probs (what the RL update uses) equals a separate scoring
    of the teacher context + explanation (what an outer program uses for explanations it did not sample)."""
    config = rlt.Config()
    params, cfg, _ = lm.load_base_model("addition-long")
    problems = problems_of((57, 68), (1234, 99), (5, 5))
    ctx = ex.teacher_contexts(problems)
    E = config.max_explanation
    ro = lm.rollout(jax.random.key(0), params, cfg, problems.replace(prompt=ctx.tokens), 1, config.max_new_tokens,
                    1.0, prompt_layout="packed")
    expl, length, ok = ex.parse_explanations(ro.responses, ro.mask, E)
    sampled = rlt.score_explanations(config, TASK, cfg, params, problems, expl, length, ok, teacher_logp=ro.logp[:, :E])
    scored = rlt.score_explanations(config, TASK, cfg, params, problems, expl, length, ok, teacher_params=params)
    np.testing.assert_allclose(sampled.r_kl, scored.r_kl, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sampled.reward, scored.reward, rtol=1e-4, atol=1e-4)
