"""Making base models: the pretrain-and-export driver, the shipped models' recipes, and reading a pretrain run's
checkpoints. (The loader the algorithms use is :mod:`jaxrl_self.lm.base_models`, a layer below.)

::

    from jaxrl_self.run import pretrain
    meta = pretrain.pretrain_and_export("addition", config, "models/my-addition", task_kwargs={"max_digits": 5})
    params, model_config, meta = pretrain.load_model_or_run("runs/pretrain-addition-...", step=200)

``python benchmarks/make_base_models.py`` rebuilds every model in :data:`RECIPES`; ``jaxrl-self pretrain`` runs
:func:`pretrain_and_export` from the command line (``--recipe NAME`` starts from a recipe).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.lm.base_models import (CHECK_PROBLEMS, default_eval_difficulties, evaluate_model,
                                       load_model_or_file, save_model)
from jaxrl_self.lm.evaluate import HELD_OUT_SEED, EvalConfig, held_out_problems, make_evaluate, max_difficulty
from jaxrl_self.lm.pretrain import PretrainConfig
from jaxrl_self.nets.transformer import Params, TransformerConfig
from jaxrl_self.run.checkpoint import config_to_dict
from jaxrl_self.run.metrics import flatten_metrics
from jaxrl_self.run.runner import RunOptions, restore_run, run_training, seed_keys
from jaxrl_self.run.stats import final_value

__all__ = ["VALIDATION_SEED", "StopRule", "BaseModelRecipe", "RECIPES", "load_model_or_run", "pretrain_and_export"]


#: Seed of the validation sets that :class:`StopRule` checks (disjoint stream from the evaluation sets').
VALIDATION_SEED = HELD_OUT_SEED + 1


@dataclasses.dataclass(frozen=True)
class StopRule:
    """Stop pretraining at the first check where greedy accuracy at ``difficulty`` reaches ``greedy_accuracy``
    (and, for each ``(d, a)`` in ``require``, greedy accuracy at difficulty ``d`` reaches ``a``).

    Small Transformers learn each difficulty in an abrupt transition (near 0 to near 1 within a few hundred
    steps), so a fixed step count cannot reliably land "partly right" at a difficulty; this rule can. It is
    checked every ``every`` updates on ``problems`` validation problems per difficulty drawn with ``seed`` (by
    default :data:`VALIDATION_SEED`, not the evaluation sets' seed). Without a hit the run ends at ``num_steps``.
    ``require`` keeps the rule from firing before the easier difficulties are learnt (e.g. ``((3, 0.95),)``:
    "good at 3 digits" as well as "partly right at 4").
    """

    difficulty: int
    greedy_accuracy: float
    every: int = 100
    problems: int = 128
    seed: int = VALIDATION_SEED
    require: tuple[tuple[int, float], ...] = ()

@dataclasses.dataclass(frozen=True)
class BaseModelRecipe:
    """How a shipped base model is made: task, pretraining config, seed, stopping rule and evaluation."""

    name: str
    task: str  # registered task name (jaxrl_self.envs.make)
    task_kwargs: Mapping[str, Any]
    config: PretrainConfig
    seed: int = 0
    stop: StopRule | None = None
    eval_difficulties: tuple[int, ...] | None = None  # default: default_eval_difficulties(task)
    description: str = ""


#: The standard base models (``benchmarks/make_base_models.py`` builds them).
RECIPES: dict[str, BaseModelRecipe] = {
    "addition-base": BaseModelRecipe(
        name="addition-base",
        task="addition",
        task_kwargs={"max_digits": 5},
        config=PretrainConfig(
            num_steps=3000, batch_size=64,
            model=TransformerConfig(num_layers=2, d_model=96, num_heads=4, d_ff=384, max_len=32,
                                    positional="learned"),
            prompt_layout="packed", difficulty_weights=(1.0, 1.0, 1.0, 0.5),
            learning_rate=2e-3, warmup_steps=100),
        stop=StopRule(difficulty=4, greedy_accuracy=0.2, every=25, require=((3, 0.95),)),
        description="reversed-answer addition: good at 1-3 digits, partly right at 4, wrong at 5 (1-3 digits "
                    "with half as many 4-digit problems; stopped at the first check where 4-digit greedy accuracy "
                    "reaches 20% and 3-digit greedy accuracy 95%)",
    ),
    "addition-long": BaseModelRecipe(
        name="addition-long",
        task="addition",
        task_kwargs={"max_digits": 5},
        config=PretrainConfig(
            num_steps=12000, batch_size=64,
            model=TransformerConfig(num_layers=2, d_model=96, num_heads=4, d_ff=384, max_len=96,
                                    positional="rope"),
            prompt_layout="packed", difficulty_weights=(1.0, 1.0, 1.0, 0.5), problems_per_sequence=4,
            learning_rate=2e-3, warmup_steps=100),
        stop=StopRule(difficulty=4, greedy_accuracy=0.2, every=100, require=((3, 0.95),)),
        description=("addition-base's skills (good at 1-3 digits, partly right at 4, wrong at 5) with a 96-token "
                     "context, the room the teacher-student contexts need (question + solution + explanation; a "
                     "teacher's written problems): rotary positions and 4 solved problems packed per training "
                     "sequence, so it answers a question wherever it starts in its context "
                     "(benchmarks/length_generalisation.py)"),
    ),
    "chain-base": BaseModelRecipe(
        name="chain-base",
        task="chain",
        task_kwargs={"max_steps_cap": 16},
        config=PretrainConfig(
            num_steps=2000, batch_size=64,
            model=TransformerConfig(num_layers=2, d_model=64, num_heads=4, d_ff=256, max_len=64,
                                    positional="learned"),
            prompt_layout="padded", learning_rate=3e-3, warmup_steps=100),
        stop=StopRule(difficulty=8, greedy_accuracy=0.5, every=50),
        description="arithmetic chain (the task's power-law lengths, stopped when 8-step greedy accuracy first "
                    "reaches 50%): good at short chains, degrading with length",
    ),
}



# ============================================================================================ run folders
def load_model_or_run(ref: str | os.PathLike, step: int | None = None
                      ) -> tuple[Params, TransformerConfig, dict[str, Any]]:
    """``(params, model_config, metadata)`` from a shipped base-model name, a model file (stem or either file),
    or a ``jaxrl-self pretrain`` run folder (its exported ``model.*`` if present and ``step`` is None, else the
    newest or the given checkpoint, seed 0; ``metadata`` then holds ``task``, ``prompt_layout`` and
    ``pretrain_config`` rebuilt from ``config.json``)."""
    path = Path(str(ref))
    if path.is_dir() and (step is not None or not (path / "model.msgpack").exists()):
        return _load_run_checkpoint(path, step)
    return load_model_or_file(ref)


def _load_run_checkpoint(run_dir: Path, step: int | None) -> tuple[Params, TransformerConfig, dict[str, Any]]:
    run = restore_run(run_dir, algo="pretrain", step=step, owner="load_model_or_run")
    desc, config = run.description, run.config
    params = jax.tree.map(lambda x: x[0], run.states.params)
    meta = {"name": run_dir.name, "task": {"name": desc["env"], "kwargs": dict(desc.get("env_kwargs") or {}),
                                            "repr": repr(run.env)},
            "prompt_layout": config.prompt_layout, "pretrain_config": desc["config"], "checkpoint_step": run.step}
    return params, config.model, meta


# ============================================================================================ building
def _train_until(config: PretrainConfig, task: Any, stop: StopRule, options: Any
                 ) -> tuple[Params, dict[str, np.ndarray], dict[str, float], dict[str, Any]]:
    """Chunks of ``stop.every`` updates of one seed, with a greedy validation check after each."""
    from jaxrl_self.lm.pretrain import make_train

    owner = "StopRule"
    top = max_difficulty(task)
    if not 1 <= stop.difficulty <= top:
        raise ConfigError("difficulty", stop.difficulty, f"an int in [1, {top}]", owner)
    if stop.every < 1 or config.num_steps % stop.every:
        raise ConfigError("every", stop.every, f"a positive divisor of num_steps={config.num_steps}", owner)
    for d, _ in stop.require:
        if not 1 <= d <= top:
            raise ConfigError("require", stop.require, f"(difficulty in [1, {top}], accuracy) pairs", owner)
    train = make_train(config, task)
    conditions = ((stop.difficulty, stop.greedy_accuracy),) + tuple((int(d), float(a)) for d, a in stop.require)
    difficulties = tuple(sorted({d for d, _ in conditions}))
    problems = held_out_problems(task, difficulties, stop.problems, stop.seed)
    check = make_evaluate(config.model, task, EvalConfig(num_samples=0, ks=()), prompt_layout=config.prompt_layout)
    t = time.perf_counter()
    state = jax.jit(train.init)(seed_keys(options.seed, 1)[0])
    chunk = jax.jit(lambda s: train.run(s, stop.every)).lower(state).compile()
    accuracy = jax.jit(lambda p: check(p, jax.random.key(0), problems).by_difficulty.greedy_accuracy).lower(
        state.params).compile()  # [max_difficulty], NaN where the set has no problem
    compile_s = time.perf_counter() - t
    rows, curve, hit, run_s = [], [], False, 0.0
    for _ in range(config.num_steps // stop.every):
        t = time.perf_counter()
        state, m = chunk(state)
        by_d = np.asarray(accuracy(state.params))
        run_s += time.perf_counter() - t
        acc = float(by_d[stop.difficulty - 1])
        rows.append(flatten_metrics(jax.device_get(m)))
        step = int(state.update_step)
        curve.append([step, round(acc, 4)] + [round(float(by_d[d - 1]), 4) for d, _ in stop.require])
        if int(state.nonfinite_update) >= 0:
            from jaxrl_self.core.errors import NonFiniteLossError

            raise NonFiniteLossError(int(state.nonfinite_update))
        if options.progress:
            extra = "".join(f", at {d}: {float(by_d[d - 1]):.3f}" for d, _ in stop.require)
            print(f"step {step}: loss {float(np.mean(rows[-1]['loss'])):.4f}, sequence accuracy "
                  f"{float(np.mean(rows[-1]['sequence_accuracy'])):.3f}, validation greedy accuracy at difficulty "
                  f"{stop.difficulty}: {acc:.3f}{extra}", file=sys.stderr, flush=True)
        if all(float(by_d[d - 1]) >= a for d, a in conditions):
            hit = True
            break
    metrics = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    info = {"stop_rule": dataclasses.asdict(stop), "stopped_by_rule": hit, "validation_curve": curve,
            "validation_curve_columns": ["step", f"greedy@{stop.difficulty}"] + [f"greedy@{d}" for d, _ in stop.require]}
    return state.params, metrics, {"compile_s": compile_s, "run_s": run_s}, info


def _versions() -> dict[str, str]:
    import flax
    import jaxlib
    import optax

    from jaxrl_self import __version__

    return {"jax": jax.__version__, "jaxlib": getattr(jaxlib, "__version__", "?"), "flax": flax.__version__,
            "optax": optax.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "jaxrl_self": __version__, "platform": platform.platform(), "backend": jax.default_backend(),
            "cpu_count": str(os.cpu_count())}


def pretrain_and_export(task_name: str, config: PretrainConfig, out: str | os.PathLike | None, *,
                        task_kwargs: Mapping[str, Any] | None = None, name: str | None = None,
                        options: Any = None, run_dir: str | os.PathLike | bool | None = False,
                        eval_difficulties: Sequence[int] | None = None, eval_problems: int = 256,
                        eval_samples: int = 8, made_by: str | None = None,
                        description: str = "", stop: StopRule | None = None) -> dict[str, Any]:
    """Pretrain on a registered task with the runner, evaluate per difficulty, and save in the base-model format.

    Args:
        task_name, task_kwargs: the task (``jaxrl_self.envs.make(task_name, **task_kwargs)``).
        config: the :class:`PretrainConfig`.
        out: where to write ``<stem>.msgpack``/``.json`` (None: do not write).
        options: :class:`jaxrl_self.run.RunOptions` (seeds must be 1; default: progress bar, 10 chunks, no
            checkpoints); ``run_dir``: the run folder, or False for none.
        eval_difficulties, eval_problems, eval_samples: the held-out evaluation (0 problems = skip it).
        made_by: the command line recorded in the metadata (default: ``sys.argv``).
        stop: an optional :class:`StopRule`; the run then goes through a plain chunk loop (``stop.every``
            updates per chunk, no run folder or checkpoints) that stops at the rule's first hit.

    Returns:
        The metadata (also written next to the parameters).
    """
    from jaxrl_self import envs
    from jaxrl_self.lm import pretrain

    options = RunOptions(chunks=10, keep_checkpoints=0) if options is None else options
    if options.seeds != 1:
        raise ConfigError("seeds", options.seeds, "1 (a base model is one run)", "pretrain_and_export")
    task_kwargs = dict(task_kwargs or {})
    task = envs.make(task_name, **task_kwargs)
    config.validate(task)
    t0 = time.perf_counter()
    stop_info: dict[str, Any] = {}
    if stop is None:
        result = run_training(pretrain, task_name, config, options, env_kwargs=task_kwargs, run_dir=run_dir)
        params = jax.tree.map(lambda x: x[0], result.states.params)
        summary, metrics = result.summary, result.metrics
    else:
        params, metrics, summary, stop_info = _train_until(config, task, stop, options)
    wall = time.perf_counter() - t0
    steps_done = int(np.asarray(next(iter(metrics.values()))).shape[0]) if metrics else 0
    train_metrics = {}
    for k in ("loss", "token_accuracy", "sequence_accuracy"):
        if k in metrics:
            train_metrics[k + "_final"] = float(np.mean(final_value(np.asarray(metrics[k]).reshape(steps_done, -1).T)))
    meta: dict[str, Any] = {
        "name": name or (Path(out).stem if out is not None else f"{task_name}-pretrained"),
        "description": description,
        "task": {"name": task_name, "kwargs": task_kwargs, "repr": repr(task)},
        "prompt_layout": config.prompt_layout,
        "pretrain_config": config_to_dict(config),
        "seed": int(options.seed),
        "training": {
            "steps": steps_done, "problems_seen": steps_done * int(config.batch_size), **stop_info,
            "compile_s": round(float(summary.get("compile_s", 0.0)), 2),
            "run_s": round(float(summary.get("run_s", 0.0)), 2), "wall_s": round(wall, 2),
            **{k: round(v, 5) for k, v in train_metrics.items()},
            "note": "*_final: mean over the last 10% of updates, on freshly sampled training batches",
        },
        "made_by": made_by if made_by is not None else " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    model_config = config.model
    if eval_problems > 0:
        t = time.perf_counter()
        ds = tuple(eval_difficulties) if eval_difficulties else default_eval_difficulties(task)
        meta["eval"] = evaluate_model(params, model_config, task, prompt_layout=config.prompt_layout,
                                      difficulties=ds, num_per_difficulty=eval_problems, num_samples=eval_samples)
        check = evaluate_model(params, model_config, task, prompt_layout=config.prompt_layout, difficulties=ds,
                               num_per_difficulty=min(CHECK_PROBLEMS, eval_problems), num_samples=0)
        meta["check"] = {**check["problem_set"], "greedy_accuracy": {
            d: row["greedy_accuracy"] for d, row in check["by_difficulty"].items()}}
        meta["eval_s"] = round(time.perf_counter() - t, 2)
    if out is not None:
        path = save_model(out, params, model_config, meta)
        meta = json.loads(path.with_suffix(".json").read_text())  # with the fields save_model adds
    return meta
