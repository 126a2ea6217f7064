"""The grounded maze teacher (teach/soar_maze.py): its reward and promotion against hand-computed values, the hard
mazes, the vmapped inner students against one-at-a-time runs, a tiny run through the runner, resumed bitwise, the
CLI, and its configuration errors.

One tiny config (4 levels per batch, 16 steps, LSTM 16, a 2-filter adversary) is compiled once at XLA optimisation
level 0 by the module's reference run; the resumed run and the CLI reuse its programs.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import algos, cli, envs
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.curricula import common, evaluation, paired
from jaxrl_self.envs.maze import named_level, NAMED_LEVEL_NAMES
from jaxrl_self.run import metrics as metrics_lib
from jaxrl_self.run.runner import RunOptions, Runner, run_description, seed_keys
from jaxrl_self.teach import grounded, soar_maze
import run_helpers
from treecheck import assert_bitwise

OPT0 = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
SEEDS, N, T, UPDATES = 2, 4, 16, 3
G, R, INNER = 3, 2, 2
CONFIG = soar_maze.Config(
    ppo=common.student_ppo(num_envs=N, num_steps=T, lstm_features=16, update_epochs=1, anneal_lr=False,
                           total_timesteps=G * R * INNER * N * T * UPDATES),
    episode_steps=T, eval_every=2, eval_attempts=1, eval_procedural=0, eval_max_steps=T,
    adversary=paired.AdversaryConfig(n_walls=6, noise_dim=3, conv_features=2,
                                     ppo=paired.adversary_ppo(lstm_features=8, update_epochs=1)),
    num_batches=G, num_students=R, inner_updates=INNER, hard_candidates=48, hard_attempts=2, hard_size=12,
    reward_levels=6, reward_attempts=1, promotion_window=1, promotion_threshold=-1.0)  # promote every step


@pytest.fixture(autouse=True)
def _fast_runner(monkeypatch):
    monkeypatch.setattr(Runner, "default_compiler_options", OPT0)


# ------------------------------------------------------------------------------------------------ the maths
def test_batch_reward_and_promotion_on_scripted_solved_rates():
    """g = 3 batches of r = 2 copies; solved rates scripted over three outer steps; window 2, τ = 0.05."""
    base = jnp.asarray(0.125)
    steps = [jnp.asarray([[0.5, 0.25], [0.0, 0.0], [0.25, 0.25]]),   # R = [0.25, -0.125, 0.125], mean 1/12
             jnp.asarray([[0.125, 0.125], [0.0, 0.25], [0.125, 0.125]]),  # R = [0, 0, 0]
             jnp.asarray([[0.25, 0.375], [0.5, 0.125], [0.125, 0.25]])]  # R = [0.1875, 0.1875, 0.0625], mean 0.1458
    rewards = [grounded.grounded_rewards(s, base) for s in steps]
    np.testing.assert_allclose(rewards[0], [0.25, -0.125, 0.125])
    np.testing.assert_allclose(rewards[2], [0.1875, 0.1875, 0.0625])
    # RLOO over batches, on every step of every design of the batch (T = 2 design steps, N = 2 levels per batch)
    adv = soar_maze.design_advantages(rewards[0], design_steps=2, levels_per_batch=2)
    row = [0.25, 0.25, -0.3125, -0.3125, 0.0625, 0.0625]  # R_k - mean of the other two
    np.testing.assert_allclose(adv, [row, row])
    window, filled = jnp.zeros(2), jnp.zeros((), jnp.int32)
    fired_at = []
    for i, r in enumerate(rewards):
        window, filled, fired, avg = grounded.promotion_step(window, filled, jnp.mean(r), 0.05)
        fired_at.append(bool(fired))
        if i == 1:
            np.testing.assert_allclose(avg, (1 / 12 + 0) / 2, rtol=1e-6)  # below τ: no promotion
    assert fired_at == [False, False, True]  # (0 + 0.1458) / 2 = 0.073 > 0.05 at the third step
    best, median = grounded.promoted_student(rewards[2], steps[2])
    assert int(best) == 0 and int(median) == 0  # first of the tied best batches; its lower-median copy (0.25)
    # learnability: mean p (1 - p) of the baseline's solved rates on each batch's levels
    np.testing.assert_allclose(soar_maze.learnability_rewards(jnp.asarray([[0.0, 0.5, 1.0], [0.25, 0.25, 0.25]])),
                               [0.25 / 3, 0.1875])


# ------------------------------------------------------------------------------------------------ the pieces
def test_hard_mazes_are_solvable_unsolved_and_disjoint_from_the_held_out_mazes():
    env = envs.make("maze")
    student = common.make_student(CONFIG, env, None, CONFIG.inner_updates)
    params = common.init_params(student, jax.random.key(1))
    named = jax.tree.map(lambda *xs: jnp.stack(xs), *[named_level(n) for n in NAMED_LEVEL_NAMES])
    generated = jax.vmap(common.level_generator(env, 40))(jax.random.split(jax.random.key(2), 24))
    candidates = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), named, generated)  # 8 named + 24 random
    config = CONFIG.replace(hard_candidates=32, hard_size=32, hard_attempts=3)
    key = jax.random.key(3)
    hard = jax.jit(lambda p, k, c: soar_maze.hard_mazes(config, student, p, k, named, candidates=c))(
        params, key, candidates)
    # the same rule by hand, from the same attempts
    played = evaluation.play_levels(student.network, env, params, key, candidates, num_attempts=3,
                                    max_steps=config.eval_max_steps, env_params=student.env_params)
    solvable = np.asarray(jax.vmap(env.shortest_path)(candidates)) >= 0
    expect = [i for i in range(32) if i >= 8 and solvable[i] and not np.asarray(played.solved)[i].any()]
    assert 0 < len(expect) < 24 and int(hard.qualified) == len(expect) == int(hard.count)
    np.testing.assert_array_equal(np.asarray(hard.levels.wall_map)[:len(expect)],
                                  np.asarray(candidates.wall_map)[expect])
    assert not np.asarray(soar_maze._in_set(jax.tree.map(lambda x: x[:len(expect)], hard.levels), named)).any()
    assert np.asarray(soar_maze._in_set(named, named)).all()


def test_vmapped_inner_students_equal_one_at_a_time_runs():
    env = envs.make("maze")
    student = common.make_student(CONFIG, env, None, CONFIG.inner_updates)
    inner = soar_maze.make_inner(CONFIG, student)
    params = common.init_params(student, jax.random.key(0))
    levels = jax.vmap(common.level_generator(env, 10))(jax.random.split(jax.random.key(1), 3 * N))
    levels = jax.tree.map(lambda x: x.reshape((3, N) + x.shape[1:]), levels)
    keys = jax.random.split(jax.random.key(2), 3)
    together, (episodes, _, finite) = jax.jit(inner, compiler_options=OPT0)(keys, params, levels)
    one = jax.jit(inner.one, compiler_options=OPT0)
    moved = []
    for c in range(3):
        alone, (eps_c, _, _) = one(keys[c], params, jax.tree.map(lambda x: x[c], levels))
        mine = jax.tree.map(lambda x: x[c], together)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(mine)):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(episodes.episode_return)[c], np.asarray(eps_c.episode_return),
                                   rtol=1e-5, atol=1e-6)
        moved.append(any(not np.array_equal(np.asarray(a), np.asarray(p))
                         for a, p in zip(jax.tree.leaves(alone), jax.tree.leaves(params))))
    assert all(moved) and bool(np.all(finite))  # every copy trained


# ------------------------------------------------------------------------------------------------ the run
@dataclasses.dataclass
class Reference:
    train: object
    initial: object
    result: object
    run_dir: object
    programs: object


def use_programs(monkeypatch, reference: Reference) -> None:
    """Runners started by a test (or by the CLI) use the reference runner's compiled programs."""
    run_helpers.use_programs(monkeypatch, reference.programs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """One uninterrupted 2-seed run through the runner, a checkpoint after every outer step (all kept)."""
    train = soar_maze.make_train(CONFIG, envs.make("maze"))
    run_dir = tmp_path_factory.mktemp("soar_maze") / "ref"
    desc = run_description(algo="soar_maze", env="maze", config=CONFIG, seed=0, num_seeds=SEEDS,
                           num_updates=UPDATES)
    opts = RunOptions(seeds=SEEDS, checkpoint_every=1, keep_checkpoints=UPDATES, progress=False)
    runner = Runner(train, opts, description=desc, run_dir=run_dir, compiler_options=OPT0)
    result = runner.run()
    programs = runner.programs()
    return Reference(train, programs.init(seed_keys(0, SEEDS)), result, run_dir, programs)


def test_tiny_run_through_the_runner(reference):
    m, states = reference.result.metrics, reference.result.states
    assert reference.train.num_updates == UPDATES
    per_step = G * R * INNER * N * T
    np.testing.assert_array_equal(m["env_steps"][:, 0], np.arange(1, UPDATES + 1) * per_step)
    measure0 = CONFIG.hard_candidates * CONFIG.hard_attempts * T  # the hard mazes, in init
    np.testing.assert_array_equal(m["measure_steps"][:, 0],
                                  measure0 + np.arange(1, UPDATES + 1) * (G * R + 1) * 6 * 1 * T)
    assert np.all(np.asarray(states.nonfinite_update) == -1)
    for key, v in m.items():
        if key != "moving_average":
            assert np.all(np.isfinite(v)), key
    # the grounded reward is the copies' mean gain over the baseline on the same sample
    np.testing.assert_allclose(m["reward_mean"], m["student_hard_solved"] - m["baseline_hard_solved"], atol=1e-6)
    np.testing.assert_array_equal(m["reward_mean"], m["grounded_mean"])
    # τ = -1 with a window of 1: every step promotes, so the baseline is a trained copy
    assert np.all(m["promoted"]) and np.all(m["promotions"][-1] == UPDATES)
    first, last = reference.initial, states
    for s in range(SEEDS):
        for tree in ("params", "adversary"):
            a, b = getattr(first, tree), getattr(last, tree)
            assert any(not np.array_equal(np.asarray(x)[s], np.asarray(y)[s])
                       for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))), (tree, s)
    assert np.all(np.asarray(states.hard.count) > 0)
    assert np.all(m["level.mean_walls"] <= CONFIG.adversary.n_walls)
    np.testing.assert_array_equal(m["eval_valid"], np.repeat(np.array([0, 1, 1], bool)[:, None], SEEDS, 1))


