"""GRPO / RLOO (jaxrl_self/rl/group.py, jaxrl_self/algos/grpo.py) and token-level PPO (algos/token_ppo.py).

* group advantages (GRPO population/sample std, RLOO, Dr. GRPO, masks, degenerate groups), token aggregation and
  the k3 KL estimator against hand-computed numbers;
* masks: whatever sits at padded positions (tokens, log-probs, even NaN/inf) changes neither a loss nor its
  gradient, for the per-token losses and through the model;
* rewards: a custom RewardFn with extras and a GroupRewardFn against Python loops;
* token-PPO: terminal rewards and GAE over response tokens against a plain-numpy reference;
* end to end: GRPO vmapped over 2 seeds raises a pluggable reward from a random start; same seed, same metrics;
  token PPO runs; configuration errors name the field.

Programs are compiled once per module (fixtures) and the models are tiny.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import algos, envs, lm, rl
from jaxrl_self.algos import grpo, token_ppo
from jaxrl_self.core import ConfigError
from jaxrl_self.core.sequence import VOCAB
from jaxrl_self.nets.transformer import TransformerConfig, init_params
from jaxrl_self.rl import group

TINY = TransformerConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, max_len=24)
TASK = envs.make("addition", max_digits=2)  # prompt_len 9


# ================================================================================================ advantages
REWARDS = np.array([
    [1.0, 0.0, 0.0, 1.0],
    [1.0, 1.0, 1.0, 1.0],  # all right: degenerate
    [0.5, 0.0, 1.0, 0.5],
], np.float32)


def test_grpo_advantages_population_std_hand_computed():
    adv = np.asarray(group.grpo_advantages(REWARDS, eps=1e-6))
    # group 0: mean 0.5, population std 0.5 -> ±0.5 / (0.5 + 1e-6)
    s = 0.5 / (0.5 + 1e-6)
    # group 2: mean 0.5, deviations (0, -0.5, 0.5, 0), population var 0.5 / 4 = 0.125, std 0.35355339
    t = 0.5 / (math.sqrt(0.125) + 1e-6)
    expected = np.array([[s, -s, -s, s], [0, 0, 0, 0], [0, -t, t, 0]], np.float32)
    np.testing.assert_allclose(adv, expected, rtol=1e-6, atol=1e-7)
    assert abs(t - 1.4142094) < 1e-5


def test_grpo_advantages_sample_std_hand_computed():
    adv = np.asarray(group.grpo_advantages(REWARDS, eps=1e-6, ddof=1))
    s = 0.5 / (math.sqrt(1.0 / 3.0) + 1e-6)  # group 0: sample var (4 * 0.25) / 3
    t = 0.5 / (math.sqrt(0.5 / 3.0) + 1e-6)  # group 2: sample var 0.5 / 3, std 0.40824829
    expected = np.array([[s, -s, -s, s], [0, 0, 0, 0], [0, -t, t, 0]], np.float32)
    np.testing.assert_allclose(adv, expected, rtol=1e-6, atol=1e-7)


def test_rloo_advantages_hand_computed():
    adv = np.asarray(group.rloo_advantages(REWARDS))
    # r_i - mean of the other three
    expected = np.array([
        [1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3],
        [0, 0, 0, 0],
        [0.5 - 1.5 / 3, 0 - 2 / 3, 1 - 1 / 3, 0.5 - 1.5 / 3],
    ], np.float32)
    np.testing.assert_allclose(adv, expected, atol=1e-6)
    # RLOO = G/(G-1) (r - mean)
    np.testing.assert_allclose(adv, 4 / 3 * np.asarray(group.dr_grpo_advantages(REWARDS)), atol=1e-6)


def test_dr_grpo_advantages_hand_computed():
    adv = np.asarray(group.dr_grpo_advantages(REWARDS))
    np.testing.assert_allclose(adv, [[0.5, -0.5, -0.5, 0.5], [0, 0, 0, 0], [0, -0.5, 0.5, 0]], atol=1e-7)


def test_group_advantages_with_mask_hand_computed():
    r = np.array([[1.0, 0.0, 1.0, 9.0]], np.float32)
    m = np.array([[True, True, True, False]])
    # valid rewards (1, 0, 1): mean 2/3, population var ((1/3)^2 * 2 + (2/3)^2) / 3 = 2/9
    sd = math.sqrt(2 / 9)
    np.testing.assert_allclose(group.grpo_advantages(r, m, eps=0.0),
                               [[(1 / 3) / sd, -(2 / 3) / sd, (1 / 3) / sd, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(group.rloo_advantages(r, m), [[0.5, -1.0, 0.5, 0.0]], atol=1e-6)
    np.testing.assert_allclose(group.dr_grpo_advantages(r, m), [[1 / 3, -2 / 3, 1 / 3, 0.0]], atol=1e-6)
    # fewer than two valid members: no baseline, zero advantage
    one = np.array([[True, False, False, False]])
    for est in group.ESTIMATORS:
        np.testing.assert_array_equal(group.group_advantages(r, est, one), np.zeros((1, 4)))


def test_degenerate_groups_are_exactly_zero():
    """Equal non-integer rewards: r - mean can be a rounding error; the advantage must still be exactly 0."""
    r = np.full((3, 8), 0.1, np.float32) * np.array([[1.0], [3.0], [7.0]], np.float32)
    for est in group.ESTIMATORS:
        np.testing.assert_array_equal(np.asarray(group.group_advantages(r, est)), np.zeros_like(r))


def test_group_advantages_batch_shapes_and_errors():
    r = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
    adv = np.asarray(group.grpo_advantages(r, eps=0.0))
    assert adv.shape == (2, 3, 5)
    np.testing.assert_allclose(adv.mean(-1), 0.0, atol=1e-6)
    np.testing.assert_allclose((adv ** 2).mean(-1), 1.0, rtol=1e-5)  # population std: unit mean square
    with pytest.raises(ValueError, match="allowed"):
        group.group_advantages(r, "ppo")
    with pytest.raises(ValueError, match="allowed"):
        group.aggregate_tokens(r[0], r[0] > 0, "mean")


def test_aggregate_tokens_hand_computed():
    x = np.array([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0], [99.0, 99.0, 99.0, 99.0]], np.float32)
    m = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_allclose(group.aggregate_tokens(x, m, "token_mean"), (1 + 2 + 3 + 4) / 4)
    # per sequence: 2.0 and 4.0; the empty third response does not count
    np.testing.assert_allclose(group.aggregate_tokens(x, m, "seq_mean_token_mean"), 3.0)
    # Dr. GRPO: sum / (N * R) = 10 / (3 * 4)
    np.testing.assert_allclose(group.aggregate_tokens(x, m, "seq_mean_token_sum_norm"), 10 / 12)
    for mode in group.AGGREGATIONS:
        assert float(group.aggregate_tokens(x, np.zeros_like(m), mode)) == 0.0


# ================================================================================================ k3 KL
def test_k3_hand_computed_and_exact_expectation():
    # log π = log 0.5, log π_ref = log 0.25: d = log 0.5, k3 = 0.5 - log 0.5 - 1 = 0.19314718
    np.testing.assert_allclose(rl.kl_k3(jnp.log(0.5), jnp.log(0.25)), 0.5 + math.log(2) - 1, rtol=1e-6)
    np.testing.assert_allclose(rl.kl_k3(jnp.log(0.25), jnp.log(0.5)), 2 - math.log(2) - 1, rtol=1e-6)
    assert float(rl.kl_k3(jnp.log(0.3), jnp.log(0.3))) == 0.0
    # E_{y~π}[k3] = KL(π || π_ref) exactly (sum over the support, no sampling)
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.2, 0.2, 0.6])
    expectation = float(np.sum(p * np.asarray(rl.kl_k3(jnp.log(p), jnp.log(q)))))
    np.testing.assert_allclose(expectation, np.sum(p * np.log(p / q)), rtol=1e-5)


def test_policy_token_loss_hand_computed():
    """One response of two tokens, A = 1, ε = 0.2: ratios 1.5 (clipped to 1.2) and 0.5; β = 0.1."""
    logp = jnp.log(jnp.array([[0.6, 0.2, 0.7]]))
    old = jnp.log(jnp.array([[0.4, 0.4, 0.1]]))
    ref = jnp.log(jnp.array([[0.3, 0.4, 0.1]]))
    ent = jnp.array([[1.0, 2.0, 50.0]])
    mask = jnp.array([[True, True, False]])
    loss, aux = lm.policy_token_loss(logp, old, ref, ent, jnp.array([1.0]), mask, clip_eps=0.2, kl_coef=0.1,
                                       ent_coef=0.01)
    k3 = [0.3 / 0.6 - math.log(0.3 / 0.6) - 1, 0.4 / 0.2 - math.log(0.4 / 0.2) - 1]
    surr = [-1.2, -0.5]  # -min(1.5, 1.2), -min(0.5, 0.8)
    expected = np.mean([surr[i] + 0.1 * k3[i] - 0.01 * [1.0, 2.0][i] for i in range(2)])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(aux["kl"], np.mean(k3), rtol=1e-5)
    np.testing.assert_allclose(aux["clip_fraction"], 1.0)  # both ratios lie outside [0.8, 1.2]
    np.testing.assert_allclose(aux["entropy"], 1.5)


def test_policy_token_loss_matches_ppo_policy_loss():
    rng = np.random.default_rng(1)
    logp = jnp.asarray(-rng.uniform(0.1, 3, (4, 6)), jnp.float32)
    old = logp + jnp.asarray(rng.normal(0, 0.3, (4, 6)), jnp.float32)
    adv = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
    mask = jnp.arange(6)[None, :] < jnp.array([6, 3, 1, 4])[:, None]
    ours, _ = lm.policy_token_loss(logp, old, jnp.zeros_like(logp), jnp.zeros_like(logp), adv, mask,
                                     clip_eps=0.2, use_kl=False)
    ref, _ = rl.ppo_policy_loss(logp, old, jnp.broadcast_to(adv[:, None], logp.shape), 0.2, mask)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


# ================================================================================================ masks
def _poison(x, mask, value):
    return jnp.where(mask, x, value)


@pytest.mark.parametrize("agg", group.AGGREGATIONS)
def test_padding_never_enters_policy_loss_or_gradient(agg):
    rng = np.random.default_rng(2)
    shape = (5, 7)
    logp = jnp.asarray(-rng.uniform(0.1, 3, shape), jnp.float32)
    old = logp + jnp.asarray(rng.normal(0, 0.3, shape), jnp.float32)
    ref = logp + jnp.asarray(rng.normal(0, 0.3, shape), jnp.float32)
    ent = jnp.asarray(rng.uniform(0, 4, shape), jnp.float32)
    adv = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
    mask = jnp.arange(7)[None, :] < jnp.array([7, 3, 1, 0, 5])[:, None]

    def f(lp, o, r, e):
        return lm.policy_token_loss(lp, o, r, e, adv, mask, clip_eps=0.2, kl_coef=0.05, ent_coef=0.01, agg=agg)[0]

    base, g = jax.value_and_grad(f, argnums=(0, 3))(logp, old, ref, ent)
    for value in (0.0, 123.0, -1e30, jnp.inf, jnp.nan):
        args = [_poison(x, mask, value) for x in (logp, old, ref, ent)]
        v, g2 = jax.value_and_grad(f, argnums=(0, 3))(*args)
        assert float(v) == float(base)
        for a, b in zip(g, g2):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.all(np.asarray(g[0])[~np.asarray(mask)] == 0.0)


def test_padding_never_enters_token_ppo_loss_or_gradient():
    rng = np.random.default_rng(3)
    shape = (4, 6)
    arrs = [jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(7)]
    arrs[0] = -jnp.abs(arrs[0])
    mask = jnp.arange(6)[None, :] < jnp.array([6, 2, 0, 4])[:, None]

    def f(lp, v, *rest):
        return token_ppo.ppo_token_loss(lp, rest[0], v, *rest[1:], mask, clip_eps=0.2, value_clip_eps=0.2,
                                        vf_coef=0.5, ent_coef=0.01)[0]

    base, g = jax.value_and_grad(f, argnums=(0, 1))(arrs[0], arrs[1], *arrs[2:])
    for value in (7.0, jnp.inf, jnp.nan):
        poisoned = [_poison(x, mask, value) for x in arrs]
        v, g2 = jax.value_and_grad(f, argnums=(0, 1))(poisoned[0], poisoned[1], *poisoned[2:])
        assert float(v) == float(base)
        for a, b in zip(g, g2):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def tiny_params():
    return jax.jit(lambda k: init_params(k, TINY))(jax.random.key(0))


def test_padding_tokens_never_change_model_loss_or_gradient(tiny_params):
    """Through the Transformer: different tokens after each response's end and after each prompt's end give
    bit-identical GRPO and token-PPO losses and parameter gradients."""
    rng = np.random.default_rng(4)
    N, P, R = 4, TASK.prompt_len, 6
    plen = jnp.array([5, 9, 7, 6], jnp.int32)
    rlen = jnp.array([6, 2, 4, 1], jnp.int32)
    prompts = jnp.asarray(rng.integers(3, VOCAB.size, (N, P)), jnp.int32).at[:, 0].set(VOCAB.BOS)
    responses = jnp.asarray(rng.integers(3, VOCAB.size, (N, R)), jnp.int32)
    rmask = jnp.arange(R)[None, :] < rlen[:, None]
    pmask = jnp.arange(P)[None, :] < plen[:, None]

    def batch(pr, rs):
        return lm.Batch(prompts=pr, prompt_len=plen, responses=rs, mask=rmask,
                        old_logp=jnp.where(rmask, -1.0, 0.0), ref_logp=jnp.where(rmask, -1.2, 0.0),
                        advantage=jnp.array([1.0, -0.5, 0.3, -1.0]))

    cfg = grpo.Config(model=TINY, kl_coef=0.1, ent_coef=0.01)
    loss_grad = jax.jit(jax.value_and_grad(lambda p, b: lm.group_policy_loss(cfg, TINY, p, b)[0]))
    base = loss_grad(tiny_params, batch(prompts, responses))
    junk_r = jnp.where(rmask, responses, jnp.asarray(rng.integers(0, VOCAB.size, (N, R)), jnp.int32))
    junk_p = jnp.where(pmask, prompts, jnp.asarray(rng.integers(0, VOCAB.size, (N, P)), jnp.int32))
    other = loss_grad(tiny_params, batch(junk_p, junk_r))
    assert float(base[0]) == float(other[0])
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), base[1], other[1])
    # but a change inside a response does change the loss
    changed = loss_grad(tiny_params, batch(prompts, responses.at[0, 0].set((responses[0, 0] + 1) % VOCAB.size)))
    assert float(changed[0]) != float(base[0])


# ================================================================================================ rewards
_sample3 = jax.jit(lambda k: lm.sample_problems(k, TASK, TASK.default_params, 3))


def _toy_rollout(B=3, G=4, R=5, seed=5):
    rng = np.random.default_rng(seed)
    problems = _sample3(jax.random.key(seed))
    responses = jnp.asarray(rng.integers(0, VOCAB.size, (B * G, R)), jnp.int32)
    lengths = jnp.asarray(rng.integers(0, R + 1, (B * G,)), jnp.int32)
    mask = jnp.arange(R)[None, :] < lengths[:, None]
    z = jnp.zeros((B * G, R), jnp.float32)
    prompts = jnp.repeat(problems.prompt, G, axis=0)
    return lm.Rollout(problem=problems, prompts=prompts, prompt_len=jnp.sum(prompts != VOCAB.PAD, -1),
                      responses=responses, mask=mask, logp=z, values=None)


def _rewards(reward, ro, extras=None):
    return lm.compute_rewards(jax.random.key(0), reward, ro.problem, ro.responses, ro.mask, 4, extras)[0]


def test_custom_reward_fn_with_extras_matches_python_loop():
    ro = _toy_rollout()

    def reward(problem, response, response_mask, key, extras):
        hits = jnp.sum(jnp.where(response_mask, extras["table"][response], 0.0))
        return hits / jnp.maximum(jnp.sum(response_mask), 1) + 0.01 * problem.difficulty

    table = jnp.zeros(VOCAB.size).at[VOCAB.digit(jnp.arange(10))].set(1.0)
    got = np.asarray(jax.jit(lambda ro, x: _rewards(reward, ro, x))(
        ro, {"table": table}))
    resp, mask = np.asarray(ro.responses), np.asarray(ro.mask)
    diff = np.asarray(ro.problem.difficulty)
    for b in range(3):
        for g in range(4):
            n = b * 4 + g
            toks = resp[n][mask[n]]
            digits = sum(VOCAB.id("0") <= t <= VOCAB.id("9") for t in toks)
            np.testing.assert_allclose(got[b, g], digits / max(len(toks), 1) + 0.01 * diff[b], rtol=1e-6)


def test_group_reward_fn_sees_the_whole_group():
    ro = _toy_rollout()

    @grpo.group_reward
    def longest_wins(problem, responses, response_mask, key, extras):
        length = jnp.sum(response_mask, axis=-1)
        return (length == jnp.max(length)).astype(jnp.float32)

    assert grpo.is_group_reward(longest_wins)
    got = np.asarray(_rewards(longest_wins, ro))
    lengths = np.asarray(ro.mask).sum(-1).reshape(3, 4)
    np.testing.assert_array_equal(got, (lengths == lengths.max(-1, keepdims=True)).astype(np.float32))


def test_verifier_reward_and_format_penalty():
    p0 = jax.tree.map(lambda x: x[0], _sample3(jax.random.key(1)))
    right = p0.solution
    wrong = right.at[1].set(VOCAB.digit((VOCAB.digit_value(right[1]) + 1) % 10))
    garbage = jnp.full_like(right, VOCAB.id("+"))
    full = jnp.ones_like(right, bool)
    responses = jnp.stack([right, wrong, garbage, right])
    # the last one: the answer's tokens past the mask are not part of the response
    masks = jnp.stack([full, full, full, jnp.arange(right.shape[0]) < 2])
    fn = grpo.verifier_reward(TASK, format_penalty=0.5)
    got = jax.jit(jax.vmap(fn, in_axes=(None, 0, 0, None, None)))(p0, responses, masks, None, None)
    np.testing.assert_array_equal(np.asarray(got), [1.0, 0.0, -0.5, -0.5])


# ================================================================================================ token PPO maths
def _gae_numpy(rewards, values, mask, gamma, lam):
    N, R = rewards.shape
    adv = np.zeros((N, R))
    for n in range(N):
        T = int(mask[n].sum())
        last = 0.0
        for t in reversed(range(T)):
            next_v = values[n, t + 1] if t + 1 < T else 0.0
            delta = rewards[n, t] + gamma * next_v - values[n, t]
            last = delta + gamma * lam * last
            adv[n, t] = last
    ret = np.where(mask, adv + values, 0.0)
    return adv, ret


def _token_ppo_loss_numpy(logp, old_logp, values, old_values, returns, adv, ent, mask, eps, veps, vf, ec):
    """Plain-numpy token-PPO loss over the masked tokens (Python loop, float64)."""
    pol, val, ents = [], [], []
    for n, t in zip(*np.nonzero(mask)):
        ratio = math.exp(logp[n, t] - old_logp[n, t])
        a = adv[n, t]
        pol.append(-min(ratio * a, min(max(ratio, 1 - eps), 1 + eps) * a))
        err = (values[n, t] - returns[n, t]) ** 2
        if veps is not None:
            v_clip = old_values[n, t] + min(max(values[n, t] - old_values[n, t], -veps), veps)
            err = max(err, (v_clip - returns[n, t]) ** 2)
        val.append(err)
        ents.append(ent[n, t])
    p, v, e = np.mean(pol), 0.5 * np.mean(val), np.mean(ents)
    return p + vf * v - ec * e, p, v


@pytest.mark.parametrize("veps", [0.1, None], ids=["value-clipped", "unclipped"])
def test_token_ppo_loss_with_value_clipping_matches_numpy(veps):
    rng = np.random.default_rng(11)
    N, R = 5, 7
    mask = np.arange(R)[None, :] < np.array([7, 3, 0, 5, 1])[:, None]
    logp = -np.abs(rng.normal(size=(N, R)))
    old_logp = logp + rng.normal(scale=0.3, size=(N, R))  # ratios on both sides of the clip range
    old_values = rng.normal(size=(N, R))
    values = old_values + rng.normal(scale=0.3, size=(N, R))  # some moves inside, some outside ±0.1
    returns, adv, ent = rng.normal(size=(N, R)), rng.normal(size=(N, R)), np.abs(rng.normal(size=(N, R)))
    args = [jnp.asarray(x, jnp.float32) for x in (logp, old_logp, values, old_values, returns, adv, ent)]
    loss, aux = token_ppo.ppo_token_loss(*args, jnp.asarray(mask), clip_eps=0.2, value_clip_eps=veps, vf_coef=0.5,
                                         ent_coef=0.01)
    ref, ref_pol, ref_val = _token_ppo_loss_numpy(logp, old_logp, values, old_values, returns, adv, ent, mask,
                                                  0.2, veps, 0.5, 0.01)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(aux["policy_loss"]), ref_pol, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(aux["value_loss"]), ref_val, rtol=1e-5, atol=1e-6)
    if veps is not None:  # the clipped term really is active for some tokens
        moved = np.abs(values - old_values)[mask] > veps
        assert moved.any() and (~moved).any()


def test_token_rewards_terminal():
    mask = jnp.arange(5)[None, :] < jnp.array([5, 2, 0])[:, None]
    r = np.asarray(token_ppo.token_rewards(jnp.array([1.0, -2.0, 3.0]), mask))
    np.testing.assert_array_equal(r, [[0, 0, 0, 0, 1.0], [0, -2.0, 0, 0, 0], [0, 0, 0, 0, 0]])
    kl = jnp.full((3, 5), -0.1)
    r = np.asarray(token_ppo.token_rewards(jnp.array([1.0, -2.0, 3.0]), mask, kl))
    np.testing.assert_allclose(r, [[-0.1, -0.1, -0.1, -0.1, 0.9], [-0.1, -2.1, 0, 0, 0], [0, 0, 0, 0, 0]])


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (1.0, 1.0), (0.9, 0.0), (0.97, 0.5)])
def test_token_gae_matches_numpy(gamma, lam):
    rng = np.random.default_rng(6)
    N, R = 6, 9
    lengths = np.array([9, 1, 0, 4, 7, 2])
    mask = np.arange(R)[None, :] < lengths[:, None]
    rewards = rng.normal(size=(N, R)).astype(np.float32)
    values = rng.normal(size=(N, R)).astype(np.float32)
    adv, ret = token_ppo.token_gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), gamma, lam)
    ref_adv, ref_ret = _gae_numpy(np.where(mask, rewards, 0), np.where(mask, values, 0), mask, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)
    # λ = 1, γ = 1, terminal reward only: the return of every token is the response reward
    if gamma == 1.0 and lam == 1.0:
        term = np.asarray(token_ppo.token_rewards(jnp.asarray(rewards[:, 0]), jnp.asarray(mask)))
        _, ret = token_ppo.token_gae(jnp.asarray(term), jnp.asarray(values), jnp.asarray(mask), 1.0, 1.0)
        np.testing.assert_allclose(np.asarray(ret), np.where(mask, rewards[:, :1], 0.0), rtol=1e-5, atol=1e-5)


# ================================================================================================ end to end
DIGITS = jnp.zeros(VOCAB.size).at[VOCAB.digit(jnp.arange(10))].set(1.0)


def digit_reward(problem, response, response_mask, key, extras):
    """Fraction of the response's tokens that are in ``extras`` (a [V] 0/1 table): easy to learn from scratch."""
    return jnp.sum(jnp.where(response_mask, extras[response], 0.0)) / jnp.maximum(jnp.sum(response_mask), 1)


