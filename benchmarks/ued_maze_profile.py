"""Where a maze-curriculum update spends its time, and what fraction of the CPU's matrix rate each part reaches.

    python benchmarks/ued_maze_profile.py            # 8 and 32 envs x 256 steps -> results/ued_maze_profile.*
    python benchmarks/ued_maze_profile.py --quick    # 8 envs, short timing (smoke test)

The parts of one PLR⊥ replay update of the standard maze student (conv + LSTM 256, jaxued's PPO settings: 5
epochs of 1 minibatch), each jitted alone on the same data and timed (median of repetitions, compile excluded):

* ``collect``: the rollout, ``num_steps`` sequential steps of the policy (one LSTM step on ``N`` rows) and the
  maze (``ppo.collect``);
* ``values``: the values of the steps' final observations, one batched LSTM step over all ``T·N`` of them
  (``ppo.rollout_values``; truncation-aware GAE needs them);
* ``gae + scores``: GAE and the level scores (MaxMC and positive value loss);
* ``buffer``: writing the replayed slots' scores and sampling the next replay batch (4000 slots);
* ``ppo epoch``: one gradient step on the whole batch (forward and backward over ``T`` sequential LSTM steps,
  Adam), and ``learn``: the 5 epochs as the update runs them;
* ``update``: the whole ``Train.update`` (a replay cycle), for the sum check.

FLOPs are counted from the network's matrix shapes (conv, LSTM input and recurrent kernels, heads): ``f`` per
observation row forward; ``collect`` and ``values`` do ``T·N·f``, a PPO epoch ``3·T·N·f`` (the backward costs twice
the forward). The CPU's best rate is measured on the same shapes (XLA:CPU, all cores): the LSTM's recurrent
product at rollout width ``[N, 256] x [256, 1024]`` (what one sequential step can reach) and the batched
``[2048, 256] x [256, 1024]`` and ``[T·N, 256] x [256, 1024]``, each rate from its fastest repetition (a
ceiling); the fraction of the limit of a part is its GFLOP/s (median time) over the best of these rates.

A second table shows why ``jaxrl_self.nets.conv.PatchConv`` replaced ``flax.linen.Conv`` in the maze encoder: the
3x3 conv's forward + backward on the ``T·N`` observations, 5 times in a ``lax.scan`` (how PPO's epochs run it)
and 5 times unrolled.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    emit_result,
    fmt_ratio,
    jit_timed,
    log,
    machine_info,
    run_worker,
    timing_lock,
    utc_now,
    worker_env,
    worker_info,
    write_results,
)

NAME = "ued_maze_profile"


def worker(opts) -> None:
    import jaxrl_self  # noqa: F401  (XLA guard first)
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from jaxrl_self import envs
    from jaxrl_self.algos import ppo
    from jaxrl_self.curricula import common, plr
    from jaxrl_self.curricula.scores import compute_scores
    from jaxrl_self.nets.conv import PatchConv
    from ued_maze import speed_config

    n, t, lstm = opts.num_envs, opts.num_steps, 256
    bench = functools.partial(jit_timed, reps=opts.reps, min_rep_s=opts.min_rep_s)
    config = speed_config("robust_plr", n, t, lstm)
    env = envs.make("maze")
    # a replay cycle every update: replay_prob = 1 and (below) a buffer past minimum_fill_ratio
    replay_train = plr.make_train(config.replace(sampler=config.sampler.replace(replay_prob=1.0)), env)
    student = common.make_student(config, env, None, config.ppo.num_updates)
    sampler = plr.make_sampler(config)
    key = jax.random.key(0)
    params = common.init_params(student, key)
    opt_state = student.tx.init(params)
    levels = jax.vmap(common.level_generator(env, None))(jax.random.split(key, n))
    ro = jax.jit(lambda p, k, lv: common.rollout_on_levels(student, p, k, lv, t))(params, key, levels)
    batch = ro.batch()

    def collect(p, k, lv):
        k_reset, k_run = jax.random.split(k)
        start = common.start_on_levels(student, k_reset, lv)
        return ppo.collect(k_run, student.network, p, student.replay_env, student.env_params, start, t)[1]

    def gae_scores(traj, values, next_values):
        adv, targets = ppo.compute_advantages(student.config, traj, values, next_values)
        return compute_scores(config.score_function, traj.reward, values, traj.done, adv, None), targets

    # a buffer with 4000 filled slots: update the replayed slots' scores, then sample the next replay batch
    state = jax.jit(replay_train.init)(key)
    info = jax.tree.map(lambda x: x[0], common.level_info(env, levels))
    cap = config.sampler.capacity
    empty = sampler.initialize(jax.tree.map(lambda x: x[0], levels), info)
    stored = jax.vmap(common.level_generator(env, None))(jax.random.split(jax.random.key(5), cap))
    full = empty.replace(levels=stored, scores=jnp.linspace(0.0, 1.0, cap), max_returns=jnp.zeros(cap),
                         timestamps=jnp.arange(cap, dtype=empty.timestamps.dtype),
                         size=jnp.asarray(cap, empty.size.dtype), clock=jnp.asarray(cap, empty.clock.dtype))
    scores = jnp.linspace(0, 1, n)

    def buffer_ops(b, k):
        b = sampler.update_scores(b, jnp.arange(n), scores, scores, jnp.ones(n, bool))
        return sampler.sample_replay_levels(b, k, n)

    def epoch(p, o):
        grads = jax.grad(lambda q: ppo.ppo_loss(student.config, student.network, q, batch, ro.carry0)[0])(p)
        updates, o = student.tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o

    def learn(p, o, k):
        return ppo.learn(k, student.config, student.network, student.tx, p, o, batch, ro.carry0)[:2]

    replay_state = state.replace(buffer=full)

    parts = {
        "collect": bench(collect, params, key, levels),
        "values": bench(lambda p, tr: ppo.rollout_values(student.network, p, tr), params, ro.traj),
        "gae + scores": bench(gae_scores, ro.traj, ro.values, ppo.rollout_values(student.network, params, ro.traj)[1]),
        "buffer": bench(buffer_ops, full, key),
        "ppo epoch": bench(epoch, params, opt_state),
        "learn (all epochs)": bench(learn, params, opt_state, key),
        "update (replay cycle)": bench(lambda s: replay_train.update(s)[0], replay_state),
    }

    # FLOPs per observation row of the student's forward pass, from its parameter shapes
    shapes = jax.tree.map(jnp.shape, params)["params"]
    conv_k = shapes["encoder"]["conv"]["kernel"]  # (3, 3, C, F)
    img = tuple(ro.traj.obs["image"].shape[2:])  # (5, 5, 3)
    conv_out = (img[0] - conv_k[0] + 1) * (img[1] - conv_k[1] + 1)
    f = 2 * conv_out * conv_k[0] * conv_k[1] * conv_k[2] * conv_k[3]
    f += sum(2 * s["kernel"][0] * s["kernel"][1] for name, s in shapes["encoder"].items() if name != "conv")
    f += 2 * shapes["lstm"]["input"]["kernel"][0] * shapes["lstm"]["input"]["kernel"][1]
    f += 2 * shapes["lstm"]["recurrent_kernel"][0] * shapes["lstm"]["recurrent_kernel"][1]
    f += sum(2 * shapes[h]["kernel"][0] * shapes[h]["kernel"][1]
             for h in ("actor_hidden", "actor_out", "critic_hidden", "critic_out"))
    rows = t * n
    flops = {"collect": rows * f, "values": rows * f, "ppo epoch": 3 * rows * f,
             "learn (all epochs)": 3 * rows * f * config.ppo.update_epochs}

    # the CPU's best rate on the student's own matrix shapes
    hdim = shapes["lstm"]["recurrent_kernel"][0]
    rates = {}
    shapes_to_time = {f"recurrent step [{n},{hdim}]x[{hdim},{4 * hdim}] (in a scan of {t})": (n, hdim, 4 * hdim),
                      f"batched [2048,{hdim}]x[{hdim},{4 * hdim}]": (2048, hdim, 4 * hdim),
                      f"batched [{rows},{hdim}]x[{hdim},{4 * hdim}]": (rows, hdim, 4 * hdim)}
    for label, (m, k, c) in shapes_to_time.items():
        w = jax.random.normal(jax.random.key(1), (k, c))
        if label.startswith("recurrent"):  # sequential, as the rollout and the loss run it
            xs = jax.random.normal(jax.random.key(2), (t, m, k))
            r = bench(lambda w, xs: jax.lax.scan(lambda h, x: (jnp.tanh((x + h) @ w)[:, :k], None), xs[0], xs)[0], w, xs)
            rates[label] = 2 * t * m * k * c / r["min_s"] / 1e9  # the fastest repetition: a ceiling
        else:
            x = jax.random.normal(jax.random.key(2), (m, k))
            r = bench(lambda a, b: a @ b, x, w)
            rates[label] = 2 * m * k * c / r["min_s"] / 1e9
    best = max(rates.values())

    # the conv cliff: flax's Conv vs PatchConv, forward + backward 5 times in a scan / unrolled
    x = jnp.asarray(ro.traj.obs["image"], jnp.float32).reshape((-1,) + img)
    conv_rows = {}
    for label, module in {"flax.linen.Conv": nn.Conv(conv_k[3], conv_k[:2], padding="VALID"),
                          "PatchConv": PatchConv(conv_k[3], conv_k[0])}.items():
        cp = module.init(key, x[:1])

        def grad_loop(p, unroll, module=module):
            g = jax.grad(lambda q: jnp.sum(module.apply(q, x) ** 2))
            return jax.lax.scan(lambda q, _: (jax.tree.map(lambda a, b: a - 1e-6 * b, q, g(q)), None), p, None,
                                config.ppo.update_epochs, unroll=unroll)[0]

        conv_rows[label] = {"scan_s": bench(lambda p: grad_loop(p, 1), cp)["median_s"],
                            "unrolled_s": bench(lambda p: grad_loop(p, True), cp)["median_s"]}

    out = {"num_envs": n, "num_steps": t, "lstm": lstm, "flops_per_row_forward": f, "rates_gflops": rates,
           "best_gflops": best, "parts": {}, "conv": conv_rows,
           "worker": worker_info(("jax", "jaxlib", "flax", "optax", "numpy"))}
    for name, r in parts.items():
        row = dict(r)
        if name in flops:
            row["gflops"] = flops[name] / r["median_s"] / 1e9
            row["fraction_of_best"] = row["gflops"] / best
        out["parts"][name] = row
    emit_result(out)


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = ["# Where a maze-curriculum update spends its time", "",
             f"{m['cpu_model']}, {m['cpus_usable']} usable cores, load average {m['loadavg']} at the start "
             f"(git {str(m.get('git_commit'))[:8]}{' dirty' if m.get('git_dirty') else ''}), {data['created']}. "
             "Method: `benchmarks/ued_maze_profile.py` (module docstring).", ""]
    for r in data["rows"]:
        n, t = r["num_envs"], r["num_steps"]
        update = r["parts"]["update (replay cycle)"]["median_s"]
        lines += [f"## {n} envs x {t} steps (PLR⊥ replay cycle, LSTM {r['lstm']})", "",
                  "| part | ms | share of the update | GFLOP/s | fraction of the best rate |", "|---|---:|---:|---:|---:|"]
        for name, p in r["parts"].items():
            share = "-" if name.startswith("update") or name == "ppo epoch" else f"{p['median_s'] / update:.0%}"
            gf = f"{p['gflops']:.0f}" if "gflops" in p else "-"
            frac = f"{p['fraction_of_best']:.0%}" if "fraction_of_best" in p else "-"
            lines.append(f"| {name} | {p['median_s'] * 1e3:.0f} | {share} | {gf} | {frac} |")
        lines += ["", "Best rates on the student's own shapes (GFLOP/s): "
                  + "; ".join(f"{k}: {v:.0f}" for k, v in r["rates_gflops"].items())
                  + f". Forward FLOPs per observation row: {r['flops_per_row_forward'] / 1e3:.0f} k.", "",
                  "| 3x3 conv, forward + backward on the batch, 5 times | in a lax.scan (ms) | unrolled (ms) | "
                  "scan / unrolled |", "|---|---:|---:|---:|"]
        for name, c in r["conv"].items():
            lines.append(f"| {name} | {c['scan_s'] * 1e3:.0f} | {c['unrolled_s'] * 1e3:.0f} | "
                         f"{fmt_ratio(c['scan_s'] / c['unrolled_s'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--envs", type=int, nargs="*")
    parser.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--min-rep-s", type=float, default=1.0)
    opts = parser.parse_args(argv)
    if opts._worker:
        return worker(opts)
    widths = opts.envs or ([8] if opts.quick else [8, 32])
    rows = []
    for n in widths:
        log(f"[profile] {n} envs ...")
        with timing_lock(f"ued_maze_profile {n} envs") as lock:
            r = run_worker(sys.executable, __file__, ["--_worker", "--num-envs", n, "--num-steps", opts.num_steps,
                                                      "--reps", 2 if opts.quick else opts.reps,
                                                      "--min-rep-s", 0.2 if opts.quick else opts.min_rep_s],
                           env=worker_env(None), timeout=3600)
        r["timing"] = lock
        rows.append(r)
    data = {"benchmark": NAME, "created": utc_now(), "machine": machine_info(), "method": __doc__, "rows": rows}
    json_path, md_path = write_results(NAME + (".quick" if opts.quick else ""), data, markdown(data))
    print(md_path.read_text())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
