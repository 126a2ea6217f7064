"""Environment throughput: jaxrl_self's CartPole and Maze against gymnax's CartPole-v1 and jaxued's Maze.

    python benchmarks/env_throughput.py            # full run -> benchmarks/results/env_throughput.{json,md}
    python benchmarks/env_throughput.py --quick    # smoke run -> env_throughput.quick.{json,md}

What is measured (identically for every implementation): for each environment and each number of parallel
environments ``N``, one jitted program

    keys  = split(key, N);  obs, state = vmap(reset)(keys)
    scan S times:  key, k_act, k_step = split(key, 3)
                   action = randint(k_act, (N,), 0, num_actions)           # uniform random policy
                   obs, state, reward, done = vmap(step)(split(k_step, N), state, action)   # auto-resets
                   acc += sum(obs) + sum(reward) + sum(done)               # consume the outputs (no dead code)
    return acc, number of episode ends

is compiled ahead of time (``jax.jit(f).lower(key).compile()``, timed apart and reported as compile time), run
once to warm up, then timed: each repetition calls it ``k`` times in a row (``k`` chosen so a repetition lasts
>= ``--min-rep-s``), blocking on each result; throughput = ``N * S * k / seconds`` env steps per second (the N
resets at the start of a call are included: one per S steps per env); the figure reported is the median over
``--reps`` repetitions (all samples are kept in the JSON).

Implementations and what each comparison means:

* ``cartpole``: ``jaxrl_self.envs.make("cartpole")`` vs ``gymnax.make("CartPole-v1")``. Both auto-reset
  in the same step with a fresh reset (both compute the reset every step and select).
* ``maze`` / ``resample`` (domain randomisation: each new episode gets a fresh random level): our
  ``make("maze")`` (13x13, 5x5 view, 25-wall generator; a ``LevelEnv`` auto-resets by sampling a level) vs
  jaxued's ``Maze(13, 13, agent_view_size=5)`` in ``AutoResetWrapper(env, make_level_generator(13, 13, 25))``.
* ``maze`` / ``replay`` (each env replays its level, what PLR scoring needs): ``ReplayLevel(make("maze"))``
  vs ``AutoReplayWrapper(Maze(13, 13, agent_view_size=5))``; the first levels come from the same generators.

Peers run in their own venv ``benchmarks/.venvs/peers``, built once from PyPI (``gymnax``, ``jaxued``, and
``six``, which gymnax 1.0.1 imports without declaring it) with whatever jax they resolve to (versions are
recorded); ours run with the interpreter running this script. Each (environment, implementation) is one
worker subprocess; workers run one after the other, never at once, with
the same ``XLA_FLAGS`` (jaxrl_self's XLA:CPU guard flag is passed to the peers as well), the same
``JAX_PLATFORMS`` and no persistent compilation cache.

Known differences, by design of the libraries (not of the harness):

* keys: ours uses typed keys (``jax.random.key``), the peers legacy ``uint32[2]`` keys
  (``jax.random.PRNGKey``), because jaxued's ``AutoResetWrapper`` stores a legacy key in its state. Both are
  threefry2x32; the random bits cost the same.
* actions: each env's own action space is sampled: our maze has 3 actions, jaxued's declares minigrid's 7
  (4 of which do nothing), gymnax/our CartPole 2.
* jaxued's ``AutoResetWrapper`` uses ``jax.tree_map``, removed in jax >= 0.6; the peer worker aliases it to
  ``jax.tree.map`` (trace-time only) when missing.
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
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402  (stdlib only at import time; usable from the peer venv too)

NAME = "env_throughput"
FULL_SIZES = (1, 64, 1024, 4096)
QUICK_SIZES = (1, 64)
ENVS = ("cartpole", "maze")
MAZE_MODES = ("resample", "replay")
PEER_OF = {"cartpole": "gymnax", "maze": "jaxued"}
#: gymnax 1.0.1 imports ``six`` (in gymnax.utils.load_mnist) without declaring it, hence the explicit ``six``.
PEER_REQUIREMENTS = ("gymnax", "jaxued", "six")
PEER_PACKAGES = ("jax", "jaxlib", "flax", "numpy", "chex", "gymnax", "jaxued")
OURS_PACKAGES = ("jax", "jaxlib", "flax", "numpy", "jaxrl-self")
#: Aims of the issue: minimum ours/peer ratio, and the N it applies to (None: every N).
AIMS = {"cartpole": (1.0, None), "maze": (1.5, 1024)}
FULL_DEFAULTS = dict(reps=5, min_rep_s=1.0, quick_steps=None)
QUICK_DEFAULTS = dict(reps=3, min_rep_s=0.05, quick_steps=100)
MAZE_SETTINGS = dict(height=13, width=13, view_size=5, max_walls=25, max_steps_in_episode=250)


def default_steps(n_envs: int) -> int:
    """Scan length ``S`` for ``N`` envs: ``2**18 / N`` clipped to [128, 1000] (1000 for N <= 256, 256 for
    N = 1024, 128 for N = 4096). One call is then short enough to repeat (a repetition lasts >= ``--min-rep-s``,
    so every figure is timed over >= 5 s in all) and long enough that the N resets at its start cost < 1%."""
    return int(min(1000, max(128, 2**18 // n_envs)))


# ================================================================================================ worker side
@dataclasses.dataclass(frozen=True)
class EnvFns:
    """One implementation, reduced to what the measured program needs (unbatched functions).

    ``reset(key) -> (obs, state)``; ``step(key, state, action) -> (obs, state, reward, done)`` with same-step
    auto-reset and ``done = terminated | truncated``; ``make_key(seed)`` builds the root key.
    """

    reset: Callable[[Any], tuple[Any, Any]]
    step: Callable[[Any, Any, Any], tuple[Any, Any, Any, Any]]
    num_actions: int
    make_key: Callable[[int], Any]
    description: str
    settings: dict[str, Any]


def _ours(env_name: str, mode: str) -> EnvFns:
    import jaxrl_self  # noqa: F401  (XLA guard before any computation)
    import jax

    from jaxrl_self import envs

    if env_name == "cartpole":
        env = envs.make("cartpole")
        desc = 'jaxrl_self.envs.make("cartpole")'
    elif mode == "resample":
        env = envs.make("maze")
        desc = 'jaxrl_self.envs.make("maze") (LevelEnv default auto-reset: sample a new level)'
    else:
        env = envs.ReplayLevel(envs.make("maze"))
        desc = 'jaxrl_self.envs.ReplayLevel(jaxrl_self.envs.make("maze"))'
    params = env.default_params
    if env_name == "maze":
        base = env.unwrapped
        got = dict(height=base.height, width=base.width, view_size=base.view_size, max_walls=base.max_walls,
                   max_steps_in_episode=int(params.max_steps_in_episode))
        # jaxued's Maze and generator: walls drawn with replacement, agent not drawn, uint8 image, time penalty.
        flags = dict(replace_wall_pos=base.replace_wall_pos, sample_n_walls=base.sample_n_walls,
                     see_agent=base.see_agent, normalize_obs=base.normalize_obs, penalize_time=base.penalize_time)
        want = dict(replace_wall_pos=True, sample_n_walls=False, see_agent=False, normalize_obs=False,
                    penalize_time=True)
        if got != MAZE_SETTINGS or flags != want:
            raise RuntimeError(f"our default maze {got | flags} differs from the jaxued setup {MAZE_SETTINGS | want}")

    def step(key, state, action):
        obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
        return obs, state, reward, terminated | truncated

    return EnvFns(
        reset=lambda key: env.reset(key, params),
        step=step,
        num_actions=int(env.action_space(params).n),
        make_key=jax.random.key,
        description=desc,
        settings={"repr": repr(env), "params": repr(params)},
    )


def _peer(env_name: str, mode: str) -> EnvFns:
    import jax

    if env_name == "cartpole":
        import gymnax

        env, params = gymnax.make("CartPole-v1")

        def step(key, state, action):
            obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
            return obs, state, reward, terminated | truncated

        return EnvFns(lambda key: env.reset(key, params), step, int(env.action_space(params).n),
                      jax.random.PRNGKey, 'gymnax.make("CartPole-v1")', {"params": repr(params)})

    if not hasattr(jax, "tree_map"):  # jaxued 0.0.1 wrappers call jax.tree_map, removed in jax 0.6
        jax.tree_map = jax.tree.map
    from jaxued.environments import Maze
    from jaxued.environments.maze import make_level_generator
    from jaxued.wrappers import AutoReplayWrapper, AutoResetWrapper

    s = MAZE_SETTINGS
    base = Maze(max_height=s["height"], max_width=s["width"], agent_view_size=s["view_size"], normalize_obs=False)
    sample_level = make_level_generator(s["height"], s["width"], s["max_walls"])
    if mode == "resample":
        env = AutoResetWrapper(base, sample_level)
        desc = (f"jaxued AutoResetWrapper(Maze({s['height']}, {s['width']}, agent_view_size={s['view_size']}), "
                f"make_level_generator({s['height']}, {s['width']}, {s['max_walls']}))")
    else:
        env = AutoReplayWrapper(base)
        desc = (f"jaxued AutoReplayWrapper(Maze({s['height']}, {s['width']}, agent_view_size={s['view_size']})), "
                f"first levels from make_level_generator({s['height']}, {s['width']}, {s['max_walls']})")
    params = env.default_params.replace(max_steps_in_episode=s["max_steps_in_episode"])

    def reset(key):
        k_level, k_reset = jax.random.split(key)
        return env.reset_to_level(k_reset, sample_level(k_level), params)

    def step(key, state, action):
        obs, state, reward, done, _ = env.step(key, state, action, params)
        return obs, state, reward, done

    return EnvFns(reset, step, int(env.action_space(params).n), jax.random.PRNGKey, desc,
                  {"params": repr(params)})


def make_program(fns: EnvFns, n_envs: int, n_steps: int) -> Callable[[Any], tuple[Any, Any]]:
    """The measured program: ``key -> (checksum: float32, episode_ends: int32)`` (see the module docstring)."""
    import jax
    import jax.numpy as jnp

    def checksum(tree) -> jax.Array:
        return sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(tree))

    def program(key):
        k_reset, k_loop = jax.random.split(key)
        obs, state = jax.vmap(fns.reset)(jax.random.split(k_reset, n_envs))

        def body(carry, _):
            state, key, acc, ends = carry
            key, k_act, k_step = jax.random.split(key, 3)
            action = jax.random.randint(k_act, (n_envs,), 0, fns.num_actions)
            obs, state, reward, done = jax.vmap(fns.step)(jax.random.split(k_step, n_envs), state, action)
            acc = acc + checksum(obs) + jnp.sum(reward, dtype=jnp.float32) + jnp.sum(done, dtype=jnp.float32)
            return (state, key, acc, ends + jnp.sum(done, dtype=jnp.int32)), None

        init = (state, k_loop, checksum(obs), jnp.zeros((), jnp.int32))
        (_, _, acc, ends), _ = jax.lax.scan(body, init, None, length=n_steps)
        return acc, ends

    return program


def measure(fns: EnvFns, n_envs: int, n_steps: int, *, reps: int, min_rep_s: float, seed: int) -> dict[str, Any]:
    """Compile and time :func:`make_program` for one ``N``; returns one result row."""
    key = fns.make_key(seed)
    compiled, lower_s, compile_s = C.compile_timed(make_program(fns, n_envs, n_steps), key)
    timed = C.time_calls(lambda: compiled(key), reps=reps, min_rep_s=min_rep_s)
    acc, ends = compiled(key)
    if not math.isfinite(float(acc)):
        raise RuntimeError(f"non-finite checksum {float(acc)} for N={n_envs}")
    steps_per_call = n_envs * n_steps
    samples = [steps_per_call / s for s in timed.seconds_per_call]
    return {
        "n_envs": n_envs,
        "n_steps": n_steps,
        "steps_per_call": steps_per_call,
        "calls_per_rep": timed.calls_per_rep,
        "repetitions": reps,
        "lower_s": round(lower_s, 4),
        "xla_compile_s": round(compile_s, 4),
        "compile_s": round(lower_s + compile_s, 4),
        "first_call_s": round(timed.warmup_s, 6),
        "steps_per_s": statistics.median(samples),
        "steps_per_s_samples": samples,
        "seconds_per_call_samples": timed.seconds_per_call,
        "episode_ends_per_step": int(ends) / steps_per_call,
    }


def worker_main(spec: dict[str, Any]) -> None:
    """Measure one (environment, mode, implementation) at every size in ``spec`` and emit the result."""
    impl, env_name, mode = spec["impl"], spec["env"], spec["mode"]
    fns = _ours(env_name, mode) if impl == "ours" else _peer(env_name, mode)
    info = C.worker_info(OURS_PACKAGES if impl == "ours" else PEER_PACKAGES)
    rows = []
    for n in spec["sizes"]:
        s = int(spec["steps"][str(n)])
        C.log(f"  [{impl}:{env_name}{'/' + mode if mode else ''}] N={n} S={s} ...")
        row = measure(fns, n, s, reps=spec["reps"], min_rep_s=spec["min_rep_s"], seed=spec["seed"])
        C.log(f"  [{impl}:{env_name}{'/' + mode if mode else ''}] N={n}: {C.fmt_rate(row['steps_per_s'])} steps/s "
              f"(compile {row['compile_s']:.2f} s, {row['calls_per_rep']} calls/rep)")
        rows.append(row)
    C.emit_result({"worker": info, "description": fns.description, "num_actions": fns.num_actions,
                   "settings": fns.settings, "rows": rows})


# ================================================================================================ orchestrator
def _csv(kind: type, allowed: tuple | None = None, name: str = ""):
    def parse(text: str) -> tuple:
        items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        if not items:
            raise argparse.ArgumentTypeError(f"{name} must be a non-empty comma-separated list, got {text!r}")
        bad = [x for x in items if allowed is not None and x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{name}: unknown value(s) {bad}; allowed: {', '.join(allowed)}")
        if kind is int and min(items) < 1:
            raise argparse.ArgumentTypeError(f"{name} must be positive integers, got {text!r}")
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Env steps per second of jaxrl_self's CartPole/Maze vs gymnax CartPole-v1 and jaxued Maze, "
                    "vmapped over N envs inside jit + lax.scan (compile time reported apart).",
        epilog="Results: benchmarks/results/env_throughput.{json,md}; --quick and partial runs write to "
               "other names so they never overwrite the full results.",
    )
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: N in {QUICK_SIZES}, S={QUICK_DEFAULTS['quick_steps']}, "
                        f"{QUICK_DEFAULTS['reps']} reps of >= {QUICK_DEFAULTS['min_rep_s']} s; writes "
                        f"{NAME}.quick.*")
    p.add_argument("--envs", type=_csv(str, ENVS, "--envs"), default=ENVS, help="comma list (default: all)")
    p.add_argument("--sizes", type=_csv(int, None, "--sizes"), default=None,
                   help=f"comma list of N (default {','.join(map(str, FULL_SIZES))}; quick: "
                        f"{','.join(map(str, QUICK_SIZES))})")
    p.add_argument("--maze-modes", type=_csv(str, MAZE_MODES, "--maze-modes"), default=MAZE_MODES,
                   help="maze auto-reset modes to compare (default: resample,replay)")
    p.add_argument("--steps", type=int, default=None,
                   help="scan length S for every N (default: 2**18/N clipped to [128, 1000]; quick: 100)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5; quick 3)")
    p.add_argument("--min-rep-s", type=float, default=None,
                   help="minimum seconds per repetition (default 1.0; quick 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--platform", default="cpu",
                   help="JAX_PLATFORMS for every worker (default cpu; the peer venv has CPU jax only)")
    p.add_argument("--no-peers", action="store_true", help="measure ours only (no peer venv)")
    p.add_argument("--rebuild-peers", action="store_true", help="rebuild benchmarks/.venvs/peers from PyPI")
    p.add_argument("--peer-requirements", default=" ".join(PEER_REQUIREMENTS),
                   help="pip requirements of the peer venv, space-separated (default: %(default)r)")
    p.add_argument("--output", default=None,
                   help=f"result file stem under benchmarks/results (default {NAME}, or {NAME}.quick / "
                        f"{NAME}.partial for --quick / non-default selections)")
    p.add_argument("--worker-timeout", type=float, default=1800.0, help="seconds allowed per worker")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: JSON spec of one worker
    args = p.parse_args(argv)
    if args.worker is not None:
        return args
    d = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    args.reps = d["reps"] if args.reps is None else args.reps
    args.min_rep_s = d["min_rep_s"] if args.min_rep_s is None else args.min_rep_s
    if args.reps < 1:
        p.error(f"--reps must be >= 1, got {args.reps}")
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    default_sizes = QUICK_SIZES if args.quick else FULL_SIZES
    partial = (
        (args.sizes is not None and tuple(args.sizes) != default_sizes)
        or tuple(args.envs) != ENVS
        or tuple(args.maze_modes) != MAZE_MODES
        or args.no_peers
        or args.steps is not None
        or (not args.quick and (args.reps < FULL_DEFAULTS["reps"] or args.min_rep_s < FULL_DEFAULTS["min_rep_s"]))
    )
    args.sizes = tuple(args.sizes or default_sizes)
    if args.steps is None and args.quick:
        args.steps = d["quick_steps"]
    if args.output is None:
        args.output = NAME + (".quick" if args.quick else "") + (".partial" if partial else "")
    return args


@dataclasses.dataclass(frozen=True)
class Case:
    env: str
    mode: str  # "" for cartpole
    impl: str  # "ours" or the peer's name

    @property
    def label(self) -> str:
        return f"{self.env}/{self.mode}" if self.mode else self.env


def _cases(args: argparse.Namespace) -> list[Case]:
    out = []
    for env in args.envs:
        for mode in (args.maze_modes if env == "maze" else ("",)):
            out.append(Case(env, mode, "ours"))
            if not args.no_peers:
                out.append(Case(env, mode, PEER_OF[env]))
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarise(results: list[dict], args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Per (env, mode, N): ours vs peer with the ratio; and the aims of the issue checked against them."""
    by = {(r["env"], r["mode"], r["impl"], r["n_envs"]): r for r in results}
    table, aims = [], []
    for env in args.envs:
        for mode in (args.maze_modes if env == "maze" else ("",)):
            peer = PEER_OF[env]
            ratios = {}
            for n in args.sizes:
                o, q = by.get((env, mode, "ours", n)), by.get((env, mode, peer, n))
                ratio = _ratio(o and o["steps_per_s"], q and q["steps_per_s"])
                ratios[n] = ratio
                table.append({
                    "env": env, "mode": mode, "n_envs": n, "peer": peer,
                    "ours_steps_per_s": o and o["steps_per_s"], "peer_steps_per_s": q and q["steps_per_s"],
                    "ratio": ratio,
                    "ours_compile_s": o and o["compile_s"], "peer_compile_s": q and q["compile_s"],
                })
            target, at_n = AIMS[env]
            checked = {n: r for n, r in ratios.items() if (at_n is None or n == at_n) and r is not None}
            aims.append({
                "env": env, "mode": mode, "peer": peer, "min_ratio": target,
                "at_n_envs": at_n if at_n is not None else "all",
                "met": (min(checked.values()) >= target) if checked else None,
                "ratios": {str(n): r for n, r in checked.items()},
            })
    return table, aims


