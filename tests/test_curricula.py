"""Curricula on the maze: DR, PLR, robust PLR, ACCEL, parallel PLR / ACCEL, held-out evaluation, resume.

Each compiled curriculum (DR, PLR, ACCEL, parallel ACCEL) is compiled once (tiny config, 2 seeds, XLA optimisation
level 0) as the runner's one-update chunk program; the tests step it update by update to look at every intermediate
state, and hand the same compiled programs to the runners they start (end to end, interrupted and resumed, the
CLI), so nothing is compiled twice. Robust PLR and parallel PLR are PLR and parallel ACCEL with a different default
flag (the same functions): they are traced, not compiled.
"""
from __future__ import annotations

import collections
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import algos, cli, envs
from jaxrl_self.core.algorithm import SEED_AXIS, uniform_over_seeds
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.curricula import common, evaluation, plr
from jaxrl_self.envs.maze import Level, named_level
from jaxrl_self.run import checkpoint as ckpt_lib
from jaxrl_self.run import metrics as metrics_lib
from jaxrl_self.run.runner import CompiledPrograms, RunOptions, Runner, make_chunk_fn, run_description, seed_keys
from treecheck import assert_bitwise

# compile fast, run slow: XLA:CPU without its fusion emitters compiles these programs about 3x faster
OPT0 = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
SEEDS = 2
N, T, UPDATES = 4, 16, 8
PPO = dict(total_timesteps=N * T * UPDATES, num_envs=N, num_steps=T, lstm_features=16, update_epochs=1)
STUDENT = dict(               episode_steps=8, eval_every=3, eval_attempts=2, eval_procedural=1, eval_max_steps=24)
SAMPLER = dict(capacity=48, minimum_fill_ratio=0.15)
CURRICULA = ("dr", "plr", "accel", "parallel_accel")  # compiled and run
FLAG_VARIANTS = {"robust_plr": "plr", "parallel_plr": "parallel_accel"}  # same code, another default flag


NO_EVAL = ("dr", "parallel_plr", "parallel_accel")  # eval_every=-1: the evaluation is tested with PLR and ACCEL


def tiny_config(name: str):
    module = algos.get(name)
    defaults = module.Config()
    extra = {} if name == "dr" else dict(sampler=defaults.sampler.replace(**SAMPLER), num_edits=3)
    student = common.student_ppo(**PPO)
    if name.startswith("parallel"):  # one cycle plays 2-3 slices: keep UPDATES updates
        student = student.replace(total_timesteps=N * T * UPDATES * (3 if name == "parallel_accel" else 2))
    if name in NO_EVAL:
        extra = {**extra, "eval_every": -1}
    return module, module.Config(ppo=student, **{**STUDENT, **extra})


@dataclasses.dataclass
class Stepped:
    """A tiny run stepped one update at a time with the runner's chunk program."""

    module: object
    config: object
    train: object
    states: list  # batched RunState before update 0, after update 0, ...
    rows: list  # batched Metrics of each update (leading axis: seeds)
    init: object  # the compiled programs: jax.vmap(train.init) over the seed keys
    chunk: object  # and the runner's one-update chunk program (checkpoint_every=1, no progress callback)


_RUNS: dict[str, Stepped] = {}


def stepped(name: str) -> Stepped:
    if name not in _RUNS:
        module, config = tiny_config(name)
        train = module.make_train(config, envs.make("maze"))
        keys = seed_keys(0, SEEDS)
        init = jax.jit(jax.vmap(train.init), compiler_options=OPT0).lower(keys).compile()
        state = init(keys)
        chunk = jax.jit(make_chunk_fn(train, 1), compiler_options=OPT0).lower(
            state, jax.ShapeDtypeStruct((), jnp.int32)).compile()
        states, rows = [state], []
        for _ in range(train.num_updates):
            state, m = chunk(state, np.int32(1))
            states.append(state)
            rows.append(jax.tree.map(lambda x: x[0], m))
        _RUNS[name] = Stepped(module, config, train, states, rows, init, chunk)
    return _RUNS[name]


def runner(run: Stepped, options: RunOptions, **kwargs) -> Runner:
    """A :class:`Runner` for ``run.train`` that uses the programs compiled by :func:`stepped` (the ones it would
    compile itself: one-update chunks, same compiler options). ``Runner.compile`` skips programs it already has."""
    return Runner(run.train, options, programs=programs_of(run, options.seeds), **kwargs)


