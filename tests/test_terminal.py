"""What the terminal tells a user (#15): the compile lines, LM throughput in tokens/s and completions/s, an LM run's
held-out accuracy before → after, and the buffer render's layout.

The toy runs use tests/test_runner.py's config and chunking (its compiled programs come from the persistent cache);
the LM run is GRPO for 2 updates from the shipped ``addition-base`` model.
"""
from __future__ import annotations

import json
import re
import types

import jax
import numpy as np
import pytest

import toy_algo
from jaxrl_self.cli import main
from jaxrl_self.run import report
from jaxrl_self.run.metrics import read_jsonl
from jaxrl_self.run.runner import (
    Progress,
    RunOptions,
    Runner,
    build_summary,
    is_lm_config,
    lm_completions_per_update,
    run_description,
)

N_UPDATES, SEEDS, EVERY = 20, 2, 6  # as tests/test_runner.py
CFG = toy_algo.Config(num_updates=N_UPDATES)


def _toy_runner(progress: bool, **kw) -> Runner:
    desc = run_description(algo="toy", env="none", config=CFG, seed=0, num_seeds=SEEDS, num_updates=N_UPDATES)
    opts = RunOptions(seeds=SEEDS, checkpoint_every=EVERY, keep_checkpoints=0, progress=progress)
    return Runner(toy_algo.make_train(CFG), opts, description=desc, run_dir=False, **kw)


# ------------------------------------------------------------------------------------------ compile lines
def test_the_runner_says_when_it_compiles_and_how_long_it_took(capsys):
    runner = _toy_runner(progress=True)
    result = runner.run()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == "compiling the training program (2 seeds, chunk of 6 updates)..."
    seconds = float(re.fullmatch(r"compiled in (\d+\.\d) s", lines[1]).group(1))
    assert seconds == pytest.approx(result.summary["compile_s"], abs=0.1 + 0.5 * result.summary["compile_s"])
    assert err.index("compiled in") < err.index("steps/s=")  # then the bar

    # with programs already compiled nothing is compiled, and nothing said
    again = _toy_runner(progress=True, programs=runner.programs())
    capsys.readouterr()
    again.run()
    assert "compil" not in capsys.readouterr().err
    # progress=False (library callers) is quiet: no compile lines, no bar
    _toy_runner(progress=False).run()
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------------ LM throughput
def test_lm_configs_and_their_completions_per_update():
    """LM-ness is the config being an LMRLConfig, which agrees with what each registered algorithm trains on (token
    tasks); completions per update are num_prompts times the responses per prompt each method samples."""
    import importlib

    from jaxrl_self import algos, envs
    from jaxrl_self.algos import grpo, ppo, token_ppo, tppo
    from jaxrl_self.core.algorithm import ENVIRONMENT_KINDS, env_kinds
    from jaxrl_self.teach import rlt, soar, ttrl

    for name in algos.names():
        module = importlib.import_module(algos.ALGORITHMS[name])
        kinds = set(module.ENV_KINDS)
        on_tasks = "task" in kinds or any("task" in env_kinds(envs.make(k)) for k in kinds - set(ENVIRONMENT_KINDS))
        assert is_lm_config(module.Config()) == on_tasks, name
    assert lm_completions_per_update(grpo.Config(num_prompts=4, group_size=3)) == 12
    assert lm_completions_per_update(token_ppo.Config(num_prompts=8, group_size=2)) == 16
    assert lm_completions_per_update(rlt.Config(num_prompts=5, group_size=4)) == 20
    assert lm_completions_per_update(ttrl.Config(num_prompts=4, n_votes=6, n_train=2)) == 24  # sampled, not trained
    assert lm_completions_per_update(soar.Config(num_prompts=8, num_datasets=3)) == 24  # the teacher's written pairs
    assert lm_completions_per_update(tppo.Config()) is None  # counted from its num_finished metric
    assert lm_completions_per_update(ppo.Config()) is None and not is_lm_config(ppo.Config())


