"""The shared RL maths against plain-numpy / plain-Python references: GAE (truncation-aware), returns, PPO
losses, KL estimators, minibatching, observation normalisation, and the rollout's data layout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import envs, rl
from jaxrl_self.rl import advantages as adv_mod
from jaxrl_self.rl import losses, minibatch, normalize
from jaxrl_self.rl import rollout as rollout_mod

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------------ references
def gae_reference(r, v, v_next, term, trunc, gamma, lam):
    """Direct definition: A_t = sum_k (γλ)^k δ_{t+k} over the rest of the episode inside the rollout, with
    δ_t = r_t + γ V(s'_t) [not terminal] - V(s_t). Plain Python loops over one environment."""
    T = len(r)
    delta = [r[t] + (0.0 if term[t] else gamma * v_next[t]) - v[t] for t in range(T)]
    out = np.zeros(T)
    for t in range(T):
        total, k = 0.0, 0
        while t + k < T:
            total += (gamma * lam) ** k * delta[t + k]
            if term[t + k] or trunc[t + k]:
                break
            k += 1
        out[t] = total
    return out


def returns_reference(r, v_next, term, trunc, gamma):
    """G_t summed forward to the end of the episode (or rollout), bootstrapping where the data stops."""
    T = len(r)
    out = np.zeros(T)
    for t in range(T):
        g, k = 0.0, 0
        while True:
            g += gamma**k * r[t + k]
            ended = term[t + k] or trunc[t + k]
            if ended or t + k == T - 1:
                if not term[t + k]:
                    g += gamma ** (k + 1) * v_next[t + k]
                break
            k += 1
        out[t] = g
    return out


def _random_rollout(T=13, N=5):
    r = RNG.normal(size=(T, N)).astype(np.float32)
    v = RNG.normal(size=(T, N)).astype(np.float32)
    v_next = RNG.normal(size=(T, N)).astype(np.float32)
    term = RNG.random((T, N)) < 0.15
    trunc = (RNG.random((T, N)) < 0.15) & ~term
    # make sure the interesting cases exist: mid-rollout and at the rollout edge, both kinds
    term[4, 0], trunc[4, 0] = True, False
    trunc[6, 1], term[6, 1] = True, False
    term[T - 1, 2], trunc[T - 1, 2] = True, False
    trunc[T - 1, 3], term[T - 1, 3] = True, False
    term[:, 4], trunc[:, 4] = False, False  # an episode that runs through the whole rollout
    trunc[0, 4] = True  # ... except for a truncation at the very first step
    return r, v, v_next, term, trunc


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (0.8, 1.0), (1.0, 0.5)])
def test_gae_matches_reference(gamma, lam):
    r, v, v_next, term, trunc = _random_rollout()
    A, R = jax.jit(rl.gae)(r, v, v_next, jnp.asarray(term), jnp.asarray(term | trunc), gamma, lam)
    for n in range(r.shape[1]):
        want = gae_reference(r[:, n], v[:, n], v_next[:, n], term[:, n], trunc[:, n], gamma, lam)
        np.testing.assert_allclose(np.asarray(A[:, n]), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(R), np.asarray(A) + v, rtol=1e-6)


def test_gae_by_hand():
    # env 0: s0 -> s1 -> s2 truncated (bootstrap V(final)=10), then a new episode at t=3 that terminates.
    r = np.array([1.0, 1.0, 1.0, 5.0], np.float32)[:, None]
    v = np.array([2.0, 3.0, 4.0, 1.0], np.float32)[:, None]
    v_next = np.array([3.0, 4.0, 10.0, 7.0], np.float32)[:, None]  # 7.0 must be ignored (terminal)
    term = np.array([0, 0, 0, 1], bool)[:, None]
    trunc = np.array([0, 0, 1, 0], bool)[:, None]
    g, lam = 0.5, 0.5
    A, _ = rl.gae(r, v, v_next, term, term | trunc, g, lam)
    d2 = 1 + g * 10 - 4  # truncated: bootstrap from V(final_obs)
    d1 = 1 + g * 4 - 3
    d0 = 1 + g * 3 - 2
    d3 = 5 - 1  # terminated: no bootstrap
    want = [d0 + g * lam * (d1 + g * lam * d2), d1 + g * lam * d2, d2, d3]
    np.testing.assert_allclose(np.asarray(A[:, 0]), want, rtol=1e-6)