E2E = grpo.Config(num_updates=16, num_prompts=8, group_size=8, max_new_tokens=6, model=TINY, learning_rate=3e-3,
                  kl_coef=0.01, update_epochs=2, num_minibatches=2, max_difficulty=1)


@pytest.fixture(scope="module")
def e2e_run(tiny_params):
    # explicit initial parameters (shared by the seeds; the seeds differ in their samples) keep the
    # initialiser's random-number kernels out of the compiled program
    train = grpo.make_train(E2E, TASK, reward_fn=digit_reward, reward_extras=DIGITS, init_params=tiny_params,
                            model_config=TINY)
    run = jax.jit(jax.vmap(train))
    keys = jax.random.split(jax.random.key(42), 2)
    return run, keys, run(keys)


def test_grpo_vmapped_seeds_improve_a_pluggable_reward(e2e_run):
    _, _, (state, m) = e2e_run
    reward = np.asarray(m.reward_mean)  # [seeds, updates]
    assert reward.shape == (2, E2E.num_updates)
    assert np.all(np.asarray(state.nonfinite_update) == -1)
    first, last = reward[:, :3].mean(1), reward[:, -3:].mean(1)
    assert np.all(first < 0.35), first  # weak start: random tokens, 10 digits out of 64
    assert np.all(last > first + 0.3), (first, last)
    assert np.all(np.isfinite(np.asarray(m.loss)))
    assert np.all(np.asarray(m.kl)[:, -1] > 0)  # moved away from the reference
    assert np.all(np.asarray(state.update_step) == E2E.num_updates)
    np.testing.assert_array_equal(np.asarray(m.env_steps)[:, -1], np.asarray(state.env_steps))
    assert not np.array_equal(reward[0], reward[1])  # different seeds, different samples


