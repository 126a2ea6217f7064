"""The Kinetix level adapter (``kinetix:SIZE``, :mod:`jaxrl_self.envs.ecosystem.kinetix`): the contract checker,
stepping exactly as Kinetix's own ``step_env``, the shipped held-out levels, ACCEL's mutation with a traced edit
count, PPO improving on a held-out level, and a curriculum from the CLI.

``kinetix-env`` 3.0.2 pins ``jax<=0.9.0``, so these tests skip in the main (jax 0.10) environment and run in the
benchmark venv: ``benchmarks/.venvs/kinetix/bin/python -m pytest tests/test_adapter_kinetix.py`` (built by
``benchmarks/ued_second_domain.py``). Kinetix's programs compile slowly on a CPU (30-120 s each), so the tests
share one environment and keep their programs few.
"""
import functools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

kinetix = pytest.importorskip("kinetix")

from jaxrl_self import envs, ppo  # noqa: E402
from jaxrl_self.core.spaces import Box, Discrete  # noqa: E402
from jaxrl_self.curricula import evaluation  # noqa: E402
from jaxrl_self.envs.ecosystem.kinetix import KinetixLevelEnv  # noqa: E402
from jaxrl_self.envs.registry import UnknownEnvironmentError  # noqa: E402

pytestmark = pytest.mark.timeout(1800)
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
NAMES = ["h0_weak_thrust", "h1_thrust_over_ball", "h2_one_wheel_car", "h3_point_the_thruster", "h4_thrust_aim",
         "h5_rotate_fall", "h6_unicycle_right", "h7_unicycle_left", "h8_unicycle_balance",
         "h9_explode_then_thrust_over"]


@pytest.fixture(scope="module")
def env():
    return envs.make("kinetix:s")


def test_the_prefix_builds_the_level_env(env):
    assert isinstance(env, KinetixLevelEnv) and env.name == "kinetix:s"
    assert env.action_space() == Discrete(11)  # 4 motors x 2 directions, a no-op, 2 thrusters
    obs_space = env.observation_space()
    assert isinstance(obs_space, Box) and obs_space.shape == (140,) and obs_space.dtype == jnp.float32
    assert env.default_params.max_steps_in_episode == 256
    assert env.default_params.kinetix.dense_reward_scale == pytest.approx(0.1)
    assert list(env.heldout_levels()) == NAMES
    with pytest.raises(UnknownEnvironmentError, match="sizes: s, m, l"):
        envs.make("kinetix:xl")


def test_check_env(env):
    report = envs.check_env(env)
    assert report["time_checked"]


def test_steps_exactly_as_kinetix(env):
    """From the same levels (a held-out one and two random ones), the same random actions through Kinetix's own
    ``step_env`` (no auto-reset) and ours: equal observations and rewards up to the episode's end, ``terminated``
    exactly on Kinetix's ``done`` (its time limit moved out of reach, so ``done`` is a contact or NaN), and our
    ``truncated`` only at our limit."""
    from kinetix.environment import make_kinetix_env
    from kinetix.environment.spaces import ActionType, ObservationType

    kp = env.kinetix_params.replace(max_timesteps=2**30)
    kx = make_kinetix_env(ActionType.DISCRETE, ObservationType.SYMBOLIC_FLAT, None, kp, env.static_params,
                          auto_reset=False)
    params = env.default_params.replace(max_steps_in_episode=64)
    held = jax.tree.map(jnp.asarray, env.heldout_levels()["h0_weak_thrust"])
    sampled = jax.vmap(env.sample_level)(jax.random.split(jax.random.key(1), 2))
    levels = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), held, sampled)
    actions = jax.random.randint(jax.random.key(2), (3, 64), 0, 11)

    def run(level, acts):
        obs0, state = env.reset_to_level(jax.random.key(0), level, params)
        kobs0, kstate = kx.reset(jax.random.key(0), kp, override_reset_state=state.world)

        def body(carry, a):
            state, kstate = carry
            kobs, kstate, kr, kdone, _ = kx.step_env(jax.random.key(0), kstate, a, kp)
            obs, state, r, term, trunc, info = env.step_env(jax.random.key(0), state, a, params)
            return (state, kstate), (obs, r, term, trunc, kobs, kr, kdone)

        _, out = jax.lax.scan(body, (state, kstate), acts)
        return obs0, kobs0, out

    obs0, kobs0, (obs, r, term, trunc, kobs, kr, kdone) = jax.tree.map(np.asarray, jit(jax.vmap(run))(levels, actions))
    np.testing.assert_array_equal(obs0, kobs0)
    for lane in range(3):
        ends = np.flatnonzero(kdone[lane])
        end = ends[0] if len(ends) else 63
        sl = slice(0, end + 1)
        np.testing.assert_array_equal(obs[lane, sl], kobs[lane, sl])
        np.testing.assert_array_equal(r[lane, sl], kr[lane, sl])
        np.testing.assert_array_equal(term[lane, sl], kdone[lane, sl])
        expected_trunc = np.zeros(end + 1, bool)
        if not len(ends):
            expected_trunc[63] = True  # our 64-step limit
        np.testing.assert_array_equal(trunc[lane, sl], expected_trunc)


