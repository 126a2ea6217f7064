"""Runner, checkpoints, metrics files, non-finite handling and sweeps, on the toy algorithm (tests/toy_algo.py).

Every runner test uses the same toy config and chunking, so the chunk program is compiled once per session
(and reused by the subprocesses through the persistent compilation cache set in conftest.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import toy_algo
from jaxrl_self.core import CheckpointMismatchError, ConfigError, NonFiniteLossError
from jaxrl_self.run import checkpoint as ckpt_lib
from jaxrl_self.run import metrics as metrics_lib
from jaxrl_self.run.runner import (
    RunOptions,
    Runner,
    UnknownAlgorithmError,
    load_algorithm,
    make_chunk_fn,
    plan_chunks,
    run_description,
    run_training,
    seed_keys,
)
from jaxrl_self.run.stats import final_value, mean_ci
from run_helpers import interrupt_after_save
from treecheck import assert_bitwise

TESTS = Path(__file__).parent
N_UPDATES, SEEDS, EVERY = 20, 2, 6  # chunks of 6, 6, 6 and a partial 2: exercises the masked last chunk
CFG = toy_algo.Config(num_updates=N_UPDATES)
OPTS = RunOptions(seeds=SEEDS, checkpoint_every=EVERY, keep_checkpoints=2, progress=False)


def _train(cfg=CFG):
    return toy_algo.make_train(cfg)


def _desc(cfg=CFG, seeds=SEEDS):
    return run_description(algo="toy", env="none", config=cfg, seed=0, num_seeds=seeds, num_updates=N_UPDATES)


def _runner(run_dir, cfg=CFG, opts=OPTS, **kw):
    return Runner(_train(cfg), opts, description=_desc(cfg, opts.seeds), run_dir=run_dir, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted chunked run with a run folder (checkpoints + metrics)."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    return _runner(run_dir).run()


# ------------------------------------------------------------------------------------------ chunk planning
def test_plan_chunks():
    assert plan_chunks(20, chunks=1) == (20, 1)
    assert plan_chunks(20, chunks=4) == (5, 4)
    assert plan_chunks(20, chunks=3) == (7, 3)  # 7 + 7 + 6 (last chunk partial)
    assert plan_chunks(20, chunk_updates=6) == (6, 4)
    assert plan_chunks(5, chunks=10) == (1, 5)  # never more chunks than updates
    assert plan_chunks(5, chunk_updates=100) == (5, 1)
    with pytest.raises(ConfigError, match="num_updates"):
        plan_chunks(0)


def test_run_options_validate():
    with pytest.raises(ConfigError, match=r"RunOptions\.seeds=0"):
        RunOptions(seeds=0).validate()
    with pytest.raises(ConfigError, match="checkpoint_every"):
        RunOptions(checkpoint_every=0).validate()
    with pytest.raises(ConfigError, match="resume"):
        Runner(_train(), RunOptions(resume=True), run_dir=None)


def test_seed_keys_independent_of_count():
    a, b = seed_keys(3, 2), seed_keys(3, 5)
    np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b[:2]))
    np.testing.assert_array_equal(jax.random.key_data(a[1]), jax.random.key_data(jax.random.key(4)))


# ------------------------------------------------------------------------------------------ chunked execution
def test_chunked_run_matches_back_to_back_chunks(reference):
    """Saving checkpoints between chunks changes nothing: bitwise equal to calling the chunk program in a loop,
    and (to float tolerance) equal to the single-program ``jax.vmap(train)``."""
    train = _train()
    keys = seed_keys(0, SEEDS)
    chunk = jax.jit(make_chunk_fn(train, EVERY, masked=True))
    states = jax.jit(jax.vmap(train.init))(keys)
    rows = []
    for start in range(0, N_UPDATES, EVERY):
        n = min(EVERY, N_UPDATES - start)
        states, m = chunk(states, np.int32(n))
        rows.append(np.asarray(m.loss)[:n])
    assert_bitwise(reference.states, states)
    np.testing.assert_array_equal(np.concatenate(rows), reference.metrics["loss"])
    assert reference.metrics["loss"].shape == (N_UPDATES, SEEDS)
    assert np.all(np.asarray(reference.states.update_step) == N_UPDATES)

    whole, whole_metrics = jax.jit(jax.vmap(train))(keys)
    np.testing.assert_allclose(np.asarray(whole.params), np.asarray(reference.states.params), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(whole_metrics.loss).T, reference.metrics["loss"], rtol=1e-5, atol=1e-6)


def test_no_recompilation_between_chunks(tmp_path):
    """One lowering of the chunk program for a run of 4 chunks whose last one is partial."""
    lowered: list[str] = []

    def listener(event, duration, **kw):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(str(kw.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        runner = _runner(False)
        result = runner.run()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert runner.num_chunks == 4 and runner.masked
    assert lowered.count("jit(chunk)") == 1, lowered
    assert result.metrics["loss"].shape == (N_UPDATES, SEEDS)
    assert set(runner.timings) >= {"compile_init_s", "compile_chunk_s"}
    assert result.summary["compile_s"] > 0 and result.summary["run_s"] > 0


def test_progress_callback_fires_once_per_update():
    calls = []
    train = _train()
    chunk = jax.jit(make_chunk_fn(train, EVERY, masked=True, callback=lambda active, **f: calls.append((active, f))))
    states = jax.jit(jax.vmap(train.init))(seed_keys(0, SEEDS))
    states, _ = chunk(states, np.int32(2))
    jax.effects_barrier()
    assert [a for a, _ in calls] == [True, True, False, False, False, False]
    assert set(calls[0][1]) == {"env_steps", "episode_return", "episode_return_valid"}
    np.testing.assert_array_equal(calls[1][1]["env_steps"], [16, 16])


# ------------------------------------------------------------------------------------------ run folder
def test_run_folder_and_metrics_rows(reference):
    run_dir = reference.run_dir
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "summary.json", "learning_curve.png"):
        assert (run_dir / name).exists(), name
    rows = metrics_lib.read_jsonl(run_dir / "metrics.jsonl")
    assert len(rows) == N_UPDATES * (SEEDS + 1)
    per_seed = [r for r in rows if r["seed"] != "mean"]
    means = [r for r in rows if r["seed"] == "mean"]
    assert sorted((r["update"], r["seed"]) for r in per_seed) == [(u, s) for u in range(N_UPDATES) for s in range(SEEDS)]
    loss = reference.metrics["loss"]
    for r in per_seed:
        u, s = r["update"], r["seed"]
        assert r["loss"] == pytest.approx(float(loss[u, s]))
        # episode_return is only valid on even updates in the toy: None otherwise, never a placeholder
        assert r["episode_return"] == (pytest.approx(-float(loss[u, s])) if u % 2 == 0 else None)
    for r in means:
        u = r["update"]
        assert r["loss"] == pytest.approx(float(loss[u].mean()))
        assert r["episode_return"] == (pytest.approx(-float(loss[u].mean())) if u % 2 == 0 else None)
        assert r["episode_return_valid"] is (u % 2 == 0)
    import csv

    with open(run_dir / "metrics.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows)
    assert csv_rows[0].keys() >= {"update", "seed", "env_steps", "loss", "episode_return"}
    assert csv_rows[SEEDS + 1 + 0]["episode_return"] == ""  # update 1, seed 0: no finished episode

    desc = json.loads((run_dir / "config.json").read_text())
    assert desc["config"]["lr"] == CFG.lr and desc["num_seeds"] == SEEDS
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["updates_done"] == N_UPDATES
    # final return: mean over the last 10% of updates (2 updates: 18 valid, 19 not) then mean/CI over seeds
    per_seed_final = -loss[18]
    ref = mean_ci(per_seed_final)
    assert summary["final_return"]["mean"] == pytest.approx(ref.mean)
    assert summary["final_return"]["ci_low"] == pytest.approx(ref.low)
    assert summary["env_steps"] == N_UPDATES * toy_algo.Config().batch_size * SEEDS
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == [18, 20]


def test_existing_run_folder_not_overwritten(reference):
    with pytest.raises(FileExistsError, match="--resume"):
        _runner(reference.run_dir).run()


def test_mismatched_config_refused_with_fields_named(reference):
    other = toy_algo.Config(num_updates=N_UPDATES, lr=0.01, noise=0.2)
    opts = RunOptions(seeds=SEEDS, checkpoint_every=EVERY, progress=False, resume=True)
    with pytest.raises(CheckpointMismatchError) as err:
        Runner(_train(other), opts, description=_desc(other), run_dir=reference.run_dir).run()
    assert set(err.value.differences) == {"config.lr", "config.noise"}
    assert err.value.differences["config.lr"] == (CFG.lr, 0.01)
    assert "config.lr: checkpoint=0.05, this run=0.01" in str(err.value)


def test_diff_configs_nested_and_missing():
    a = {"algo": "ppo", "config": {"lr": 1e-3, "net": {"width": 64}}, "runner": {"chunk_updates": 5}}
    b = {"algo": "ppo", "config": {"lr": 1e-3, "net": {"width": 32}, "extra": 1}, "runner": {"chunk_updates": 7}}
    assert ckpt_lib.diff_configs(a, b) == {"config.net.width": (64, 32), "config.extra": ("<missing>", 1)}


def test_config_round_trip():
    cfg = toy_algo.Config(lr=0.003, num_features=3)
    assert ckpt_lib.config_from_dict(toy_algo.Config, json.loads(json.dumps(ckpt_lib.config_to_dict(cfg)))) == cfg


# ------------------------------------------------------------------------------------------ crash safety
_DRIVER = textwrap.dedent("""
    import sys, time, numpy as np
    sys.path.insert(0, {tests!r})
    import jaxrl_self
    import toy_algo
    from jaxrl_self.run import checkpoint as ck
    from jaxrl_self.run.runner import Runner, RunOptions, run_description
    mode, run_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "slow":  # pause after each save so the parent can kill us between chunks
        save = ck.Checkpointer.save
        def slow_save(self, *a, **k):
            save(self, *a, **k)
            print("saved", a[0], flush=True)
            time.sleep(1.5)
        ck.Checkpointer.save = slow_save
    cfg = toy_algo.Config(num_updates={n})
    opts = RunOptions(seeds={s}, checkpoint_every={e}, keep_checkpoints=2, progress=False, resume=mode == "resume",
                      run_dir=run_dir)
    desc = run_description(algo="toy", env="none", config=cfg, seed=0, num_seeds={s}, num_updates={n})
    result = Runner(toy_algo.make_train(cfg), opts, description=desc).run()
    np.save(out, np.asarray(result.states.params))
    print("done", flush=True)
