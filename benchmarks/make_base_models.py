"""(Re)build the shipped base models: ``jaxrl_self/lm/base_models/<name>.{msgpack,json}``.

    python benchmarks/make_base_models.py                       # every recipe (a few minutes each on a CPU)
    python benchmarks/make_base_models.py --only addition-base  # one of them
    python benchmarks/make_base_models.py --out-dir /tmp/bm     # somewhere else (the shipped files untouched)

Each recipe in :data:`jaxrl_self.run.pretrain.RECIPES` names a task, a :class:`~jaxrl_self.lm.PretrainConfig`
and a seed. The script pretrains it with the runner (one program cut into chunks, progress bar, no
checkpoints), evaluates it on the held-out sets per difficulty (greedy, pass@1/pass@k/maj@k over 8 samples at
temperature 1, response lengths) and writes the parameters and the metadata (config, task, timings,
measured accuracies, library versions, this command line). A summary table goes to
``benchmarks/results/base_models.{json,md}``.

Training is deterministic for a given jax/XLA version and CPU; a different machine or version may give
slightly different parameters and accuracies (the test-suite re-measures the shipped files, not a rebuild).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parent.parent

import jaxrl_self  # noqa: E402,F401  (XLA guard before the backend starts)
from _common import machine_info, utc_now, write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from jaxrl_self.lm import base_models
    from jaxrl_self.run import pretrain
    from jaxrl_self.run.runner import RunOptions

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help=f"recipes to build (default: all of "
                        f"{', '.join(pretrain.RECIPES)})")
    parser.add_argument("--out-dir", default=None, help="output folder (default: the package's base_models/)")
    parser.add_argument("--eval-problems", type=int, default=256, help="held-out problems per difficulty")
    parser.add_argument("--eval-samples", type=int, default=8, help="samples per problem for pass@k / maj@k")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-results", action="store_true",
                        help="do not write benchmarks/results/base_models.{json,md}")
    parser.add_argument("--summarize-only", action="store_true",
                        help="train nothing: write the results files from the models' existing JSON metadata")
    args = parser.parse_args(argv)

    names = args.only or list(pretrain.RECIPES)
    unknown = [n for n in names if n not in pretrain.RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; recipes: {', '.join(pretrain.RECIPES)}")
    out_dir = Path(args.out_dir) if args.out_dir else base_models.base_model_dir()
    machine = machine_info()
    made_by = "python benchmarks/make_base_models.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results, md = {}, ["# Base models", "",
                       f"Built {utc_now()} on {machine['cpu_model']} ({machine['cpus_usable']} usable CPUs, "
                       f"load {machine['loadavg']}) by `{made_by.strip()}`.", ""]
    if args.summarize_only:
        shown = out_dir.resolve().relative_to(REPO) if out_dir.resolve().is_relative_to(REPO) else out_dir
        md[2] = f"Summary of the models in `{shown}` written {utc_now()}; see each model's JSON for how it was built."
    for name in names:
        recipe = pretrain.RECIPES[name]
        if args.summarize_only:
            meta = json.loads((out_dir / f"{name}.json").read_text())
        else:
            print(f"== {name}: {recipe.description}", file=sys.stderr, flush=True)
            meta = pretrain.pretrain_and_export(
                recipe.task, recipe.config, out_dir / name, task_kwargs=recipe.task_kwargs, name=name,
                options=RunOptions(seed=recipe.seed, chunks=10, keep_checkpoints=0, progress=not args.no_progress),
                run_dir=False, eval_difficulties=recipe.eval_difficulties, eval_problems=args.eval_problems,
                eval_samples=args.eval_samples, made_by=made_by.strip(), description=recipe.description,
                stop=recipe.stop)
        size = meta["msgpack_bytes"]
        tr = meta["training"]
        ev = meta["eval"]
        print(ev["table"], file=sys.stderr)
        print(f"{name}: {meta['num_params']} params, {size / 1024:.0f} KiB, compile {tr['compile_s']} s, "
              f"train {tr['run_s']} s, eval {meta.get('eval_s')} s", file=sys.stderr, flush=True)
        results[name] = {"description": meta.get("description"), "made_by": meta.get("made_by"),
                         "created": meta.get("created"), "versions": meta.get("versions"), "msgpack_bytes": size,
                         "num_params": meta["num_params"], "training": tr,
                         "eval": {k: v for k, v in ev.items() if k != "table"}, "check": meta.get("check")}
        stopped = (f", stopped by its rule ({tr['stop_rule']})" if tr.get("stopped_by_rule")
                   else (", its stop rule never fired" if "stop_rule" in tr else ""))
        md += [f"## {name}", "", str(meta.get("description", "")), "",
               f"Task `{meta['task']['repr']}`, prompt layout `{meta['prompt_layout']}`, {tr['steps']} steps x "
               f"{meta['pretrain_config']['batch_size']} problems{stopped}; {meta['num_params']:,} parameters, file "
               f"{size / 1024:.0f} KiB; compile {tr['compile_s']} s, training {tr['run_s']} s, evaluation "
               f"{meta.get('eval_s')} s (machine load during the build: see the JSON).", "",
               f"Held-out: {ev['problem_set']['num_per_difficulty']} problems per difficulty "
               f"(seed {ev['problem_set']['seed']}), {ev['num_samples']} samples at temperature {ev['temperature']}.",
               "", ev["table"], ""]
    if not args.no_results:
        j, m = write_results("base_models", {"machine": machine, "models": results}, "\n".join(md))
        print(f"written: {j}, {m}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
