"""PPO on CartPole-v1: jaxrl_self vs rejax vs a PyTorch loop, same hyper-parameters, side by side in one job.

    python benchmarks/ppo_cartpole.py            # full run -> benchmarks/results/ppo_cartpole.{json,md,png}
    python benchmarks/ppo_cartpole.py --quick    # smoke run -> ppo_cartpole.quick.{json,md,png}

Settings (PureJaxRL's CartPole configuration; every implementation gets the same numbers):

* ``default``: 4 envs x 128 steps per update, 500k env steps per seed (976 updates, 499,712 steps);
* ``throughput``: 1024 envs x 128 steps per update, 16 updates (2,097,152 env steps per seed), one seed
  (``--throughput-seeds`` adds a vmapped run): the cost per env step once the batch is wide. 16 updates do not
  solve CartPole; its returns are reported, not judged.
* shared: 4 epochs x 4 minibatches per update (shuffled transitions), Adam lr 2.5e-4 annealed linearly to 0
  (constant within an update), Adam eps 1e-5, global gradient-norm clip 0.5, gamma 0.99, GAE lambda 0.95,
  clip 0.2 (ratio and value), entropy 0.01, value coef 0.5, advantages standardised per minibatch, separate
  64-64 tanh actor and critic MLPs, no observation or reward normalisation.

Runs (each in a fresh worker process, one after the other, never two at once):

* ``ours``: ``jax.jit(jax.vmap(ppo.make_train(config, envs.make("cartpole"))))(keys)``, 8 seeds in one
  program; also ``jax.jit(train)(key)`` for one seed. The program returns what ``train`` returns (the whole
  ``RunState`` and ``Metrics``), as a user would run it.
* ``rejax``: rejax's ``PPO`` (PyPI, its own venv ``benchmarks/.venvs/rejax``) on gymnax's ``CartPole-v1``
  (rejax's ``"CartPole-v1"`` *is* gymnax's), vmapped over 8 seeds the same way, and for one seed. The run is
  ``algo.init_state(key)`` then ``lax.scan`` of rejax's own ``algo.train_iteration`` (collect + GAE + 4 epochs)
  for the same number of updates; rejax's ``train()`` would add its periodic greedy evaluation (128 episodes
  every ``eval_freq`` steps), which is not training and which the other implementations do not do.
* ``torch``: ``benchmarks/peers/torch_ppo_cartpole.py`` (a copy of the project's shared PyTorch loop), one seed
  per process with gymnasium's ``SyncVectorEnv``, seeds one after the other, in venv ``benchmarks/.venvs/torch``
  (``torch==2.13.0``, a CPU build, and ``gymnasium``). At the throughput setting one seed of
  ``--torch-throughput-updates`` updates (the loop is ~100x slower than the JAX ones). One torch intra-op thread
  (``--torch-threads``): on this 2-core CPU torch's default of two spinning workers collapses when anything else
  runs (10x slower on a loaded machine), and 64-wide layers gain nothing from a second thread.

Measured per run: trace+lower time and XLA compile time (``jax.jit(f).lower(keys).compile()``, apart from
running; the torch loop has none), then ``--reps`` calls of the compiled program, each timed on its own
(blocking on the result); run time = the median, env steps/s = env steps of all seeds / run time (and per
seed). The torch loop times its own training loop (no imports, no env construction). The final return of a
seed, identical for all: the mean return of the episodes that finished during the last 10 updates (each
episode weighs the same); ``seeds >= 475`` counts seeds whose final return is at least 475. Learning curves:
per seed, the mean return of the episodes finished in each of ~50 equal bins of updates.

Every JAX worker runs with the same ``XLA_FLAGS`` (jaxrl_self's XLA:CPU guard flag
``--xla_cpu_enable_concurrency_optimized_scheduler=false`` is passed to the peer too), the same
``JAX_PLATFORMS`` (cpu) and no persistent compilation cache; the rejax venv pins jax/jaxlib to the version we
run, so the comparison is of the libraries, not of two jax releases.

Differences that remain, by design of each implementation (listed in the result files too):

* rejax 0.1.3 hard-codes its optimiser as ``optax.clip(max_grad_norm)`` (element-wise clipping) + ``adam(lr)``
  (eps 1e-8, no annealing). The worker subclasses ``rejax.PPO`` and overrides only
  ``initialize_network_params`` to build PureJaxRL's chain (global-norm clip 0.5, Adam eps 1e-5, the same
  linear annealing), per network: rejax keeps separate actor and critic optimisers, so the gradient norm is
  clipped per network, where ours and the torch loop clip the norm over both. Costs are the same either way.
* rejax 0.1.3 calls gymnax's pre-1.0 ``step`` API (5 outputs), so its venv has ``gymnax==0.0.9``, whose
  CartPole-v1 has the same dynamics, reward and 500-step limit as ours and gymnasium's.
* Initialisation: ours and torch use PureJaxRL's orthogonal init (gains sqrt 2, 0.01 actor head, 1 critic
  head); rejax's MLPs use Flax's default lecun-normal init.
* Truncation at 500 steps: ours bootstraps from ``V(final_obs)`` (one more batched critic pass per update);
  rejax and the torch loop treat a truncation as a termination (no bootstrap), as PureJaxRL does.
* Values during the rollout: rejax and torch run the critic at every rollout step; ours runs only the actor in
  the rollout and the critic once, batched, afterwards.
* Episode statistics: ours reads them from its ``LogWrapper``; for rejax (whose rollout drops the env info) the
  worker wraps gymnax's CartPole in a counter of finished episodes' returns (a few adds per step); the torch
  loop uses gymnasium's ``RecordEpisodeStatistics``.
* Keys: ours typed ``jax.random.key``, rejax legacy ``jax.random.PRNGKey`` (both threefry2x32).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (stdlib only at import time; usable from the peer venvs too)

NAME = "ppo_cartpole"
IMPLS = ("ours", "rejax", "torch")
THRESHOLD = 475.0
LAST_UPDATES = 10
CURVE_BINS = 50
TORCH_SCRIPT = Path(__file__).resolve().parent / "peers" / "torch_ppo_cartpole.py"
#: rejax 0.1.3 needs gymnax's pre-1.0 step API; jax/jaxlib are pinned to ours at run time (see rejax_requirements).
REJAX_REQUIREMENTS = ("rejax==0.1.3", "gymnax==0.0.9")
#: torch first and pinned: the CPU wheel of this version is on the machine's disk; a bare ``torch`` may resolve
#: to a multi-GB CUDA build from PyPI.
TORCH_REQUIREMENTS = ("torch==2.13.0", "gymnasium")
OURS_PACKAGES = ("jax", "jaxlib", "flax", "optax", "distrax", "numpy", "jaxrl-self")
REJAX_PACKAGES = ("jax", "jaxlib", "flax", "optax", "distrax", "numpy", "chex", "gymnax", "rejax")
#: Aims of the issue, at the default setting.
AIM_VS_REJAX = 1.2
AIM_VS_TORCH = 30.0
AIM_SEEDS_SOLVED = 7  # of 8


@dataclasses.dataclass(frozen=True)
class Setting:
    """One PPO configuration; everything else (epochs, minibatches, lr, ...) is in :data:`HYPER`."""

    name: str
    num_envs: int
    num_steps: int
    num_updates: int

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def env_steps(self) -> int:
        """Env steps per seed."""
        return self.num_updates * self.batch_size


#: PureJaxRL's CartPole hyper-parameters, shared by every implementation and setting.
HYPER = dict(update_epochs=4, num_minibatches=4, learning_rate=2.5e-4, anneal_lr=True, adam_eps=1e-5,
             max_grad_norm=0.5, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
             hidden_sizes=(64, 64), activation="tanh", normalize_advantages=True, clip_value_loss=True)
FULL_SETTINGS = (Setting("default", 4, 128, 500_000 // 512), Setting("throughput", 1024, 128, 16))
QUICK_SETTINGS = (Setting("default", 4, 128, 50_000 // 512), Setting("throughput", 1024, 128, 1))
FULL_DEFAULTS = dict(seeds=8, reps=3, torch_seeds=8, torch_throughput_updates=2)
QUICK_DEFAULTS = dict(seeds=2, reps=1, torch_seeds=1, torch_throughput_updates=1)


# ================================================================================================ worker side
def final_and_curve(ret_sum, count, num_updates: int, steps_per_update: int, bins: int) -> dict[str, Any]:
    """From per-update sums ``ret_sum[S, U]`` and counts ``count[S, U]`` of finished episodes' returns:
    per-seed final return (episodes of the last :data:`LAST_UPDATES` updates) and binned learning curve
    (``bins`` equal bins of updates; ``None`` where no episode finished in a bin)."""
    seeds = len(ret_sum)
    final, curves = [], []
    edges = [round(i * num_updates / bins) for i in range(bins + 1)]
    edges = sorted(set(edges))
    for s in range(seeds):
        last_sum = sum(ret_sum[s][-LAST_UPDATES:])
        last_count = sum(count[s][-LAST_UPDATES:])
        final.append(last_sum / last_count if last_count else None)
        curve = []
        for a, b in zip(edges[:-1], edges[1:]):
            n = sum(count[s][a:b])
            curve.append(sum(ret_sum[s][a:b]) / n if n else None)
        curves.append(curve)
    x = [(b * steps_per_update) for b in edges[1:]]  # env steps per seed at the end of each bin
    return {"final_returns": final, "curve_env_steps": x, "curve_returns": curves}


def _ours_program(setting: Setting, seeds: int, vmapped: bool):
    """``(fn, args, to_host)``: the measured function, its argument, and ``outputs -> (ret_sum, count)``."""
    import jaxrl_self  # noqa: F401  (XLA guard before any computation)
    import jax
    import numpy as np

    from jaxrl_self import envs, ppo

    h = HYPER
    config = ppo.Config(
        total_timesteps=setting.env_steps, num_envs=setting.num_envs, num_steps=setting.num_steps,
        update_epochs=h["update_epochs"], num_minibatches=h["num_minibatches"], network="mlp",
        hidden_sizes=h["hidden_sizes"], activation=h["activation"], anneal_lr=h["anneal_lr"],
        normalize_obs=False, normalize_advantages=h["normalize_advantages"], clip_value_loss=h["clip_value_loss"],
        learning_rate=h["learning_rate"], gamma=h["gamma"], gae_lambda=h["gae_lambda"], clip_eps=h["clip_eps"],
        ent_coef=h["ent_coef"], vf_coef=h["vf_coef"], max_grad_norm=h["max_grad_norm"], adam_eps=h["adam_eps"])
    train = ppo.make_train(config, envs.make("cartpole"))
    if train.num_updates != setting.num_updates:
        raise RuntimeError(f"ours: {train.num_updates} updates, expected {setting.num_updates}")
    if vmapped:
        fn, arg = jax.vmap(train), jax.random.split(jax.random.key(0), seeds)
    else:
        fn, arg = train, jax.random.key(0)

    def to_host(out):
        state, m = out
        ret = np.asarray(m.episode_return, np.float64).reshape(seeds, -1)
        cnt = np.asarray(m.episodes_finished, np.float64).reshape(seeds, -1)
        bad = np.asarray(state.nonfinite_update).reshape(-1)
        if (bad >= 0).any():
            raise FloatingPointError(f"ours: non-finite update(s) {bad.tolist()}")
        return (ret * cnt).tolist(), cnt.tolist()

    desc = (f"jaxrl_self.ppo.make_train(ppo.Config(...), envs.make('cartpole')); "
            f"{'jax.vmap over ' + str(seeds) + ' keys' if vmapped else 'one key'}")
    return fn, arg, to_host, desc, {"config": repr(config)}


def _rejax_program(setting: Setting, seeds: int, vmapped: bool):
    """rejax's PPO with PureJaxRL's optimiser chain, on gymnax CartPole-v1 wrapped in an episode counter."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import struct
    from flax.training.train_state import TrainState
    import gymnax
    from gymnax.wrappers.purerl import GymnaxWrapper
    from rejax import PPO
    from rejax.algos.algorithm import register_init

    h = HYPER

    @struct.dataclass
    class CountedState:
        env_state: Any
        episode_return: jax.Array  # return of the running episode
        finished_return_sum: jax.Array  # cumulative sum of the returns of finished episodes
        finished_count: jax.Array  # cumulative number of finished episodes

    class EpisodeCounter(GymnaxWrapper):
        """Counts finished episodes and their returns in the env state (rejax's rollout drops the info)."""

        def __getattr__(self, name):  # gymnax's delegation recurses when copy/deepcopy probe a bare instance
            if name.startswith("__") or name == "_env":
                raise AttributeError(name)
            return getattr(self._env, name)

        def reset(self, key, params=None):
            obs, s = self._env.reset(key, params)
            zero = jnp.zeros((), jnp.float32)
            return obs, CountedState(s, zero, zero, jnp.zeros((), jnp.int32))

        def step(self, key, state, action, params=None):
            obs, s, reward, done, info = self._env.step(key, state.env_state, action, params)
            ret = state.episode_return + reward
            return obs, CountedState(
                env_state=s,
                episode_return=jnp.where(done, 0.0, ret),
                finished_return_sum=state.finished_return_sum + jnp.where(done, ret, 0.0),
                finished_count=state.finished_count + done.astype(jnp.int32),
            ), reward, done, info

    steps_per_update = h["update_epochs"] * h["num_minibatches"]

    def lr_schedule(count):  # PureJaxRL's: constant within an update, linear to 0 over the run
        return h["learning_rate"] * (1.0 - (count // steps_per_update) / setting.num_updates)

    class PPOPureJaxRLOptimizer(PPO):
        """rejax's PPO; only the optimiser differs (see the module docstring)."""

        @register_init
        def initialize_network_params(self, rng):
            rng, rng_actor, rng_critic = jax.random.split(rng, 3)
            obs_ph = jnp.empty([1, *self.env.observation_space(self.env_params).shape])
            actor_params = self.actor.init(rng_actor, obs_ph, rng_actor)
            critic_params = self.critic.init(rng_critic, obs_ph)
            tx = optax.chain(optax.clip_by_global_norm(self.max_grad_norm),
                             optax.adam(learning_rate=lr_schedule, eps=h["adam_eps"]))
            return {"actor_ts": TrainState.create(apply_fn=(), params=actor_params, tx=tx),
                    "critic_ts": TrainState.create(apply_fn=(), params=critic_params, tx=tx)}

    base_env, env_params = gymnax.make("CartPole-v1")
    algo = PPOPureJaxRLOptimizer.create(
        env=EpisodeCounter(base_env), env_params=env_params,
        total_timesteps=setting.env_steps, num_envs=setting.num_envs, num_steps=setting.num_steps,
        num_epochs=h["update_epochs"], num_minibatches=h["num_minibatches"], learning_rate=h["learning_rate"],
        max_grad_norm=h["max_grad_norm"], gamma=h["gamma"], gae_lambda=h["gae_lambda"], clip_eps=h["clip_eps"],
        ent_coef=h["ent_coef"], vf_coef=h["vf_coef"], normalize_observations=False, normalize_rewards=False,
        skip_initial_evaluation=True,
        agent_kwargs={"activation": h["activation"], "hidden_layer_sizes": h["hidden_sizes"]})

    def train(key):
        ts = algo.init_state(key)

        def body(ts, _):
            ts = algo.train_iteration(ts)
            es = ts.env_state
            return ts, (jnp.sum(es.finished_return_sum), jnp.sum(es.finished_count))

        return jax.lax.scan(body, ts, None, length=setting.num_updates)

    if vmapped:
        fn, arg = jax.vmap(train), jax.random.split(jax.random.PRNGKey(0), seeds)
    else:
        fn, arg = train, jax.random.PRNGKey(0)

    def to_host(out):
        _, (cum_sum, cum_count) = out
        cum_sum = np.asarray(cum_sum, np.float64).reshape(seeds, -1)
        cum_count = np.asarray(cum_count, np.float64).reshape(seeds, -1)
        ret = np.diff(cum_sum, axis=1, prepend=0.0)
        cnt = np.diff(cum_count, axis=1, prepend=0.0)
        return ret.tolist(), cnt.tolist()

    desc = (f"rejax.PPO (optimiser: PureJaxRL's chain) on EpisodeCounter(gymnax CartPole-v1); init_state + "
            f"lax.scan(train_iteration); {'jax.vmap over ' + str(seeds) + ' keys' if vmapped else 'one key'}")
    fields = {f.name: repr(getattr(algo, f.name)) for f in dataclasses.fields(algo)
              if f.name not in ("env", "env_params", "eval_callback", "actor", "critic")}
    return fn, arg, to_host, desc, {"algo_fields": fields, "env_params": repr(env_params),
                                    "actor": repr(algo.actor), "critic": repr(algo.critic)}


def worker_main(spec: dict[str, Any]) -> None:
    """Compile and time one (implementation, setting, seeds) run and emit its result."""
    t_import = time.perf_counter()
    setting = Setting(**spec["setting"])
    impl, seeds, vmapped, reps = spec["impl"], spec["seeds"], spec["vmapped"], spec["reps"]
    build = _ours_program if impl == "ours" else _rejax_program
    fn, arg, to_host, desc, settings = build(setting, seeds, vmapped)
    import jax

    info = C.worker_info(OURS_PACKAGES if impl == "ours" else REJAX_PACKAGES)
    setup_s = time.perf_counter() - t_import
    tag = f"[{impl}:{setting.name}:{seeds}{'v' if vmapped else ''}]"
    C.log(f"  {tag} compiling ...")
    compiled, lower_s, compile_s = C.compile_timed(fn, arg)
    C.log(f"  {tag} lower {lower_s:.2f} s, compile {compile_s:.2f} s; running {reps}x ...")
    run_s, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(arg))
        run_s.append(time.perf_counter() - t0)
    ret_sum, count = to_host(out)
    total_steps = seeds * setting.env_steps
    med = statistics.median(run_s)
    fc = final_and_curve(ret_sum, count, setting.num_updates, setting.batch_size, spec["bins"])
    C.log(f"  {tag} run {med:.2f} s -> {C.fmt_rate(total_steps / med)} env steps/s; final returns "
          + " ".join("-" if r is None else f"{r:.0f}" for r in fc["final_returns"]))
    C.emit_result({
        "worker": info, "description": desc, "settings": settings,
        "setup_s": round(setup_s, 3), "lower_s": round(lower_s, 4), "xla_compile_s": round(compile_s, 4),
        "compile_s": round(lower_s + compile_s, 4), "run_s_samples": run_s, "run_s": med,
        "env_steps_total": total_steps, **fc,
    })


# ================================================================================================ orchestrator
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="PPO on CartPole-v1 at PureJaxRL's settings: jaxrl_self vs rejax vs a PyTorch loop "
                    "(env steps/s, compile time, final return over seeds).",
        epilog="Results: benchmarks/results/ppo_cartpole.{json,md,png}; --quick and partial runs write to other "
               "names so they never overwrite the full results.")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 50k steps (97 updates) at the default setting, 1 update at the throughput "
                        "setting, 2 seeds, 1 rep, 1 torch seed; writes ppo_cartpole.quick.*")
    p.add_argument("--impls", default=",".join(IMPLS), help="comma list of ours,rejax,torch (default: all)")
    p.add_argument("--settings", default="default,throughput", help="comma list of default,throughput")
    p.add_argument("--seeds", type=int, default=None, help="seeds vmapped in one program (default 8; quick 2)")
    p.add_argument("--reps", type=int, default=None, help="timed calls of each compiled program (default 3; quick 1)")
    p.add_argument("--torch-seeds", type=int, default=None,
                   help="torch processes (one seed each) at the default setting (default 8; quick 1)")
    p.add_argument("--torch-throughput-updates", type=int, default=None,
                   help="updates of the torch loop at the throughput setting (default 2; quick 1; 0 skips it)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads (default 1; 0: torch's default, 2 here). With 2 threads on a 2-core "
                        "CPU that other work shares, torch's spinning workers collapsed the loop 10x (22 vs 273 "
                        "steps/s on a loaded machine); one thread is immune and 64-wide layers gain nothing from two")
    p.add_argument("--throughput-seeds", type=int, default=1,
                   help="seeds at the throughput setting (default 1: jit(train)(key); > 1 adds a vmapped run)")
    p.add_argument("--no-single-seed", action="store_true", help="skip the one-seed (not vmapped) JAX runs")
    p.add_argument("--platform", default="cpu", help="JAX_PLATFORMS for the JAX workers (default cpu)")
    p.add_argument("--rebuild-venvs", action="store_true", help="rebuild the peer venvs from PyPI")
    p.add_argument("--output", default=None,
                   help=f"result file stem under benchmarks/results (default {NAME}, {NAME}.quick for --quick, "
                        f"{NAME}.partial for non-default selections)")
    p.add_argument("--worker-timeout", type=float, default=3600.0, help="seconds allowed per worker")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: JSON spec of one worker
    args = p.parse_args(argv)
    if args.worker is not None:
        return args
    d = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for k in ("seeds", "reps", "torch_seeds", "torch_throughput_updates"):
        if getattr(args, k) is None:
            setattr(args, k, d[k])
    for k in ("seeds", "reps", "throughput_seeds"):
        if getattr(args, k) < 1:
            p.error(f"--{k} must be >= 1, got {getattr(args, k)}")
    if args.torch_seeds < 0 or args.torch_throughput_updates < 0:
        p.error("--torch-seeds and --torch-throughput-updates must be >= 0")
    args.impls = tuple(x.strip() for x in args.impls.split(",") if x.strip())
    bad = [x for x in args.impls if x not in IMPLS]
    if bad or not args.impls:
        p.error(f"--impls: unknown value(s) {bad or args.impls!r}; allowed: {', '.join(IMPLS)}")
    all_settings = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    names = [x.strip() for x in args.settings.split(",") if x.strip()]
    known = {s.name: s for s in all_settings}
    bad = [x for x in names if x not in known]
    if bad or not names:
        p.error(f"--settings: unknown value(s) {bad or names!r}; allowed: {', '.join(known)}")
    args.setting_objs = tuple(known[n] for n in known if n in names)
    partial = (tuple(args.impls) != IMPLS or len(args.setting_objs) != len(all_settings) or args.no_single_seed
               or any(getattr(args, k) != d[k] for k in ("seeds", "torch_seeds", "torch_throughput_updates"))
               or args.throughput_seeds != 1 or args.torch_threads != 1
               or (not args.quick and args.reps < d["reps"]))
    if args.output is None:
        args.output = NAME + (".quick" if args.quick else "") + (".partial" if partial else "")
    return args


