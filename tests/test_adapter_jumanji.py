"""The ``jumanji:`` adapter (envs/ecosystem/jumanji.py): the contract (check_env), exact agreement with Jumanji's
own ``step``, the terminated/truncated mapping, the refusal of non-discrete action specs, and PPO learning Snake.

Programs are compiled with XLA's backend optimisations off (``jit``, below), as in tests/test_ppo.py.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jumanji = pytest.importorskip("jumanji")

from jaxrl_self import envs, ppo  # noqa: E402
from jaxrl_self.core.spaces import Discrete  # noqa: E402
from jaxrl_self.envs.ecosystem import jumanji as adapter  # noqa: E402

jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _obs_dict(obs):
    """Jumanji's observation NamedTuple tree as plain nested dicts (for comparison with ours)."""
    if hasattr(obs, "_asdict"):
        return {k: _obs_dict(v) for k, v in obs._asdict().items()}
    return np.asarray(obs)


def _assert_tree_equal(got, want):
    assert jax.tree.structure(jax.tree.map(np.asarray, got)) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        a = np.asarray(a)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------ the contract
@pytest.mark.parametrize("name", ["Snake-v1", "Maze-v0"])
def test_check_env_passes(name):
    assert adapter._jumanji() is jumanji and hasattr(jumanji, "make")  # the library, not this package's module
    env = envs.make(f"jumanji:{name}")
    assert isinstance(env, adapter.JumanjiAdapter) and env.name == f"jumanji:{name}"
    assert env.action_space() == Discrete(4, jnp.int32) and env.num_actions == 4
    report = envs.check_env(env, num_steps=16)
    assert report["time_checked"] and report["episodes_ended"] > 0


def test_spaces_follow_the_specs():
    space = envs.make("jumanji:Maze-v0").observation_space()
    assert set(space.spaces) == {"agent_position", "target_position", "walls", "step_count", "action_mask"}
    assert set(space.spaces["agent_position"].spaces) == {"row", "col"}  # nested spec -> nested Dict
    walls = space.spaces["walls"]
    assert walls.shape == (10, 10) and walls.dtype == jnp.bool_
    step_count = space.spaces["step_count"]  # an unbounded int32 Array: the int32 range
    assert step_count.dtype == jnp.int32 and int(step_count.high) == np.iinfo(np.int32).max
    grid = envs.make("jumanji:Snake-v1", num_rows=6, num_cols=6).observation_space().spaces["grid"]
    assert grid.shape == (6, 6, 5) and grid.dtype == jnp.float32 and float(grid.low) == 0 and float(grid.high) == 1


# ------------------------------------------------------------------------------------------------ same as Jumanji
def test_steps_exactly_as_jumanji():
    """From the same key, the same actions through ``jumanji``'s ``step`` and the adapter's ``step_env`` give
    the same observations and rewards; the episode ends (the snake runs into the wall) where Jumanji's does,
    as ``terminated`` (discount 0)."""
    env = envs.make("jumanji:Snake-v1", num_rows=6, num_cols=6)
    jenv = jumanji.make("Snake-v1", num_rows=6, num_cols=6)
    params = env.default_params
    key = jax.random.key(7)
    obs, state = env.reset_env(key, params)
    jstate, ts = jenv.reset(key)
    _assert_tree_equal(obs, _obs_dict(ts.observation))
    actions = [1, 2, 1, 2, 3, 3, 0] + [0] * 8  # wander, then go up until the wall ends the episode
    step = jit(env.step_env)
    jstep = jit(jenv.step)
    ended = False
    for t, a in enumerate(actions):
        obs, state, reward, term, trunc, info = step(jax.random.key(100 + t), state, jnp.int32(a), params)
        jstate, ts = jstep(jstate, jnp.int32(a))
        _assert_tree_equal(obs, _obs_dict(ts.observation))
        assert reward.dtype == jnp.float32 and float(reward) == float(ts.reward)
        last = bool(ts.last())
        assert bool(term) == (last and float(ts.discount) == 0.0)
        assert bool(trunc) == (last and float(ts.discount) != 0.0)
        assert int(state.time) == t + 1 and info == {"extras": {}}
        if last:
            ended = True
            assert bool(term) and not bool(trunc)
            break
    assert ended, "the action sequence should run the snake into a wall"


def test_a_long_masked_random_walk_matches_jumanji():
    """100 steps of random *valid* actions (picked from the observed action mask) side by side in one scan:
    every observation, reward and end flag agrees, and some fruit is eaten on the way."""
    env = envs.make("jumanji:Snake-v1", num_rows=6, num_cols=6)
    jenv = jumanji.make("Snake-v1", num_rows=6, num_cols=6)
    params = env.default_params

    def run(key):
        obs, state = env.reset_env(key, params)
        jstate, _ = jenv.reset(key)

        def body(carry, k):
            obs, state, jstate = carry
            a = jnp.argmax(jnp.where(obs["action_mask"], jax.random.uniform(k, (4,)), -1.0)).astype(jnp.int32)
            obs, state, r, term, trunc, _ = env.step_env(k, state, a, params)
            jstate, ts = jenv.step(jstate, a)
            return (obs, state, jstate), (obs, _obs_dict_traced(ts.observation), r, ts.reward, term, trunc,
                                          ts.last() & (ts.discount == 0), ts.last() & (ts.discount != 0))

        return jax.lax.scan(body, (obs, state, jstate), jax.random.split(key, 100))[1]

    obs, jobs, r, jr, term, trunc, jterm, jtrunc = jax.device_get(jit(run)(jax.random.key(3)))
    _assert_tree_equal(obs, jax.tree.map(np.asarray, jobs))
    np.testing.assert_array_equal(r, jr.astype(np.float32))
    np.testing.assert_array_equal(term, jterm)
    np.testing.assert_array_equal(trunc, jtrunc)
    ends = np.flatnonzero(term | trunc)
    upto = ends[0] + 1 if ends.size else len(r)
    assert r[:upto].sum() >= 1, r  # fruit eaten before the first episode end (the snake starts at length 1)


