"""UED curricula on the maze: (a) training speed against jaxued, (b) held-out results of DR, PLR⊥ and ACCEL.

Usage::

    python benchmarks/ued_maze.py speed              # (a) ~25-40 min on a quiet 2-core CPU (compiles dominate)
    python benchmarks/ued_maze.py speed --cycle-costs --before REV   # + each cycle kind timed apart, + old code
    python benchmarks/ued_maze.py speed --quick      # smoke test: 8 envs, PLR⊥ only, short timing
    python benchmarks/ued_maze.py results            # (b) DR, PLR⊥, ACCEL, 3 seeds each, one after the other
    python benchmarks/ued_maze.py results --parallel # the same, the three at once (on a GPU)
    python benchmarks/ued_maze.py results --quick    # smoke test: tiny budget and agent
    python benchmarks/ued_maze.py table              # rewrite the markdown tables and plots from the JSON files

**(a) Speed.** Environment steps per second of a whole training update (rollout, scoring, buffer, PPO, level
statistics; compile time measured apart and excluded) for DR, robust PLR (PLR⊥), ACCEL and PAIRED with the
standard maze agent (conv + LSTM 256) at 8 and 32 environments x 256 steps, one seed, jaxued's hyper-parameters
(5 PPO epochs of 1 minibatch, buffer of 4000). Each measurement is a subprocess: ``Train.run`` over ``K``
updates is compiled once (``jax.jit(...).lower(...).compile()``, timed), ``W`` warm-up updates fill the buffer
past ``minimum_fill_ratio`` (0.02 here, so that replay cycles start within the warm-up: the timed updates are
the steady mix of 80% replay / 20% new cycles, with ACCEL's mutate cycles), then repetitions of ``K`` updates
are timed (median reported). Env steps per update: ``num_envs x num_steps`` (PAIRED: both students, jaxued's
count). The timing is of our default program (no held-out evaluation inside the timed window).

The cycle kind is random, so the few dozen timed cycles of a row hold a mix of cheap (new, mutate: no gradient)
and costly (replay: 5 PPO epochs) cycles that differs between runs and sides. ``--cycle-costs`` therefore also
times, on both sides, PLR⊥ and ACCEL with ``replay_prob`` forced to 0 (new cycles only) and to 1 (replay
cycles, and ACCEL's mutate after each, once the buffer is warm), and combines each side's two costs at the mix
the sampler converges to (:func:`expected_mix`; ACCEL 1/9 new, 4/9 replay, 4/9 mutate at p = 0.8): the
"expected cycle mix" table, the like-for-like comparison.

The peer is **jaxued from PyPI** (``Maze``, ``AutoReplayWrapper``, ``LevelSampler``, ``make_level_generator``,
``make_level_mutator_minimax``, ``max_mc``) in a training loop *of the same shape* as jaxued's
``examples/maze_plr.py`` (new / replay / mutate cycles under ``lax.switch``, its LSTM-256 ``ActorCritic`` built
on ``jaxued.linen.ResetRNN``, GAE, PPO with value clipping), written here because the example script is not in
the PyPI package (and needs wandb); it runs in its own venv (``benchmarks/.venvs/peers``, shared with
``env_throughput.py``) with the same XLA flags, timed the same way, with the same warm-up and branch mix. The
issue's anchor: jaxued's own ``maze_plr.py`` ran PLR at about 3.75k env steps/s with 8 envs x 256 steps on
this CPU.

**(b) Results.** ``jaxrl-self``'s runner trains DR, PLR⊥ and ACCEL (default configs: jaxued's
hyper-parameters, LSTM 256, 32 envs x 256 steps, 25-wall generator, MaxMC) for ``--steps-per-seed`` env steps
with ``--seeds`` seeds vmapped in one program, and evaluates on the held-out set (8 named mazes + 4 PerfectMaze
+ 4 FourRooms, 10 attempts each, 250 steps) every ``--eval-every`` updates inside the program. Run folders go
to ``runs/ued_maze/<method>`` (git-ignored; an interrupted method resumes from its last checkpoint); the final
held-out solved rates (mean and 95% t-interval over seeds) and the curves go to ``benchmarks/results/``.
The result file keeps each run's
curve (solved rate per evaluation with env steps and *student gradient updates*, which differ between methods:
PLR⊥ and ACCEL take no gradient on new or mutated levels), so ``table`` redraws everything from a clean clone.
Reference (dcd, 164M steps, 60 walls, mean over 12 mazes): DR 0.62, PLR⊥ 0.71, ACCEL 0.875.

Outputs: ``benchmarks/results/ued_maze_speed{,.quick}.{json,md}``, ``ued_maze_results{,.quick}.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import functools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO_ROOT,
    RESULTS_DIR,
    checkout,
    checkout_env,
    emit_result,
    ensure_venv,
    fmt_rate,
    fmt_ratio,
    log,
    machine_info,
    publish,
    run_worker,
    timing_lock,
    utc_now,
    worker_env,
    worker_info,
    write_results,
)

PEER_REQUIREMENTS = ("gymnax", "jaxued", "six")  # the venv of env_throughput.py
ANCHOR_JAXUED_PLR_8 = 3750.0  # env steps/s of jaxued's examples/maze_plr.py, 8 envs x 256 steps, this CPU
SPEED_METHODS = ("dr", "robust_plr", "accel", "paired")
RESULT_METHODS = ("dr", "robust_plr", "accel")
DEFAULT_REPLAY_PROB = 0.8  # jaxued's maze_plr.py and our PLR⊥ / ACCEL default
CYCLE_COST_METHODS = ("robust_plr", "accel")
PUBLISHED = {"dr": 0.62, "robust_plr": 0.71, "accel": 0.875}  # dcd, 164M steps, 60 walls, 12 mazes
LABELS = {"dr": "DR", "robust_plr": "PLR⊥", "accel": "ACCEL", "paired": "PAIRED", "plr": "PLR"}
RUNS_ROOT = REPO_ROOT / "runs" / "ued_maze"


# ============================================================================================ configs (shared)
def method_config(method: str, student: dict, sampler: dict | None = None, adversary: dict | None = None,
                  **top):
    """The method's default config (jaxued's settings) with ``student`` PPO fields, ``sampler`` fields (PLR
    family), ``adversary`` PPO fields (PAIRED) and top-level fields replaced."""
    from jaxrl_self import algos

    base = algos.get(method).Config()
    changes = dict(top, ppo=base.ppo.replace(**student))
    if sampler and hasattr(base, "sampler"):
        changes["sampler"] = base.sampler.replace(**sampler)
    if adversary and hasattr(base, "adversary"):
        changes["adversary"] = base.adversary.replace(ppo=base.adversary.ppo.replace(**adversary))
    return base.replace(**changes)


def speed_config(method: str, num_envs: int, num_steps: int, lstm: int, replay_prob: float | None = None):
    """The config of the speed runs (everything else: the method's defaults = jaxued's). ``replay_prob`` (PLR
    family) forces the cycle kind for the cycle-cost runs: 0 gives only new-level cycles, 1 only replay (and
    ACCEL's mutate) cycles once the buffer holds its minimum fill."""
    student = dict(num_envs=num_envs, num_steps=num_steps, total_timesteps=10**9, lstm_features=lstm)
    sampler = dict(minimum_fill_ratio=0.02) if method in ("robust_plr", "accel", "plr") else None
    if sampler is not None and replay_prob is not None:
        sampler["replay_prob"] = replay_prob
    return method_config(method, student, sampler, dict(lstm_features=lstm), eval_every=0)


# ============================================================================================ (a) speed: workers
def _timed_updates(run_k, state, warmup_calls: int, reps: int, min_rep_s: float):
    """Warm up, then time calls of ``run_k`` (K updates each) that carry the state forward."""
    from _common import time_calls
    import jax

    holder = [state]

    def call():
        holder[0], metrics = run_k(holder[0])
        return metrics

    for _ in range(warmup_calls):
        jax.block_until_ready(call())
    branches = []

    def recorded():
        m = call()
        if hasattr(m, "branch"):
            branches.append(jax.device_get(m.branch))
        return m

    cpu0 = time.process_time()
    timed = time_calls(recorded, reps=reps, min_rep_s=min_rep_s)
    cpu = time.process_time() - cpu0  # this process's CPU time (all threads) over every call time_calls made
    cpu_s_per_call = cpu / (2 + reps * timed.calls_per_rep)  # its warm-up and calibration calls included
    return holder[0], timed, branches, cpu_s_per_call


def worker_speed_ours(args) -> None:
    import jaxrl_self  # noqa: F401  (XLA guard first)
    import jax
    import numpy as np
    from _common import compile_timed, worker_info

    from jaxrl_self import algos, envs
    from jaxrl_self.run.checkpoint import config_to_dict

    module = algos.get(args.method)
    config = speed_config(args.method, args.num_envs, args.num_steps, args.lstm, args.replay_prob)
    train = module.make_train(config, envs.make("maze"))
    state = jax.jit(train.init)(jax.random.key(0))
    run_k = functools.partial(train.run, num_updates=args.k)
    compiled, lower_s, compile_s = compile_timed(run_k, state)
    s0 = int(state.env_steps)
    state, timed, branches, cpu_s = _timed_updates(compiled, state, args.warmup_calls, args.reps, args.min_rep_s)
    steps_per_update = (int(state.env_steps) - s0) / int(state.update_step)
    rate = args.k * steps_per_update / timed.median_s
    mix = None
    if branches:
        b = np.concatenate([np.ravel(x) for x in branches])
        mix = {name: float(np.mean(b == i)) for i, name in enumerate(("new", "replay", "mutate"))}
    emit_result({"impl": "jaxrl_self", "method": args.method, "num_envs": args.num_envs, "num_steps": args.num_steps,
                 "lstm": args.lstm, "updates_per_call": args.k, "env_steps_per_update": steps_per_update,
                 "lower_s": lower_s, "compile_s": compile_s, "seconds_per_call": timed.seconds_per_call,
                 "calls_per_rep": timed.calls_per_rep, "env_steps_per_s": rate,
                 "cpu_s_per_call": cpu_s, "env_steps_per_cpu_s": args.k * steps_per_update / cpu_s, "branch_mix": mix,
                 "config": config_to_dict(config),
                 "worker": worker_info(("jax", "jaxlib", "flax", "optax", "numpy"))})


def worker_speed_jaxued(args) -> None:
    """jaxued (PyPI) Maze + LevelSampler in a PLR/ACCEL loop of the shape of jaxued's examples/maze_plr.py."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    if not hasattr(jax, "tree_map"):  # jaxued 0.0.1 calls jax.tree_map, removed in jax 0.6
        jax.tree_map = jax.tree.map
    import flax.linen as nn
    import optax
    from flax.linen.initializers import constant, orthogonal
    from flax.training.train_state import TrainState
    from jaxued.environments import Maze
    from jaxued.environments.maze import make_level_generator, make_level_mutator_minimax
    from jaxued.level_sampler import LevelSampler
    from jaxued.linen import ResetRNN
    from jaxued.utils import compute_max_returns, max_mc
    from jaxued.wrappers import AutoReplayWrapper
    from _common import compile_timed, worker_info

    n, t, lstm, use_accel = args.num_envs, args.num_steps, args.lstm, args.method == "accel"
    epochs, minibatches, gamma, lam, clip, ent, vf, lr = 5, 1, 0.995, 0.98, 0.2, 1e-3, 0.5, 1e-4
    base = Maze(max_height=13, max_width=13, agent_view_size=5, normalize_obs=True)
    env = AutoReplayWrapper(base)
    params = env.default_params
    generate = make_level_generator(13, 13, 25)
    mutate = make_level_mutator_minimax(100)
    replay_prob = DEFAULT_REPLAY_PROB if args.replay_prob is None else args.replay_prob
    sampler = LevelSampler(capacity=4000, replay_prob=replay_prob, staleness_coeff=0.3, minimum_fill_ratio=0.02,
                           prioritization="rank", prioritization_params={"temperature": 0.3, "k": 4},
                           duplicate_check=True)
    num_actions = env.action_space(params).n

    class ActorCritic(nn.Module):  # jaxued's maze agent: conv16, direction embedding, LSTM, 32-unit heads
        @nn.compact
        def __call__(self, inputs, hidden):
            obs, dones = inputs
            x = nn.relu(nn.Conv(16, (3, 3), padding="VALID")(obs.image))
            x = x.reshape(*x.shape[:-3], -1)
            d = nn.Dense(5, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(
                jax.nn.one_hot(obs.agent_dir, 4))
            hidden, h = ResetRNN(nn.OptimizedLSTMCell(features=lstm))((jnp.append(x, d, axis=-1), dones),
                                                                       initial_carry=hidden)
            logits = nn.Dense(num_actions, kernel_init=orthogonal(0.01))(
                nn.relu(nn.Dense(32, kernel_init=orthogonal(2))(h)))
            value = nn.Dense(1, kernel_init=orthogonal(1.0))(nn.relu(nn.Dense(32, kernel_init=orthogonal(2))(h)))
            return hidden, logits, value[..., 0]

    net = ActorCritic()

    def zero_carry():
        return nn.OptimizedLSTMCell(features=lstm).initialize_carry(jax.random.PRNGKey(0), (n, lstm))

    def rollout(rng, ts, levels):
        rng, rng_reset = jax.random.split(rng)
        obs, state = jax.vmap(env.reset_to_level, (0, 0, None))(jax.random.split(rng_reset, n), levels, params)

        def step(carry, _):
            rng, h, obs, state, last_done = carry
            rng, k_act, k_step = jax.random.split(rng, 3)
            h, logits, value = ts.apply_fn(ts.params, jax.tree.map(lambda x: x[None], (obs, last_done)), h)
            action = jax.random.categorical(k_act, logits[0])
            logp = jax.nn.log_softmax(logits[0])[jnp.arange(n), action]
            nobs, nstate, reward, done, _ = jax.vmap(env.step, (0, 0, 0, None))(
                jax.random.split(k_step, n), state, action, params)
            return (rng, h, nobs, nstate, done), (obs, action, reward, done, logp, value[0])

        (rng, h, obs, _, last_done), traj = jax.lax.scan(
            step, (rng, zero_carry(), obs, state, jnp.zeros(n, bool)), None, length=t)
        _, _, last_value = ts.apply_fn(ts.params, jax.tree.map(lambda x: x[None], (obs, last_done)), h)
        return rng, traj, last_value[0]

    def gae(last_value, values, rewards, dones):
        def back(carry, x):
            adv, next_value = carry
            value, reward, done = x
            delta = reward + gamma * next_value * (1 - done) - value
            adv = delta + gamma * lam * (1 - done) * adv
            return (adv, value), adv

        _, adv = jax.lax.scan(back, (jnp.zeros_like(last_value), last_value), (values, rewards, dones),
                              reverse=True)
        return adv, adv + values

    def ppo(rng, ts, traj, adv, targets, apply):
        obs, actions, _, dones, logp_old, values = traj
        first = jnp.roll(dones, 1, axis=0).at[0].set(False)

        def loss_fn(p):
            _, logits, v = ts.apply_fn(p, (obs, first), zero_carry())
            logp_all = jax.nn.log_softmax(logits)
            logp = jnp.take_along_axis(logp_all, actions[..., None], -1)[..., 0]
            entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
            ratio = jnp.exp(logp - logp_old)
            a = (adv - adv.mean()) / (adv.std() + 1e-5)
            l_clip = -jnp.minimum(ratio * a, jnp.clip(ratio, 1 - clip, 1 + clip) * a).mean()
            v_clip = values + (v - values).clip(-clip, clip)
            l_vf = 0.5 * jnp.maximum((v - targets) ** 2, (v_clip - targets) ** 2).mean()
            return l_clip + vf * l_vf - ent * entropy

        def epoch(ts, _):  # num_minibatches = 1: the whole batch of sequences
            grads = jax.grad(loss_fn)(ts.params)
            new = ts.apply_gradients(grads=grads)
            return jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, ts), None

        ts, _ = jax.lax.scan(epoch, ts, None, epochs)
        return ts

    @jax.jit
    def create(rng):
        level = generate(rng)
        obs, _ = env.reset_to_level(rng, level, params)
        obs = jax.tree.map(lambda x: jnp.repeat(x[None, None], n, axis=1), obs)
        p = net.init(rng, (obs, jnp.zeros((1, n), bool)), zero_carry())
        schedule = lambda c: lr * (1.0 - (c // (minibatches * epochs)) / 10**6)  # noqa: E731
        tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(learning_rate=schedule, eps=1e-5))
        ts = TrainState.create(apply_fn=net.apply, params=p, tx=tx)
        buf = sampler.initialize(level, {"max_return": -jnp.inf})
        last = jax.tree.map(lambda x: jnp.repeat(jnp.asarray(x)[None], n, axis=0), level)
        return ts, buf, jnp.int32(0), last

    def cycle(carry, _):
        rng, ts, buf, last_kind, last_replay = carry
        rng, k_decide, k_levels = jax.random.split(rng, 3)

        def on_new(rng, ts, buf, last_replay):
            levels = jax.vmap(generate)(jax.random.split(k_levels, n))
            rng, traj, last_v = rollout(rng, ts, levels)
            adv, targets = gae(last_v, traj[5], traj[2], traj[3])
            max_ret = compute_max_returns(traj[3], traj[2])
            buf, _ = sampler.insert_batch(buf, levels, max_mc(traj[3], traj[5], max_ret), {"max_return": max_ret})
            ts = ppo(rng, ts, traj, adv, targets, False)  # robust: losses computed, no update (as jaxued)
            return rng, ts, buf, jnp.int32(0), last_replay

        def on_replay(rng, ts, buf, last_replay):
            buf, (idx, levels) = sampler.sample_replay_levels(buf, k_levels, n)
            rng, traj, last_v = rollout(rng, ts, levels)
            adv, targets = gae(last_v, traj[5], traj[2], traj[3])
            max_ret = jnp.maximum(sampler.get_levels_extra(buf, idx)["max_return"],
                                  compute_max_returns(traj[3], traj[2]))
            buf = sampler.update_batch(buf, idx, max_mc(traj[3], traj[5], max_ret), {"max_return": max_ret})
            ts = ppo(rng, ts, traj, adv, targets, True)
            return rng, ts, buf, jnp.int32(1), levels

        def on_mutate(rng, ts, buf, last_replay):
            levels = jax.vmap(mutate, (0, 0, None))(jax.random.split(k_levels, n), last_replay, 5)
            rng, traj, last_v = rollout(rng, ts, levels)
            adv, targets = gae(last_v, traj[5], traj[2], traj[3])
            max_ret = compute_max_returns(traj[3], traj[2])
            buf, _ = sampler.insert_batch(buf, levels, max_mc(traj[3], traj[5], max_ret), {"max_return": max_ret})
            ts = ppo(rng, ts, traj, adv, targets, False)
            return rng, ts, buf, jnp.int32(2), last_replay

        replay = sampler.sample_replay_decision(buf, k_decide).astype(jnp.int32)
        kind = jnp.where(last_kind == 1, 2, replay) if use_accel else replay
        rng, ts, buf, kind, last_replay = jax.lax.switch(kind, [on_new, on_replay, on_mutate], rng, ts, buf,
                                                         last_replay)
        return (rng, ts, buf, kind, last_replay), kind

    ts, buf, kind, last = create(jax.random.PRNGKey(0))
    state = (jax.random.PRNGKey(1), ts, buf, kind, last)
    run_k = lambda s: jax.lax.scan(cycle, s, None, args.k)  # noqa: E731
    compiled, lower_s, compile_s = compile_timed(run_k, state)

    M = collections.namedtuple("M", ["branch"])  # the branch record the timing helper looks for

    wrapped = lambda s: (lambda out: (out[0], M(out[1])))(compiled(s))  # noqa: E731
    state, timed, branches, cpu_s = _timed_updates(wrapped, state, args.warmup_calls, args.reps, args.min_rep_s)
    b = np.concatenate([np.ravel(x) for x in branches])
    emit_result({"impl": "jaxued", "method": args.method, "num_envs": n, "num_steps": t, "lstm": lstm,
                 "updates_per_call": args.k, "env_steps_per_update": n * t, "lower_s": lower_s,
                 "compile_s": compile_s, "seconds_per_call": timed.seconds_per_call,
                 "calls_per_rep": timed.calls_per_rep, "env_steps_per_s": args.k * n * t / timed.median_s,
                 "cpu_s_per_call": cpu_s, "env_steps_per_cpu_s": args.k * n * t / cpu_s,
                 "branch_mix": {name: float(np.mean(b == i)) for i, name in enumerate(("new", "replay", "mutate"))},
                 "worker": worker_info(("jax", "jaxlib", "flax", "optax", "numpy", "jaxued"))})


# ============================================================================================ (a) speed: orchestrator
def _speed_rows(opts, envs_list, methods, peers, peer_python, env, before) -> list[dict]:
    """One timed worker per (width, method, implementation), one at a time under the timing lock."""
    rows = []
    for num_envs in envs_list:
        for method in methods:
            if method == "paired":  # ~10 s an update on 2 cores (its 16M-parameter adversary); no buffer to fill
                k = opts.k or (2 if num_envs <= 8 else 1)
                warm = 2
            else:  # enough warm-up updates to fill the level buffer past minimum_fill_ratio
                k = opts.k or (4 if opts.quick else (10 if num_envs <= 8 else 4))
                warm = 2 if opts.quick else max(2, math.ceil((16 if num_envs <= 8 else 6) / k))
            common_args = ["--num-envs", num_envs, "--num-steps", opts.num_steps, "--lstm", opts.lstm, "--k", k,
                           "--warmup-calls", warm, "--reps", 2 if opts.quick else 3,
                           "--min-rep-s", 1.0 if opts.quick else 5.0]
            jobs = [("jaxrl_self", sys.executable, __file__, "_speed_ours", env)]
            if before is not None:  # the same worker, from a checkout of the code before the change
                jobs.append(("jaxrl_self_before", sys.executable, before[0] / "benchmarks" / Path(__file__).name,
                             "_speed_ours", checkout_env(env, before[0])))
            if method in peers:
                jobs.append(("jaxued", peer_python, __file__, "_speed_jaxued", env))
            jobs = [(*job, None) for job in jobs]
            if opts.cycle_costs and method in CYCLE_COST_METHODS:  # each cycle kind apart, ours and the peer's
                for forced in (0.0, 1.0):
                    jobs.append(("jaxrl_self", sys.executable, __file__, "_speed_ours", env, forced))
                    if method in peers:
                        jobs.append(("jaxued", peer_python, __file__, "_speed_jaxued", env, forced))
            for impl, python, script, worker, worker_env_, forced in jobs:
                extra = [] if forced is None else ["--replay-prob", forced]
                what = f"{impl} {method} {num_envs} envs" + ("" if forced is None else f" replay_prob {forced:g}")
                log(f"[speed] {what} x {opts.num_steps} steps ...")
                with timing_lock(f"ued_maze speed {what}") as lock:
                    try:
                        r = run_worker(python, script, [worker, "--method", method, *common_args, *extra],
                                       env=worker_env_, timeout=3600)
                    except Exception as e:  # keep the other measurements
                        log(f"[speed] {impl} {method} failed: {e}")
                        r = {"impl": impl, "method": method, "num_envs": num_envs, "error": str(e)[-2000:]}
                r["timing"] = lock
                r["impl"] = impl
                if forced is not None:
                    r["forced_replay_prob"] = forced
                if impl == "jaxrl_self_before":
                    r["commit"] = before[1]
                rows.append(r)
                if "env_steps_per_s" in r:
                    log(f"[speed]   {fmt_rate(r['env_steps_per_s'])} env steps/s (compile {r['compile_s']:.0f} s)")
    return rows


def cmd_speed(opts) -> None:
    name = "ued_maze_speed" + (".quick" if opts.quick else "")
    envs_list = opts.envs or ([8] if opts.quick else [8, 32])
    methods = opts.methods or (["robust_plr"] if opts.quick else list(SPEED_METHODS))
    peers = [] if opts.no_peer else [m for m in methods if m in ("robust_plr", "accel")]
    peer_python = ensure_venv("peers", list(PEER_REQUIREMENTS)) if peers else None
    env = worker_env(None)  # the same XLA_FLAGS (guard flag included) for ours and the peer
    with contextlib.ExitStack() as stack:
        before = stack.enter_context(checkout(opts.before)) if opts.before else None
        rows = _speed_rows(opts, envs_list, methods, peers, peer_python, env, before)
    data = {"benchmark": "ued_maze_speed", "created": utc_now(), "machine": machine_info(),
            "anchor": {"jaxued_examples_maze_plr_8x256_env_steps_per_s": ANCHOR_JAXUED_PLR_8,
                       "target": ">= 1.5x the anchor for PLR at 8 envs x 256 steps"},
            "method": __doc__.split("**(a) Speed.**")[1].split("**(b)")[0].strip(), "rows": rows}
    earlier = RESULTS_DIR / f"{name}.json"
    if opts.merge and earlier.exists():  # keep the earlier rows that this run did not measure again
        old = json.loads(earlier.read_text())
        key = lambda r: (r["impl"], r["method"], r["num_envs"], r.get("forced_replay_prob"))  # noqa: E731
        measured = {key(r) for r in rows}
        kept = [dict(r, run=old["created"]) for r in old["rows"] if key(r) not in measured]
        data["rows"] = kept + rows
        data["earlier_runs"] = [{"created": old["created"], "machine": old["machine"], "rows_kept": len(kept)},
                                *old.get("earlier_runs", [])]
    costs = cycle_costs(data["rows"])
    if costs:
        data["cycle_costs"] = [dict(v, method=m, num_envs=n) for (m, n), v in costs.items()]
    json_path, md_path = write_results(name, data, speed_markdown(data))
    print(md_path.read_text())
    log(f"[speed] wrote {json_path} and {md_path}")


def speed_markdown(data: dict) -> str:
    rows = [r for r in data["rows"] if r.get("forced_replay_prob") is None]
    ours = {(r["method"], r["num_envs"]): r for r in rows if r.get("impl") == "jaxrl_self"}
    peer = {(r["method"], r["num_envs"]): r for r in rows if r.get("impl") == "jaxued"}
    before = {(r["method"], r["num_envs"]): r for r in rows if r.get("impl") == "jaxrl_self_before"}
    before_rev = next((str(r.get("commit", "?"))[:8] for r in before.values()), "")
    m = data["machine"]
    lines = ["# UED maze training speed: jaxrl_self vs jaxued", "",
             f"{m['cpu_model']}"
             + (f" ({' '.join(m['cpu_vector_features'])})" if m.get("cpu_vector_features") else "")
             + f", {m['cpus_usable']} usable cores, load average {m['loadavg']} at the start "
             f"(git {str(m.get('git_commit'))[:8]}{' dirty' if m.get('git_dirty') else ''}), {data['created']}"
             + "".join(f"; {e['rows_kept']} rows kept from the run of {e['created']} (load {e['machine']['loadavg']})"
                       for e in data.get("earlier_runs", [])) + ".", "",
             "Env steps per second of whole training updates (one seed, compile excluded; median of the timed "
             "repetitions). Standard maze agent (LSTM "
             f"{next(iter(ours.values()), {}).get('lstm', 256)}), jaxued's PPO settings (5 epochs x 1 minibatch).",
             "", "| method | envs x steps | jaxrl_self | jaxued (PyPI, same loop shape) | ratio | ratio of steps per "
             "CPU-second | vs anchor 3.75k | compile (ours) | cycle mix (new/replay/mutate) "
             + (f"| before ({before_rev}) | after / before " if before else "") + "|",
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if before else "")]
    for (method, n), r in sorted(ours.items(), key=lambda kv: (kv[0][1], SPEED_METHODS.index(kv[0][0])
                                                                if kv[0][0] in SPEED_METHODS else 9)):
        if "env_steps_per_s" not in r:
            lines.append(f"| {LABELS.get(method, method)} | {n} x ? | failed | | | | | | |" + ("  |  |" if before else ""))
            continue
        p = peer.get((method, n), {})
        ratio = r["env_steps_per_s"] / p["env_steps_per_s"] if "env_steps_per_s" in p else None
        cpu_ratio = (r["env_steps_per_cpu_s"] / p["env_steps_per_cpu_s"]
                     if "env_steps_per_cpu_s" in p and "env_steps_per_cpu_s" in r else None)
        anchor = r["env_steps_per_s"] / ANCHOR_JAXUED_PLR_8 if method in ("robust_plr", "plr") and n == 8 else None
        mix_s = _mix(r.get("branch_mix")) + (f" (jaxued {_mix(p['branch_mix'])})" if p.get("branch_mix") else "")
        lines.append(f"| {LABELS.get(method, method)} | {n} x {r['num_steps']} | {fmt_rate(r['env_steps_per_s'])} "
                     f"| {fmt_rate(p.get('env_steps_per_s'))} | {fmt_ratio(ratio)} | {fmt_ratio(cpu_ratio)} "
                     f"| {fmt_ratio(anchor)} "
                     f"| {r['compile_s']:.0f} s | {mix_s} |" + (_before_cells(r, before.get((method, n))) if before else ""))
    lines += ["", "PAIRED counts the steps of both students per update (jaxued's count). The jaxued column runs "
              "jaxued's PyPI environment, wrapper and level sampler in a loop written here with the shape of its "
              "examples/maze_plr.py (that script is not in the PyPI package). On no-gradient cycles it writes the PPO "
              "epochs' result through a select on a constant False, as that script does, which XLA can remove as dead "
              "code (its ACCEL, with fewer gradient cycles, runs faster than its PLR⊥), so neither side pays for PPO "
              "there. 'vs anchor' divides by 3.75k env steps/s, jaxued's own "
              "maze_plr.py (PLR, 8 x 256) measured earlier on this CPU. The CPU-second ratio compares env steps per "
              "second of process CPU time (all threads), which a shared machine disturbs less than wall time."]
    if before:
        lines += ["", f"'before' is the same worker run from a git checkout of {before_rev} (the code before the change "
                  "being measured) in the same job, one row after the other under the same lock."]
    costs = cycle_costs(data["rows"])
    if costs:
        lines += ["", "## At the expected cycle mix", "",
                  "The cycle kind is drawn at random (replay with probability p = 0.8 once the buffer holds its minimum "
                  "fill; ACCEL mutates after every replay), so the few dozen cycles a row above times hold a mix that "
                  "differs from run to run and from side to side, and a replay cycle (5 PPO epochs) costs several "
                  "times a new or mutate cycle (no gradient). Here each side's cycle kinds are timed apart, with p "
                  "forced to 0 (new cycles only) and to 1 (replay cycles, and ACCEL's mutate cycles after them, once "
                  "the buffer is warm), and combined at the mix the sampler converges to: PLR⊥ new 1 - p, replay p; "
                  "ACCEL new (1 - p)/(1 + p), replay and mutate p/(1 + p) each. Seconds per cycle; the env steps per "
                  "second divide a cycle's num_envs x num_steps by its expected time.", "",
                  "| method | envs x steps | expected mix (new/replay/mutate) | ours: new, other cycle (s) "
                  "| jaxued: new, other cycle (s) | jaxrl_self | jaxued | ratio |", "|---|---|---|---|---|---:|---:|---:|"]
        for (method, n), c in sorted(costs.items(), key=lambda kv: (kv[0][1], SPEED_METHODS.index(kv[0][0]))):
            o, p = c["jaxrl_self"], c.get("jaxued")
            peer_s = f"{p['new_s']:.3f}, {p['other_s']:.3f}" if p else "-"
            lines.append(f"| {LABELS.get(method, method)} | {n} x {c['num_steps']} | {_mix(c['mix'])} "
                         f"| {o['new_s']:.3f}, {o['other_s']:.3f} | {peer_s} "
                         f"| {fmt_rate(o['env_steps_per_s'])} | {fmt_rate(p['env_steps_per_s']) if p else '-'} "
                         f"| {fmt_ratio(c.get('ratio'))} |")
    return "\n".join(lines)


def expected_mix(method: str, replay_prob: float) -> dict:
    """The fractions of cycle kinds the sampler converges to (the stationary mix of its Markov chain)."""
    if method == "accel":  # after a replay always a mutate; otherwise replay with probability p
        return {"new": (1 - replay_prob) / (1 + replay_prob), "replay": replay_prob / (1 + replay_prob),
                "mutate": replay_prob / (1 + replay_prob)}
    return {"new": 1 - replay_prob, "replay": replay_prob, "mutate": 0.0}


def cycle_costs(rows: list[dict]) -> dict:
    """Per (method, envs): each side's seconds per new cycle (the p = 0 row) and per other cycle (the p = 1 row,
    minus any new cycles it still held, by their measured cost), and its env steps per second at the expected mix."""
    forced = {(r["impl"], r["method"], r["num_envs"], r["forced_replay_prob"]): r for r in rows
              if r.get("forced_replay_prob") is not None and "env_steps_per_s" in r}
    out = {}
    for (impl, method, n, p), r0 in forced.items():
        r1 = forced.get((impl, method, n, 1.0))
        if p != 0.0 or r1 is None:
            continue
        steps = r0["env_steps_per_update"]
        new_s = steps / r0["env_steps_per_s"]
        t1 = steps / r1["env_steps_per_s"]
        stray = (r1.get("branch_mix") or {}).get("new", 0.0)  # new cycles before the buffer was warm
        other_s = (t1 - stray * new_s) / (1 - stray)
        mix = expected_mix(method, DEFAULT_REPLAY_PROB)
        expected_s = mix["new"] * new_s + (1 - mix["new"]) * other_s
        entry = out.setdefault((method, n), {"num_steps": r0["num_steps"], "mix": mix})
        entry[impl] = {"new_s": new_s, "other_s": other_s, "stray_new": stray, "expected_s": expected_s,
                       "env_steps_per_s": steps / expected_s}
    for entry in out.values():
        if "jaxued" in entry and "jaxrl_self" in entry:
            entry["ratio"] = entry["jaxrl_self"]["env_steps_per_s"] / entry["jaxued"]["env_steps_per_s"]
    return {k: v for k, v in out.items() if "jaxrl_self" in v}


def _mix(mix: dict | None) -> str:
    return "/".join(f"{mix[k]:.2f}" for k in ("new", "replay", "mutate")) if mix else "-"


def _before_cells(after: dict, before: dict | None) -> str:
    if not before or "env_steps_per_s" not in before:
        return " failed | |" if before else " - | - |"
    return f" {fmt_rate(before['env_steps_per_s'])} | {fmt_ratio(after['env_steps_per_s'] / before['env_steps_per_s'])} |"


# ============================================================================================ (b) results
def results_config(method: str, quick: bool, steps_per_seed: int, eval_every: int):
    if quick:
        return method_config(method, dict(total_timesteps=steps_per_seed, num_envs=8, num_steps=64, lstm_features=32),
                             dict(capacity=256), eval_every=eval_every, eval_attempts=2, eval_procedural=2)
    return method_config(method, dict(total_timesteps=steps_per_seed), eval_every=eval_every)


def worker_results(args) -> None:
    import jaxrl_self  # noqa: F401
    import numpy as np

    from jaxrl_self import algos
    from jaxrl_self.run.checkpoint import config_to_dict
    from jaxrl_self.run.runner import RunOptions, run_training

    module = algos.get(args.method)
    config = results_config(args.method, args.quick, args.steps_per_seed, args.eval_every)
    run_dir = Path(args.run_dir)
    resume = (run_dir / "checkpoints").exists()
    options = RunOptions(seeds=args.seeds, seed=args.seed, chunks=args.chunks, keep_checkpoints=1, progress=False,
                         run_dir=str(run_dir), resume=resume)
    t = time.perf_counter()
    result = run_training(module, "maze", config, options)
    wall = time.perf_counter() - t
    from jaxrl_self.run.report import after_training

    lines = after_training(result)
    final = json.loads((run_dir / "heldout.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    emit_result({"method": args.method, "config": config_to_dict(config), "seeds": args.seeds,
        "wall_s": wall, "resumed": resume, "summary": summary, "heldout": final, "report": lines,
        "run_dir": _rel(run_dir), "worker": worker_info(), "num_updates": int(np.asarray(result.states.update_step).max()) if result.states
        is not None else None})


def _curve(run_dir: Path) -> dict:
    """Held-out solved rate over training from a run folder's ``metrics.jsonl``, kept in the result JSON so that
    tables and plots can be redrawn from a clean clone: per evaluation, the update, env steps and *student
    gradient updates* so far (PLR⊥ and ACCEL take no gradient on new / mutated levels), and the named-maze
    solved rate of every seed."""
    sys.path.insert(0, str(REPO_ROOT))
    from jaxrl_self.run.metrics import MEAN_SEED, read_jsonl

    rows = [x for x in read_jsonl(Path(run_dir) / "metrics.jsonl") if x.get("seed") != MEAN_SEED]
    seeds = sorted({x["seed"] for x in rows})
    grads = {s: 0 for s in seeds}
    by_update: dict[int, dict] = {}
    for x in sorted(rows, key=lambda x: (x["update"], x["seed"])):
        grads[x["seed"]] += 1 if x.get("grad_applied", True) else 0
        if x.get("eval_valid"):
            e = by_update.setdefault(x["update"], {"update": x["update"], "env_steps": x["env_steps"],
                                                   "grad_updates": [], "solved_rate_named": []})
            e["grad_updates"].append(grads[x["seed"]])
            e["solved_rate_named"].append(x["eval.solved_rate_named"])
    return {"seeds": seeds, "grad_updates_final": [grads[s] for s in seeds], "evals": list(by_update.values())}


def _rel(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (result files must not name one machine's paths)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def cmd_results(opts) -> None:
    name = "ued_maze_results" + (".quick" if opts.quick else "")
    methods = opts.methods or list(RESULT_METHODS)
    steps = opts.steps_per_seed or (8 * 64 * 12 if opts.quick else 3_000_000)
    eval_every = opts.eval_every or (4 if opts.quick else 25)
    root = RUNS_ROOT / ("quick" if opts.quick else "full")
    env = worker_env(None)
    if opts.parallel and len(methods) > 1:  # several processes on one accelerator: split its memory
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / len(methods):.2f}")

    def one(method: str) -> dict:
        run_dir = root / method
        if opts.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        log(f"[results] {method}: {opts.seeds} seeds x {steps:,} env steps -> {run_dir}")
        r = run_worker(sys.executable, __file__, [
            "_results", "--method", method, "--seeds", opts.seeds, "--seed", opts.seed, "--steps-per-seed", steps,
            "--eval-every", eval_every, "--chunks", opts.chunks, "--run-dir", run_dir,
            *(["--quick"] if opts.quick else [])], env=env, timeout=None)
        r["curve"] = _curve(run_dir)
        for f in ("solved_rate.png", "heldout.json", "buffer_top_levels.png"):
            if (run_dir / f).exists():
                shutil.copy(run_dir / f, RESULTS_DIR / f"{name}.{method}.{f}")
        log(f"[results] {method}: {r['heldout']['solved_rate_named']['mean']:.3f} mean named-maze solved rate "
            f"({r['wall_s'] / 60:.1f} min)")
        return r

    if opts.parallel:  # one process per method at once (an accelerator has room for all three)
        with concurrent.futures.ThreadPoolExecutor(len(methods)) as pool:
            results = list(pool.map(one, methods))
    else:
        results = [one(m) for m in methods]
    data = {"benchmark": "ued_maze_results", "created": utc_now(), "machine": machine_info(),
            "steps_per_seed": steps, "seeds": opts.seeds, "quick": opts.quick, "published": PUBLISHED,
            "parallel": bool(opts.parallel),
            "method": __doc__.split("**(b) Results.**")[1].split("Outputs:")[0].strip(), "runs": results}
    _write_results(name, data)


def _write_results(name: str, data: dict) -> None:
    publish("results", name, data, results_markdown(data), plot=plot_results)


def results_markdown(data: dict) -> str:
    runs = {r["method"]: r for r in data["runs"]}
    groups = list(next(iter(runs.values()))["heldout"]["groups"]) if runs else []
    head = ["# UED maze: held-out solved rates of DR, PLR⊥ and ACCEL", "",
            f"{data['seeds']} seeds per method (vmapped in one program), {data['steps_per_seed']:,} env steps per "
            f"seed{' (QUICK smoke test: tiny agent and budget, not a result)' if data.get('quick') else ''}; "
            f"{_where(data)}, {data['created']}.",
            "Solved rate = fraction of 10 attempts with return > 0 at the last in-program evaluation; mean ± 95% "
            "t-interval over seeds. Published (dcd, 164M steps, 60 walls, 12 mazes): DR 0.62, PLR⊥ 0.71, "
            "ACCEL 0.875.", "",
            "| method | named mazes (mean) | all groups (mean) | published | gradient updates per seed | wall time |",
            "|---|---|---|---|---|---|"]
    for method, r in runs.items():
        h = r["heldout"]
        grads = r.get("curve", {}).get("grad_updates_final") or []
        head.append(f"| {LABELS.get(method, method)} | {_ci(h['solved_rate_named'], '')} | "
                    f"{_ci(h['solved_rate_all'], '')} | {PUBLISHED.get(method, '-')} | "
                    f"{round(sum(grads) / len(grads)) if grads else '-'} | {r['wall_s'] / 60:.1f} min |")
    matched = _at_equal_grad_updates(runs)
    if matched:
        budget, rates = matched
        head += ["", f"At an equal number of student gradient updates ({budget} per seed, the fewest any method "
                 "reached; each seed's last evaluation at or below it), named-maze solved rate: "
                 + ", ".join(f"{LABELS.get(k, k)} {v:.3f}" for k, v in rates.items()) + "."]
    head += ["", "| maze | " + " | ".join(LABELS.get(k, k) for k in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for g in groups:
        head.append(f"| {g} | " + " | ".join(_ci(runs[k]["heldout"]["groups"][g], "solved_rate_") for k in runs)
                    + " |")
    ranked = sorted(runs, key=lambda k: -runs[k]["heldout"]["solved_rate_named"]["mean"])
    order = LABELS.get(ranked[0], ranked[0]) if ranked else ""
    for a, b in zip(ranked, ranked[1:]):
        same = round(runs[a]["heldout"]["solved_rate_named"]["mean"], 3) == round(
            runs[b]["heldout"]["solved_rate_named"]["mean"], 3)
        order += (" = " if same else " > ") + LABELS.get(b, b)
    head += ["", f"Ordering by mean named-maze solved rate: {order} (the published ordering is ACCEL > PLR⊥ > DR; "
             "check the intervals before reading an order into close numbers)."]
    return "\n".join(head)


def _at_equal_grad_updates(runs: dict) -> tuple[int, dict[str, float]] | None:
    """Mean named-maze solved rate of each method after the same number of student gradient updates."""
    if not runs or not all("curve" in r and r["curve"]["evals"] for r in runs.values()):
        return None
    budget = min(min(r["curve"]["grad_updates_final"]) for r in runs.values())
    rates = {}
    for method, r in runs.items():
        evals = r["curve"]["evals"]
        per_seed = []
        for i in range(len(r["curve"]["seeds"])):
            before = [e["solved_rate_named"][i] for e in evals if e["grad_updates"][i] <= budget]
            if before:
                per_seed.append(before[-1])
        rates[method] = sum(per_seed) / len(per_seed) if per_seed else float("nan")
    return budget, rates


def _where(data: dict) -> str:
    """Which machine trained: the accelerator when the workers ran on one, else the CPU and its load."""
    m = data["machine"]
    workers = [r.get("worker") or {} for r in data["runs"]]
    devices = sorted({w.get("device_kind") or w["devices"][0] for w in workers if w.get("backend") not in (None, "cpu")})
    together = " (the methods trained at the same time, one process each)" if data.get("parallel") else ""
    if devices:
        return f"{', '.join(devices)} with {m['cpu_model']}{together}"
    return f"{m['cpu_model']}, {m['cpus_usable']} cores, load {m['loadavg']}{together}"


def _ci(d: dict, prefix: str) -> str:
    mean, lo, hi = d[f"{prefix}mean"], d.get(f"{prefix}ci_low"), d.get(f"{prefix}ci_high")
    if lo is None or hi is None or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (lo, hi)):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {(hi - lo) / 2:.3f}"


def plot_results(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax3, ax2) = plt.subplots(1, 3, figsize=(17, 4.5))
    for r in data["runs"]:
        evals = r["curve"]["evals"]
        per = np.array([e["solved_rate_named"] for e in evals])
        sd = per.std(1, ddof=1) / np.sqrt(per.shape[1]) if per.shape[1] > 1 else np.zeros(len(per))
        for ax, x in ((ax1, [e["env_steps"] for e in evals]), (ax3, [np.mean(e["grad_updates"]) for e in evals])):
            line, = ax.plot(x, per.mean(1), label=LABELS.get(r["method"], r["method"]))
            ax.fill_between(x, per.mean(1) - sd, per.mean(1) + sd, alpha=0.2, color=line.get_color())
    ax1.set(xlabel="env steps per seed", ylabel="solved rate, mean of 8 named mazes", ylim=(-0.02, 1.02),
            title="held-out solved rate over training (± s.e. over seeds)")
    ax3.set(xlabel="student gradient updates (PPO updates) per seed", ylim=(-0.02, 1.02),
            title="the same, over gradient updates")
    for ax in (ax1, ax3):
        ax.grid(alpha=0.3)
        ax.legend()
    groups = list(data["runs"][0]["heldout"]["groups"]) if data["runs"] else []
    width = 0.8 / max(1, len(data["runs"]))
    for i, r in enumerate(data["runs"]):
        g = r["heldout"]["groups"]
        ax2.bar(np.arange(len(groups)) + i * width, [g[k]["solved_rate_mean"] for k in groups], width,
                label=LABELS.get(r["method"], r["method"]))
    ax2.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, rotation=60, ha="right", fontsize=7)
    ax2.set(ylabel="final solved rate", ylim=(0, 1), title="per held-out maze (last evaluation, mean over seeds)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_table(opts) -> None:
    for name in ("ued_maze_speed", "ued_maze_speed.quick"):
        p = RESULTS_DIR / f"{name}.json"
        if p.exists():
            data = json.loads(p.read_text())
            write_results(name, data, speed_markdown(data))
            log(f"[table] rewrote {name}.md")
    for name in ("ued_maze_results", "ued_maze_results.quick"):
        p = RESULTS_DIR / f"{name}.json"
        if p.exists():
            _write_results(name, json.loads(p.read_text()))


# ============================================================================================ command line
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed", help="(a) env steps/s vs jaxued")
    sp.add_argument("--quick", action="store_true")
    sp.add_argument("--envs", type=int, nargs="*")
    sp.add_argument("--methods", nargs="*", choices=(*SPEED_METHODS, "plr"))
    sp.add_argument("--num-steps", type=int, default=256)
    sp.add_argument("--lstm", type=int, default=256, help="LSTM units (256: the standard agent)")
    sp.add_argument("--k", type=int, default=None, help="updates per timed call")
    sp.add_argument("--no-peer", action="store_true", help="skip jaxued")
    sp.add_argument("--cycle-costs", action="store_true",
                    help="also time each cycle kind apart (replay_prob 0 and 1) on both sides, for PLR⊥ and ACCEL, "
                         "and compare at the expected cycle mix")
    sp.add_argument("--before", metavar="REV", default=None,
                    help="also time our worker from a git checkout of REV (before/after ratios in the same job)")
    sp.add_argument("--merge", action="store_true",
                    help="keep the earlier result file's rows for the methods / env counts not measured now")
    rp = sub.add_parser("results", help="(b) held-out solved rates, 3 seeds per method")
    rp.add_argument("--quick", action="store_true")
    rp.add_argument("--methods", nargs="*", choices=(*RESULT_METHODS, "plr", "parallel_plr", "parallel_accel"))
    rp.add_argument("--steps-per-seed", type=int, default=None, help="env steps per seed (default 3M)")
    rp.add_argument("--seeds", type=int, default=3)
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--eval-every", type=int, default=None, help="updates between evaluations (default 25)")
    rp.add_argument("--chunks", type=int, default=10, help="checkpoints per run (resumable)")
    rp.add_argument("--fresh", action="store_true", help="delete earlier run folders instead of resuming")
    rp.add_argument("--parallel", action="store_true",
                    help="train the methods at the same time, one process each (for a GPU; default: one by one)")
    sub.add_parser("table", help="rewrite markdown and plots from the JSON results")
    for worker in ("_speed_ours", "_speed_jaxued"):
        w = sub.add_parser(worker)
        w.add_argument("--method", required=True)
        w.add_argument("--num-envs", type=int, required=True)
        w.add_argument("--num-steps", type=int, required=True)
        w.add_argument("--lstm", type=int, required=True)
        w.add_argument("--k", type=int, required=True)
        w.add_argument("--warmup-calls", type=int, required=True)
        w.add_argument("--reps", type=int, required=True)
        w.add_argument("--min-rep-s", type=float, required=True)
        w.add_argument("--replay-prob", type=float, default=None, help="force the cycle kind (cycle-cost runs)")
    w = sub.add_parser("_results")
    w.add_argument("--method", required=True)
    w.add_argument("--seeds", type=int, required=True)
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--steps-per-seed", type=int, required=True)
    w.add_argument("--eval-every", type=int, required=True)
    w.add_argument("--chunks", type=int, required=True)
    w.add_argument("--run-dir", required=True)
    w.add_argument("--quick", action="store_true")
    opts = parser.parse_args(argv)
    {"speed": cmd_speed, "results": cmd_results, "table": cmd_table, "_speed_ours": worker_speed_ours,
     "_speed_jaxued": worker_speed_jaxued, "_results": worker_results}[opts.cmd](opts)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