def rejax_requirements() -> list[str]:
    """rejax's requirements with jax/jaxlib pinned to the versions this interpreter runs."""
    vers = C.package_versions(("jax", "jaxlib"))
    return [*REJAX_REQUIREMENTS, *(f"{k}=={v}" for k, v in vers.items() if v)]


def _venv_record(python: Path) -> dict[str, Any]:
    meta = C.venv_metadata(python)
    return {"path": str(Path(python).parent.parent.relative_to(C.REPO_ROOT)), "requirements": meta.get("requirements"),
            "created": meta.get("created"), "freeze": meta.get("freeze")}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_jax(impl: str, python: Path | str, setting: Setting, seeds: int, vmapped: bool, args, env) -> dict:
    spec = {"impl": impl, "setting": dataclasses.asdict(setting), "seeds": seeds, "vmapped": vmapped,
            "reps": args.reps, "bins": CURVE_BINS}
    with C.timing_lock(f"ppo_cartpole {impl} {setting.name} {seeds} seeds") as lock:
        load_before, t0 = _load(), time.perf_counter()
        out = C.run_worker(python, Path(__file__).resolve(), ["--worker", json.dumps(spec)], env=env,
                           timeout=args.worker_timeout)
    steps = out["env_steps_total"]
    return {"impl": impl, "setting": setting.name, "seeds": seeds, "vmapped": vmapped,
            "mode": f"{seeds} seeds, one vmapped program" if vmapped else "1 seed, jit(train)",
            "compile_s": out["compile_s"], "lower_s": out["lower_s"], "xla_compile_s": out["xla_compile_s"],
            "run_s": out["run_s"], "run_s_samples": out["run_s_samples"],
            "steps_per_s": steps / out["run_s"], "steps_per_s_per_seed": steps / out["run_s"] / seeds,
            "steps_per_s_samples": [steps / s for s in out["run_s_samples"]],
            "env_steps_total": steps, "env_steps_per_seed": setting.env_steps,
            "final_returns": out["final_returns"], "curve_env_steps": out["curve_env_steps"],
            "curve_returns": out["curve_returns"], "setup_s": out["setup_s"], "description": out["description"],
            "impl_settings": out["settings"], "worker": out["worker"],
            "worker_wall_s": round(time.perf_counter() - t0, 2), "loadavg_before": load_before,
            "loadavg_after": _load(), "timing": lock}


