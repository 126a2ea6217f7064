"""Tests of the contract pieces: spaces, registry, wrappers, ``check_env`` (positive and negative), the gymnax
adapter and the XLA:CPU guard.

Toy environments are defined here so that every expected number can be worked out by hand:

* :class:`Toy`: ``obs = f(time)``, reward = the step's index in the episode (1, 2, 3, ...), action 1 terminates,
  the time limit truncates; the observation kind (Box / Discrete / Dict) is a constructor argument.
* :class:`Corridor`: a 1-D corridor :class:`~jaxrl_self.core.LevelEnv` whose ``Level`` is the goal cell.
* :class:`EchoDigit`: a :class:`~jaxrl_self.core.SequenceTask` whose answer is the digit in the prompt.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxrl_self import envs
from jaxrl_self.core import (
    Box,
    Dict,
    Discrete,
    Environment,
    EnvParams,
    EnvState,
    LevelEnv,
    Problem,
    SequenceTask,
    Wrapper,
    describe_mismatch,
    flat_dim,
)
from jaxrl_self.envs import EnvCheckError, UnknownEnvironmentError, check_env, registry
from jaxrl_self.envs.cartpole import CartPole, CartPoleState
from jaxrl_self.envs.wrappers import FlattenObservation, LevelSet, LogWrapper, ReplayLevel, ResampleLevel


# ============================================================================================ toy environments
@struct.dataclass
class ToyParams(EnvParams):
    max_steps_in_episode: int = 4


@struct.dataclass
class ToyState(EnvState):
    pass


_VEC = Box(0.0, 100.0, (2, 3), jnp.float32)
_POS = Discrete(5)


class Toy(Environment):
    """Deterministic toy env. After the k-th step of an episode: reward k, ``time = k``; action 1 terminates;
    step ``max_steps_in_episode`` truncates. Observation of a state at ``time = t``:

    * ``"box"``: ``Box(0, 100, (2, 3))`` with value ``t + arange(6).reshape(2, 3)``
    * ``"discrete"``: ``Discrete(5)``, ``t % 5``
    * ``"dict"``: ``Dict(vec=<box>, pos=<discrete>)`` (declared in that order, which is not sorted order)
    """

    def __init__(self, obs_kind: str = "box"):
        self.obs_kind = obs_kind

    @property
    def default_params(self):
        return ToyParams()

    def observation_space(self, params=None):
        return {"box": _VEC, "discrete": _POS, "dict": Dict({"vec": _VEC, "pos": _POS})}[self.obs_kind]

    def action_space(self, params=None):
        return Discrete(2)

    def get_obs(self, time):
        vec = (time + jnp.arange(6, dtype=jnp.float32)).reshape(2, 3)
        pos = (time % 5).astype(jnp.int32)
        return {"box": vec, "discrete": pos, "dict": {"vec": vec, "pos": pos}}[self.obs_kind]

    def reset_env(self, key, params):
        state = ToyState(time=jnp.zeros((), jnp.int32))
        return self.get_obs(state.time), state

    def step_env(self, key, state, action, params):
        time = state.time + 1
        terminated = action == 1
        truncated = time >= params.max_steps_in_episode
        return self.get_obs(time), ToyState(time=time), time.astype(jnp.float32), terminated, truncated, {}


def _np_flatten(space, obs) -> np.ndarray:
    """Plain-numpy reference for FlattenObservation."""
    if isinstance(space, Discrete):
        return np.eye(space.n, dtype=np.float32)[np.asarray(obs)]
    if isinstance(space, Box):
        x = np.asarray(obs, np.float32)
        return x.reshape(x.shape[: x.ndim - len(space.shape)] + (-1,))
    return np.concatenate([_np_flatten(s, obs[k]) for k, s in space.spaces.items()], -1)


# -- the corridor level env
CORRIDOR = 8


@struct.dataclass
class CorridorLevel:
    goal: jax.Array  # int32 cell in [1, CORRIDOR)


@struct.dataclass
class CorridorState(EnvState):
    pos: jax.Array
    level: CorridorLevel


class Corridor(LevelEnv):
    """Cells ``0 .. CORRIDOR-1``; start at 0; actions 0 = left, 1 = right; reaching the goal terminates with
    reward 1. Text form: ``"..G....."`` with ``G`` on the goal cell."""

    @property
    def default_params(self):
        return EnvParams(max_steps_in_episode=20)

    def observation_space(self, params=None):
        return Box(0.0, CORRIDOR - 1.0, (2,), jnp.float32)

    def action_space(self, params=None):
        return Discrete(2)

    def _obs(self, pos, level):
        return jnp.stack([pos, level.goal]).astype(jnp.float32)

    def reset_env_to_level(self, key, level, params):
        state = CorridorState(time=jnp.zeros((), jnp.int32), pos=jnp.zeros((), jnp.int32), level=level)
        return self._obs(state.pos, level), state

    def step_env(self, key, state, action, params):
        pos = jnp.clip(state.pos + 2 * action - 1, 0, CORRIDOR - 1)
        terminated = pos == state.level.goal
        state = state.replace(time=state.time + 1, pos=pos)
        truncated = state.time >= params.max_steps_in_episode
        return self._obs(pos, state.level), state, terminated.astype(jnp.float32), terminated, truncated, {}

    def sample_level(self, key):
        return CorridorLevel(goal=jax.random.randint(key, (), 1, CORRIDOR, jnp.int32))

    def mutate_level(self, key, level, n_edits):
        shift = jax.random.randint(key, (), -n_edits, n_edits + 1, jnp.int32)
        return CorridorLevel(goal=jnp.clip(level.goal + shift, 1, CORRIDOR - 1).astype(jnp.int32))

    def level_to_str(self, level):
        goal = int(level.goal)
        return "".join("G" if i == goal else "." for i in range(CORRIDOR))

    def level_from_str(self, text):
        return CorridorLevel(goal=jnp.asarray(text.index("G"), jnp.int32))

    def shortest_path(self, level):
        return jnp.asarray(level.goal, jnp.int32)


# -- the sequence task
class EchoDigit(SequenceTask):
    """``BOS <q> d </q>`` -> ``<a> d </a> EOS``."""

    prompt_len, answer_len, solution_len = 4, 1, 4

    def _solution_digit(self, d):
        return d

    def sample_problem(self, key, params=None):
        v = self.vocab
        d = jax.random.randint(key, (), 0, 10, jnp.int32)
        s = self._solution_digit(d)
        return Problem(
            prompt=jnp.stack([v.BOS, v.Q, v.digit(d), v.Q_END]).astype(jnp.int32),
            answer=v.digit(d)[None].astype(jnp.int32),
            solution=jnp.stack([v.A, v.digit(s), v.A_END, v.EOS]).astype(jnp.int32),
            difficulty=jnp.ones((), jnp.int32),
        )


def _rollout(env, actions, key=jax.random.key(0), init=None):
    """Scan ``env.step`` over a fixed action sequence ``[T]`` (or a batch of them, ``[B, T]``, run under one
    vmap, which costs one compilation); returns the per-step outputs (``[T, ...]`` or ``[B, T, ...]``) as numpy."""

    def run(key, actions):
        obs, state = env.reset(key) if init is None else init

        def body(carry, xs):
            obs, state = carry
            k, a = xs
            obs2, state2, r, term, trunc, info = env.step(k, state, a)
            return (obs2, state2), (obs2, state2, r, term, trunc, info)

        return jax.lax.scan(body, (obs, state), (jax.random.split(key, actions.shape[0]), actions))[1]

    actions = jnp.asarray(actions, jnp.int32)
    if actions.ndim == 2:
        return jax.tree.map(np.asarray, jax.jit(jax.vmap(run, (None, 0)))(key, actions))
    return jax.tree.map(np.asarray, jax.jit(run)(key, actions))


# ============================================================================================ spaces
def test_discrete_sample_contains_under_jit_and_vmap():
    sp = Discrete(5)
    x = np.asarray(jax.jit(jax.vmap(sp.sample))(jax.random.split(jax.random.key(0), 2000)))
    assert x.dtype == np.int32 and x.shape == (2000,)
    assert set(x.tolist()) == {0, 1, 2, 3, 4}
    assert bool(jax.jit(sp.contains)(jnp.int32(4))) and not bool(sp.contains(5)) and not bool(sp.contains(-1))
    np.testing.assert_array_equal(jax.vmap(sp.contains)(jnp.arange(-1, 7)), [False] + [True] * 5 + [False] * 2)
    with pytest.raises(ValueError, match="Discrete.n"):
        Discrete(0)


def test_box_sample_contains_under_jit_and_vmap():
    low, high = np.array([-1.0, 0.0, -np.inf]), np.array([1.0, 2.0, np.inf])
    sp = Box(low, high, (3,))
    x = np.asarray(jax.jit(jax.vmap(sp.sample))(jax.random.split(jax.random.key(1), 4000)))
    assert x.dtype == np.float32 and x.shape == (4000, 3)
    assert np.all(x[:, :2] >= low[:2]) and np.all(x[:, :2] <= high[:2])
    np.testing.assert_allclose(x[:, :2].mean(0), (low[:2] + high[:2]) / 2, atol=0.05)  # uniform on the box
    assert np.all(np.isfinite(x[:, 2])) and abs(x[:, 2].std() - 1.0) < 0.1  # unbounded: standard normal
    assert bool(jax.jit(sp.contains)(jnp.array([0.5, 1.0, 1e6])))
    assert not bool(sp.contains(jnp.array([1.5, 1.0, 0.0])))
    assert not bool(sp.contains(jnp.zeros((2,))))  # wrong shape
    ints = Box(2, 4, (1000,), jnp.int32)
    xi = np.asarray(jax.jit(ints.sample)(jax.random.key(2)))
    assert xi.dtype == np.int32 and set(xi.tolist()) == {2, 3, 4}  # integer boxes include `high`
    with pytest.raises(ValueError, match="Box.low"):
        Box(np.zeros(2), 1.0, (3,))
    assert Box(0.0, 1.0, (2,)) == Box(np.zeros(2), np.ones(2), (2,)) and Box(0.0, 1.0, (2,)) != Box(0.0, 2.0, (2,))


def test_dict_sample_contains_under_jit_and_vmap():
    sp = Dict({"vec": _VEC, "pos": _POS})
    x = jax.jit(jax.vmap(sp.sample))(jax.random.split(jax.random.key(3), 16))
    assert set(x) == {"vec", "pos"} and x["vec"].shape == (16, 2, 3) and x["pos"].shape == (16,)
    assert np.all(np.asarray(jax.jit(jax.vmap(sp.contains))(x)))
    one = jax.tree.map(lambda a: a[0], x)
    assert bool(jax.jit(sp.contains)(one))
    assert not bool(sp.contains({"vec": one["vec"]}))  # a missing key
    assert not bool(sp.contains({**one, "pos": jnp.int32(7)}))  # out of range


def test_describe_mismatch_messages():
    box = Box(0.0, 1.0, (3,))
    assert describe_mismatch(box, jnp.full((3,), 0.5)) is None
    assert describe_mismatch(box, jnp.zeros((4, 3)), batch_shape=(4,)) is None
    assert describe_mismatch(box, jnp.zeros((2,)), where="obs") == "obs has shape (2,), the space declares (3,)"
    assert "has dtype int32, the space declares float32" in describe_mismatch(box, jnp.zeros((3,), jnp.int32))
    assert "outside the Box bounds" in describe_mismatch(box, jnp.array([0.0, 2.0, 0.0]))
    assert "holds NaN" in describe_mismatch(Box(-np.inf, np.inf, (1,)), jnp.array([np.nan]))
    assert "outside Discrete(5)" in describe_mismatch(_POS, jnp.int32(5))
    assert "should be an array, got list" in describe_mismatch(box, [0.0, 0.0, 0.0])
    dsp = Dict({"vec": _VEC, "pos": _POS})
    assert "has keys ['pos'], the space declares ['pos', 'vec']" in describe_mismatch(dsp, {"pos": jnp.int32(0)})
    msg = describe_mismatch(dsp, {"pos": jnp.int32(0), "vec": jnp.zeros((3, 2))}, where="obs")
    assert msg == "obs['vec'] has shape (3, 2), the space declares (2, 3)"
    assert "should be a dict" in describe_mismatch(dsp, jnp.zeros(3))


def test_flat_dim():
    assert flat_dim(Discrete(7)) == 7
    assert flat_dim(Box(0, 1, (2, 3))) == 6
    assert flat_dim(Box(0, 1, ())) == 1
    assert flat_dim(Dict({"a": Discrete(3), "b": Box(0, 1, (4,)), "c": Dict({"d": Box(0, 1, (2, 2))})})) == 11
    with pytest.raises(TypeError, match="unsupported space"):
        flat_dim("not a space")


# ============================================================================================ registry
class Sized(Toy):
    def __init__(self, size: int = 3, obs_kind: str = "box"):
        super().__init__(obs_kind)
        self.size = size


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test are dropped afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def test_make_by_name_is_case_insensitive():
    assert isinstance(envs.make("cartpole"), CartPole)
    assert isinstance(envs.make("CartPole"), CartPole)
    assert isinstance(envs.make("  CARTPOLE-v1 "), CartPole)
    assert "cartpole" in envs.registered_names() and envs.describe()["cartpole"]


def test_unknown_name_lists_names_and_closest_match():
    with pytest.raises(UnknownEnvironmentError) as err:
        envs.make("cartpol")
    msg = str(err.value)
    assert "Did you mean 'cartpole'?" in msg
    for name in envs.registered_names():
        assert name in msg
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownEnvironmentError) as err:
        envs.make("zzzzzzzzzz")
    assert "Did you mean" not in str(err.value) and "Known names: " in str(err.value)


def test_register_callable_with_kwargs_override(scratch_registry):
    envs.register("My-Toy", Sized, size=3, description="a toy")
    assert envs.make("my-toy").size == 3
    assert envs.make("MY-TOY", size=5).size == 5  # override a registered default
    assert envs.make("my-toy", obs_kind="dict").obs_kind == "dict"  # a new kwarg
    envs.register("toy-by-lambda", lambda: Sized(size=9))
    assert envs.make("toy-by-lambda").size == 9
    assert envs.describe()["my-toy"] == "a toy"


def test_register_module_attr_string(scratch_registry, tmp_path, monkeypatch):
    (tmp_path / "user_envs_for_test.py").write_text(textwrap.dedent("""
        from jaxrl_self.envs.cartpole import CartPole

        class LongCartPole(CartPole):
            def __init__(self, note="default"):
                self.note = note
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    envs.register("long-cartpole", "user_envs_for_test:LongCartPole", note="registered")
    assert "user_envs_for_test" not in sys.modules  # imported on first make, not at registration
    env = envs.make("long-cartpole")
    assert type(env).__name__ == "LongCartPole" and env.note == "registered"
    assert envs.make("long-cartpole", note="mine").note == "mine"
    with pytest.raises(ValueError, match="package.module:Class"):
        envs.register("bad-entry", "user_envs_for_test.LongCartPole")
    monkeypatch.delitem(sys.modules, "user_envs_for_test")


