"""Base models: small pretrained LMs that the self-improvement methods start from, shipped with the package.

::

    from jaxrl_self import lm
    params, model_config, meta = lm.load_base_model("addition-base")
    task = lm.base_model_task(meta)              # the task it was trained on (same static sizes)
    layout = meta["prompt_layout"]               # "packed" or "padded": lm.prompt_lengths(prompts, layout)
    meta["eval"]["by_difficulty"]["4"]           # measured greedy / pass@k / maj@k at 4 digits

**Shipped models** (``jaxrl_self/lm/base_models/<name>.msgpack`` + ``<name>.json``; rebuilt by
``python benchmarks/make_base_models.py``, recipes in :data:`RECIPES`):

* ``addition-base``: reversed-answer addition (``AdditionTask(max_digits=5)``), 2 layers of width 96, trained
  on 1-3 digit problems with half as many 4-digit ones and stopped in the middle of its 4-digit transition
  (:class:`StopRule`): good at 1-3 digits, partly right at 4, wrong at 5;
* ``chain-base``: the arithmetic chain (``ChainTask(max_steps_cap=16)``, the task's power-law lengths): good
  at short chains, degrading with length.

The measured accuracies per difficulty are in each model's JSON (``eval``: greedy, pass@1, pass@k, maj@k,
well-formed fraction and response lengths on :func:`~jaxrl_self.lm.evaluate.held_out_problems` sets) and in
``docs``; ``check`` holds greedy accuracies on a small prefix of the same sets that the test-suite
re-measures, so a change in the file format, the model code or generation is caught.

**File format** (:func:`save_model` / :func:`load_model`, also what ``jaxrl-self pretrain --out`` writes):
``<stem>.msgpack`` is ``flax.serialization.msgpack_serialize`` of the float32 parameter dict (exactly the
pytree :func:`~jaxrl_self.nets.transformer.init_params` returns); ``<stem>.json`` holds ``format_version``,
``model_config`` (every :class:`~jaxrl_self.nets.transformer.TransformerConfig` field), ``task``
(registered name + constructor kwargs), ``prompt_layout``, the pretraining config, seed, steps, timings,
training metrics, evaluation results, library versions and the command that made it, and the SHA-256 of the
msgpack. Loading checks the hash and that the parameter tree matches ``init_params(model_config)`` exactly.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.resources
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.lm.evaluate import (HELD_OUT_SEED, EvalConfig, held_out_problems, make_evaluate, max_difficulty)
from jaxrl_self.lm.pretrain import PretrainConfig
from jaxrl_self.nets.transformer import Params, TransformerConfig, init_params, num_params

__all__ = [
    "FORMAT_VERSION",
    "BaseModelRecipe",
    "StopRule",
    "VALIDATION_SEED",
    "RECIPES",
    "UnknownBaseModelError",
    "BaseModelFormatError",
    "base_model_dir",
    "available_base_models",
    "load_base_model",
    "load_model",
    "load_model_or_run",
    "save_model",
    "base_model_task",
    "default_eval_difficulties",
    "evaluate_model",
    "pretrain_and_export",
]

#: Version of the on-disk format written by :func:`save_model`.
FORMAT_VERSION = 1
#: Problems per difficulty of the ``check`` measurement stored in the metadata (a prefix of the eval sets).
CHECK_PROBLEMS = 64


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


class UnknownBaseModelError(KeyError):
    """A base-model name that is not shipped."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BaseModelFormatError(ValueError):
    """A model file does not match its metadata or the current model code."""


# ============================================================================================ files
def base_model_dir() -> Path:
    """The folder holding the shipped ``<name>.msgpack`` / ``<name>.json`` files."""
    return Path(str(importlib.resources.files("jaxrl_self.lm").joinpath("base_models")))


def available_base_models() -> list[str]:
    """Names of the shipped base models (both files present)."""
    d = base_model_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.msgpack") if p.with_suffix(".json").exists())


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".msgpack", ".json") else p