def run_torch(python: Path | str, setting: Setting, seeds: int, args) -> dict:
    """``seeds`` torch processes one after the other (seed 0, 1, ...), aggregated into one run record."""
    per_seed, locks = [], []
    load_before, t0 = _load(), time.perf_counter()
    for seed in range(seeds):
        C.log(f"  [torch:{setting.name}] seed {seed}: {setting.num_updates} updates of {setting.num_envs} envs x "
              f"{setting.num_steps} steps ...")
        with C.timing_lock(f"ppo_cartpole torch {setting.name} seed {seed}") as lock:
            out = C.run_worker(python, TORCH_SCRIPT, [
                "--total-timesteps", setting.env_steps, "--seed", seed, "--threads", args.torch_threads,
                "--num-envs", setting.num_envs, "--num-steps", setting.num_steps], timeout=args.worker_timeout)
        locks.append(lock)
        if out["num_updates"] != setting.num_updates or out["env_steps"] != setting.env_steps:
            raise RuntimeError(f"torch ran {out['num_updates']} updates / {out['env_steps']} steps, expected "
                               f"{setting.num_updates} / {setting.env_steps}")
        C.log(f"  [torch:{setting.name}] seed {seed}: {out['wall_s']:.1f} s, {C.fmt_rate(out['steps_per_s'])} "
              f"env steps/s, final return {out['final_return_last10upd']}")
        per_seed.append(out)
    fc = final_and_curve([o["curve_return_sum"] for o in per_seed], [o["curve_episodes"] for o in per_seed],
                         setting.num_updates, setting.batch_size, CURVE_BINS)
    wall = [o["wall_s"] for o in per_seed]
    steps = seeds * setting.env_steps
    first = per_seed[0]
    return {"impl": "torch", "setting": setting.name, "seeds": seeds, "vmapped": False,
            "mode": f"{seeds} seed{'s' if seeds > 1 else ''}, one process each, one after the other",
            "compile_s": None, "lower_s": None, "xla_compile_s": None,
            "run_s": sum(wall), "run_s_samples": wall, "steps_per_s": steps / sum(wall),
            "steps_per_s_per_seed": steps / sum(wall),
            "steps_per_s_samples": [o["steps_per_s"] for o in per_seed],
            "env_steps_total": steps, "env_steps_per_seed": setting.env_steps,
            "final_returns": fc["final_returns"], "curve_env_steps": fc["curve_env_steps"],
            "curve_returns": fc["curve_returns"], "setup_s": statistics.median(o["setup_s"] for o in per_seed),
            "description": f"benchmarks/peers/torch_ppo_cartpole.py (PyTorch {first['torch']}, gymnasium "
                           f"{first['gymnasium']} SyncVectorEnv, {first['threads']} intra-op threads)",
            "impl_settings": {"threads": first["threads"]},
            "worker": {"python": first["python"], "versions": {"torch": first["torch"],
                                                               "gymnasium": first["gymnasium"],
                                                               "numpy": first["numpy"]}},
            "worker_wall_s": round(time.perf_counter() - t0, 2), "loadavg_before": load_before,
            "loadavg_after": _load(), "timing": locks}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def returns_summary(finals: list[float | None]) -> dict[str, Any]:
    from jaxrl_self.run.stats import mean_ci  # orchestrator runs in our venv

    vals = [math.nan if r is None else r for r in finals]
    ci = mean_ci(vals)
    finite = [v for v in vals if math.isfinite(v)]
    def num(x: float) -> float | None:  # JSON has no NaN
        return x if math.isfinite(x) else None

    return {"mean": num(ci.mean), "ci95_low": num(ci.low), "ci95_high": num(ci.high),
            "min": min(finite) if finite else None, "max": max(finite) if finite else None,
            "seeds": len(vals), "seeds_ge_threshold": sum(v >= THRESHOLD for v in finite)}


