"""The grounded maze teacher against regret (PAIRED), DR and ACCEL: the same student, the same budget of student
training steps, held-out solved rates on the named mazes.

    python benchmarks/soar_maze.py                       # 3 seeds, 2.1M student steps each, ~45 min on 2 cores
    python benchmarks/soar_maze.py --methods grounded learnability no_promotion --output soar_maze_ablations
    python benchmarks/soar_maze.py --methods grounded --g 2 --r 1 --inner 8 --promotion-window 1 \
        --promotion-threshold 0 --output soar_maze_fix      # more of the budget reaches the deployed student
    python benchmarks/soar_maze.py --quick               # a smoke run (1 seed, tiny budget)
    python benchmarks/soar_maze.py --render              # rewrite the .md and the figures from the .json

The question: does a level designer paid by the student's measured progress on hard mazes
(:mod:`jaxrl_self.teach.soar_maze`) make the student improve on held-out mazes faster than one paid by regret
(:mod:`jaxrl_self.curricula.paired`), or than random levels (DR) and ACCEL?

Every method trains the same student: the maze LSTM agent (64 units), PPO with 16 levels x 128 steps per
update, 5 epochs of 1 minibatch, lr 3e-4 (constant; the grounded teacher's copies run only a few updates each, so no
method anneals), γ 0.995, λ 0.98, entropy 1e-3. PAIRED and the grounded teacher use the same adversary (PAIRED's
editor with 25 wall steps, the generator's wall budget; a 16-filter conv and 64-unit LSTM instead of minimax's
128/256, which a CPU cannot afford; entropy 0.05). ACCEL: jaxued's settings except a 1,000-level buffer. The
budget counts student *training* steps: DR's and ACCEL's environments, both PAIRED students, every copy of the
grounded teacher's inner loop (promoted or not). The grounded teacher also spends steps measuring (its reward's
episodes and the hard-maze selection); they are reported beside, not counted.

Each method's 3 seeds run vmapped in one program, in ``--evals`` chunks; after each chunk the deployed student
(DR/ACCEL's, PAIRED's protagonist, the grounded teacher's baseline) is evaluated on the held-out mazes (8 named
mazes, 4 PerfectMaze, 4 FourRooms; 10 attempts each) and, for PAIRED and the grounded teacher, 8 levels are designed
by seed 0's adversary and rendered. At the end every method's initial and final students are also scored on the
grounded teacher's hard training mazes (per seed, 10 fresh attempts each; the mazes were chosen by 0 successes in 8
attempts of the grounded run's starting student, so a fresh measurement of a starting student is above 0: the
selection's regression to the mean).

Writes ``benchmarks/results/<output>.{json,md}``, ``<output>.png`` (held-out curves) and ``<output>.levels.png``
(the teachers' levels over training).
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import jaxrl_self  # noqa: E402,F401  (XLA guard before the backend starts)
from _common import RESULTS_DIR, machine_info, utc_now, worker_info, write_results  # noqa: E402

#: method -> (algorithm, config changes on top of the shared ones)
METHODS = {
    "dr": ("dr", {}),
    "accel": ("accel", {}),
    "paired": ("paired", {}),
    "grounded": ("soar_maze", {}),
    "learnability": ("soar_maze", {"teacher_reward": "learnability"}),
    "no_promotion": ("soar_maze", {"promotion": False}),
}
DEFAULT_METHODS = ("dr", "accel", "paired", "grounded")
TEACHERS = ("paired", "soar_maze")
LEVEL_FIELDS = ("wall_map", "goal_pos", "agent_pos", "agent_dir")
CURVES = {"paired": ("regret", "level.mean_walls", "level.mean_shortest_path", "level.solvable"),
          "soar_maze": ("reward_mean", "reward_max", "promotions", "baseline_hard_solved", "student_hard_solved",
                        "level.mean_walls", "level.mean_shortest_path", "level.solvable")}


def method_config(method: str, args):
    from jaxrl_self import algos
    from jaxrl_self.curricula import paired

    name, extra = METHODS[method]
    base = algos.get(name).Config()
    student = base.ppo.replace(num_envs=args.num_envs, num_steps=args.num_steps, lstm_features=args.lstm,
                               learning_rate=args.lr, anneal_lr=False, total_timesteps=args.steps)
    # held-out evaluations happen between chunks (run_method), not inside the program
    changes = dict(ppo=student, eval_every=-1, eval_procedural=4, eval_attempts=10)
    if name in TEACHERS:
        changes["adversary"] = paired.AdversaryConfig(
            n_walls=args.wall_steps, conv_features=args.adversary_conv,
            ppo=paired.adversary_ppo(lstm_features=args.adversary_lstm))
    if name == "accel":
        changes["sampler"] = base.sampler.replace(capacity=args.buffer)
    if name == "soar_maze":
        changes.update(num_batches=args.g, num_students=args.r, inner_updates=args.inner,
                       reward_levels=args.reward_levels, reward_attempts=1, hard_candidates=args.hard_candidates,
                       promotion_window=args.promotion_window, promotion_threshold=args.promotion_threshold,
                       hard_attempts=8, hard_size=min(64, args.hard_candidates))
    return name, base.replace(**changes, **extra)


def deployed(name: str, state):
    """The student a method deploys: PAIRED's protagonist, the grounded teacher's baseline, DR/ACCEL's student."""
    return state.params.protagonist if name == "paired" else state.params


