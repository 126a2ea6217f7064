"""The curricula on a second UED domain: DR vs PLR⊥ vs ACCEL on Kinetix (``kinetix:s``), held-out solved rates.

Usage::

    python benchmarks/ued_second_domain.py                          # 3 methods x 3 seeds -> results/ued_second_domain.*
    python benchmarks/ued_second_domain.py --steps-per-seed 1e6 --seeds 5
    python benchmarks/ued_second_domain.py --methods dr accel
    python benchmarks/ued_second_domain.py --quick                  # smoke test: tiny budget, 2 seeds
    python benchmarks/ued_second_domain.py table                    # rewrite markdown and plot from the JSON

**Setup.** ``kinetix-env`` 3.0.2 pins ``jax<=0.9.0``, so the runs happen in a venv of their own,
``benchmarks/.venvs/kinetix`` (built on first use: ``kinetix-env==3.0.2``, ``jax[cpu]<=0.9.0``, pytest and this checkout
installed editable; ``tests/test_adapter_kinetix.py`` runs there); this script, run from any interpreter, starts one worker process per method there.

**Runs.** Each method is our ``run_training`` of ``dr`` / ``robust_plr`` / ``accel`` on ``kinetix:s`` (the
Kinetix paper's small levels, symbolic-flat observations, 11 discrete actions, 256-step episodes, Kinetix's
dense shaping 0.1 for training) with every seed vmapped in one program. The student is the curricula's PPO
with a CPU-sized rollout and an MLP (the maze's LSTM-256 agent needs image observations): ``STUDENT`` below.
The curricula keep their defaults (MaxMC scores, rank prioritisation, staleness, replay probability, minimum
fill 50%; ACCEL: 5 Kinetix mutation edits per level) except the buffer, scaled to the budget: ``CAPACITY``
(256) slots instead of 4000, which would not reach its minimum fill at this budget.
Levels for DR and for PLR's "new" cycles come from Kinetix's own random generator.

**Held-out evaluation**: the ten hand-designed ``s`` levels Kinetix ships (``kinetix/levels/s``), each
attempted ``eval_attempts`` times with the policy sampling, sparse reward (``dense_reward_scale = 0``), so
"solved" means the green shape touched the blue one within 256 steps. Reported: the mean solved rate over the
ten levels per evaluation (curves), the final solved rate per level, and per method the mean and 95% Student-t
interval over seeds; pairwise Welch 95% intervals of the final differences.

Outputs: ``benchmarks/results/ued_second_domain{,.quick}.{json,md,png}``; run folders under
``runs/ued_second_domain`` (git-ignored; a finished method is not rerun, an interrupted one resumes).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO_ROOT,
    RESULTS_DIR,
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
)

ENV = "kinetix:s"
METHODS = ("dr", "robust_plr", "accel")
RUNS_ROOT = REPO_ROOT / "runs" / "ued_second_domain_c256"  # c256: the buffer capacity (see CAPACITY)
#: the student's PPO (the curricula's student_ppo with these fields replaced)
STUDENT = {"num_envs": 32, "num_steps": 128, "network": "mlp", "hidden_sizes": (256, 256), "learning_rate": 3e-4,
           "update_epochs": 4, "num_minibatches": 4, "gamma": 0.995, "gae_lambda": 0.9, "ent_coef": 0.01}
#: the venv also runs tests/test_adapter_kinetix.py: benchmarks/.venvs/kinetix/bin/python -m pytest tests/test_adapter_kinetix.py
#: PLR's buffer, scaled to the CPU budget. With the default 4000 slots (minimum fill 50%) the buffer held 1098
#: levels after 400k env steps per seed: all 97 cycles were new levels, so PLR⊥ and ACCEL never replayed (and
#: PLR⊥'s student, which learns only on replays, never took a gradient step). 256 slots fill in about 12 updates.
CAPACITY = 256
KINETIX_REQUIREMENTS = ["kinetix-env==3.0.2", "jax[cpu]<=0.9.0", "pytest", "pytest-timeout", "pytest-xdist", "-e",
                        str(REPO_ROOT)]


def kinetix_python() -> Path:
    return ensure_venv("kinetix", KINETIX_REQUIREMENTS)


def make_config(method: str, steps_per_seed: int, eval_every: int, eval_attempts: int):
    from jaxrl_self import algos
    from jaxrl_self.curricula.common import student_ppo

    ppo = student_ppo(**STUDENT)
    updates = max(1, steps_per_seed // (ppo.num_envs * ppo.num_steps))
    ppo = ppo.replace(total_timesteps=updates * ppo.num_envs * ppo.num_steps)
    config = algos.get(method).Config(ppo=ppo, eval_every=eval_every, eval_attempts=eval_attempts,
                                      eval_max_steps=256)
    if hasattr(config, "sampler"):
        config = config.replace(sampler=config.sampler.replace(capacity=CAPACITY))
    return config


# ============================================================================================ worker (kinetix venv)
def worker(args) -> None:
    import jaxrl_self  # noqa: F401  (XLA guard)
    import numpy as np

    from jaxrl_self import algos, envs
    from jaxrl_self.run.checkpoint import config_to_dict
    from jaxrl_self.run.metrics import MEAN_SEED, read_jsonl
    from jaxrl_self.run.runner import RunOptions, run_training

    config = make_config(args.method, args.steps_per_seed, args.eval_every, args.eval_attempts)
    run_dir = Path(args.run_dir)
    done = run_dir / "summary.json"
    resume = (run_dir / "checkpoints").exists() and not done.exists()
    t = time.perf_counter()
    if not done.exists():
        options = RunOptions(seeds=args.seeds, seed=0, keep_checkpoints=1, progress=False, run_dir=str(run_dir),
                             resume=resume)
        run_training(algos.get(args.method), ENV, config, options)
    wall = time.perf_counter() - t
    levels = list(envs.make(ENV).heldout_levels())
    rows = [x for x in read_jsonl(run_dir / "metrics.jsonl") if x.get("seed") != MEAN_SEED]
    per_seed: dict[int, dict] = {}
    for x in sorted(rows, key=lambda r: (r["seed"], r["update"])):
        s = per_seed.setdefault(x["seed"], {"seed": x["seed"], "evals": [], "train_return": [], "_r": []})
        if x.get("episode_return_valid"):
            s["_r"].append(x["episode_return"])
        if x.get("eval_valid"):
            s["evals"].append({"update": x["update"], "env_steps": x["env_steps"],
                               "solved_rate": x["eval.solved_rate_named"], "return": x["eval.mean_return_named"],
                               "per_level": {n: x[f"eval.solved_rate.{n}"] for n in levels},
                               "buffer_mean_score": x.get("buffer.mean_score")})
            s["train_return"].append(float(np.mean(s["_r"])) if s["_r"] else None)
            s["_r"] = []
    for s in per_seed.values():
        del s["_r"]
    emit_result({"method": args.method, "wall_s": wall, "resumed": resume, "levels": levels,
                 "config": config_to_dict(config), "seeds": list(per_seed.values()),
                 "worker": worker_info(("jax", "jaxlib", "flax", "kinetix-env", "jax2d", "numpy"))})


# ============================================================================================ statistics
def summarise(data: dict) -> dict:
    out = {"curves": {}, "final": {}, "pairs": {}}
    finals = {}
    for method, run in data["methods"].items():
        seeds = run["seeds"]
        steps = sorted({e["env_steps"] for s in seeds for e in s["evals"]})
        out["curves"][method] = [{"env_steps": st, "solved_rate": t_interval(
            [e["solved_rate"] for s in seeds for e in s["evals"] if e["env_steps"] == st])} for st in steps]
        last = [s["evals"][-1] for s in seeds]
        finals[method] = [e["solved_rate"] for e in last]
        out["final"][method] = {"env_steps": last[0]["env_steps"], "solved_rate": t_interval(finals[method]),
                                "per_level": {n: t_interval([e["per_level"][n] for e in last]) for n in run["levels"]},
                                "train_return_last": t_interval([s["train_return"][-1] for s in seeds
                                                               if s["train_return"] and s["train_return"][-1] is not None])}
    names = list(finals)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if len(finals[a]) > 1 and len(finals[b]) > 1:
                out["pairs"][f"{a} - {b}"] = welch_difference(finals[a], finals[b])
    return out


def _fmt(ci: dict, digits: int = 3) -> str:
    if ci.get("mean") is None:
        return "–"
    return f"{ci['mean']:.{digits}f}" + (f" ± {ci['half']:.{digits}f}" if ci.get("half") is not None else "")


def markdown(data: dict) -> str:
    s = data["summary"]
    lines = ["# Curricula on a second UED domain: Kinetix (kinetix:s)", "",
             f"Created {data['created']} on {data['machine'].get('cpu_model', '?')} (load at start "
             f"{data['machine'].get('loadavg', '?')}); {data['seeds']} seeds per method, {data['env_steps_per_seed']:,} "
             f"env steps per seed; versions {json.dumps(data['versions'])}. Intervals: 95% Student-t over seeds.", "",
             "## Held-out solved rate (mean of the ten Kinetix s evaluation levels), final evaluation", "",
             "| method | solved rate | training return (last update) | wall (min) |", "|---|---|---|---:|"]
    for m, f in s["final"].items():
        lines.append(f"| {m} | {_fmt(f['solved_rate'])} | {_fmt(f['train_return_last'], 2)} | "
                     f"{data['methods'][m]['wall_s'] / 60:.1f} |")
    if s["pairs"]:
        lines += ["", "Pairwise differences of the final solved rate (Welch 95%):", ""]
        for k, w in s["pairs"].items():
            lines.append(f"- {k}: {w['diff']:+.3f} [{w['low']:+.3f}, {w['high']:+.3f}]"
                         + (" (interval holds 0)" if w["equal"] else " (interval excludes 0)"))
    levels = next(iter(data["methods"].values()))["levels"]
    lines += ["", "## Final solved rate per held-out level", "",
              "| level | " + " | ".join(s["final"]) + " |", "|---|" + "---|" * len(s["final"])]
    for n in levels:
        lines.append(f"| {n} | " + " | ".join(_fmt(f["per_level"][n], 2) for f in s["final"].values()) + " |")
    lines += ["", "## Curves: held-out solved rate over env steps", "",
              "| env steps | " + " | ".join(s["curves"]) + " |", "|---:|" + "---|" * len(s["curves"])]
    steps = sorted({c["env_steps"] for cs in s["curves"].values() for c in cs})
    for st in steps:
        cells = []
        for cs in s["curves"].values():
            c = next((c for c in cs if c["env_steps"] == st), None)
            cells.append(_fmt(c["solved_rate"]) if c else "–")
        lines.append(f"| {st:,} | " + " | ".join(cells) + " |")
    lines += ["", "Student PPO: " + json.dumps(STUDENT) + f"; eval {data['eval_attempts']} attempts per level "
              f"every {data['eval_every']} updates.", "", data["method"], ""]
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for method, curve in data["summary"]["curves"].items():
        xs = [c["env_steps"] / 1e6 for c in curve]
        ms = [c["solved_rate"]["mean"] for c in curve]
        hs = [c["solved_rate"]["half"] or 0.0 for c in curve]
        ax.plot(xs, ms, label=method)
        ax.fill_between(xs, [m - h for m, h in zip(ms, hs)], [m + h for m, h in zip(ms, hs)], alpha=0.2)
    ax.set_xlabel("env steps per seed (M)")
    ax.set_ylabel("held-out solved rate (10 Kinetix s levels)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _write(name: str, data: dict) -> None:
    data["summary"] = summarise(data)
    publish("ued_second_domain", name, data, markdown(data), plot=plot)


# ============================================================================================ commands
def cmd_run(opts) -> None:
    name = "ued_second_domain" + (".quick" if opts.quick else "")
    steps = int(float(opts.steps_per_seed or (2 * 32 * 128 if opts.quick else 400_000)))
    seeds = opts.seeds or (2 if opts.quick else 3)
    eval_every = opts.eval_every or (1 if opts.quick else 20)
    attempts = opts.eval_attempts or (2 if opts.quick else 5)
    python = kinetix_python()
    data = {"benchmark": "ued_second_domain", "created": utc_now(), "machine": machine_info(), "quick": opts.quick,
            "env": ENV, "env_steps_per_seed": steps, "seeds": seeds, "eval_every": eval_every,
            "eval_attempts": attempts, "venv": venv_metadata(python), "student": STUDENT,
            "method": __doc__.split("**Runs.**")[1].split("Outputs:")[0].strip(), "methods": {}}
    root = RUNS_ROOT / ("quick" if opts.quick else "full")
    for method in opts.methods or METHODS:
        log(f"[ued_second_domain] {method}: {seeds} seeds x {steps:,} steps on {ENV}")
        data["methods"][method] = run_worker(python, __file__, [
            "_worker", "--method", method, "--seeds", seeds, "--steps-per-seed", steps, "--eval-every", eval_every,
            "--eval-attempts", attempts, "--run-dir", root / method], env=worker_env(None))
        log(f"[ued_second_domain] {method} done in {data['methods'][method]['wall_s'] / 60:.1f} min")
    data["versions"] = next(iter(data["methods"].values()))["worker"]["versions"]
    _write(name, data)


def cmd_table(opts) -> None:
    name = "ued_second_domain" + (".quick" if opts.quick else "")
    data = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    _write(name, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    for p in (parser, sub.add_parser("run")):
        p.add_argument("--steps-per-seed", type=float, default=None, help="env steps per seed (default 400k)")
        p.add_argument("--seeds", type=int, default=None, help="seeds per method (default 3)")
        p.add_argument("--methods", nargs="+", choices=METHODS, default=None)
        p.add_argument("--eval-every", type=int, default=None, help="updates between evaluations (default 20)")
        p.add_argument("--eval-attempts", type=int, default=None, help="attempts per held-out level (default 5)")
        p.add_argument("--quick", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("--quick", action="store_true")
    w = sub.add_parser("_worker")
    w.add_argument("--method", required=True)
    w.add_argument("--seeds", type=int, required=True)
    w.add_argument("--steps-per-seed", type=int, required=True)
    w.add_argument("--eval-every", type=int, required=True)
    w.add_argument("--eval-attempts", type=int, required=True)
    w.add_argument("--run-dir", required=True)
    opts = parser.parse_args()
    {None: cmd_run, "run": cmd_run, "table": cmd_table, "_worker": worker}[opts.cmd](opts)


if __name__ == "__main__":
    main()