def test_resumed_run_equals_uninterrupted(reference, tmp_path, monkeypatch):
    cut = tmp_path / "cut"
    shutil.copytree(reference.run_dir, cut)
    for step in range(2, UPDATES + 1):
        shutil.rmtree(cut / "checkpoints" / str(step))
    desc = run_description(algo="soar_maze", env="maze", config=CONFIG, seed=0, num_seeds=SEEDS,
                           num_updates=UPDATES)
    opts = RunOptions(seeds=SEEDS, checkpoint_every=1, keep_checkpoints=UPDATES, progress=False, resume=True)
    use_programs(monkeypatch, reference)
    resumed = Runner(reference.train, opts, description=desc, run_dir=cut).run()
    assert resumed.summary["resumed_from_update"] == 1
    assert_bitwise(resumed.states, reference.result.states)  # baseline, teacher, Adam, hard mazes, window, RNG
    assert metrics_lib.read_jsonl(cut / "metrics.jsonl") == metrics_lib.read_jsonl(reference.run_dir / "metrics.jsonl")


def test_cli_trains_soar_maze_and_evaluates_the_baseline(reference, tmp_path, capsys, monkeypatch):
    assert algos.get("soar-maze") is soar_maze
    use_programs(monkeypatch, reference)
    run_dir = tmp_path / "sm"
    code = cli.main(["train", "soar-maze", "--env", "maze", "--seeds", str(SEEDS), *cli.flags_for(CONFIG),
                     "--checkpoint-every", "1", "--no-progress", "--run-dir", str(run_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert metrics_lib.read_jsonl(run_dir / "metrics.jsonl") == metrics_lib.read_jsonl(
        reference.run_dir / "metrics.jsonl")
    code = cli.main(["eval", str(run_dir), "--episodes", "2", "--max-steps", "8", "--levels", "Labyrinth"])
    assert code == 0, capsys.readouterr().out
    report = json.loads((run_dir / "eval-maze.json").read_text())
    assert [row["level"] for row in report["levels"]] == ["Labyrinth"]


# ------------------------------------------------------------------------------------------------ config errors
@pytest.mark.parametrize("config, field", [
    (CONFIG.replace(teacher_reward="regret"), "teacher_reward"),
    (CONFIG.replace(num_batches=1), "num_batches"),
    (CONFIG.replace(hard_size=100), "hard_size"),
    (CONFIG.replace(ppo=CONFIG.ppo.replace(total_timesteps=10)), "total_timesteps"),
    (CONFIG.replace(adversary=CONFIG.adversary.replace(ppo=CONFIG.adversary.ppo.replace(num_minibatches=5))),
     "adversary.num_minibatches"),
    (CONFIG.replace(promotion_threshold=float("nan")), "promotion_threshold"),
])
def test_config_errors_name_the_field(config, field):
    with pytest.raises(ConfigError) as e:
        soar_maze.make_train(config, envs.make("maze"))
    assert e.value.field == field and "soar_maze.Config" in str(e.value)


@pytest.mark.parametrize("algo", ["soar-maze", "paired"])
def test_cli_refuses_a_token_task_in_one_line(algo, capsys):
    code = cli.main(["train", algo, "--env", "addition", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Config.env" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
