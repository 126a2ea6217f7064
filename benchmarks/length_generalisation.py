"""How far the shipped addition models' positions carry: greedy accuracy when the problem sits later in the
context than in a one-problem pretraining sequence.

    python benchmarks/length_generalisation.py             # writes benchmarks/results/length_generalisation.{json,md}
    python benchmarks/length_generalisation.py --variants  # also builds and probes addition-long's two ablations

The probe: ``k`` solved one-digit examples (``<q> 3 + 4 = </q> <a> 7 </a> <eos>``, 11 tokens each) precede the
held-out problem, so its question starts ``11 k`` positions later (nothing else about it changes; the examples
are the format the model was trained on). Pretraining only ever placed a question at position 1 and a response
before position 26, unless it packs several problems per sequence (``problems_per_sequence``). ``addition-base``
(32 learned positions, one problem per sequence) fits no shift; ``addition-long`` (96 rotary positions, 4 packed
problems per sequence) fits up to 6 examples. ``--variants`` rebuilds ``addition-long``'s recipe with learned
positions and one problem per sequence, and with learned positions and 4 packed problems (3000 steps), to show
what each choice does.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import jaxrl_self  # noqa: E402,F401  (XLA guard before the backend starts)
from _common import machine_info, utc_now, write_results  # noqa: E402

SHIFTS = (0, 1, 2, 3, 4, 6)
DIFFICULTIES = (2, 3, 4)
PROBLEMS = 256


VARIANTS = {  # addition-long's recipe with one choice changed
    "learned positions, 1 problem per sequence": {"positional": "learned", "problems_per_sequence": 1},
    "learned positions, 4 packed problems, 3000 steps": {"positional": "learned", "problems_per_sequence": 4,
                                                         "num_steps": 3000},
}


def build_variant(changes: dict, out: Path) -> dict:
    """Pretrain addition-long's recipe with ``changes`` into ``out`` (its stop rule as shipped)."""
    import dataclasses

    from jaxrl_self.run.pretrain import RECIPES, pretrain_and_export
    from jaxrl_self.run.runner import RunOptions

    r = RECIPES["addition-long"]
    model = r.config.model.replace(positional=changes["positional"])
    steps = changes.get("num_steps", r.config.num_steps)
    config = r.config.replace(model=model, problems_per_sequence=changes["problems_per_sequence"], num_steps=steps)
    stop = dataclasses.replace(r.stop, every=min(r.stop.every, steps))
    return pretrain_and_export(r.task, config, out, task_kwargs=r.task_kwargs, name=out.name,
                               options=RunOptions(seed=r.seed, chunks=10, keep_checkpoints=0, progress=False),
                               run_dir=False, eval_problems=0, stop=stop)


def measure(name: str) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_self import lm

    params, model_config, meta = lm.load_model_or_file(name)
    task = lm.base_model_task(meta)
    v = task.vocab
    rng = np.random.default_rng(0)
    packed = dict(meta.get("pretrain_config") or {}).get("problems_per_sequence", 1)
    out = {"max_len": model_config.max_len, "positional": model_config.positional, "packed": packed,
           "accuracy": {}}
    R = task.solution_len
    for d in DIFFICULTIES:
        problems = lm.held_out_problems(task, (d,), PROBLEMS)
        prompts = np.asarray(problems.prompt)
        plen = np.asarray(lm.prompt_lengths(problems.prompt, "packed"))
        for k in SHIFTS:
            width = 1 + 11 * k + prompts.shape[1]
            if width + R > model_config.max_len:
                out["accuracy"].setdefault(str(d), {})[str(k)] = None
                continue
            rows = np.full((PROBLEMS, width), v.PAD, np.int32)
            lens = np.zeros(PROBLEMS, np.int32)
            for i in range(PROBLEMS):
                shots = []
                for a, b in rng.integers(0, 10, (k, 2)):  # k solved one-digit examples, reversed-answer format
                    shots += v.encode(f"<q> {a} + {b} = </q> <a> {' '.join(str(a + b)[::-1])} </a> <eos>").tolist()
                seq = [v.BOS] + shots + prompts[i, 1:plen[i]].tolist()
                rows[i, :len(seq)] = seq
                lens[i] = len(seq)
            sampling = lm.SamplingConfig(max_new_tokens=R, greedy=True)
            _, gen = jax.jit(lambda p, x, n: lm.generate(p, x, n, jax.random.key(0), config=model_config,
                                                         sampling=sampling))(params, jnp.asarray(rows),
                                                                             jnp.asarray(lens))
            correct = jax.vmap(task.is_correct)(problems, jnp.where(gen.mask, gen.tokens, v.PAD))
            out["accuracy"].setdefault(str(d), {})[str(k)] = round(float(jnp.mean(correct)), 4)
    return out


def main() -> int:
    import tempfile

    results = {name: measure(name) for name in ("addition-base", "addition-long")}
    built = {}
    if "--variants" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            for i, (label, changes) in enumerate(VARIANTS.items()):
                meta = build_variant(changes, Path(tmp) / f"variant{i}")
                results[label] = measure(str(Path(tmp) / f"variant{i}"))
                built[label] = {"changes": changes, "steps": meta["training"]["steps"],
                                "stopped_by_rule": meta["training"]["stopped_by_rule"]}
    machine = machine_info()
    md = ["# Length generalisation of the addition base models", "",
          f"Measured {utc_now()} on {machine['cpu_model']} by `python benchmarks/length_generalisation.py`. Greedy "
          f"accuracy on {PROBLEMS} held-out problems per difficulty when `k` solved one-digit examples (11 tokens "
          "each) precede the problem, i.e. its question starts `11 k` positions later than in pretraining "
          "(`-`: does not fit the context).", "",
          "| model | positions | digits | " + " | ".join(f"k={k} (+{11 * k})" for k in SHIFTS) + " |",
          "|---|---|---|" + "---|" * len(SHIFTS)]
    for name, r in results.items():
        for d, row in r["accuracy"].items():
            cells = ["-" if row[str(k)] is None else f"{row[str(k)]:.3f}" for k in SHIFTS]
            md.append(f"| {name} | {r['max_len']} {r['positional']}, {r['packed']} per sequence | {d} | "
                      + " | ".join(cells) + " |")
    for label, b in built.items():
        md.append("")
        md.append(f"*{label}*: addition-long's recipe with {b['changes']}; {b['steps']} steps, stop rule "
                  f"{'fired' if b['stopped_by_rule'] else 'never fired'}.")
    j, m = write_results("length_generalisation", {"machine": machine, "shifts": SHIFTS, "problems": PROBLEMS,
                                                   "models": results, "variants": built}, "\n".join(md) + "\n")
    print("\n".join(md))
    print(f"written: {j}, {m}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