def test_duplicate_registration_refused(scratch_registry):
    envs.register("dup", Sized)
    with pytest.raises(ValueError, match="already registered"):
        envs.register("DUP", Toy)
    with pytest.raises(ValueError, match="already registered"):
        envs.register("cartpole", Toy)
    envs.register("dup", Toy, overwrite=True)
    assert type(envs.make("dup")) is Toy


# ============================================================================================ wrappers
def _reference_episode_log(rewards, dones):
    """Plain-Python episode accounting: per step, the return/length of the last finished episode and validity."""
    ret = length = 0
    last_ret, last_len, valid = 0.0, 0, False
    out = []
    for r, d in zip(rewards, dones):
        ret, length = ret + r, length + 1
        if d:
            last_ret, last_len, valid = ret, length, True
            ret = length = 0
        out.append((last_ret, last_len, valid))
    return out


def test_log_wrapper_returns_and_lengths_exact():
    # Toy: reward k on the k-th step of an episode; action 1 terminates; the 4th step truncates.
    actions = [0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0]
    # by hand: episodes (rewards) 1+2+3 = 6 (terminated, 3 steps); 1+2 = 3 (2); 1 (1); 1+2+3+4 = 10 (truncated,
    # 4 steps); then one step of an unfinished episode.
    obs, state, reward, term, trunc, info = _rollout(LogWrapper(Toy()), actions)
    np.testing.assert_array_equal(reward, [1, 2, 3, 1, 2, 1, 1, 2, 3, 4, 1])
    done = term | trunc
    np.testing.assert_array_equal(np.flatnonzero(done), [2, 4, 5, 9])
    assert trunc[9] and not term[9]
    np.testing.assert_array_equal(info["returned_episode"], done)
    np.testing.assert_array_equal(info["returned_episode_return"], [0, 0, 6, 6, 3, 1, 1, 1, 1, 10, 10])
    np.testing.assert_array_equal(info["returned_episode_length"], [0, 0, 3, 3, 2, 1, 1, 1, 1, 4, 4])
    np.testing.assert_array_equal(info["returned_episode_valid"], [False, False] + [True] * 9)
    ref = _reference_episode_log(reward.tolist(), done.tolist())
    np.testing.assert_array_equal(info["returned_episode_return"], [r[0] for r in ref])
    np.testing.assert_array_equal(info["returned_episode_length"], [r[1] for r in ref])
    np.testing.assert_array_equal(info["returned_episode_valid"], [r[2] for r in ref])
    # the running counters of the unfinished episode
    assert float(state.episode_return[-1]) == 1.0 and int(state.episode_length[-1]) == 1
    # the docstring's recipe: mean over the episodes that finished in the rollout
    ret, fin = info["returned_episode_return"], info["returned_episode"]
    assert (ret * fin).sum() / max(fin.sum(), 1) == pytest.approx((6 + 3 + 1 + 10) / 4)
    # no finished episode yet: the recipe gives 0 and the validity flag says to ignore it
    early = jax.tree.map(lambda x: x[:2], info)
    assert (early["returned_episode_return"] * early["returned_episode"]).sum() == 0
    assert not early["returned_episode_valid"].any()


