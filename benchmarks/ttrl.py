"""TTRL and its label-free successors side by side on the same unlabeled test sets, with GRPO on true labels as the
upper bound; held-out problems of the same difficulty say whether a model learnt or memorised its own consensus.

    python benchmarks/ttrl.py                     # 3 seeds, difficulties 2 3 4 (about 20 minutes on 2 CPU cores)
    python benchmarks/ttrl.py --quick             # a smoke run: 1 difficulty, 3 methods, few updates
    python benchmarks/ttrl.py --speed-only        # one TTRL step vs one GRPO step of the same shape

Per difficulty ``d`` (the shipped ``addition-base``: strong at 2 and 3 digits, weak at 4):

* **test set**: ``num_problems`` unlabeled problems (``ttrl.test_set``); every method trains on it for the same
  number of updates (``num_prompts`` prompts x ``n_votes`` samples each), 3 seeds vmapped in one program;
* **methods**: the four label-free rewards (``majority`` = TTRL, ``majority+novelty`` = EVOL-RL's idea,
  ``self_certainty`` = Intuitor, ``semantic_entropy`` = EMPO), each without a guard, with ``guard="stop"`` and
  with ``guard="minority"``; and GRPO with the task's verifier (true labels) on the same problems;
* **before / after**: greedy accuracy, pass@1 (16 samples) and maj@16 on the test set itself and on 256
  held-out problems of the same difficulty (another seed), and greedy accuracy at every difficulty 1..5 (does
  training at 4 digits cost the easy ones?);
* **over training**: label accuracy, reward accuracy, majority ratio, pass@1 of the samples, the guard's
  departure rate (the per-update diagnostics of the reference code).

Writes ``benchmarks/results/ttrl.{json,md}`` and ``ttrl.png`` (curves), ``ttrl_speed`` entries in the JSON.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import jaxrl_self  # noqa: E402,F401  (XLA guard before the backend starts)
from _common import RESULTS_DIR, machine_info, utc_now, worker_info, write_results  # noqa: E402

REWARDS = ("majority", "majority+novelty", "self_certainty", "semantic_entropy")
GUARDS = ("none", "stop", "minority")
HELD_OUT = 256
EVAL_SAMPLES = 16


def shared(args) -> dict:
    return dict(num_updates=args.updates, num_prompts=16, n_votes=16, n_train=16, num_problems=args.problems,
                learning_rate=2e-4, kl_coef=0.01, max_new_tokens=9)


def evaluate_all(params_by_seed, model_config, task, layout, problems, key_seed=0) -> dict:
    """Greedy, pass@1 and maj@16 of every seed's parameters on ``problems`` (means over problems)."""
    import jax
    import numpy as np

    from jaxrl_self import lm

    evaluate = lm.make_evaluate(model_config, task, lm.EvalConfig(num_samples=EVAL_SAMPLES, ks=(1, EVAL_SAMPLES),
                                                                  max_new_tokens=9), prompt_layout=layout)
    res = jax.jit(jax.vmap(lambda p: evaluate(p, jax.random.key(key_seed), problems)))(params_by_seed)
    o = res.overall
    return {"greedy": np.asarray(o.greedy_accuracy).tolist(), "pass_at_1": np.asarray(o.pass_at_1).tolist(),
            f"maj_at_{EVAL_SAMPLES}": np.asarray(o.maj_at_k[..., -1]).tolist()}


def by_difficulty(params_by_seed, model_config, task, layout) -> dict:
    import jax
    import numpy as np

    from jaxrl_self import lm

    problems = lm.held_out_problems(task, (1, 2, 3, 4, 5), 64)
    evaluate = lm.make_evaluate(model_config, task, lm.EvalConfig(num_samples=0, ks=(), max_new_tokens=9),
                                prompt_layout=layout)
    res = jax.jit(jax.vmap(lambda p: evaluate(p, jax.random.key(1), problems)))(params_by_seed)
    acc = np.asarray(res.by_difficulty.greedy_accuracy)  # [seeds, max_difficulty]
    return {str(d): acc[:, d - 1].tolist() for d in range(1, 6)}