def test_same_seed_same_metrics(e2e_run):
    run, keys, (_, m) = e2e_run
    _, m2 = run(keys)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), m, m2)


def test_make_eval_greedy_is_deterministic(e2e_run):
    _, _, (state, _) = e2e_run
    evaluate = jax.jit(grpo.make_eval(E2E, TASK), static_argnames="num_episodes")
    params = jax.tree.map(lambda x: x[0], state.params)
    a = evaluate(params, jax.random.key(7), num_episodes=8)
    b = evaluate(params, jax.random.key(7), num_episodes=8)
    np.testing.assert_array_equal(np.asarray(a.correct), np.asarray(b.correct))
    assert a.episode_return.shape == (8,) and np.all(np.asarray(a.difficulty) == 1)
    assert np.all(np.asarray(a.response_length) <= E2E.max_new_tokens)


def test_token_ppo_runs_and_learns_values(tiny_params):
    cfg = token_ppo.Config(num_updates=6, num_prompts=8, max_new_tokens=6, update_epochs=2, num_minibatches=1,
                           learning_rate=3e-3, max_difficulty=1)
    # parameters without a value head: make_train adds one (zero output) on the shared trunk
    train = token_ppo.make_train(cfg, TASK, reward_fn=digit_reward, reward_extras=DIGITS, init_params=tiny_params,
                                 model_config=TINY)
    state, m = jax.jit(train)(jax.random.key(3))
    assert int(state.nonfinite_update) == -1
    for name in ("loss", "policy_loss", "value_loss", "entropy", "reward_mean"):
        assert np.all(np.isfinite(np.asarray(getattr(m, name)))), name
    v = np.asarray(m.value_mean)
    assert v[0] == 0.0 and v[-1] > 0.05  # the zero-initialised value head learns the positive returns


