"""Metric sinks for a run folder: JSONL and CSV always, TensorBoard and Weights & Biases when asked.

A run's metrics come out of ``lax.scan`` as a pytree of arrays with leading axes ``(updates, seeds)``. The
:class:`MetricsWriter` turns each chunk of them into rows:

* one row per update per seed: ``{"update": u, "seed": s, <metric>: value, ...}`` (``seed`` is the seed
  index ``0..S-1``);
* one row per update with ``"seed": "mean"`` holding the mean over seeds.

``update`` counts from 0 (the first update of the run). Metric names are the pytree paths of the metrics
dataclass joined with ``.`` (``loss``, ``episode_return``, ``curriculum.replay_fraction``...). Scalar
metrics only go to the CSV; JSONL rows also carry non-scalar ones (as nested lists).

Validity: a metric ``X`` with a companion boolean ``X_valid`` (e.g. ``episode_return`` with
``episode_return_valid``, False when no episode finished during that update) is written as ``null`` (JSONL)
or an empty cell (CSV) where it is not valid, and its mean over seeds only counts the valid seeds
(``X_valid`` of the mean row is "any seed valid"). Placeholder zeros are never averaged. A flag also
covers a whole group: ``eval_valid`` governs ``eval`` and every ``eval.*`` metric (e.g. the fields of an
``eval`` sub-dataclass); a metric's own ``X_valid`` takes precedence, then the flag of its longest dotted
prefix.

Files: ``metrics.jsonl`` and ``metrics.csv`` in the run folder, appended chunk by chunk and flushed at each
chunk end. On resume the writer drops rows at or after the restored update (they came from a chunk whose
checkpoint was never written), so a resumed run has exactly one row per update and seed.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import jax
import numpy as np

from jaxrl_self.run.stats import nanmean_masked

__all__ = ["flatten_metrics", "flatten_tree", "path_name", "MetricsWriter", "read_jsonl", "VALID_SUFFIX", "MEAN_SEED",
           "validity_flag"]

VALID_SUFFIX = "_valid"
MEAN_SEED = "mean"


def path_name(path) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        else:  # pragma: no cover - flattened index keys
            parts.append(str(getattr(k, "key", k)))
    return ".".join(parts)


def flatten_tree(tree: Any) -> dict[str, Any]:
    """A pytree (dataclass, dict...) as ``{dotted.name: leaf}``, in pytree order; works on traced leaves."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {path_name(path) or "value": leaf for path, leaf in leaves}


def flatten_metrics(metrics: Any) -> dict[str, np.ndarray]:
    """A metrics pytree (dataclass, dict...) as ``{dotted.name: numpy array}``, in pytree order."""
    return {k: np.asarray(v) for k, v in flatten_tree(metrics).items()}