def test_heldout_levels_text_and_sparse_evaluation(env):
    table = env.heldout_levels()
    level = table["h3_point_the_thruster"]
    back = env.level_from_str(env.level_to_str(level))
    for a, b in zip(jax.tree.leaves(level), jax.tree.leaves(back)):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="not a Kinetix level"):
        env.level_from_str(json.dumps({"x": {"dtype": "int32", "shape": [], "data": [0]}}))
    held = evaluation.heldout_set(env)
    assert held.groups == tuple(NAMES) and held.named_groups == 10 and held.num_levels == 10
    assert evaluation.heldout_set(env, named=("h0_weak_thrust",)).level_names == ("h0_weak_thrust",)
    eval_params = env.heldout_params(env.default_params)
    assert float(eval_params.kinetix.dense_reward_scale) == 0.0
    assert float(env.default_params.kinetix.dense_reward_scale) > 0  # training keeps Kinetix's shaping
    assert int(env.shortest_path(level)) == 0  # "solvable, length unknown"


def test_mutation_with_a_traced_edit_count(env):
    """A traced ``n_edits`` (a sweep over ``num_edits``) runs ``max_edits`` masked edit slots: 0 edits keep the
    level, 3 change it; the level stays a valid start (a reset works on it)."""
    level = jax.tree.map(jnp.asarray, env.heldout_levels()["h4_thrust_aim"])

    @jit
    def mutate(key, n):
        child = env.mutate_level(key, level, n)
        obs, _ = env.reset_to_level(key, child)
        return child, obs

    same, _ = mutate(jax.random.key(0), jnp.int32(0))
    changed, obs = mutate(jax.random.key(0), jnp.int32(3))
    for a, b in zip(jax.tree.leaves(level), jax.tree.leaves(same)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(level), jax.tree.leaves(changed)))
    assert np.isfinite(np.asarray(obs)).all()


def test_ppo_improves_on_a_heldout_level(env):
    """PPO (MLP) trained on one held-out level (``h0_weak_thrust``, replayed every episode through
    ``LevelSet``) in a tiny budget: the sparse part of the return rises."""
    from jaxrl_self.envs.wrappers import LevelSet

    level = jax.tree.map(lambda x: jnp.asarray(x)[None], env.heldout_levels()["h0_weak_thrust"])
    train_env = LevelSet(env, level)
    config = ppo.Config(total_timesteps=16 * 64 * 24, num_envs=16, num_steps=64, num_minibatches=4,
                        update_epochs=4, learning_rate=3e-4, anneal_lr=False, gamma=0.99, ent_coef=0.01)
    params = env.heldout_params(env.default_params).replace(max_steps_in_episode=64)
    _, m = jit(ppo.make_train(config, train_env, params))(jax.random.key(0))
    ret = np.asarray(m.episode_return)
    first, last = ret[:4].mean(), ret[-4:].mean()
    assert last > first + 0.2, (first, last, ret)


@pytest.mark.slow
def test_accel_from_the_cli(tmp_path):
    """``jaxrl-self train accel --env kinetix:s`` at a tiny budget: the run finishes with the held-out
    evaluation on the ten Kinetix levels in its metrics."""
    out = subprocess.run([sys.executable, "-m", "jaxrl_self.cli", "train", "accel", "--env", "kinetix:s",
                          "--num-envs", "4", "--num-steps", "16", "--total-timesteps", str(4 * 16 * 4),
                          "--eval-every", "2", "--eval-attempts", "1", "--capacity", "16", "--seeds", "1",
                          "--runs-root", str(tmp_path)], capture_output=True, text=True, timeout=1700)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = [json.loads(x) for p in tmp_path.rglob("metrics.jsonl") for x in p.read_text().splitlines()]
    evals = [r for r in rows if r.get("eval_valid")]
    assert evals and all(f"eval.solved_rate.{n}" in evals[-1] for n in NAMES)
