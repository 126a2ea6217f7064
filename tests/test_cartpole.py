"""CartPole-v1: the contract checker, and step-by-step parity with gymnasium's CartPole-v1 (the reference).

Tolerance. gymnasium integrates in float64, we in float32. Both start each compared step from the *same*
float32-representable state, so the only difference is float32 rounding in the ~20 operations of one Euler
step (relative error about 20 * 6e-8, plus a few ulp from sin/cos): well under ``rtol=1e-5`` for values of
order 1, and ``atol=1e-6`` covers values that cancel to near zero. A wrong constant or formula (e.g. a
semi-implicit integrator, or using the new velocity in the position update) moves the next state by
``tau * acc * tau`` ~ 1e-3 or more, which these tolerances catch. Termination can legitimately differ only when
the new state lies within rounding distance of a threshold; such states are excluded (and counted).
"""
from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import envs
from jaxrl_self.envs.cartpole import CartPole, CartPoleParams, CartPoleState

RTOL, ATOL = 1e-5, 1e-6
N_STATES = 500
# a hand-tuned linear state-feedback controller that balances CartPole-v1 for 500 steps from any reset state
GAINS = np.array([0.5, 1.0, 15.0, 2.0])


@pytest.fixture(scope="module")
def env():
    return envs.make("cartpole")


@pytest.fixture(scope="module")
def gym_env():
    e = gym.make("CartPole-v1")
    e.reset(seed=0)
    yield e
    e.close()


def _state(arr, time=0) -> CartPoleState:
    arr = np.asarray(arr, np.float32)
    return CartPoleState(
        time=jnp.full(arr.shape[:-1], time, jnp.int32),
        x=jnp.asarray(arr[..., 0]),
        x_dot=jnp.asarray(arr[..., 1]),
        theta=jnp.asarray(arr[..., 2]),
        theta_dot=jnp.asarray(arr[..., 3]),
    )


def _random_states(rng: np.random.Generator, n: int) -> np.ndarray:
    """States around and beyond the termination thresholds, so both outcomes occur."""
    high = np.array([2.6, 3.0, 0.25, 3.5])
    return rng.uniform(-high, high, size=(n, 4)).astype(np.float32)


def _gym_step(gym_env, state_f32, action):
    """One step of gymnasium's CartPoleEnv from ``state``; returns (next state float64, reward, terminated)."""
    u = gym_env.unwrapped
    u.state = np.asarray(state_f32, np.float64)
    u.steps_beyond_terminated = None
    _, reward, terminated, truncated, _ = u.step(int(action))
    assert not truncated  # the unwrapped env never truncates; TimeLimit does
    return np.array(u.state, np.float64), reward, terminated


def _near_threshold(s: np.ndarray, x_thr: float, th_thr: float, margin: float = 1e-5) -> np.ndarray:
    return (np.abs(np.abs(s[..., 0]) - x_thr) < margin) | (np.abs(np.abs(s[..., 2]) - th_thr) < margin)


def _obs_of(state: CartPoleState) -> np.ndarray:
    return np.stack([np.asarray(v) for v in (state.x, state.x_dot, state.theta, state.theta_dot)], -1)


# ------------------------------------------------------------------------------------------ contract
def test_check_env(env):
    report = envs.check_env(env)
    assert report["time_checked"] and report["episodes_ended"] > 0


def test_registry_aliases_and_spaces(env, gym_env):
    assert isinstance(env, CartPole)
    assert isinstance(envs.make("CartPole-v1"), CartPole)
    obs_space = env.observation_space(env.default_params)
    np.testing.assert_array_equal(np.asarray(obs_space.high), gym_env.observation_space.high)
    np.testing.assert_array_equal(np.asarray(obs_space.low), gym_env.observation_space.low)
    assert obs_space.shape == (4,) and jnp.dtype(obs_space.dtype) == jnp.float32
    assert env.action_space().n == 2 and env.num_actions == 2
    assert env.default_params.max_steps_in_episode == 500 == gym_env.spec.max_episode_steps


def test_observation_space_follows_concrete_params(env):
    """Bounds follow concrete params (the widest over a batch); traced params fall back to the defaults."""
    wide = env.default_params.replace(x_threshold=jnp.asarray([2.4, 3.0]))
    assert float(env.observation_space(wide).high[0]) == pytest.approx(6.0)
    seen = []
    jax.jit(lambda p: seen.append(env.observation_space(p)) or p.x_threshold)(env.default_params.replace(x_threshold=3.0))
    assert float(seen[0].high[0]) == pytest.approx(4.8)


def test_reset_distribution(env):
    obs, state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 4096))
    obs = np.asarray(obs)
    assert obs.dtype == np.float32 and obs.shape == (4096, 4)
    assert obs.min() >= -0.05 and obs.max() < 0.05
    # uniform on [-0.05, 0.05): mean 0, std 0.1/sqrt(12) ~ 0.0289, per coordinate
    np.testing.assert_allclose(obs.mean(0), 0.0, atol=0.003)
    np.testing.assert_allclose(obs.std(0), 0.1 / np.sqrt(12), rtol=0.05)
    np.testing.assert_array_equal(_obs_of(state), obs)
    assert np.all(np.asarray(state.time) == 0)


