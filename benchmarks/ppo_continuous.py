"""Continuous-action PPO: ours beside PureJaxRL's ``ppo_continuous_action.py`` on Brax, and learning on Pendulum.

Usage::

    python benchmarks/ppo_continuous.py                       # both parts -> benchmarks/results/ppo_continuous.*
    python benchmarks/ppo_continuous.py --total-timesteps 2e6 --seeds 3
    python benchmarks/ppo_continuous.py --purejaxrl-source PATH   # a checkout of luchris429/purejaxrl
    python benchmarks/ppo_continuous.py --quick               # smoke test: tiny budgets

**(a) Brax, side by side.** PureJaxRL (luchris429/purejaxrl at ``31756b1``) ``purejaxrl/ppo_continuous_action.py``
at its own config (hopper, ``positional`` backend, 2048 envs x 10 steps, 4 epochs x 32 minibatches, lr 3e-4 not
annealed, gamma 0.99, GAE 0.95, clip 0.2, entropy 0, 256-256 tanh, ``NORMALIZE_ENV``: observation and reward
normalisation, actions clipped) with ``TOTAL_TIMESTEPS`` cut to the CPU budget and ``DEBUG`` off (its per-update
print callback is not training). Its ``make_train`` is imported from its file unmodified and vmapped over the
seeds, as its README does. Ours: ``ppo.make_train`` with the same numbers on ``brax:hopper`` (our adapter: the
raw Brax env, the same backend, a 1000-step limit) with ``normalize_obs`` and ``normalize_rewards``. Both in
the same venv (same jax/jaxlib/brax), each in its own worker process, one after the other under the timing
lock: ``jax.jit(jax.vmap(train)).lower(keys).compile()`` timed apart, then the run timed (median of
``--reps``); env steps/s = steps of all seeds / run time. Final return: the mean return of the episodes that
finished in the last 10% of updates, per seed.

Differences by design: a time-limit truncation bootstraps from ``V(final_obs)`` in ours and is a termination in
PureJaxRL (its ``EpisodeWrapper`` + ``AutoResetWrapper`` report ``done`` at the limit); ours clips the action
given to the environment but scores the unclipped sample (as PureJaxRL's ``ClipAction``); PureJaxRL updates its
reward statistics inside the env wrapper step by step, ours after the rollout with the same step-by-step
recursion (:func:`jaxrl_self.rl.normalize.scale_rewards`).

**(b) Pendulum.** Ours on ``gymnax:Pendulum-v1`` with the test suite's config (16 envs x 128 steps, 10 epochs x 32
minibatches, lr 1e-3 annealed, gamma 0.9, reward scaling) for ``--pendulum-steps`` per seed, the learning curve
per seed.

Outputs: ``benchmarks/results/ppo_continuous{,.quick}.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    VENVS_DIR,
    compile_timed,
    emit_result,
    log,
    machine_info,
    run_worker,
    t_interval,
    time_calls,
    timing_lock,
    utc_now,
    worker_env,
    worker_info,
    write_results,
)

PUREJAXRL_URL = "https://github.com/luchris429/purejaxrl"
PUREJAXRL_COMMIT = "31756b1"
PJ_CONFIG = {"LR": 3e-4, "NUM_ENVS": 2048, "NUM_STEPS": 10, "UPDATE_EPOCHS": 4, "NUM_MINIBATCHES": 32,
             "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.0, "VF_COEF": 0.5,
             "MAX_GRAD_NORM": 0.5, "ACTIVATION": "tanh", "ENV_NAME": "hopper", "ANNEAL_LR": False,
             "NORMALIZE_ENV": True, "DEBUG": False}  # purejaxrl's own config (TOTAL_TIMESTEPS set per run)
BACKEND = "positional"  # BraxGymnaxWrapper's default


def purejaxrl_source(source: str | None) -> Path:
    dest = VENVS_DIR / "src" / f"purejaxrl-{PUREJAXRL_COMMIT}"
    if (dest / "purejaxrl" / "ppo_continuous_action.py").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    repo = source or str(VENVS_DIR / "src" / "purejaxrl.git")
    if source is None and not Path(repo).exists():
        subprocess.run(["git", "clone", "--bare", "-q", PUREJAXRL_URL, repo], check=True)
    git_dir = Path(repo) / ".git" if (Path(repo) / ".git").exists() else Path(repo)
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", PUREJAXRL_COMMIT], check=True,
                             capture_output=True)
    dest.mkdir()
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def ours_config(total: int):
    from jaxrl_self.algos import ppo

    c = PJ_CONFIG
    return ppo.Config(total_timesteps=total, num_envs=c["NUM_ENVS"], num_steps=c["NUM_STEPS"],
                      update_epochs=c["UPDATE_EPOCHS"], num_minibatches=c["NUM_MINIBATCHES"],
                      learning_rate=c["LR"], anneal_lr=c["ANNEAL_LR"], gamma=c["GAMMA"], gae_lambda=c["GAE_LAMBDA"],
                      clip_eps=c["CLIP_EPS"], ent_coef=c["ENT_COEF"], vf_coef=c["VF_COEF"],
                      max_grad_norm=c["MAX_GRAD_NORM"], activation=c["ACTIVATION"], hidden_sizes=(256, 256),
                      normalize_obs=True, normalize_rewards=True)


def _final_returns(returns, valid) -> list[float]:
    """Per seed: mean return of the episodes finished in the last 10% of updates (``[seeds, updates]``); NaN
    (left out of the interval) for a seed with no finished episode there. At 1M steps with 2048 envs each env
    plays 488 steps, under the 1000-step limit, so only falls end episodes: a seed whose hoppers all stay up in
    the window has none, and it must not count as a return of 0."""
    import numpy as np

    r, v = np.asarray(returns, float), np.asarray(valid, bool)
    k = max(1, r.shape[1] // 10)
    return [float(np.sum(np.where(v[s, -k:], r[s, -k:], 0)) / v[s, -k:].sum()) if v[s, -k:].any() else float("nan")
            for s in range(r.shape[0])]


def worker(args) -> None:
    import jaxrl_self  # noqa: F401  (XLA guard)
    import jax
    import numpy as np

    keys = jax.random.split(jax.random.key(30), args.seeds)
    if args.impl == "ours":
        from jaxrl_self import envs
        from jaxrl_self.algos import ppo

        config = ours_config(args.total)
        train = jax.vmap(ppo.make_train(config, envs.make("brax:hopper", backend=BACKEND, episode_length=1000)))

        def returns(out):
            return out[1].episode_return, out[1].episode_return_valid
        steps = config.num_updates * config.batch_size
    else:
        sys.path.insert(0, str(Path(args.source) / "purejaxrl"))
        import ppo_continuous_action as pj

        config = {**PJ_CONFIG, "TOTAL_TIMESTEPS": args.total}
        train = jax.vmap(pj.make_train(config))
        keys = jax.random.split(jax.random.PRNGKey(30), args.seeds)

        def returns(out):  # LogWrapper metrics: [seeds, updates, steps, envs]
            m = out["metrics"]
            done = np.asarray(m["returned_episode"])
            ret = np.asarray(m["returned_episode_returns"])
            count = done.sum(axis=(2, 3))
            return (np.where(done, ret, 0).sum(axis=(2, 3)) / np.maximum(count, 1)), count > 0
        steps = int(args.total // (config["NUM_ENVS"] * config["NUM_STEPS"])) * config["NUM_ENVS"] * config["NUM_STEPS"]
    compiled, lower_s, compile_s = compile_timed(train, keys)
    holder = {}

    def call():
        holder["out"] = compiled(keys)
        return holder["out"]

    timed = time_calls(call, reps=args.reps, min_rep_s=0.0)
    run_s = float(np.median(timed.seconds_per_call))
    r, v = returns(holder["out"])
    emit_result({"impl": args.impl, "seeds": args.seeds, "env_steps_per_seed": steps, "lower_s": lower_s,
                 "compile_s": compile_s, "run_s": run_s, "run_s_samples": timed.seconds_per_call,
                 "env_steps_per_s": steps * args.seeds / run_s, "final_return": _final_returns(r, v),
                 "worker": worker_info(("jax", "jaxlib", "flax", "brax", "numpy"))})


def worker_pendulum(args) -> None:
    import jaxrl_self  # noqa: F401
    import jax
    import numpy as np

    from jaxrl_self import envs
    from jaxrl_self.algos import ppo

    config = ppo.Config(total_timesteps=args.total, num_envs=16, num_steps=128, update_epochs=10, num_minibatches=32,
                        learning_rate=1e-3, gamma=0.9, gae_lambda=0.95, ent_coef=0.0, normalize_rewards=True)
    train = jax.jit(jax.vmap(ppo.make_train(config, envs.make("gymnax:Pendulum-v1"))))
    t = time.perf_counter()
    _, m = train(jax.random.split(jax.random.key(0), args.seeds))
    r, v = np.asarray(m.episode_return), np.asarray(m.episode_return_valid)
    wall = time.perf_counter() - t
    bins = 10
    per = r.shape[1] // bins
    curve = [{"env_steps": (b + 1) * per * config.batch_size,
              "return": [float(np.sum(np.where(v[s, b * per:(b + 1) * per], r[s, b * per:(b + 1) * per], 0))
                               / max(1, v[s, b * per:(b + 1) * per].sum())) for s in range(r.shape[0])]}
             for b in range(bins)]
    emit_result({"config": {k: getattr(config, k) for k in ("total_timesteps", "num_envs", "num_steps",
                                                           "update_epochs", "num_minibatches", "learning_rate",
                                                           "gamma", "gae_lambda", "ent_coef", "normalize_rewards")},
                 "seeds": args.seeds, "wall_s_with_compile": wall, "curve": curve,
                 "final_return": _final_returns(r, v), "worker": worker_info()})


def _mean_pm(xs, digits: int) -> str:
    """``mean ± half-width`` over seeds (:func:`_common.t_interval`: non-finite seeds left out), ``n/a`` with none."""
    ci = t_interval(xs)
    return "n/a" if ci["mean"] is None else f"{ci['mean']:.{digits}f} ± {ci['half'] or 0:.{digits}f}"


def markdown(data: dict) -> str:
    lines = ["# Continuous-action PPO", "",
             f"Created {data['created']} on {data['machine'].get('cpu_model', '?')}; jax {data['versions'].get('jax')}, "
             f"brax {data['versions'].get('brax')}. Intervals: 95% t over seeds.", "",
             f"## (a) Brax hopper, PureJaxRL's ppo_continuous_action.py config, "
             f"{data['brax']['total_timesteps']:,} env steps per seed, {data['brax']['seeds']} seeds vmapped", "",
             "| run | env steps/s | run s | compile s | final return | load1 before/after |", "|---|---:|---:|---:|---|---|"]
    rows = {r["impl"]: r for r in data["brax"]["runs"]}
    for impl, r in rows.items():
        lines.append(f"| {impl} | {r['env_steps_per_s']:,.0f} | {r['run_s']:.1f} | {r['compile_s']:.1f} | "
                     f"{_mean_pm(r['final_return'], 1)} | {r['lock'].get('load1_before')}/"
                     f"{r['lock'].get('load1_after')} |")
    if "ours" in rows and "purejaxrl" in rows:
        lines += ["", f"Ratio ours / PureJaxRL: **{rows['ours']['env_steps_per_s'] / rows['purejaxrl']['env_steps_per_s']:.2f}×** "
                      "env steps/s (same budget, same seeds count, one after the other)."]
    p = data.get("pendulum")
    if p:
        lines += ["", f"## (b) gymnax Pendulum-v1, {p['config']['total_timesteps']:,} env steps per seed, "
                      f"{p['seeds']} seeds", "", "| env steps | mean return (per seed) |", "|---:|---|"]
        for row in p["curve"]:
            lines.append(f"| {row['env_steps']:,} | {_mean_pm(row['return'], 0)} "
                         f"({', '.join(f'{x:.0f}' for x in row['return'])}) |")
        lines += ["", f"Config: {json.dumps(p['config'])}. A uniformly random policy scores about -1200."]
    lines += ["", data["method"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-timesteps", type=float, default=None, help="brax env steps per seed (2e6)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per run (3)")
    parser.add_argument("--pendulum-steps", type=int, default=None, help="Pendulum env steps per seed (300k)")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--purejaxrl-source", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--_worker", choices=("ours", "purejaxrl", "pendulum"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_total", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--_source", default="", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts._worker:
        ns = argparse.Namespace(impl=opts._worker, total=opts._total, seeds=opts.seeds, reps=opts.reps,
                                source=opts._source)
        (worker_pendulum if opts._worker == "pendulum" else worker)(ns)
        return
    total = int(opts.total_timesteps or (2048 * 10 * 4 if opts.quick else 2e6))
    seeds = opts.seeds or (2 if opts.quick else 3)
    pendulum = opts.pendulum_steps or (16 * 128 * 4 if opts.quick else 300_000)
    source = purejaxrl_source(opts.purejaxrl_source)
    env = worker_env("cpu")
    runs = []
    for impl in ("purejaxrl", "ours"):
        with timing_lock(f"ppo_continuous {impl}") as lock:
            log(f"[ppo_continuous] {impl}: {seeds} seeds x {total:,} steps")
            r = run_worker(sys.executable, __file__, ["--_worker", impl, "--_total", total, "--seeds", seeds,
                                                      "--reps", opts.reps, "--_source", source], env=env)
        r["lock"] = dict(lock)
        runs.append(r)
        log(f"[ppo_continuous] {impl}: {r['env_steps_per_s']:,.0f} env steps/s, final {r['final_return']}")
    log(f"[ppo_continuous] pendulum: {seeds} seeds x {pendulum:,} steps")
    pend = run_worker(sys.executable, __file__, ["--_worker", "pendulum", "--_total", pendulum, "--seeds",
                                                 max(seeds, 3)], env=env)
    data = {"benchmark": "ppo_continuous", "created": utc_now(), "machine": machine_info(), "quick": opts.quick,
            "versions": runs[-1]["worker"]["versions"],
            "brax": {"total_timesteps": total, "seeds": seeds, "backend": BACKEND, "purejaxrl_config": PJ_CONFIG,
                     "purejaxrl": {"repository": PUREJAXRL_URL, "commit": PUREJAXRL_COMMIT}, "runs": runs},
            "pendulum": pend, "method": __doc__.split("**(a) Brax, side by side.**")[1].split("Outputs:")[0].strip()}
    name = "ppo_continuous" + (".quick" if opts.quick else "")
    json_path, md_path = write_results(name, data, markdown(data))
    print(md_path.read_text())
    log(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
