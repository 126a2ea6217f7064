"""Kill and resume from the command line, one run per family (issue #15), and a non-finite loss stopped in one line.

Each kill test starts ``python -m jaxrl_self.cli train ...`` (PPO on CartPole, ACCEL on the maze, GRPO on addition
from the shipped ``addition-base``) with ``--checkpoint-every 1`` in a run folder and SIGKILLs it twice, at moments
drawn from a fixed-seed ``random.Random``: once a drawn checkpoint (always a new one, so every restart makes
progress) is on disk, plus a drawn delay, so a kill lands anywhere in the next update, its metric rows or its save.
Then ``--resume`` until the run finishes. The end must be bitwise the uninterrupted run's (the same command through
``cli.main`` in this process): every array of the final checkpoint's RunState, the kept checkpoint steps, every
``metrics.jsonl`` row (none lost, none duplicated) and every ``metrics.csv`` row.

The subprocesses share the session's persistent compilation cache (conftest.py) with both thresholds at 0
(``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` / ``..._MIN_ENTRY_SIZE_BYTES``, read by jax 0.10 from the
environment), so only the first process of a family compiles; a restart and the reference load the programs.
"""
from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from jaxrl_self.cli import main
from jaxrl_self.run.metrics import read_jsonl
from jaxrl_self.run.runner import restore_run
from treecheck import assert_bitwise

TESTS = Path(__file__).parent
KILLS = 2  # SIGKILLs per run
MAX_DELAY_S = 0.25  # a kill lands up to this long after its checkpoint appeared
TIMEOUT_S = 300  # per subprocess: generous (a cold compile on a busy 2-core machine)

#: family -> (updates, `jaxrl-self train` arguments): tiny configs (see tests/test_cli.py, test_curricula.py,
#: test_grpo.py), 2 seeds each
FAMILIES = {
    "ppo": (12, ["ppo", "--env", "cartpole", "--total-timesteps", "1536", "--num-envs", "4", "--num-steps", "32",
                 "--update-epochs", "1", "--num-minibatches", "2"]),
    "accel": (8, ["accel", "--env", "maze", "--total-timesteps", "512", "--num-envs", "4", "--num-steps", "16",
                  "--update-epochs", "1", "--lstm-features", "16", "--episode-steps", "8", "--eval-every", "-1",
                  "--capacity", "48", "--minimum-fill-ratio", "0.15", "--num-edits", "3"]),
    "grpo": (8, ["grpo", "--task", "addition", "--base-model", "addition-base", "--num-updates", "8",
                 "--num-prompts", "2", "--group-size", "2"]),
}


def _env() -> dict[str, str]:
    env = dict(os.environ)  # XLA_FLAGS of conftest.py (and the XLA guard's) included: same programs as in-process
    env["JAX_COMPILATION_CACHE_DIR"] = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), "jaxrl_self_test_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)  # toy_algo
    return env


