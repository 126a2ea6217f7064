"""UED scores (positive value loss, MaxMC, L1 value loss, return, negative return) against a hand-computed
example and a plain-Python per-episode reference on random rollouts with unfinished tails."""
import jax
import numpy as np
import pytest

from jaxrl_self.core import ConfigError
from jaxrl_self.curricula import SCORE_FUNCTIONS, compute_scores, episode_stats
from jaxrl_self.curricula import scores as S

scores_fn = jax.jit(compute_scores, static_argnums=0)
stats_fn = jax.jit(episode_stats)


def reference(rewards, values, dones, advantages, level_max_returns):
    """Per-environment scores with explicit Python loops over episodes (the minimax v0.2 definitions)."""
    T, N = rewards.shape
    out = {k: np.zeros(N) for k in SCORE_FUNCTIONS}
    valid, max_ret = np.zeros(N, bool), np.full(N, -np.inf)
    for n in range(N):
        episodes, start = [], 0
        for t in range(T):
            if dones[t, n]:
                episodes.append(slice(start, t + 1))
                start = t + 1
        if not episodes:  # steps after the last done (here: all of them) never count
            continue
        valid[n] = True
        returns = [rewards[e, n].sum() for e in episodes]
        max_ret[n] = max(returns)
        best = max(max_ret[n], level_max_returns[n])
        out["return"][n] = np.mean(returns)
        out["neg_return"][n] = -np.mean(returns)
        out["positive_value_loss"][n] = np.mean([np.maximum(advantages[e, n], 0).mean() for e in episodes])
        out["l1_value_loss"][n] = np.mean([np.abs(advantages[e, n]).mean() for e in episodes])
        out["max_mc"][n] = np.mean([(best - values[e, n]).mean() for e in episodes])
    return out, valid, max_ret


def test_hand_computed_example():
    # one env, T = 6: episode 1 = steps 0..2, episode 2 = steps 3..4, step 5 is an unfinished tail
    adv = np.array([1.0, -2.0, 3.0, 0.5, -1.0, 4.0])[:, None]
    rew = np.array([0.0, 0.0, 1.0, 0.0, 0.5, 9.0])[:, None]
    val = np.array([0.2, 0.4, 0.6, 0.1, 0.3, 5.0])[:, None]
    done = np.array([0, 0, 1, 0, 1, 0], bool)[:, None]
    run = lambda name, m=None: scores_fn(name, rew, val, done, adv, m)  # noqa: E731
    # PVL: episode means of max(A, 0): (1 + 0 + 3)/3 = 4/3 and (0.5 + 0)/2 = 0.25
    np.testing.assert_allclose(run("positive_value_loss").score, [(4 / 3 + 0.25) / 2], rtol=1e-6)
    # L1: (1 + 2 + 3)/3 = 2 and (0.5 + 1)/2 = 0.75
    np.testing.assert_allclose(run("l1_value_loss").score, [(2 + 0.75) / 2], rtol=1e-6)
    # returns 1.0 and 0.5 (the tail's 9.0 is not an episode)
    r = run("return")
    np.testing.assert_allclose(r.score, [0.75], rtol=1e-6)
    np.testing.assert_allclose(r.max_return, [1.0])
    np.testing.assert_allclose(run("neg_return").score, [-0.75], rtol=1e-6)
    # MaxMC with R_max = 1.0 (this rollout): episode means of 1 - V: 1 - 0.4 = 0.6 and 1 - 0.2 = 0.8
    np.testing.assert_allclose(run("max_mc").score, [0.7], rtol=1e-6)
    # ... with a stored max return of 2.0: 2 - 0.4 and 2 - 0.2
    np.testing.assert_allclose(run("max_mc", np.array([2.0])).score, [1.7], rtol=1e-6)
    # ... a lower stored max does not lower R_max
    np.testing.assert_allclose(run("max_mc", np.array([0.1])).score, [0.7], rtol=1e-6)
    assert bool(r.valid[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_rollouts_match_reference(seed):
    rng = np.random.default_rng(seed)
    T, N = 23, 9
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T, N)).astype(np.float32)
    advantages = rng.normal(size=(T, N)).astype(np.float32)
    dones = rng.random((T, N)) < 0.15
    dones[:, 0] = False  # never finishes
    dones[:, 1] = False
    dones[T - 1, 1] = True  # one episode = the whole rollout, no tail
    dones[:, 2] = False
    dones[0, 2] = True  # a one-step episode, then a long tail
    dones[:, 3] = True  # every step is an episode
    level_max = rng.normal(size=N).astype(np.float32)
    level_max[4] = -np.inf  # a new level (no stored max)

    expected, valid, max_ret = reference(rewards, values, dones, advantages, level_max)
    for name in SCORE_FUNCTIONS:
        got = scores_fn(name, rewards, values, dones, advantages, level_max)
        np.testing.assert_allclose(got.score, expected[name], rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_array_equal(got.valid, valid)
        np.testing.assert_allclose(got.max_return, max_ret, rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(got.score))  # invalid levels score 0, never -inf/NaN
    assert not valid[0] and valid[1] and valid[2] and valid[3]
    stats = stats_fn(rewards, values, dones, advantages)
    np.testing.assert_array_equal(stats.num_episodes, dones.sum(0))


def test_negative_returns_and_batch_shapes():
    # the best return of all-negative episodes stays negative (minimax/jaxued would clamp it to 0)
    rew = -np.ones((4, 1), np.float32)
    done = np.array([0, 1, 0, 1], bool)[:, None]
    z = np.zeros((4, 1), np.float32)
    out = scores_fn("return", rew, z, done, z)
    np.testing.assert_allclose(out.max_return, [-2.0])
    np.testing.assert_allclose(scores_fn("max_mc", rew, z, done, z).score, [-2.0])
    # any trailing batch shape: [T, 2, 3] equals the flattened [T, 6]
    rng = np.random.default_rng(7)
    r, v, a = (rng.normal(size=(11, 2, 3)).astype(np.float32) for _ in range(3))
    d = rng.random((11, 2, 3)) < 0.3
    got = scores_fn("positive_value_loss", r, v, d, a)
    flat = scores_fn("positive_value_loss", *(x.reshape(11, 6) for x in (r, v, d, a)))
    np.testing.assert_allclose(got.score.reshape(6), flat.score, rtol=1e-6)


def test_errors_and_functional_api():
    z = np.zeros((3, 2), np.float32)
    with pytest.raises(ConfigError, match="score_function"):
        compute_scores("regret", z, z, z.astype(bool), z)
    with pytest.raises(ValueError, match="same shape"):
        compute_scores("return", z, z[:, :1], z.astype(bool), z)
    stats = stats_fn(z + 1, z, np.array([[1, 0], [0, 0], [1, 0]], bool), z - 1)
    np.testing.assert_allclose(S.mean_return(stats), [1.5, 0.0])
    np.testing.assert_allclose(S.negative_return(stats), [-1.5, 0.0])
    np.testing.assert_allclose(S.l1_value_loss(stats), [1.0, 0.0])
    np.testing.assert_allclose(S.positive_value_loss(stats), [0.0, 0.0])
    np.testing.assert_array_equal(stats.has_completed_episode, [True, False])
