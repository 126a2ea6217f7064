"""The NAVIX adapter (``navix:NAME``, :mod:`jaxrl_self.envs.ecosystem.navix`): the contract checker, stepping
exactly as NAVIX itself does, the corrected observation bounds, and PPO learning Navix-Empty-5x5-v0."""
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

navix = pytest.importorskip("navix")

from jaxrl_self import envs, ppo  # noqa: E402
from jaxrl_self.core.spaces import Box, Discrete, describe_mismatch  # noqa: E402
from jaxrl_self.envs.ecosystem.navix import NavixAdapter, make_navix  # noqa: E402

jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
NAME = "Navix-Empty-5x5-v0"
# Empty-5x5: the player starts at (1, 1) facing east, the goal is at (3, 3); 0 rotate ccw, 1 rotate cw, 2 forward
TO_GOAL = [2, 2, 1, 2, 2]


def test_the_prefix_builds_the_adapter_over_the_real_library():
    env = envs.make(f"navix:{NAME}")
    assert isinstance(env, NavixAdapter) and env.name == f"navix:{NAME}"
    assert Path(navix.__file__).parent.name == "navix" and "ecosystem" not in navix.__file__  # not shadowed
    assert env.observation_space() == Box(0, 255, (5, 5, 3), jnp.uint8)
    assert env.action_space() == Discrete(7) and env.num_actions == 7
    assert env.default_params.max_steps_in_episode == 100  # navix.make's default max_steps
    assert make_navix(NAME, max_steps=30).default_params.max_steps_in_episode == 30


def test_check_env():
    report = envs.check_env(envs.make(f"navix:{NAME}"))
    assert report["time_checked"] and report["episodes_ended"] > 0


def test_navix_declared_bounds_are_wrong_and_ours_are_not():
    """NAVIX declares the symbolic grid as 0..8 but emits the player's tag 10; we declare uint8's range."""
    declared = NavixAdapter(navix.make(NAME), NAME, keep_declared_bounds=True)
    ours = envs.make(f"navix:{NAME}")
    obs, _ = ours.reset(jax.random.key(0))
    assert int(obs.max()) == 10 and obs.dtype == jnp.uint8
    assert "outside the Box bounds" in describe_mismatch(declared.observation_space(), obs)
    assert describe_mismatch(ours.observation_space(), obs) is None
    rgb = envs.make(f"navix:{NAME}", observation_fn=navix.observations.rgb)
    assert rgb.observation_space() == Box(0, 255, (40, 40, 3), jnp.uint8)
    cat = envs.make(f"navix:{NAME}", observation_fn=navix.observations.categorical)
    obs, _ = cat.reset(jax.random.key(0))
    assert cat.observation_space() == Box(-1, 100, (5, 5), jnp.int32)
    assert describe_mismatch(cat.observation_space(), obs) is None


