"""Truncated PPO vs synchronous token-level PPO on the long-tailed chain task: accuracy against wall time.

    python benchmarks/tppo_vs_ppo.py            # the full comparison (about 30-40 min on a quiet 2-core CPU)
    python benchmarks/tppo_vs_ppo.py --quick    # a smoke run of every code path (a few minutes)

Claim under test (T-PPO, arXiv:2506.15050): the same final accuracy as synchronous PPO in much less wall time
when response lengths are long-tailed. Setup, identical for every method:

* task: the arithmetic chain the base model was trained on (``ChainTask(max_steps_cap=16)``, power-law number
  of steps, responses of 7-22 tokens, mean about 10); reward 1 if the verifier accepts the answer;
* model: the shipped ``chain-base`` (2 layers, d=64) plus a fresh value head on the shared trunk;
* learner: the same PPO-clip / value loss settings, epochs, minibatches, learning rate and batch size
  (``B`` responses per PPO update = ``B`` slots of T-PPO);
* budget: the same number of *trained response tokens* (every generated token is trained once by the policy);
* methods: synchronous token-level PPO (:mod:`jaxrl_self.algos.token_ppo`: a batch of ``B`` responses is
  generated to completion, i.e. as long as its longest response, then learned from) and T-PPO at several
  window lengths ``l`` with the exact (``learner="full"``) learner, plus T-PPO with the windowed learner
  (``learner="window"``, no gradient through the cached context);
* seeds: ``--seeds`` per method, run one after the other, seed-major (every method's seed 0, then seed 1...)
  so that a change in machine load hits all methods alike.

Measured: training wall time excluding compilation (each method's chunk program is AOT-compiled and timed
apart) and excluding evaluation; held-out greedy accuracy on a fixed set of problems from the training
distribution (and on long chains, 8-16 steps) after every chunk; trained tokens. Reported: accuracy-vs-wall-time
curves (PNG), wall time to a target accuracy (90 % of PPO's mean gain over the base model), tokens/s, final
accuracy (mean ± sd over seeds), compile times, and a per-update cost split (generation vs learning).

Writes ``benchmarks/results/tppo_vs_ppo{,.quick}.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jaxrl_self  # noqa: E402,F401  (XLA guard before the backend starts)
from _common import RESULTS_DIR, log, machine_info, timing_lock, utc_now, worker_info, write_results  # noqa: E402


# ============================================================================================ setup
def load_base(ref: str):
    """``(params, model_config, prompt_layout, task)`` of a base model name, model file or pretrain run."""
    from jaxrl_self.lm.base_models import base_model_task, load_model_or_file

    params, model_config, meta = load_model_or_file(ref)
    return params, model_config, meta["prompt_layout"], base_model_task(meta)


def length_profile(params, model_config, task, layout: str, num: int = 512, seed: int = 7) -> dict[str, Any]:
    """Responses the base policy samples (temperature 1): length mean / p50 / p95 / max, the lengths, and the
    mean reward (verifier accuracy), which initialises the value heads."""
    import jax
    import numpy as np

    from jaxrl_self import lm

    def sample(p, k):
        ro = lm.rollout(k, p, model_config, lm.sample_problems(jax.random.fold_in(k, 1), task, task.default_params,
                                                                    num), 1, task.solution_len, prompt_layout=layout)
        return ro.response_len, lm.verify(task, ro, 1)[0]

    lengths, correct = (np.asarray(x) for x in jax.jit(sample)(params, jax.random.key(seed)))
    return {"mean": float(lengths.mean()), "p50": float(np.median(lengths)), "p95": float(np.quantile(lengths, 0.95)),
            "max": int(lengths.max()), "mean_reward": float(correct.mean()), "lengths": lengths}


def with_value_head(params, base_config, bias: float):
    """``(params, config)`` with a value head whose output starts at ``bias`` everywhere (zero kernel).

    Both methods start from the same head: the base policy's mean reward, so that the first value errors (and
    the gradients they send into the shared trunk) are small; a zero head makes both PPO variants unlearn the
    pretrained policy first (VC-PPO's "value initialisation bias")."""
    import jax

    from jaxrl_self.nets.transformer import init_params

    config = base_config.replace(value_head=True)
    head = init_params(jax.random.key(0), config)["value_head"]
    return {**params, "value_head": {**head, "bias": head["bias"] + bias}}, config


def _parse_value(text: str):
    """``'150' -> 150``, ``'1e-4' -> 0.0001``, ``'true' -> True``, anything else stays a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def windows_per_response(lengths, window: int) -> float:
    """Mean number of T-PPO steps a response spends in the pool: ``E[ceil(L / l)]``."""
    import numpy as np

    return float(np.mean(np.ceil(np.asarray(lengths) / window)))


def method_configs(args, model_config, layout: str, profile: dict[str, Any]) -> list[dict[str, Any]]:
    """Every method: name, module, config and number of updates for the shared trained-token budget."""
    from jaxrl_self.algos import token_ppo, tppo

    B, R = args.batch, args.max_new_tokens
    common = dict(max_new_tokens=R, update_epochs=args.epochs, num_minibatches=args.minibatches,
                  learning_rate=args.lr, model=model_config, prompt_layout=layout,
                  normalize_advantages=args.normalize_advantages)
    tokens_per_ppo_update = B * profile["mean"]
    M = args.minibatches
    out = []
    n = max(args.chunks, round(args.budget / tokens_per_ppo_update))
    out.append({"name": "ppo", "label": "sync PPO", "module": token_ppo,
                "config": token_ppo.Config(num_updates=n, num_prompts=B, **common),
                "expected_tokens_per_update": tokens_per_ppo_update})
    variants = [(w, "full") for w in args.windows] + [(w, "window") for w in args.window_learner]

    def pool(w: int) -> tuple[int, float, int]:
        """``(B_T slots, trained tokens per step, steps)`` for window ``w``: B_T such that a step trains on about
        as many tokens as a PPO update (B responses); a response stays E[ceil(L / l)] steps in the pool, so a step
        finishes B_T / E[ceil(L / l)] responses."""
        per_response = windows_per_response(profile["lengths"], w)
        slots = max(M, M * round(B * per_response / M))
        per_step = slots * profile["mean"] / per_response
        return slots, per_step, max(args.chunks, round(args.budget / per_step))

    for w, learner in variants:
        slots, per_step, n = pool(w)
        name = f"tppo-l{w}" + ("-window" if learner == "window" else "")
        label = f"T-PPO l={w}" + (" (window learner)" if learner == "window" else "")
        out.append({"name": name, "label": label, "module": tppo,
                    "config": tppo.Config(num_updates=n, num_slots=slots, window=w, learner=learner,
                                          refresh_cache=learner == "full", **common),
                    "expected_tokens_per_update": per_step})
    for spec in args.ablate:  # "tag:field=value[,field=value...]" on the T-PPO l=args.ablate_window config
        tag, _, assignments = spec.partition(":")
        over = {k: _parse_value(v) for k, v in (a.split("=", 1) for a in assignments.split(",") if a)}
        w = over.get("window", args.ablate_window)
        slots, per_step, n = pool(w)
        config = tppo.Config(num_updates=n, num_slots=slots, window=args.ablate_window, learner="full",
                             refresh_cache=True, **common).replace(**over)
        out.append({"name": f"tppo-{tag}", "label": f"T-PPO l={w}, " + ", ".join(f"{k}={v}" for k, v in over.items()),
                    "module": tppo, "config": config, "expected_tokens_per_update": per_step})
    for m in out:  # chunk boundaries = evaluation points
        c = m["config"]
        per_chunk = math.ceil(c.num_updates / args.chunks)
        m["config"] = c.replace(num_updates=per_chunk * args.chunks)
        m["chunk_updates"] = per_chunk
    return out


# ============================================================================================ running
def compile_method(m, task, params0, model_config):
    """``(train, init, chunk, compile seconds)``; ``chunk(state)`` runs ``chunk_updates`` updates."""
    import jax

    train = m["module"].make_train(m["config"], task, init_params=params0, model_config=model_config)
    init = jax.jit(train.init)
    abstract = jax.eval_shape(train.init, jax.random.key(0))
    t = time.perf_counter()
    chunk = jax.jit(lambda s: train.run(s, m["chunk_updates"])).lower(abstract).compile()
    return train, init, chunk, time.perf_counter() - t


def make_evaluator(task, model_config, layout: str, max_new_tokens: int, num: int):
    """``evaluate(params) -> (accuracy, long-chain accuracy)``: greedy, fixed held-out sets (two programs)."""
    import jax
    import jax.numpy as jnp

    from jaxrl_self import lm
    from jaxrl_self.envs.tokens import ChainParams

    cap = task.max_steps_cap
    long_params = ChainParams(alpha=jnp.zeros((), jnp.float32), min_steps=jnp.asarray(cap // 2, jnp.int32),
                              max_steps=jnp.asarray(cap, jnp.int32))

    def accuracy(params, key, env_params):
        problems = lm.sample_problems(key, task, env_params, num)
        ro = lm.rollout(jax.random.key(0), params, model_config, problems, 1, max_new_tokens, 1.0, True,
                          prompt_layout=layout)
        return jnp.mean(lm.verify(task, ro, 1)[0].astype(jnp.float32))

    fn = jax.jit(lambda p: (accuracy(p, jax.random.key(20240601), task.default_params),
                            accuracy(p, jax.random.key(20240602), long_params)))
    return lambda params: tuple(float(x) for x in fn(params))


def run_seed(m, compiled, evaluate, seed: int, chunks: int) -> dict[str, Any]:
    """One training run: ``chunks`` timed chunks, each followed by an (untimed) evaluation."""
    import jax
    import numpy as np

    train, init, chunk, _ = compiled
    state = jax.block_until_ready(init(jax.random.key(seed)))
    acc, long_acc = evaluate(state.params)
    curve = {"wall_s": [0.0], "tokens": [0], "accuracy": [acc], "long_accuracy": [long_acc], "train_accuracy": [],
             "train_length": [], "train_truncated": [], "chunk_s": []}
    wall = 0.0
    for _ in range(chunks):
        t = time.perf_counter()
        state, metrics = chunk(state)
        state = jax.block_until_ready(state)
        dt = time.perf_counter() - t
        wall += dt
        if int(state.nonfinite_update) >= 0:
            raise FloatingPointError(f"{m['name']} seed {seed}: non-finite loss at update "
                                     f"{int(state.nonfinite_update)}")
        acc, long_acc = evaluate(state.params)
        tr = np.asarray(metrics.accuracy, np.float64)
        curve["chunk_s"].append(dt)
        curve["wall_s"].append(wall)
        curve["tokens"].append(int(state.env_steps))
        curve["accuracy"].append(acc)
        curve["long_accuracy"].append(long_acc)
        curve["train_accuracy"].append(float(np.nanmean(tr)) if np.isfinite(tr).any() else None)
        for key, field in (("train_length", "response_length"), ("train_truncated", "truncated")):
            x = np.asarray(getattr(metrics, field), np.float64)
            curve[key].append(float(np.nanmean(x)) if np.isfinite(x).any() else None)
    curve["tokens_per_s"] = curve["tokens"][-1] / wall
    return curve


def cost_split(m, task, params0, model_config, reps: int = 3) -> dict[str, float]:
    """Seconds per update, and the share of it spent generating (rollout / window alone, jitted apart)."""
    import jax

    from jaxrl_self import lm
    from jaxrl_self.algos import tppo

    train = m["module"].make_train(m["config"], task, init_params=params0, model_config=model_config)
    state = jax.jit(train.init)(jax.random.key(0))
    update = jax.jit(train.update)
    c = m["config"]
    if m["module"] is tppo:
        task_params = lm.task_params_for(c, task)
        reward = lm.verifier_reward(task)

        def generate(s):
            return tppo.collect_window(s.rng, s.params, s.pool, s.prompts_issued, config=c, task=task,
                                       task_params=task_params, model_config=model_config,
                                       prompt_layout=c.prompt_layout, reward_fn=reward,
                                       value_params=s.value_params)[2].tokens
    else:
        def generate(s):
            problems = lm.sample_problems(s.rng, task, task.default_params, c.num_prompts)
            return lm.rollout(s.rng, s.params, model_config, problems, 1, c.max_new_tokens,
                              prompt_layout=c.prompt_layout).responses
    generate = jax.jit(generate)
    for _ in range(2):  # warm up; and a few updates so the T-PPO pool is in its steady state
        state, _ = jax.block_until_ready(update(state))
        jax.block_until_ready(generate(state))
    for _ in range(5):
        state, _ = jax.block_until_ready(update(state))
    t_gen, t_upd = [], []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(generate(state))
        t_gen.append(time.perf_counter() - t)
        t = time.perf_counter()
        state, _ = jax.block_until_ready(update(state))
        t_upd.append(time.perf_counter() - t)
    upd, gen = min(t_upd), min(t_gen)
    return {"update_s": upd, "generate_s": gen, "generate_share": gen / upd}


# ============================================================================================ analysis
def summarize(methods: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    import numpy as np

    acc0 = float(np.mean([r["accuracy"][0] for rs in runs.values() for r in rs]))
    ppo_final = float(np.mean([r["accuracy"][-1] for r in runs["ppo"]]))
    gain = ppo_final - acc0
    target = acc0 + 0.9 * gain if gain > 0 else None

    def time_to(r):
        if target is None:
            return None
        w, a = r["wall_s"], r["accuracy"]
        for i in range(1, len(a)):
            if a[i] >= target:  # linear interpolation between the two evaluation points
                if a[i - 1] >= target:
                    return w[i - 1]
                return w[i - 1] + (target - a[i - 1]) / (a[i] - a[i - 1]) * (w[i] - w[i - 1])
        return None

    rows = {}
    for m in methods:
        rs = runs[m["name"]]
        ttt = [time_to(r) for r in rs]
        reached = [t for t in ttt if t is not None]
        final = [r["accuracy"][-1] for r in rs]
        final_long = [r["long_accuracy"][-1] for r in rs]
        rows[m["name"]] = {
            "label": m["label"],
            "updates": int(m["config"].num_updates),
            "time_to_target_s": ttt,
            "time_to_target_mean_s": float(np.mean(reached)) if len(reached) == len(rs) else None,
            "reached_target": f"{len(reached)}/{len(rs)}",
            "wall_s_mean": float(np.mean([r["wall_s"][-1] for r in rs])),
            "tokens_mean": float(np.mean([r["tokens"][-1] for r in rs])),
            "tokens_per_s_mean": float(np.mean([r["tokens_per_s"] for r in rs])),
            "final_accuracy_mean": float(np.mean(final)), "final_accuracy_sd": float(np.std(final, ddof=1))
            if len(final) > 1 else 0.0,
            "final_long_accuracy_mean": float(np.mean(final_long)),
            "final_long_accuracy_sd": float(np.std(final_long, ddof=1)) if len(final_long) > 1 else 0.0,
            "best_accuracy_mean": float(np.mean([max(r["accuracy"]) for r in rs])),
            "train_length_last": _mean_last(rs, "train_length"),
            "train_truncated_last": _mean_last(rs, "train_truncated"),
        }
    ref = rows["ppo"]["time_to_target_mean_s"]
    for row in rows.values():
        t = row["time_to_target_mean_s"]
        row["speedup_to_target"] = ref / t if (ref is not None and t) else None
        row["wall_speedup_same_tokens"] = rows["ppo"]["wall_s_mean"] / row["wall_s_mean"]
    return {"initial_accuracy": acc0, "ppo_final_accuracy": ppo_final, "target_accuracy": target, "rows": rows}


def _mean_last(runs: list[dict[str, Any]], key: str) -> float | None:
    """Mean over seeds of a training statistic's value in the last chunk (None if it was never recorded)."""
    vals = [r[key][-1] for r in runs if r.get(key) and r[key][-1] is not None]
    return sum(vals) / len(vals) if vals else None


def markdown(result: dict[str, Any]) -> str:
    s, setup, mach = result["summary"], result["setup"], result["machine"]

    def f(x, fmt="{:.1f}"):
        return "-" if x is None else fmt.format(x)

    lines = [
        f"# T-PPO vs synchronous PPO{' (quick)' if result['quick'] else ''}", "",
        f"{result['created']}; {_device(result)}, load average before/after "
        f"{mach['loadavg']} / {result['loadavg_after']}. Wall times exclude compilation and evaluation.", "",
        f"Task `{setup['task']}`, base `{setup['base_model']}`, B = {setup['batch']} responses / slots, "
        f"budget {setup['budget_tokens']:,} trained response tokens, {setup['seeds']} seeds, "
        f"{setup['epochs']} epoch(s) x {setup['minibatches']} minibatch(es), lr {setup['lr']}. "
        f"Base policy response length: mean {setup['length_profile']['mean']:.1f}, "
        f"p95 {setup['length_profile']['p95']:.0f}, max {setup['length_profile']['max']}.", "",
        f"Initial greedy accuracy {s['initial_accuracy']:.3f}; PPO final {s['ppo_final_accuracy']:.3f}; "
        f"target (90 % of PPO's gain) {f(s['target_accuracy'], '{:.3f}')}.", "",
        "| method | updates | compile s | wall s | time to target s (reached) | speedup to target | tokens/s "
        "| final acc | final acc, 8-16 steps | sampled length (truncated) | gen share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in s["rows"].items():
        cs = result["cost_split"].get(name, {})
        lines.append(
            f"| {row['label']} | {row['updates']} | {result['compile_s'][name]:.1f} | {row['wall_s_mean']:.1f} "
            f"| {f(row['time_to_target_mean_s'])} ({row['reached_target']}) "
            f"| {f(row['speedup_to_target'], '{:.2f}x')} | {row['tokens_per_s_mean']:.0f} "
            f"| {row['final_accuracy_mean']:.3f} ± {row['final_accuracy_sd']:.3f} "
            f"| {row['final_long_accuracy_mean']:.3f} ± {row['final_long_accuracy_sd']:.3f} "
            f"| {f(row.get('train_length_last'))} ({f(row.get('train_truncated_last'), '{:.0%}')}) "
            f"| {f(cs.get('generate_share'), '{:.0%}')} |")
    lines += ["", "*time to target*: mean over seeds of the first (interpolated) wall time at which held-out greedy "
              "accuracy reaches the target (only when every seed reaches it); *speedup*: PPO's time / the method's. "
              "*gen share*: the part of one update spent generating (rollout, or refill + window, timed apart). "
              "*sampled length (truncated)*: mean length of the responses that finished during the last chunk of "
              "training (temperature 1) and the fraction cut at `max_new_tokens`.", "",
              f"![accuracy vs wall time]({result['figure']})"]
    return "\n".join(lines) + "\n"


def _device(result: dict[str, Any]) -> str:
    """The accelerator the run used, or the CPU."""
    w, mach = result.get("worker") or {}, result["machine"]
    if w.get("backend") not in (None, "cpu"):
        return f"{w.get('device_kind') or w['devices'][0]} (jax {w['backend']}) with {mach['cpu_model']}"
    return f"{mach['cpu_model']}, {mach['cpus_usable']} usable CPUs"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    target = result["summary"]["target_accuracy"]
    for i, (name, rs) in enumerate(result["runs"].items()):
        label = result["summary"]["rows"][name]["label"]
        c = colors[i % len(colors)]
        for ax, xkey, ykey in ((axes[0], "wall_s", "accuracy"), (axes[1], "tokens", "accuracy"),
                               (axes[2], "wall_s", "long_accuracy")):
            for r in rs:
                ax.plot(r[xkey], r[ykey], color=c, alpha=0.25, lw=0.8)
            x = np.mean([r[xkey] for r in rs], axis=0)
            y = np.mean([r[ykey] for r in rs], axis=0)
            ax.plot(x, y, color=c, lw=2, marker="o", ms=3, label=label if ax is axes[0] else None)
    for ax, title, xl in ((axes[0], "held-out greedy accuracy", "training wall time (s, no compile/eval)"),
                          (axes[1], "held-out greedy accuracy", "trained response tokens"),
                          (axes[2], "accuracy on long chains (8-16 steps)", "training wall time (s)")):
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.grid(alpha=0.3)
        if target is not None and ax is not axes[2]:
            ax.axhline(target, color="k", ls="--", lw=0.8)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"T-PPO vs synchronous PPO on {result['setup']['task']} (mean of {result['setup']['seeds']} seeds; "
                 f"thin: single seeds; dashed: target)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ============================================================================================ main
def main(argv: list[str] | None = None) -> int:
    import os

    import jax

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budget, 1 seed, 2 methods: a smoke test")
    parser.add_argument("--base-model", default="chain-base", help="base model name, model file or pretrain run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="PPO responses per update = T-PPO slots")
    parser.add_argument("--budget", type=int, default=None, help="trained response tokens per run")
    parser.add_argument("--chunks", type=int, default=10, help="evaluation points per run")
    parser.add_argument("--windows", type=int, nargs="*", default=[6, 11], help="T-PPO windows (exact learner)")
    parser.add_argument("--window-learner", type=int, nargs="*", default=[6],
                        help="T-PPO windows run with the windowed learner")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--minibatches", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-problems", type=int, default=512)
    parser.add_argument("--normalize-advantages", action=argparse.BooleanOptionalAction, default=False,
                        help="whiten advantages (both methods); off by default: with a fresh value head the "
                        "whitened zero advantages of unfinished windows push down correct reasoning")
    parser.add_argument("--no-cost-split", action="store_true", help="skip the per-update generation/learning split")
    parser.add_argument("--ablate", nargs="*", default=[], metavar="TAG:FIELD=VALUE[,...]",
                        help="extra T-PPO variants: the exact-learner config at --ablate-window with these fields "
                             "changed (e.g. 'warm:value_warmup_updates=150' 'fin:policy_tokens=finished')")
    parser.add_argument("--ablate-window", type=int, default=6)
    parser.add_argument("--output", default=None,
                        help="result file stem under benchmarks/results (default tppo_vs_ppo[.quick])")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.chunks, args.eval_problems = 1, 3, 128
        args.windows, args.window_learner = [6], [6]
        args.budget = args.budget or 3 * args.batch * 10
    args.budget = args.budget or 300_000
    machine = machine_info()

    base_params, base_config, layout, task = load_base(args.base_model)
    args.max_new_tokens = task.solution_len
    log(f"task {task!r}, base {args.base_model} ({layout} prompts), budget {args.budget:,} tokens")
    profile = length_profile(base_params, base_config, task, layout)
    log(f"base policy: response lengths mean {profile['mean']:.2f}, p95 {profile['p95']}, max {profile['max']}; "
        f"mean reward {profile['mean_reward']:.3f}")
    params0, model_config = with_value_head(base_params, base_config, profile["mean_reward"])
    methods = method_configs(args, model_config, layout, profile)
    evaluate = make_evaluator(task, model_config, layout, args.max_new_tokens, args.eval_problems)

    compiled, compile_s = {}, {}
    for m in methods:
        compiled[m["name"]] = compile_method(m, task, params0, model_config)
        compile_s[m["name"]] = compiled[m["name"]][3]
        log(f"{m['name']}: {m['config'].num_updates} updates in {args.chunks} chunks, compiled in "
            f"{compile_s[m['name']]:.1f} s")
    runs: dict[str, list] = {m["name"]: [] for m in methods}
    for seed in range(args.seeds):  # seed-major: load drift hits every method alike
        for m in methods:
            with timing_lock(f"tppo_vs_ppo {m['name']} seed {seed}") as lock:
                t = time.perf_counter()
                curve = run_seed(m, compiled[m["name"]], evaluate, seed, args.chunks)
            curve["timing"] = lock
            runs[m["name"]].append(curve)
            log(f"seed {seed} {m['name']}: {curve['wall_s'][-1]:.1f} s train ({time.perf_counter() - t:.1f} s with "
                f"eval), {curve['tokens'][-1]:,} tokens, accuracy {curve['accuracy'][0]:.3f} -> "
                f"{curve['accuracy'][-1]:.3f} (long {curve['long_accuracy'][-1]:.3f})")
    cost = {}
    if not args.no_cost_split:
        for m in methods:
            cost[m["name"]] = cost_split(m, task, params0, model_config)
            log(f"{m['name']}: {cost[m['name']]}")

    name = args.output or ("tppo_vs_ppo" + (".quick" if args.quick else ""))
    figure = f"{name}.png"
    result = {
        "benchmark": "tppo_vs_ppo", "quick": args.quick, "created": utc_now(), "machine": machine,
        "worker": worker_info(), "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "command": "python benchmarks/tppo_vs_ppo.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "setup": {"task": repr(task), "base_model": args.base_model, "prompt_layout": layout, "batch": args.batch,
                  "value_head_init": profile["mean_reward"],
                  "budget_tokens": args.budget, "seeds": args.seeds, "chunks": args.chunks, "epochs": args.epochs,
                  "minibatches": args.minibatches, "lr": args.lr, "max_new_tokens": args.max_new_tokens,
                  "eval_problems": args.eval_problems,
                  "length_profile": {k: v for k, v in profile.items() if k != "lengths"}},
        "methods": {m["name"]: {"label": m["label"], "config": _config_dict(m["config"]),
                                "chunk_updates": m["chunk_updates"],
                                "expected_tokens_per_update": m["expected_tokens_per_update"]} for m in methods},
        "compile_s": compile_s, "cost_split": cost, "runs": runs, "figure": figure,
    }
    result["summary"] = summarize(methods, runs)
    plot(result, RESULTS_DIR / figure)
    json_path, md_path = write_results(name, result, markdown(result))
    log(f"wrote {json_path}, {md_path}, {RESULTS_DIR / figure}")
    print(md_path.read_text())
    del jax
    return 0


def _config_dict(config) -> dict[str, Any]:
    """A config dataclass as JSON-able values (nested dataclasses as dicts, anything else exotic as repr)."""
    import dataclasses

    def value(x):
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return _config_dict(x)
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, (tuple, list)):
            return [value(v) for v in x]
        return repr(x)

    return {f.name: value(getattr(config, f.name)) for f in dataclasses.fields(config)}


if __name__ == "__main__":
    sys.exit(main())