# ================================================================================================ validation
@pytest.mark.parametrize("field,value", [
    ("group_size", 1), ("num_minibatches", 3), ("advantage", "ppo"), ("loss_agg", "sum"), ("std_ddof", 2),
    ("learning_rate", -1.0), ("clip_eps", 0.0), ("temperature", 0.0), ("kl_coef", -0.1), ("max_new_tokens", 0),
    ("prompt_layout", "left"), ("min_difficulty", 0), ("warmup_updates", -1),
])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        grpo.Config(model=TINY, **{field: value}).validate(TASK)


def test_config_errors_need_a_task_and_room():
    with pytest.raises(ConfigError, match="SequenceTask"):
        grpo.Config(model=TINY).validate(envs.make("cartpole"))
    with pytest.raises(ConfigError, match="max_len"):
        grpo.Config(model=TINY, max_new_tokens=16).validate(TASK)  # 9 + 16 > 24
    with pytest.raises(ConfigError, match="min_difficulty"):
        grpo.Config(model=TINY, min_difficulty=2, max_difficulty=1).validate(TASK)
    with pytest.raises(ConfigError, match="max_digits"):
        grpo.Config(model=TINY, max_difficulty=3).validate(TASK)  # the task has at most 2 digits
    with pytest.raises(ConfigError, match="gae_lambda"):
        token_ppo.Config(model=TINY, gae_lambda=1.5).validate(TASK)