def run_method(task, difficulty, method, args, params0, model_config, layout, keys) -> dict:
    import jax
    import numpy as np

    from jaxrl_self import lm
    from jaxrl_self.algos import grpo
    from jaxrl_self.teach import ttrl

    base = ttrl.Config(difficulty=difficulty, base_model="addition-base", **shared(args))
    data = ttrl.test_set(base, task)
    t = time.perf_counter()
    if method == "grpo_true_labels":
        config = grpo.Config(num_updates=base.num_updates, num_prompts=base.num_prompts, group_size=base.n_votes,
                             max_new_tokens=base.max_new_tokens, learning_rate=base.learning_rate,
                             kl_coef=base.kl_coef, base_model="addition-base")
        train = grpo.make_train(config, task, problems=data)
    else:
        reward, guard = method.split("/")[:2]
        extra = {"min_majority_ratio": float(method.split("/")[2].split("=")[1])} if method.count("/") == 2 else {}
        train = ttrl.make_train(base.replace(reward=reward, guard=guard, **extra), task, problems=data)
    states, metrics = jax.block_until_ready(jax.jit(jax.vmap(train))(keys))
    wall = time.perf_counter() - t
    m = jax.device_get(metrics)
    curves = {}
    for name in ("label_accuracy", "reward_accuracy", "majority_ratio", "pass_at_1", "departure_ema", "base_noise",
                 "reward_mean", "accuracy"):
        if hasattr(m, name):
            curves[name] = np.asarray(getattr(m, name)).tolist()  # [seeds, updates]
    fired = np.asarray(m.guard_fired)[:, -1].tolist() if hasattr(m, "guard_fired") else None
    fired_at = np.asarray(states.guard.fired_at).tolist() if hasattr(states, "guard") else None
    return {"wall_s": round(wall, 2), "curves": curves, "guard_fired": fired, "guard_fired_at": fired_at,
            "test_set": evaluate_all(states.params, model_config, task, layout, data.problems),
            "held_out": evaluate_all(states.params, model_config, task, layout,
                                     lm.held_out_problems(task, (difficulty,), HELD_OUT)),
            "greedy_by_difficulty": by_difficulty(states.params, model_config, task, layout)}


def speed(task, args) -> dict:
    """Completions per second of one TTRL update and one GRPO update of the same shape (16 x 16, compiled)."""
    import jax
    import numpy as np

    from jaxrl_self.algos import grpo
    from jaxrl_self.teach import ttrl

    out = {}
    base = ttrl.Config(difficulty=2, base_model="addition-base", **shared(args))
    programs = {
        "ttrl": ttrl.make_train(base, task),
        "grpo": grpo.make_train(grpo.Config(num_updates=1, num_prompts=16, group_size=16, max_new_tokens=9,
                                            learning_rate=2e-4, kl_coef=0.01, base_model="addition-base",
                                            min_difficulty=2, max_difficulty=2), task),
    }
    for name, train in programs.items():
        state = jax.jit(train.init)(jax.random.key(0))
        update = jax.jit(train.update).lower(state).compile()
        state, _ = jax.block_until_ready(update(state))
        times = []
        for _ in range(7):
            t = time.perf_counter()
            state, _ = jax.block_until_ready(update(state))
            times.append(time.perf_counter() - t)
        s = float(np.median(times))
        out[name] = {"s_per_update": round(s, 4), "completions_per_s": round(256 / s, 1)}
    ratio = out["ttrl"]["completions_per_s"] / out["grpo"]["completions_per_s"]
    out["ttrl_over_grpo_completions_per_s"] = round(ratio, 3)
    return out