""").format(tests=str(TESTS), n=N_UPDATES, s=SEEDS, e=EVERY)


def _python(code, *args, **kw):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _steps(ckpt_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if ckpt_dir.exists() else []


def test_sigkill_between_chunks_then_resume_is_bitwise_identical(reference, tmp_path):
    run_dir = tmp_path / "run"
    proc = _python(_DRIVER, "slow", run_dir, tmp_path / "a.npy")
    deadline = time.time() + 240
    try:
        while 12 not in _steps(run_dir / "checkpoints"):
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "timed out waiting for the second checkpoint"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert _steps(run_dir / "checkpoints")[-1] == 12
    assert not (tmp_path / "a.npy").exists()

    resume = _python(_DRIVER, "resume", run_dir, tmp_path / "b.npy")
    out, _ = resume.communicate(timeout=240)
    assert resume.returncode == 0, out
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), np.asarray(reference.states.params))
    rows = metrics_lib.read_jsonl(run_dir / "metrics.jsonl")
    keys = [(r["update"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == N_UPDATES * (SEEDS + 1)  # no row lost or duplicated
    ref_rows = metrics_lib.read_jsonl(reference.run_dir / "metrics.jsonl")
    assert rows == ref_rows
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_from_update"] == 12 and summary["status"] == "finished"


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from orbax.checkpoint._src.handlers import json_checkpoint_handler as jch

    train = _train()
    abstract = jax.eval_shape(jax.vmap(train.init), seed_keys(0, SEEDS))
    state = jax.jit(jax.vmap(train.init))(seed_keys(0, SEEDS))
    ck = ckpt_lib.Checkpointer(tmp_path / "ck", keep=1)
    ck.save(1, state, {"a": 1})

    async def broken(self, x, directory):
        import asyncio

        await asyncio.sleep(0.5)  # let the state item's writes finish, so only this item fails
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(jch.JsonCheckpointHandler, "_save_fn", broken)
    moved = jax.tree.map(lambda x: x, state)
    with pytest.raises(ckpt_lib.CheckpointSaveError, match="earlier checkpoints are kept"):
        ck.save(2, moved, {"a": 2})
    monkeypatch.undo()
    ck.close()
    fresh = ckpt_lib.Checkpointer(tmp_path / "ck", keep=1)  # as a new process would see it
    assert fresh.all_steps() == [1]
    step, restored, cfg = fresh.restore(abstract)
    assert step == 1 and cfg == {"a": 1}
    assert_bitwise(restored, state)


_KILL_MID_SAVE = textwrap.dedent("""
    import sys, time, asyncio
    sys.path.insert(0, {tests!r})
    import jaxrl_self, jax
    import toy_algo
    from jaxrl_self.run import checkpoint as ck
    from jaxrl_self.run.runner import seed_keys
    from orbax.checkpoint._src.handlers import json_checkpoint_handler as jch
    train = toy_algo.make_train(toy_algo.Config())
    state = jax.jit(jax.vmap(train.init))(seed_keys(0, 2))
    c = ck.Checkpointer(sys.argv[1], keep=1)
    c.save(1, state, {{"a": 1}})
    async def hang(self, x, directory):
        print("saving", flush=True)
        await asyncio.sleep(3600)
    jch.JsonCheckpointHandler._save_fn = hang
    c.save(2, state, {{"a": 2}})
