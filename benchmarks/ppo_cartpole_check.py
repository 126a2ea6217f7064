"""Quick check of our PPO on CartPole at PureJaxRL's default configuration, 8 seeds in one vmapped program.

    python benchmarks/ppo_cartpole_check.py [--seeds 8] [--timesteps 500000]

Prints the compile time (``jax.jit(...).lower(...).compile()``, timed on its own), the run time, environment
steps per second over all seeds, and per seed the final mean return: the mean return of the episodes that
finished during the last 10 updates (each episode weighs the same). Passing means >= 475 on at least 7 of 8
seeds. This is a sanity check, not the benchmark suite (which compares against peers side by side).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jaxrl_self  # noqa: F401  (import first: sets the XLA:CPU guard before JAX starts a backend)

import jax
import numpy as np

from jaxrl_self import envs, ppo

LAST_UPDATES = 10
THRESHOLD = 475.0


def final_returns(metrics: ppo.Metrics, last: int = LAST_UPDATES) -> np.ndarray:
    """Per seed: mean return of the episodes finished in the last ``last`` updates (metrics are ``[S, U]``)."""
    ret = np.asarray(metrics.episode_return, np.float64)[:, -last:]
    count = np.asarray(metrics.episodes_finished, np.float64)[:, -last:]
    return (ret * count).sum(1) / np.maximum(count.sum(1), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()

    config = ppo.Config(total_timesteps=args.timesteps)  # PureJaxRL's CartPole defaults otherwise
    train = ppo.make_train(config, envs.make("cartpole"))
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    program = jax.jit(jax.vmap(train))

    t0 = time.perf_counter()
    compiled = program.lower(keys).compile()
    compile_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    state, metrics = compiled(keys)
    jax.block_until_ready(metrics)
    run_s = time.perf_counter() - t0

    steps = args.seeds * train.num_updates * config.batch_size
    finals = final_returns(metrics)
    passed = int((finals >= THRESHOLD).sum())
    nonfinite = np.asarray(state.nonfinite_update)

    print(f"config: {args.seeds} seeds x {train.num_updates} updates x {config.num_envs} envs x {config.num_steps} "
          f"steps ({train.num_updates * config.batch_size} env steps per seed), one vmapped program")
    print(f"compile: {compile_s:.1f} s   run: {run_s:.1f} s   throughput: {steps / run_s:,.0f} env steps/s "
          f"(all seeds), {steps / run_s / args.seeds:,.0f} per seed")
    print(f"final mean return per seed (episodes of the last {LAST_UPDATES} updates): "
          + " ".join(f"{r:.1f}" for r in finals))
    print(f"seeds with return >= {THRESHOLD:.0f}: {passed}/{args.seeds}"
          + ("" if (nonfinite < 0).all() else f"   non-finite updates: {nonfinite.tolist()}"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, jax {jax.__version__}, "
          f"backend {jax.default_backend()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seeds": args.seeds, "timesteps": args.timesteps, "compile_s": compile_s, "run_s": run_s,
                       "env_steps_per_s": steps / run_s, "final_returns": finals.tolist(), "passed": passed,
                       "load_average": os.getloadavg()[0]}, f, indent=2)


if __name__ == "__main__":
    main()