def _cli(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as f:  # a file, not a pipe: nothing can block on a full pipe
        return subprocess.Popen([sys.executable, "-m", "jaxrl_self.cli", *argv], stdout=f, stderr=subprocess.STDOUT,
                                env=_env())


def _steps(run_dir: Path) -> list[int]:
    d = run_dir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def _newest(run_dir: Path) -> int:
    return max(_steps(run_dir), default=0)


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _kill_and_resume(argv: list[str], run_dir: Path, num_updates: int, rng: random.Random,
                     logs: Path) -> list[dict]:
    """Run ``argv`` (a ``train`` command with ``--run-dir run_dir``), SIGKILL it ``KILLS`` times, resume until it
    finishes. Returns what each process did."""
    plan = sorted(rng.sample(range(1, num_updates - 1), KILLS))  # kill once this checkpoint is on disk...
    delays = [rng.uniform(0.0, MAX_DELAY_S) for _ in plan]  # ...and this much later
    history: list[dict] = []
    for attempt in range(len(plan) + 1):
        log = logs / f"attempt{attempt}.log"
        start = _newest(run_dir)
        proc = _cli([*argv, *(["--resume"] if attempt else [])], log)
        try:
            if attempt == len(plan):  # the last resume runs to the end
                rc = proc.wait(TIMEOUT_S)
                assert rc == 0, f"final resume exited {rc}:\n{log.read_text()}"
                history.append({"from": start, "rc": rc})
                return history
            target = max(plan[attempt], start + 1)  # at least one new checkpoint: progress
            deadline = time.monotonic() + TIMEOUT_S
            while _newest(run_dir) < target:
                assert proc.poll() is None, f"exited {proc.returncode} before checkpoint {target}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"no checkpoint {target} after {TIMEOUT_S} s:\n{log.read_text()}"
                time.sleep(0.01)
            time.sleep(delays[attempt])
            proc.send_signal(signal.SIGKILL)  # (no-op if it already exited)
            rc = proc.wait(TIMEOUT_S)
            history.append({"from": start, "after_checkpoint": target, "delay_s": round(delays[attempt], 3),
                            "on_disk": _steps(run_dir), "rc": rc})
            if rc == 0 and target >= num_updates - 1:  # a late kill (its last checkpoint), beaten by the end
                return history
            assert rc == -signal.SIGKILL, f"attempt {attempt}: exit {rc} instead of the kill:\n{log.read_text()}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sigkilled_cli_run_resumes_to_the_uninterrupted_run_bitwise(family, tmp_path, capsys):
    num_updates, algo_argv = FAMILIES[family]

    def train(run_dir: Path) -> list[str]:
        return ["train", *algo_argv, "--seeds", "2", "--checkpoint-every", "1", "--no-progress",
                "--run-dir", str(run_dir)]

    killed = tmp_path / "killed"
    history = _kill_and_resume(train(killed), killed, num_updates, random.Random(f"kill-resume-{family}"), tmp_path)
    final_log = (tmp_path / f"attempt{len(history) - 1}.log").read_text()
    with capsys.disabled():  # what the kills hit, shown with -s
        print(f"\n{family}: {history}; last resume: {[s for s in final_log.splitlines() if 'compile:' in s]}")
    assert sum(h["rc"] == -signal.SIGKILL for h in history) >= 1, history
    assert "Traceback" not in final_log, final_log

    ref = tmp_path / "ref"  # after the killed run: its programs come from the cache the subprocesses filled
    assert main(train(ref)) == 0, capsys.readouterr()
    capsys.readouterr()

    # the final state: every leaf of the RunState (params, optimiser, RNG keys, env / level buffers, counters)
    got, want = restore_run(killed), restore_run(ref)
    assert got.step == want.step == num_updates
    assert_bitwise(got.states, want.states)
    assert _steps(killed) == _steps(ref), history
    assert not [p for p in (killed / "checkpoints").iterdir() if not p.name.isdigit()], history  # nothing set aside
    # the metrics: exactly the uninterrupted run's rows, none lost or duplicated
    rows = read_jsonl(killed / "metrics.jsonl")
    keys = [(r["update"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == num_updates * 3, history  # 2 seeds + the mean row per update
    assert rows == read_jsonl(ref / "metrics.jsonl")
    assert _csv_rows(killed) == _csv_rows(ref)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["updates_done"] == num_updates, summary
    if family == "grpo":  # the held-out accuracy after training is the uninterrupted run's
        after = json.loads((killed / "heldout_lm.json").read_text())["after"]
        assert after == json.loads((ref / "heldout_lm.json").read_text())["after"]


def test_resuming_a_run_killed_after_its_last_checkpoint_writes_its_summary(tmp_path, capsys):
    """A kill between the last checkpoint and summary.json (the end-of-run files) leaves a run whose checkpoints
    are complete: ``--resume`` has nothing to train, but still writes summary.json and the learning curve."""
    run_dir = tmp_path / "run"
    argv = ["train", "toy_algo", "--num-updates", "20", "--seeds", "2", "--checkpoint-every", "6",
            "--keep-checkpoints", "2", "--no-progress", "--run-dir", str(run_dir)]
    assert main(argv) == 0
    capsys.readouterr()
    want = json.loads((run_dir / "summary.json").read_text())
    for name in ("summary.json", "learning_curve.png"):  # what a kill after the last save leaves unwritten
        (run_dir / name).unlink()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "already finished (20 updates)" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["updates_done"] == 20
    assert summary["final_return"] == want["final_return"]
    assert (run_dir / "learning_curve.png").exists()


def test_nonfinite_loss_from_the_cli_exits_3_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """The toy algorithm's loss is NaN at update 8 (``--poison-update 8``): a fresh process exits with status 3 and
    one line on stderr naming update 8 and the kept checkpoint, no traceback; the newest checkpoint is step 6,
    which restores bitwise to the clean run's step 6."""
    base = ["train", "toy_algo", "--num-updates", "20", "--seeds", "2", "--checkpoint-every", "6",
            "--keep-checkpoints", "4", "--no-progress"]
    bad, clean = tmp_path / "nan", tmp_path / "clean"
    proc = subprocess.run([sys.executable, "-m", "jaxrl_self.cli", *base, "--poison-update", "8", "--run-dir",
                           str(bad)], capture_output=True, text=True, timeout=TIMEOUT_S, env=_env())
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "jaxrl-self train: stopped: non-finite loss at update 8 (seed index 0); parameters from before that update "
        "were kept. last good checkpoint: step 6"], proc.stderr
    assert _steps(bad) == [6]
    info = json.loads((bad / "nonfinite.json").read_text())
    assert info["update"] == 8 and info["last_good_checkpoint_step"] == 6
    assert info["nonfinite_update_per_seed"] == [8, 8]
    assert json.loads((bad / "summary.json").read_text())["status"] == "nonfinite"

    assert main([*base, "--run-dir", str(clean)]) == 0  # the same run without the poison
    capsys.readouterr()
    kept = restore_run(bad)
    assert kept.step == 6 and np.all(np.asarray(kept.states.update_step) == 6)
    assert np.all(np.asarray(kept.states.nonfinite_update) == -1)
    assert_bitwise(kept.states, restore_run(clean, step=6).states)
    rows = read_jsonl(bad / "metrics.jsonl")  # the rows before the bad update, as the clean run wrote them
    assert rows == [r for r in read_jsonl(clean / "metrics.jsonl") if r["update"] < 8]