@pytest.mark.parametrize("kind", ["box", "discrete", "dict"])
def test_flatten_observation(kind):
    inner = Toy(kind)
    env = FlattenObservation(inner)
    space = inner.observation_space()
    assert env.observation_space() == Box(-np.inf, np.inf, (flat_dim(space),), jnp.float32)
    actions = [0, 0, 1, 0, 0, 0, 0, 0]
    obs, _, _, term, trunc, info = _rollout(env, actions)
    obs_in, _, _, _, _, info_in = _rollout(inner, actions)
    assert obs.dtype == np.float32 and obs.shape == (len(actions), flat_dim(space))
    np.testing.assert_array_equal(obs, _np_flatten(space, obs_in))
    np.testing.assert_array_equal(info["final_obs"], _np_flatten(space, info_in["final_obs"]))
    done = term | trunc
    assert done.any() and np.any(info["final_obs"][done] != obs[done])  # final_obs is the pre-reset obs
    if kind == "dict":  # declaration order: the six 'vec' values come first, then the one-hot 'pos'
        np.testing.assert_array_equal(obs[1], np.concatenate([2.0 + np.arange(6), np.eye(5)[2]]))  # time 2
    o0, _ = env.reset(jax.random.key(0))
    np.testing.assert_array_equal(o0, _np_flatten(space, inner.reset(jax.random.key(0))[0]))


