"""TTRL and its label-free successors (jaxrl_self/teach/label_free.py, jaxrl_self/teach/ttrl.py).

* votes and rewards on hand-made sample sets: ties, all different, all invalid;
* each label-free reward (majority, EVOL-RL's novelty, EMPO's semantic entropy, Intuitor's self-certainty, the
  minority bonus) and the diagnostics against hand-computed values;
* the guard fires on a scripted collapsing sequence and not on a stable one (beyond the base's noise);
* a TTRL run on problems whose answers and solutions are scrambled trains bit-identically; labelled rewards and
  bad configs are refused before compiling.
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
from jaxrl_self.teach import label_free as lf
from jaxrl_self.teach import ttrl
from treecheck import assert_bitwise

PAD = VOCAB.PAD


def answers(*texts):
    """``[N, 2]`` answers from digit strings ("" = invalid) and the ``valid`` flags."""
    rows, ok = [], []
    for t in texts:
        toks = [VOCAB.digit(int(c)) for c in t] + [PAD] * (2 - len(t))
        rows.append(toks)
        ok.append(bool(t))
    return jnp.asarray(rows, jnp.int32), jnp.asarray(ok)


# ================================================================================================ votes
def test_vote_majority_ties_all_different_all_invalid():
    a, ok = answers("12", "7", "12", "", "7", "12")
    v = lf.vote(a, ok)
    assert VOCAB.decode(v.answer) == "1 2" and int(v.count) == 3 and bool(v.has_majority)
    np.testing.assert_array_equal(v.support, [3, 2, 3, 0, 2, 3])
    np.testing.assert_array_equal(lf.majority_rewards(v), [1, 0, 1, 0, 0, 1])
    # a tie goes to the answer seen first
    v = lf.vote(*answers("7", "12", "12", "7"))
    assert VOCAB.decode(v.answer) == "7" and int(v.count) == 2
    np.testing.assert_array_equal(lf.majority_rewards(v), [1, 0, 0, 1])
    # all different: the first answer wins with one vote
    v = lf.vote(*answers("1", "2", "3", "4"))
    assert VOCAB.decode(v.answer) == "1" and int(v.count) == 1
    np.testing.assert_array_equal(lf.majority_rewards(v), [1, 0, 0, 0])
    # all invalid: no majority, nobody is rewarded, invalid answers never vote (whatever their tokens)
    a, ok = answers("5", "5", "5", "6")
    v = lf.vote(a, jnp.array([False, False, False, True]))
    assert VOCAB.decode(v.answer) == "6"
    v = lf.vote(a, jnp.zeros(4, bool))
    assert not bool(v.has_majority) and int(v.count) == 0 and not np.any(lf.majority_rewards(v))


# ================================================================================================ rewards
def test_semantic_entropy_rewards_hand_computed():
    v = lf.vote(*answers("3", "3", "4", ""))
    r, h = lf.semantic_entropy_rewards(v, answers("3", "3", "4", "")[1])
    np.testing.assert_allclose(r, [0.5, 0.5, 0.25, 0.0])
    # H = -sum_c p_c log p_c over the valid clusters: p = 1/2 and 1/4
    np.testing.assert_allclose(float(h), -(0.5 * math.log(0.5) + 0.25 * math.log(0.25)), rtol=1e-6)
    a, ok = answers("1", "2", "3", "4")
    r, h = lf.semantic_entropy_rewards(lf.vote(a, ok), ok)  # all different: H = log N, nothing to agree on
    np.testing.assert_allclose(float(h), math.log(4), rtol=1e-6)
    np.testing.assert_array_equal(r, np.zeros(4))


def test_novelty_rewards_hand_computed():
    a, ok = answers("3", "3", "3", "4", "")
    v = lf.vote(a, ok)
    s = np.array([[1.0, 0.9, 0.5, 0.2, 0.7],
                  [0.9, 1.0, 0.6, 0.3, 0.7],
                  [0.5, 0.6, 1.0, 0.1, 0.7],
                  [0.2, 0.3, 0.1, 1.0, 0.7],
                  [0.7, 0.7, 0.7, 0.7, 1.0]], np.float32)  # row/column 4 is invalid: never a peer
    r, u = lf.novelty_rewards(v, ok, jnp.asarray(s))
    # majority 0, 1, 2: mean over the other majority members, max over all valid others
    u0 = 1 - (0.5 * (0.9 + 0.5) / 2 + 0.5 * 0.9)
    u1 = 1 - (0.5 * (0.9 + 0.6) / 2 + 0.5 * 0.9)
    u2 = 1 - (0.5 * (0.5 + 0.6) / 2 + 0.5 * 0.6)
    # the only minority answer: alone on its side, its mean is over all valid others
    u3 = 1 - (0.5 * (0.2 + 0.3 + 0.1) / 3 + 0.5 * 0.3)
    np.testing.assert_allclose(np.asarray(u)[:4], [u0, u1, u2, u3], rtol=1e-6)
    lo, hi = min(u0, u1, u2), max(u0, u1, u2)
    expected = [0.5 + 0.5 * (x - lo) / (hi - lo) for x in (u0, u1, u2)] + [-1 + 0.5 * 1.0, -1.0]
    np.testing.assert_allclose(r, expected, rtol=1e-6)
    # a side whose novelties are all equal gets the middle of its range
    flat = np.full((4, 4), 0.5, np.float32)
    a, ok = answers("3", "3", "4", "4")
    r, _ = lf.novelty_rewards(lf.vote(a, ok), ok, jnp.asarray(flat))
    np.testing.assert_allclose(r, [0.75, 0.75, -0.75, -0.75])


def test_token_similarity_and_self_certainty_hand_computed():
    resp = jnp.array([[5, 5, 6, 0], [5, 6, 0, 0], [7, 0, 0, 0]])
    mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
    s = np.asarray(lf.token_similarity(resp, mask, 8))
    # count vectors (5:2, 6:1) and (5:1, 6:1): cos = 3 / (sqrt(5) sqrt(2))
    np.testing.assert_allclose(s[0, 1], 3 / math.sqrt(10), rtol=1e-6)
    assert s[0, 2] == 0.0 and s[1, 1] == pytest.approx(1.0)
    logits = jnp.array([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [9.0, 9.0, 9.0]]])
    m = jnp.array([[True, True, False]])
    lse = math.log(math.exp(0) + math.exp(1) + math.exp(2))
    token0 = lse - 1.0  # logsumexp - mean
    token1 = math.log(3.0)  # uniform: KL(U || p) = 0, plus log |V|
    np.testing.assert_allclose(lf.self_certainty(logits, m), [(token0 + token1) / 2], rtol=1e-6)


def test_minority_bonus_and_diagnostics_hand_computed():
    a, ok = answers("3", "3", "3", "4", "4", "5", "", "3")
    v = lf.vote(a, ok)
    adv = jnp.array([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.0, 1.0])
    bonus = np.asarray(lf.minority_bonus(v, ok, adv, 0.3))
    # minority "4" has 2 of 8 votes (>= N/4): 0.3 * (2 / 7 valid votes) * mean|A|; "5" (1 vote) gets nothing
    b = 0.3 * (2 / 7) * float(np.mean(np.abs(adv)))
    np.testing.assert_allclose(bonus, [0, 0, 0, b, b, 0, 0, 0], rtol=1e-6)
    truth = answers("4")[0][0]
    correct = jnp.array([False, False, False, True, True, False, False, False])
    d = lf.vote_diagnostics(v, correct, truth, lf.majority_rewards(v))
    assert float(d["label_accuracy"]) == 0.0  # the majority "3" is wrong
    # pseudo rewards (1 1 1 0 0 0 0 1) vs true rewards (0 0 0 1 1 0 0 0): equal on 2 of 8 samples
    np.testing.assert_allclose(float(d["reward_accuracy"]), 2 / 8)
    np.testing.assert_allclose(float(d["majority_ratio"]), 4 / 8)
    np.testing.assert_allclose(float(d["pass_at_1"]), 2 / 8)
    assert float(d["pass_at_n"]) == 1.0


# ================================================================================================ the guard
def _scripted(labels_per_step, base, noise_pairs):
    state = lf.guard_init(*noise_pairs)
    out = []
    for step, labels in enumerate(labels_per_step):
        idx = jnp.arange(base.shape[0])
        state, m = lf.guard_step(state, idx, labels, jnp.ones(base.shape[0], bool), jnp.int32(step), ema=0.5,
                                 margin=0.15, flip_threshold=0.3, min_steps=2)
        out.append(jax.device_get(m))
    return state, out


def test_guard_fires_on_collapse_not_on_resampling_noise():
    rng = np.random.default_rng(0)
    P = 16
    base = jnp.asarray(rng.integers(VOCAB.digit(0), VOCAB.digit(9) + 1, (P, 2)), jnp.int32)
    noisy = base.at[0].set(base[1])  # the base's second vote disagrees on 1 problem in 16: noise 1/16
    pairs = (base, jnp.ones(P, bool), noisy, jnp.ones(P, bool))
    # stable: every step only resamples, one problem off its base answer, a different one each time
    stable = [base.at[s % P].set(base[(s + 1) % P]) for s in range(12)]
    state, m = _scripted(stable, base, pairs)
    assert int(state.fired_at) == -1 and max(x["departure"] for x in m) <= 1 / 16 + 1e-6
    np.testing.assert_allclose(m[0]["base_noise"], 1 / 16)
    # collapsing: more and more problems converge on one consistent answer
    constant = jnp.full((2,), VOCAB.digit(7), jnp.int32)
    collapse = [jnp.where((jnp.arange(P) < 2 * s)[:, None], constant, base) for s in range(12)]
    state, m = _scripted(collapse, base, pairs)
    fired = int(state.fired_at)
    assert 2 <= fired <= 6 and m[fired]["guard_fired"] and not m[fired - 1]["guard_fired"]
    # the flip rate (against the previous visit) is what minority preservation watches
    assert m[3]["flip_rate"] == pytest.approx(2 / 16) and not m[1]["minority_on"]
    swings = [base, jnp.roll(base, 1, axis=0), base, jnp.roll(base, 1, axis=0)] + [base] * 4
    state, m = _scripted(swings, base, pairs)
    assert m[1]["flip_rate"] > 0.9 and m[1]["minority_on"] and m[3]["minority_on"]
    # step 4 flips back to the base answers; steps 5, 6, 7 are calm: off after the third
    assert [bool(x["minority_on"]) for x in m[4:]] == [True, True, True, False]


# ================================================================================================ the method
TASK = lm.base_model_task(lm.read_metadata("addition-base"))
CONFIG = ttrl.Config(num_updates=3, difficulty=2, num_prompts=4, n_votes=4, n_train=2, num_problems=8,
                     max_new_tokens=6)


def _scramble(ps: lm.ProblemSet) -> lm.ProblemSet:
    rng = np.random.default_rng(3)
    p = ps.problems
    return ps.replace(problems=p.replace(answer=jnp.asarray(rng.integers(0, VOCAB.size, p.answer.shape), jnp.int32),
                                         solution=jnp.asarray(rng.integers(0, VOCAB.size, p.solution.shape),
                                                              jnp.int32)))


@pytest.mark.parametrize("reward, guard", [("majority", "minority"), ("self_certainty", "stop")])
def test_scrambled_answers_train_bit_identically(reward, guard):
    config = CONFIG.replace(reward=reward, guard=guard)
    train = ttrl.make_train(config, TASK)
    run = jax.jit(lambda k, d: train.run(train.init(k, problems=d)))
    data = ttrl.test_set(config, TASK)
    (state, m), (state_s, m_s) = run(jax.random.key(0), data), run(jax.random.key(0), _scramble(data))
    assert_bitwise(state.params, state_s.params)
    assert_bitwise(state.guard, state_s.guard)
    np.testing.assert_array_equal(m.reward_mean, m_s.reward_mean)
    np.testing.assert_array_equal(m.loss, m_s.loss)
    assert not np.array_equal(m.pass_at_1, m_s.pass_at_1)  # only the diagnostics read the answers
    assert np.all(np.asarray(m.pass_at_1) > 0.5)  # the base model is good at 2 digits
    assert int(state.update_step) == 3 and np.all(np.isfinite(np.asarray(m.loss)))


def test_labelled_rewards_and_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="label-free"):
        ttrl.make_train(CONFIG, TASK, reward_fn=lm.verifier_reward(TASK))
    for field, value in [("reward", "truth"), ("guard", "maybe"), ("n_train", 5), ("n_train", 1),
                         ("difficulty", 9), ("train_subset", "last"), ("guard_ema", 1.5)]:
        with pytest.raises(ConfigError, match=field):
            ttrl.make_train(CONFIG.replace(**{field: value}), TASK)


def test_cli_knows_ttrl(capsys):
    from jaxrl_self.cli import main

    assert main(["train", "ttrl", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--n-votes" in out and "--difficulty" in out and "--reward" in out and "--guard" in out
    assert main(["train", "ttrl", "--task", "addition", "--n-train", "99"]) == 2  # refused before compiling
    assert "n_train" in capsys.readouterr().err


def test_confidence_filter_trains_only_on_confident_votes():
    """min_majority_ratio: prompts whose majority holds fewer of the N votes are not trained on."""
    all_prompts = jax.device_get(jax.jit(ttrl.make_train(CONFIG, TASK))(jax.random.key(1))[1])
    state, m = jax.jit(ttrl.make_train(CONFIG.replace(min_majority_ratio=1.0), TASK))(jax.random.key(1))
    m = jax.device_get(m)
    np.testing.assert_array_equal(all_prompts.trained_prompts, 1.0)
    # unanimous votes only: a strong model is unanimous on most 2-digit prompts, not on all
    assert np.all(m.trained_prompts <= 1.0) and np.any(m.trained_prompts < 1.0) and np.any(m.trained_prompts > 0)
    np.testing.assert_array_equal(m.reward_mean[0], all_prompts.reward_mean[0])  # same first batch, same votes


def test_eval_is_at_the_test_sets_difficulty():
    """``jaxrl-self eval`` passes the task's default parameters; TTRL evaluates at its test difficulty anyway."""
    params = lm.load_base_model("addition-base")[0]
    out = ttrl.make_eval(CONFIG, TASK)(params, jax.random.key(0), TASK.default_params, 8)
    np.testing.assert_array_equal(out.difficulty, 2)