def save_model(path: str | os.PathLike, params: Params, model_config: TransformerConfig,
               metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``<stem>.msgpack`` (parameters) and ``<stem>.json`` (metadata); returns the msgpack path.

    ``path`` may end in ``.msgpack``/``.json`` or be the stem. ``metadata`` is stored as given, plus
    ``format_version``, ``model_config``, ``num_params``, ``msgpack_sha256`` and ``msgpack_bytes``.
    """
    from flax import serialization

    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    host = jax.tree.map(lambda x: np.asarray(x, np.float32), jax.device_get(params))
    blob = serialization.msgpack_serialize(host)
    meta = dict(metadata or {})
    meta.update({
        "format_version": FORMAT_VERSION,
        "model_config": dataclasses.asdict(model_config),
        "num_params": num_params(host),
        "msgpack_sha256": hashlib.sha256(blob).hexdigest(),
        "msgpack_bytes": len(blob),
    })
    stem.with_suffix(".msgpack").write_bytes(blob)
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=False, allow_nan=False) + "\n")
    return stem.with_suffix(".msgpack")


def load_model(path: str | os.PathLike) -> tuple[Params, TransformerConfig, dict[str, Any]]:
    """Load ``(params, model_config, metadata)`` written by :func:`save_model` (``path``: stem or either file).

    Raises ``FileNotFoundError`` for missing files and :class:`BaseModelFormatError` when the hash, the format
    version or the parameter tree (structure, shapes) does not match.
    """
    from flax import serialization

    stem = _stem(path)
    mp, js = stem.with_suffix(".msgpack"), stem.with_suffix(".json")
    for p in (mp, js):
        if not p.exists():
            raise FileNotFoundError(f"model file {p} does not exist (a model is <stem>.msgpack + <stem>.json)")
    meta = json.loads(js.read_text())
    blob = mp.read_bytes()
    if meta.get("format_version") != FORMAT_VERSION:
        raise BaseModelFormatError(f"{js}: format_version={meta.get('format_version')!r}, this code reads "
                                   f"{FORMAT_VERSION}")
    digest = hashlib.sha256(blob).hexdigest()
    if meta.get("msgpack_sha256") not in (None, digest):
        raise BaseModelFormatError(f"{mp}: SHA-256 {digest} does not match the metadata's {meta['msgpack_sha256']}")
    cfg_dict = dict(meta["model_config"])
    try:
        model_config = TransformerConfig(**cfg_dict)
    except TypeError as e:
        raise BaseModelFormatError(f"{js}: model_config {cfg_dict} does not fit TransformerConfig ({e})") from None
    raw = serialization.msgpack_restore(blob)
    expected = jax.eval_shape(lambda: init_params(jax.random.key(0), model_config))
    _check_tree(raw, expected, str(mp))
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), raw)
    return params, model_config, meta


def _check_tree(raw: Any, expected: Any, where: str) -> None:
    got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_flatten_with_path(raw)[0]}
    want = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        shapes = sorted(k for k in set(got) & set(want) if got[k] != want[k])
        raise BaseModelFormatError(
            f"{where}: parameters do not match the model config (missing {missing[:5]}, unexpected {extra[:5]}, "
            f"shape mismatches {[(k, got[k], want[k]) for k in shapes[:5]]})")


def load_base_model(name: str) -> tuple[Params, TransformerConfig, dict[str, Any]]:
    """A shipped base model by name: ``(params, TransformerConfig, metadata)``; see the module docstring."""
    names = available_base_models()
    if name not in names:
        raise UnknownBaseModelError(
            f"unknown base model {name!r}; available: {', '.join(names) or '(none)'} "
            f"(recipes: {', '.join(RECIPES)}; build them with 'python benchmarks/make_base_models.py')")
    return load_model(base_model_dir() / name)


def load_model_or_run(ref: str | os.PathLike, step: int | None = None
                      ) -> tuple[Params, TransformerConfig, dict[str, Any]]:
    """``(params, model_config, metadata)`` from a shipped base-model name, a model file (stem or either file),
    or a ``jaxrl-self pretrain`` run folder (its exported ``model.*`` if present and ``step`` is None, else the
    newest or the given checkpoint, seed 0; ``metadata`` then holds ``task``, ``prompt_layout`` and
    ``pretrain_config`` rebuilt from ``config.json``)."""
    ref_s = str(ref)
    if ref_s in available_base_models():
        return load_base_model(ref_s)
    path = Path(ref_s)
    if path.is_dir():
        if step is None and (path / "model.msgpack").exists():
            return load_model(path / "model")
        return _load_run_checkpoint(path, step)
    if _stem(path).with_suffix(".msgpack").exists():
        return load_model(path)
    raise FileNotFoundError(f"{ref_s!r} is neither a base model ({', '.join(available_base_models()) or 'none'}), "
                            "a model file (<stem>.msgpack + <stem>.json) nor a pretrain run folder")


def _load_run_checkpoint(run_dir: Path, step: int | None) -> tuple[Params, TransformerConfig, dict[str, Any]]:
    from jaxrl_self import envs
    from jaxrl_self.lm.pretrain import PretrainConfig, make_train
    from jaxrl_self.run.checkpoint import Checkpointer, config_from_dict
    from jaxrl_self.run.runner import seed_keys

    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir} has no config.json (not a run folder)")
    desc = json.loads(cfg_path.read_text())
    if desc.get("algo") != "pretrain":
        raise ConfigError("run_dir", str(run_dir), f"a pretrain run folder (this one ran {desc.get('algo')!r})",
                          "load_model_or_run")
    config = config_from_dict(PretrainConfig, desc["config"])
    task_kwargs = dict(desc.get("env_kwargs") or {})
    task = envs.make(desc["env"], **task_kwargs)
    train = make_train(config, task)
    abstract = jax.eval_shape(jax.vmap(train.init), seed_keys(int(desc.get("seed", 0)), int(desc.get("num_seeds", 1))))
    with Checkpointer(run_dir / "checkpoints", keep=1) as ckpt:
        restored_step, states, _ = ckpt.restore(abstract, step)
    params = jax.tree.map(lambda x: x[0], states.params)
    meta = {"name": run_dir.name, "task": {"name": desc["env"], "kwargs": task_kwargs, "repr": repr(task)},
            "prompt_layout": config.prompt_layout, "pretrain_config": desc["config"],
            "checkpoint_step": int(restored_step)}
    return params, config.model, meta


def base_model_task(metadata: Mapping[str, Any]) -> Any:
    """The task a model was trained on, rebuilt from ``metadata["task"]`` (name + constructor kwargs)."""
    from jaxrl_self import envs

    task = metadata.get("task")
    if not isinstance(task, Mapping) or "name" not in task:
        raise BaseModelFormatError(f"metadata has no task description: {task!r}")
    return envs.make(task["name"], **dict(task.get("kwargs", {})))


# ============================================================================================ evaluation
def default_eval_difficulties(task: Any) -> tuple[int, ...]:
    """Every difficulty up to 8, then a geometric-ish spread (12, 16, 24, 32, ...) up to the task's maximum."""
    top = max_difficulty(task)
    grid = [d for d in range(1, 9)] + [12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
    out = sorted({d for d in grid if d <= top} | {top})
    return tuple(out)


def evaluate_model(params: Params, model_config: TransformerConfig, task: Any, *, prompt_layout: str,
                   difficulties: Sequence[int] | None = None, num_per_difficulty: int = 256,
                   num_samples: int = 8, ks: Sequence[int] | None = None, temperature: float = 1.0,
                   seed: int = HELD_OUT_SEED, key: jax.Array | None = None) -> dict[str, Any]:
    """Evaluate on :func:`held_out_problems` sets; returns ``EvalResult.to_dict()`` plus the set description."""
    ds = tuple(difficulties) if difficulties else default_eval_difficulties(task)
    if ks is None:
        ks = tuple(k for k in (1, 4, 8, 16, 32, 64) if k <= num_samples)
    config = EvalConfig(num_samples=num_samples, ks=tuple(ks), temperature=temperature)
    problems = held_out_problems(task, ds, num_per_difficulty, seed)
    evaluate = jax.jit(make_evaluate(model_config, task, config, prompt_layout=prompt_layout))
    result = evaluate(params, jax.random.key(0) if key is None else key, problems)
    out = result.to_dict()
    out["problem_set"] = {"difficulties": list(ds), "num_per_difficulty": int(num_per_difficulty),
                          "seed": int(seed)}
    out["table"] = result.table()
    return out


# ============================================================================================ building
def _train_until(config: PretrainConfig, task: Any, stop: StopRule, options: Any
                 ) -> tuple[Params, dict[str, np.ndarray], dict[str, float], dict[str, Any]]:
    """Chunks of ``stop.every`` updates of one seed, with a greedy validation check after each."""
    from jaxrl_self.lm.pretrain import make_train
    from jaxrl_self.run.metrics import flatten_metrics
    from jaxrl_self.run.runner import seed_keys

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
    from jaxrl_self.run.checkpoint import config_to_dict
    from jaxrl_self.run.runner import RunOptions, run_training
    from jaxrl_self.run.stats import final_value

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