def test_gae_lambda_one_is_discounted_return():
    r, v, v_next, term, trunc = _random_rollout()
    # consistent data: where an episode goes on, V(s'_t) is V(s_{t+1}) (GAE's telescoping relies on it)
    cont = ~(term | trunc)
    v_next[:-1] = np.where(cont[:-1], v[1:], v_next[:-1])
    A, R = rl.gae(r, v, v_next, term, term | trunc, 0.9, 1.0)
    G = rl.discounted_returns(r, v_next, term, term | trunc, 0.9)
    np.testing.assert_allclose(np.asarray(R), np.asarray(G), rtol=1e-4, atol=1e-4)
    for n in range(r.shape[1]):
        want = returns_reference(r[:, n], v_next[:, n], term[:, n], trunc[:, n], 0.9)
        np.testing.assert_allclose(np.asarray(G[:, n]), want, rtol=1e-5, atol=1e-5)


def test_bootstrap_next_values():
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    final = -np.arange(12, dtype=np.float32).reshape(4, 3) - 100
    last = np.array([50.0, 51.0, 52.0], np.float32)
    done = np.zeros((4, 3), bool)
    done[1, 0] = done[3, 2] = True
    got = np.asarray(rl.bootstrap_next_values(values, last, final, done))
    want = np.empty((4, 3), np.float32)
    for t in range(4):
        for n in range(3):
            nxt = values[t + 1, n] if t + 1 < 4 else last[n]
            want[t, n] = final[t, n] if done[t, n] else nxt
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------------ losses
def test_ppo_policy_loss_and_stats():
    logp = RNG.normal(size=64).astype(np.float32) * 0.3 - 1
    old = logp + RNG.normal(size=64).astype(np.float32) * 0.3
    a = RNG.normal(size=64).astype(np.float32)
    eps = 0.2
    loss, st = rl.ppo_policy_loss(logp, old, a, eps)
    ratio = np.exp(logp.astype(np.float64) - old)
    want = -np.mean(np.minimum(ratio * a, np.clip(ratio, 1 - eps, 1 + eps) * a))
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(st.clip_fraction), np.mean(np.abs(ratio - 1) > eps), rtol=1e-6)
    np.testing.assert_allclose(float(st.approx_kl), np.mean((ratio - 1) - np.log(ratio)), rtol=1e-4)