def _obs_dict_traced(obs):
    return {k: v for k, v in obs._asdict().items()}


class _Obs(NamedTuple):
    pos: jax.Array
    action_mask: jax.Array


class _Truncating:
    """A minimal Jumanji-API env: position counts up by the action; Jumanji-truncated (discount 1) at step 3
    unless the position reaches 4 first (terminated, discount 0)."""

    def __init__(self):
        s = jumanji.specs
        self.action_spec = s.DiscreteArray(3, name="action")
        self.observation_spec = s.Spec(_Obs, "ObservationSpec",
                                       pos=s.BoundedArray((), jnp.int32, 0, 10, "pos"),
                                       action_mask=s.BoundedArray((3,), bool, False, True, "action_mask"))

    def _obs(self, pos):
        return _Obs(pos, jnp.ones((3,), bool))

    def reset(self, key):
        del key
        state = (jnp.int32(0), jnp.int32(0))
        return state, jumanji.types.restart(self._obs(state[0]))

    def step(self, state, action):
        pos, t = state[0] + action, state[1] + 1
        obs = self._obs(pos)
        ts = jax.lax.cond(pos >= 4, lambda: jumanji.types.termination(jnp.float32(1.0), obs),
                          lambda: jax.lax.cond(t >= 3, lambda: jumanji.types.truncation(jnp.float32(0.0), obs),
                                               lambda: jumanji.types.transition(jnp.float32(0.0), obs)))
        return (pos, t), ts


@pytest.mark.parametrize("actions, ends_at, terminated", [([2, 2, 0], 1, True), ([0, 1, 0], 2, False)])
def test_terminated_and_truncated_follow_the_discount(actions, ends_at, terminated):
    env = adapter.JumanjiAdapter(_Truncating(), name="Truncating")
    assert env.name == "jumanji:Truncating"
    params = env.default_params
    _, state = env.reset_env(jax.random.key(0), params)
    flags = []
    for a in actions[: ends_at + 1]:
        _, state, _, term, trunc, _ = env.step_env(jax.random.key(0), state, jnp.int32(a), params)
        flags.append((bool(term), bool(trunc)))
    assert flags == [(False, False)] * ends_at + [(terminated, not terminated)]
    # our own time limit (params.max_steps_in_episode) truncates, under vmap over params too
    short = params.replace(max_steps_in_episode=jnp.array([1, 5]))
    _, state = env.reset_env(jax.random.key(0), params)
    out = jax.vmap(lambda p: env.step_env(jax.random.key(0), state, jnp.int32(0), p))(short)
    np.testing.assert_array_equal(np.asarray(out[4]), [True, False])
    np.testing.assert_array_equal(np.asarray(out[3]), [False, False])


# ------------------------------------------------------------------------------------------------ refused specs
def test_a_multi_discrete_action_spec_is_refused_in_one_line(capsys):
    with pytest.raises(adapter.UnsupportedJumanjiEnvError) as e:
        envs.make("jumanji:Tetris-v0")
    msg = str(e.value)
    assert "\n" not in msg and "MultiDiscreteArray(shape=(2,), num_values=[4, 10]" in msg, msg
    assert "jumanji:Tetris-v0" in msg and "single scalar DiscreteArray" in msg
    assert isinstance(e.value, envs.UnknownEnvironmentError)  # the CLI reports it as a one-line error, exit 2
    from jaxrl_self import cli

    assert cli.main(["train", "ppo", "--env", "jumanji:Tetris-v0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "MultiDiscreteArray" in err, err
    with pytest.raises(envs.UnknownEnvironmentError, match="unknown jumanji environment 'Snake-v9'"):
        envs.make("jumanji:Snake-v9")


# ------------------------------------------------------------------------------------------------ PPO learns
def test_ppo_learns_snake():
    """PPO (MLP on the flattened dict observation, action mask not enforced) on a 6x6 Snake: it learns to stay on
    the grid and eat fruit. Observed (seed 0, jax 0.10.2 CPU): mean episode return of the first 5 updates 0.125
    (episodes 7.9 steps on average), of the last 5 updates 1.55 (episodes 41 steps); 30 updates of 512 steps."""
    config = ppo.Config(total_timesteps=16 * 32 * 30, num_envs=16, num_steps=32, num_minibatches=4, update_epochs=4,
                        learning_rate=3e-3, anneal_lr=False, gamma=0.95, hidden_sizes=(32, 32))
    env = envs.make("jumanji:Snake-v1", num_rows=6, num_cols=6)
    _, metrics = jit(ppo.make_train(config, env))(jax.random.key(0))
    ret = np.asarray(metrics.episode_return)
    assert np.asarray(metrics.episode_return_valid).all()
    first, last = ret[:5].mean(), ret[-5:].mean()
    assert last > first + 0.7 and last > 4 * first, (first, last, ret)
