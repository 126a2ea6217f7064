"""Curricula fidelity: our PLR⊥ and ACCEL beside jaxued's own ``examples/maze_plr.py`` at the same budget.

Usage::

    python benchmarks/ued_vs_jaxued.py run                      # PLR⊥ and ACCEL, 3 seeds each, both implementations
    python benchmarks/ued_vs_jaxued.py run --updates 240 --eval-every 40 --seeds 3
    python benchmarks/ued_vs_jaxued.py run --quick              # smoke test: 2 seeds, 6 updates, full sizes
    python benchmarks/ued_vs_jaxued.py run --jaxued-source PATH # a checkout of DramaCow/jaxued (default: git clone)
    python benchmarks/ued_vs_jaxued.py run --maze-actions 7 --methods robust_plr   # ours on jaxued's 7 actions
    python benchmarks/ued_vs_jaxued.py mechanism                # random policy on DR levels, 3 vs 7 actions
    python benchmarks/ued_vs_jaxued.py budget                   # the ordering along the lent GPU's curve
    python benchmarks/ued_vs_jaxued.py table                    # rewrite markdown and plot from the JSON

**jaxued's side.** DramaCow/jaxued at commit ``0f8f128`` is installed from its source (the example script is not
in the PyPI package) into its own venv (``benchmarks/.venvs/jaxued_0f8f128``: jaxued with its example
requirements, ``orbax-checkpoint`` unpinned since checkpoints stay off). Its ``examples/maze_plr.py`` runs
unmodified through ``benchmarks/peers/jaxued_maze_plr_launcher.py``, which serves the script's ``wandb`` import
with a local recorder (scalars to JSONL, images and videos dropped) and saves the level buffer at each
evaluation (outside the compiled program). One process per seed, one after another, with jaxued's defaults and
only these flags: ``--seed``, ``--num_updates``, ``--eval_freq``, ``--checkpoint_save_interval 0``; PLR⊥ adds
``--no-exploratory_grad_updates --no-use_accel --score_function MaxMC`` (its defaults, spelled out), ACCEL adds
``--use_accel --num_edits 5``.

**Our side.** ``run_training`` of ``robust_plr`` / ``accel`` on ``maze`` with their default configs (jaxued's
settings field by field, see the mapping table in the result file) with ``total_timesteps`` = the same number of
updates x 32 x 256, ``eval_every`` = jaxued's ``eval_freq``, ``eval_procedural=0`` (jaxued evaluates the eight
named mazes only) and the maze built with ``normalize_obs=True`` (jaxued's script divides the image by 10).
All seeds in one vmapped program.

**Compared** at every evaluation: the named-maze solved rate (10 attempts per maze, mean over the 8 mazes) and
eval return, and level-buffer statistics computed by *one* function for both sides (our ``level_info`` BFS on
the buffer's levels): mean MaxMC score of the filled slots, and, under the replay distribution P_replay, the
solvable fraction, the wall count and the shortest-path length of solvable levels. Final solved rate per maze.
Intervals: 95% Student-t over seeds; the verdict per method is the Welch 95% interval of the difference of the
final mean named-maze solved rates (ours - jaxued), and the same for the buffer statistics.
jaxued's script logs no training return, so training return is reported for ours only.

``--maze-actions 7`` builds our maze with jaxued's action space (``Maze(num_actions=7)``: actions 3..6 are
no-ops) and writes ``ued_vs_jaxued.actions7.*``; jaxued's finished seeds are reused. ``mechanism`` plays a
uniform random policy for 250 steps on 4096 domain-randomisation levels with 3 and with 7 actions: the fraction
solved and the mean best return, which is what MaxMC scores a level with before the critic has learned.

``budget`` answers the budget question from the GPU run on record (``ued_maze_results.json``: DR, PLR⊥ and ACCEL,
3 seeds each, trained at the same time on one lent H100 for 18M env steps per seed in one 10-minute device
command): the ordering of the mean named-maze solved rates at each evaluation, with t-intervals. On a lent GPU,
``python benchmarks/ued_maze.py results --parallel --steps-per-seed N`` reruns it at the budget the device time
allows (see docs/curricula.md); this script's ``run`` runs on a GPU too (jaxued's side then needs a CUDA jax in
its venv).

Outputs: ``benchmarks/results/ued_vs_jaxued{,.quick,.actions7}.{json,md,png}``, ``ued_vs_jaxued.mechanism.{json,md}``,
``ued_vs_jaxued.budget.{json,md}``;
run folders under ``runs/ued_vs_jaxued`` (git-ignored; a finished seed is not rerun).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BENCH_DIR,
    REPO_ROOT,
    RESULTS_DIR,
    VENVS_DIR,
    emit_result,
    ensure_venv,
    log,
    machine_info,
    publish,
    run_worker,
    t_interval,
    utc_now,
    venv_metadata,
    welch_difference,
    worker_env,
    worker_info,
    write_results,
)

JAXUED_URL = "https://github.com/DramaCow/jaxued"
JAXUED_COMMIT = "0f8f128"
METHODS = ("robust_plr", "accel")
JAXUED_FLAGS = {
    "robust_plr": ["--no-exploratory_grad_updates", "--no-use_accel", "--score_function", "MaxMC"],
    "accel": ["--no-exploratory_grad_updates", "--use_accel", "--num_edits", "5", "--score_function", "MaxMC"],
}
STEPS_PER_UPDATE = 32 * 256  # jaxued's num_train_envs x num_steps (ours: num_envs x num_steps, same defaults)
RUNS_ROOT = REPO_ROOT / "runs" / "ued_vs_jaxued"
NAMED = ("SixteenRooms", "SixteenRooms2", "Labyrinth", "LabyrinthFlipped", "Labyrinth2", "StandardMaze",
         "StandardMaze2", "StandardMaze3")  # jaxued's default --eval_levels, our NAMED_LEVEL_NAMES
BUFFER_STATS = ("mean_score", "replay_solvable", "replay_walls", "replay_shortest_path")

# Our field <- jaxued's flag (or constant in the script), for the table in the result file.
MAPPING = [
    ("ppo.learning_rate", "lr", "1e-4"), ("ppo.max_grad_norm", "max_grad_norm", "0.5"),
    ("ppo.num_envs", "num_train_envs", "32"), ("ppo.num_steps", "num_steps", "256"),
    ("ppo.update_epochs", "epoch_ppo", "5"), ("ppo.num_minibatches", "num_minibatches", "1"),
    ("ppo.gamma", "gamma", "0.995"), ("ppo.gae_lambda", "gae_lambda", "0.98"),
    ("ppo.clip_eps", "clip_eps", "0.2"), ("ppo.ent_coef", "entropy_coeff", "1e-3"),
    ("ppo.vf_coef", "critic_coeff", "0.5"), ("ppo.anneal_lr", "(linear decay over num_updates)", "True"),
    ("ppo.lstm_features", "(ActorCritic LSTM)", "256"),
    ("sampler.capacity", "level_buffer_capacity", "4000"), ("replay_prob", "replay_prob", "0.8"),
    ("sampler.staleness_coef", "staleness_coeff", "0.3"), ("sampler.temperature", "temperature", "0.3"),
    ("sampler.minimum_fill_ratio", "minimum_fill_ratio", "0.5"), ("sampler.prioritization", "prioritization", "rank"),
    ("sampler.duplicate_check", "buffer_duplicate_check", "True"), ("score_function", "score_function", "MaxMC"),
    ("exploratory_grad_updates", "exploratory_grad_updates", "False"), ("num_edits (ACCEL)", "num_edits", "5"),
    ("n_walls", "n_walls", "25"), ("maze agent_view_size", "agent_view_size", "5"),
    ("maze normalize_obs (env_kwargs)", "Maze(normalize_obs=True) in the script", "True"),
    ("eval_attempts", "eval_num_attempts", "10"), ("eval_every", "eval_freq", "(the run's)"),
    ("eval_procedural", "(8 named mazes only)", "0"),
]
CANNOT_MATCH = [
    "Action set: jaxued's Maze has 7 actions (left, right, forward and 4 that do nothing: pickup, drop, toggle, "
    "done), ours 3. The policy's softmax and entropy bonus are over 7 vs 3 actions; a uniform policy moves "
    "forward 1/7 vs 1/3 of the time.",
    "Time limit: jaxued's AutoReplayWrapper ends an episode at 250 steps with done=True and GAE treats it as "
    "terminal (no bootstrap); ours marks it truncated and bootstraps from V(final obs).",
    "Advantage normalisation epsilon 1e-5 (jaxued) vs 1e-8 (ours); a duplicate level inserted into jaxued's "
    "buffer overwrites its max_return, ours keeps the larger.",
    "PRNG streams differ (same seeds do not give the same levels); jaxued splits an eval key from the training "
    "key each eval_freq updates.",
]


# ============================================================================================ jaxued's venv
def jaxued_source(source: str | None) -> Path:
    """jaxued's repository at JAXUED_COMMIT as a plain folder under benchmarks/.venvs/src (from ``source``, a
    checkout or git directory, or cloned from GitHub)."""
    dest = VENVS_DIR / "src" / f"jaxued-{JAXUED_COMMIT}"
    if (dest / "examples" / "maze_plr.py").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    repo = source
    if repo is None:
        repo = str(VENVS_DIR / "src" / "jaxued.git")
        if not Path(repo).exists():
            subprocess.run(["git", "clone", "--bare", "-q", JAXUED_URL, repo], check=True)
    dest.mkdir()
    git_dir = Path(repo) / ".git" if (Path(repo) / ".git").exists() else Path(repo)
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", JAXUED_COMMIT], check=True,
                             capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def jaxued_python(source: Path) -> Path:
    return ensure_venv(f"jaxued_{JAXUED_COMMIT}", [f"jaxued @ file://{source}", "distrax", "optax",
                                                    "orbax-checkpoint", "pillow", "imageio"])


# ============================================================================================ runs
def run_jaxued(python: Path, source: Path, method: str, seed: int, updates: int, eval_every: int,
               out: Path) -> dict:
    done = out / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cmd = [str(python), str(BENCH_DIR / "peers" / "jaxued_maze_plr_launcher.py"),
           "--script", str(source / "examples" / "maze_plr.py"), "--out", str(out), "--",
           "--seed", str(seed), "--num_updates", str(updates), "--eval_freq", str(eval_every),
           "--checkpoint_save_interval", "0", "--run_name", f"{method}_{seed}", *JAXUED_FLAGS[method]]
    log(f"[jaxued] {method} seed {seed}: {' '.join(cmd[2:])}")
    t = time.perf_counter()
    with (out / "stdout.txt").open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=worker_env(None), cwd=out)
    if proc.returncode != 0:
        raise RuntimeError(f"jaxued {method} seed {seed} failed (exit {proc.returncode}); see {out / 'stdout.txt'}")
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    evals = []
    for row in rows:
        u = int(row["num_updates"])
        buf = _buffer_stats(out / f"buffer_{u:07d}.npz")
        evals.append({"update": u, "env_steps": int(row["num_env_steps"]),
                      "solved_rate_named": row["solve_rate/mean"], "return_named": row["return/mean"],
                      "solved_rate": {n: row[f"solve_rate/{n}"] for n in NAMED},
                      "sampler_mean_score": row["level_sampler/mean_score"], **buf})
    result = {"seed": seed, "wall_s": time.perf_counter() - t, "evals": evals,
              "config": json.loads((out / "config.json").read_text())}
    done.write_text(json.dumps(result))
    for f in out.glob("buffer_*.npz"):  # the statistics are kept; the level dumps are large
        f.unlink()
    return result


def _buffer_stats(path: Path) -> dict:
    """Buffer statistics of a jaxued level buffer dump, with our own functions (the same as our runs report)."""
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_self import envs
    from jaxrl_self.curricula import common
    from jaxrl_self.envs.maze import Level

    d = np.load(path)
    size = int(d["size"])
    env = envs.make("maze")
    levels = Level(wall_map=jnp.asarray(d["wall_map"][:size], bool), goal_pos=jnp.asarray(d["goal_pos"][:size], jnp.int32),
                   agent_pos=jnp.asarray(d["agent_pos"][:size], jnp.int32),
                   agent_dir=jnp.asarray(d["agent_dir"][:size], jnp.int32))
    info = common.level_info(env, levels)
    replay = common.level_stats(info, jnp.asarray(d["weights"][:size]))
    scores = d["scores"][:size]
    return {"mean_score": float(scores.mean()) if size else float("nan"),
            "buffer_size": size, "replay_solvable": float(replay.solvable), "replay_walls": float(replay.mean_walls),
            "replay_shortest_path": float(replay.mean_shortest_path),
            "num_replay_updates": int(d["num_replay_updates"]), "num_mutation_updates": int(d["num_mutation_updates"])}


def ours_config(method: str, updates: int, eval_every: int):
    from jaxrl_self import algos

    base = algos.get(method).Config()
    ppo = base.ppo.replace(total_timesteps=updates * base.ppo.num_envs * base.ppo.num_steps)
    config = base.replace(ppo=ppo, eval_every=eval_every, eval_procedural=0)
    return config


def worker_ours(args) -> None:
    import jaxrl_self  # noqa: F401
    import numpy as np

    from jaxrl_self import algos
    from jaxrl_self.run.checkpoint import config_to_dict
    from jaxrl_self.run.metrics import MEAN_SEED, read_jsonl
    from jaxrl_self.run.runner import RunOptions, run_training

    config = ours_config(args.method, args.updates, args.eval_every)
    run_dir = Path(args.run_dir)
    resume = (run_dir / "checkpoints").exists()
    options = RunOptions(seeds=args.seeds, seed=0, keep_checkpoints=1, progress=False, run_dir=str(run_dir),
                         resume=resume)
    t = time.perf_counter()
    if not args.no_train:
        run_training(algos.get(args.method), "maze", config, options,
                     env_kwargs={"normalize_obs": True, "num_actions": args.maze_actions})
    wall = time.perf_counter() - t
    rows = [x for x in read_jsonl(run_dir / "metrics.jsonl") if x.get("seed") != MEAN_SEED]
    per_seed: dict[int, dict] = {}
    for x in sorted(rows, key=lambda r: (r["seed"], r["update"])):
        s = per_seed.setdefault(x["seed"], {"seed": x["seed"], "evals": [], "train_return": [], "_returns": []})
        if x.get("episode_return_valid"):
            s["_returns"].append(x["episode_return"])
        if x.get("eval_valid"):
            s["evals"].append({
                "update": x["update"], "env_steps": x["env_steps"],
                "solved_rate_named": x["eval.solved_rate_named"], "return_named": x["eval.mean_return_named"],
                "solved_rate": {n: x[f"eval.solved_rate.{n}"] for n in NAMED},
                "mean_score": x["buffer.mean_score"], "buffer_size": x["buffer.size"],
                "replay_solvable": x["buffer.replay_solvable"], "replay_walls": x["buffer.replay_walls"],
                "replay_shortest_path": x["buffer.replay_shortest_path"]})
            s["train_return"].append(float(np.mean(s["_returns"])) if s["_returns"] else None)
            s["_returns"] = []
    for s in per_seed.values():
        del s["_returns"]
    emit_result({"method": args.method, "maze_actions": args.maze_actions, "wall_s": wall,
                 "stopped_early": bool(args.no_train and not (run_dir / "summary.json").exists()), "resumed": resume, "config": config_to_dict(config),
                 "seeds": list(per_seed.values()), "worker": worker_info()})


# ============================================================================================ statistics
def summarise(method_data: dict) -> dict:
    """Curves (mean and interval per evaluation) and final comparisons for one method."""
    out = {"curves": {}, "final": {}, "verdict": {}}
    finals = {}
    for impl in ("ours", "jaxued"):
        seeds = method_data[impl]["seeds"]
        updates = sorted({e["update"] for s in seeds for e in s["evals"]})
        curve = []
        for u in updates:
            at = [e for s in seeds for e in s["evals"] if e["update"] == u]
            curve.append({"update": u, "env_steps": at[0]["env_steps"],
                          **{k: t_interval([e[k] for e in at]) for k in ("solved_rate_named", "return_named",
                                                                         *BUFFER_STATS)}})
        out["curves"][impl] = curve
    common = set.intersection(*({e["env_steps"] for s in method_data[impl]["seeds"] for e in s["evals"]}
                                for impl in ("ours", "jaxued")))
    at = max(common)  # the latest evaluation both sides reached (a stopped run compares there)
    out["final_env_steps"] = at
    for impl in ("ours", "jaxued"):
        last = [next(e for e in s["evals"] if e["env_steps"] == at) for s in method_data[impl]["seeds"]]
        finals[impl] = last
        out["final"][impl] = {"update": last[0]["update"], "env_steps": last[0]["env_steps"],
                              "solved_rate_named": t_interval([e["solved_rate_named"] for e in last]),
                              "per_maze": {n: t_interval([e["solved_rate"][n] for e in last]) for n in NAMED},
                              **{k: t_interval([e[k] for e in last]) for k in ("return_named", *BUFFER_STATS)}}
    for k in ("solved_rate_named", "return_named", *BUFFER_STATS):
        out["verdict"][k] = welch_difference([e[k] for e in finals["ours"]], [e[k] for e in finals["jaxued"]])
    return out


# ============================================================================================ commands
def cmd_run(opts) -> None:
    name = "ued_vs_jaxued" + (".quick" if opts.quick else "") + (".actions7" if opts.maze_actions == 7 else "")
    updates = opts.updates or (6 if opts.quick else 240)
    eval_every = opts.eval_every or (3 if opts.quick else 40)
    seeds = opts.seeds or (2 if opts.quick else 3)
    root = RUNS_ROOT / ("quick" if opts.quick else "full")
    source = jaxued_source(opts.jaxued_source)
    python = jaxued_python(source)
    data = {"benchmark": "ued_vs_jaxued", "created": utc_now(), "machine": machine_info(), "quick": opts.quick,
            "updates": updates, "env_steps_per_seed": updates * STEPS_PER_UPDATE, "eval_every": eval_every,
            "seeds": seeds, "maze_actions": opts.maze_actions, "jaxued": {"repository": JAXUED_URL, "commit": JAXUED_COMMIT,
                                       "script": "examples/maze_plr.py", "venv": venv_metadata(python)},
            "mapping": MAPPING, "cannot_match": CANNOT_MATCH,
            "method": __doc__.split("**jaxued's side.**")[1].split("Outputs:")[0].strip(), "methods": {}}
    for method in opts.methods or METHODS:
        t = time.perf_counter()
        jax_runs = [] if opts.ours_only else [
            run_jaxued(python, source, method, s, updates, eval_every, root / "jaxued" / method / f"seed{s}")
            for s in range(seeds)]
        run_dir = root / ("ours" if opts.maze_actions == 3 else f"ours_actions{opts.maze_actions}") / method
        if opts.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        log(f"[ours] {method}: {seeds} seeds x {updates} updates -> {run_dir}")
        ours = run_worker(sys.executable, __file__, ["_ours", "--method", method, "--seeds", seeds, "--updates",
                                                     updates, "--eval-every", eval_every, "--run-dir", run_dir,
                                                     "--maze-actions", opts.maze_actions,
                                                     *(["--no-train"] if opts.from_runs else []),
                                                     *(["--quick"] if opts.quick else [])],
                          env=worker_env(None))
        if opts.ours_only:  # our side trained into its run folder; `run` without --ours-only compares later
            log(f"[run] {method}: ours done ({ours['wall_s'] / 60:.1f} min); no comparison written (--ours-only)")
            continue
        entry = {"ours": ours, "jaxued": {"seeds": jax_runs, "wall_s": sum(r["wall_s"] for r in jax_runs)}}
        entry["summary"] = summarise(entry)
        data["methods"][method] = entry
        log(f"[run] {method} done in {(time.perf_counter() - t) / 60:.1f} min")
    if not opts.ours_only:
        _write(name, data)


def cmd_mechanism(opts) -> None:
    """A uniform random policy on DR levels with 3 and 7 actions (see the module docstring)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_self.envs.maze import Maze

    n, steps, rows = 4096, 250, []
    for num_actions in (3, 7):
        env = Maze(num_actions=num_actions)
        params = env.default_params

        @jax.jit
        def play(key):
            k_level, k_act = jax.random.split(key)
            levels = jax.vmap(env.sample_level)(jax.random.split(k_level, n))
            _, state = jax.vmap(env.reset_env_to_level, (None, 0, None))(k_level, levels, params)
            actions = jax.random.randint(k_act, (steps, n), 0, num_actions)

            def step(carry, a):
                state, done, ret = carry
                _, new, r, term, trunc, _ = jax.vmap(env.step_env, (None, 0, 0, None))(k_act, state, a, params)
                ret = jnp.where(done, ret, ret + r)
                return (new, done | term | trunc, ret), None

            (_, _, ret), _ = jax.lax.scan(step, (state, jnp.zeros(n, bool), jnp.zeros(n)), actions)
            solvable = jax.vmap(env.shortest_path)(levels) >= 0
            return ret, solvable

        ret, solvable = (np.asarray(x) for x in play(jax.random.key(0)))
        rows.append({"num_actions": num_actions, "levels": n, "steps": steps, "solvable": float(solvable.mean()),
                     "solved": float((ret > 0).mean()), "solved_of_solvable": float((ret[solvable] > 0).mean()),
                     "mean_return": float(ret.mean())})
    data = {"benchmark": "ued_vs_jaxued.mechanism", "created": utc_now(), "machine": machine_info(), "rows": rows}
    lines = ["# A uniform random policy on domain-randomisation mazes: 3 vs 7 actions", "",
             f"{n} levels of the 25-wall generator, one episode of at most {steps} steps each (reward "
             "1 - 0.9 t/250 at the goal). The mean return is what MaxMC scores a level with while V ~ 0.", "",
             "| actions | solvable | solved | solved of solvable | mean return |", "|---|---|---|---|---|"]
    lines += [f"| {r['num_actions']} | {r['solvable']:.3f} | {r['solved']:.3f} | {r['solved_of_solvable']:.3f} | "
              f"{r['mean_return']:.3f} |" for r in rows]
    json_path, md_path = write_results("ued_vs_jaxued.mechanism", data, "\n".join(lines) + "\n")
    print(md_path.read_text())