def test_ppo_policy_loss_mask_is_token_mean():
    logp = RNG.normal(size=(4, 6)).astype(np.float32) * 0.3
    old = logp + RNG.normal(size=(4, 6)).astype(np.float32) * 0.3
    a = RNG.normal(size=(4, 6)).astype(np.float32)
    mask = RNG.random((4, 6)) < 0.6
    loss, st = rl.ppo_policy_loss(logp, old, a, 0.1, mask=mask)
    ratio = np.exp(logp.astype(np.float64) - old)
    surr = np.minimum(ratio * a, np.clip(ratio, 0.9, 1.1) * a)
    np.testing.assert_allclose(float(loss), -surr[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(st.clip_fraction), (np.abs(ratio - 1) > 0.1)[mask].mean(), rtol=1e-6)
    # masked-out entries cannot change the loss, even if they are huge
    a2 = np.where(mask, a, 1e6).astype(np.float32)
    np.testing.assert_allclose(float(rl.ppo_policy_loss(logp, old, a2, 0.1, mask=mask)[0]), float(loss), rtol=1e-6)


def test_policy_loss_gradient_vanishes_outside_clip():
    old = jnp.zeros(2)
    a = jnp.array([1.0, -1.0])
    # ratio 1.5 with A>0 and ratio 0.5 with A<0: both clipped -> no gradient
    logp = jnp.log(jnp.array([1.5, 0.5]))
    g = jax.grad(lambda lp: rl.ppo_policy_loss(lp, old, a, 0.2)[0])(logp)
    np.testing.assert_array_equal(np.asarray(g), 0.0)


@pytest.mark.parametrize("clip", [None, 0.3])
def test_value_loss(clip):
    v = RNG.normal(size=32).astype(np.float32)
    old = RNG.normal(size=32).astype(np.float32)
    ret = RNG.normal(size=32).astype(np.float32)
    got = float(rl.value_loss(v, old, ret, clip))
    err = (v - ret) ** 2
    if clip is not None:
        err = np.maximum(err, (old + np.clip(v - old, -clip, clip) - ret) ** 2)
    np.testing.assert_allclose(got, 0.5 * err.mean(), rtol=1e-5)
    mask = np.arange(32) % 3 == 0
    np.testing.assert_allclose(float(rl.value_loss(v, old, ret, clip, mask)), 0.5 * err[mask].mean(), rtol=1e-5)


def test_kl_k3_and_entropy_and_masked_mean():
    logp = np.log(np.array([0.2, 0.5, 0.9], np.float32))
    ref = np.log(np.array([0.3, 0.5, 0.6], np.float32))
    d = ref.astype(np.float64) - logp
    np.testing.assert_allclose(np.asarray(rl.kl_k3(logp, ref)), np.exp(d) - d - 1, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(rl.kl_k3(logp, ref)) >= 0)
    assert float(rl.kl_k3(logp, logp).sum()) == 0.0
    # k3 is unbiased for KL(p || ref) when actions are drawn from p
    p = np.array([0.1, 0.6, 0.3])
    q = np.array([0.3, 0.3, 0.4])
    exact = np.sum(p * np.log(p / q))
    est = np.sum(p * np.asarray(rl.kl_k3(jnp.log(p), jnp.log(q))))
    np.testing.assert_allclose(est, exact, rtol=1e-5)
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    assert float(rl.masked_mean(x)) == 2.5
    assert float(rl.masked_mean(x, np.array([1, 0, 1, 0], bool))) == 2.0
    assert float(rl.masked_mean(x, np.zeros(4, bool))) == 0.0
    assert float(rl.entropy_bonus(x, np.array([0, 0, 0, 1], bool))) == 4.0


def test_normalize_advantages():
    a = RNG.normal(size=50).astype(np.float32) * 3 + 2
    np.testing.assert_allclose(np.asarray(rl.normalize_advantages(a)), (a - a.mean()) / (a.std() + 1e-8), rtol=1e-4,
                               atol=1e-5)
    mask = np.arange(50) < 20
    got = np.asarray(rl.normalize_advantages(a, mask))
    sel = a[mask]
    np.testing.assert_allclose(got[mask], (sel - sel.mean()) / (sel.std() + 1e-8), rtol=1e-4, atol=1e-5)
    assert np.all(got[~mask] == 0)


# ------------------------------------------------------------------------------------------------ minibatches
def test_shuffle_split_flat_covers_every_sample_once():
    B, M = 24, 4
    batch = {"x": jnp.arange(B), "y": jnp.arange(B * 3).reshape(B, 3)}
    mbs = minibatch.shuffle_split(jax.random.key(1), batch, M)
    assert mbs["x"].shape == (M, B // M) and mbs["y"].shape == (M, B // M, 3)
    xs = np.asarray(mbs["x"]).ravel()
    assert sorted(xs.tolist()) == list(range(B))  # every sample exactly once
    assert not np.array_equal(xs, np.arange(B))  # and actually shuffled
    np.testing.assert_array_equal(np.asarray(mbs["y"])[..., 0], 3 * np.asarray(mbs["x"]))  # leaves stay aligned
    other = minibatch.shuffle_split(jax.random.key(2), batch, M)
    assert not np.array_equal(np.asarray(other["x"]), np.asarray(mbs["x"]))


def test_shuffle_split_sequences_keep_time_and_match_carry():
    T, N, M = 5, 8, 4
    traj = {"env": jnp.broadcast_to(jnp.arange(N), (T, N)), "t": jnp.broadcast_to(jnp.arange(T)[:, None], (T, N))}
    carry = jnp.arange(N) * 10
    key = jax.random.key(3)
    mbs = minibatch.shuffle_split(key, traj, M, axis=1)
    c = minibatch.shuffle_split(key, carry, M, axis=0)
    assert mbs["env"].shape == (M, T, N // M) and c.shape == (M, N // M)
    envs_seen = np.asarray(mbs["env"])
    assert sorted(envs_seen[:, 0, :].ravel().tolist()) == list(range(N))
    assert np.all(envs_seen == envs_seen[:, :1, :])  # a column is one whole sequence
    np.testing.assert_array_equal(np.asarray(mbs["t"])[:, :, 0], np.broadcast_to(np.arange(T), (M, T)))
    np.testing.assert_array_equal(np.asarray(c), envs_seen[:, 0, :] * 10)  # carry permuted identically


def test_flatten_time_and_split_errors():
    x = jnp.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(np.asarray(minibatch.flatten_time(x)), np.arange(24).reshape(6, 4))
    with pytest.raises(ValueError, match="not divisible"):
        minibatch.split(jnp.arange(10), 3)


# ------------------------------------------------------------------------------------------------ normaliser
def test_running_mean_std_matches_numpy():
    data = [RNG.normal(loc=3.0, scale=2.0, size=(n, 2, 3)).astype(np.float32) for n in (1, 7, 40, 5)]
    stats = normalize.RunningMeanStd.create((3,), count=0.0)
    upd = jax.jit(normalize.update)
    for d in data:
        stats = upd(stats, d)
    allx = np.concatenate([d.reshape(-1, 3) for d in data])
    np.testing.assert_allclose(np.asarray(stats.mean), allx.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(stats.var), allx.var(0), rtol=1e-4)
    assert float(stats.count) == allx.shape[0]
    x = allx[:4]
    np.testing.assert_allclose(np.asarray(normalize.normalize(stats, x, clip=None)),
                               (x - allx.mean(0)) / np.sqrt(allx.var(0) + 1e-8), rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(normalize.normalize(stats, x * 1e6, clip=5.0)))) == 5.0


# ------------------------------------------------------------------------------------------------ rollout layout
def test_rollout_layout_with_auto_reset():
    env = envs.LogWrapper(envs.make("probe-constant"))
    params = env.default_params.replace(max_steps_in_episode=3, truncate=True)
    N, T = 2, 7
    state = rollout_mod.reset(jax.random.key(0), env, params, N)

    def policy(key, carry, obs, first):
        return carry, jnp.zeros(obs.shape[0], jnp.int32), {"seen_first": first}

    state, traj = jax.jit(lambda s: rollout_mod.rollout(jax.random.key(1), policy, env, params, s, T))(state)
    assert traj.reward.shape == (T, N) and traj.obs.shape == (T, N, 1)
    done = np.asarray(traj.done)
    np.testing.assert_array_equal(done[:, 0], [0, 0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(np.asarray(traj.truncated), done)
    first = np.asarray(traj.first)
    np.testing.assert_array_equal(first[0], True)
    np.testing.assert_array_equal(first[1:], done[:-1])  # first[t] == done[t-1]
    np.testing.assert_array_equal(np.asarray(traj.extras["seen_first"]), first)
    np.testing.assert_array_equal(np.asarray(state.first), done[-1])
    ret = np.asarray(traj.info["returned_episode_return"])
    assert np.all(ret[done] == 3.0)
    assert adv_mod is rl.advantages and losses is rl.losses  # modules are re-exported


# ------------------------------------------------------------------------------------------------ Gaussian policy
def test_gaussian_log_prob_and_entropy_by_hand():
    """1-D standard normal at 0: log p = -log(2π)/2, H = (1 + log 2π)/2; a 2-D Gaussian sums its dimensions."""
    from jaxrl_self.rl import distributions as d

    half_log_2pi = 0.5 * np.log(2 * np.pi)
    assert float(d.gaussian_log_prob(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1))) == pytest.approx(-half_log_2pi)
    assert float(d.gaussian_entropy(jnp.zeros(1), jnp.zeros(1))) == pytest.approx(0.5 + half_log_2pi)
    # mean (1, -2), std (2, 0.5), action (3, -2): z = (1, 0)
    mean, log_std, a = jnp.array([1.0, -2.0]), jnp.log(jnp.array([2.0, 0.5])), jnp.array([3.0, -2.0])
    want = (-0.5 - np.log(2.0) - half_log_2pi) + (0.0 - np.log(0.5) - half_log_2pi)
    assert float(d.gaussian_log_prob(mean, log_std, a)) == pytest.approx(want, rel=1e-6)
    assert float(d.gaussian_entropy(mean, log_std)) == pytest.approx(2 * (0.5 + half_log_2pi) + np.log(2.0 * 0.5),
                                                                     abs=1e-6)


def test_gaussian_log_prob_entropy_and_samples_match_distrax():
    import distrax

    from jaxrl_self.rl import distributions as d

    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    mean = jax.random.normal(k1, (5, 7, 3))
    log_std = jnp.array([-1.0, 0.0, 0.7])  # state-independent, broadcast over the batch
    noise = d.gaussian_noise(k2, mean.shape)
    action = d.gaussian_sample(mean, log_std, noise)
    ref = distrax.MultivariateNormalDiag(mean, jnp.broadcast_to(jnp.exp(log_std), mean.shape))
    np.testing.assert_allclose(d.gaussian_log_prob(mean, log_std, action), ref.log_prob(action), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.gaussian_entropy(mean, log_std), ref.entropy(), rtol=1e-6)
    assert d.gaussian_log_prob(mean, log_std, action).shape == (5, 7)
    # the samples are N(mean, std^2): standardised, they are the noise
    np.testing.assert_allclose((action - mean) / jnp.exp(log_std), noise, rtol=1e-5, atol=1e-5)
    big = d.gaussian_sample(jnp.zeros((20000, 3)), log_std, d.gaussian_noise(k3, (20000, 3)))
    np.testing.assert_allclose(np.std(np.asarray(big), axis=0), np.exp(np.asarray(log_std)), rtol=0.03)


def test_reward_scaling_matches_a_step_by_step_reference():
    """PureJaxRL's NormalizeVecReward, written as a loop over steps with numpy."""
    T, N, gamma = 9, 3, 0.9
    r = RNG.normal(size=(T, N)).astype(np.float32)
    done = RNG.random((T, N)) < 0.25
    state = normalize.RewardScale.create(N)
    state, got = normalize.scale_rewards(state, jnp.asarray(r), jnp.asarray(done), gamma)
    mean, var, count, ret = 0.0, 1.0, 1e-4, np.zeros(N)
    want = np.zeros((T, N))
    for t in range(T):
        ret = ret * gamma * (1 - done[t]) + r[t]
        b_mean, b_var, n = ret.mean(), ret.var(), N
        tot = count + n
        delta = b_mean - mean
        mean, var = mean + delta * n / tot, (var * count + b_var * n + delta ** 2 * count * n / tot) / tot
        count = tot
        want[t] = r[t] / np.sqrt(var + 1e-8)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state.discounted_return), ret, rtol=1e-5, atol=1e-6)
    assert float(state.stats.count) == pytest.approx(count)
