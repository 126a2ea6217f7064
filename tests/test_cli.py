"""The ``jaxrl-self`` command line, end to end on tiny configs (toy algorithm + PPO on CartPole smoke tests).

The toy runs use the same config and chunking as tests/test_runner.py, so they reuse its compiled programs
through the persistent compilation cache (conftest.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxrl_self.cli import main, split_sweep_args
from jaxrl_self.run.metrics import read_jsonl

TOY = ["toy_algo", "--num-updates", "20"]
TINY_PPO = ["--total-timesteps", "1024", "--num-envs", "4", "--num-steps", "32", "--update-epochs", "1",
            "--num-minibatches", "2"]  # 8 updates of 128 steps


def _run(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------------ parsing / errors
def test_help_and_list(capsys):
    code, out, _ = _run(capsys, ["--help"])
    assert code == 0
    commands = out.split("{", 1)[1].split("}", 1)[0].split(",")
    assert {"train", "sweep", "eval", "plot", "list"} <= set(commands), out
    code, out, _ = _run(capsys, ["list"])
    assert code == 0 and "ppo" in out and "cartpole" in out and "maze" in out
    code, out, _ = _run(capsys, ["train", "ppo", "--help"])
    assert code == 0 and "--learning-rate" in out and "--seeds" in out and "--resume" in out
    code, _, err = _run(capsys, ["trian"])
    assert code == 2 and "Did you mean 'train'" in err


def test_console_script_installed():
    exe = Path(sys.executable).with_name("jaxrl-self")
    assert exe.exists(), "pip install -e . should install the jaxrl-self entry point"
    out = subprocess.run([str(exe), "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ppo" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["train", "pppo"], "unknown algorithm 'pppo'. Did you mean 'ppo'?"),
    (["train", "ppo", "--env", "cartpol"], "unknown environment 'cartpol'. Did you mean 'cartpole'?"),
    (["train", "ppo", "--num-minibatches", "3"], "ppo.Config.num_minibatches=3 is not allowed: a divisor of"),
    (["train", "ppo", "--learning-rate", "-1"], "ppo.Config.learning_rate=-1.0 is not allowed"),
    (["train", "ppo", "--seeds", "0"], "RunOptions.seeds=0 is not allowed"),
    (["sweep", "ppo", "--gamma", "0.9,abc"], "Config.gamma='abc' is not allowed"),
    (["sweep", "ppo", "--gamma", "0.9,1.5"], "ppo.Config.gamma=1.5 is not allowed: a number in [0, 1]"),
])
def test_bad_input_is_one_clear_line_before_compiling(capsys, argv, message):
    code, _, err = _run(capsys, argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_unknown_flag_is_a_tyro_error(capsys):
    code, _, err = _run(capsys, ["train", "ppo", "--learning-rat", "1e-3"])
    assert code == 2 and "--learning-rate" in err  # tyro suggests the close flag


def test_split_sweep_args():
    from jaxrl_self.algos import ppo

    rest, grid = split_sweep_args(ppo.Config, [
        "--learning-rate", "1e-4,3e-4", "--gamma", "0.99", "--hidden-sizes", "64,64", "32,32",
        "--anneal-lr=true,false", "--env", "cartpole", "--num-envs", "4,8"])
    assert grid == {"learning_rate": [1e-4, 3e-4], "hidden_sizes": [(64, 64), (32, 32)],
                    "anneal_lr": [True, False], "num_envs": [4, 8]}
    assert rest == ["--gamma", "0.99", "--env", "cartpole"]
    rest, grid = split_sweep_args(ppo.Config, ["--hidden-sizes", "16", "16", "--num_steps", "8"])
    assert grid == {} and rest == ["--hidden-sizes", "16", "16", "--num_steps", "8"]


def test_nested_curriculum_configs_have_readable_flags_that_round_trip():
    """A curriculum's student PPO and PLR's sampler have flat flags, PAIRED's adversary its prefix; the flags
    ``flags_for`` writes parse back (through tyro, as ``jaxrl-self train`` does) to the same config, and a sweep
    over a nested field names its path."""
    from jaxrl_self import cli
    from jaxrl_self.curricula import common, paired, plr
    from jaxrl_self.run.runner import RunOptions

    pa = paired.Config(ppo=common.student_ppo(num_envs=4, hidden_sizes=(8, 8)), clip_regret=False,
                       adversary=paired.AdversaryConfig(n_walls=7, noise_per_step=True,
                                                        ppo=paired.adversary_ppo(learning_rate=1e-3)))
    pl = plr.Config(ppo=common.student_ppo(learning_rate=3e-4), num_edits=2,
                    sampler=plr.LevelSamplerConfig(capacity=7, replay_prob=0.5))
    assert cli.flags_for(pa) == ["--num-envs", "4", "--hidden-sizes", "8", "8", "--adversary.learning-rate",
                                 "0.001", "--adversary.n-walls", "7", "--adversary.noise-per-step",
                                 "--no-clip-regret"]
    assert cli.flags_for(pl) == ["--learning-rate", "0.0003", "--capacity", "7", "--replay-prob", "0.5",
                                 "--num-edits", "2"]
    for module, config in ((paired, pa), (plr, pl)):
        cls = cli._command_class("T", module.Config, RunOptions, "maze")
        assert cli._parse(cls, cli.flags_for(config), "t", "").config == config
    rest, grid = split_sweep_args(paired.Config, ["--learning-rate", "1e-4,2e-4", "--adversary.ent-coef",
                                                  "0.1,0.2", "--adversary.n-walls", "9", "--seeds", "2"])
    assert grid == {"ppo.learning_rate": [1e-4, 2e-4], "adversary.ppo.ent_coef": [0.1, 0.2]}
    assert rest == ["--adversary.n-walls", "9", "--seeds", "2"]


# ------------------------------------------------------------------------------------------ toy end to end
def test_train_resume_eval_plot_toy(capsys, tmp_path):
    run_dir = tmp_path / "run"
    argv = ["train", *TOY, "--seeds", "2", "--checkpoint-every", "6", "--keep-checkpoints", "2",
            "--run-dir", str(run_dir)]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert "steps/s=" in err and "20/20" in err  # the progress bar, fed once per update
    assert f"run folder:   {run_dir}" in out and "final return:" in out and "compile:" in out
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert len(rows) == 20 * 3
    assert json.loads((run_dir / "config.json").read_text())["algo"] == "toy"

    # the run exists: starting it again is refused; resuming with another config names the fields
    code, _, err = _run(capsys, argv)
    assert code == 2 and "--resume" in err
    code, _, err = _run(capsys, [*argv, "--resume", "--lr", "0.01"])
    assert code == 2 and "config.lr: checkpoint=0.05, this run=0.01" in err
    # resuming a finished run is a no-op that succeeds
    code, out, err = _run(capsys, [*argv, "--resume", "--no-progress"])
    assert code == 0, err

    code, out, err = _run(capsys, ["eval", str(run_dir), "--episodes", "4"])
    assert code == 0, err
    assert "checkpoint step 20" in out and "cartpole" in out
    report = json.loads((run_dir / "eval-cartpole.json").read_text())
    assert report["checkpoint_step"] == 20 and len(report["levels"][0]["per_seed_return"]) == 2

    code, out, _ = _run(capsys, ["plot", str(run_dir), "--metric", "loss", "--smooth", "3"])
    assert code == 0 and Path(out.strip()).exists() and out.strip().endswith("loss.png")


def test_sweep_toy(capsys, tmp_path):
    out_dir = tmp_path / "sw"
    code, out, err = _run(capsys, ["sweep", *TOY, "--lr", "0.01,0.05", "--num-features", "3,4", "--seeds", "2",
                                   "--out-dir", str(out_dir)])
    assert code == 0, err
    assert "4 configs x 2 seeds in 2 program(s)" in out
    assert (out_dir / "results.md").read_text().count("\n| ") == 5
    code, out, _ = _run(capsys, ["plot", str(out_dir)])
    assert code == 0 and out.strip().endswith("learning_curves.png")


# ------------------------------------------------------------------------------------------ PPO smoke tests
def test_ppo_cartpole_train_and_eval(capsys, tmp_path):
    run_dir = tmp_path / "ppo"
    code, out, err = _run(capsys, ["train", "ppo", "--env", "cartpole", *TINY_PPO, "--seeds", "2", "--chunks", "3",
                                   "--no-progress", "--run-dir", str(run_dir)])
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["num_updates"] == 8 and summary["env_steps"] == 2 * 1024
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == [3, 6, 8]
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert len(rows) == 8 * 3 and {"loss", "approx_kl", "episode_return"} <= set(rows[0])
    code, out, err = _run(capsys, ["eval", str(run_dir), "--episodes", "2", "--max-steps", "50"])
    assert code == 0, err
    returns = json.loads((run_dir / "eval-cartpole.json").read_text())["levels"][0]["per_seed_return"]
    assert len(returns) == 2 and all(1 <= r <= 50 for r in returns)  # CartPole pays 1 per step


def test_ppo_cartpole_sweep_vmaps_traced_config(capsys, tmp_path):
    code, out, err = _run(capsys, ["sweep", "ppo", "--env", "cartpole", *TINY_PPO, "--learning-rate", "1e-3,3e-3",
                                   "--seeds", "2", "--out-dir", str(tmp_path / "sw")])
    assert code == 0, err
    assert "2 configs x 2 seeds in 1 program(s)" in out
    info = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert info["grid"] == {"learning_rate": [1e-3, 3e-3]} and info["static_fields"] == []


def test_ppo_maze_agent_evaluated_on_named_heldout_mazes(capsys, tmp_path):
    run_dir = tmp_path / "maze"
    code, _, err = _run(capsys, ["train", "ppo", "--env", "maze", "--total-timesteps", "64", "--num-envs", "2",
                                 "--num-steps", "16", "--update-epochs", "1", "--num-minibatches", "1",
                                 "--lstm-features", "8", "--no-progress", "--run-dir", str(run_dir)])
    assert code == 0, err
    code, out, err = _run(capsys, ["eval", str(run_dir), "--levels", "SixteenRooms,Labyrinth", "--episodes", "2",
                                   "--max-steps", "20"])
    assert code == 0, err
    report = json.loads((run_dir / "eval-maze.json").read_text())
    levels = {lv["level"]: lv for lv in report["levels"]}
    assert set(levels) == {"SixteenRooms", "Labyrinth"}
    for lv in levels.values():  # an untrained agent, 20 steps: returns are in [0, 1], one per seed
        assert len(lv["per_seed_return"]) == 1 and all(0.0 <= r <= 1.0 for r in lv["per_seed_return"])
        assert all(0.0 <= s <= 1.0 for s in lv["per_seed_solve_rate"])  # solved = return > 0
    code, _, err = _run(capsys, ["eval", str(run_dir), "--levels", "NoSuchMaze"])
    assert code == 2 and "NoSuchMaze" in err and "SixteenRooms" in err


def test_ppo_on_a_token_task_is_refused_in_one_line(capsys):
    """`train ppo --env addition` used to end in an AttributeError traceback: now one line says what fits."""
    from jaxrl_self.cli import main

    assert main(["train", "ppo", "--env", "addition", "--total-timesteps", "1000"]) == 2
    err = capsys.readouterr().err
    assert "env" in err and "grpo" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------ never lose a run (#15)
TOY_RUN = ["train", *TOY, "--seeds", "2", "--checkpoint-every", "6", "--keep-checkpoints", "2"]


def _interrupted_toy_run(capsys, monkeypatch, run_dir: Path, at_step: int = 12) -> None:
    """A toy run stopped by Ctrl-C right after its checkpoint at update ``at_step`` (checkpoints: 6, 12)."""
    from run_helpers import interrupt_after_save

    interrupt_after_save(monkeypatch, at_step)
    code, _, err = _run(capsys, [*TOY_RUN, "--no-progress", "--run-dir", str(run_dir)])
    monkeypatch.undo()
    assert code == 130 and "the newest checkpoint is kept (resume with --resume)" in err


def test_resumed_run_says_where_it_continues_from_and_lists_its_files(capsys, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _interrupted_toy_run(capsys, monkeypatch, run_dir)
    code, out, err = _run(capsys, [*TOY_RUN, "--run-dir", str(run_dir), "--resume"])
    assert code == 0, err
    line = f"resumed from update 12 ({run_dir / 'checkpoints' / '12'})"
    assert err.count(line) == 1, err
    assert err.index(line) < err.index("20/20"), err  # said before training continues (the progress bar)
    assert f"resumed:      from update 12 ({run_dir / 'checkpoints' / '12'})" in out
    assert (f"files:        {run_dir}/config.json, metrics.jsonl, metrics.csv, summary.json, learning_curve.png, "
            "checkpoints/\n") in out
    assert "Traceback" not in err and "warning" not in err


def test_summary_lists_only_the_files_the_run_folder_has(capsys, tmp_path):
    from jaxrl_self.cli import _print_summary

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text("")
    _print_summary({"compile_s": 1.0, "run_s": 2.0, "checkpoint_s": 0.0, "resumed_from_update": 0}, tmp_path)
    out = capsys.readouterr().out
    assert f"files:        {tmp_path}/config.json, metrics.jsonl\n" in out
    assert "checkpoints/" not in out and "resumed" not in out


def test_cli_resume_past_an_unreadable_checkpoint_prints_one_warning_and_no_traceback(capsys, tmp_path, monkeypatch):
    """In a fresh process (as a user runs it): the failed read of the damaged step leaves orbax's in-flight reads
    to finish on a closed event loop, which used to print pages of 'Event loop is closed' tracebacks."""
    run_dir = tmp_path / "run"
    _interrupted_toy_run(capsys, monkeypatch, run_dir)
    for f in (run_dir / "checkpoints" / "12" / "state" / "d").iterdir():  # array files cut short
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "jaxrl_self.cli", *TOY_RUN, "--no-progress", "--run-dir", str(run_dir),
                           "--resume"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    err_lines = proc.stderr.strip().splitlines()
    aside = [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("12.unreadable-")]
    assert len(aside) == 1
    assert len(err_lines) == 2, proc.stderr  # the warning and where the run continues from, nothing else
    assert err_lines[0].startswith("warning: checkpoint step 12 could not be read (") and str(aside[0]) in err_lines[0]
    assert err_lines[1] == f"resumed from update 6 ({run_dir / 'checkpoints' / '6'})"
    assert f"set aside:    {aside[0]}" in proc.stdout
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


def test_checkpoint_that_cannot_be_written_stops_in_one_line(capsys, tmp_path, monkeypatch):
    from jaxrl_self.run import checkpoint as ckpt_lib

    def full_disk(self, step, *args, **kwargs):
        raise ckpt_lib.CheckpointSaveError(f"saving checkpoint step {step} in {self.directory} failed: "
                                           "OSError(28, 'No space left on device'); earlier checkpoints are kept")

    monkeypatch.setattr(ckpt_lib.Checkpointer, "save", full_disk)
    code, _, err = _run(capsys, [*TOY_RUN, "--no-progress", "--run-dir", str(tmp_path / "run")])
    assert code == 4
    assert err.strip().splitlines() == [
        f"jaxrl-self train: stopped: saving checkpoint step 6 in {tmp_path / 'run' / 'checkpoints'} failed: "
        "OSError(28, 'No space left on device'); earlier checkpoints are kept (resume with --resume once "
        "checkpoints can be written)"]


# ------------------------------------------------------------------------------------------ plot
def _metrics_folder(path: Path) -> Path:
    """A run folder holding only metrics.jsonl (4 updates x 2 seeds), written by the runner's writer."""
    import numpy as np

    from jaxrl_self.run.metrics import MetricsWriter

    w = MetricsWriter(path)
    w.write({"env_steps": np.array([[8, 8], [16, 16], [24, 24], [32, 32]]),
             "episode_return": np.array([[1.0, 2.0], [2.0, 3.0], [4.0, 2.0], [5.0, 6.0]]),
             "episode_return_valid": np.ones((4, 2), bool),
             "loss": np.array([[0.5, 0.4], [0.3, 0.3], [0.2, 0.25], [0.1, 0.1]])}, first_update=0)
    w.close()
    return path


