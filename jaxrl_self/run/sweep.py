"""Hyper-parameter sweeps as vmapped programs: seeds × traced config values in one compile.

    from jaxrl_self.run.sweep import run_sweep
    result = run_sweep("ppo", "cartpole", grid={"lr": [1e-4, 3e-4, 1e-3]}, seeds=8)
    print(result.markdown())

How a grid becomes programs:

1. The grid's Cartesian product gives one concrete config per combination (``dataclasses.replace`` on the
   base config; dotted names such as ``"net.width"`` reach into nested config dataclasses). Every config is
   validated concretely (``Config.validate(env)``) before anything is compiled.
2. Configs are grouped by their pytree structure. Static fields (``pytree_node=False``: sizes, counts,
   network shapes) are part of that structure, so configs that differ in a static field land in different
   groups; traced fields (lr, gamma, clip_eps...) are leaves, so all values of them share a group.
3. Each group is one program: the group's configs are stacked leaf-wise and run as
   ``jax.jit(jax.vmap(jax.vmap(lambda cfg, key: make_train(cfg, env)(key), (None, 0)), (0, None)))`` over
   (configs, seeds). Its compile time is measured apart from its run time.

All configs use the same seed keys (``key(seed + i)`` for seed index ``i``, as in a single run), i.e. common
random numbers across configurations.

Results: per configuration, each seed's *final return* is the mean ``episode_return`` over the last 10% of
updates (counting only updates where an episode finished), and the table reports the mean over seeds with a
two-sided 95% Student-t confidence interval (:func:`jaxrl_self.run.stats.mean_ci`).

Sweep folder (``runs/sweep-<algo>-<env>-<timestamp>/``)::

    sweep.json            algorithm, env, base config, grid, seeds, groups (config indices, compile/run s)
    metrics.jsonl         one row per config × update × seed (+ mean-over-seeds rows), with a "config" column
    results.csv / .md     the results table
    learning_curves.png   one curve per configuration, mean ± 95% CI over seeds
"""
from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.run.checkpoint import config_to_dict
from jaxrl_self.run.metrics import chunk_rows, flatten_metrics, write_json
from jaxrl_self.run.runner import algorithm_name, default_env_kwargs, load_algorithm, seed_keys
from jaxrl_self.run.stats import final_value, mean_ci

__all__ = ["SweepGroup", "SweepResult", "get_field", "expand_grid", "group_configs", "stack_configs", "run_sweep",
           "is_static_field"]


@dataclasses.dataclass
class SweepGroup:
    """Configs compiled into one program."""

    indices: list[int]
    compile_s: float = 0.0
    run_s: float = 0.0