""").format(tests=str(TESTS))


def test_sigkill_during_save_leaves_previous_checkpoint_restorable(tmp_path):
    ck_dir = tmp_path / "ck"
    proc = _python(_KILL_MID_SAVE, ck_dir)
    try:
        line = proc.stdout.readline()
        while line and "saving" not in line:
            line = proc.stdout.readline()
        assert "saving" in line
        tmp_dirs = [p for p in ck_dir.iterdir() if "tmp" in p.name]
        assert tmp_dirs, list(ck_dir.iterdir())  # the half-written step 2 exists only as a temp dir
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    train = _train(toy_algo.Config())
    keys = seed_keys(0, 2)
    ck = ckpt_lib.Checkpointer(ck_dir, keep=1)
    assert ck.all_steps() == [1]
    step, restored, cfg = ck.restore(jax.eval_shape(jax.vmap(train.init), keys))
    assert step == 1 and cfg == {"a": 1}
    assert_bitwise(restored, jax.jit(jax.vmap(train.init))(keys))
    assert not [p for p in ck_dir.iterdir() if "tmp" in p.name]  # cleaned up by the new manager


def _cut_array_files(step_dir: Path) -> dict[Path, bytes]:
    """Cut every array data file of a checkpoint step to half its length (a disk that filled up mid-write);
    returns what each file now holds, by path relative to ``step_dir``."""
    damaged = {}
    for f in sorted((step_dir / "state" / "d").iterdir()):
        data = f.read_bytes()[: f.stat().st_size // 2]
        f.write_bytes(data)
        damaged[f.relative_to(step_dir)] = data
    assert damaged, f"no array files under {step_dir}"
    return damaged


def test_unreadable_newest_checkpoint_is_set_aside_and_the_resumed_run_finishes(reference, tmp_path, monkeypatch,
                                                                                capsys):
    """The newest checkpoint cannot be read: --resume used to restore the previous one and then stop when the run
    reached that step again (``CheckpointSaveError ... StepAlreadyExistsError``). Now the step is renamed out of
    orbax's sight (kept, with its damaged files), one line says so, and the run ends bitwise equal to an
    uninterrupted run, with the same metrics rows."""
    run_dir = tmp_path / "run"
    first = _runner(run_dir)
    interrupt_after_save(monkeypatch, 12)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    monkeypatch.undo()
    ck_dir = run_dir / "checkpoints"
    assert _steps(ck_dir) == [6, 12]
    damaged = _cut_array_files(ck_dir / "12")
    capsys.readouterr()

    resumed = _runner(run_dir, opts=dataclasses.replace(OPTS, resume=True), programs=first.programs()).run()
    err = capsys.readouterr().err

    assert_bitwise(resumed.states, reference.states)
    assert metrics_lib.read_jsonl(run_dir / "metrics.jsonl") == metrics_lib.read_jsonl(reference.run_dir / "metrics.jsonl")
    aside = [p for p in ck_dir.iterdir() if p.name.startswith("12.unreadable-")]
    assert len(aside) == 1, sorted(p.name for p in ck_dir.iterdir())
    for rel, data in damaged.items():  # the damaged step is kept as it was found
        assert (aside[0] / rel).read_bytes() == data
    assert _steps(ck_dir) == [18, 20]  # step 12 was written again, then pruned as usual
    warning = [line for line in err.splitlines() if "could not be read" in line]
    assert len(warning) == 1, err
    assert "checkpoint step 12" in warning[0] and str(aside[0]) in warning[0] and "continuing from step 6" in warning[0]
    assert f"resumed from update 6 ({ck_dir / '6'})" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed_from_update"] == 6
    assert summary["set_aside_checkpoints"] == [str(aside[0])]
    fresh = ckpt_lib.Checkpointer(ck_dir)  # a new manager (which cleans up temporary dirs) leaves it alone
    assert fresh.all_steps() == [18, 20] and aside[0].is_dir()
    fresh.close()


def _two_steps(directory: Path, configs=({"a": 1}, {"a": 2})):
    train = _train(toy_algo.Config())
    keys = seed_keys(0, SEEDS)
    state = jax.jit(jax.vmap(train.init))(keys)
    with ckpt_lib.Checkpointer(directory, keep=3) as ck:
        for step, cfg in enumerate(configs, start=1):
            ck.save(step, state, cfg)
    return state, jax.eval_shape(jax.vmap(train.init), keys)


def test_unreadable_checkpoints_are_not_moved_when_no_step_can_be_read(tmp_path):
    """Set aside only once an older step restores: if none can be read (say, the code changed), nothing moves."""
    _, abstract = _two_steps(tmp_path / "ck")
    for step in ("1", "2"):
        _cut_array_files(tmp_path / "ck" / step)
    ck = ckpt_lib.Checkpointer(tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match=r"no readable checkpoint .*nothing was moved.*step 2: .*step 1: "):
        ck.restore(abstract, set_aside_unreadable=True)
    assert ck.all_steps() == [1, 2] and ck.set_aside == []
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["1", "2"]
    ck.close()


def test_a_step_of_another_config_is_refused_not_set_aside(tmp_path):
    """The newest step is unreadable and the one before was made with another config: a mismatch error naming
    the field, and the unreadable step stays where it is (a damaged file is never a reason to drop a check)."""
    state, abstract = _two_steps(tmp_path / "ck")
    _cut_array_files(tmp_path / "ck" / "2")
    ck = ckpt_lib.Checkpointer(tmp_path / "ck")
    with pytest.raises(CheckpointMismatchError, match="a: checkpoint=1, this run=2"):
        ck.restore(abstract, expected_config={"a": 2}, set_aside_unreadable=True)
    assert ck.all_steps() == [1, 2]
    step, restored, cfg = ck.restore(abstract, set_aside_unreadable=True)  # no config to hold it to: set aside
    assert (step, cfg) == (1, {"a": 1}) and [m.step for m in ck.set_aside] == [2]
    assert_bitwise(restored, state)
    assert ck.all_steps() == [1] and ck.set_aside[0].path.name.startswith("2.unreadable-")
    ck.close()


# ------------------------------------------------------------------------------------------ non-finite
def test_nonfinite_loss_stops_run_and_keeps_last_good_checkpoint(reference, tmp_path):
    cfg = toy_algo.Config(num_updates=N_UPDATES, poison_update=8)  # traced field: same compiled program
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err:
        _runner(run_dir, cfg).run()
    assert err.value.update == 8 and err.value.seed_index == 0
    assert "update 8" in str(err.value) and "step 6" in str(err.value)
    assert _steps(run_dir / "checkpoints") == [6]
    info = json.loads((run_dir / "nonfinite.json").read_text())
    assert info["update"] == 8 and info["last_good_checkpoint_step"] == 6
    rows = metrics_lib.read_jsonl(run_dir / "metrics.jsonl")
    assert max(r["update"] for r in rows) == 7 and all(math.isfinite(r["loss"]) for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "nonfinite" and summary["updates_done"] == 8
    # the kept checkpoint is the clean run's state after 6 updates
    train = _train(cfg)
    ck = ckpt_lib.Checkpointer(run_dir / "checkpoints")
    step, state, _ = ck.restore(jax.eval_shape(jax.vmap(train.init), seed_keys(0, SEEDS)))
    ref_train = _train()
    ref_state = jax.jit(jax.vmap(lambda k: ref_train.run(ref_train.init(k), 6)[0]))(seed_keys(0, SEEDS))
    np.testing.assert_allclose(np.asarray(state.params), np.asarray(ref_state.params), rtol=1e-6)
    assert np.all(np.asarray(state.nonfinite_update) == -1)


# ------------------------------------------------------------------------------------------ statistics
@pytest.mark.parametrize("n", [2, 5, 10])
def test_mean_ci_matches_scipy_and_t_table(n):
    from scipy import stats

    x = np.random.default_rng(n).normal(3.0, 2.0, size=n)
    ci = mean_ci(x)
    lo, hi = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x))
    assert ci.mean == pytest.approx(x.mean()) and ci.n == n
    assert (ci.low, ci.high) == (pytest.approx(lo), pytest.approx(hi))
    t_table = {2: 12.706, 5: 2.776, 10: 2.262}[n]  # two-sided 95% critical values, df = n - 1
    assert ci.half_width == pytest.approx(t_table * x.std(ddof=1) / math.sqrt(n), rel=1e-3)


def test_welch_diff_ci_matches_a_hand_computation_and_scipy():
    """Welch's interval of a difference of means: the Welch–Satterthwaite degrees of freedom by hand, and the
    same t statistic as scipy's unequal-variance t-test."""
    from scipy import stats

    from jaxrl_self.run.stats import welch_diff_ci

    a, b = [0.2, 0.5, 0.3, np.nan], [0.1, 0.0, 0.2, 0.15, 0.05]
    w = welch_diff_ci(a, b)
    x, y = np.array(a[:3]), np.array(b)
    va, vb = x.var(ddof=1) / 3, y.var(ddof=1) / 5
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 4)
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert w.diff == pytest.approx(x.mean() - y.mean())
    assert (w.low, w.high) == (pytest.approx(w.diff - half), pytest.approx(w.diff + half))
    t = stats.ttest_ind(x, y, equal_var=False).statistic
    assert w.diff / math.sqrt(va + vb) == pytest.approx(t)
    assert w.holds_zero == (w.low <= 0 <= w.high)
    assert not welch_diff_ci([10, 11, 12], [0, 1, 2]).holds_zero and welch_diff_ci([1, 2, 3], [1, 2, 3]).holds_zero
    assert welch_diff_ci([1.0, 1.0], [0.5, 0.5]).as_dict() == {"diff": 0.5, "low": 0.5, "high": 0.5,
                                                               "holds_zero": False}
    with pytest.raises(ValueError, match="at least 2 finite values"):
        welch_diff_ci([1.0], [1.0, 2.0])