def test_steps_exactly_as_navix():
    """The same actions through NAVIX's own ``step`` and through ``step_env`` from the same reset key: equal
    observations and rewards up to and including the episode's last step, ``terminated`` exactly on NAVIX's
    TERMINATION and ``truncated`` exactly on its TRUNCATION (default params: our time limit is NAVIX's 100)."""
    nx_env = navix.make(NAME)
    env = envs.make(f"navix:{NAME}")
    params = env.default_params
    steps = 100
    goal = np.zeros(steps, np.int32)
    goal[: len(TO_GOAL)] = TO_GOAL
    spin = np.zeros(steps, np.int32)  # rotating only: truncated at step 100
    rand = np.asarray(jax.random.randint(jax.random.key(7), (2, steps), 0, 7), np.int32)
    actions = jnp.asarray(np.stack([goal, spin, *rand]))
    keys = jax.random.split(jax.random.key(3), len(actions))

    def run(key, acts):
        ts = nx_env.reset(key)
        obs0, state = env.reset_env(key, params)

        def body(carry, a):
            ts, state = carry
            ts = nx_env.step(ts, a)
            obs, state, r, term, trunc, _ = env.step_env(key, state, a, params)
            return (ts, state), (ts.observation, ts.reward, ts.step_type, obs, r, term, trunc, state.time, ts.t)

        _, out = jax.lax.scan(body, (ts, state), acts)
        return ts.observation, obs0, out

    nx_obs0, obs0, out = jax.tree.map(np.asarray, jit(jax.vmap(run))(keys, actions))
    nx_obs, nx_r, nx_type, obs, r, term, trunc, time, nx_t = out
    np.testing.assert_array_equal(obs0, nx_obs0)
    assert r.dtype == np.float32 and term.dtype == np.bool_ and obs.dtype == np.uint8
    for lane in range(len(actions)):
        done = np.flatnonzero(nx_type[lane] > 0)
        end = done[0] if len(done) else steps - 1  # after NAVIX's episode end its step resets; stop comparing
        sl = slice(0, end + 1)
        np.testing.assert_array_equal(obs[lane, sl], nx_obs[lane, sl])
        np.testing.assert_array_equal(r[lane, sl], nx_r[lane, sl])
        np.testing.assert_array_equal(time[lane, sl], nx_t[lane, sl])
        np.testing.assert_array_equal(term[lane, sl], nx_type[lane, sl] == 2)
        np.testing.assert_array_equal(trunc[lane, sl], nx_type[lane, sl] == 1)
    # the scripted lanes end as planned: the goal at step 5 (reward 1), the spinner truncated at step 100
    assert np.flatnonzero(term[0]).tolist()[:1] == [4] and r[0, 4] == 1.0 and r[0, :4].sum() == 0
    assert not term[1].any() and np.flatnonzero(trunc[1]).tolist() == [99] and r[1].sum() == 0


def test_step_auto_resets_with_the_true_final_obs():
    """Our ``step`` (base-class auto-reset) on the goal-reaching step: ``final_obs`` is NAVIX's terminal
    observation and the returned obs/state are a fresh episode's."""
    nx_env = navix.make(NAME)
    env = envs.make(f"navix:{NAME}")

    def run(key):
        ts = nx_env.reset(key)
        obs, state = env.reset(key)
        for a in TO_GOAL[:-1]:
            ts = nx_env.step(ts, jnp.asarray(a))
            obs, state, *_ = env.step(key, state, jnp.asarray(a))
        ts = nx_env.step(ts, jnp.asarray(TO_GOAL[-1]))
        out = env.step(jax.random.key(11), state, jnp.asarray(TO_GOAL[-1]))
        return ts.observation, ts.step_type, out, env.reset(jax.random.key(11))[0]

    nx_final, nx_type, (obs, state, r, term, trunc, info), fresh = jit(run)(jax.random.key(0))
    assert int(nx_type) == 2 and bool(term) and not bool(trunc) and float(r) == 1.0
    np.testing.assert_array_equal(np.asarray(info["final_obs"]), np.asarray(nx_final))
    np.testing.assert_array_equal(np.asarray(obs), np.asarray(fresh))
    assert int(state.time) == 0 and int(state.timestep.t) == 0


def test_ppo_learns_empty_5x5():
    """PPO (MLP on the flattened symbolic grid) on Navix-Empty-5x5-v0 with a 16-step time limit (through
    params): random play rarely finds the goal (5 steps away) in time, the trained policy mostly does.
    Measured (seed 0): returns of the first 5 updates ~[0, 0, 0.06, 0, 0.12], of the last 5 ~[0.9, 0.85, 0.65,
    0.79, 0.7]; mean episode length 16 -> ~10."""
    config = ppo.Config(total_timesteps=8 * 32 * 30, num_envs=8, num_steps=32, num_minibatches=2,
                        update_epochs=4, learning_rate=1e-2, anneal_lr=False, gamma=0.9, hidden_sizes=(32, 32))
    env = envs.make(f"navix:{NAME}")
    params = env.default_params.replace(max_steps_in_episode=16)
    _, m = jit(ppo.make_train(config, env, params))(jax.random.key(0))
    ret, length = np.asarray(m.episode_return), np.asarray(m.episode_length)
    assert np.asarray(m.episode_return_valid).all()
    first, last = ret[:5].mean(), ret[-5:].mean()
    assert first < 0.2 and last > 0.5 and last > first + 0.4, (first, last, ret)
    assert length[-5:].mean() < length[:5].mean() - 3, length