@dataclasses.dataclass
class SweepResult:
    """``metrics[i]`` maps metric names to arrays of shape ``(num_updates, num_seeds)`` for config ``i``."""

    algo: str
    env: str
    configs: list[Any]
    assignments: list[dict[str, Any]]
    groups: list[SweepGroup]
    metrics: list[dict[str, np.ndarray]]
    table: list[dict[str, Any]]
    num_seeds: int
    out_dir: Path | None = None

    def markdown(self) -> str:
        """The results table as markdown (best mean final return in bold)."""
        fields = list(self.assignments[0]) if self.assignments else []
        head = ["#", *fields, "final return (mean ± 95% CI)", "seeds", "program"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        means = [r["final_return_mean"] for r in self.table]
        finite = [m for m in means if m is not None and np.isfinite(m)]
        best = max(finite) if finite else None
        for r in self.table:
            m = r["final_return_mean"]
            if m is None or not np.isfinite(m):
                cell = "n/a"
            elif r["final_return_n"] >= 2:
                cell = f"{m:.4g} ± {(r['final_return_ci_high'] - r['final_return_ci_low']) / 2:.3g}"
            else:
                cell = f"{m:.4g}"
            if best is not None and m == best:
                cell = f"**{cell}**"
            vals = [_fmt(r[f]) for f in fields]
            lines.append("| " + " | ".join([str(r["config"]), *vals, cell, str(r["final_return_n"]),
                                            str(r["group"])]) + " |")
        return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------------------------- grid
def _field(config: Any, dotted: str) -> dataclasses.Field:
    obj, parts = config, dotted.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
        if part not in fields:
            owner = type(obj).__name__
            raise ConfigError(dotted, None, f"a field of {owner}: {', '.join(sorted(fields))}", owner="sweep grid")
        if i == len(parts) - 1:
            return fields[part]
        obj = getattr(obj, part)
    raise AssertionError  # pragma: no cover


def get_field(config: Any, dotted: str) -> Any:
    """The value at ``dotted`` (``"ppo.learning_rate"``) of a nested config."""
    _field(config, dotted)
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def is_static_field(config: Any, dotted: str) -> bool:
    """Whether ``dotted`` is a static (``pytree_node=False``) field of ``config``: changing it recompiles."""
    return not _field(config, dotted).metadata.get("pytree_node", True)


def _replace(config: Any, dotted: str, value: Any) -> Any:
    head, _, rest = dotted.partition(".")
    if rest:
        return dataclasses.replace(config, **{head: _replace(getattr(config, head), rest, value)})
    return dataclasses.replace(config, **{head: value})


def expand_grid(base_config: Any, grid: Mapping[str, Sequence[Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """All combinations of ``grid`` applied to ``base_config`` (first field varies slowest)."""
    for name, values in grid.items():
        _field(base_config, name)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ConfigError(name, values, "a non-empty list of values", owner="sweep grid")
    names = list(grid)
    configs, assignments = [], []
    for combo in itertools.product(*(grid[n] for n in names)):
        cfg = base_config
        for n, v in zip(names, combo):
            cfg = _replace(cfg, n, v)
        configs.append(cfg)
        assignments.append(dict(zip(names, combo)))
    return configs, assignments


def group_configs(configs: Sequence[Any]) -> list[list[int]]:
    """Indices of configs that share a pytree structure (= equal static fields), in first-seen order."""
    groups: dict[Any, list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(jax.tree_util.tree_structure(cfg), []).append(i)
    return list(groups.values())


def stack_configs(configs: Sequence[Any]) -> Any:
    """Stack configs of one group leaf-wise: each traced leaf gets a leading axis of size ``len(configs)``."""
    return jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])), *configs)


# ---------------------------------------------------------------------------------------------- running
def make_sweep_fn(module: ModuleType, env: Any):
    """``sweep_group(configs, keys) -> (metrics, nonfinite_update)`` with leading axes (configs, seeds)."""

    def one(cfg, key):
        state, metrics = module.make_train(cfg, env)(key)
        nonfinite = getattr(state, "nonfinite_update", jnp.int32(-1))
        return metrics, nonfinite

    def sweep_group(configs, keys):
        return jax.vmap(jax.vmap(one, (None, 0)), (0, None))(configs, keys)

    return sweep_group


def run_sweep(algo: str | ModuleType, env: str = "cartpole", grid: Mapping[str, Sequence[Any]] | None = None, *,
              base_config: Any = None, seeds: int = 4, seed: int = 0, env_kwargs: Mapping[str, Any] | None = None,
              out_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs", write: bool = True,
              verbose: bool = True, final_fraction: float = 0.1) -> SweepResult:
    """Run a sweep (see the module docstring). ``write=False`` writes no files."""
    from jaxrl_self import envs

    if seeds < 1:
        raise ConfigError("seeds", seeds, "an integer >= 1", owner="sweep")
    module = load_algorithm(algo)
    name = algorithm_name(module)
    base = module.Config() if base_config is None else base_config
    if env_kwargs is None:  # e.g. the task a base model knows (as run_training)
        env_kwargs = default_env_kwargs(base, env)
    env_obj = envs.make(env, **dict(env_kwargs or {}))
    configs, assignments = expand_grid(base, dict(grid or {}))
    for cfg in configs:
        validate = getattr(cfg, "validate", None)
        if callable(validate):
            validate(env_obj)
    keys = seed_keys(seed, seeds)
    sweep_fn = make_sweep_fn(module, env_obj)
    groups = [SweepGroup(idx) for idx in group_configs(configs)]
    metrics: list[dict[str, np.ndarray] | None] = [None] * len(configs)
    nonfinite: list[np.ndarray | None] = [None] * len(configs)
    for g, group in enumerate(groups):
        stacked = stack_configs([configs[i] for i in group.indices])
        t = time.perf_counter()
        compiled = jax.jit(sweep_fn).lower(stacked, keys).compile()
        group.compile_s = time.perf_counter() - t
        if verbose:
            print(f"[sweep] program {g + 1}/{len(groups)}: {len(group.indices)} configs x {seeds} seeds, "
                  f"compiled in {group.compile_s:.1f}s", flush=True)
        t = time.perf_counter()
        m, nf = jax.block_until_ready(compiled(stacked, keys))
        group.run_s = time.perf_counter() - t
        flat = flatten_metrics(jax.device_get(m))  # (C, S, U, ...)
        nf = np.asarray(nf)
        for j, i in enumerate(group.indices):
            metrics[i] = {k: np.swapaxes(v[j], 0, 1) for k, v in flat.items()}  # (U, S, ...)
            nonfinite[i] = nf[j]
        if verbose:
            print(f"[sweep] program {g + 1}/{len(groups)} ran in {group.run_s:.1f}s", flush=True)

    table = []
    for i, (cfg, assignment) in enumerate(zip(configs, assignments)):
        m = metrics[i]
        row: dict[str, Any] = {"config": i, **{k: _plain(v) for k, v in assignment.items()}}
        if "episode_return" in m:
            valid = m.get("episode_return_valid")
            per_seed = final_value(m["episode_return"].T, None if valid is None else valid.T, final_fraction)
            ci = mean_ci(per_seed)
            row.update(final_return_mean=ci.mean, final_return_ci_low=ci.low, final_return_ci_high=ci.high,
                       final_return_n=ci.n)
        else:
            row.update(final_return_mean=None, final_return_ci_low=None, final_return_ci_high=None,
                       final_return_n=0)
        row["nonfinite_seeds"] = int(np.sum(np.asarray(nonfinite[i]) >= 0))
        row["group"] = next(g for g, grp in enumerate(groups) if i in grp.indices)
        table.append(row)

    result = SweepResult(name, env, configs, assignments, groups, metrics, table, seeds)  # type: ignore[arg-type]
    if write:
        if out_dir is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            out_dir = Path(runs_root) / f"sweep-{name}-{env}-{stamp}"
        result.out_dir = Path(out_dir)
        _write(result, base, dict(grid or {}), seed, env_kwargs)
    return result


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def _label(assignment: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in assignment.items()) or "base config"


def _write(result: SweepResult, base: Any, grid: Mapping[str, Any], seed: int,
           env_kwargs: Mapping[str, Any] | None) -> None:
    import csv

    out = result.out_dir
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", {
        "algo": result.algo, "env": result.env, "env_kwargs": dict(env_kwargs or {}),
        "base_config": config_to_dict(base), "grid": {k: [_plain(v) for v in vs] for k, vs in grid.items()},
        "static_fields": [k for k in grid if is_static_field(base, k)],
        "num_seeds": result.num_seeds, "seed": seed,
        "configs": [{k: _plain(v) for k, v in a.items()} for a in result.assignments],
        "labels": {str(i): _label(a) for i, a in enumerate(result.assignments)},
        "groups": [dataclasses.asdict(g) for g in result.groups],
        "compile_s": sum(g.compile_s for g in result.groups), "run_s": sum(g.run_s for g in result.groups),
    })
    with open(out / "metrics.jsonl", "w") as f:
        for i, m in enumerate(result.metrics):
            for row in chunk_rows(m, first_update=0):
                f.write(json.dumps({"config": i, **row}) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(result.table[0]))
        w.writeheader()
        w.writerows(result.table)
    (out / "results.md").write_text(
        f"# Sweep: {result.algo} on {result.env}, {result.num_seeds} seeds\n\n"
        "Final return = mean episode return over the last 10% of updates, per seed; mean and two-sided 95% "
        "Student-t CI over seeds.\n\n" + result.markdown())
    try:
        from jaxrl_self.run.plot import plot_sweep

        plot_sweep(out)
    except Exception as e:  # a plot must never cost the results
        print(f"[sweep] could not plot: {e!r}")
