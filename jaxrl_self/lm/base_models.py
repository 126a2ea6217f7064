"""Base models: small pretrained LMs that the self-improvement methods start from, shipped with the package.

::

    from jaxrl_self import lm
    params, model_config, meta = lm.load_base_model("addition-base")
    task = lm.base_model_task(meta)              # the task it was trained on (same static sizes)
    layout = meta["prompt_layout"]               # "packed" or "padded": lm.prompt_lengths(prompts, layout)
    meta["eval"]["by_difficulty"]["4"]           # measured greedy / pass@k / maj@k at 4 digits

This module is the *loader* (files, names, metadata, evaluation); the driver that pretrains and exports them,
their recipes and the reader of a pretrain run's checkpoints live one layer up, in :mod:`jaxrl_self.run.pretrain`.

**Shipped models** (``jaxrl_self/lm/base_models/<name>.msgpack`` + ``<name>.json``; rebuilt by
``python benchmarks/make_base_models.py``, recipes in :data:`jaxrl_self.run.pretrain.RECIPES`):

* ``addition-base``: reversed-answer addition (``AdditionTask(max_digits=5)``), 2 layers of width 96, trained
  on 1-3 digit problems with half as many 4-digit ones and stopped in the middle of its 4-digit transition
  (:class:`~jaxrl_self.run.pretrain.StopRule`): good at 1-3 digits, partly right at 4, wrong at 5;
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
import hashlib
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_self.lm.evaluate import HELD_OUT_SEED, EvalConfig, held_out_problems, make_evaluate, max_difficulty
from jaxrl_self.nets.transformer import Params, TransformerConfig, init_params, num_params

__all__ = [
    "FORMAT_VERSION",
    "CHECK_PROBLEMS",
    "UnknownBaseModelError",
    "BaseModelFormatError",
    "base_model_dir",
    "available_base_models",
    "load_base_model",
    "load_model",
    "load_model_or_file",
    "read_metadata",
    "save_model",
    "base_model_task",
    "default_eval_difficulties",
    "evaluate_model",
]

#: Version of the on-disk format written by :func:`save_model`.
FORMAT_VERSION = 1
#: Problems per difficulty of the ``check`` measurement stored in the metadata (a prefix of the eval sets).
CHECK_PROBLEMS = 64


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
            "(recipes in jaxrl_self.run.pretrain.RECIPES; build them with 'python benchmarks/make_base_models.py')")
    return load_model(base_model_dir() / name)


def load_model_or_file(ref: str | os.PathLike) -> tuple[Params, TransformerConfig, dict[str, Any]]:
    """``(params, model_config, metadata)`` from a shipped base-model name, a model file (stem or either file), or
    a ``jaxrl-self pretrain`` run folder's exported ``model.*`` (what every finished pretrain run writes). A run
    folder's *checkpoints* are read one layer up, by :func:`jaxrl_self.run.pretrain.load_model_or_run`."""
    ref_s = str(ref)
    if ref_s in available_base_models():
        return load_base_model(ref_s)
    path = Path(ref_s)
    if path.is_dir():
        if (path / "model.msgpack").exists():
            return load_model(path / "model")
        raise FileNotFoundError(f"run folder {ref_s!r} has no exported model (model.msgpack); load one of its "
                                "checkpoints with jaxrl_self.run.pretrain.load_model_or_run(path, step=...) or "
                                "'jaxrl-self eval-lm PATH --step N'")
    if _stem(path).with_suffix(".msgpack").exists():
        return load_model(path)
    raise FileNotFoundError(f"{ref_s!r} is neither a base model ({', '.join(available_base_models()) or 'none'}), "
                            "a model file (<stem>.msgpack + <stem>.json) nor a pretrain run folder")


def read_metadata(ref: str | os.PathLike) -> dict[str, Any]:
    """The metadata (``<stem>.json``) of what :func:`load_model_or_file` would load, without reading the
    parameters; for a run folder without an exported model, what its ``config.json`` says of the task and
    prompt layout."""
    ref_s = str(ref)
    if ref_s in available_base_models():
        return json.loads((base_model_dir() / f"{ref_s}.json").read_text())
    path = Path(ref_s)
    if path.is_dir():
        if (path / "model.json").exists():
            return json.loads((path / "model.json").read_text())
        cfg = path / "config.json"
        if cfg.exists():
            desc = json.loads(cfg.read_text())
            return {"name": path.name, "task": {"name": desc.get("env"), "kwargs": dict(desc.get("env_kwargs") or {})},
                    "prompt_layout": dict(desc.get("config") or {}).get("prompt_layout", "packed")}
    js = _stem(path).with_suffix(".json")
    if js.exists():
        return json.loads(js.read_text())
    raise FileNotFoundError(f"{ref_s!r} is neither a base model ({', '.join(available_base_models()) or 'none'}), "
                            "a model file (<stem>.msgpack + <stem>.json) nor a pretrain run folder")


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
