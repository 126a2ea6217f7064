"""PAIRED: the maze editor (contract, placement rules, noise), the regret, the adversary's policy gradient, and
a tiny three-agent run end to end over 2 seeds through the runner (resume, CLI, `jaxrl-self eval`).

The tiny PAIRED run goes through the runner once (XLA optimisation level 0, a checkpoint after every update);
the resumed run and the CLI run are handed the programs that runner compiled (after checking they were asked for
the same run), so the three-agent update is compiled once.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import algos, cli, envs, rl
from jaxrl_self.algos import ppo
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.curricula import paired
from jaxrl_self.curricula.common import student_ppo
from jaxrl_self.envs.maze import MazeEditor
from jaxrl_self.run import metrics as metrics_lib
from jaxrl_self.run.runner import RunOptions, Runner, run_description, seed_keys
import run_helpers
from treecheck import assert_bitwise

# compile fast, run slow: XLA:CPU without its fusion emitters compiles these programs about 3x faster
OPT0 = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
SEEDS, N, T, UPDATES = 2, 4, 16, 4
CONFIG = paired.Config(
    ppo=student_ppo(total_timesteps=2 * N * T * UPDATES, num_envs=N, num_steps=T, lstm_features=8, update_epochs=1),
    episode_steps=8, eval_every=2, eval_attempts=1, eval_procedural=0, eval_max_steps=8,
    adversary=paired.AdversaryConfig(n_walls=4, noise_dim=3, conv_features=2,
                                     ppo=paired.adversary_ppo(lstm_features=8, update_epochs=1)))


def jit0(f, **kw):
    return jax.jit(f, compiler_options=OPT0, **kw)


@pytest.fixture(autouse=True)
def _fast_runner(monkeypatch):
    """Runners (the CLI's included) compile at XLA optimisation level 0, as the module-scoped reference run does
    explicitly (a module fixture is set up before this one): the same program, so bitwise the same results."""
    monkeypatch.setattr(Runner, "default_compiler_options", OPT0)


# ------------------------------------------------------------------------------------------------ the editor
def test_editor_passes_check_env():
    report = envs.check_env(MazeEditor(n_walls=10, noise_dim=5))
    assert report["episodes_ended"] == 8 * (64 // 12) and report["time_checked"]


class Stepper:
    """Drives an editor with chosen actions through a jitted ``step_env`` (no auto-reset)."""

    def __init__(self, editor: MazeEditor):
        self.editor = editor
        self.step = jit0(editor.step_env)

    def run(self, actions, key=jax.random.key(0)):
        obs, state = self.editor.reset(key)
        out = [(obs, state, False)]
        for i, a in enumerate(actions):
            obs, state, reward, term, trunc, info = self.step(jax.random.fold_in(key, i), state, jnp.int32(a),
                                                              self.editor.default_params)
            assert float(reward) == 0.0 and not bool(trunc)
            assert_bitwise(info["level"], state.level)
            out.append((obs, state, bool(term)))
        return out


def _walls(h, w, cells):
    m = np.zeros((h, w), bool)
    for c in cells:
        m[c // w, c % w] = True
    return m


def _check_obs(editor, obs, state):
    lv = state.level
    img = np.asarray(obs["image"])
    np.testing.assert_array_equal(img[..., 0], np.asarray(lv.wall_map, np.float32))
    for ch, pos in ((1, lv.goal_pos), (2, lv.agent_pos)):
        expect = np.zeros((editor.height, editor.width), np.float32)
        x, y = (int(v) for v in pos)
        if x >= 0:
            expect[y, x] = 1.0
        np.testing.assert_array_equal(img[..., ch], expect)
    assert int(obs["time"]) == int(state.time)
    np.testing.assert_array_equal(obs["noise"], state.noise)


def test_editor_goal_first_placement_rules():
    editor = MazeEditor(height=5, width=5, n_walls=5, noise_dim=2)
    s = Stepper(editor)
    # goal at (1, 1); agent at (3, 2); walls: (0, 0), again (0, 0), on the goal, on the agent, at (4, 4)
    steps = s.run([6, 13, 0, 0, 6, 13, 24])
    expected_walls = [[], [], [], [0], [0], [0], [0], [0, 24]]
    for t, (obs, state, term) in enumerate(steps):
        assert int(state.time) == t
        assert term == (t == editor.n_steps)  # the design ends after exactly n_walls + 2 steps
        np.testing.assert_array_equal(state.level.wall_map, _walls(5, 5, expected_walls[t]))
        _check_obs(editor, obs, state)
    assert steps[0][1].level.goal_pos.tolist() == [-1, -1] and steps[1][1].level.agent_pos.tolist() == [-1, -1]
    level = editor.get_level(steps[-1][1])
    assert level.goal_pos.tolist() == [1, 1] and level.agent_pos.tolist() == [3, 2]
    assert int(level.agent_dir) == int(steps[0][1].level.agent_dir)  # drawn at reset, never changed
    assert envs.maze.level_is_valid(level)
    arrow = ">v<^"[int(level.agent_dir)]
    assert envs.maze.level_to_str(level) == f"#....\n.G...\n...{arrow}.\n.....\n....#"


def test_editor_agent_on_the_goal_goes_to_a_random_free_cell():
    editor = MazeEditor(height=3, width=3, n_walls=1, noise_dim=0)
    step = jit0(jax.vmap(lambda k: _goal_then_agent(editor, k, 4, 4)))
    agents = np.asarray(step(jax.random.split(jax.random.key(1), 400)))
    cells = agents[:, 1] * 3 + agents[:, 0]
    assert not np.any(cells == 4)  # never on the goal
    counts = np.bincount(cells, minlength=9)
    assert np.all(counts[[0, 1, 2, 3, 5, 6, 7, 8]] > 20)  # all 8 other cells, roughly uniformly (50 expected)


def _goal_then_agent(editor, key, goal_cell, agent_cell):
    _, state = editor.reset_env(key, editor.default_params)
    _, state, *_ = editor.step_env(key, state, jnp.int32(goal_cell), editor.default_params)
    _, state, *_ = editor.step_env(jax.random.fold_in(key, 1), state, jnp.int32(agent_cell), editor.default_params)
    return state.level.agent_pos


def test_editor_walls_first_placement_rules():
    editor = MazeEditor(height=4, width=4, n_walls=3, noise_dim=0, order="walls_first")
    s = Stepper(editor)
    # walls at 0, 1, 1 (a repeat: still one wall); the goal onto the wall at 1 (removes it); the agent onto the
    # wall at 0 (removes it)
    steps = s.run([0, 1, 1, 1, 0])
    expected = [[], [0], [0, 1], [0, 1], [0], []]
    for t, (obs, state, term) in enumerate(steps):
        np.testing.assert_array_equal(state.level.wall_map, _walls(4, 4, expected[t]))
        assert term == (t == 5)
        _check_obs(editor, obs, state)
    assert steps[3][1].level.goal_pos.tolist() == [-1, -1]
    assert steps[4][1].level.goal_pos.tolist() == [1, 0] and steps[5][1].level.agent_pos.tolist() == [0, 0]
    # the agent onto the goal with walls on every other cell: it goes to one of them, whose wall is removed
    s2 = Stepper(MazeEditor(height=2, width=2, n_walls=3, noise_dim=0, order="walls_first"))
    for seed in range(3):
        last = s2.run([0, 1, 3, 2, 2], key=jax.random.key(seed))[-1][1].level
        x, y = (int(v) for v in last.agent_pos)
        assert last.goal_pos.tolist() == [0, 1] and (x, y) != (0, 1)
        assert int(np.sum(last.wall_map)) == 2 and not bool(last.wall_map[y, x])


def test_editor_noise_is_random_per_design():
    editor = MazeEditor(noise_dim=50)
    reset = jit0(jax.vmap(editor.reset))
    obs, state = reset(jax.random.split(jax.random.key(0), 256))
    z = np.asarray(obs["noise"])
    assert z.shape == (256, 50) and z.dtype == np.float32
    assert np.all((z >= 0) & (z < 1)) and np.all(z.std(axis=1) > 0.1)  # non-zero, not constant
    assert len({row.tobytes() for row in z}) == 256  # a different vector for every key
    assert abs(z.mean() - 0.5) < 0.01 and abs(z.var() - 1 / 12) < 0.005  # uniform on [0, 1)
    # kept for the whole design (noise_per_step=False), redrawn at every step with noise_per_step=True
    for per_step in (False, True):
        ed = MazeEditor(n_walls=2, noise_dim=8, noise_per_step=per_step)
        traj = Stepper(ed).run([0, 1, 2], key=jax.random.key(7))
        zs = np.stack([np.asarray(o["noise"]) for o, _, _ in traj])
        assert (len({row.tobytes() for row in zs}) == 1) != per_step


def test_editor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="order"):
        MazeEditor(order="agent_first")
    with pytest.raises(ValueError, match="noise_dim"):
        MazeEditor(noise_dim=-1)


# ------------------------------------------------------------------------------------------------ regret
def _episode_returns(rewards, dones):
    """Plain-Python undiscounted returns of the completed episodes of one environment."""
    out, run = [], 0.0
    for r, d in zip(rewards, dones):
        run += r
        if d:
            out.append(run)
            run = 0.0
    return out


def regret_reference(pro_r, pro_d, ant_r, ant_d, clip):
    res = []
    for i in range(pro_r.shape[1]):
        p, a = _episode_returns(pro_r[:, i], pro_d[:, i]), _episode_returns(ant_r[:, i], ant_d[:, i])
        r = (max(a) if a else 0.0) - (float(np.mean(p)) if p else 0.0)
        res.append(max(r, 0.0) if clip else r)
    return np.array(res, np.float32)


def test_regret_on_a_hand_built_example():
    f32 = np.float32
    # 4 levels x 6 steps. Protagonist: level 0 episodes of return 0.5 and 0.7 (mean 0.6); level 1 one time-out
    # (0); level 2 no completed episode (counts as 0); level 3 one episode of 0.9.
    pro_r = np.array([[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0, 0, 0.9], [0, 0, 0.4, 0], [0.7, 0, 0, 0], [0, 0, 0, 0]], f32)
    pro_d = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
    # Antagonist: level 0 episodes 0.2 then 0.9 (max 0.9); level 1 one of 0.8; level 2 0.3 and an unfinished one
    # worth 0.95 (ignored); level 3 one of 0.6 (below the protagonist's 0.9).
    ant_r = np.array([[0.2, 0, 0, 0], [0, 0, 0.3, 0], [0, 0.8, 0, 0], [0.9, 0, 0, 0.6], [0, 0, 0, 0], [0, 0, .95, 0]],
                     f32)
    ant_d = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]], bool)
    pro, ant = paired.episodic_returns(pro_r, pro_d), paired.episodic_returns(ant_r, ant_d)
    np.testing.assert_allclose(paired.regret(pro, ant, clip=True), [0.3, 0.8, 0.3, 0.0], atol=1e-6)
    np.testing.assert_allclose(paired.regret(pro, ant, clip=False), [0.3, 0.8, 0.3, -0.3], atol=1e-6)
    for clip in (True, False):
        np.testing.assert_allclose(paired.regret(pro, ant, clip), regret_reference(pro_r, pro_d, ant_r, ant_d, clip),
                                   atol=1e-6)


def test_regret_matches_python_on_random_rollouts():
    rng = np.random.default_rng(0)
    shape = (40, 16)
    def rewards():
        return (rng.random(shape) < 0.1) * rng.random(shape).astype(np.float32)

    pro_r, pro_d, ant_r, ant_d = rewards(), rng.random(shape) < 0.15, rewards(), rng.random(shape) < 0.15
    pro, ant = paired.episodic_returns(pro_r, pro_d), paired.episodic_returns(ant_r, ant_d)
    for clip in (True, False):
        np.testing.assert_allclose(paired.regret(pro, ant, clip), regret_reference(pro_r, pro_d, ant_r, ant_d, clip),
                                   rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ the adversary
def test_adversary_policy_gradient_follows_the_regret():
    """The regret reaches the adversary only as the reward of its last design step; one PPO step must then make
    the designs that earned regret more likely. Same design rollout, regret given to design 0 or to design 3."""
    adversary = CONFIG.adversary.replace(ppo=CONFIG.adversary.ppo.replace(ent_coef=0.0, vf_coef=0.0,
                                                                          learning_rate=1e-3))
    cfg = CONFIG.replace(adversary=adversary)
    editor = paired.make_editor(cfg.adversary, envs.make("maze"))
    net = paired.make_adversary_network(cfg.adversary, editor)
    adv_cfg = cfg.adversary_ppo()
    tx = ppo.make_optimizer(adv_cfg, 1)
    p_ed = editor.default_params

    def run(key, regrets):
        k_init, k_reset, k_roll, k_learn = jax.random.split(key, 4)
        obs, _ = editor.reset(k_reset, p_ed)
        params = net.init(k_init, net.initial_carry(1), jax.tree.map(lambda o: o[None, None], obs),
                          jnp.ones((1, 1), bool))
        start = rl.rollout.reset(k_reset, editor, p_ed, N, net.initial_carry(N))
        _, design = ppo.collect(k_roll, net, params, editor, p_ed, start, cfg.adversary.design_steps)

        def after_update(level_regret):
            batch = paired.adversary_batch(adv_cfg, design, level_regret)
            rewarded = paired.adversary_rewards(design, level_regret)
            # the advantages PPO's generic value pass gives (V(final_obs) of the terminal step is unused)
            v, nv = ppo.rollout_values(net, params, rewarded)
            generic = ppo.compute_advantages(adv_cfg, rewarded, v, nv)[0]
            close = jnp.allclose(batch.advantage, generic, atol=1e-5)
            new, _, _ = ppo.learn(k_learn, adv_cfg, net, tx, params, tx.init(params), batch, net.initial_carry(N))
            _, logits, _ = net.apply(new, net.initial_carry(N), design.obs, design.first)
            logp = jnp.take_along_axis(jax.nn.log_softmax(logits), design.action[..., None], -1)[..., 0]
            # the change of each design's log-likelihood; the rewards and value targets the adversary learned from
            return jnp.sum(logp - design.extras["logp"], axis=0), rewarded.reward, batch.target, close

        return design, jax.vmap(after_update)(regrets)

    regrets = jnp.array([[1.0, 0, 0, 0], [0, 0, 0, 1.0]])
    design, (delta, rewards, targets, close) = jit0(run)(jax.random.key(3), regrets)
    assert np.all(close)
    np.testing.assert_allclose(np.asarray(targets)[:, -1], regrets, atol=1e-6)  # terminal step: target = regret
    delta = np.asarray(delta)
    assert delta[0, 0] > delta[1, 0] and delta[1, 3] > delta[0, 3]
    assert delta[0, 0] > 0 and delta[1, 3] > 0
    r = np.asarray(rewards)  # the regret sits on the last design step only, which ends every design
    np.testing.assert_array_equal(r[:, -1], regrets)
    assert not r[:, :-1].any()
    assert np.all(np.asarray(design.terminated)[-1]) and not np.asarray(design.done)[:-1].any()
    # every design episode saw its own, non-zero noise vector, constant over the design
    z = np.asarray(design.obs["noise"])
    assert np.all(z.std(axis=-1) > 0) and len({row.tobytes() for row in z[0]}) == N
    np.testing.assert_array_equal(z, np.broadcast_to(z[0], z.shape))


# ------------------------------------------------------------------------------------------------ a tiny run
@dataclasses.dataclass
class Reference:
    train: object
    initial: object  # batched RunState before the first update
    result: object  # the runner's RunResult (final states, metrics (updates, seeds))
    run_dir: object
    programs: object  # the runner's CompiledPrograms


def use_programs(monkeypatch, reference: Reference) -> None:
    """Runners started by a test (or by the CLI) use the reference runner's compiled programs."""
    run_helpers.use_programs(monkeypatch, reference.programs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """One uninterrupted run over 2 seeds through the runner, a checkpoint after every update (all kept)."""
    train = paired.make_train(CONFIG, envs.make("maze"))
    run_dir = tmp_path_factory.mktemp("paired") / "ref"
    desc = run_description(algo="paired", env="maze", config=CONFIG, seed=0, num_seeds=SEEDS, num_updates=UPDATES)
    opts = RunOptions(seeds=SEEDS, checkpoint_every=1, keep_checkpoints=UPDATES, progress=False)
    runner = Runner(train, opts, description=desc, run_dir=run_dir, compiler_options=OPT0)
    result = runner.run()
    programs = runner.programs()  # already compiled by run(): returned, not compiled again
    initial = programs.init(seed_keys(0, SEEDS))
    return Reference(train, initial, result, run_dir, programs)


def test_tiny_run_end_to_end_over_two_seeds(reference):
    m, states = reference.result.metrics, reference.result.states
    assert reference.train.num_updates == UPDATES
    np.testing.assert_array_equal(m["env_steps"][:, 0], np.arange(1, UPDATES + 1) * 2 * N * T)
    assert np.all(np.asarray(states.nonfinite_update) == -1)
    for key, v in m.items():
        assert np.all(np.isfinite(v)), key
    np.testing.assert_array_equal(m["eval_valid"], np.repeat(np.array([0, 1, 0, 1], bool)[:, None], SEEDS, 1))
    assert np.all(m["regret"] >= 0) and np.all(m["regret_max"] >= m["regret"])
    assert np.all(m["regret"] <= m["antagonist_max_return"] + 1e-6)  # protagonist means are >= 0 in the maze
    assert np.all(m["level.mean_walls"] <= CONFIG.adversary.n_walls)
    assert np.all(m["episodes_finished"] >= N * (T // CONFIG.episode_steps))  # every level completes episodes
    np.testing.assert_allclose(m["adversary.entropy"], np.log(13 * 13), rtol=0.01)  # near uniform at the start
    assert not np.array_equal(m["loss"][:, 0], m["loss"][:, 1])  # the seeds are different runs


def test_all_three_agents_learn(reference):
    first, last = reference.initial, reference.result.states
    for agent in ("protagonist", "antagonist", "adversary"):
        a, b = getattr(first.params, agent), getattr(last.params, agent)
        for s in range(SEEDS):
            changed = [not np.array_equal(np.asarray(x)[s], np.asarray(y)[s])
                       for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
            assert all(changed), (agent, s)  # every parameter array moved, the adversary's actor head included
    # protagonist and antagonist start from different initialisations and stay different agents
    assert not np.array_equal(np.asarray(jax.tree.leaves(last.params.protagonist)[0]),
                              np.asarray(jax.tree.leaves(last.params.antagonist)[0]))


def test_resumed_run_equals_uninterrupted(reference, tmp_path, monkeypatch):
    """A run stopped after its checkpoint at update 2 (later checkpoints and metric rows never made it) and
    resumed by a fresh runner ends bitwise where the uninterrupted run ended."""
    cut = tmp_path / "cut"
    shutil.copytree(reference.run_dir, cut)
    for step in range(3, UPDATES + 1):
        shutil.rmtree(cut / "checkpoints" / str(step))
    desc = run_description(algo="paired", env="maze", config=CONFIG, seed=0, num_seeds=SEEDS, num_updates=UPDATES)
    opts = RunOptions(seeds=SEEDS, checkpoint_every=1, keep_checkpoints=UPDATES, progress=False, resume=True)
    use_programs(monkeypatch, reference)
    resumed = Runner(reference.train, opts, description=desc, run_dir=cut).run()
    assert resumed.summary["resumed_from_update"] == 2
    assert_bitwise(resumed.states, reference.result.states)  # three agents' parameters and Adam states, RNG...
    assert metrics_lib.read_jsonl(cut / "metrics.jsonl") == metrics_lib.read_jsonl(reference.run_dir / "metrics.jsonl")


def test_cli_trains_paired_and_evaluates_the_protagonist(reference, tmp_path, capsys, monkeypatch):
    assert algos.get("paired") is paired
    use_programs(monkeypatch, reference)
    flags = cli.flags_for(CONFIG)
    assert "--adversary.n-walls" in flags and "--lstm-features" in flags and "--adversary.lstm-features" in flags
    run_dir = tmp_path / "paired"
    code = cli.main(["train", "paired", "--env", "maze", "--seeds", str(SEEDS), *flags, "--checkpoint-every", "1",
                     "--no-progress", "--run-dir", str(run_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    for f in ("metrics.jsonl", "summary.json", "solved_rate.png", "heldout.json"):
        assert (run_dir / f).exists(), f
    assert metrics_lib.read_jsonl(run_dir / "metrics.jsonl") == metrics_lib.read_jsonl(
        reference.run_dir / "metrics.jsonl")  # the same run as from Python
    code = cli.main(["eval", str(run_dir), "--episodes", "2", "--max-steps", "8", "--levels", "Labyrinth,SixteenRooms"])
    assert code == 0, capsys.readouterr().out
    report = json.loads((run_dir / "eval-maze.json").read_text())
    assert [row["level"] for row in report["levels"]] == ["Labyrinth", "SixteenRooms"]


# ------------------------------------------------------------------------------------------------ config errors
def _adversary(**changes):
    return CONFIG.replace(adversary=CONFIG.adversary.replace(**changes))


def _adversary_ppo(**changes):
    return _adversary(ppo=CONFIG.adversary.ppo.replace(**changes))


@pytest.mark.parametrize("config, field", [
    (_adversary(editor_order="agent_first"), "adversary.editor_order"),
    (_adversary(n_walls=168), "adversary.n_walls"),
    (_adversary(noise_dim=-2), "adversary.noise_dim"),
    (_adversary_ppo(num_minibatches=3), "adversary.num_minibatches"),
    (_adversary_ppo(learning_rate=-1.0), "adversary.learning_rate"),
    (_adversary_ppo(gamma=1.5), "adversary.gamma"),
    (_adversary_ppo(num_envs=8), "adversary.num_envs"),  # the curriculum sets the adversary's run size
    (CONFIG.replace(n_walls=20), "n_walls"),  # no random levels in PAIRED
    (CONFIG.replace(ppo=CONFIG.ppo.replace(total_timesteps=N * T)), "total_timesteps"),
    (CONFIG.replace(clip_regret="yes"), "clip_regret"),
])
def test_config_errors_name_the_field(config, field):
    with pytest.raises(ConfigError) as e:
        paired.make_train(config, envs.make("maze"))
    assert e.value.field == field and "paired.Config" in str(e.value)


def test_needs_a_maze_like_level_env():
    with pytest.raises(ConfigError, match="env"):
        paired.make_train(CONFIG, envs.make("cartpole"))