def programs_of(run: Stepped, num_seeds: int) -> CompiledPrograms:
    """The stepped run's programs, described for a runner (which checks config, chunking and seed count)."""
    return CompiledPrograms(init=run.init, chunk=run.chunk, chunk_updates=1, masked=False, num_seeds=num_seeds,
                            config=run.config)


def expected_rows(run: Stepped) -> list[dict]:
    """The rows a runner writes to metrics.jsonl for the stepped run (one-update chunks), through JSON."""
    rows = []
    for u, row in enumerate(run.rows):
        flat = metrics_lib.flatten_metrics(jax.tree.map(lambda x: np.asarray(x)[None], row))
        rows += [json.loads(json.dumps(r)) for r in metrics_lib.chunk_rows(flat, u)]
    return rows


@pytest.fixture(autouse=True)
def _fast_runner(monkeypatch):
    monkeypatch.setattr(Runner, "default_compiler_options", OPT0)


def seed(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def bfs(level) -> int:
    """Plain-Python shortest path (moves) from the agent to the goal, -1 if none."""
    wall = np.asarray(level.wall_map)
    h, w = wall.shape
    start, goal = tuple(int(v) for v in level.agent_pos), tuple(int(v) for v in level.goal_pos)
    dist = {start: 0}
    queue = collections.deque([start])
    while queue:
        x, y = queue.popleft()
        if (x, y) == goal:
            return dist[(x, y)]
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nx, ny = x + dx, y + dy
            if 0 <= nx < w and 0 <= ny < h and not wall[ny, nx] and (nx, ny) not in dist:
                dist[(nx, ny)] = dist[(x, y)] + 1
                queue.append((nx, ny))
    return -1


def level_at(levels, i) -> Level:
    return jax.tree.map(lambda x: np.asarray(x)[i], levels)


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize("name", CURRICULA)
def test_every_curriculum_runs_end_to_end_vmapped(name):
    run = stepped(name)
    opts = RunOptions(seeds=SEEDS, checkpoint_every=1, keep_checkpoints=0, progress=False)
    result = runner(run, opts, run_dir=False).run()
    assert_bitwise(result.states, run.states[-1])
    m = result.metrics
    n_slices = {"parallel_plr": 2, "parallel_accel": 3}.get(name, 1)
    assert run.train.num_updates == UPDATES
    np.testing.assert_array_equal(m["env_steps"][:, 0], np.arange(1, UPDATES + 1) * N * T * n_slices)
    assert np.all(np.asarray(result.states.nonfinite_update) == -1)
    for key, v in m.items():
        assert np.all(np.isfinite(v)), key
    # held-out evaluation after updates 3, 6 and the last (8), identical flag for both seeds; never with eval_every=-1
    expect = np.zeros(UPDATES, bool)
    if name not in NO_EVAL:
        expect[[2, 5, 7]] = True
    np.testing.assert_array_equal(m["eval_valid"], np.repeat(expect[:, None], SEEDS, 1))
    named = [k for k in m if k.startswith("eval.solved_rate.")]
    assert len(named) == 8 + 2  # the named mazes + PerfectMaze + FourRooms
    assert np.all(m["eval.solved_rate.Labyrinth"][~expect] == 0)
    assert np.any(m["param_change"] > 0)


@pytest.mark.parametrize("name", sorted(FLAG_VARIANTS))
def test_flag_variants_are_the_same_loop_with_another_default(name):
    """robust_plr = plr without gradients on new levels; parallel_plr = parallel_accel without the mutated slice:
    the same make_train, state and metrics; the update traces under the seed vmap (shapes only, no compile)."""
    module, base = algos.get(name), algos.get(FLAG_VARIANTS[name])
    assert module.make_train is base.make_train and module.RunState is base.RunState
    assert module.Metrics is base.Metrics and module.NAME == name
    _, config = tiny_config(name)
    _, base_config = tiny_config(FLAG_VARIANTS[name])
    differ = {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(base_config, f.name)}
    assert differ == ({"exploratory_grad_updates"} if name == "robust_plr" else {"use_accel", "ppo"})
    if name == "parallel_plr":  # 2 slices instead of 3: the same updates take fewer env steps
        assert config.ppo == base_config.ppo.replace(total_timesteps=base_config.ppo.total_timesteps * 2 // 3)
    assert config.exploratory_grad_updates is False and config.use_accel is False
    train = module.make_train(config, envs.make("maze"))
    assert train.num_updates == UPDATES
    states = jax.eval_shape(jax.vmap(train.init), seed_keys(0, SEEDS))
    new_states, row = jax.eval_shape(jax.vmap(train.update, axis_name=SEED_AXIS), states)
    assert jax.tree.structure(new_states) == jax.tree.structure(states)
    assert row.branch.shape == (SEEDS,) and row.eval.solved_rate["Labyrinth"].shape == (SEEDS,)
    n_levels = N * (2 if name == "parallel_plr" else 1)
    assert states.levels.wall_map.shape == (SEEDS, n_levels, 13, 13)


def test_configs_reject_bad_values_before_compiling():
    env = envs.make("maze")
    with pytest.raises(ConfigError, match=r"plr.Config.capacity=0"):
        plr.make_train(plr.Config(sampler=plr.LevelSamplerConfig(capacity=0)), env)
    with pytest.raises(ConfigError, match=r"accel.Config.num_minibatches=3"):
        algos.get("accel").make_train(algos.get("accel").Config(
            ppo=common.student_ppo(num_envs=4, num_minibatches=3)), env)
    with pytest.raises(ConfigError, match=r"dr.Config.normalize_obs=True"):
        algos.get("dr").make_train(algos.get("dr").Config(ppo=common.student_ppo(normalize_obs=True)), env)
    with pytest.raises(ConfigError, match="score_function"):
        plr.make_train(plr.Config(score_function="regret"), env)
    with pytest.raises(ConfigError, match="n_walls"):
        algos.get("dr").make_train(algos.get("dr").Config(n_walls=500), env)
    with pytest.raises(ConfigError, match="total_timesteps"):
        pp = algos.get("parallel_accel")
        pp.make_train(pp.Config(ppo=common.student_ppo(num_envs=4, num_steps=16, total_timesteps=100)), env)
    with pytest.raises(ConfigError, match="env"):
        plr.make_train(plr.Config(), envs.make("cartpole"))


def test_a_buffer_the_budget_cannot_fill_is_warned_about_before_compiling():
    # 8 envs x 10 updates offer at most 80 new levels; the default buffer wants 0.5 x 4000 = 2000 before a replay
    robust = algos.get("robust_plr")
    short = robust.Config(ppo=common.student_ppo(num_envs=8, num_steps=16, total_timesteps=8 * 16 * 10))
    message = plr.fill_warning(short, num_updates=10, new_per_update=8)
    assert message is not None and message.count("\n") == 0
    assert "2000 levels" in message and "sampler.capacity=4000" in message
    assert "nothing is ever replayed and the student never takes a gradient step" in message
    # plain PLR learns on new levels: only the replay is lost
    assert "never takes a gradient step" not in plr.fill_warning(plr.Config(ppo=short.ppo), 10, 8)
    # 2000 / 32 = 63 updates to fill: more than half of 97 updates (the misconfigured Kinetix run), not of 244
    assert "more than half the run (63 of 97 updates)" in plr.fill_warning(robust.Config(), 97, 32)
    assert plr.fill_warning(robust.Config(), 244, 32) is None  # the CLI's default run
    assert plr.fill_warning(robust.Config(sampler=plr.LevelSamplerConfig(minimum_fill_ratio=0.0)), 2, 1) is None
    swept = plr.LevelSamplerConfig(minimum_fill_ratio=jnp.array([0.1, 0.9]))
    assert plr.fill_warning(robust.Config(sampler=swept), 10, 8) is None  # a sweep: per-member, not checked here
    with pytest.warns(UserWarning, match="nothing is ever replayed"):
        robust.make_train(short, envs.make("maze"))  # tracing only: nothing is compiled
    pp = algos.get("parallel_accel")  # before the fill every slice holds new levels: 3 x 8 per update
    with pytest.warns(UserWarning, match=r"at most 24 new levels per update over 10 updates"):
        pp.make_train(pp.Config(ppo=common.student_ppo(num_envs=8, num_steps=16, total_timesteps=3 * 8 * 16 * 10)),
                      envs.make("maze"))


def test_cli_prints_warnings_on_one_line(capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = cli._one_line_warning("train")
        warnings.warn("the level buffer\n  needs 2000 levels")
    assert capsys.readouterr().err == "jaxrl-self train: warning: the level buffer needs 2000 levels\n"


# ------------------------------------------------------------------------------------------ PLR mechanics
@pytest.mark.parametrize("name", ["plr", "accel"])
def test_switch_follows_the_sampler_decision(name):
    run = stepped(name)
    sampler = plr.make_sampler(run.config)
    seen = set()
    for u, row in enumerate(run.rows):
        for s in range(SEEDS):
            before = seed(run.states[u], s)
            keys = plr.update_keys(before.rng)
            replay = bool(sampler.sample_replay_decision(before.buffer, keys.decide))
            want = 2 if run.config.use_accel and int(before.last_branch) == 1 else int(replay)
            assert int(row.branch[s]) == want, (u, s)
            seen.add(want)
    assert seen == ({0, 1, 2} if run.config.use_accel else {0, 1})
    counts = run.states[-1].counts
    for s in range(SEEDS):
        branches = [int(r.branch[s]) for r in run.rows]
        assert [int(counts.new[s]), int(counts.replay[s]), int(counts.mutate[s])] == [
            branches.count(0), branches.count(1), branches.count(2)]


@pytest.mark.parametrize("name", ["accel", "plr"])
def test_gradients_only_where_the_curriculum_allows(name):
    run = stepped(name)
    for u, row in enumerate(run.rows):
        for s in range(SEEDS):
            before, after = seed(run.states[u], s), seed(run.states[u + 1], s)
            branch = int(row.branch[s])
            if branch == 1 or run.config.exploratory_grad_updates:
                assert bool(row.grad_applied[s]) and float(row.param_change[s]) > 0, (u, s, branch)
            else:  # robust PLR / ACCEL on new or edited levels: parameters and optimiser untouched
                assert not bool(row.grad_applied[s]) and float(row.param_change[s]) == 0.0
                assert not bool(row.loss_valid[s])
                assert_bitwise(before.params, after.params)
                assert_bitwise(before.opt_state, after.opt_state)
    applied = np.array([[bool(r.grad_applied[s]) for r in run.rows] for s in range(SEEDS)])
    np.testing.assert_array_equal(np.asarray(run.states[-1].counts.grad_updates), applied.sum(1))


def _edits(parent: Level, child: Level) -> int:
    """Edits (wall flips, goal move, agent move) turning parent into child."""
    flips = int(np.sum(np.asarray(parent.wall_map) != np.asarray(child.wall_map)))
    moved_goal = int(np.any(np.asarray(parent.goal_pos) != np.asarray(child.goal_pos)))
    moved_agent = int(np.any(np.asarray(parent.agent_pos) != np.asarray(child.agent_pos))
                      or int(parent.agent_dir) != int(child.agent_dir))
    return flips + moved_goal + moved_agent


def test_accel_inserts_edited_children_of_the_replayed_levels():
    run = stepped("accel")
    sampler = plr.make_sampler(run.config)
    checked = changed = 0
    for u, row in enumerate(run.rows):
        for s in range(SEEDS):
            if int(row.branch[s]) != 2:
                continue
            before, after = seed(run.states[u], s), seed(run.states[u + 1], s)
            assert int(before.last_branch) == 1  # the parents are the levels of the replay cycle just before
            np.testing.assert_array_equal(np.asarray(before.last_replay_levels.wall_map),
                                          np.asarray(before.levels.wall_map))
            for i in range(N):
                parent, child = level_at(before.last_replay_levels, i), level_at(after.levels, i)
                edits = _edits(parent, child)
                assert edits <= run.config.num_edits
                changed += edits > 0
                # every child completed an episode (episode_steps < num_steps), so it is in the buffer now
                assert int(sampler.find(after.buffer, child)) >= 0
                checked += 1
            assert int(after.buffer.size) > int(before.buffer.size)
    assert checked and changed


def test_buffer_and_replay_statistics_match_numpy():
    run = stepped("plr")
    sampler = plr.make_sampler(run.config)
    final, row = seed(run.states[-1], 0), seed(run.rows[-1], 0)
    size = int(final.buffer.size)
    assert size > 0
    walls = np.array([np.asarray(final.buffer.levels.wall_map[i]).sum() for i in range(size)])
    paths = np.array([bfs(level_at(final.buffer.levels, i)) for i in range(size)])
    np.testing.assert_array_equal(np.asarray(final.buffer.extra.num_walls)[:size], walls)
    np.testing.assert_array_equal(np.asarray(final.buffer.extra.shortest_path)[:size], paths)
    w = np.asarray(sampler.level_weights(final.buffer))[:size]
    solv = paths >= 0
    np.testing.assert_allclose(row.buffer.mean_walls, walls.mean(), rtol=1e-5)
    np.testing.assert_allclose(row.buffer.mean_shortest_path, paths[solv].mean(), rtol=1e-5)
    np.testing.assert_allclose(row.buffer.replay_walls, (w * walls).sum(), rtol=1e-4)
    np.testing.assert_allclose(row.buffer.replay_shortest_path, (w * paths)[solv].sum() / w[solv].sum(), rtol=1e-4)
    scores = np.asarray(final.buffer.scores)[:size]
    np.testing.assert_allclose(row.buffer.mean_score, scores.mean(), rtol=1e-5)
    # the replayed levels of a replay cycle
    replays = [(u, s) for u, r in enumerate(run.rows) for s in range(SEEDS) if int(r.branch[s]) == 1]
    assert replays
    for u, s in replays:
        levels, r = seed(run.states[u + 1], s).levels, seed(run.rows[u], s)
        assert bool(r.replay_valid)
        np.testing.assert_allclose(r.replay.mean_walls, np.mean([np.asarray(levels.wall_map[i]).sum()
                                                                  for i in range(N)]), rtol=1e-5)
        p = np.array([bfs(level_at(levels, i)) for i in range(N)])
        np.testing.assert_allclose(r.replay.mean_shortest_path, p[p >= 0].mean() if np.any(p >= 0) else 0.0,
                                   rtol=1e-5)


# ------------------------------------------------------------------------------------------ evaluation
def _policy_params():
    return seed(stepped("plr").states[-1].params, 0)


def test_heldout_set_is_fixed_and_grouped():
    a, b = evaluation.heldout_set(num_procedural=2, seed=3), evaluation.heldout_set(num_procedural=2, seed=3)
    assert a.groups == (*envs.maze.NAMED_LEVEL_NAMES, "PerfectMaze", "FourRooms")
    assert a.level_names[8:] == ("PerfectMaze/0", "PerfectMaze/1", "FourRooms/0", "FourRooms/1")
    assert_bitwise(a.levels, b.levels)
    np.testing.assert_array_equal(np.asarray(a.levels.wall_map[2]), np.asarray(named_level("Labyrinth").wall_map))
    assert all(bfs(level_at(a.levels, i)) > 0 for i in range(a.num_levels))  # all solvable


def test_heldout_eval_matches_a_python_reevaluation():
    env = envs.make("maze")
    _, config = tiny_config("plr")
    student = common.make_student(config, env, None, 1)
    base = evaluation.heldout_set(num_procedural=1, named=("SixteenRooms", "Labyrinth"))
    easy = [Level.from_str(text) for text in (
        "G" + "." * 12 + "\n" + "^" + "." * 12 + "\n" + "\n".join(["." * 13] * 11),
        "." * 13 + "\n" + ".>G" + "." * 10 + "\n" + "\n".join(["." * 13] * 11))]
    heldout = evaluation.HeldOutSet(
        levels=jax.tree.map(lambda a, *b: jnp.concatenate([a, jnp.stack(b)]), base.levels, *easy),
        level_names=base.level_names + ("Easy/0", "Easy/1"), groups=base.groups + ("Easy",),
        level_group=base.level_group + (len(base.groups), len(base.groups)), named_groups=2)
    k, max_steps = 3, 40
    params, key = _policy_params(), jax.random.key(7)
    evaluate = evaluation.make_heldout_eval(student.network, env, heldout, num_attempts=k, max_steps=max_steps)
    result = jax.jit(evaluate, compiler_options=OPT0)(params, key)
    metrics = evaluation.summarize(heldout, result)

    # Python side: step all (level, attempt) environments one step at a time with the same Gumbel noise, and
    # add up each environment's rewards until its first episode ends
    from jaxrl_self.algos import ppo
    n = heldout.num_levels * k
    _, k_run = jax.random.split(key)
    k_policy, _ = jax.random.split(k_run)
    noise = np.asarray(ppo.gumbel_noise_fn(max_steps, n, 3)(k_policy))
    net = student.network
    policy = jax.jit(lambda p, c, o, f: net.apply(p, c, jax.tree.map(lambda x: x[None], o), f[None]))
    params_eval = student.env_params.replace(max_steps_in_episode=max_steps)
    step = jax.jit(jax.vmap(env.step, (None, 0, 0, None)))
    levels = [level_at(heldout.levels, i // k) for i in range(n)]  # level-major
    starts = [env.reset_to_level(key, lv, params_eval) for lv in levels]
    obs = jax.tree.map(lambda *xs: jnp.stack(xs), *[o for o, _ in starts])
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *[st for _, st in starts])
    carry, first = net.initial_carry(n), np.ones(n, bool)
    totals, running = np.zeros(n), np.ones(n, bool)
    for t in range(max_steps):
        carry, logits, _ = policy(params, carry, obs, jnp.asarray(first))
        actions = np.argmax(np.asarray(logits[0]) + noise[t], axis=-1)
        obs, state, reward, term, trunc, _ = step(key, state, jnp.asarray(actions, jnp.int32), params_eval)
        totals += np.where(running, np.asarray(reward), 0.0)
        first = np.asarray(term) | np.asarray(trunc)
        running &= ~first
    returns = totals.reshape(heldout.num_levels, k)
    np.testing.assert_allclose(np.asarray(result.returns), returns, atol=1e-6)
    for g, name in enumerate(heldout.groups):
        members = [i for i, gi in enumerate(heldout.level_group) if gi == g]
        np.testing.assert_allclose(metrics.solved_rate[name], (returns[members] > 0).mean(), atol=1e-6)
        np.testing.assert_allclose(metrics.mean_return[name], returns[members].mean(), atol=1e-6)
    assert float(metrics.solved_rate["Easy"]) > 0  # the check is not vacuous
    np.testing.assert_allclose(metrics.solved_rate_named,
                               np.mean([(returns[i] > 0).mean() for i in range(2)]), atol=1e-6)


def test_periodic_eval_is_a_real_cond_under_the_runner_seed_vmap():
    def f(x, step):
        due = uniform_over_seeds(step % 4 == 3)
        return jax.lax.cond(due, lambda: jnp.sin(x).sum(), lambda: jnp.float32(0))

    xs, steps = jnp.ones((3, 5)), jnp.full((3,), 7)
    named = str(jax.make_jaxpr(jax.vmap(f, axis_name=SEED_AXIS))(xs, steps))
    unnamed = str(jax.make_jaxpr(jax.vmap(f))(xs, steps))
    assert "cond[" in named and "sin" in named.split("cond[")[1]
    assert "cond[" not in unnamed  # a batched predicate turns the cond into a select
    np.testing.assert_allclose(jax.vmap(f, axis_name=SEED_AXIS)(xs, steps), jax.vmap(f)(xs, steps))
    assert bool(evaluation.eval_due(jnp.int32(9), 0, 10)) and not bool(evaluation.eval_due(jnp.int32(3), 0, 10))
    assert not any(bool(evaluation.eval_due(jnp.int32(u), -1, 10)) for u in range(10))


def test_metric_files_leave_non_evaluation_rows_empty(tmp_path):
    run = stepped("accel")
    flat = metrics_lib.flatten_metrics(jax.tree.map(lambda *xs: np.stack(xs), *run.rows))  # (updates, seeds)
    rows = metrics_lib.chunk_rows(flat, 0)
    for r in rows:
        if r["seed"] == metrics_lib.MEAN_SEED:
            continue
        ok = bool(r["eval_valid"])
        assert (r["eval.solved_rate.Labyrinth"] is None) != ok
        assert (r["replay.mean_walls"] is None) == (r["branch"] != 1)
        assert (r["loss"] is None) == (r["branch"] != 1)  # robust: PPO ran on replay cycles only
    assert metrics_lib.validity_flag("eval.solved_rate.Labyrinth", flat) == "eval_valid"
    assert metrics_lib.validity_flag("episode_return", flat) == "episode_return_valid"


# ------------------------------------------------------------------------------------------ resume, CLI, report
@pytest.mark.parametrize("name", ["plr", "accel"])
def test_interrupted_and_resumed_run_equals_uninterrupted(name, tmp_path, monkeypatch):
    """The runner stops right after its checkpoint at update 3 (a KeyboardInterrupt); a fresh runner resumes from
    it and ends bitwise where the uninterrupted (stepped) run ended, with the same metric rows."""
    run = stepped(name)
    desc = run_description(algo=name, env="maze", config=run.config, seed=0, num_seeds=SEEDS,
                           num_updates=UPDATES)
    opts = RunOptions(seeds=SEEDS, checkpoint_every=1, keep_checkpoints=2, progress=False)
    save = ckpt_lib.Checkpointer.save
    saved = {}

    def save_then_stop(self, step, states, *a, **k):
        save(self, step, states, *a, **k)
        saved[step] = states
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_lib.Checkpointer, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        runner(run, opts, description=desc, run_dir=tmp_path / "cut").run()
    assert sorted(saved) == [1, 2, 3]
    assert_bitwise(saved[3], run.states[3])  # the buffer at the cut is the uninterrupted run's
    assert int(np.asarray(saved[3].buffer.size)[0]) > 0
    monkeypatch.setattr(ckpt_lib.Checkpointer, "save", save)
    resumed = runner(run, dataclasses.replace(opts, resume=True), description=desc, run_dir=tmp_path / "cut").run()
    assert resumed.summary["resumed_from_update"] == 3
    assert_bitwise(resumed.states, run.states[-1])  # parameters, optimiser, RNG, level buffer...
    assert metrics_lib.read_jsonl(tmp_path / "cut" / "metrics.jsonl") == expected_rows(run)


def use_stepped_programs(monkeypatch, run: Stepped) -> None:
    """Runners started elsewhere (the CLI) use the stepped run's compiled programs, after checking that they were
    asked for exactly that run (same config, one-update chunks)."""
    compile_ = Runner.compile

    def compile(self, need_init=True):
        self.use_programs(programs_of(run, self.options.seeds))
        return compile_(self, need_init)

    monkeypatch.setattr(Runner, "compile", compile)


def test_cli_trains_accel_and_writes_the_report(tmp_path, capsys, monkeypatch):
    _, config = tiny_config("accel")
    run = stepped("accel")
    use_stepped_programs(monkeypatch, run)
    flags = cli.flags_for(config)
    run_dir = tmp_path / "accel"
    code = cli.main(["train", "accel", "--env", "maze", "--seeds", str(SEEDS), *flags, "--checkpoint-every", "1",
                     "--no-progress", "--run-dir", str(run_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "solved rate:" in out
    for f in ("solved_rate.png", "heldout.json", "buffer_top_levels.png", "metrics.jsonl", "summary.json"):
        assert (run_dir / f).exists(), f
    final = json.loads((run_dir / "heldout.json").read_text())
    assert final["update"] == [UPDATES - 1] * SEEDS
    assert set(final["groups"]) == {*envs.maze.NAMED_LEVEL_NAMES, "PerfectMaze", "FourRooms"}
    rows = metrics_lib.read_jsonl(run_dir / "metrics.jsonl")
    assert rows == expected_rows(run)  # the same run as from Python
    last = [r for r in rows if r["update"] == UPDATES - 1]
    for s in range(SEEDS):
        assert final["groups"]["Labyrinth"]["per_seed_solved_rate"][s] == last[s]["eval.solved_rate.Labyrinth"]
    # `jaxrl-self eval` evaluates the checkpoint (make_eval) on the named mazes
    code = cli.main(["eval", str(run_dir), "--episodes", "2", "--max-steps", "12",
                     "--levels", "Labyrinth,SixteenRooms"])
    assert code == 0, capsys.readouterr().out
    report = json.loads((run_dir / "eval-maze.json").read_text())
    assert [row["level"] for row in report["levels"]] == ["Labyrinth", "SixteenRooms"]