def summarise(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Ratio rows (ours / peer, same setting and seed layout) and the issue's aims checked against them."""
    def find(impl, setting, vmapped, seeds=None):
        for r in runs:
            if r["impl"] == impl and r["setting"] == setting and r["vmapped"] == vmapped and \
                    (seeds is None or r["seeds"] == seeds):
                return r
        return None

    rows = []
    for setting in dict.fromkeys(r["setting"] for r in runs):
        for label, vm, seeds in (("all seeds vmapped", True, None), ("1 seed", False, 1)):
            ours = find("ours", setting, vm, seeds)
            rejax = find("rejax", setting, vm, seeds)
            # torch is never vmapped: compare the vmapped runs with its sequential seeds (total steps / total
            # time) and the one-seed runs with its per-process rate.
            torch = find("torch", setting, False)
            if ours is None:
                continue
            torch_rate = None if torch is None else (torch["steps_per_s"] if vm else
                                                     statistics.median(torch["steps_per_s_samples"]))
            rows.append({
                "setting": setting, "layout": label, "ours_seeds": ours["seeds"],
                "ours_steps_per_s": ours["steps_per_s"],
                "rejax_steps_per_s": rejax and rejax["steps_per_s"],
                "torch_steps_per_s": torch_rate,
                "ours_over_rejax": _ratio(ours["steps_per_s"], rejax and rejax["steps_per_s"]),
                "ours_over_torch": _ratio(ours["steps_per_s"], torch_rate),
                "ours_compile_s": ours["compile_s"], "rejax_compile_s": rejax and rejax["compile_s"],
                "compile_ours_over_rejax": _ratio(ours["compile_s"], rejax and rejax["compile_s"]),
            })
    aims = []
    ours8 = find("ours", "default", True)
    if ours8 is not None:
        s = returns_summary(ours8["final_returns"])
        need = math.ceil(AIM_SEEDS_SOLVED / 8 * ours8["seeds"])
        aims.append({"aim": f"ours: final return >= {THRESHOLD:.0f} on >= {AIM_SEEDS_SOLVED}/8 seeds at the default "
                            f"setting, one vmapped program",
                     "value": f"{s['seeds_ge_threshold']}/{s['seeds']}",
                     "met": s["seeds_ge_threshold"] >= need})
    for row in rows:
        if row["setting"] != "default":
            continue
        if row["ours_over_rejax"] is not None:
            aims.append({"aim": f"speed ours/rejax >= {AIM_VS_REJAX} (default, {row['layout']})",
                         "value": C.fmt_ratio(row["ours_over_rejax"]),
                         "met": row["ours_over_rejax"] >= AIM_VS_REJAX})
        if row["ours_over_torch"] is not None:
            aims.append({"aim": f"speed ours/torch >= {AIM_VS_TORCH:.0f} (default, {row['layout']})",
                         "value": C.fmt_ratio(row["ours_over_torch"]),
                         "met": row["ours_over_torch"] >= AIM_VS_TORCH})
        if row["compile_ours_over_rejax"] is not None:
            aims.append({"aim": f"compile time ours <= rejax (default, {row['layout']})",
                         "value": f"{row['ours_compile_s']:.2f} s vs {row['rejax_compile_s']:.2f} s",
                         "met": row["ours_compile_s"] <= row["rejax_compile_s"]})
    return rows, aims


def _fmt_s(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _fmt_returns(s: dict) -> str:
    if s["mean"] is None:
        return "-"
    if s["ci95_low"] is None:
        return f"{s['mean']:.1f}"
    return f"{s['mean']:.1f} ± {(s['ci95_high'] - s['ci95_low']) / 2:.1f} (min {s['min']:.1f})"


def render_markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = ["# PPO on CartPole-v1: jaxrl_self vs rejax vs PyTorch", ""]
    if data["quick"]:
        lines += ["> **SMOKE RUN (`--quick`)**: 50k steps, 2 seeds, one timed call, on a possibly busy machine. "
                  "These numbers only show that the harness works; they are not measurements.", ""]
    lines += [
        f"- created {data['created']} by `{data['command']}`; wall {data['wall_s']} s",
        f"- machine: {m['cpu_model']}, {m['cpus_usable']}/{m['cpu_count']} CPUs usable, {m['mem_total_gib']} GiB, "
        f"{m['platform']}; load average at start {m['loadavg']}, at the end {data['loadavg_end']}",
    ]
    for name, w in data["workers"].items():
        vers = ", ".join(f"{k} {v}" for k, v in w["versions"].items() if v)
        flags = f"; XLA_FLAGS=`{w['xla_flags']}`" if "xla_flags" in w else ""
        lines.append(f"- {name}: python {w['python']}, {vers}{flags}")
    if data.get("xla_flags_equal") is False:
        lines.append("- **warning: the JAX workers ran with different XLA_FLAGS**")
    for s in data["settings"]:
        lines.append(f"- setting `{s['name']}`: {s['num_envs']} envs x {s['num_steps']} steps, {s['num_updates']} "
                     f"updates = {s['env_steps']:,} env steps per seed")
    h = data["hyper_parameters"]
    lines += [f"- shared: {h['update_epochs']} epochs x {h['num_minibatches']} minibatches, lr {h['learning_rate']} "
              f"(annealed: {h['anneal_lr']}), Adam eps {h['adam_eps']}, grad-norm clip {h['max_grad_norm']}, gamma "
              f"{h['gamma']}, lambda {h['gae_lambda']}, clip {h['clip_eps']}, entropy {h['ent_coef']}, value coef "
              f"{h['vf_coef']}, {'-'.join(map(str, h['hidden_sizes']))} {h['activation']} actor and critic", ""]
    lines += ["Speed: env steps per second (all seeds of a run / its run time; median of "
              f"{data['reps']} timed call(s)); ratio = ours / peer (> 1: ours faster). Compile = trace + lower + "
              "XLA compile, seconds.", "",
              "| setting | seeds | ours steps/s | rejax steps/s | torch steps/s | ours/rejax | ours/torch | "
              "ours compile s | rejax compile s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["summary"]:
        lines.append(f"| {r['setting']} | {r['layout']} ({r['ours_seeds']}) | {C.fmt_rate(r['ours_steps_per_s'])} | "
                     f"{C.fmt_rate(r['rejax_steps_per_s'])} | {C.fmt_rate(r['torch_steps_per_s'])} | "
                     f"{C.fmt_ratio(r['ours_over_rejax'])} | {C.fmt_ratio(r['ours_over_torch'])} | "
                     f"{_fmt_s(r['ours_compile_s'])} | {_fmt_s(r['rejax_compile_s'])} |")
    lines += ["", "Torch is never vmapped: the vmapped rows compare with its seeds run one after the other "
              "(total steps / total time), the one-seed rows with its median per-process rate.", "",
              f"Every run: final return = mean return of the episodes finished in the last {LAST_UPDATES} updates, "
              f"per seed; mean ± 95% t-interval over seeds (min); seeds >= {THRESHOLD:.0f}.", "",
              "| impl | setting | run | compile s | run s | env steps/s | per seed | final return | seeds >= 475 |",
              "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in data["runs"]:
        s = r["returns"]
        lines.append(f"| {r['impl']} | {r['setting']} | {r['mode']} | {_fmt_s(r['compile_s'])} | {r['run_s']:.2f} | "
                     f"{C.fmt_rate(r['steps_per_s'])} | {C.fmt_rate(r['steps_per_s_per_seed'])} | {_fmt_returns(s)} | "
                     f"{s['seeds_ge_threshold']}/{s['seeds']} |")
    lines += ["", "Aims (from the issue):", ""]
    for a in data["aims"]:
        lines.append(f"- {a['aim']}: {a['value']} -> {'met' if a['met'] else '**not met**'}")
    if data.get("plot"):
        lines += ["", f"Learning curves: `{data['plot']}` (return of finished episodes vs env steps per seed, mean ± "
                      "95% t-interval over seeds)."]
    lines += ["", "What runs:", ""]
    for r in data["runs"]:
        lines.append(f"- {r['impl']} / {r['setting']} / {r['mode']}: {r['description']}")
    lines += ["", "Known differences between the implementations:", ""]
    lines += [f"- {d}" for d in DIFFERENCES]
    lines += ["", "Method: `benchmarks/ppo_cartpole.py` (module docstring)."]
    return "\n".join(lines)


DIFFERENCES = (
    "rejax 0.1.3 hard-codes element-wise `optax.clip` + Adam(eps 1e-8, constant lr); the worker overrides only "
    "`initialize_network_params` to use PureJaxRL's chain (global-norm clip 0.5, eps 1e-5, linear annealing). "
    "rejax keeps one optimiser per network, so the norm is clipped per network (ours and torch: over both).",
    "rejax runs with gymnax 0.0.9 (its pre-1.0 step API); CartPole-v1 dynamics, reward and the 500-step limit are "
    "the same as ours and gymnasium's.",
    "init: ours and torch orthogonal (PureJaxRL's gains), rejax Flax's lecun-normal.",
    "truncation at 500 steps: ours bootstraps from V(final_obs); rejax and torch treat it as termination.",
    "rejax and torch run the critic at every rollout step; ours runs it once per update, batched.",
    "episode statistics: ours LogWrapper; rejax an episode-counter wrapper added by the worker; torch gymnasium's "
    "RecordEpisodeStatistics.",
)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from jaxrl_self.run.stats import mean_ci

    colors = {"ours": "tab:blue", "rejax": "tab:orange", "torch": "tab:green"}
    settings = [s["name"] for s in data["settings"]]
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.2), squeeze=False)
    for ax, name in zip(axes[0], settings):
        vmapped = {r["impl"] for r in data["runs"] if r["setting"] == name and r["vmapped"]}
        for r in data["runs"]:
            # one curve per implementation: its vmapped run where there is one, else its one-seed run
            if r["setting"] != name or (r["impl"] in vmapped and not r["vmapped"]):
                continue
            x = np.asarray(r["curve_env_steps"], np.float64)
            y = np.asarray([[np.nan if v is None else v for v in c] for c in r["curve_returns"]], np.float64)
            cis = [mean_ci(y[:, j]) for j in range(y.shape[1])]
            mean = np.asarray([c.mean for c in cis])
            lo = np.asarray([c.low for c in cis])
            hi = np.asarray([c.high for c in cis])
            ax.plot(x, mean, color=colors[r["impl"]], lw=2, label=f"{r['impl']} ({r['seeds']} seeds)")
            ax.fill_between(x, lo, hi, color=colors[r["impl"]], alpha=0.2)
        ax.axhline(THRESHOLD, color="grey", ls=":", lw=1)
        s = next(s for s in data["settings"] if s["name"] == name)
        ax.set_title(f"{name}: {s['num_envs']} envs x {s['num_steps']} steps")
        ax.set_xlabel("env steps per seed")
        ax.set_ylabel("episode return (finished episodes)")
        ax.set_ylim(0, 520)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("PPO on CartPole-v1" + (" (smoke run)" if data["quick"] else "") + ": mean ± 95% CI over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def orchestrate(args: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    machine = C.machine_info()
    pythons: dict[str, Path | str] = {"ours": sys.executable}
    venvs = {}
    if "rejax" in args.impls:
        pythons["rejax"] = C.ensure_venv("rejax", rejax_requirements(), rebuild=args.rebuild_venvs)
        venvs["rejax"] = _venv_record(pythons["rejax"])
    if "torch" in args.impls:
        pythons["torch"] = C.ensure_venv("torch", list(TORCH_REQUIREMENTS), rebuild=args.rebuild_venvs)
        venvs["torch"] = _venv_record(pythons["torch"])
    env = C.worker_env(args.platform)
    runs = []
    for setting in args.setting_objs:
        if setting.name == "default":
            layouts = [(args.seeds, True)] + ([] if args.no_single_seed else [(1, False)])
        else:
            layouts = [(1, False)] + ([(args.throughput_seeds, True)] if args.throughput_seeds > 1 else [])
        for seeds, vmapped in layouts:
            for impl in ("ours", "rejax"):
                if impl in args.impls:
                    C.log(f"[{NAME}] {impl} {setting.name}: {seeds} seed(s){' vmapped' if vmapped else ''}")
                    runs.append(run_jax(impl, pythons[impl], setting, seeds, vmapped, args, env))
    for setting in args.setting_objs:  # the slow loop last, so a long torch run delays nothing else
        if "torch" not in args.impls:
            continue
        if setting.name == "default" and args.torch_seeds:
            runs.append(run_torch(pythons["torch"], setting, args.torch_seeds, args))
        elif setting.name == "throughput" and args.torch_throughput_updates:
            runs.append(run_torch(pythons["torch"], dataclasses.replace(setting,
                                                                        num_updates=args.torch_throughput_updates),
                                  1, args))
    for r in runs:
        r["returns"] = returns_summary(r["final_returns"])
    summary, aims = summarise(runs)
    workers = {}
    for r in runs:
        workers.setdefault(r["impl"], {k: v for k, v in r["worker"].items()})
    flags = {w["xla_flags"] for k, w in workers.items() if k != "torch"}
    output = args.output
    data = {
        "benchmark": NAME,
        "quick": args.quick,
        "created": C.utc_now(),
        "command": " ".join(["python", "benchmarks/ppo_cartpole.py", *sys.argv[1:]]),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "machine": machine,
        "loadavg_end": _load(),
        "settings": [dataclasses.asdict(s) | {"env_steps": s.env_steps} for s in args.setting_objs],
        "torch_throughput_updates": args.torch_throughput_updates,
        "hyper_parameters": HYPER,
        "reps": args.reps,
        "threshold": THRESHOLD,
        "final_return_definition": f"mean return of the episodes finished in the last {LAST_UPDATES} updates",
        "xla_flags_passed_to_workers": env["XLA_FLAGS"],
        "xla_flags_equal": len(flags) <= 1,
        "workers": workers,
        "venvs": venvs,
        "differences": list(DIFFERENCES),
        "summary": summary,
        "aims": aims,
        "runs": runs,
    }
    png = C.RESULTS_DIR / f"{output}.png"
    try:
        plot(data, png)
        data["plot"] = png.name
    except Exception as e:  # a plot must not cost the measurements
        C.log(f"[{NAME}] plot failed: {e!r}")
        data["plot"] = None
    C.publish(NAME, output, data, render_markdown(data), data["wall_s"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        worker_main(json.loads(args.worker))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