def _goals_over_rollout(env, init_goal, steps=80):
    init = env.reset_to_level(jax.random.key(7), CorridorLevel(jnp.int32(init_goal)))
    _, state, _, term, trunc, _ = _rollout(env, np.ones(steps, np.int32), key=jax.random.key(8), init=init)
    return state.level.goal, term | trunc


def test_replay_level_keeps_the_level_across_auto_resets():
    goals, done = _goals_over_rollout(ReplayLevel(Corridor()), 3)
    assert done.sum() == 80 // 3  # always right: the goal at cell 3 is reached every 3 steps
    np.testing.assert_array_equal(goals, 3)


def test_resample_level_changes_the_level():
    goals, done = _goals_over_rollout(ResampleLevel(Corridor()), 3)
    assert done.sum() >= 10
    first_end = int(np.flatnonzero(done)[0])
    assert np.all(goals[:first_end] == 3)  # the episode it was reset to
    assert len(set(goals[first_end:].tolist())) > 2 and np.all((goals >= 1) & (goals < CORRIDOR))


def test_level_set_only_yields_levels_from_the_set():
    env = LevelSet(Corridor(), CorridorLevel(goal=jnp.asarray([2, 5], jnp.int32)))
    assert env.num_levels == 2
    goals, done = _goals_over_rollout(env, 3)
    first_end = int(np.flatnonzero(done)[0])
    assert set(goals[first_end:].tolist()) == {2, 5}
    # reset() also draws from the set
    g = jax.jit(jax.vmap(lambda k: env.reset(k)[1].level.goal))(jax.random.split(jax.random.key(0), 64))
    assert set(np.asarray(g).tolist()) == {2, 5}
    with pytest.raises(ValueError, match="leading axis"):
        LevelSet(Corridor(), {"a": jnp.zeros(2), "b": jnp.zeros(3)})


def test_reset_policies_refuse_non_level_envs():
    for policy in (ReplayLevel, ResampleLevel):
        with pytest.raises(TypeError, match="wraps a LevelEnv"):
            policy(CartPole())
    with pytest.raises(TypeError, match="wraps a LevelEnv"):
        LevelSet(Toy(), CorridorLevel(goal=jnp.asarray([2], jnp.int32)))
    with pytest.raises(TypeError, match="wraps a LevelEnv"):  # reset policies go innermost
        ReplayLevel(FlattenObservation(Corridor()))


def test_wrapped_level_env_passes_check_env():
    report = check_env(LogWrapper(ReplayLevel(Corridor())))
    assert report["level_checked"] and report["time_checked"]


# ============================================================================================ check_env
def test_correct_toy_env_passes_and_reports():
    report = check_env(Toy("dict"))
    assert report["kind"] == "Environment" and report["time_checked"]
    assert report["steps"] == 8 * 64 and report["episodes_ended"] > 0


def test_correct_task_passes():
    assert check_env(EchoDigit())["kind"] == "SequenceTask"


# -- broken environments, each with exactly one contract violation
class ObsWrongDtype(Toy):
    def get_obs(self, time):
        return super().get_obs(time).astype(jnp.int32)


