"""Throughput against device count: PPO (CartPole) and robust PLR (the maze) on a device mesh.

    python benchmarks/scaling.py                     # CPU: forced CPU devices 1, 2, 4 -> results/scaling.cpu.{json,md}
    python benchmarks/scaling.py --platform gpu --devices 1 2 4 8 --envs-per-device 1024   # a GPU machine

For each algorithm, mesh axis (``envs``: one run's environments split over the devices; ``seeds``: the seeds split)
and device count ``D``, one worker process (``XLA_FLAGS=--xla_force_host_platform_device_count=D`` on CPU) builds
the run with :class:`jaxrl_self.run.Runner` and ``RunOptions(mesh=...)``, compiles it, runs one warm-up chunk, then
times ``--reps`` chunks of ``--chunk-updates`` updates each (the figure is their median). **Weak scaling**: the
work grows with the devices (``envs-per-device * D`` environments on the ``envs`` axis, ``D`` seeds on the ``seeds``
axis), so perfect scaling is ``speed-up = D`` and ``efficiency = speed-up / D = 1``.

On this 2-core CPU the forced devices share the same two cores, so the figures show the cost of the mesh
(collectives, partitioned programs, one thread pool for all devices), not a speed-up: with two cores the best
possible speed-up is about 2 whatever ``D`` is. Run it on a GPU machine for the real curve.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _common as C  # noqa: E402

ALGOS = ("ppo", "robust_plr")


def worker(args) -> None:
    import jax

    import jaxrl_self  # noqa: F401
    from jaxrl_self import envs
    from jaxrl_self.run.runner import Runner, RunOptions

    d, axis = args.worker_devices, args.worker_axis
    n_envs = args.worker_envs or args.envs_per_device * (d if axis == "envs" else 1)
    seeds = d if axis == "seeds" else 1
    updates = args.chunk_updates * (args.reps + 1)
    if args.worker_algo == "ppo":
        from jaxrl_self.algos import ppo

        cfg = ppo.Config(num_envs=n_envs, num_steps=128, total_timesteps=n_envs * 128 * updates, num_minibatches=4,
                         update_epochs=4)
        train = ppo.make_train(cfg, envs.make("cartpole"))
    else:
        from jaxrl_self.curricula import common, robust_plr

        cfg = robust_plr.Config(ppo=common.student_ppo(num_envs=n_envs, num_steps=64,
                                                       total_timesteps=n_envs * 64 * updates),
                                eval_every=-1)
        train = robust_plr.make_train(cfg, envs.make("maze"))
    mesh = None if d == 1 else f"{axis}={d}"
    runner = Runner(train, RunOptions(seeds=seeds, checkpoint_every=args.chunk_updates, progress=False,
                                      keep_checkpoints=0, mesh=mesh), run_dir=False)
    timings = runner.compile()
    hlo = runner._compiled_chunk.as_text()  # what the partitioner added: collectives in one chunk program
    collectives = {op: len(re.findall(rf"[ }}]{op}(-start)?\(", hlo))
                   for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")}
    states = runner._compiled_init(runner._init_input())
    states, _ = runner._compiled_chunk(states, args.chunk_updates)  # warm-up
    jax.block_until_ready(states)
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        states, m = runner._compiled_chunk(states, args.chunk_updates)
        jax.block_until_ready((states, m))
        times.append(time.perf_counter() - t)
    steps = n_envs * seeds * (cfg.num_steps if hasattr(cfg, "num_steps") else cfg.ppo.num_steps) * args.chunk_updates
    C.emit_result({"algo": args.worker_algo, "axis": axis, "devices": d, "num_envs": n_envs, "seeds": seeds,
                   "env_steps_per_chunk": steps, "collectives": collectives, "chunk_s": times, "median_chunk_s": statistics.median(times),
                   "env_steps_per_s": steps / statistics.median(times), "compile_s": sum(timings.values()),
                   "device_kind": jax.devices()[0].device_kind, "jax_devices": jax.device_count(),
                   "worker": C.worker_info()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    p.add_argument("--axes", nargs="+", default=["envs", "seeds"], choices=["envs", "seeds"])
    p.add_argument("--envs-per-device", type=int, default=16)
    p.add_argument("--chunk-updates", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--platform", default="cpu")
    p.add_argument("--output", default=None, help="result name (default scaling.<platform>)")
    p.add_argument("--worker-algo", help=argparse.SUPPRESS)
    p.add_argument("--worker-axis", help=argparse.SUPPRESS)
    p.add_argument("--worker-devices", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-envs", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker_algo:
        return worker(args)

    start = time.perf_counter()
    rows = []
    # weak scaling on each axis, then strong scaling on the envs axis (one run of the largest batch, split further)
    plan = [(algo, axis, d, "weak", 0) for algo in args.algos for axis in args.axes for d in args.devices]
    if "envs" in args.axes:
        fixed = args.envs_per_device * max(args.devices)
        plan += [(algo, "envs", d, "strong", fixed) for algo in args.algos for d in args.devices]
    for algo, axis, d, scaling, fixed in plan:
        env = C.worker_env(args.platform)
        if args.platform == "cpu":
            env["XLA_FLAGS"] = (env["XLA_FLAGS"] + f" --xla_force_host_platform_device_count={d}").strip()
        what = f"{algo} {axis}={d} ({scaling})"
        C.log(f"[scaling] {what}")
        with C.timing_lock(what) as lock:
            row = C.run_worker(sys.executable, __file__, [
                "--worker-algo", algo, "--worker-axis", axis, "--worker-devices", d,
                "--envs-per-device", args.envs_per_device, "--chunk-updates", args.chunk_updates,
                "--reps", args.reps, "--worker-envs", fixed], env=env, timeout=1800)
        row["lock"] = dict(lock)
        row["scaling"] = scaling
        rows.append(row)
    for row in rows:
        base = next(r for r in rows if r["algo"] == row["algo"] and r["axis"] == row["axis"] and r["devices"] == 1
                    and r["scaling"] == row["scaling"])
        row["speedup"] = row["env_steps_per_s"] / base["env_steps_per_s"]
        row["efficiency"] = row["speedup"] / row["devices"]

    name = args.output or f"scaling.{args.platform}"
    cfg = {k: getattr(args, k) for k in ("devices", "algos", "axes", "envs_per_device", "chunk_updates", "reps",
                                         "platform")}
    lines = [f"# Throughput against device count ({args.platform})", "",
             f"Measured {C.utc_now()} by `benchmarks/scaling.py` on {C.machine_info().get('cpu_model', '?')}; weak scaling "
             f"({args.envs_per_device} environments per device on the envs axis, one seed per device on the seeds "
             f"axis), median of {args.reps} chunks of {args.chunk_updates} updates. PPO: CartPole, 128 steps, 4 epochs "
             "x 4 minibatches; PLR: robust PLR on the 13x13 maze, LSTM student, 64 steps.", ""]
    if args.platform == "cpu":
        lines += ["**CPU caveat**: the forced CPU devices share this machine's cores, so this shows the mesh's "
                  "overhead, not a speed-up (the ideal here is about min(D, cores)).", ""]
    lines += ["Weak scaling: the batch grows with the devices (ideal speed-up = devices). Strong scaling: one run of "
              f"{args.envs_per_device * max(args.devices)} environments split over more devices (ideal speed-up = "
              "devices). Load: the 1-minute load average before -> after the row (the forced devices' own threads "
              "count: with 4 devices the pool has cores + 4 threads).", "",
              "| algorithm | axis | scaling | devices | envs x seeds | env steps/s | speed-up | efficiency per device | "
              "all-reduce / all-gather ops | compile s | load 1 min |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['algo']} | {r['axis']} | {r['scaling']} | {r['devices']} | {r['num_envs']} x {r['seeds']} | "
                     f"{C.fmt_rate(r['env_steps_per_s'])} | {r['speedup']:.2f}x | {r['efficiency']:.2f} | "
                     f"{r['collectives']['all-reduce']} / {r['collectives']['all-gather']} | "
                     f"{r['compile_s']:.1f} | {r['lock']['load1_before']} -> {r['lock']['load1_after']} |")
    data = {"benchmark": "scaling", "machine": C.machine_info(), "config": cfg, "rows": rows}
    C.publish("scaling", name, data, "\n".join(lines), round(time.perf_counter() - start, 1))


if __name__ == "__main__":
    main()
