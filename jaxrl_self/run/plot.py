"""Learning curves from a run folder or a sweep folder (matplotlib, headless).

* a run folder (``metrics.jsonl`` with one row per update per seed): one curve, the mean over seeds of the
  metric at each update with a shaded 95% Student-t confidence band over seeds (only seeds with a valid value
  at that update count: an update in which no episode finished is a gap, never a zero);
* a sweep folder (``sweep.json`` + ``metrics.jsonl`` with a ``config`` column): one such curve per
  configuration, labelled with the swept values.

The x axis is ``env_steps`` (mean over seeds) when the metrics have it, else the update index.
``smooth=k`` first applies a trailing moving average over ``k`` updates to each seed (ignoring gaps).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.run.metrics import MEAN_SEED, read_jsonl, rows_to_arrays
from jaxrl_self.run.stats import nanmean_masked

__all__ = ["RunData", "load_run", "plot_run", "plot_sweep", "plot", "plot_path", "curve_with_ci"]


@dataclasses.dataclass
class RunData:
    """Per-seed rows of a run's ``metrics.jsonl``."""

    path: Path
    rows: list[dict[str, Any]]

    @property
    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for r in self.rows[:50]:
            for k in r:
                if k not in ("update", "seed", "config"):
                    names[k] = None
        return list(names)

    def values(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(values, valid)`` of shape ``(num_seeds, num_updates)``."""
        return rows_to_arrays(self.rows, name)

    def x(self) -> tuple[np.ndarray, str]:
        if "env_steps" in self.metric_names:
            steps, _ = self.values("env_steps")
            return np.nanmean(steps, axis=0), "env steps"
        _, valid = self.values(self.metric_names[0])
        return np.arange(valid.shape[1]), "update"


def load_run(run_dir: str | os.PathLike) -> RunData:
    path = Path(run_dir)
    metrics = path / "metrics.jsonl"
    if not metrics.exists():
        raise FileNotFoundError(f"{metrics} not found: is {path} a run folder?")
    rows = [r for r in read_jsonl(metrics) if r.get("seed") != MEAN_SEED]
    return RunData(path, rows)


def _smooth(values: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return values
    out = np.full_like(values, np.nan)
    for j in range(values.shape[-1]):
        window = values[..., max(0, j - k + 1): j + 1]
        out[..., j] = nanmean_masked(window, None, axis=-1)
    return out


def curve_with_ci(values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds and t-CI bounds per update, for ``values`` of shape (seeds, updates) with NaN gaps."""
    from scipy import stats

    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    mean = nanmean_masked(values, finite, axis=0)
    centred = np.where(finite, values - mean, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt((centred ** 2).sum(axis=0) / np.maximum(n - 1, 1))
        t = np.where(n >= 2, stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan)
        half = t * std / np.sqrt(np.maximum(n, 1))
    return mean, mean - half, mean + half


def _plot_curve(ax, x, values, label=None, color=None):
    mean, low, high = curve_with_ci(values)
    ok = np.isfinite(mean)
    (line,) = ax.plot(x[ok], mean[ok], label=label, color=color, lw=1.5)
    band = np.isfinite(low) & np.isfinite(high)
    if band.any():
        ax.fill_between(x[band], low[band], high[band], color=line.get_color(), alpha=0.2, lw=0)


def _check_metric(run: RunData, metric: str, source: Path) -> None:
    if metric not in run.metric_names:
        raise ConfigError("metric", metric, f"a metric of {source} (available: {', '.join(run.metric_names)})",
                          owner="plot")


def plot_path(path: str | os.PathLike, metric: str = "episode_return", out: str | os.PathLike | None = None) -> Path:
    """The image :func:`plot` writes: ``out``, else ``learning_curves.png`` in a sweep folder, ``learning_curve.png``
    (``episode_return``) or ``<metric>.png`` in a run folder."""
    if out is not None:
        return Path(out)
    p = Path(path)
    if (p / "sweep.json").exists():
        return p / "learning_curves.png"
    return p / ("learning_curve.png" if metric == "episode_return" else f"{metric.replace('.', '_')}.png")


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    return plt, fig, ax


def plot_run(run_dir: str | os.PathLike, metric: str = "episode_return", out: str | os.PathLike | None = None,
             smooth: int = 1) -> Path:
    """Write ``learning_curve.png`` (or ``out``) for a run folder; returns the image path."""
    run = load_run(run_dir)
    _check_metric(run, metric, run.path / "metrics.jsonl")
    values, _ = run.values(metric)
    x, xlabel = run.x()
    plt, fig, ax = _figure()
    seeds = values.shape[0]
    label = f"mean ± 95% CI over {seeds} seeds" if seeds > 1 else "1 seed"
    _plot_curve(ax, x, _smooth(values, smooth), label=label)
    title = run.path.name
    cfg = run.path / "config.json"
    if cfg.exists():
        desc = json.loads(cfg.read_text())
        title = f"{desc.get('algo', '?')} on {desc.get('env', '?')}"
    ax.set(xlabel=xlabel, ylabel=metric.replace("_", " "), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out_path = plot_path(run.path, metric, out)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def plot_sweep(sweep_dir: str | os.PathLike, metric: str = "episode_return", out: str | os.PathLike | None = None,
               smooth: int = 1) -> Path:
    """Write ``learning_curves.png`` (or ``out``) for a sweep folder: one curve per configuration."""
    path = Path(sweep_dir)
    info = json.loads((path / "sweep.json").read_text())
    rows = [r for r in read_jsonl(path / "metrics.jsonl") if r.get("seed") != MEAN_SEED]
    _check_metric(RunData(path, rows), metric, path / "metrics.jsonl")
    by_config: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(int(r["config"]), []).append(r)
    plt, fig, ax = _figure()
    labels = info.get("labels") or {}
    for c in sorted(by_config):
        run = RunData(path, by_config[c])
        values, _ = run.values(metric)
        x, xlabel = run.x()
        _plot_curve(ax, x, _smooth(values, smooth), label=labels.get(str(c), f"config {c}"))
    ax.set(xlabel=xlabel if by_config else "update", ylabel=metric.replace("_", " "),
           title=f"{info.get('algo', '?')} on {info.get('env', '?')}: mean ± 95% CI over {info.get('num_seeds', '?')} seeds")
    ax.grid(alpha=0.3)
    if by_config:
        ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    out_path = plot_path(path, metric, out)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def plot(path: str | os.PathLike, metric: str = "episode_return", out: str | os.PathLike | None = None,
         smooth: int = 1) -> Path:
    """Plot a run folder or a sweep folder (detected by its ``sweep.json``)."""
    p = Path(path)
    if (p / "sweep.json").exists():
        return plot_sweep(p, metric, out, smooth)
    return plot_run(p, metric, out, smooth)