def test_mean_ci_edge_cases_and_final_value():
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    one = mean_ci([2.0, np.nan])
    assert one.n == 1 and one.mean == 2.0 and math.isnan(one.low)
    values = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0],
                       [0.0] * 11])
    valid = np.ones_like(values, bool)
    valid[1, -2:] = False
    # ceil(10% of 11) = 2 last updates; seed 1 has none valid there -> NaN, not 0
    np.testing.assert_allclose(final_value(values, valid), [10.5, np.nan])


# ------------------------------------------------------------------------------------------ names
def test_unknown_algorithm_and_environment_names():
    with pytest.raises(UnknownAlgorithmError, match="unknown algorithm 'ppp'"):
        load_algorithm("ppp")
    from jaxrl_self.envs import UnknownEnvironmentError

    with pytest.raises(UnknownEnvironmentError, match="Did you mean 'cartpole'"):
        run_training("toy_algo", "cartpol", toy_algo.Config(), OPTS, run_dir=False)
    with pytest.raises(ConfigError, match="num_updates"):
        run_training("toy_algo", "cartpole", toy_algo.Config(num_updates=0), OPTS, run_dir=False)


# ------------------------------------------------------------------------------------------ sweeps
def test_sweep_groups_static_fields_and_stacks_traced_ones(reference, tmp_path):
    from jaxrl_self.run.sweep import run_sweep

    lowered: list[str] = []

    def listener(event, duration, **kw):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(str(kw.get("fun_name")))

    grid = {"lr": [0.01, 0.05], "num_features": [3, 4]}  # lr traced, num_features static
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        result = run_sweep(toy_algo, "cartpole", grid, base_config=CFG, seeds=SEEDS, out_dir=tmp_path / "sw",
                           verbose=False)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert lowered.count("jit(sweep_group)") == 2  # one program per value of the static field
    assert [g.indices for g in result.groups] == [[0, 2], [1, 3]]
    assert result.assignments[3] == {"lr": 0.05, "num_features": 4}
    # config 3 is the reference config: same numbers as the chunked single run (another program: tolerance)
    np.testing.assert_allclose(result.metrics[3]["loss"], reference.metrics["loss"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(result.metrics[1]["loss"], result.metrics[3]["loss"])  # lr really differs
    for row, m in zip(result.table, result.metrics):
        ci = mean_ci(final_value(m["episode_return"].T, m["episode_return_valid"].T))
        assert row["final_return_mean"] == pytest.approx(ci.mean)
        assert (row["final_return_ci_low"], row["final_return_ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    out = tmp_path / "sw"
    for name in ("sweep.json", "metrics.jsonl", "results.csv", "results.md", "learning_curves.png"):
        assert (out / name).exists(), name
    info = json.loads((out / "sweep.json").read_text())
    assert info["static_fields"] == ["num_features"] and len(info["groups"]) == 2
    assert len(metrics_lib.read_jsonl(out / "metrics.jsonl")) == 4 * N_UPDATES * (SEEDS + 1)
    md = (out / "results.md").read_text()
    assert md.count("\n| ") == 5 and "**" in md


def test_sweep_bad_field_named_before_compiling():
    from jaxrl_self.run.sweep import expand_grid, is_static_field

    with pytest.raises(ConfigError, match="lrr.*lr, noise"):
        expand_grid(CFG, {"lrr": [1.0]})
    with pytest.raises(ConfigError, match="non-empty list"):
        expand_grid(CFG, {"lr": []})
    assert is_static_field(CFG, "num_features") and not is_static_field(CFG, "lr")


# ------------------------------------------------------------------------------------------ metric sinks
def _synthetic_chunk():
    ret = np.array([[1.0, 5.0, 9.0], [2.0, 4.0, 8.0]], np.float32)  # (updates=2, seeds=3)
    valid = np.array([[True, False, True], [False, False, False]])
    return {"env_steps": np.array([[10, 10, 10], [20, 20, 20]], np.int32), "episode_return": ret,
            "episode_return_valid": valid, "loss": np.array([[0.5, 1.5, 1.0], [0.25, 0.75, 0.5]], np.float32)}


def test_metrics_writer_masks_invalid_and_truncates_on_resume(tmp_path):
    w = metrics_lib.MetricsWriter(tmp_path)
    w.write(_synthetic_chunk(), first_update=0)
    w.write(_synthetic_chunk(), first_update=2)
    w.close()
    rows = metrics_lib.read_jsonl(tmp_path / "metrics.jsonl")
    assert len(rows) == 4 * 4
    mean0 = rows[3]
    assert mean0["seed"] == "mean" and mean0["episode_return"] == pytest.approx(5.0)  # (1 + 9) / 2, not /3
    assert mean0["episode_return_valid"] is True and mean0["loss"] == pytest.approx(1.0)
    assert rows[1]["episode_return"] is None and rows[7]["episode_return"] is None  # seed 1; mean of update 1
    assert rows[7]["episode_return_valid"] is False
    # a resumed run restarting at update 2 drops the rows it will write again
    metrics_lib.MetricsWriter(tmp_path, start_update=2).close()
    assert max(r["update"] for r in metrics_lib.read_jsonl(tmp_path / "metrics.jsonl")) == 1
    import csv

    with open(tmp_path / "metrics.csv", newline="") as f:
        assert [r["update"] for r in csv.DictReader(f)] == ["0"] * 4 + ["1"] * 4


def test_a_csv_row_torn_by_a_kill_does_not_survive_a_resume(tmp_path):
    """A kill mid-write can cut the CSV's last row ("1" of "12", or a missing column); a resume rebuilds the CSV
    from the JSONL rows it keeps, so the file equals one written without the kill."""
    import csv

    w = metrics_lib.MetricsWriter(tmp_path)
    w.write(_synthetic_chunk(), first_update=0)
    w.close()
    clean = (tmp_path / "metrics.csv").read_text()
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("1")  # the start of update 12's row, cut after one character
    metrics_lib.MetricsWriter(tmp_path, start_update=2).close()
    assert (tmp_path / "metrics.csv").read_text() == clean
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["update"] for r in rows] == ["0"] * 4 + ["1"] * 4 and all(None not in r.values() for r in rows)


def _read_tb_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Parse TensorBoard event files (TFRecord framing) with tensorboardX's protobufs."""
    import struct as pystruct

    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = pystruct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12: pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_sink_writes_mean_over_seeds(tmp_path):
    pytest.importorskip("tensorboardX")
    w = metrics_lib.MetricsWriter(tmp_path, tensorboard=True)
    w.write(_synthetic_chunk(), first_update=0)
    w.close()
    scalars = _read_tb_scalars(tmp_path / "tb")
    assert scalars["loss"] == [(10, pytest.approx(1.0)), (20, pytest.approx(0.5))]  # x axis: env steps
    assert scalars["episode_return"] == [(10, pytest.approx(5.0))]  # no valid seed at update 1: no point


def test_wandb_sink_needs_the_extra(tmp_path):
    try:
        import wandb  # noqa: F401  (only checks that it is installed)
    except ImportError:
        with pytest.raises(ImportError, match=r"jaxrl-self\[wandb\]"):
            metrics_lib.MetricsWriter(tmp_path, wandb=True)
    else:  # pragma: no cover - wandb installed: offline mode, nothing leaves the machine
        os.environ["WANDB_MODE"] = "offline"
        w = metrics_lib.MetricsWriter(tmp_path, wandb=True)
        w.write(_synthetic_chunk(), first_update=0)
        w.close()


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_first_nonfinite_picks_earliest_bad_seed_for_any_int_dtype(dtype):
    """The per-seed ``nonfinite_update`` (-1 = never) is int32 on a default jax setup; numpy >= 2.5 refuses a
    Python int64 sentinel beside it (this crashed a GPU run), so the sentinel follows the array's dtype."""
    from types import SimpleNamespace

    def first(values):
        return Runner._first_nonfinite(SimpleNamespace(nonfinite_update=np.asarray(values, dtype)))

    assert first([-1, -1, -1]) is None
    assert first([-1, 7, 3, -1]) == (3, 2)
    assert first([[5, -1], [-1, 5]]) == (5, 0)  # a seed x hyper-parameter grid is flattened; ties: first seed
    assert Runner._first_nonfinite(SimpleNamespace()) is None


# ------------------------------------------------------------------------------------------ compiled programs
def test_programs_compiled_once_serve_another_runner(tmp_path, reference):
    """``Runner.programs()`` hands the compiled init/chunk to a second runner of the same run: it compiles
    nothing (no compile timings in its summary) and reproduces the first run bitwise."""
    from jaxrl_self.run import CompiledPrograms

    first = _runner(tmp_path / "first")
    programs = first.programs()
    assert isinstance(programs, CompiledPrograms)
    assert (programs.chunk_updates, programs.masked, programs.num_seeds) == (EVERY, True, SEEDS)
    assert programs.config == CFG
    result = _runner(tmp_path / "second", programs=programs).run()
    assert not any(k.startswith("compile") for k in result.summary if result.summary[k])
    assert_bitwise(result.states, reference.states)
    np.testing.assert_array_equal(result.metrics["loss"], reference.metrics["loss"])


def test_programs_refused_by_a_runner_of_another_run(tmp_path):
    programs = _runner(False).programs()
    with pytest.raises(ConfigError, match=r"programs\.num_seeds=2 .*num_seeds=3"):
        _runner(False, opts=RunOptions(seeds=3, checkpoint_every=EVERY, progress=False), programs=programs)
    with pytest.raises(ConfigError, match=r"programs\.chunk_updates=6 .*chunk_updates=5"):
        _runner(False, opts=RunOptions(seeds=SEEDS, checkpoint_every=5, progress=False), programs=programs)
    with pytest.raises(ConfigError, match=r"programs\.progress=False"):
        _runner(False, opts=RunOptions(seeds=SEEDS, checkpoint_every=EVERY, progress=True), programs=programs)
    other = toy_algo.Config(num_updates=N_UPDATES, lr=0.01)
    with pytest.raises(ConfigError, match=r"programs\.config='lr'"):
        _runner(False, cfg=other, programs=programs)