def cmd_budget(opts) -> None:
    """The ordering of DR, PLR⊥ and ACCEL along the lent GPU's curve (``ued_maze_results.json``)."""
    src = json.loads((RESULTS_DIR / "ued_maze_results.json").read_text())
    curves = {r["method"]: {e["env_steps"]: e["solved_rate_named"] for e in r["curve"]["evals"]} for r in src["runs"]}
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    rows = []
    for st in steps:
        cis = {m: t_interval(curves[m][st]) for m in curves}
        order = sorted(cis, key=lambda m: -cis[m]["mean"])
        rows.append({"env_steps": st, "solved_rate_named": cis, "order": order})
    data = {"benchmark": "ued_vs_jaxued.budget", "created": utc_now(), "source": "ued_maze_results.json",
            "source_created": src.get("created"), "steps_per_seed": src["steps_per_seed"], "seeds": src["seeds"],
            "rows": rows}
    label = {"dr": "DR", "robust_plr": "PLR⊥", "accel": "ACCEL"}
    lines = ["# DR, PLR⊥ and ACCEL along the curve of the lent GPU run", "",
             f"From `benchmarks/results/ued_maze_results.json` (created {src.get('created')}; one NVIDIA H100, the "
             f"three methods trained at the same time, {src['seeds']} seeds each, {src['steps_per_seed']:,} env "
             "steps per seed in one 10-minute device command). Mean named-maze solved rate ± 95% t over seeds.", "",
             "| env steps | DR | PLR⊥ | ACCEL | ordering of the means |", "|---:|---|---|---|---|"]
    for r in rows[::4] + ([rows[-1]] if (len(rows) - 1) % 4 else []):
        c = r["solved_rate_named"]
        lines.append(f"| {r['env_steps']:,} | " + " | ".join(_fmt(c[m]) for m in ("dr", "robust_plr", "accel"))
                     + " | " + " > ".join(label[m] for m in r["order"]) + " |")
    first = next((r for r in rows if r["solved_rate_named"]["dr"]["mean"] > 0), rows[-1])
    same = sum(r["order"] == ["dr", "robust_plr", "accel"] for r in rows if r["env_steps"] >= first["env_steps"])
    later = sum(r["env_steps"] >= first["env_steps"] for r in rows)
    def apart(c, x, y):  # the two methods' intervals are disjoint
        return (c[x]["mean"] - c[x]["half"] > c[y]["mean"] + c[y]["half"]
                or c[y]["mean"] - c[y]["half"] > c[x]["mean"] + c[x]["half"])

    disjoint = [r["env_steps"] for r in rows if any(apart(r["solved_rate_named"], x, y) for x, y in
                                                     (("dr", "robust_plr"), ("dr", "accel"), ("robust_plr", "accel")))]
    data["disjoint_at"] = disjoint
    lines += ["", f"From the first evaluation where any maze is solved ({first['env_steps']:,} steps) on, the order of "
                  f"the means is DR > PLR⊥ > ACCEL at {same} of {later} evaluations. Two methods' intervals are "
                  f"disjoint at {len(disjoint)} of {len(rows)} evaluations"
                  + (f" ({', '.join(f'{x / 1e6:.1f}M' for x in disjoint)})" if disjoint else "") + "; elsewhere they overlap. "
                  "The published order (ACCEL > PLR⊥ > DR) is at 164M steps with 60-wall levels, 9x this budget.", ""]
    json_path, md_path = write_results("ued_vs_jaxued.budget", data, "\n".join(lines))
    print(md_path.read_text())