def _to_json(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return [_to_json(v) for v in x.tolist()] if x.ndim else _to_json(x.item())
    if isinstance(x, (np.generic,)):
        return _to_json(x.item())
    if isinstance(x, float) and math.isnan(x):
        return None  # NaN is not JSON; +-inf is kept (Python's json writes and reads it as Infinity)
    return x


def _mean_over_seeds(name: str, values: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """``values``: (U, S, ...). Mean over the seed axis, respecting validity (see module docstring)."""
    if values.dtype == np.bool_:
        return values.any(axis=1) if name.endswith(VALID_SUFFIX) else values.mean(axis=1)
    if valid is not None:
        v = valid.reshape(valid.shape + (1,) * (values.ndim - valid.ndim))
        return nanmean_masked(values, np.broadcast_to(v, values.shape), axis=1)
    if np.issubdtype(values.dtype, np.integer):
        return values.mean(axis=1)
    return nanmean_masked(values, None, axis=1) if values.size else values.mean(axis=1)


def validity_flag(name: str, names: Iterable[str]) -> str | None:
    """The metric that says where ``name`` is valid: ``name_valid``, else ``p_valid`` for the longest dotted
    prefix ``p`` of ``name`` that has one (``eval_valid`` for ``eval.solved_rate.Labyrinth``), else None."""
    if name.endswith(VALID_SUFFIX):
        return None
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        flag = ".".join(parts[:k]) + VALID_SUFFIX
        if flag in names:
            return flag
    return None


def chunk_rows(metrics: dict[str, np.ndarray], first_update: int) -> list[dict[str, Any]]:
    """Rows (per seed, then the mean row) for a chunk of metrics with leading axes ``(updates, seeds)``."""
    if not metrics:
        return []
    num_updates, num_seeds = next(iter(metrics.values())).shape[:2]
    valid = {n: metrics[flag] for n in metrics if (flag := validity_flag(n, metrics)) is not None}
    means = {n: _mean_over_seeds(n, v, valid.get(n)) for n, v in metrics.items()}
    rows: list[dict[str, Any]] = []
    for u in range(num_updates):
        for s in range(num_seeds):
            row: dict[str, Any] = {"update": first_update + u, "seed": s}
            for n, v in metrics.items():
                ok = valid[n][u, s] if n in valid else True
                row[n] = _to_json(v[u, s]) if ok else None
            rows.append(row)
        row = {"update": first_update + u, "seed": MEAN_SEED}
        for n, v in means.items():
            row[n] = _to_json(v[u])
        rows.append(row)
    return rows


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a JSONL file (a torn last line from a crash is skipped)."""
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class MetricsWriter:
    """Writes metric rows to ``metrics.jsonl`` + ``metrics.csv`` (always) and optional TensorBoard / W&B.

    Args:
        run_dir: the run folder (created if missing).
        tensorboard: also write the mean-over-seeds scalars as TensorBoard events under ``run_dir/tb`` (needs
            ``tensorboardX``: ``pip install "jaxrl-self[tensorboard]"``).
        wandb: also log the mean-over-seeds scalars to Weights & Biases (needs ``wandb``); ``wandb_kwargs``
            go to ``wandb.init`` (project, name, config...).
        start_update: when resuming, rows with ``update >= start_update`` already on disk are dropped.
    """

    def __init__(self, run_dir: str | os.PathLike, *, tensorboard: bool = False, wandb: bool = False,
                 wandb_kwargs: dict[str, Any] | None = None, start_update: int = 0):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        self.csv_path = self.run_dir / "metrics.csv"
        self._columns: list[str] | None = None
        self._truncate(start_update)
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as e:
                raise ImportError('TensorBoard logging needs tensorboardX: pip install "jaxrl-self[tensorboard]"') from e
            self._tb = SummaryWriter(logdir=str(self.run_dir / "tb"))
        if wandb:
            try:
                import wandb as wandb_lib
            except ImportError as e:
                raise ImportError('Weights & Biases logging needs wandb: pip install "jaxrl-self[wandb]"') from e
            kwargs = {"dir": str(self.run_dir), "resume": "allow", **(wandb_kwargs or {})}
            self._wandb = wandb_lib.init(**kwargs)

    # ------------------------------------------------------------------ resume
    def _truncate(self, start_update: int) -> None:
        """Drop rows with ``update >= start_update``; read the CSV header to keep appending to it."""
        if self.jsonl_path.exists():
            rows = [r for r in read_jsonl(self.jsonl_path) if r.get("update", -1) < start_update]
            _atomic_write(self.jsonl_path, "".join(json.dumps(r) + "\n" for r in rows))
        if self.csv_path.exists():
            # The CSV is rebuilt from the kept JSONL rows (written and fsynced first, from the same dicts), so a
            # row torn by a kill mid-write (a cut number, a missing column) cannot survive into the resumed run.
            with open(self.csv_path, newline="") as f:
                header = next(csv.reader(f), [])
            self._columns = header or None
            if self._columns:
                kept = [r for r in read_jsonl(self.jsonl_path) if r.get("update", -1) < start_update] \
                    if self.jsonl_path.exists() else []
                tmp = self.csv_path.with_suffix(".csv.tmp")
                with open(tmp, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore")
                    w.writeheader()
                    w.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in self._columns} for r in kept)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.csv_path)

    # ------------------------------------------------------------------ writing
    def write(self, metrics: Any, first_update: int) -> list[dict[str, Any]]:
        """Write a chunk. ``metrics``: pytree or flat dict of arrays with leading axes (updates, seeds)."""
        flat = metrics if isinstance(metrics, dict) and all(isinstance(v, np.ndarray) for v in metrics.values()) \
            else flatten_metrics(metrics)
        rows = chunk_rows(flat, first_update)
        if not rows:
            return rows
        with open(self.jsonl_path, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())
        scalar_names = [n for n, v in flat.items() if v.ndim == 2]
        if self._columns is None:
            self._columns = ["update", "seed", *scalar_names]
            with open(self.csv_path, "w", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns).writeheader()
        with open(self.csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore")
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in self._columns})
            f.flush()
            os.fsync(f.fileno())
        mean_rows = [r for r in rows if r["seed"] == MEAN_SEED]
        for r in mean_rows:
            scalars = {k: v for k, v in r.items() if k in scalar_names and isinstance(v, (int, float))
                       and not isinstance(v, bool)}
            step = int(r["env_steps"]) if isinstance(r.get("env_steps"), (int, float)) else int(r["update"])
            if self._tb is not None:
                for k, v in scalars.items():
                    self._tb.add_scalar(k, v, global_step=step)
            if self._wandb is not None:
                self._wandb.log({**scalars, "update": r["update"]}, step=int(r["update"]))
        if self._tb is not None:
            self._tb.flush()
        return rows

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as pretty JSON atomically (temp file + rename)."""
    _atomic_write(Path(path), json.dumps(_to_json_tree(obj), indent=2, sort_keys=False) + "\n")


def _to_json_tree(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_json_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json_tree(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return _to_json(obj)


def rows_to_arrays(rows: Iterable[dict[str, Any]], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed rows -> ``(values, valid)`` arrays of shape ``(num_seeds, num_updates)`` (NaN / False gaps)."""
    per_seed = [r for r in rows if r.get("seed") != MEAN_SEED]
    if not per_seed:
        return np.zeros((0, 0)), np.zeros((0, 0), bool)
    seeds = sorted({int(r["seed"]) for r in per_seed})
    updates = sorted({int(r["update"]) for r in per_seed})
    s_index = {s: i for i, s in enumerate(seeds)}
    u_index = {u: i for i, u in enumerate(updates)}
    values = np.full((len(seeds), len(updates)), np.nan)
    for r in per_seed:
        v = r.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            values[s_index[int(r["seed"])], u_index[int(r["update"])]] = float(v)
    return values, np.isfinite(values)
