"""GRPO learning result: from the shipped ``addition-base`` model, GRPO with the verifier reward on the harder
difficulty raises held-out greedy accuracy and pass@1, over several seeds run side by side in one program.

    python benchmarks/grpo_learning.py              # -> benchmarks/results/grpo_learning.{json,md,png}
    python benchmarks/grpo_learning.py --quick      # smoke run -> grpo_learning.quick.*

Protocol:

* **Start**: ``jaxrl_self.lm.base_models.load_base_model("addition-base")`` (good at <= 3-digit addition, partly
  right at 4 digits), its task (``AdditionTask`` with the base model's settings) and prompt layout.
* **Training**: ``jaxrl_self.algos.grpo`` with the default reward (the task's verifier, 1/0), problems of
  ``--train-difficulty`` digits (default 4: the difficulty the base model is partly right on), ``--seeds`` seeds
  vmapped in one program; the run is cut into chunks of ``--eval-every`` updates of the *same* compiled program
  and evaluated between chunks.
* **Evaluation** (:func:`jaxrl_self.lm.evaluate.make_evaluate`, vmapped over seeds): a fixed held-out set
  (:func:`jaxrl_self.lm.evaluate.held_out_problems`, its own seed, never used for training draws) of
  ``--eval-problems`` problems per difficulty ``1..max_digits``; greedy accuracy (one argmax response) and
  pass@1 (mean correctness of ``--eval-samples`` samples at temperature 1), at update 0 (the base model) and
  after every chunk. Mean and 95% t-interval over seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

NAME = "grpo_learning"

FULL = dict(updates=120, eval_every=30, num_prompts=32, group_size=8, eval_problems=256, eval_samples=8, seeds=3)
QUICK = dict(updates=4, eval_every=2, num_prompts=8, group_size=4, eval_problems=16, eval_samples=2, seeds=2)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="GRPO from the addition-base model on harder problems; held-out "
                                            "greedy accuracy and pass@1 before/after/along training.")
    p.add_argument("--quick", action="store_true", help=f"smoke run {QUICK}; writes {NAME}.quick.*")
    p.add_argument("--base-model", default="addition-base",
                   help="a shipped base model's name, a model file or a pretrain run folder")
    p.add_argument("--train-difficulty", type=int, default=4, help="operand digits of the training problems")
    p.add_argument("--min-train-difficulty", type=int, default=None,
                   help="lowest training difficulty (default: = --train-difficulty)")
    for k, v in FULL.items():
        p.add_argument("--" + k.replace("_", "-"), type=int, default=None, help=f"(default {v}; quick {QUICK[k]})")
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--kl-coef", type=float, default=0.01)
    p.add_argument("--advantage", default="grpo", choices=("grpo", "rloo", "dr_grpo"))
    p.add_argument("--temperature", type=float, default=1.0, help="rollout sampling temperature")
    p.add_argument("--warmup-updates", type=int, default=10, help="linear learning-rate warm-up (updates)")
    p.add_argument("--update-epochs", type=int, default=1, help="PPO epochs per batch of responses")
    p.add_argument("--num-minibatches", type=int, default=1, help="minibatches per epoch")
    p.add_argument("--clip-eps", type=float, default=0.2, help="PPO ratio clip")
    p.add_argument("--seed", type=int, default=0, help="seed index i uses jax.random.key(seed + i)")
    p.add_argument("--dev-pretrain-steps", type=int, default=0,
                   help="development only: pretrain a model for this many steps instead of loading --base-model")
    p.add_argument("--output", default=None)
    p.add_argument("--notes", default=None,
                   help="a markdown file appended to the results' md (e.g. the tuning log of how the settings were chosen)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for k, v in preset.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.updates % args.eval_every:
        p.error(f"--updates ({args.updates}) must be a multiple of --eval-every ({args.eval_every})")
    return args


def load_start(args):
    """``(params, model_config, prompt_layout, task, description)`` of the starting model."""
    import jax

    from jaxrl_self import envs
    from jaxrl_self.lm import base_models

    if args.dev_pretrain_steps:  # development only: the base model's recipe, fewer steps
        from jaxrl_self.lm import pretrain
        from jaxrl_self.run.pretrain import RECIPES

        recipe = RECIPES[args.base_model]
        task = envs.make(recipe.task, **dict(recipe.task_kwargs))
        cfg = recipe.config.replace(num_steps=args.dev_pretrain_steps)
        state, _ = jax.jit(pretrain.make_train(cfg, task))(jax.random.key(recipe.seed))
        return state.params, cfg.model, cfg.prompt_layout, task, {"name": f"{args.base_model} (dev pretrain, "
                                                                  f"{args.dev_pretrain_steps} steps)"}
    params, model_cfg, meta = base_models.load_model_or_file(args.base_model)
    task = base_models.base_model_task(meta)
    desc = {"name": args.base_model, "description": meta.get("description"), "task": meta.get("task"),
            "sha256": meta.get("sha256") or meta.get("params_sha256")}
    return params, model_cfg, meta["prompt_layout"], task, desc


def main(argv=None) -> None:
    args = parse_args(argv)
    import jaxrl_self  # noqa: F401  (XLA guard before any JAX computation)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_self.algos import grpo
    from jaxrl_self.lm import evaluate as lm_eval
    from jaxrl_self.run.runner import seed_keys
    from jaxrl_self.run.stats import mean_ci

    t_start = time.perf_counter()
    machine = C.machine_info()
    params0, model_cfg, layout, task, base_desc = load_start(args)
    top = lm_eval.max_difficulty(task)
    R = task.solution_len
    hard = args.train_difficulty
    lo = hard if args.min_train_difficulty is None else args.min_train_difficulty
    config = grpo.Config(num_updates=args.updates, num_prompts=args.num_prompts, group_size=args.group_size,
                         max_new_tokens=R, prompt_layout=layout, min_difficulty=lo, max_difficulty=hard,
                         learning_rate=args.learning_rate, kl_coef=args.kl_coef, advantage=args.advantage,
                         temperature=args.temperature, warmup_updates=args.warmup_updates,
                         update_epochs=args.update_epochs, num_minibatches=args.num_minibatches,
                         clip_eps=args.clip_eps, model=model_cfg)
    train = grpo.make_train(config, task, init_params=params0, model_config=model_cfg)
    difficulties = tuple(range(1, top + 1))
    problems = lm_eval.held_out_problems(task, difficulties, args.eval_problems)
    ecfg = lm_eval.EvalConfig(num_samples=args.eval_samples, ks=(1, args.eval_samples), max_new_tokens=R)
    evaluate = lm_eval.make_evaluate(model_cfg, task, ecfg, prompt_layout=layout)

    keys = seed_keys(args.seed, args.seeds)
    t = time.perf_counter()
    init = jax.jit(jax.vmap(train.init)).lower(keys).compile()
    states = init(keys)
    chunk = jax.jit(jax.vmap(lambda s: train.run(s, args.eval_every))).lower(states).compile()
    eval_all = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None)))
    eval_key = lambda i: jax.vmap(lambda s: jax.random.fold_in(jax.random.key(777_000 + i), s))(  # noqa: E731
        jnp.arange(args.seeds))
    eval_compiled = eval_all.lower(states.params, eval_key(0), problems).compile()
    compile_s = time.perf_counter() - t
    C.log(f"[{NAME}] compiled in {compile_s:.1f} s; {args.seeds} seeds x {args.updates} updates of "
          f"{args.num_prompts} x {args.group_size} responses on {lo}..{hard}-digit problems")

    def record(res) -> dict[str, Any]:
        """Per seed: {difficulty: {greedy, pass1}} plus overall."""
        g = np.asarray(res.by_difficulty.greedy_accuracy)  # [S, D]
        p1 = np.asarray(res.by_difficulty.pass_at_1)
        return {"greedy": g.tolist(), "pass1": p1.tolist(),
                "greedy_overall": np.asarray(res.overall.greedy_accuracy).tolist(),
                "pass1_overall": np.asarray(res.overall.pass_at_1).tolist()}

    curve = []
    train_rows = []
    run_s = eval_s = 0.0
    t = time.perf_counter()
    curve.append({"update": 0, **record(jax.block_until_ready(eval_compiled(states.params, eval_key(0), problems)))})
    eval_s += time.perf_counter() - t
    for i in range(args.updates // args.eval_every):
        t = time.perf_counter()
        states, m = jax.block_until_ready(chunk(states))
        run_s += time.perf_counter() - t
        train_rows.append({f.name: np.asarray(getattr(m, f.name)) for f in dataclasses.fields(m)})  # [S, E]
        step = (i + 1) * args.eval_every
        t = time.perf_counter()
        curve.append({"update": step,
                      **record(jax.block_until_ready(eval_compiled(states.params, eval_key(step), problems)))})
        eval_s += time.perf_counter() - t
        last = curve[-1]
        C.log(f"[{NAME}] update {step}: train reward {np.mean(train_rows[-1]['reward_mean'][:, -1]):.3f}, "
              f"held-out {hard}-digit greedy {np.mean(np.asarray(last['greedy'])[:, hard - 1]):.3f} "
              f"pass@1 {np.mean(np.asarray(last['pass1'])[:, hard - 1]):.3f}")
    if np.any(np.asarray(states.nonfinite_update) >= 0):
        raise FloatingPointError(f"non-finite loss: {np.asarray(states.nonfinite_update).tolist()}")
    metrics = {k: np.concatenate([r[k] for r in train_rows], axis=1) for k in train_rows[0]}  # [S, U]

    # ---------------------------------------------------------------------------------------- summary
    def ci(values) -> dict[str, Any]:
        return mean_ci(np.asarray(values, np.float64)).as_dict()

    first, final = curve[0], curve[-1]
    summary = {}
    for d in difficulties:
        summary[str(d)] = {
            "greedy_before": ci(np.asarray(first["greedy"])[:, d - 1]),
            "greedy_after": ci(np.asarray(final["greedy"])[:, d - 1]),
            "pass1_before": ci(np.asarray(first["pass1"])[:, d - 1]),
            "pass1_after": ci(np.asarray(final["pass1"])[:, d - 1]),
            "greedy_gain_per_seed": (np.asarray(final["greedy"])[:, d - 1] - np.asarray(first["greedy"])[:, d - 1]).tolist(),
            "pass1_gain_per_seed": (np.asarray(final["pass1"])[:, d - 1] - np.asarray(first["pass1"])[:, d - 1]).tolist(),
        }
    hard_s = summary[str(hard)]
    improved = (all(g > 0 for g in hard_s["greedy_gain_per_seed"]) and all(g > 0 for g in hard_s["pass1_gain_per_seed"]))
    output = args.output or (NAME + (".quick" if args.quick else ""))
    data = {
        "benchmark": NAME,
        "output": output,
        "quick": args.quick,
        "created": C.utc_now(),
        "command": " ".join(["python", "benchmarks/grpo_learning.py", *sys.argv[1:]]),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "compile_s": round(compile_s, 1), "train_s": round(run_s, 1), "eval_s": round(eval_s, 1),
        "machine": machine,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "base_model": base_desc,
        "task": repr(task),
        "prompt_layout": layout,
        "config": {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                   if f.name != "model"} | {"model": dataclasses.asdict(model_cfg)},
        "seeds": args.seeds, "seed": args.seed,
        "eval": {"problems_per_difficulty": args.eval_problems, "samples": args.eval_samples,
                 "held_out_seed": lm_eval.HELD_OUT_SEED, "difficulties": list(difficulties)},
        "train_difficulty": [lo, hard],
        "improved_on_every_seed": improved,
        "summary": summary,
        "curve": curve,
        "train_metrics": {k: v.tolist() for k, v in metrics.items()
                          if k in ("reward_mean", "accuracy", "kl", "entropy", "response_length", "clip_fraction",
                                   "degenerate_groups", "grad_norm", "loss")},
    }
    md = render_markdown(data)
    if args.notes:
        md += "\n\n" + Path(args.notes).read_text().strip() + "\n"
    json_path, md_path = C.write_results(output, _jsonable(data), md)
    png = C.RESULTS_DIR / f"{output}.png"
    plot(data, png)
    C.log(f"[{NAME}] done in {data['wall_s']} s -> {json_path.relative_to(C.REPO_ROOT)}, {png.name}")
    print(md_path.read_text())


def _jsonable(x):
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def _fmt(c: dict) -> str:
    if c["n"] < 2:
        return f"{c['mean']:.3f}"
    return f"{c['mean']:.3f} ± {(c['ci_high'] - c['ci_low']) / 2:.3f}"


def render_markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    cfg = data["config"]
    lo, hard = data["train_difficulty"]
    lines = [f"# GRPO learning: {data['base_model']['name']} on {lo}..{hard}-digit addition", ""]
    if data["quick"]:
        lines += ["> **SMOKE RUN (`--quick`)**: a few updates on a tiny batch; not a result.", ""]
    lines += [
        f"- created {data['created']} by `{data['command']}`; wall {data['wall_s']} s (compile {data['compile_s']} s, "
        f"training {data['train_s']} s, evaluation {data['eval_s']} s)",
        f"- machine: {m['cpu_model']}, {m['cpus_usable']}/{m['cpu_count']} CPUs; load average at start "
        f"{m['loadavg']}, at the end {data['loadavg_end']} (a shared machine: timings are not benchmarks)",
        f"- {data['seeds']} seeds vmapped in one program; {cfg['num_updates']} updates of {cfg['num_prompts']} prompts "
        f"x {cfg['group_size']} responses, advantage `{cfg['advantage']}`, lr {cfg['learning_rate']}, "
        f"KL coef {cfg['kl_coef']}, clip {cfg['clip_eps']}, temperature {cfg['temperature']}, "
        f"max_new_tokens {cfg['max_new_tokens']}; task {data['task']}, prompt layout `{data['prompt_layout']}`",
        f"- held-out: {data['eval']['problems_per_difficulty']} problems per difficulty "
        f"(`held_out_problems`, seed {data['eval']['held_out_seed']}); pass@1 = mean over "
        f"{data['eval']['samples']} samples at temperature 1; mean ± 95% t-interval over seeds",
        "",
        "| digits | greedy before | greedy after | pass@1 before | pass@1 after |",
        "|---:|---:|---:|---:|---:|",
    ]
    for d, s in data["summary"].items():
        mark = " (trained)" if lo <= int(d) <= hard else ""
        lines.append(f"| {d}{mark} | {_fmt(s['greedy_before'])} | {_fmt(s['greedy_after'])} | "
                     f"{_fmt(s['pass1_before'])} | {_fmt(s['pass1_after'])} |")
    s = data["summary"][str(hard)]
    lines += ["", f"{hard}-digit gain per seed: greedy {[round(x, 3) for x in s['greedy_gain_per_seed']]}, pass@1 "
              f"{[round(x, 3) for x in s['pass1_gain_per_seed']]}; improved on every seed: "
              f"**{data['improved_on_every_seed']}**.", "",
              f"Curve: `{data['output']}.png` (held-out greedy accuracy and pass@1 on "
              f"{hard}-digit problems vs updates, per seed and mean; training reward).", "",
              "Method: `benchmarks/grpo_learning.py` (module docstring)."]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hard = data["train_difficulty"][1]
    x = np.asarray([c["update"] for c in data["curve"]])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, title in ((axes[0], "greedy", "greedy accuracy"), (axes[1], "pass1", "pass@1")):
        y = np.asarray([np.asarray(c[key])[:, hard - 1] for c in data["curve"]])  # [T, S]
        for s in range(y.shape[1]):
            ax.plot(x, y[:, s], color="tab:blue", alpha=0.3, lw=1)
        ax.plot(x, y.mean(1), color="tab:blue", lw=2, label=f"{hard}-digit (mean of {y.shape[1]} seeds)")
        others = [d for d in data["eval"]["difficulties"] if d != hard]
        for d in others:
            yd = np.asarray([np.asarray(c[key])[:, d - 1] for c in data["curve"]]).mean(1)
            ax.plot(x, yd, lw=1, ls="--", label=f"{d}-digit")
        ax.set_title(f"held-out {title}")
        ax.set_xlabel("GRPO update")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    r = np.asarray(data["train_metrics"]["reward_mean"])  # [S, U]
    u = np.arange(1, r.shape[1] + 1)
    for s in range(r.shape[0]):
        axes[2].plot(u, r[s], color="tab:green", alpha=0.3, lw=1)
    axes[2].plot(u, r.mean(0), color="tab:green", lw=2, label="training reward (verifier)")
    axes[2].set_title("training reward")
    axes[2].set_xlabel("GRPO update")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"GRPO from {data['base_model']['name']}: {data['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
