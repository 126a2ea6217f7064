"""SOAR: a problem-writing teacher paid by the students' progress on hard problems, against hard-only RL with the
same student compute, the intrinsic ("learnability") teacher and SOAR without promotion.

    python benchmarks/soar.py          # 3 seeds: the edge (addition-long, 4 digits), the cliff (addition-base, 5)
    python benchmarks/soar.py --quick         # a smoke run: 1 seed, 2 outer steps, tiny hard set
    python benchmarks/soar.py --probe         # which operand lengths the base models ever solve (soar_probe.*)

Per setting (base model, hard difficulty):

* **hard set**: the base model's fail@128 problems among ``hard_candidates`` of the hard difficulty
  (:func:`jaxrl_self.teach.soar.hard_set`, computed once, shared by every variant and seed), alternately split
  into a training half (the grounded reward reads it) and a test half (evaluation only);
* **variants**, 3 seeds each (vmapped in one program per variant): ``soar`` (grounded reward, promotion),
  ``learnability`` (the intrinsic reward, promotion on it), ``no_promotion`` (grounded, the baseline never moves);
* **hard-only RL**: RLOO (``grpo`` with ``advantage="rloo"``, the students' settings) directly on the hard training
  half for ``outer steps x g x r x inner steps`` updates: the students' total number of updates and samples;
* **fresh student**: RLOO from the base model on the promoted questions (``promoted_updates``), then on the hard
  training half (``promoted_updates``);
* **final teacher's students**: the final teacher writes g datasets; r students each from the *base* model take
  the inner steps (what the teacher has learnt to teach, independent of promotion);
* **evaluation** on the hard test half: greedy accuracy, pass@1 and pass@32 (32 samples, unbiased estimator).

Writes ``benchmarks/results/soar.{json,md}`` and ``soar.png`` (curves over outer steps).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import jaxrl_self  # noqa: E402,F401  (XLA guard before the backend starts)
from _common import RESULTS_DIR, machine_info, utc_now, worker_info, write_results  # noqa: E402

SETTINGS = {"edge": ("addition-long", 4), "cliff": ("addition-base", 5)}
VARIANTS = {"soar": {}, "learnability": {"teacher_reward": "learnability"}, "no_promotion": {"promotion": False},
            # the fix tried for the teacher's drift (its answers turn wrong): a KL to the warm-up teacher
            "soar_teacher_kl": {"use_reference": True, "kl_coef": 0.1}}
DEFAULT_VARIANTS = ("soar", "learnability", "no_promotion")
CURVES = ("reward_mean", "reward_max", "grounded_mean", "moving_average", "promoted", "baseline_reward_accuracy",
          "student_reward_accuracy", "baseline_test_accuracy", "inner_reward_first", "inner_reward_last", "fill_rate",
          "answer_correct", "distinct_questions", "question_difficulty", "difficulty_std", "hard_difficulty_share")
PASS_K = 32


def fmt(xs) -> str:
    import numpy as np

    a = np.asarray(xs, float)
    return f"{a.mean():.3f}" + (f" ± {a.std(ddof=1):.3f}" if a.size > 1 else "")


def evaluator(task, model_cfg, layout, hard):
    """``evaluate(params [S]) -> {greedy, pass_at_1, pass_at_32}`` on the valid rows of the hard test half."""
    import jax
    import numpy as np

    from jaxrl_self import lm

    rows = np.flatnonzero(np.asarray(hard.test.valid))
    problems = jax.tree.map(lambda x: x[rows], hard.test.problems)
    evaluate = lm.make_evaluate(model_cfg, task, lm.EvalConfig(num_samples=PASS_K, ks=(1, PASS_K), max_new_tokens=10),
                                prompt_layout=layout)
    fn = jax.jit(jax.vmap(lambda p: evaluate(p, jax.random.key(11), problems).overall))

    def run(params_by_seed) -> dict:
        o = fn(params_by_seed)
        return {"greedy": np.asarray(o.greedy_accuracy).tolist(), "pass_at_1": np.asarray(o.pass_at_k[..., 0]).tolist(),
                f"pass_at_{PASS_K}": np.asarray(o.pass_at_k[..., -1]).tolist()}

    return run, len(rows)


def student_config(config, budget: int):
    return config.student.replace(num_updates=budget, prompt_layout="packed")


def run_setting(name: str, args, results: dict, output: str) -> dict:
    """One setting; the results so far are written after every variant (``<output>.partial.json``)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_self import lm
    from jaxrl_self.algos import grpo
    from jaxrl_self.teach import soar

    base_model, difficulty = SETTINGS[name]
    params0, model_cfg, meta = lm.load_base_model(base_model)
    task = lm.base_model_task(meta)
    layout = meta["prompt_layout"]
    steps = args.outer_steps if name == "edge" else args.cliff_steps
    config = soar.Config(base_model=base_model, hard_difficulty=difficulty, num_updates=steps,
                         hard_candidates=args.candidates, hard_samples=args.hard_samples)
    if args.quick:
        config = config.replace(num_prompts=8, num_datasets=2, num_students=2, warmup_steps=50,
                                student=config.student.replace(num_updates=2))
    t = time.perf_counter()
    hard = jax.jit(lambda p: soar.hard_set(config, task, p, model_cfg, layout))(params0)
    jax.block_until_ready(hard)
    hard_s = time.perf_counter() - t
    evaluate, n_test = evaluator(task, model_cfg, layout, hard)
    S = args.seeds
    keys = jax.random.split(jax.random.key(0), S)
    stack = lambda tree: jax.tree.map(lambda x: jnp.stack([x] * S), tree)  # noqa: E731
    out = {"base_model": base_model, "hard_difficulty": difficulty, "outer_steps": steps,
           "hard_set": {"candidates": config.hard_candidates, "samples": config.hard_samples,
                        "qualified": int(hard.qualified), "train": int(hard.train.valid.sum()), "test": n_test,
                        "seconds": round(hard_s, 1)},
           "config": {k: getattr(config, k) for k in ("num_datasets", "num_students", "num_prompts", "learning_rate",
                                                        "promotion_threshold", "promotion_window", "reward_problems",
                                                        "warmup_steps", "warmup_difficulty")},
           "student": {k: getattr(config.student, k) for k in ("num_updates", "num_prompts", "group_size",
                                                                "learning_rate", "temperature", "advantage")},
           "base": evaluate(stack(params0)), "variants": {}}
    print(f"[{name}] hard set: {out['hard_set']}", file=sys.stderr, flush=True)
    g, r = config.num_datasets, config.num_students
    budget = steps * g * r * config.student.num_updates
    inner_from_base = soar.make_inner(config, task, model_cfg, layout)
    final_states = {}
    for variant in args.variants:
        changes = VARIANTS[variant]
        if name == "cliff" and variant != "soar" and not args.quick:
            continue  # the cliff: the grounded teacher alone shows it (see the docs)
        cfg = config.replace(**changes)
        train = soar.make_train(cfg, task, hard=hard)
        t = time.perf_counter()
        program = jax.jit(jax.vmap(train)).lower(keys).compile()
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        state, metrics = program(keys)
        jax.block_until_ready(metrics)
        run_s = time.perf_counter() - t
        metrics = jax.device_get(metrics)
        final_states[variant] = state
        entry = {"compile_s": round(compile_s, 1), "run_s": round(run_s, 1),
                 "outer_step_s": round(run_s / steps, 2), "outer_step_s_per_seed": round(run_s / steps / S, 2),
                 "promotions": np.asarray(state.promotion.count).tolist(),
                 "curves": {k: np.asarray(getattr(metrics, k), np.float32).round(4).tolist() for k in CURVES},
                 "final_baseline": evaluate(state.baseline)}
        # the final teacher's students, from the base model
        k_write = jax.random.split(jax.random.key(5), S)

        def teacher_students(teacher, key):
            ro = lm.rollout(key, teacher, model_cfg, soar.teacher_prompts(config.num_prompts), g, cfg.max_new_tokens,
                            cfg.temperature,
                            prompt_layout="packed")
            data = soar.write_datasets(task, ro.responses, g)[0]
            data = jax.tree.map(lambda x: jnp.repeat(x, r, axis=0), data)
            params, _ = inner_from_base(jax.random.split(key, g * r), params0, data)
            return params

        def write(teacher, key, num=12):
            ro = lm.rollout(key, teacher, model_cfg, soar.teacher_prompts(num), 1, cfg.max_new_tokens, cfg.temperature,
                            prompt_layout="packed")
            return [task.to_text(t) for t in np.asarray(ro.responses)]

        seed0 = jax.tree.map(lambda x: x[0], state.params)
        entry["samples_final_teacher"] = write(seed0, jax.random.key(21))
        if variant == "soar":
            out["samples_warmup_teacher"] = write(jax.jit(train.init)(keys[0]).params, jax.random.key(21))
        students = jax.jit(jax.vmap(teacher_students))(state.params, k_write)  # [S, g * r]
        flat = jax.tree.map(lambda x: x.reshape((S * g * r,) + x.shape[2:]), students)
        ev = evaluate(flat)
        entry["final_teacher_students"] = {k: np.asarray(v).reshape(S, g * r).mean(1).tolist() for k, v in ev.items()}
        out["variants"][variant] = entry
        _save_partial(results, name, out, output)
        print(f"[{name}] {variant}: run {run_s:.0f}s, promotions {entry['promotions']}, final baseline "
              f"{entry['final_baseline']}", file=sys.stderr, flush=True)
    if args.no_baselines:
        return out
    # hard-only RL with the students' total compute
    hard_cfg = student_config(config, budget)
    hard_train = grpo.make_train(hard_cfg, task, problems=hard.train, init_params=params0, model_config=model_cfg)
    t = time.perf_counter()
    states, m = jax.jit(jax.vmap(hard_train))(keys)
    jax.block_until_ready(m)
    out["hard_only"] = {"updates": budget, "run_s": round(time.perf_counter() - t, 1),
                        "reward_curve": [[float(np.mean(c)) for c in np.array_split(row, min(50, budget))]
                                         for row in np.asarray(m.reward_mean)],
                        "nonzero_reward_updates": np.asarray(np.sum(m.reward_mean > 0, axis=1)).tolist(),
                        "eval": evaluate(states.params)}
    # a fresh student on the promoted questions, then the hard set
    if "soar" in final_states:
        k = args.promoted_updates
        promoted = final_states["soar"].promotion.promoted
        phase1 = grpo.make_train(student_config(config, k), task, problems=jax.tree.map(lambda x: x[0], promoted),
                                 init_params=params0, model_config=model_cfg)
        phase2 = grpo.make_train(student_config(config, k), task, problems=hard.train, init_params=params0,
                                 model_config=model_cfg)

        def fresh(key, data):
            s1, _ = phase1.run(phase1.init(key, params0, problems=data))
            s2, _ = phase2.run(phase2.init(jax.random.fold_in(key, 1), s1.params))
            return s1.params, s2.params

        p1, p2 = jax.jit(jax.vmap(fresh))(keys, promoted)
        out["fresh_student"] = {"updates_per_phase": k,
                                "promoted_questions": np.asarray(jnp.sum(promoted.valid, axis=1)).tolist(),
                                "after_promoted": evaluate(p1), "after_hard": evaluate(p2)}
    return out