# ------------------------------------------------------------------------------------------ gymnasium parity
def test_step_parity_with_gymnasium(env, gym_env):
    rng = np.random.default_rng(0)
    states = _random_states(rng, N_STATES)
    actions = rng.integers(0, 2, N_STATES)
    step = jax.jit(jax.vmap(env.step_env, (None, 0, 0, None)))
    obs, nxt, reward, term, trunc, info = step(jax.random.key(0), _state(states, time=7), jnp.asarray(actions),
                                               env.default_params)
    ref = [_gym_step(gym_env, s, a) for s, a in zip(states, actions)]
    ref_state = np.stack([r[0] for r in ref])
    np.testing.assert_allclose(np.asarray(obs), ref_state, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(np.asarray(obs), _obs_of(nxt))
    np.testing.assert_array_equal(np.asarray(reward), np.array([r[1] for r in ref], np.float32))
    assert np.asarray(reward).dtype == np.float32
    ref_term = np.array([r[2] for r in ref])
    ambiguous = _near_threshold(ref_state, 2.4, 12 * 2 * np.pi / 360)
    assert ambiguous.sum() <= 2, "random states should almost never land on a threshold"
    np.testing.assert_array_equal(np.asarray(term)[~ambiguous], ref_term[~ambiguous])
    assert 0.2 < ref_term.mean() < 0.8, "the sample should contain both terminating and continuing steps"
    assert not np.asarray(trunc).any()
    np.testing.assert_array_equal(np.asarray(nxt.time), 8)


def test_parity_under_vmap_over_physical_params(env, gym_env):
    """Pole length, pole mass, gravity and force vmapped in one program, each lane against gymnasium with the
    same constants set on the reference object (gymnasium precomputes total_mass and polemass_length)."""
    rng = np.random.default_rng(1)
    n = 32
    lengths = rng.uniform(0.3, 1.0, n)
    masspoles = rng.uniform(0.05, 0.5, n)
    gravities = rng.uniform(5.0, 15.0, n)
    forces = rng.uniform(5.0, 20.0, n)
    params = CartPoleParams(
        length=jnp.asarray(lengths, jnp.float32), masspole=jnp.asarray(masspoles, jnp.float32),
        gravity=jnp.asarray(gravities, jnp.float32), force_mag=jnp.asarray(forces, jnp.float32),
    )
    # vmap only the four varied fields; the others stay Python scalars shared by all lanes
    axes = jax.tree.map(lambda _: None, CartPoleParams()).replace(length=0, masspole=0, gravity=0, force_mag=0)
    states = _random_states(rng, n) * np.float32(0.8)
    actions = rng.integers(0, 2, n)
    step = jax.jit(jax.vmap(env.step_env, (None, 0, 0, axes)))
    obs, *_ = step(jax.random.key(0), _state(states), jnp.asarray(actions), params)
    u = gym_env.unwrapped
    saved = {k: getattr(u, k) for k in ("length", "masspole", "gravity", "force_mag", "total_mass", "polemass_length")}
    try:
        for i in range(n):
            # the constants as float32 values, which is what our params hold
            u.length, u.masspole = float(np.float32(lengths[i])), float(np.float32(masspoles[i]))
            u.gravity, u.force_mag = float(np.float32(gravities[i])), float(np.float32(forces[i]))
            u.total_mass = u.masscart + u.masspole
            u.polemass_length = u.masspole * u.length
            ref, _, _ = _gym_step(gym_env, states[i], actions[i])
            np.testing.assert_allclose(np.asarray(obs[i]), ref, rtol=RTOL, atol=ATOL, err_msg=f"lane {i}")
    finally:
        for k, v in saved.items():
            setattr(u, k, v)


def test_open_loop_episode_terminates_on_the_same_step(env, gym_env):
    """Always pushing right from a gymnasium reset: same trajectory, same terminating step, reward 1 on it."""
    obs_g, _ = gym_env.reset(seed=3)
    gym_env.unwrapped.state = obs_g.astype(np.float64)  # start both from the same float32 state
    state = _state(obs_g)
    step = jax.jit(env.step_env)
    for t in range(1, 100):
        obs, state, reward, term, trunc, _ = step(jax.random.key(0), state, jnp.int32(1), env.default_params)
        obs_g, reward_g, term_g, trunc_g, _ = gym_env.step(1)
        np.testing.assert_allclose(np.asarray(obs), obs_g, rtol=1e-4, atol=1e-5)
        assert float(reward) == reward_g == 1.0
        assert bool(term) == term_g and bool(trunc) == trunc_g
        if term_g:
            break
    assert term_g and 5 < t < 100


# ------------------------------------------------------------------------------------------ truncation
def test_truncation_at_exactly_max_steps(env):
    params = env.default_params
    s = _state([[0.01, 0.0, 0.01, 0.0]] * 3)
    s = s.replace(time=jnp.asarray([498, 499, 499], jnp.int32))
    short = jax.jit(jax.vmap(env.step_env, (None, 0, None, None)))(jax.random.key(0), s, jnp.int32(0), params)
    np.testing.assert_array_equal(np.asarray(short[4]), [False, True, True])  # the 500th step truncates
    np.testing.assert_array_equal(np.asarray(short[3]), False)
    np.testing.assert_array_equal(np.asarray(short[1].time), [499, 500, 500])
    # a shorter limit through params
    out = jax.jit(env.step_env)(jax.random.key(0), _state([0.01, 0.0, 0.01, 0.0], time=9), jnp.int32(0),
                                params.replace(max_steps_in_episode=10))
    assert bool(out[4])


def _balance(obs):
    return (jnp.dot(obs, jnp.asarray(GAINS, jnp.float32)) > 0).astype(jnp.int32)


@pytest.fixture(scope="module")
def balanced_rollout(env):
    """``run(key, obs, state) -> per-step (obs, reward, terminated, truncated, final_obs, time)`` over 510 steps of
    env.step (with auto-reset) under the balancing controller, jitted once for the module."""
    params = env.default_params

    def run(key, obs, state):
        def body(carry, k):
            obs, state = carry
            obs2, state2, r, term, trunc, info = env.step(k, state, _balance(obs), params)
            return (obs2, state2), (obs2, r, term, trunc, info["final_obs"], state2.time)

        return jax.lax.scan(body, (obs, state), jax.random.split(key, 510))[1]

    jitted = jax.jit(run)
    return lambda key, obs, state: jax.tree.map(np.asarray, jitted(key, obs, state))


def test_balanced_episode_truncates_at_500_and_auto_resets(env, balanced_rollout):
    """A balancing controller under jit + scan through env.step (auto-reset): the first episode ends on the 500th
    step by truncation alone, final_obs holds the pre-reset observation, and a fresh episode starts."""
    key = jax.random.key(42)
    obs, reward, term, trunc, final_obs, time = balanced_rollout(key, *env.reset(key))
    assert not term.any()
    assert np.flatnonzero(trunc).tolist() == [499]
    assert np.all(reward == 1.0)
    np.testing.assert_array_equal(time[:499], np.arange(1, 500))
    assert time[499] == 0 and time[500] == 1
    # continuing steps: obs == final_obs; the truncating step: obs is a fresh reset, final_obs is not
    np.testing.assert_array_equal(np.delete(obs, 499, 0), np.delete(final_obs, 499, 0))
    assert np.all(np.abs(obs[499]) < 0.05)
    assert not np.array_equal(obs[499], final_obs[499])
    assert np.all(np.abs(final_obs[499]) < np.array([2.4, np.inf, 0.2095, np.inf]))


def test_time_limit_matches_gymnasium(gym_env, balanced_rollout):
    """The same controller from the same start state: gymnasium's TimeLimit wrapper and ours both end the episode
    on step 500, by truncation, with no termination before."""
    for seed in (0, 1):
        obs_g, _ = gym_env.reset(seed=seed)
        gym_env.unwrapped.state = obs_g.astype(np.float64)  # both start from the same float32 state
        _, _, term, trunc, _, _ = balanced_rollout(jax.random.key(seed), jnp.asarray(obs_g), _state(obs_g))
        for t in range(1, 501):
            obs_g, _, term_g, trunc_g, _ = gym_env.step(int(GAINS @ obs_g > 0))
            if term_g or trunc_g:
                break
        assert (t, term_g, trunc_g) == (500, False, True)
        ours_end = int(np.flatnonzero(term | trunc)[0]) + 1
        assert (ours_end, bool(term[ours_end - 1]), bool(trunc[ours_end - 1])) == (500, False, True)


def test_same_step_auto_reset_gives_final_obs(env):
    """A step that terminates returns the next episode's first observation, with final_obs the terminal one."""
    params = env.default_params
    s = _state([2.39, 1.0, 0.0, 0.0], time=17)  # x + tau * x_dot = 2.41 > 2.4: terminates
    expected_obs = np.asarray(env.step_env(jax.random.key(0), s, jnp.int32(1), params)[0])
    obs, state, reward, term, trunc, info = jax.jit(env.step)(jax.random.key(5), s, jnp.int32(1), params)
    assert bool(term) and not bool(trunc) and float(reward) == 1.0
    np.testing.assert_array_equal(np.asarray(info["final_obs"]), expected_obs)
    assert expected_obs[0] > 2.4
    assert int(state.time) == 0 and np.all(np.abs(np.asarray(obs)) < 0.05)
    # the new episode is what reset() gives with the same key (deterministic_step: the key goes to the reset)
    np.testing.assert_array_equal(np.asarray(obs), np.asarray(env.reset(jax.random.key(5), params)[0]))
    np.testing.assert_array_equal(_obs_of(state), np.asarray(obs))