def render_markdown(data: dict[str, Any]) -> str:
    s, m = data["settings"], data["machine"]
    lines = ["# Environment throughput: jaxrl_self vs gymnax / jaxued", ""]
    if data["quick"]:
        lines += ["> **SMOKE RUN (`--quick`)**: tiny scans and few repetitions on a possibly busy machine. "
                  "These numbers only show that the harness works; they are not measurements.", ""]
    lines += [
        f"- created {data['created']} by `{data['command']}`",
        f"- machine: {m['cpu_model']}, {m['cpus_usable']}/{m['cpu_count']} CPUs usable, "
        f"{m['mem_total_gib']} GiB, {m['platform']}; load average at start {m['loadavg']}",
        f"- settings: scan length S per N: {', '.join(f'N={n}: S={v}' for n, v in s['steps'].items())}; median "
        f"of {s['reps']} repetitions of >= {s['min_rep_s']} s each; seed {s['seed']}; "
        f"JAX_PLATFORMS={s['platform']}",
    ]
    for name, w in data["workers"].items():
        vers = ", ".join(f"{k} {v}" for k, v in w["versions"].items() if v)
        lines.append(f"- {name} worker: python {w['python']}, {vers}; backend {w['backend']}; "
                     f"XLA_FLAGS=`{w['xla_flags']}`")
    if data.get("xla_flags_equal") is False:
        lines.append("- **warning: the workers ran with different XLA_FLAGS**")
    lines += ["", "Throughput in env steps per second (median); ratio = ours / peer (> 1: ours faster). "
              "Compile = trace + lower + XLA compile of the whole program, seconds.", ""]
    lines += ["| env | auto-reset | N | ours steps/s | peer | peer steps/s | ours/peer | ours compile s | "
              "peer compile s |", "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in data["summary"]:
        reset = r["mode"] or "fresh reset"
        lines.append(
            f"| {r['env']} | {reset} | {r['n_envs']} | {C.fmt_rate(r['ours_steps_per_s'])} | {r['peer']} | "
            f"{C.fmt_rate(r['peer_steps_per_s'])} | {C.fmt_ratio(r['ratio'])} | "
            f"{_fmt_s(r['ours_compile_s'])} | {_fmt_s(r['peer_compile_s'])} |")
    lines += ["", "Aims (from the issue):", ""]
    for a in data["aims"]:
        met = {True: "met", False: "**not met**", None: "not measured"}[a["met"]]
        where = "every N" if a["at_n_envs"] == "all" else f"N = {a['at_n_envs']}"
        label = a["env"] + (f" ({a['mode']})" if a["mode"] else "")
        lines.append(f"- {label}: ours/{a['peer']} >= {a['min_ratio']} at {where}: {met}")
    lines += ["", "What is compared:", ""]
    for c in data["cases"]:
        lines.append(f"- `{c['impl']}` {c['label']}: {c['description']} ({c['num_actions']} actions)")
    lines += ["", "Method: `benchmarks/env_throughput.py` (module docstring). Random uniform actions from "
              "`jax.random.randint` on a split key every step; outputs (obs, reward, done) are summed into the "
              "scan carry so nothing is dead code; typed keys for ours, legacy uint32 keys for the peers "
              "(jaxued's AutoResetWrapper stores one), both threefry2x32."]
    return "\n".join(lines)


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def orchestrate(args: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    cases = _cases(args)
    steps = {str(n): (args.steps or default_steps(n)) for n in args.sizes}
    machine = C.machine_info()
    peer_python, peer_venv = None, None
    if any(c.impl != "ours" for c in cases):
        peer_python = C.ensure_venv("peers", args.peer_requirements.split(), rebuild=args.rebuild_peers)
        meta = C.venv_metadata(peer_python)
        peer_venv = {"path": str(peer_python.parent.parent.relative_to(C.REPO_ROOT)),
                     "requirements": meta.get("requirements"), "created": meta.get("created"),
                     "freeze": meta.get("freeze")}
    env = C.worker_env(args.platform)
    script = Path(__file__).resolve()
    results, workers, case_info = [], {}, []
    for case in cases:
        spec = {"impl": case.impl, "env": case.env, "mode": case.mode, "sizes": list(args.sizes), "steps": steps,
                "reps": args.reps, "min_rep_s": args.min_rep_s, "seed": args.seed}
        python = sys.executable if case.impl == "ours" else peer_python
        C.log(f"[{NAME}] {case.impl} {case.label}: {python}")
        with C.timing_lock(f"{NAME} {case.impl} {case.label}") as lock:
            load_before = list(os.getloadavg())
            t0 = time.perf_counter()
            out = C.run_worker(python, script, ["--worker", json.dumps(spec)], env=env, timeout=args.worker_timeout)
        side = "ours" if case.impl == "ours" else "peers"
        workers.setdefault(side, out["worker"])
        case_info.append({"env": case.env, "mode": case.mode, "impl": case.impl, "label": case.label,
                          "description": out["description"], "num_actions": out["num_actions"],
                          "settings": out["settings"], "worker_wall_s": round(time.perf_counter() - t0, 2),
                          "loadavg_before": [round(x, 2) for x in load_before],
                          "loadavg_after": [round(x, 2) for x in os.getloadavg()], "timing": lock})
        for row in out["rows"]:
            results.append({"env": case.env, "mode": case.mode, "impl": case.impl, **row})
    summary, aims = summarise(results, args)
    flags = {w["xla_flags"] for w in workers.values()}
    data = {
        "benchmark": NAME,
        "quick": args.quick,
        "created": C.utc_now(),
        "command": " ".join(["python", "benchmarks/env_throughput.py", *sys.argv[1:]]),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "machine": machine,
        "settings": {"envs": list(args.envs), "maze_modes": list(args.maze_modes), "sizes": list(args.sizes),
                     "steps": steps, "reps": args.reps, "min_rep_s": args.min_rep_s, "seed": args.seed,
                     "platform": args.platform, "maze": MAZE_SETTINGS,
                     "xla_flags_passed_to_workers": env["XLA_FLAGS"]},
        "workers": workers,
        "xla_flags_equal": len(flags) <= 1,
        "peer_venv": peer_venv,
        "cases": case_info,
        "summary": summary,
        "aims": aims,
        "results": results,
    }
    C.publish(NAME, args.output, data, render_markdown(data), data["wall_s"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        worker_main(json.loads(args.worker))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