def cliff_probe(args) -> dict:
    """Where the shipped base models can and cannot solve anything: for each base model, the greedy accuracy and the
    sampled success rate (16 samples) on 64 problems of each operand-length pair (5-digit operands included, and
    unequal lengths, which the pretraining never showed), and whether 10 RLOO steps (the students' inner run) on 32
    true 4 + 4 problems move the 5-digit greedy accuracy."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_self import lm
    from jaxrl_self.teach import soar

    pairs = [(4, 4), (5, 1), (5, 2), (5, 3), (5, 4), (1, 5), (4, 5), (5, 5)]
    rng = np.random.default_rng(0)
    out = {"samples": 16, "problems_per_pair": 64, "models": {}}
    for base_model in ("addition-base", "addition-long"):
        params, model_cfg, meta = lm.load_base_model(base_model)
        task = lm.base_model_task(meta)
        layout = meta["prompt_layout"]

        def problems(la, lb, num):
            lo = lambda d: 10 ** (d - 1) if d > 1 else 0  # noqa: E731
            ps = [task.problem_from_ints(int(rng.integers(lo(la), 10 ** la)), int(rng.integers(lo(lb), 10 ** lb)))
                  for _ in range(num)]
            return jax.tree.map(lambda *x: jnp.stack(x), *ps)

        sampled = jax.jit(lambda p, q: soar._correct(p, model_cfg, layout, task, q, 10, jax.random.key(0), samples=16))
        greedy = jax.jit(lambda p, q: soar._correct(p, model_cfg, layout, task, q, 10, jax.random.key(1)))
        rows = {}
        for la, lb in pairs:
            q = problems(la, lb, 64)
            rows[f"{la}+{lb}"] = {"greedy": float(jnp.mean(greedy(params, q))),
                                  "sampled": float(jnp.mean(sampled(params, q)) / 16)}
        config = soar.Config(base_model=base_model)
        inner = jax.jit(soar.make_inner(config, task, model_cfg, layout).one)
        five = problems(5, 5, 256)
        trained, m = inner(jax.random.key(5), params, lm.ProblemSet.of(problems(4, 4, config.num_prompts)))
        out["models"][base_model] = {
            "pairs": rows, "inner_run_on_4+4": {
                "inner_reward": np.asarray(m.reward_mean).round(3).tolist(),
                "five_digit_greedy_before": float(jnp.mean(greedy(params, five))),
                "five_digit_greedy_after": float(jnp.mean(greedy(trained, five)))}}
        print(f"[probe] {base_model}: {rows}", file=sys.stderr, flush=True)
    return out


def probe_markdown(results: dict) -> str:
    p = results["probe"]
    lines = ["# Where the shipped base models can solve anything (SOAR's hard sets)", "",
             f"Measured {results['created']} on {results['machine']['cpu_model']}; "
             f"{p['problems_per_pair']} problems per operand-length pair, greedy and {p['samples']} samples each.", "",
             "| a + b digits | " + " | ".join(f"{m} greedy | {m} sampled" for m in p["models"]) + " |",
             "|---|" + "---|---|" * len(p["models"])]
    pairs = next(iter(p["models"].values()))["pairs"]
    for k in pairs:
        lines.append(f"| {k} | " + " | ".join(f"{m['pairs'][k]['greedy']:.3f} | {m['pairs'][k]['sampled']:.4f}"
                                              for m in p["models"].values()) + " |")
    lines += ["", "10 RLOO steps (the students' inner run) on 32 true 4 + 4 problems, then greedy accuracy on 256 "
              "5-digit problems:", ""]
    for name, m in p["models"].items():
        r = m["inner_run_on_4+4"]
        steps = " ".join(f"{x:.3f}" for x in r["inner_reward"])
        lines.append(f"- {name}: inner reward per step {steps}, 5-digit greedy {r['five_digit_greedy_before']:.3f}"
                     f" → {r['five_digit_greedy_after']:.3f}")
    return "\n".join(lines) + "\n"


def _save_partial(results: dict, name: str, out: dict, output: str) -> None:
    import json

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    partial = {**results, "settings": {**results["settings"], name: out}}
    (RESULTS_DIR / f"{output}.partial.json").write_text(json.dumps(partial, indent=1) + "\n")


def markdown(results: dict) -> str:
    lines = ["# SOAR: a problem-writing teacher grounded in the students' progress on hard problems", "",
             f"Measured {results['created']} on {results['machine']['cpu_model']} "
             f"({results['machine'].get('cpus_usable')} usable CPUs, load {results['machine'].get('loadavg')}; "
             f"{results['worker'].get('versions')}); {results['seeds']} seeds (mean ± sample std); "
             f"wall {results['wall_s']} s.",
             "", "Re-render this page from the JSON: `python benchmarks/soar.py --render`.", ""]
    for name, s in results["settings"].items():
        h = s["hard_set"]
        lines += [f"## {name}: {s['base_model']}, {s['hard_difficulty']}-digit hard set", "",
                  f"Hard set: {h['qualified']} of {h['candidates']} candidates fail all {h['samples']} samples "
                  f"({h['train']} train / {h['test']} test; {h['seconds']} s). Outer steps: {s['outer_steps']}; "
                  f"g = {s['config']['num_datasets']} datasets x n = {s['config']['num_prompts']} pairs, "
                  f"r = {s['config']['num_students']} students x {s['student']['num_updates']} RLOO steps.", "",
                  f"| on the hard test half | greedy | pass@1 | pass@{PASS_K} |", "|---|---|---|---|"]

        def row(label, ev):
            return f"| {label} | {fmt(ev['greedy'])} | {fmt(ev['pass_at_1'])} | {fmt(ev[f'pass_at_{PASS_K}'])} |"

        lines.append(row("(a) base model", s["base"]))
        if "hard_only" in s:
            lines.append(row(f"(b) hard-only RL ({s['hard_only']['updates']} updates)", s["hard_only"]["eval"]))
        if "fresh_student" in s:
            f = s["fresh_student"]
            lines.append(row(f"(c) fresh student: promoted questions ({f['updates_per_phase']}), then hard set",
                             f["after_hard"]))
            lines.append(row("    ... after the promoted questions only", f["after_promoted"]))
        labels = {"soar": "(d) SOAR promoted student", "learnability": "(e) learnability teacher's promoted student",
                  "no_promotion": "(f) no promotion (the baseline stays the base)",
                  "soar_teacher_kl": "SOAR, teacher KL 0.1 to the warm-up teacher: promoted student"}
        for v, e in s["variants"].items():
            lines.append(row(labels[v], e["final_baseline"]))
            lines.append(row(f"    {v}: final teacher's students (from the base)", e["final_teacher_students"]))
        lines += ["", "| variant | promotions per seed | reward mean (first → last 3) | fill rate | answers correct "
                  "| distinct questions | difficulty mean ± spread | share at hard difficulty | s per outer step "
                  "(seeds vmapped) |", "|---|---|---|---|---|---|---|---|---|"]
        import numpy as np

        for v, e in s["variants"].items():
            c = {k: np.asarray(x, float) for k, x in e["curves"].items()}
            lines.append(
                f"| {v} | {e['promotions']} | {c['reward_mean'][:, 0].mean():.4f} → "
                f"{c['reward_mean'][:, -3:].mean():.4f} | {c['fill_rate'].mean():.3f} | "
                f"{c['answer_correct'][:, 0].mean():.2f} → {c['answer_correct'][:, -1].mean():.2f} | "
                f"{c['distinct_questions'][:, 0].mean():.2f} → {c['distinct_questions'][:, -1].mean():.2f} | "
                f"{c['question_difficulty'][:, -1].mean():.2f} ± {c['difficulty_std'][:, -1].mean():.2f} | "
                f"{c['hard_difficulty_share'][:, 0].mean():.2f} → {c['hard_difficulty_share'][:, -1].mean():.2f} | "
                f"{e['outer_step_s']} |")
        if "hard_only" in s:
            ho = s["hard_only"]
            lines += ["", f"Hard-only RL: updates with any reward > 0 per seed: {ho['nonzero_reward_updates']} of "
                      f"{ho['updates']}.", ""]
        else:
            lines.append("")
        lines += ["Pairs written by the teachers (seed 0, temperature 1; the answer is the teacher's own):", "", "```",
                  "warm-up teacher:"] + [f"  {t}" for t in s.get("samples_warmup_teacher", [])]
        for v, e in s["variants"].items():
            lines += [f"final {v} teacher:"] + [f"  {t}" for t in e["samples_final_teacher"]]
        lines += ["```", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(results["settings"])
    keys = ("reward_mean", "baseline_test_accuracy", "answer_correct", "hard_difficulty_share")
    fig, axes = plt.subplots(len(names), len(keys), figsize=(4.2 * len(keys), 3.4 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for v, e in results["settings"][name]["variants"].items():
            for j, k in enumerate(keys):
                c = np.asarray(e["curves"][k], float)
                axes[i, j].plot(c.mean(0), label=v)
                axes[i, j].set_title(f"{name}: {k}", fontsize=9)
                axes[i, j].set_xlabel("outer step")
                axes[i, j].grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--outer-steps", type=int, default=16)
    parser.add_argument("--cliff-steps", type=int, default=6)
    parser.add_argument("--candidates", type=int, default=2048)
    parser.add_argument("--hard-samples", type=int, default=128)
    parser.add_argument("--promoted-updates", type=int, default=100)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    parser.add_argument("--variants", nargs="*", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-baselines", action="store_true", help="skip hard-only RL and the fresh student")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default="soar")
    parser.add_argument("--render", action="store_true", help="rewrite the .md from the .json")
    parser.add_argument("--probe", action="store_true",
                        help="only the cliff probe: which operand lengths the base models ever solve (soar_probe.*)")
    args = parser.parse_args(argv)
    if args.probe:
        results = {"machine": machine_info(), "worker": worker_info(), "created": utc_now()}
        results["probe"] = cliff_probe(args)
        md = probe_markdown(results)
        write_results("soar_probe", results, md)
        print(md)
        return 0
    if args.render:
        import json

        results = json.loads((RESULTS_DIR / f"{args.output}.json").read_text())
        write_results(args.output, results, markdown(results))
        return 0
    if args.quick:
        args.seeds, args.outer_steps, args.cliff_steps, args.candidates, args.hard_samples = 1, 2, 2, 64, 8
        args.promoted_updates, args.output = 4, "soar_quick"
    t0 = time.perf_counter()
    results = {"machine": machine_info(), "worker": worker_info(), "created": utc_now(), "seeds": args.seeds,
               "settings": {}}
    for name in args.settings:
        results["settings"][name] = run_setting(name, args, results, args.output)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    md = markdown(results)
    write_results(args.output, results, md)
    (RESULTS_DIR / f"{args.output}.partial.json").unlink(missing_ok=True)
    plot(results, RESULTS_DIR / f"{args.output}.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