def test_progress_bar_of_an_lm_run_shows_tokens_and_completions_per_second(monkeypatch):
    from jaxrl_self.run import runner as runner_lib

    clock = iter([10.0, 11.0, 12.0])  # the runner module's clock only
    monkeypatch.setattr(runner_lib, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    seen = {}
    bar = Progress(3, lm=True, completions_per_update=8)
    monkeypatch.setattr(bar._bar, "set_postfix", lambda post, refresh: seen.update(post))
    for tokens in (50, 130, 200):  # cumulative tokens of two seeds: [25, 25], [65, 65], [100, 100]
        bar(True, env_steps=np.array([tokens / 2, tokens / 2]))
    bar.close()
    assert seen["tokens/s"] == "75" and seen["completions/s"] == "8.0" and "steps/s" not in seen

    clock = iter([0.0, 2.0])  # T-PPO: completions are the responses finished, summed over seeds
    bar = Progress(2, enabled=False, lm=True)
    bar(True, env_steps=np.array([10.0]), num_finished=np.array([3]))
    bar(True, env_steps=np.array([30.0]), num_finished=np.array([5]))
    assert bar.completions == 5


def test_summary_of_an_lm_run_counts_tokens_and_completions():
    steps = np.array([[10.0, 12.0], [25.0, 30.0]])  # (updates, seeds) cumulative tokens
    metrics = {"env_steps": steps, "episode_return": np.zeros((2, 2))}
    kw = dict(timings={}, run_s=2.0, checkpoint_s=0.0, num_updates=2, start_update=0, status="finished")
    s = build_summary(metrics, lm=True, completions_per_update=6, **kw)
    assert s["tokens"] == 55 and s["tokens_per_s"] == 27.5 == s["env_steps_per_s"]
    assert s["completions"] == 2 * 2 * 6 and s["completions_per_s"] == 12
    s = build_summary({**metrics, "num_finished": np.array([[1, 2], [3, 4]])}, lm=True, **kw)
    assert s["completions"] == 10 and s["completions_per_s"] == 5
    assert "tokens_per_s" not in build_summary(metrics, **kw)  # not an LM run: env steps only


# ------------------------------------------------------------------------------------------ an LM run end to end
LM_RUN = ["train", "grpo", "--task", "addition", "--base-model", "addition-base", "--num-updates", "2",
          "--num-prompts", "4", "--group-size", "2", "--max-new-tokens", "8", "--chunks", "1",
          "--keep-checkpoints", "1"]


def _accuracy(module, config, task, n):
    """Held-out accuracy as the report computes it, of given parameters (with a leading seed axis)."""
    from jaxrl_self.lm.evaluate import HELD_OUT_SEED

    evaluate = module.make_eval(config, task)
    key = jax.random.key(HELD_OUT_SEED)
    acc = jax.jit(jax.vmap(lambda p: evaluate(p, key, num_episodes=n).correct.astype(np.float32).mean()))
    return lambda params: np.asarray(acc(params)).tolist()


def test_lm_training_reports_tokens_completions_and_heldout_before_after(capsys, tmp_path):
    from jaxrl_self import lm
    from jaxrl_self.run.runner import restore_run

    run_dir = tmp_path / "run"
    code = main([*LM_RUN, "--run-dir", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "compiling the training program (1 seed, chunk of 2 updates)..." in err and "compiled in" in err
    assert "tokens/s=" in err and "completions/s=" in err and "steps/s=" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["seed"] == 0]
    assert summary["completions"] == 2 * 4 * 2 and summary["tokens"] == rows[-1]["env_steps"]
    # completions are the responses env_steps counts: each update's tokens / mean response length = 4 * 2
    tokens = np.diff([0.0] + [r["env_steps"] for r in rows])
    np.testing.assert_allclose(tokens / np.array([r["response_length"] for r in rows]), 8, rtol=1e-5)
    line = next(x for x in out.splitlines() if x.startswith("throughput:"))
    assert re.fullmatch(r"throughput: +[\d,]+ tokens/s, [\d,.]+ completions/s \([\d,]+ tokens, 16 completions over 1 "
                        r"seed\(s\)\)", line), line
    assert "env steps" not in out

    (held,) = [x for x in out.splitlines() if x.startswith("held-out accuracy")]
    before, after = map(float, re.fullmatch(r"held-out accuracy \(128 problems, greedy\): (\d\.\d{3}) → (\d\.\d{3})",
                                            held).groups())
    saved = json.loads((run_dir / "heldout_lm.json").read_text())
    assert saved["num_problems"] == 128 and saved["before"]["update"] == 0 and saved["after"]["update"] == 2
    assert round(saved["before"]["mean"], 3) == before and round(saved["after"]["mean"], 3) == after
    # before: the base model's own accuracy on those problems; after: the final checkpoint's
    run = restore_run(run_dir)
    base, _, _ = lm.load_base_model("addition-base")
    stack = lambda tree: jax.tree.map(lambda x: np.asarray(x)[None], tree)  # noqa: E731
    accuracy = _accuracy(run.module, run.config, run.env, 128)
    assert accuracy(stack(base)) == saved["before"]["per_seed"]
    assert accuracy(run.states.params) == saved["after"]["per_seed"]
    assert 0.2 < before < 1.0  # a base model that solves some of its problems, not all


def test_heldout_line_names_seeds_and_a_resumed_start():
    side = lambda mean, update: {"mean": mean, "update": update}  # noqa: E731
    one = {"num_problems": 128, "num_seeds": 1, "before": side(0.4121, 0), "after": side(0.6549, 100)}
    assert report.heldout_line(one) == "held-out accuracy (128 problems, greedy): 0.412 → 0.655"
    two = {**one, "num_seeds": 2, "before": side(0.5, 40)}
    assert report.heldout_line(two) == ("held-out accuracy (128 problems, greedy, mean of 2 seeds): 0.500 at update 40 "
                                        "(resumed) → 0.655 at update 100")


# ------------------------------------------------------------------------------------------ buffer render
def _buffer_states(n: int = 8, size: int = 6, side: int = 13):
    """A batched state (one seed) with a level buffer of ``size`` filled slots, as a PLR/ACCEL run has."""
    rng = np.random.default_rng(0)
    walls = rng.random((1, n, side, side)) < 0.2
    levels = types.SimpleNamespace(wall_map=walls, goal_pos=np.full((1, n, 2), 3), agent_pos=np.ones((1, n, 2), int),
                                   agent_dir=np.zeros((1, n), int))
    extra = types.SimpleNamespace(num_walls=walls.sum((2, 3)), shortest_path=np.full((1, n), 7))
    return types.SimpleNamespace(buffer=types.SimpleNamespace(size=np.array([size]), scores=rng.random((1, n)),
                                                              levels=levels, extra=extra))


def test_buffer_render_title_clears_the_panels(tmp_path):
    """The figure's title lies inside the figure and above every panel, its two-line title included."""
    import matplotlib.pyplot as plt

    fig = report.top_levels_figure(_buffer_states())
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        title = fig._suptitle.get_window_extent(renderer)
        assert len(fig.axes) == 6
        for ax in fig.axes:
            panel = ax.get_tightbbox(renderer)  # the image and its "score / walls, path" title
            assert not panel.overlaps(title), (panel, title)
            assert panel.y1 <= title.y0
        assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1
    finally:
        plt.close(fig)
    assert report.render_top_levels(_buffer_states(), tmp_path / "top.png").stat().st_size > 0
    assert report.top_levels_figure(_buffer_states(size=0)) is None