def cmd_table(opts) -> None:
    name = "ued_vs_jaxued" + (".quick" if opts.quick else "") + (".actions7" if opts.maze_actions == 7 else "")
    data = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    for entry in data["methods"].values():
        entry["summary"] = summarise(entry)
    _write(name, data)


def _fmt(ci: dict, digits: int = 3) -> str:
    if ci is None or ci.get("mean") is None:
        return "–"
    half = ci.get("half")
    return f"{ci['mean']:.{digits}f}" + (f" ± {half:.{digits}f}" if half is not None else "")


def markdown(data: dict) -> str:
    label = {"robust_plr": "PLR⊥", "accel": "ACCEL"}
    title = "# Our PLR⊥ and ACCEL beside jaxued's examples/maze_plr.py"
    if data.get("maze_actions", 3) == 7:
        title += " — ours with jaxued's 7-action maze"
    lines = [title, "",
             f"{data['updates']} updates x 32 envs x 256 steps = **{data['env_steps_per_seed']:,} env steps per "
             f"seed**, {data['seeds']} seeds per method and implementation, evaluation every {data['eval_every']} "
             f"updates on jaxued's 8 named mazes (10 attempts). jaxued {data['jaxued']['commit']} "
             f"({data['jaxued']['script']}, unmodified; wandb replaced by a local recorder). Machine: "
             f"{data['machine'].get('cpu_model', '?')} ({data['machine'].get('cpu_count', '?')} cores), created {data['created']}. Intervals: 95% t over seeds; "
             "difference: Welch 95% interval (ours - jaxued).", ""]
    names = {"solved_rate_named": "named-maze solved rate", "return_named": "named-maze eval return",
             "mean_score": "buffer mean score (MaxMC)", "replay_solvable": "P_replay solvable fraction",
             "replay_walls": "P_replay wall count", "replay_shortest_path": "P_replay shortest path"}
    for method, entry in data["methods"].items():
        s = entry["summary"]
        reached = max(e["env_steps"] for sd in entry["ours"]["seeds"] for e in sd["evals"])
        stopped = (f"**Our run was stopped early: evaluated up to {reached // STEPS_PER_UPDATE} of {data['updates']} "
                   "updates** (the session's time ran out; it resumes from its checkpoint), so the comparison is at the latest "
                   "evaluation both sides reached, on the same learning-rate schedule. "
                   if reached < data["env_steps_per_seed"] else "")
        lines += [f"## {label.get(method, method)}", "", stopped +
                  f"Our maze: {entry['ours'].get('maze_actions', 3)} actions; jaxued's: 7 (4 no-ops).", "",
                  f"Final ({s['final']['ours']['env_steps'] // STEPS_PER_UPDATE} updates, "
                  f"{s['final']['ours']['env_steps']:,} env steps):",
                  "", "| quantity | ours | jaxued | ours - jaxued (95%) | within the interval |",
                  "|---|---|---|---|---|"]
        for k, title in names.items():
            v = s["verdict"][k]
            lines.append(f"| {title} | {_fmt(s['final']['ours'][k])} | {_fmt(s['final']['jaxued'][k])} | "
                         f"{v['diff']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}] | {'yes' if v['equal'] else '**no**'} |")
        lines += ["", "Per maze (final solved rate):", "", "| maze | ours | jaxued |", "|---|---|---|"]
        for n in NAMED:
            lines.append(f"| {n} | {_fmt(s['final']['ours']['per_maze'][n], 2)} | "
                         f"{_fmt(s['final']['jaxued']['per_maze'][n], 2)} |")
        lines += ["", "Curves (mean over seeds):", "",
                  "| updates | env steps | solved ours | solved jaxued | score ours | score jaxued | solvable ours | "
                  "solvable jaxued | walls ours | walls jaxued | path ours | path jaxued |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for a, b in zip(s["curves"]["ours"], s["curves"]["jaxued"]):
            cells = [f"{a['env_steps'] // STEPS_PER_UPDATE}", f"{a['env_steps']:,}"]
            for k in ("solved_rate_named", "mean_score", "replay_solvable", "replay_walls", "replay_shortest_path"):
                cells += [_fmt(a[k]), _fmt(b[k])]
            lines.append("| " + " | ".join(cells) + " |")
        ours_ret = [r for sd in entry["ours"]["seeds"] for r in sd["train_return"][-1:] if r is not None]
        lines += ["", f"Training return (ours only; jaxued's script does not log it), last window: "
                      f"{_fmt({'mean': sum(ours_ret) / len(ours_ret), 'half': None}) if ours_ret else '–'}. "
                      f"Wall time: ours "
                      + (f"{entry['ours']['wall_s'] / 60:.1f} min (all seeds in one program)"
                         if entry['ours']['wall_s'] >= 1 else "not recorded (read back from its run folder)")
                      + f", jaxued {entry['jaxued']['wall_s'] / 60:.1f} min (one process per seed); learning runs "
                        "that shared the CPU with other jobs, not a speed comparison (that is "
                        "`benchmarks/ued_maze.py speed`).", ""]
    lines += ["## Config mapping (our field ← jaxued's flag, value)", "", "| ours | jaxued | value |", "|---|---|---|"]
    lines += [f"| `{a}` | `{b}` | {c} |" for a, b, c in data["mapping"]]
    lines += ["", "Cannot match:", ""] + [f"- {x}" for x in data["cannot_match"]] + [""]
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("solved_rate_named", "named-maze solved rate"), ("mean_score", "buffer mean score"),
            ("replay_solvable", "P_replay solvable"), ("replay_shortest_path", "P_replay shortest path")]
    methods = list(data["methods"])
    fig, axes = plt.subplots(len(methods), len(keys), figsize=(4 * len(keys), 3.2 * len(methods)), squeeze=False)
    for i, method in enumerate(methods):
        curves = data["methods"][method]["summary"]["curves"]
        for j, (k, title) in enumerate(keys):
            ax = axes[i][j]
            for impl, colour in (("ours", "C0"), ("jaxued", "C1")):
                xs = [c["env_steps"] / 1e6 for c in curves[impl] if c[k]["mean"] is not None]
                ms = [c[k]["mean"] for c in curves[impl] if c[k]["mean"] is not None]
                hs = [c[k]["half"] or 0.0 for c in curves[impl] if c[k]["mean"] is not None]
                ax.plot(xs, ms, color=colour, label=impl)
                ax.fill_between(xs, [m - h for m, h in zip(ms, hs)], [m + h for m, h in zip(ms, hs)], color=colour,
                                alpha=0.2)
            ax.set_title(f"{method}: {title}", fontsize=9)
            ax.set_xlabel("env steps (M)")
            if i == 0 and j == 0:
                ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _write(name: str, data: dict) -> None:
    publish("ued_vs_jaxued", name, data, markdown(data), plot=plot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--updates", type=int, default=None, help="updates per seed (default 240; --quick 6)")
    r.add_argument("--eval-every", type=int, default=None, help="updates between evaluations (default 40)")
    r.add_argument("--seeds", type=int, default=None, help="seeds per method and implementation (default 3)")
    r.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    r.add_argument("--jaxued-source", default=None, help="a checkout (or bare git dir) of DramaCow/jaxued")
    r.add_argument("--fresh", action="store_true", help="rerun our side from scratch")
    r.add_argument("--from-runs", action="store_true",
                   help="do not train our side: compare what its run folder holds (a stopped run compares at the "
                        "latest evaluation both sides reached)")
    r.add_argument("--ours-only", action="store_true",
                   help="train our side only (into its run folder, resumable); a later `run` compares")
    r.add_argument("--maze-actions", type=int, choices=(3, 7), default=3,
                   help="our maze's action space (7: jaxued's, with 4 no-ops)")
    r.add_argument("--quick", action="store_true")
    sub.add_parser("mechanism")
    sub.add_parser("budget")
    t = sub.add_parser("table")
    t.add_argument("--quick", action="store_true")
    t.add_argument("--maze-actions", type=int, choices=(3, 7), default=3)
    w = sub.add_parser("_ours")
    w.add_argument("--method", required=True)
    w.add_argument("--seeds", type=int, required=True)
    w.add_argument("--updates", type=int, required=True)
    w.add_argument("--eval-every", type=int, required=True)
    w.add_argument("--run-dir", required=True)
    w.add_argument("--quick", action="store_true")
    w.add_argument("--maze-actions", type=int, default=3)
    w.add_argument("--no-train", action="store_true")
    opts = parser.parse_args()
    {"run": cmd_run, "table": cmd_table, "mechanism": cmd_mechanism, "budget": cmd_budget, "_ours": worker_ours}[opts.cmd](opts)


if __name__ == "__main__":
    main()
