"""The ``brax:`` adapter (envs/ecosystem/brax.py): the contract, stepping exactly as brax's own env, the time
limit with the base class's auto-reset, and PPO's Gaussian policy learning inverted_pendulum in a tiny budget.

Programs are compiled with LLVM optimisation level 0 (``jit`` below), as in tests/test_ppo.py.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from jaxrl_self import envs, ppo  # noqa: E402
from jaxrl_self.core.spaces import Box  # noqa: E402
from jaxrl_self.envs.ecosystem.brax import BraxAdapter, default_backend  # noqa: E402

jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

NAME = "inverted_pendulum"


@pytest.fixture(scope="module")
def env():
    return envs.make(f"brax:{NAME}")


def test_make_builds_the_adapter_over_the_raw_brax_env(env):
    from brax import envs as brax_envs

    assert isinstance(env, BraxAdapter) and env.name == f"brax:{NAME}"
    assert env.backend == "spring" == default_backend(NAME) and default_backend("swimmer") == "generalized"
    assert not isinstance(env.brax_env, brax_envs.Wrapper)  # raw: no EpisodeWrapper / AutoResetWrapper
    assert env.observation_space() == Box(-np.inf, np.inf, (4,), jnp.float32)
    assert env.action_space() == Box(-1.0, 1.0, (1,), jnp.float32)
    assert env.default_params.max_steps_in_episode == 1000 and env.deterministic_step
    assert envs.make(f"brax:{NAME}", episode_length=7, backend="generalized").backend == "generalized"
    with pytest.raises(envs.UnknownEnvironmentError, match="unknown brax environment 'nope'.*hopper"):
        envs.make("brax:nope")


def test_check_env(env):
    report = envs.check_env(env, num_steps=24)
    assert report["time_checked"] and report["episodes_ended"] > 0


def test_step_env_is_brax_step_bitwise(env):
    """From the same reset key and the same actions, the adapter's ``step_env`` gives brax's ``env.step``
    observations and rewards bit for bit (the same float32 computation: the adapter's casts are no-ops) and
    ``terminated == done``. A steady push tips the pole past 0.2 rad within the sequence, so done is seen."""
    raw = env.brax_env
    actions = jnp.concatenate([jnp.linspace(-0.5, 0.5, 10), jnp.ones(30)])[:, None].astype(jnp.float32)
    key = jax.random.key(7)
    params = env.default_params

    def brax_roll(key):
        s = raw.reset(key)

        def body(s, a):
            s = raw.step(s, a)
            return s, (s.obs, s.reward, s.done)

        return s.obs, jax.lax.scan(body, s, actions)[1]

    def ours_roll(key):
        obs0, st = env.reset_env(key, params)

        def body(st, a):
            obs, st, r, term, trunc, info = env.step_env(key, st, a, params)
            return st, (obs, r, term, trunc, st.time)

        return obs0, jax.lax.scan(body, st, actions)[1]

    b_obs0, (b_obs, b_rew, b_done) = jit(brax_roll)(key)
    o_obs0, (o_obs, o_rew, o_term, o_trunc, o_time) = jit(ours_roll)(key)
    np.testing.assert_array_equal(np.asarray(o_obs0), np.asarray(b_obs0))
    np.testing.assert_array_equal(np.asarray(o_obs), np.asarray(b_obs))
    np.testing.assert_array_equal(np.asarray(o_rew), np.asarray(b_rew, np.float32))
    assert o_rew.dtype == jnp.float32 and o_term.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(o_term), np.asarray(b_done) != 0)
    assert np.asarray(o_term).any() and not np.asarray(o_term)[:10].any()  # the pole falls after the push
    assert not np.asarray(o_trunc).any()
    np.testing.assert_array_equal(np.asarray(o_time), np.arange(1, len(actions) + 1))


def test_time_limit_truncates_and_the_base_step_auto_resets():
    """episode_length=5 with zero force (the pole stays up): truncated exactly on step 5 (not terminated); the
    base-class step resets in that step with a fresh reset from the step key (deterministic_step: the whole key)
    and ``info["final_obs"]`` is the 5th observation, brax's own. ``params`` moves the limit."""
    env = envs.make(f"brax:{NAME}", episode_length=5)
    params = env.default_params
    assert params.max_steps_in_episode == 5
    n = 8
    keys = jax.random.split(jax.random.key(3), n)

    def roll(params):
        obs0, st = env.reset(jax.random.key(0), params)

        def body(st, k):
            obs, st, r, term, trunc, info = env.step(k, st, jnp.zeros(1, jnp.float32), params)
            return st, (obs, term, trunc, info["final_obs"], st.time)

        return obs0, jax.lax.scan(body, st, keys)[1]

    obs0, (obs, term, trunc, final_obs, time) = jit(roll)(params)
    assert not np.asarray(term).any()
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(trunc)), [4])
    np.testing.assert_array_equal(np.asarray(time), [1, 2, 3, 4, 0, 1, 2, 3])
    # final_obs on the truncating step is the obs brax reaches after 5 steps; obs is the new episode's reset
    raw = env.brax_env
    s = raw.reset(jax.random.key(0))
    step = jit(raw.step)
    for _ in range(5):
        s = step(s, jnp.zeros(1, jnp.float32))
    np.testing.assert_array_equal(np.asarray(final_obs[4]), np.asarray(s.obs))
    np.testing.assert_array_equal(np.asarray(obs[4]), np.asarray(env.reset(keys[4], params)[0]))
    assert not np.array_equal(np.asarray(obs[4]), np.asarray(final_obs[4]))
    np.testing.assert_array_equal(np.asarray(obs[:4]), np.asarray(final_obs[:4]))  # no reset: the same
    # the limit is a traced param
    _, (_, _, trunc3, _, _) = jit(roll)(params.replace(max_steps_in_episode=3))
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(trunc3)), [2, 5])


PENDULUM = ppo.Config(total_timesteps=16 * 32 * 24, num_envs=16, num_steps=32, num_minibatches=4, update_epochs=4,
                      learning_rate=3e-3, anneal_lr=False, ent_coef=0.0, hidden_sizes=(32, 32))


def test_gaussian_ppo_learns_brax_inverted_pendulum():
    """inverted_pendulum (spring backend), 100-step episodes, +1 per step while the pole is within 0.2 rad: the
    initial Gaussian policy (std 1) keeps it up about 20 steps; 24 updates of 16 envs x 32 steps (12,288 steps)
    more than triple it. Observed (mean episode return per update): seed 0 (this test) first three 18.5, 20.6,
    22.2 (mean 20.4) -> last five 56.7, 71.6, 80.2, 66.3, 66.2 (mean 68.2); seed 1 (a standalone run, XLA's
    default fusion) 13.7, 23.5, 28.3 (21.8) -> 77.4, 81.2, 72.3, 94.1, 86.0 (82.2)."""
    train = ppo.make_train(PENDULUM, envs.make(f"brax:{NAME}", episode_length=100))
    _, metrics = jit(train)(jax.random.key(0))
    ret, valid = np.asarray(metrics.episode_return), np.asarray(metrics.episode_return_valid)
    assert valid.all(), valid
    first, last = ret[:3].mean(), ret[-5:].mean()
    print(f"PPO brax:{NAME} returns per update: {np.round(ret, 1).tolist()}")
    assert first < 30 and last > 50 and last > 2 * first, (first, last, ret)
