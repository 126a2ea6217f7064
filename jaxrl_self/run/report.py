"""End-of-run report of a run folder: solved rate per held-out maze over training, the best buffer levels.

``jaxrl-self train`` calls :func:`after_training` when a run ends (and then an algorithm module's own
``after_training(result)`` hook, when it has one). It writes what the run's files support, in the run folder
(nothing for a run without held-out evaluations or a level buffer, e.g. PPO on CartPole):

* ``solved_rate.png`` — the held-out solved rate of every maze group (the 8 named mazes, PerfectMaze,
  FourRooms) against environment steps, mean over seeds, with the mean over the named mazes in bold
  (:func:`plot_solved_rates`, from ``metrics.jsonl``);
* ``heldout.json`` — the last evaluation of the run: per group, the solved rate and return of each seed and
  their mean with a 95% t-interval over seeds (:func:`final_heldout`);
* ``buffer_top_levels.png`` — the highest-scoring levels of the level buffer at the end (seed 0), with their
  score, wall count and shortest path (:func:`render_top_levels`; PLR/ACCEL runs only);
* ``heldout_lm.json`` and the line ``held-out accuracy (128 problems, greedy): 0.412 → 0.655`` — a language-model
  run's accuracy before and after training on the same held-out problems (:func:`lm_heldout`; LM runs only).

All of it works on a finished run folder too: ``python -m jaxrl_self.run.report RUN_DIR``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from jaxrl_self.run.metrics import MEAN_SEED, read_jsonl, write_json
from jaxrl_self.run.stats import mean_ci

__all__ = ["SOLVED_PREFIX", "RETURN_PREFIX", "HELDOUT_PROBLEMS", "plot_solved_rates", "final_heldout",
           "render_top_levels", "top_levels_figure", "lm_heldout", "heldout_line", "after_training", "write_report"]

SOLVED_PREFIX = "eval.solved_rate."
RETURN_PREFIX = "eval.mean_return."
#: Held-out problems of an LM run's before/after evaluation (greedy, one response each: cheap next to training).
HELDOUT_PROBLEMS = 128


def _eval_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Per-seed rows of ``metrics.jsonl`` that hold a held-out evaluation."""
    rows = read_jsonl(run_dir / "metrics.jsonl")
    return [r for r in rows if r.get("seed") != MEAN_SEED and r.get("eval_valid")]