def test_learning_rate_warmup_hand_computed():
    cfg = grpo.Config(learning_rate=1e-3, warmup_updates=4)
    got = [float(lm.learning_rate_at(cfg, k)) for k in range(6)]
    np.testing.assert_allclose(got, [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3], rtol=1e-6)
    np.testing.assert_allclose(float(lm.learning_rate_at(grpo.Config(learning_rate=1e-3), 0)), 1e-3, rtol=1e-6)


def test_registered_and_difficulty_mapping():
    assert algos.get("grpo") is grpo and algos.get("token_ppo") is token_ppo
    p = lm.task_params_for(grpo.Config(min_difficulty=2, max_difficulty=2), TASK)
    assert int(p.min_digits) == 2 and int(p.max_digits) == 2
    chain = envs.make("chain", max_steps_cap=8)
    p = lm.task_params_for(grpo.Config(max_difficulty=3), chain)
    assert int(p.max_steps) == 3 and int(p.min_steps) == int(chain.default_params.min_steps)


# ================================================================================================ CLI
def test_cli_train_grpo_on_a_task_smoke(tmp_path, capsys):
    """``jaxrl-self train grpo --task addition`` with a tiny fresh model: runs, writes metrics, prints a summary."""
    import csv

    from jaxrl_self.cli import main

    run_dir = tmp_path / "run"
    code = main(["train", "grpo", "--task", "addition", "--num-updates", "2", "--num-prompts", "2",
                 "--group-size", "2", "--max-new-tokens", "4", "--max-difficulty", "1", "--num-layers", "1",
                 "--d-model", "32", "--num-heads", "2", "--d-ff", "64", "--max-len", "24", "--chunks", "1",
                 "--run-dir", str(run_dir), "--no-progress"])
    assert code == 0
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["seed"] == "0"]
    assert len(rows) == 2 and {"reward_mean", "accuracy", "kl", "loss"} <= set(rows[0])
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert "grpo" in capsys.readouterr().out
