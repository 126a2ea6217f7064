"""Run jaxued's own ``examples/maze_plr.py`` unmodified, with wandb replaced by a local recorder.

Usage (inside the venv that has jaxued installed from its repository)::

    python jaxued_maze_plr_launcher.py --script PATH/examples/maze_plr.py --out DIR -- [maze_plr.py's own flags]

The script's file is executed as ``__main__`` (``runpy``) exactly as written. Only its ``wandb`` import is served by
this module's stand-in, which

* keeps ``wandb.init(config=...)``'s config as ``wandb.config`` (the script reads its settings back from it);
* drops images and videos (``wandb.Image``/``wandb.Video`` become empty placeholders: no rendering is saved);
* appends every ``wandb.log`` row, scalars only, to ``DIR/log.jsonl``.

To compare level-buffer statistics with ours, the stand-in's ``init`` (called first thing in the script's
``main``) also wraps the script's module-level ``train_state_to_log_dict`` (called once per evaluation, outside
``jit``, with the train state): the wrapper returns the script's own dict unchanged and, on the side, saves the
level buffer (levels, scores, replay weights, size) and the last replayed batch to ``DIR/buffer_<update>.npz``.
Nothing inside the compiled program changes.
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import types
from pathlib import Path

import numpy as np


def _scalar(v):
    try:
        a = np.asarray(v)
    except Exception:
        return None
    if a.ndim == 0 and a.dtype.kind in "biuf":
        return a.item()
    return None


class _Config(dict):
    """wandb.config: item and attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _make_wandb(out: Path) -> types.ModuleType:
    wandb = types.ModuleType("wandb")
    log_path = out / "log.jsonl"
    log_path.unlink(missing_ok=True)

    class _Media:
        def __init__(self, *args, **kwargs):
            pass

    def init(config=None, **kwargs):
        wandb.config = _Config(config or {})
        (out / "config.json").write_text(json.dumps(dict(wandb.config), indent=1, default=str))
        _wrap_log_dict(sys._getframe(1).f_globals, out)
        return types.SimpleNamespace(finish=lambda: None)

    def log(row, *args, **kwargs):
        clean = {k: s for k, v in row.items() if (s := _scalar(v)) is not None}
        with log_path.open("a") as f:
            f.write(json.dumps(clean) + "\n")

    wandb.init, wandb.log = init, log
    wandb.define_metric = lambda *a, **k: None
    wandb.Image = wandb.Video = _Media
    wandb.config = _Config()
    wandb.finish = lambda *a, **k: None
    return wandb


def _wrap_log_dict(script_globals: dict, out: Path) -> None:
    original = script_globals["train_state_to_log_dict"]

    def train_state_to_log_dict(train_state, level_sampler):
        result = original(train_state, level_sampler)
        sampler = train_state.sampler
        levels = sampler["levels"]
        replayed = train_state.replay_last_level_batch
        update = int(train_state.num_dr_updates + train_state.num_replay_updates + train_state.num_mutation_updates)
        np.savez_compressed(
            out / f"buffer_{update:07d}.npz",
            size=np.asarray(sampler["size"]), scores=np.asarray(sampler["scores"]),
            weights=np.asarray(level_sampler.level_weights(sampler)),
            wall_map=np.asarray(levels.wall_map), goal_pos=np.asarray(levels.goal_pos),
            agent_pos=np.asarray(levels.agent_pos), agent_dir=np.asarray(levels.agent_dir),
            replay_wall_map=np.asarray(replayed.wall_map), replay_goal_pos=np.asarray(replayed.goal_pos),
            replay_agent_pos=np.asarray(replayed.agent_pos), replay_agent_dir=np.asarray(replayed.agent_dir),
            num_dr_updates=np.asarray(train_state.num_dr_updates),
            num_replay_updates=np.asarray(train_state.num_replay_updates),
            num_mutation_updates=np.asarray(train_state.num_mutation_updates))
        return result

    script_globals["train_state_to_log_dict"] = train_state_to_log_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", required=True, help="jaxued's examples/maze_plr.py")
    parser.add_argument("--out", required=True, help="folder for log.jsonl, config.json and buffer_*.npz")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="-- then maze_plr.py's own flags")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    sys.modules["wandb"] = _make_wandb(out)
    os.environ["WANDB_MODE"] = "disabled"
    sys.argv = [args.script, *rest]
    os.chdir(out)  # the script writes checkpoints (if asked) under its working folder
    runpy.run_path(args.script, run_name="__main__")


if __name__ == "__main__":
    main()
