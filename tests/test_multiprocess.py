"""Two processes on localhost, one run (``jaxrl-self train ... --coordinator-address ... --num-processes 2``).

Each process has one CPU device; the run's mesh ``envs=2`` spans both, and the collectives between them go over
gloo. Checked against a single process with two (forced) CPU devices running the same global batch:

* both processes finish with that run's parameters (up to float order: gloo sums in another order than XLA's
  in-process all-reduce), and only process 0 writes the run folder's files;
* one process SIGKILLed mid-run (the other then stopped too), then both restarted with ``--resume``: the run
  finishes from the newest checkpoint with the uninterrupted two-process run's parameters, bitwise.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

RTOL, ATOL = 1e-5, 1e-6
UPDATES = 64  # 8192 env steps / (8 envs x 16 steps), in 16 chunks of 4
TRAIN = ["train", "ppo", "--env", "cartpole", "--num-envs", "8", "--num-steps", "16", "--total-timesteps", "8192",
         "--num-minibatches", "2", "--update-epochs", "2", "--no-progress", "--chunks", "16", "--keep-checkpoints",
         "2", "--mesh", "envs=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int = 1) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    if devices > 1:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    env.pop("NPROC", None)
    env["JAXRL_SELF_COMPILE_CACHE"] = "off"  # two processes writing one cache folder at once: not under test
    return env


def _start(run_dir: Path, port: int, extra=()) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "jaxrl_self.cli", *TRAIN, "--run-dir", str(run_dir),
                              "--coordinator-address", f"localhost:{port}", "--num-processes", "2",
                              "--process-id", str(i), "--distributed-timeout-s", "60", *extra],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)]


def _finish(procs, timeout=240) -> list[str]:
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            assert p.returncode == 0, out[-3000:]
            outs.append(out)
    finally:  # never leave a process behind (a failed peer would wait for the other)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return outs


def _params(run_dir: Path) -> tuple[list[np.ndarray], int]:
    """The newest checkpoint's parameters, restored on this process's one device (a checkpoint of a mesh run
    restores onto any layout)."""
    from jaxrl_self.run.runner import restore_run

    restored = restore_run(run_dir)
    return [np.asarray(x) for x in jax.tree.leaves(restored.states.params)], restored.step


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The same global batch in one process with 2 CPU devices."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    out = subprocess.run([sys.executable, "-m", "jaxrl_self.cli", *TRAIN, "--run-dir", str(run_dir)],
                         env=_env(devices=2), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two") / "run"
    outs = _finish(_start(run_dir, _free_port()))
    return run_dir, outs


def test_two_processes_finish_with_the_single_process_parameters(single, two):
    run_dir, outs = two
    got, step = _params(run_dir)
    want, want_step = _params(single)
    assert step == want_step == UPDATES
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    # the metrics process 0 wrote are the single-process run's
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(ref)
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref], rtol=1e-4, atol=1e-5)
    # process 0 reports; process 1 says it finished and writes nothing of its own
    assert "run folder:" in outs[0] and "process 1 of 2: finished" in outs[1] and "run folder:" not in outs[1]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


def test_a_two_process_run_evaluates_on_one_device(two, capsys):
    from jaxrl_self.cli import main

    assert main(["eval", str(two[0]), "--episodes", "2"]) == 0
    assert "return" in capsys.readouterr().out


def test_kill_one_process_then_resume_both(two, tmp_path):
    run_dir = tmp_path / "run"
    procs = _start(run_dir, _free_port())
    ckpts = run_dir / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpts.exists() and any(p.name.isdigit() for p in ckpts.iterdir())):
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)  # mid-run: at most the first checkpoints are written
    procs[1].wait()
    try:  # the survivor cannot finish without its peer: it errors out (heartbeat) or we stop it
        procs[0].wait(timeout=20)
    except subprocess.TimeoutExpired:
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
    for p in procs:
        p.stdout.close()
    steps = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    assert steps and steps[-1] < UPDATES, f"the run was not interrupted mid-way: checkpoints {steps}"
    outs = _finish(_start(run_dir, _free_port(), ["--resume"]))
    assert f"resumed from update {steps[-1]}" in outs[0]
    got, step = _params(run_dir)
    want, _ = _params(two[0])
    assert step == UPDATES
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------- coordinates
def test_coordinates_come_from_flags_then_the_environment(monkeypatch):
    from jaxrl_self.run import distributed
    from jaxrl_self.run.runner import RunOptions

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "head:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "2")
    assert distributed._coordinates(RunOptions(distributed=True)) == {
        "coordinator_address": "head:1234", "num_processes": 4, "process_id": 2}
    assert distributed._coordinates(RunOptions(process_id=3))["process_id"] == 3
    assert not distributed.wants_distributed(RunOptions())  # the variables alone do not make a run multi-process
    assert distributed.wants_distributed(RunOptions(coordinator_address="h:1"))


@pytest.mark.parametrize("kw, env, match", [
    (dict(num_processes=2, process_id=2), {}, r"RunOptions.process_id=2 .*\[0, 1\]"),
    (dict(num_processes=0), {}, r"RunOptions.num_processes=0"),
    (dict(distributed=True), {"JAX_PROCESS_ID": "one"}, r"RunOptions.process_id='one'.*\$JAX_PROCESS_ID"),
])
def test_bad_coordinates_are_refused_in_one_line(monkeypatch, kw, env, match):
    from jaxrl_self.core import ConfigError
    from jaxrl_self.run import distributed
    from jaxrl_self.run.runner import RunOptions

    for k in distributed.ENV_VARS.values():
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=match):
        distributed._coordinates(RunOptions(**kw))


def test_a_missing_coordinator_stops_the_process_in_one_line(tmp_path):
    """Process 1 of 2 whose coordinator (process 0) never comes: it gives up after --distributed-timeout-s, exit 5,
    one line, no traceback."""
    out = subprocess.run([sys.executable, "-m", "jaxrl_self.cli", *TRAIN, "--run-dir", str(tmp_path / "run"),
                          "--coordinator-address", f"localhost:{_free_port()}", "--num-processes", "2",
                          "--process-id", "1", "--distributed-timeout-s", "2"],
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 5, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no coordinator answered at localhost:" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_a_missing_peer_does_not_make_process_0_wait_forever(tmp_path):
    """Process 0 of 2 whose peer never comes is stopped after --distributed-timeout-s (by XLA's coordination
    service: a non-zero exit with its own fatal log), not left waiting."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "jaxrl_self.cli", *TRAIN, "--run-dir", str(tmp_path / "run"),
                          "--coordinator-address", f"localhost:{_free_port()}", "--num-processes", "2",
                          "--process-id", "0", "--distributed-timeout-s", "3"],
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and time.perf_counter() - t < 60
    assert "DEADLINE_EXCEEDED" in out.stderr