def fmt(xs) -> str:
    import numpy as np

    a = np.asarray(xs, float)
    return f"{a.mean():.3f}" + (f" ± {a.std(ddof=1):.3f}" if a.size > 1 else "")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    diffs = list(results["difficulties"])
    fig, axes = plt.subplots(2, len(diffs), figsize=(5.2 * len(diffs), 7.5), squeeze=False)
    for j, d in enumerate(diffs):
        runs = results["difficulties"][d]["methods"]
        for method, r in runs.items():
            if "/" in method and not method.endswith("/none"):
                continue  # the guarded variants are in the table
            c = r["curves"]
            key = "label_accuracy" if "label_accuracy" in c else "accuracy"
            axes[0, j].plot(np.mean(c[key], 0), label=method.replace("/none", ""))
            pass_key = "pass_at_1" if "pass_at_1" in c else "accuracy"
            axes[1, j].plot(np.mean(c[pass_key], 0), label=method.replace("/none", ""))
        axes[0, j].set_title(f"{d} digits: label accuracy (GRPO: verifier accuracy)")
        axes[1, j].set_title(f"{d} digits: pass@1 of the training samples")
        for ax in axes[:, j]:
            ax.set_xlabel("update")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=120)
    parser.add_argument("--problems", type=int, default=64, help="unlabeled test problems per difficulty")
    parser.add_argument("--difficulties", type=int, nargs="*", default=[2, 3, 4])
    parser.add_argument("--quick", action="store_true", help="a smoke run: difficulty 2, three methods, 6 updates")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--methods", nargs="*", default=None,
                        help="REWARD/GUARD[/min_majority=X] or grpo_true_labels (default: every reward x guard + GRPO)")
    parser.add_argument("--output", default="ttrl")
    args = parser.parse_args(argv)
    import jax

    from jaxrl_self import lm

    params0, model_config, meta = lm.load_base_model("addition-base")
    task = lm.base_model_task(meta)
    layout = meta["prompt_layout"]
    methods = args.methods or [f"{r}/{g}" for r in REWARDS for g in GUARDS] + ["grpo_true_labels"]
    if args.quick:
        args.difficulties, args.updates, methods = [2], 6, ["majority/none", "majority/stop", "grpo_true_labels"]
    keys = jax.random.split(jax.random.key(0), args.seeds)
    t0 = time.perf_counter()
    results = {"machine": machine_info(), "worker": worker_info(), "created": utc_now(), "seeds": args.seeds,
               "config": shared(args), "held_out_problems": HELD_OUT, "eval_samples": EVAL_SAMPLES,
               "difficulties": {}}
    if not args.speed_only:
        for d in args.difficulties:
            base_params = jax.tree.map(lambda x: jax.numpy.stack([x] * args.seeds), params0)
            from jaxrl_self.teach import ttrl

            data = ttrl.test_set(ttrl.Config(difficulty=d, **shared(args)), task)
            entry = {"base": {"test_set": evaluate_all(base_params, model_config, task, layout, data.problems),
                              "held_out": evaluate_all(base_params, model_config, task, layout,
                                                       lm.held_out_problems(task, (d,), HELD_OUT)),
                              "greedy_by_difficulty": by_difficulty(base_params, model_config, task, layout)},
                     "methods": {}}
            for method in methods:
                print(f"difficulty {d}: {method}", file=sys.stderr, flush=True)
                entry["methods"][method] = run_method(task, d, method, args, params0, model_config, layout, keys)
            results["difficulties"][str(d)] = entry
    results["speed"] = speed(task, args)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    md = markdown(results)
    write_results(args.output, results, md)
    if results["difficulties"]:
        plot(results, RESULTS_DIR / f"{args.output}.png")
    print(md)
    return 0


def claims(results: dict) -> list[str]:
    """The issue's claims, checked per difficulty from the numbers above."""
    import numpy as np

    n = results["eval_samples"]
    out = ["## Claims, checked", "",
           f"| digits | TTRL pass@1 after > base maj@{n} (seeds, test set; the first majority run) | TTRL pass@1 gain, test / held-out | "
           "held-out greedy change per method (after - before; < -0.05 marks a collapse) |", "|---|---|---|---|"]
    for d, entry in results["difficulties"].items():
        base = entry["base"]
        methods = entry["methods"]
        ttrl_name = next((m for m in methods if m.startswith("majority/")), None)
        if ttrl_name is None:
            continue
        t = methods[ttrl_name]
        beat = sum(p > m for p, m in zip(t["test_set"]["pass_at_1"], base["test_set"][f"maj_at_{n}"]))
        gain_t = np.mean(t["test_set"]["pass_at_1"]) - np.mean(base["test_set"]["pass_at_1"])
        gain_h = np.mean(t["held_out"]["pass_at_1"]) - np.mean(base["held_out"]["pass_at_1"])
        change = []
        for method, r in methods.items():
            delta = np.mean(r["held_out"]["greedy"]) - np.mean(base["held_out"]["greedy"])
            worst = min(np.asarray(r["held_out"]["greedy"]) - np.mean(base["held_out"]["greedy"]))
            mark = " **collapse**" if worst < -0.05 else ""
            change.append(f"{method} {delta:+.3f} (worst seed {worst:+.3f}){mark}")
        out.append(f"| {d} | {beat}/{len(t['test_set']['pass_at_1'])} | {gain_t:+.3f} / {gain_h:+.3f} | "
                   + "; ".join(change) + " |")
    return out + [""]