def test_plot_says_when_it_replaces_an_image(capsys, tmp_path):
    run_dir = _metrics_folder(tmp_path / "run")
    image = run_dir / "learning_curve.png"
    code, out, err = _run(capsys, ["plot", str(run_dir)])
    assert code == 0 and out.strip() == str(image) and image.exists() and err == ""
    first = image.read_bytes()
    code, out, err = _run(capsys, ["plot", str(run_dir), "--smooth", "3"])
    assert code == 0 and out.strip() == str(image)
    assert err.strip().splitlines() == [f"note: replaced {image} (redrawn from metrics.jsonl; --out PATH writes "
                                        "elsewhere)"]
    smoothed = image.read_bytes()
    assert smoothed != first  # the smoothed curve replaced the first one
    other = tmp_path / "other.png"
    code, out, err = _run(capsys, ["plot", str(run_dir), "--out", str(other)])
    assert code == 0 and out.strip() == str(other) and other.exists() and err == ""
    assert image.read_bytes() == smoothed  # --out leaves the folder's image alone
    code, _, err = _run(capsys, ["plot", str(run_dir), "--out", str(other)])
    assert code == 0 and err.startswith(f"note: replaced {other} ")
    code, _, err = _run(capsys, ["plot", str(run_dir), "--metric", "los"])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "plot.metric='los' is not allowed: a metric of" in err and "loss" in err