def _groups(rows: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for r in rows[:1]:
        for k in r:
            if k.startswith(SOLVED_PREFIX):
                names[k[len(SOLVED_PREFIX):]] = None
    return list(names)


def plot_solved_rates(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """``solved_rate.png``: held-out solved rate per maze group vs env steps (mean over seeds). None when the
    run has no evaluation rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = _eval_rows(run_dir)
    if not rows:
        return None
    groups = _groups(rows)
    steps = sorted({int(r["update"]) for r in rows})
    by_update = {u: [r for r in rows if int(r["update"]) == u] for u in steps}
    x = np.array([np.mean([r["env_steps"] for r in by_update[u]]) for u in steps])
    fig, ax = plt.subplots(figsize=(8, 5))
    cmap = plt.get_cmap("tab10")
    for i, g in enumerate(groups):
        y = np.array([np.mean([r[SOLVED_PREFIX + g] for r in by_update[u]]) for u in steps])
        ax.plot(x, y, marker=".", lw=1.2, color=cmap(i % 10), label=g)
    named = np.array([np.mean([r["eval.solved_rate_named"] for r in by_update[u]]) for u in steps])
    ax.plot(x, named, color="black", lw=2.5, label="mean of named mazes")
    seeds = len({r["seed"] for r in rows})
    ax.set(xlabel="env steps", ylabel="solved rate (return > 0)", ylim=(-0.02, 1.02),
           title=f"{run_dir.name}: held-out solved rate ({seeds} seed{'s' * (seeds > 1)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    path = Path(out) if out is not None else run_dir / "solved_rate.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def final_heldout(run_dir: str | Path) -> dict[str, Any] | None:
    """The last evaluation of each seed: per group and for the named-maze mean, per-seed values and mean ± 95%
    CI over seeds. None without evaluation rows."""
    rows = _eval_rows(Path(run_dir))
    if not rows:
        return None
    last: dict[Any, dict[str, Any]] = {}
    for r in rows:
        if r["seed"] not in last or int(r["update"]) > int(last[r["seed"]]["update"]):
            last[r["seed"]] = r
    finals = [last[s] for s in sorted(last)]
    out: dict[str, Any] = {"update": [int(r["update"]) for r in finals],
                           "env_steps": [r["env_steps"] for r in finals], "groups": {}}
    for g in _groups(finals):
        solved = np.array([r[SOLVED_PREFIX + g] for r in finals], float)
        ret = np.array([r[RETURN_PREFIX + g] for r in finals], float)
        out["groups"][g] = {**mean_ci(solved).as_dict("solved_rate_"), "per_seed_solved_rate": solved.tolist(),
                            **mean_ci(ret).as_dict("return_"), "per_seed_return": ret.tolist()}
    for key in ("solved_rate_named", "mean_return_named", "solved_rate_all"):
        vals = np.array([r["eval." + key] for r in finals], float)
        out[key] = {**mean_ci(vals).as_dict(), "per_seed": vals.tolist()}
    return out


def top_levels_figure(states: Any, top: int = 8, seed_index: int = 0) -> Any:
    """The figure of :func:`render_top_levels` (a matplotlib ``Figure``; the caller closes it), or None when the state
    has no (non-empty) buffer. Constrained layout keeps the title clear of the panels' two-line titles."""
    buffer = getattr(states, "buffer", None)
    if buffer is None or not hasattr(buffer.levels, "wall_map"):  # no buffer, or not maze levels (e.g. Kinetix)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxrl_self.envs.maze.level import Level
    from jaxrl_self.envs.maze.render import render_level

    pick = lambda x: np.asarray(x)[seed_index]  # noqa: E731
    size = int(pick(buffer.size))
    if size == 0:
        return None
    scores = pick(buffer.scores)[:size]
    order = np.argsort(-scores, kind="stable")[:top]
    info = buffer.extra
    fig, axes = plt.subplots(1, len(order), figsize=(2.2 * len(order), 2.8), squeeze=False, layout="constrained")
    for ax, i in zip(axes[0], order):
        level = Level(*(pick(leaf)[i] for leaf in (buffer.levels.wall_map, buffer.levels.goal_pos,
                                                   buffer.levels.agent_pos, buffer.levels.agent_dir)))
        ax.imshow(render_level(level, tile=12))
        title = f"score {scores[i]:.3f}"
        if info is not None:
            title += f"\n{int(pick(info.num_walls)[i])} walls, path {int(pick(info.shortest_path)[i])}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"highest-scoring buffer levels (seed {seed_index}, {size} levels in the buffer)", fontsize=9)
    return fig


def render_top_levels(states: Any, out: str | Path, top: int = 8, seed_index: int = 0) -> Path | None:
    """Render the ``top`` highest-scoring filled slots of seed ``seed_index``'s level buffer (``states``: the
    batched RunState of a PLR/ACCEL run) into one PNG. None when the state has no (non-empty) buffer."""
    fig = top_levels_figure(states, top, seed_index)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    path = Path(out)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lm_heldout(result: Any, num_problems: int = HELDOUT_PROBLEMS) -> dict[str, Any] | None:
    """Held-out accuracy of a language-model run before and after training (None for any other run).

    ``result``: the :class:`~jaxrl_self.run.RunResult` of an LM run with a run folder (its ``config.json`` rebuilds
    the algorithm, config and task; ``initial_states`` are the parameters before, ``states`` after). The algorithm's
    ``make_eval(config, task)`` answers ``num_problems`` problems drawn from the training distribution with the
    held-out key (:data:`~jaxrl_self.lm.evaluate.HELD_OUT_SEED`, no training run's), greedily, one response each;
    every seed and both ends see the same problems. What it evaluates is the module's ``eval_params(state)`` where it
    has one (SOAR: the promoted student), else ``state.params``; the accuracy is the mean of its ``correct``.
    Returns per-seed accuracies and their mean ± 95% CI, before (at ``initial_update``: 0, or where this process
    resumed) and after (the updates done)."""
    import json

    import jax

    from jaxrl_self import envs
    from jaxrl_self.lm.evaluate import HELD_OUT_SEED
    from jaxrl_self.run.checkpoint import config_from_dict
    from jaxrl_self.run.runner import is_lm_config, load_algorithm

    run_dir = getattr(result, "run_dir", None)
    before_states = getattr(result, "initial_states", None)
    if run_dir is None or before_states is None or not (Path(run_dir) / "config.json").exists():
        return None
    desc = json.loads((Path(run_dir) / "config.json").read_text())
    module = load_algorithm(desc.get("algo_module") or desc["algo"])
    config = config_from_dict(module.Config, desc["config"])
    if not is_lm_config(config) or not hasattr(module, "make_eval"):
        return None
    task = envs.make(desc["env"], **dict(desc.get("env_kwargs") or {}))
    evaluate = module.make_eval(config, task)
    policy = getattr(module, "eval_params", lambda state: state.params)
    key = jax.random.key(HELD_OUT_SEED)

    def accuracy(params):  # [num_problems] correct -> accuracy, one seed
        return evaluate(params, key, num_episodes=int(num_problems)).correct.astype(np.float32).mean()

    over_seeds = jax.jit(jax.vmap(accuracy))
    before = np.asarray(over_seeds(policy(before_states)), np.float64)
    after = np.asarray(over_seeds(policy(result.states)), np.float64)
    done = (result.summary or {}).get("updates_done")
    side = lambda acc, update: {**mean_ci(acc).as_dict(), "per_seed": acc.tolist(), "update": update}  # noqa: E731
    return {"algo": desc.get("algo"), "env": desc["env"], "num_problems": int(num_problems), "greedy": True,
            "problem_key_seed": HELD_OUT_SEED, "num_seeds": int(before.shape[0]),
            "before": side(before, int(getattr(result, "initial_update", 0))), "after": side(after, done)}


def heldout_line(heldout: dict[str, Any]) -> str:
    """``held-out accuracy (128 problems, greedy): 0.412 → 0.655`` (mean over seeds, with the updates when the run
    was resumed)."""
    n, seeds = heldout["num_problems"], heldout["num_seeds"]
    what = f"{n} problems, greedy" + (f", mean of {seeds} seeds" if seeds > 1 else "")
    before, after = heldout["before"], heldout["after"]
    if before["update"]:
        return (f"held-out accuracy ({what}): {before['mean']:.3f} at update {before['update']} (resumed) → "
                f"{after['mean']:.3f} at update {after['update']}")
    return f"held-out accuracy ({what}): {before['mean']:.3f} → {after['mean']:.3f}"


def write_report(run_dir: str | Path, states: Any = None) -> list[str]:
    """Write the files listed in the module docstring; returns one line per file written. ``states`` (the
    run's final batched RunState) is needed for the buffer renders; without it they are skipped."""
    run_dir = Path(run_dir)
    lines = []
    plot = plot_solved_rates(run_dir)
    if plot is not None:
        lines.append(f"held-out:     {plot}")
    final = final_heldout(run_dir)
    if final is not None:
        write_json(run_dir / "heldout.json", final)
        s = final["solved_rate_named"]
        ci = f" ± {(s['ci_high'] - s['ci_low']) / 2:.2f}" if s.get("n", 0) > 1 else ""
        lines.append(f"solved rate:  {s['mean']:.3f}{ci} (mean of the named held-out levels, last evaluation; "
                     f"{run_dir / 'heldout.json'})")
    if states is not None:
        png = render_top_levels(states, run_dir / "buffer_top_levels.png")
        if png is not None:
            lines.append(f"buffer:       {png}")
    return lines


def after_training(result: Any) -> list[str]:
    """The CLI hook: :func:`write_report` on a :class:`~jaxrl_self.run.RunResult`, and for a language-model run
    :func:`lm_heldout` (written to ``heldout_lm.json``, one line printed). Never fails a run."""
    if getattr(result, "run_dir", None) is None:
        return []
    try:
        lines = write_report(result.run_dir, result.states)
        heldout = lm_heldout(result)
        if heldout is not None:
            write_json(Path(result.run_dir) / "heldout_lm.json", heldout)
            lines.append(heldout_line(heldout))
        return lines
    except Exception as e:  # a report must never cost a run
        return [f"report:       failed ({e!r})"]


if __name__ == "__main__":  # pragma: no cover
    for line in write_report(sys.argv[1]):
        print(line)