def markdown(results: dict) -> str:
    import numpy as np

    n = results["eval_samples"]
    lines = ["# TTRL and its label-free successors", "",
             f"Measured {results['created']} on {results['machine']['cpu_model']} "
             f"({results['machine'].get('cpus_usable')} usable CPUs, load {results['machine'].get('loadavg')}); "
             f"`addition-base`, {results['seeds']} seeds (mean ± sample std over seeds), config {results['config']}. "
             f"pass@1 = mean over {n} samples at temperature 1, maj@{n} = majority of those samples (lenient "
             f"extraction, as the evaluation elsewhere), greedy = one greedy response. *test set*: the "
             f"unlabeled problems trained on; *held-out*: {results['held_out_problems']} other problems of the same "
             "difficulty.", ""]
    for d, entry in results["difficulties"].items():
        b = entry["base"]
        lines += [f"## {d} digits", "",
                  f"Base model: test set greedy {fmt(b['test_set']['greedy'])}, "
                  f"pass@1 {fmt(b['test_set']['pass_at_1'])}, maj@{n} {fmt(b['test_set'][f'maj_at_{n}'])}; held-out greedy {fmt(b['held_out']['greedy'])}, "
                  f"pass@1 {fmt(b['held_out']['pass_at_1'])}, maj@{n} {fmt(b['held_out'][f'maj_at_{n}'])}.", "",
                  f"| method | test greedy | test pass@1 | test maj@{n} | held-out greedy | held-out pass@1 | "
                  f"held-out maj@{n} | label acc. (last 10%) | reward acc. (last 10%) | guard fired | "
                  "greedy at 1/2/3/4/5 digits |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for method, r in entry["methods"].items():
            c = r["curves"]
            tail = max(1, len(np.asarray(c.get("reward_mean", [[0]]))[0]) // 10)
            la = fmt(np.mean(np.asarray(c["label_accuracy"])[:, -tail:], 1)) if "label_accuracy" in c else "-"
            ra = fmt(np.mean(np.asarray(c["reward_accuracy"])[:, -tail:], 1)) if "reward_accuracy" in c else "-"
            fired = "-" if r["guard_fired"] is None else f"{sum(r['guard_fired'])}/{len(r['guard_fired'])}"
            bd = "/".join(f"{np.mean(r['greedy_by_difficulty'][k]):.2f}" for k in "12345")
            ts, ho = r["test_set"], r["held_out"]
            lines.append(f"| {method} | {fmt(ts['greedy'])} | {fmt(ts['pass_at_1'])} | {fmt(ts[f'maj_at_{n}'])} | "
                         f"{fmt(ho['greedy'])} | {fmt(ho['pass_at_1'])} | {fmt(ho[f'maj_at_{n}'])} | {la} | {ra} | "
                         f"{fired} | {bd} |")
        base_bd = "/".join(f"{np.mean(b['greedy_by_difficulty'][k]):.2f}" for k in "12345")
        lines += ["", f"Base greedy at 1/2/3/4/5 digits: {base_bd}.", ""]
    lines += claims(results)
    s = results["speed"]
    lines += ["## Speed", "",
              f"One update of 16 prompts x 16 samples (compiled, median of 7): TTRL {s['ttrl']['s_per_update']} s "
              f"({s['ttrl']['completions_per_s']} completions/s), GRPO {s['grpo']['s_per_update']} s "
              f"({s['grpo']['completions_per_s']} completions/s): TTRL at "
              f"{s['ttrl_over_grpo_completions_per_s']}x GRPO's completions/s (it also votes, and scores the base "
              "model's reference log-probs, as GRPO does).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