class ObsShapeNotAsDeclared(Toy):
    def observation_space(self, params=None):
        return Box(0.0, 100.0, (3, 2), jnp.float32)


class ObsWrongShapeInStep(Toy):
    def step_env(self, key, state, action, params):
        obs, *rest = super().step_env(key, state, action, params)
        return (obs[:1], *rest)


class RewardNotFloat32(Wrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, term, trunc, info = self._env.step(key, state, action, params)
        return obs, state, reward.astype(jnp.int32), term, trunc, info


class RewardNotScalar(Wrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, term, trunc, info = self._env.step(key, state, action, params)
        return obs, state, reward[None], term, trunc, info


class DropsFinalObs(Wrapper):
    def step(self, key, state, action, params=None):
        obs, state, reward, term, trunc, info = self._env.step(key, state, action, params)
        return obs, state, reward, term, trunc, {k: v for k, v in info.items() if k != "final_obs"}


class HostRandomness(Toy):
    """Draws its reward from a host-side numpy RNG: the same key gives different results."""

    rng = np.random.default_rng(0)

    def step_env(self, key, state, action, params):
        obs, state, _, term, trunc, info = super().step_env(key, state, action, params)
        reward = jax.pure_callback(lambda: np.float32(self.rng.random()), jax.ShapeDtypeStruct((), jnp.float32),
                                   vmap_method="sequential")
        return obs, state, reward, term, trunc, info


class PythonCounter(Toy):
    """Adds a Python-side call counter to the observation: baked in at trace time, so each trace differs."""

    calls = 0

    def step_env(self, key, state, action, params):
        type(self).calls += 1
        obs, *rest = super().step_env(key, state, action, params)
        return (obs + type(self).calls, *rest)


class NoAutoReset(Toy):
    def step(self, key, state, action, params=None):
        obs, state, reward, term, trunc, info = self.step_env(key, state, action, params or self.default_params)
        return obs, state, reward, term, trunc, {**info, "final_obs": obs}


class ResetsWithoutDone(Toy):
    """Silently restarts the episode after 2 steps without reporting it."""

    def step_env(self, key, state, action, params):
        obs, new, reward, term, _, info = super().step_env(key, state, action, params)
        new = new.replace(time=jnp.where(new.time >= 3, 0, new.time))
        return self.get_obs(new.time), new, reward, term, jnp.zeros((), jnp.bool_), info


class TransformsObsNotFinalObs(Wrapper):
    """A typical wrapper bug: the observation is rescaled but info['final_obs'] is not."""

    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return obs * 0.5, state

    def step(self, key, state, action, params=None):
        obs, state, reward, term, trunc, info = self._env.step(key, state, action, params)
        return obs * 0.5, state, reward, term, trunc, info


class ChangesStateStructure(Wrapper):
    def reset(self, key, params=None):
        obs, state = self._env.reset(key, params)
        return obs, {"inner": state}

    def step(self, key, state, action, params=None):
        obs, inner, reward, term, trunc, info = self._env.step(key, state["inner"], action, params)
        return obs, {"inner": inner, "steps": inner.time}, reward, term, trunc, info


class MirroredLevelText(Corridor):
    def level_from_str(self, text):  # reads the cells right to left: never the level that was written
        return CorridorLevel(goal=jnp.asarray(CORRIDOR - 1 - text.index("G"), jnp.int32))


class ForgetsLevel(Corridor):
    def reset_env_to_level(self, key, level, params):
        wrong = CorridorLevel(goal=(level.goal % (CORRIDOR - 1) + 1).astype(jnp.int32))  # always another cell
        return super().reset_env_to_level(key, wrong, params)


class WrongSolution(EchoDigit):
    def _solution_digit(self, d):
        return (d + 1) % 10


class NotAnEnv:
    pass


BROKEN = [  # (make the env, the method check_env must name, words its message must contain)
    pytest.param(ObsWrongDtype, "reset", "observation has dtype int32, the space declares float32", id="obs-dtype"),
    pytest.param(ObsShapeNotAsDeclared, "reset", "observation has shape (2, 3), the space declares (3, 2)",
                 id="obs-shape"),
    pytest.param(ObsWrongShapeInStep, "step", "info['final_obs'] has shape (1, 3), the space declares (2, 3)",
                 id="obs-shape-in-step"),
    pytest.param(lambda: RewardNotFloat32(Toy()), "step", "reward has dtype int32, expected float32",
                 id="reward-dtype"),
    pytest.param(lambda: RewardNotScalar(Toy()), "step",
                 "reward has shape (1,), expected () (a scalar per environment)", id="reward-shape"),
    pytest.param(lambda: DropsFinalObs(Toy()), "step", "info must be a dict containing 'final_obs'", id="no-final-obs"),
    pytest.param(HostRandomness, "step", "the same key gave two different trajectories", id="host-rng"),
    pytest.param(PythonCounter, "step", "vmapped rollout differs from the unbatched rollout", id="python-counter"),
    pytest.param(NoAutoReset, "step", "episode ended but the state was not reset", id="no-auto-reset"),
    pytest.param(ResetsWithoutDone, "step", "a reset happened without terminated/truncated", id="reset-without-done"),
    pytest.param(lambda: TransformsObsNotFinalObs(Toy()), "step",
                 "obs differs from info['final_obs'] on a step that did not end", id="final-obs-on-continue"),
    pytest.param(lambda: ChangesStateStructure(Toy()), "step", "state whose pytree structure differs",
                 id="state-structure"),
    pytest.param(MirroredLevelText, "level_from_str", "level_from_str(level_to_str(level)) != level", id="level-text"),
    pytest.param(ForgetsLevel, "reset_to_level", "the state does not hold the level it was reset to",
                 id="level-not-stored"),
    pytest.param(WrongSolution, "is_correct", "the reference solution is judged wrong", id="wrong-solution"),
    pytest.param(NotAnEnv, "check_env", "neither an Environment nor a SequenceTask", id="not-an-env"),
]


@pytest.mark.parametrize("make_env,method,problem", BROKEN)
def test_check_env_rejects_broken_envs(make_env, method, problem):
    env = make_env()
    with pytest.raises(EnvCheckError) as err:
        check_env(env)
    assert err.value.method == method
    assert problem in str(err.value)
    assert str(err.value).startswith(f"check_env({getattr(env, 'name', type(env).__name__)}): {method}: ")


# ============================================================================================ gymnax adapter
needs_gymnax = pytest.mark.skipif(importlib.util.find_spec("gymnax") is None, reason="gymnax is not installed")


@needs_gymnax
@pytest.mark.parametrize("name", ["CartPole-v1", "MountainCar-v0", "DiscountingChain-bsuite"])
def test_gymnax_envs_pass_check_env(name):
    report = check_env(envs.from_gymnax(name), num_steps=32)
    assert report["time_checked"] and report["episodes_ended"] > 0


@needs_gymnax
def test_gymnax_space_mismatch_is_reported():
    """gymnax's Catch-bsuite declares an int32 observation space but emits float32 observations: the checker
    names it instead of letting it surface later in a network."""
    with pytest.raises(EnvCheckError, match="reset: observation has dtype float32, the space declares int32"):
        check_env(envs.from_gymnax("Catch-bsuite"))


@pytest.fixture(scope="module")
def gx_cartpole():
    return envs.from_gymnax("CartPole-v1")


@needs_gymnax
def test_gymnax_adapter_splits_termination_and_truncation(gx_cartpole):
    env = gx_cartpole
    params = env.default_params
    assert params.max_steps_in_episode == 500 and env.name == "gymnax:CartPole-v1"
    _, s = env.reset(jax.random.key(0), params)
    step = jax.jit(env.step)
    # the 500th step of an upright episode: truncated, not terminated; auto-reset with final_obs kept
    s499 = s.replace(time=499)
    expected = np.asarray(jax.jit(env._env.step_env)(jax.random.key(0), s499, 0, params)[0])
    obs, s2, reward, term, trunc, info = step(jax.random.key(1), s499, jnp.int32(0), params)
    assert bool(trunc) and not bool(term) and float(reward) == 1.0
    np.testing.assert_array_equal(np.asarray(info["final_obs"]), expected)
    assert int(s2.time) == 0 and not np.array_equal(np.asarray(obs), expected)
    # falling over: terminated, not truncated
    falling = s.replace(theta=jnp.float32(0.2094), theta_dot=jnp.float32(2.0), time=10)
    _, s3, _, term, trunc, info = step(jax.random.key(2), falling, jnp.int32(1), params)
    assert bool(term) and not bool(trunc) and int(s3.time) == 0
    assert float(info["final_obs"][2]) > 0.2094
    assert set(info) == {"discount", "final_obs"}  # gymnax's own bookkeeping keys are dropped


@needs_gymnax
def test_cartpole_matches_gymnax_cartpole(gx_cartpole):
    """Our CartPole and gymnax's from the same states under the same actions, both float32: the same
    trajectories (to float32 rounding, ~1e-6 over 60 steps) and the same terminating step."""
    ours = CartPole()
    n, steps = 16, 60
    actions = jax.random.bernoulli(jax.random.key(1), 0.5, (steps, n)).astype(jnp.int32)
    _, gx_state = jax.vmap(gx_cartpole.reset)(jax.random.split(jax.random.key(0), n))
    our_state = CartPoleState(time=jnp.zeros(n, jnp.int32), x=gx_state.x, x_dot=gx_state.x_dot,
                              theta=gx_state.theta, theta_dot=gx_state.theta_dot)

    def run(env, state):
        def body(s, a):
            obs, s2, r, term, trunc, _ = jax.vmap(env.step_env, (None, 0, 0, None))(
                jax.random.key(0), s, a, env.default_params)
            return s2, (obs, r, term)

        return jax.lax.scan(body, state, actions)[1]

    obs_g, r_g, term_g = jax.tree.map(np.asarray, jax.jit(lambda s: run(gx_cartpole, s))(gx_state))
    obs_o, r_o, term_o = jax.tree.map(np.asarray, jax.jit(lambda s: run(ours, s))(our_state))
    first_end = np.argmax(term_g, axis=0)
    assert term_g.any(axis=0).all(), "random actions should make every lane fall within 60 steps"
    np.testing.assert_array_equal(np.argmax(term_o, axis=0), first_end)
    for lane in range(n):
        t = first_end[lane] + 1  # up to and including the terminating step
        np.testing.assert_allclose(obs_o[:t, lane], obs_g[:t, lane], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(r_o[:t, lane], r_g[:t, lane])  # 1.0, including the terminating step


# -- fake old-style (gymnax 0.x) environments: a single `done` that includes the time limit
class FakeBox:
    def __init__(self, low, high, shape, dtype=jnp.float32):
        self.low, self.high, self.shape, self.dtype = low, high, shape, dtype


class FakeDiscrete:
    def __init__(self, n):
        self.n, self.dtype = n, jnp.int32


@struct.dataclass
class OldState:
    pos: jax.Array
    time: jax.Array


@struct.dataclass
class OldParams:
    max_steps_in_episode: int = 5


class OldSplitEnv:
    """gymnax 0.x style: ``step_env -> (obs, state, reward, done, info)``; ``done`` = reached cell 3 (action 1
    moves right) or the time limit. No ``is_truncated``."""

    @property
    def default_params(self):
        return OldParams()

    def observation_space(self, params):
        return FakeBox(0.0, 100.0, (2,))

    def action_space(self, params):
        return FakeDiscrete(2)

    def _obs(self, s):
        return jnp.stack([s.pos, s.time]).astype(jnp.float32)

    def reset_env(self, key, params):
        s = OldState(pos=jnp.zeros((), jnp.int32), time=jnp.zeros((), jnp.int32))
        return self._obs(s), s

    def step_env(self, key, state, action, params):
        s = OldState(pos=state.pos + action, time=state.time + 1)
        done = (s.pos >= 3) | (s.time >= params.max_steps_in_episode)
        return self._obs(s), s, jnp.float32(1.0), done, {"discount": 1.0 - done}


class OldStepOnlyEnv:
    """Only ``step``/``reset`` (its own auto-reset inside ``step``), returning 5-tuples. With
    ``report_final=True`` its info carries ``final_observation`` (the pre-reset observation)."""

    def __init__(self, report_final: bool = False):
        self._inner = OldSplitEnv()
        self.report_final = report_final
        self.default_params = OldParams()
        self.observation_space = self._inner.observation_space
        self.action_space = self._inner.action_space

    def reset(self, key, params=None):
        return self._inner.reset_env(key, params or self.default_params)

    def step(self, key, state, action, params=None):
        params = params or self.default_params
        obs_st, s_st, reward, done, info = self._inner.step_env(key, state, action, params)
        obs_re, s_re = self._inner.reset_env(key, params)
        obs = jnp.where(done, obs_re, obs_st)
        s = jax.tree.map(lambda a, b: jnp.where(done, a, b), s_re, s_st)
        if self.report_final:
            info = {**info, "final_observation": obs_st}
        return obs, s, reward, done, info


# always right: reaches cell 3 on step 3 -> terminated; always left: the 5-step limit -> truncated
OLD_CASES = (([1] * 6, 2, True), ([0] * 6, 4, False))  # (actions, index of the step that ends, terminated)


def test_old_style_split_env_is_adapted():
    env = envs.from_gymnax(OldSplitEnv())
    assert env._has_split_api
    out = _rollout(env, [c[0] for c in OLD_CASES])
    for lane, (_, end, terminated) in enumerate(OLD_CASES):
        obs, state, reward, term, trunc, info = jax.tree.map(lambda x: x[lane], out)
        done = term | trunc
        assert int(np.flatnonzero(done)[0]) == end
        assert bool(term[end]) is terminated and bool(trunc[end]) is (not terminated)
        np.testing.assert_array_equal(info["final_obs"][end], [3.0 if terminated else 0.0, end + 1.0])
        np.testing.assert_array_equal(obs[end], [0.0, 0.0])  # auto-reset on the same step
        assert set(info) == {"discount", "final_obs"}
    check_env(env)


@pytest.mark.parametrize("report_final", [False, True])
def test_old_style_step_only_env_is_adapted(report_final):
    env = envs.from_gymnax(OldStepOnlyEnv(report_final))
    assert not env._has_split_api
    out = _rollout(env, [c[0] for c in OLD_CASES])
    for lane, (_, end, terminated) in enumerate(OLD_CASES):
        obs, state, reward, term, trunc, info = jax.tree.map(lambda x: x[lane], out)
        done = term | trunc
        assert int(np.flatnonzero(done)[0]) == end
        # the env resets inside its own step, so the time limit must be read from the incoming state
        assert bool(term[end]) is terminated and bool(trunc[end]) is (not terminated), (term, trunc)
        assert reward.dtype == np.float32 and term.dtype == np.bool_
        np.testing.assert_array_equal(obs[end], [0.0, 0.0])
        if report_final:  # the pre-reset observation, for bootstrapping
            np.testing.assert_array_equal(info["final_obs"][end], [3.0 if terminated else 0.0, end + 1.0])
        else:  # documented: without it, final_obs is the post-reset observation
            np.testing.assert_array_equal(info["final_obs"][end], obs[end])
        assert "final_observation" not in info


# ============================================================================================ XLA guard
FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXRL_SELF_NO_XLA_GUARD")}
    env.update(extra)
    return env


def _probe(env: dict) -> tuple[str, str]:
    """In a fresh interpreter with environment ``env``: ``import jaxrl_self``; returns (XLA_GUARD_ACTIVE, XLA_FLAGS)."""
    script = "import os, jaxrl_self\nprint(jaxrl_self.XLA_GUARD_ACTIVE)\nprint(os.environ.get('XLA_FLAGS'))"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    active, flags = out.stdout.strip().splitlines()[-2:]
    return active, flags


def test_xla_guard_sets_the_flag_in_a_clean_environment():
    active, flags = _probe(_clean_env())
    assert active == "True" and flags == FLAG


def test_xla_guard_appends_to_other_user_flags():
    active, flags = _probe(_clean_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert active == "True" and flags == f"--xla_force_host_platform_device_count=2 {FLAG}"


def test_xla_guard_respects_the_users_choice():
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    active, flags = _probe(_clean_env(XLA_FLAGS=mine))
    assert active == "False" and flags == mine


def test_xla_guard_opt_out():
    active, flags = _probe(_clean_env(JAXRL_SELF_NO_XLA_GUARD="1"))
    assert active == "False" and flags == "None"


def test_xla_guard_gives_forced_cpu_devices_a_thread_each():
    """As many forced CPU devices as cores, or more: NPROC (XLA:CPU's intra-op threads) = cores + devices, so
    collectives cannot block every thread (see jaxrl_self._xla_guard); left alone when the user set it or N < cores."""
    script = "import os, jaxrl_self\nprint(os.environ.get('NPROC'))"
    cores = os.cpu_count()

    def nproc(**env):
        out = subprocess.run([sys.executable, "-c", script], env=_clean_env(**env), capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()[-1]

    env = {k: v for k, v in os.environ.items() if k == "NPROC"}
    assert not env, "this test expects NPROC unset"
    many = cores + 2
    assert nproc(XLA_FLAGS=f"--xla_force_host_platform_device_count={many}") == str(cores + many)
    assert nproc(XLA_FLAGS=f"--xla_force_host_platform_device_count={many}", NPROC="3") == "3"
    assert nproc(XLA_FLAGS=f"--xla_force_host_platform_device_count={cores}") == (str(2 * cores) if cores >= 2
                                                                                 else "None")
    if cores > 2:
        assert nproc(XLA_FLAGS="--xla_force_host_platform_device_count=2") == "None"
    assert nproc() == "None"


def test_xla_guard_warns_when_imported_after_the_backend_started():
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "import jax; jax.numpy.zeros(1).block_until_ready()\nimport os, jaxrl_self\n"
         "print(jaxrl_self.XLA_GUARD_ACTIVE); print(os.environ.get('XLA_FLAGS'))"],
        env=_clean_env(JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "None"]
    assert "RuntimeWarning" in out.stderr and "Import jaxrl_self first" in out.stderr


# ============================================================================================ allocator tuning
def _malloc_tuned(**extra) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "JAXRL_SELF_NO_MALLOC_TUNING"}
    env.update(extra)
    out = subprocess.run([sys.executable, "-c", "import jaxrl_self; print(jaxrl_self.MALLOC_TUNED)"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[-1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_tuning_is_on_by_default_and_yields_to_the_user():
    """jaxrl_self._malloc: on by default (glibc), off with the opt-out or when the user set any MALLOC_* variable."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _malloc_tuned() == "True"
    assert _malloc_tuned(JAXRL_SELF_NO_MALLOC_TUNING="1") == "False"
    assert _malloc_tuned(MALLOC_ARENA_MAX="2") == "False"
    assert _malloc_tuned(GLIBC_TUNABLES="glibc.malloc.arena_max=2") == "False"


MULTI_SEED_INIT = """
import jaxrl_self  # first: sets XLA_FLAGS before the backend starts
import jax, jax.numpy as jnp
import flax.linen as nn

class ActorCritic(nn.Module):
    @nn.compact
    def __call__(self, x):
        ortho = nn.initializers.orthogonal
        for _ in range(2):
            x = nn.tanh(nn.Dense(64, kernel_init=ortho(jnp.sqrt(2.0)))(x))
        return nn.Dense(2, kernel_init=ortho(0.01))(x), nn.Dense(1, kernel_init=ortho(1.0))(x)

init = jax.jit(jax.vmap(lambda k: ActorCritic().init(k, jnp.zeros((4,)))))
for i in range(20):
    jax.block_until_ready(init(jax.random.split(jax.random.key(i), 4)))
print("ok", jaxrl_self.XLA_GUARD_ACTIVE)
"""


@pytest.mark.timeout(180)
def test_multi_seed_network_init_does_not_hang():
    """vmap over 4 seeds of an orthogonally initialised MLP in one jitted program: what hangs in XLA:CPU's QR
    kernel on small machines without the guard (see /work/shared/repro/xla_cpu_qr_hang.py)."""
    out = subprocess.run(["timeout", "120", sys.executable, "-c", MULTI_SEED_INIT],
                         env=_clean_env(JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=170)
    assert out.returncode == 0, f"exit {out.returncode} (124 = hung)\n{out.stderr[-2000:]}"
    assert out.stdout.split() == ["ok", "True"]


# ============================================================================================ adapter prefixes
@needs_gymnax
def test_gymnax_prefix_builds_the_adapter_and_steps_as_gymnax_does():
    """``envs.make("gymnax:Pendulum-v1")`` is the adapter over ``gymnax.make("Pendulum-v1")``: it passes
    check_env and, from the same state with the same key and action, steps exactly as gymnax's own step_env."""
    import gymnax

    env = envs.make("gymnax:Pendulum-v1")
    assert isinstance(env, envs.GymnaxAdapter) and env.name == "gymnax:Pendulum-v1"
    assert check_env(env, num_steps=32)["time_checked"]
    gx, gx_params = gymnax.make("Pendulum-v1")
    key = jax.random.key(3)
    _, state = env.reset(key, env.default_params)
    for t, a in enumerate((-2.0, 0.5, 1.7)):
        k = jax.random.fold_in(key, t)
        action = jnp.array([a], jnp.float32)
        want = gx.step_env(k, state, action, gx_params)
        got = env.step_env(k, state, action, env.default_params)
        np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))  # observation
        assert float(got[2]) == float(want[2])  # reward
        state = got[1]


def test_a_prefix_whose_library_is_missing_is_one_line_naming_the_extra(monkeypatch, capsys):
    from jaxrl_self import cli
    from jaxrl_self.envs import registry

    monkeypatch.setattr(registry, "_PREFIXES", dict(registry._PREFIXES))
    registry.register_prefix("nolib", "nolib_xyz:make", extra="nolib", module="nolib_xyz_not_installed")
    with pytest.raises(envs.MissingExtraError, match=r"needs nolib_xyz_not_installed, which is not installed: "
                                                     r"pip install 'jaxrl-self\[nolib\]'"):
        envs.make("nolib:Thing-v0")
    assert cli.main(["train", "ppo", "--env", "nolib:Thing-v0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install 'jaxrl-self[nolib]'" in err, err
    with pytest.raises(envs.UnknownEnvironmentError, match="name the gymnax environment after the colon"):
        envs.make("gymnax:")
    assert "gymnax" in envs.registered_prefixes()
