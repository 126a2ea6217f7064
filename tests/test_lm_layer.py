"""The shared LM-RL layer (jaxrl_self/lm/{problems,rewards,config,learner,diagnostics,supervised}.py).

* rewards see the prompt side only: reading the answer fails at trace time; a labelled reward sees it;
* a run on problems whose answers (and solutions) are scrambled trains bitwise identically when its reward does
  not read answers; only the ground-truth metric sees the difference (and is NaN when switched off);
* training on M < N members of each group against a hand-computed loss;
* a fixed problem set is read in passes (each valid problem once per pass, a new order per pass, invalid rows
  never), with the pass in the metrics;
* two copies vmapped over two injected datasets (and two start parameters) match the same copies run one at a
  time; ``init(key, params)`` under vmap;
* the supervised trainer on a masked dataset against hand-computed losses, from given parameters.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import envs, lm
from jaxrl_self.algos import grpo
from jaxrl_self.core.sequence import VOCAB
from jaxrl_self.nets.transformer import TransformerConfig, apply, causal_mask, init_params
from jaxrl_self.rl import group
from treecheck import assert_bitwise

TINY = TransformerConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, max_len=24)
TASK = envs.make("addition", max_digits=2)  # prompt_len 9
SET = lm.ProblemSet.of(lm.sample_problems(jax.random.key(11), TASK, TASK.default_params, 6),
                       valid=jnp.array([True, True, False, True, True, True]))


def digit_share(prompt, response, mask, key, extras):
    """A label-free reward: the share of digit tokens in the response (and a metric of its own)."""
    del key, extras
    digits = jnp.sum(mask & (VOCAB.digit_value(response) >= 0))
    share = digits / jnp.maximum(jnp.sum(mask), 1)
    return share + 0.0 * prompt.difficulty, {"digits": digits.astype(jnp.float32)}


def scrambled(problem_set: lm.ProblemSet, seed: int = 0) -> lm.ProblemSet:
    rng = np.random.default_rng(seed)
    p = problem_set.problems
    return problem_set.replace(problems=p.replace(
        answer=jnp.asarray(rng.integers(0, VOCAB.size, p.answer.shape), jnp.int32),
        solution=jnp.asarray(rng.integers(0, VOCAB.size, p.solution.shape), jnp.int32)))


CONFIG = grpo.Config(num_updates=3, num_prompts=4, group_size=4, max_new_tokens=6, model=TINY, learning_rate=3e-3,
                     kl_coef=0.05)


# ================================================================================================ rewards
def test_a_reward_cannot_read_the_answer():
    problems = lm.sample_problems(jax.random.key(0), TASK, TASK.default_params, 2)
    responses = jnp.zeros((4, 5), jnp.int32)
    mask = jnp.ones((4, 5), bool)

    def peeks(prompt, response, response_mask, key, extras):
        return jnp.sum(prompt.answer).astype(jnp.float32)

    with pytest.raises(AttributeError, match="answer"):
        lm.compute_rewards(jax.random.key(0), peeks, problems, responses, mask, 2)
    with pytest.raises(AttributeError, match="solution"):
        lm.compute_rewards(jax.random.key(0), lm.group_reward(lambda p, r, m, k, e: p.solution[0] * r[:, 0]),
                           problems, responses, mask, 2)
    # a reward that declares it reads ground truth gets the whole problem
    r, _ = lm.compute_rewards(jax.random.key(0), lm.labelled_reward(peeks), problems, responses, mask, 2)
    np.testing.assert_array_equal(r, np.repeat(np.asarray(problems.answer).sum(-1), 2).reshape(2, 2))
    assert lm.is_labelled(lm.verifier_reward(TASK)) and not lm.is_labelled(digit_share)


def test_reward_metrics_are_logged_beside_the_others(runs):
    _, metrics = runs["set"]
    assert "digits" in metrics.reward and np.all(np.asarray(metrics.reward["digits"]) >= 0)
    np.testing.assert_array_equal(np.asarray(metrics.problems["problems_valid"]), 5)


@pytest.fixture(scope="module")
def runs():
    """GRPO with the label-free reward on the problem set, its scrambled twin, and with ground truth off."""
    train = grpo.make_train(CONFIG, TASK, reward_fn=digit_share, problems=SET)
    run = jax.jit(lambda k, d: train.run(train.init(k, problems=d)))
    blind = grpo.make_train(CONFIG.replace(ground_truth_metrics=False), TASK, reward_fn=digit_share, problems=SET)
    # the same program shape as `run` (problems an argument, not a constant XLA may fold): bitwise comparable
    run_blind = jax.jit(lambda k, d: blind.run(blind.init(k, problems=d)))
    key = jax.random.key(5)
    return {"set": run(key, SET), "scrambled": run(key, scrambled(SET)), "blind": run_blind(key, SET)}


def test_scrambled_answers_train_identically(runs):
    (state, m), (state_s, m_s) = runs["set"], runs["scrambled"]
    assert_bitwise(state.params, state_s.params)
    assert_bitwise(state.opt_state, state_s.opt_state)
    for field in ("reward_mean", "loss", "format_valid", "response_length", "env_steps"):
        np.testing.assert_array_equal(getattr(m, field), getattr(m_s, field), err_msg=field)
    # only the diagnostic reads the answers; switched off it is NaN and training is unchanged
    state_b, m_b = runs["blind"]
    assert_bitwise(state.params, state_b.params)
    assert np.all(np.isnan(np.asarray(m_b.accuracy))) and np.all(np.isfinite(np.asarray(m.accuracy)))


# ================================================================================================ subsets
def test_training_on_a_subset_of_each_group_hand_computed():
    """N = 4 samples vote (rewards 1, 0, 1, 1); GRPO trains on the first M = 2: rewards (1, 0), advantages
    ±0.5/(0.5 + ε); with log π = log π_old (ratio 1) the token-mean loss is -Σ_t A / tokens = -(3a - 1a)/4."""
    R = 4
    lengths = jnp.array([3, 1, 2, 4])
    mask = jnp.arange(R)[None, :] < lengths[:, None]
    problems = lm.sample_problems(jax.random.key(0), TASK, TASK.default_params, 1)
    ro = lm.Rollout(problem=problems, prompts=jnp.repeat(problems.prompt, 4, 0), prompt_len=jnp.full((4,), 9),
                    responses=jnp.arange(4 * R).reshape(4, R) % 10 + 10, mask=mask,
                    logp=jnp.where(mask, -0.7, 0.0), values=None)
    rewards = jnp.array([[1.0, 0.0, 1.0, 1.0]])
    take = lm.subset_index(None, 1, 4, 2)
    np.testing.assert_array_equal(take, [[0, 1]])
    sub = lm.select_groups(ro, take)
    assert sub.responses.shape == (2, R)
    np.testing.assert_array_equal(sub.mask, mask[:2])
    adv = group.group_advantages(lm.take_groups(rewards, take), "grpo", eps=1e-6)
    a = 0.5 / (0.5 + 1e-6)
    np.testing.assert_allclose(adv, [[a, -a]], rtol=1e-6)
    batch = lm.make_batch(sub, adv)
    loss, aux = lm.policy_token_loss(batch.old_logp, batch.old_logp, batch.ref_logp, jnp.zeros_like(batch.old_logp),
                                     batch.advantage, batch.mask, clip_eps=0.2)
    np.testing.assert_allclose(loss, -(3 * a - 1 * a) / 4, rtol=1e-6)
    # a random subset: M distinct members of each group
    pick = np.asarray(lm.subset_index(jax.random.key(1), 64, 8, 3))
    assert pick.shape == (64, 3) and all(len(set(r)) == 3 for r in pick) and pick.min() >= 0 and pick.max() < 8
    assert len({tuple(r) for r in pick}) > 1
    # a problem marked invalid weighs nothing
    masked = lm.make_batch(sub, adv, row_valid=jnp.array([False]))
    assert not np.any(masked.mask)


# ================================================================================================ problem sets
def test_a_problem_set_is_read_in_passes():
    source = lm.problem_source(TASK, problems=SET)
    state = source.init(jax.random.key(0))
    draw = jax.jit(lambda s: source.draw(s, jax.random.key(9), 3))
    seen, passes = [], []
    for _ in range(5):  # 15 draws of 5 valid problems: exactly 3 passes
        state, batch = draw(state)
        assert np.all(batch.valid)
        seen += [int(np.argmax(np.all(np.asarray(SET.problems.prompt) == p, axis=1))) for p in batch.problems.prompt]
        passes.append(int(batch.stats["problem_pass"]))
    rounds = [seen[i:i + 5] for i in range(0, 15, 5)]
    assert all(sorted(r) == [0, 1, 3, 4, 5] for r in rounds)  # each valid problem once per pass, row 2 never
    assert len({tuple(r) for r in rounds}) > 1  # a new order per pass
    assert passes == [0, 0, 1, 1, 2]  # the pass of each batch's first problem (batches straddle passes)
    # in the set's order without shuffling
    ordered = lm.problem_source(TASK, problems=SET, shuffle=False)
    _, batch = ordered.draw(ordered.init(jax.random.key(0)), jax.random.key(0), 6)
    np.testing.assert_array_equal(batch.problems.prompt, np.asarray(SET.problems.prompt)[[0, 1, 3, 4, 5, 0]])
    # no valid problem: every row is marked invalid
    empty = SET.replace(valid=jnp.zeros(6, bool))
    _, batch = source.draw(source.init(jax.random.key(0), empty), jax.random.key(0), 3)
    assert not np.any(batch.valid)


def test_injected_data_must_match_the_compiled_shapes():
    train = grpo.make_train(CONFIG, TASK, reward_fn=digit_share, problems=SET)
    small = lm.ProblemSet.of(lm.sample_problems(jax.random.key(1), TASK, TASK.default_params, 4))
    with pytest.raises(ValueError, match="problems"):
        train.init(jax.random.key(0), problems=small)
    sampler = grpo.make_train(CONFIG, TASK, reward_fn=digit_share)
    with pytest.raises(ValueError, match="problems"):
        sampler.init(jax.random.key(0), problems=SET)


# ================================================================================================ vmapped copies
def test_two_vmapped_copies_on_two_datasets_match_one_at_a_time(runs):
    train = grpo.make_train(CONFIG, TASK, reward_fn=digit_share, problems=SET)
    params = jax.vmap(lambda k: init_params(k, TINY))(jax.random.split(jax.random.key(2), 2))
    data = jax.tree.map(lambda a, b: jnp.stack([a, b]), SET, scrambled(SET.replace(
        problems=lm.sample_problems(jax.random.key(12), TASK, TASK.default_params, 6)), 1))
    keys = jax.random.split(jax.random.key(3), 2)

    def copy(k, p, d):
        return train.run(train.init(k, p, problems=d))

    both, m_both = jax.jit(jax.vmap(copy))(keys, params, data)
    one = jax.jit(copy)
    for i in range(2):
        state, m = one(keys[i], jax.tree.map(lambda x: x[i], params), jax.tree.map(lambda x: x[i], data))
        np.testing.assert_array_equal(m.env_steps, m_both.env_steps[i])
        np.testing.assert_array_equal(m.reward_mean, m_both.reward_mean[i])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b[i], rtol=2e-5, atol=2e-6), state.params,
                     both.params)
    # the copies started from their own parameters (also the reference) and read their own data
    init = jax.jit(jax.vmap(lambda k, p, d: train.init(k, p, problems=d)))(keys, params, data)
    assert_bitwise(init.params, params)
    assert_bitwise(init.ref_params, params)
    assert_bitwise(init.problems.data, data)
    assert not np.array_equal(m_both.reward_mean[0], m_both.reward_mean[1])


# ================================================================================================ supervised
def _manual_nll(params, tokens, loss_mask):
    logits = np.asarray(apply(params, tokens, jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape),
                              causal_mask(tokens.shape[1]), config=TINY).logits, np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    total, n = 0.0, 0
    for b in range(tokens.shape[0]):
        for t in range(1, tokens.shape[1]):
            if loss_mask[b, t]:
                total -= logp[b, t - 1, tokens[b, t]]
                n += 1
    return total / n


def test_supervised_loss_on_exactly_the_masked_tokens():
    params = init_params(jax.random.key(0), TINY)
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, VOCAB.size, (3, 10)).astype(np.int32)
    loss_mask = np.zeros((3, 10), bool)
    loss_mask[0, [2, 3, 7]] = True
    loss_mask[1, 1:10] = True
    loss_mask[2, 0] = True  # position 0 is never a target: nothing predicts it
    loss, stats = lm.masked_sequence_loss(params, tokens, loss_mask, config=TINY)
    np.testing.assert_allclose(float(loss), _manual_nll(params, tokens, loss_mask), rtol=1e-5)
    # what sits at unmasked positions after a row's last target does not matter
    junk = tokens.copy()
    junk[0, 8:] = 5
    np.testing.assert_allclose(float(lm.masked_sequence_loss(params, junk, loss_mask, config=TINY)[0]), float(loss),
                               rtol=1e-6)
    # the prompt/response form puts the loss on the response tokens only
    data = lm.SequenceDataset.from_responses(jnp.asarray(tokens[:, :4]), jnp.array([4, 2, 3]),
                                             jnp.asarray(tokens[:, 4:8]),
                                             jnp.arange(4)[None, :] < jnp.array([[4], [1], [0]]))
    np.testing.assert_array_equal(np.asarray(data.loss_mask).sum(1), [4, 1, 0])
    assert np.asarray(data.loss_mask)[1].tolist() == [False, False, True] + [False] * 5


def test_supervised_trainer_from_given_parameters_on_a_dataset():
    rng = np.random.default_rng(1)
    tokens = rng.integers(3, VOCAB.size, (4, 8)).astype(np.int32)
    loss_mask = np.zeros((4, 8), bool)
    loss_mask[:, 4:] = True
    data = lm.SequenceDataset.of(tokens, loss_mask, valid=jnp.array([True, True, True, False]))
    config = lm.SupervisedConfig(num_steps=30, batch_size=3, model=TINY, learning_rate=1e-2, warmup_steps=2)
    start = init_params(jax.random.key(4), TINY)
    train = lm.make_supervised(config, data, init_params=start)
    state0 = train.init(jax.random.key(0))
    assert_bitwise(state0.params, start)
    state, metrics = jax.jit(train)(jax.random.key(0))
    # the first step's loss is the hand-computed loss of the three valid rows (a batch of 3 = one whole pass)
    np.testing.assert_allclose(float(metrics.loss[0]), _manual_nll(start, tokens[:3], loss_mask[:3]), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(metrics.data_pass)[:4], [0, 1, 2, 3])
    assert float(metrics.loss[-1]) < 0.3 * float(metrics.loss[0])  # it memorises the three rows
    assert float(metrics.sequence_accuracy[-1]) == 1.0
    # vmapped over two starts and two datasets, one program
    starts = jax.vmap(lambda k: init_params(k, TINY))(jax.random.split(jax.random.key(6), 2))
    datasets = jax.tree.map(lambda a: jnp.stack([a, a]), data)
    both = jax.jit(jax.vmap(lambda k, p, d: train.init(k, p, data=d)))(jax.random.split(jax.random.key(0), 2), starts,
                                                                        datasets)
    assert_bitwise(both.params, starts)