# ------------------------------------------------------------------------------------------ list
def test_list_says_what_each_algorithm_is_and_what_it_trains_on(capsys):
    import jaxrl_self.algos as algos

    code, out, _ = _run(capsys, ["list"])
    assert code == 0
    lines = {}
    for name in algos.names():
        found = [line for line in out.splitlines() if line.startswith(f"  {name} ")]
        assert len(found) == 1, (name, out)
        lines[name] = found[0]
    assert "Proximal Policy Optimization" in lines["ppo"]
    assert "Environments: cartpole, cartpole-v1, maze, maze-60, probe-action" in lines["ppo"]
    assert "not token tasks" in lines["ppo"] and "addition" not in lines["ppo"]
    for curriculum in ("dr", "plr", "robust_plr", "accel", "parallel_plr", "parallel_accel", "paired"):
        assert "Environments: maze, maze-60 (any level environment" in lines[curriculum], lines[curriculum]
    for lm_method in ("grpo", "token_ppo", "tppo", "ttrl", "soar"):
        assert "Tasks: addition, chain (any token task" in lines[lm_method], lines[lm_method]
    assert lines["rlt"].endswith("Tasks: addition only.")
    assert "Domain randomisation (DR)" in lines["dr"] and "``" not in out


def test_env_kinds_agree_with_each_algorithms_own_validation():
    """Every environment ``list`` shows for an algorithm passes the environment checks of its default config's
    ``validate``, and every other registered environment is refused there with a ConfigError on ``env`` (other
    fields may still need flags: grpo on chain needs a longer --max-len)."""
    import jaxrl_self.algos as algos
    from jaxrl_self import envs
    from jaxrl_self.core import ConfigError
    from jaxrl_self.run.catalog import algorithm_catalog
    from jaxrl_self.run.runner import default_env_kwargs, load_algorithm

    declared = [info for info in algorithm_catalog() if info.env_kinds is not None]
    assert {info.name for info in declared} >= set(algos.names())
    for info in declared:
        config = load_algorithm(info.name).Config()
        for env_name in envs.registered_names():
            env = envs.make(env_name, **(default_env_kwargs(config, env_name) or {}))
            try:
                config.validate(env)
                refused_env = False
            except ConfigError as e:
                refused_env = e.field == "env"
            assert refused_env == (env_name not in info.environments), (info.name, env_name, info.environments)


def test_list_survives_a_broken_or_undeclared_algorithm_module(capsys, monkeypatch):
    """One module that fails to import, or that declares no ENV_KINDS, is listed as such; the others still are."""
    import types

    import jaxrl_self.algos as algos
    from jaxrl_self.run.catalog import describe_algorithm

    monkeypatch.setitem(algos.ALGORITHMS, "broken", "no_such_package.no_such_algo")
    code, out, _ = _run(capsys, ["list"])
    assert code == 0
    assert "  broken          (cannot be imported: ModuleNotFoundError: No module named 'no_such_package')\n" in out
    assert "\n  ppo " in out and "\n  cartpole " in out
    bare = types.ModuleType("bare", "A bare algorithm\n   with a ``Config``.\n\nDetails that are not shown.")
    info = describe_algorithm("bare", bare, {"cartpole": frozenset({"env"})})
    assert info.line() == ("bare            A bare algorithm with a Config. "
                           "Environments: not declared (its module has no ENV_KINDS).")
    bare.ENV_KINDS = ("level",)
    assert describe_algorithm("bare", bare, {"cartpole": frozenset({"env"})}).accepts() == (
        "environments: none registered (any level environment, a LevelEnv whose levels a curriculum chooses)")