def run_method(method: str, args, env) -> dict:
    import jax
    import numpy as np

    from jaxrl_self import algos
    from jaxrl_self.curricula import common, evaluation, paired

    name, config = method_config(method, args)
    module = algos.get(name)
    train = module.make_train(config, env)
    k = max(1, train.num_updates // args.evals)
    student = common.make_student(config, env, None, 1)
    evaluate, heldout = common.make_student_eval(config, student)
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    eval_keys = jax.random.split(jax.random.key(args.seed + 1000), args.seeds)

    @jax.jit
    def heldout_eval(params):
        return jax.vmap(lambda p, key: evaluation.summarize(heldout, evaluate(p, key)))(params, eval_keys)

    run = jax.jit(jax.vmap(functools.partial(train.run, num_updates=k)))
    t0 = time.perf_counter()
    state = jax.jit(jax.vmap(train.init))(keys)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    points = []  # (env_steps per seed, eval metrics per seed)
    curves: dict[str, list] = {c: [] for c in CURVES.get(name, ())}
    designs = []

    def record(state):
        ev = jax.device_get(heldout_eval(deployed(name, state)))
        points.append({"env_steps": int(np.asarray(state.env_steps)[0]),
                       "named": np.asarray(ev.solved_rate_named).tolist(),
                       "groups": {g: np.asarray(v).tolist() for g, v in ev.solved_rate.items()}})
        if name in TEACHERS:
            adv = jax.tree.map(lambda x: x[0], state.params.adversary if name == "paired" else state.adversary)
            editor = paired.make_editor(config.adversary, env)
            net = paired.make_adversary_network(config.adversary, editor)
            _, levels = paired.design_levels(jax.random.key(7), net, adv, editor, 8, config.adversary.design_steps)
            designs.append({f: np.asarray(getattr(levels, f)).tolist() for f in LEVEL_FIELDS})

    record(state)
    initial = deployed(name, state)
    t1 = time.perf_counter()
    for c in range(args.evals):
        state, metrics = run(state)
        jax.block_until_ready(state)
        for key in curves:
            value = metrics
            for part in key.split("."):
                value = getattr(value, part)
            curves[key].append(np.asarray(value).mean(0).tolist())  # mean over seeds, per update
        record(state)
        print(f"  {method}: chunk {c + 1}/{args.evals}, {points[-1]['env_steps']} student steps, named solved "
              f"{np.mean(points[-1]['named']):.3f}, {time.perf_counter() - t1:.0f} s", flush=True)
    wall = time.perf_counter() - t1
    out = {"algorithm": name, "config": _config_dict(config), "updates": k * args.evals, "updates_per_chunk": k,
           "init_s": round(init_s, 1), "train_s": round(wall, 1), "points": points,
           "curves": {key: [x for chunk in v for x in chunk] for key, v in curves.items()},
           "final_student": deployed(name, state), "initial_student": initial}
    if name == "soar_maze":
        out["measure_steps"] = int(np.asarray(state.measure_steps)[0])
        out["hard_qualified"] = np.asarray(state.hard.qualified).tolist()
        out["hard"] = state.hard
    if designs:
        out["designs"] = designs
    return out


def _config_dict(config) -> dict:
    from jaxrl_self.run.checkpoint import config_to_dict

    return config_to_dict(config)


def hard_maze_scores(results: dict, env, args) -> None:
    """Every method's final student on the grounded teacher's hard training mazes (seed by seed)."""
    import jax
    import numpy as np

    from jaxrl_self.curricula import common, evaluation

    hard = next((m["hard"] for m in results["methods"].values() if "hard" in m), None)
    if hard is None:
        return
    _, config = method_config("dr", args)
    student = common.make_student(config, env, None, 1)
    keys = jax.random.split(jax.random.key(args.seed + 2000), args.seeds)

    @jax.jit
    def score(params, levels, count, key):
        played = evaluation.play_levels(student.network, env, params, key, levels, num_attempts=10,
                                        max_steps=config.eval_max_steps, env_params=student.env_params)
        rate = played.solved.astype(np.float32).mean(1)
        return (rate * (jax.numpy.arange(rate.shape[0]) < count)).sum() / jax.numpy.maximum(count, 1)

    for m in results["methods"].values():
        for which in ("initial", "final"):
            m[f"hard_solved_{which}"] = np.asarray(jax.vmap(score)(m[f"{which}_student"], hard.levels, hard.count,
                                                                   keys)).tolist()


def fmt(xs) -> str:
    import numpy as np

    from jaxrl_self.run.stats import mean_ci

    a = np.asarray(xs, float)
    if a.size < 2:
        return f"{a.mean():.3f}"
    ci = mean_ci(a)
    return f"{ci.mean:.3f} ± {ci.half_width:.3f}"


def markdown(results: dict) -> str:
    import numpy as np

    a = results["args"]
    lines = ["# The grounded maze teacher against regret, DR and ACCEL", "",
             f"Measured {results['created']} on {results['machine']['cpu_model']} "
             f"({results['machine'].get('cpus_usable')} usable CPUs, load {results['machine'].get('loadavg')}; "
             f"{results['worker'].get('versions')}); {a['seeds']} seeds per method (mean ± 95% t-interval over "
             f"seeds); budget {a['steps']:,} student training steps per seed.", "",
             "Re-render: `python benchmarks/soar_maze.py --render --output " + results["output"] + "`.", "",
             "| method | named mazes, final | PerfectMaze | FourRooms | best named (any eval) | grounded teacher's "
             "hard mazes, start → end | updates | train s |", "|---|---|---|---|---|---|---|---|"]
    for method, m in results["methods"].items():
        last = m["points"][-1]
        best = max(np.mean(p["named"]) for p in m["points"])
        hard = (f"{fmt(m['hard_solved_initial'])} → {fmt(m['hard_solved_final'])}" if "hard_solved_final" in m
                else "–")
        lines.append(f"| {method} | {fmt(last['named'])} | {fmt(last['groups']['PerfectMaze'])} | "
                     f"{fmt(last['groups']['FourRooms'])} | {best:.3f} | {hard} | {m['updates']} | {m['train_s']} |")
    lines += ["", "Held-out solved rate of the deployed student (named mazes) by student training steps "
              "(mean over seeds):", "",
              "| steps | " + " | ".join(results["methods"]) + " |", "|---|" + "---|" * len(results["methods"])]
    first = next(iter(results["methods"].values()))
    for i in range(len(first["points"])):
        cells = []
        for m in results["methods"].values():
            cells.append(f"{np.mean(m['points'][i]['named']):.3f}" if i < len(m["points"]) else "")
        lines.append(f"| {first['points'][i]['env_steps']:,} | " + " | ".join(cells) + " |")
    for method, m in results["methods"].items():
        if m["algorithm"] != "soar_maze":
            continue
        c = m["curves"]
        lines += ["", f"**{method}**: {int(c['promotions'][-1])} promotions (mean over seeds) in {m['updates']} outer "
                  f"steps; mean reward {np.mean(c['reward_mean']):+.4f} (max over batches, mean over steps "
                  f"{np.mean(c['reward_max']):+.4f}); baseline's hard-sample solved rate first/last outer step "
                  f"{c['baseline_hard_solved'][0]:.3f} / {c['baseline_hard_solved'][-1]:.3f}; designed levels: walls "
                  f"{c['level.mean_walls'][0]:.1f} → {c['level.mean_walls'][-1]:.1f}, shortest path "
                  f"{c['level.mean_shortest_path'][0]:.1f} → {c['level.mean_shortest_path'][-1]:.1f}, solvable "
                  f"{c['level.solvable'][0]:.2f} → {c['level.solvable'][-1]:.2f}; hard mazes qualified "
                  f"{m['hard_qualified']} of {m['config']['hard_candidates']}; measurement steps "
                  f"{m['measure_steps']:,} (seed 0) beside the {a['steps']:,} training steps."]
    if "paired" in results["methods"]:
        p = results["methods"]["paired"]["curves"]
        lines += ["", f"**paired**: regret first/last {p['regret'][0]:.3f} / {p['regret'][-1]:.3f}; designed "
                  f"levels: walls {p['level.mean_walls'][0]:.1f} → {p['level.mean_walls'][-1]:.1f}, shortest "
                  f"path {p['level.mean_shortest_path'][0]:.1f} → {p['level.mean_shortest_path'][-1]:.1f}, "
                  f"solvable {p['level.solvable'][0]:.2f} → {p['level.solvable'][-1]:.2f}."]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for method, m in results["methods"].items():
        x = [p["env_steps"] for p in m["points"]]
        for ax, (title, get) in zip(axes, (("named mazes", lambda p: p["named"]),
                                           ("PerfectMaze", lambda p: p["groups"]["PerfectMaze"]),
                                           ("FourRooms", lambda p: p["groups"]["FourRooms"]))):
            y = np.asarray([get(p) for p in m["points"]], float)
            ax.plot(x, y.mean(1), label=method)
            ax.fill_between(x, y.min(1), y.max(1), alpha=0.15)
            ax.set_title(f"held-out solved rate: {title}", fontsize=9)
            ax.set_xlabel("student training steps")
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_levels(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    teachers = [(k, m) for k, m in results["methods"].items() if "designs" in m]
    if not teachers:
        return
    from jaxrl_self.envs.maze import Level
    from jaxrl_self.envs.maze.render import render_level

    rows = max(len(m["designs"]) for _, m in teachers)
    fig, axes = plt.subplots(rows, len(teachers), figsize=(7 * len(teachers), 1.1 * rows), squeeze=False)
    for j, (method, m) in enumerate(teachers):
        for i in range(rows):
            ax = axes[i, j]
            ax.axis("off")
            if i < len(m["designs"]):
                d = {f: np.asarray(v) for f, v in m["designs"][i].items()}
                images = [render_level(Level(**{f: d[f][n] for f in LEVEL_FIELDS}), tile=8)
                          for n in range(len(d["agent_dir"]))]
                ax.imshow(np.concatenate(images, axis=1))
                ax.set_title(f"{method}: {m['points'][i]['env_steps']:,} steps", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="*", default=list(DEFAULT_METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=64 * 32_768, help="student training steps per seed")
    parser.add_argument("--evals", type=int, default=8)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--lstm", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--wall-steps", type=int, default=25)
    parser.add_argument("--adversary-conv", type=int, default=16)
    parser.add_argument("--adversary-lstm", type=int, default=64)
    parser.add_argument("--buffer", type=int, default=1000)
    parser.add_argument("--g", type=int, default=4)
    parser.add_argument("--r", type=int, default=2)
    parser.add_argument("--inner", type=int, default=2)
    parser.add_argument("--reward-levels", type=int, default=32)
    parser.add_argument("--promotion-window", type=int, default=3)
    parser.add_argument("--promotion-threshold", type=float, default=0.01)
    parser.add_argument("--hard-candidates", type=int, default=512)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default="soar_maze")
    parser.add_argument("--render", action="store_true", help="rewrite the .md and figures from the .json")
    args = parser.parse_args(argv)
    import json

    if args.render:
        results = json.loads((RESULTS_DIR / f"{args.output}.json").read_text())
        write_results(args.output, results, markdown(results))
        plot(results, RESULTS_DIR / f"{args.output}.png")
        plot_levels(results, RESULTS_DIR / f"{args.output}.levels.png")
        return 0
    if args.quick:
        args.seeds, args.steps, args.evals, args.num_envs, args.num_steps, args.lstm = 1, 2 * 4 * 2 * 2 * 8 * 32, 2, \
            4, 32, 16
        args.reward_levels, args.hard_candidates, args.buffer, args.output = 4, 32, 64, "soar_maze_quick"
    from jaxrl_self import envs

    env = envs.make("maze")
    results = {"machine": machine_info(), "worker": worker_info(), "created": utc_now(), "args": vars(args),
               "output": args.output, "methods": {}}
    t0 = time.perf_counter()
    for method in args.methods:
        print(f"{method} ...", flush=True)
        results["methods"][method] = run_method(method, args, env)
        _save(results, f"{args.output}.partial")
    hard_maze_scores(results, env, args)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    _save(results, args.output)
    for suffix in ("json", "md"):
        (RESULTS_DIR / f"{args.output}.partial.{suffix}").unlink(missing_ok=True)
    plot(results, RESULTS_DIR / f"{args.output}.png")
    plot_levels(results, RESULTS_DIR / f"{args.output}.levels.png")
    print(markdown(results))
    return 0


def _save(results: dict, name: str) -> None:
    """Write the JSON and .md without the in-memory parameters and hard mazes."""
    data = {**results, "methods": {k: {f: v for f, v in m.items() if f not in ("final_student", "initial_student", "hard")}
                                   for k, m in results["methods"].items()}}
    write_results(name, data, markdown(data))


if __name__ == "__main__":
    raise SystemExit(main())
