"""Peak host memory of the default CLI runs (PPO, PLR⊥, GRPO, T-PPO) and what it grows with.

    python benchmarks/memory.py              # every row below, about 5-8 minutes on 2 cores
    python benchmarks/memory.py --only ppo   # one algorithm's rows

Each row is one ``jaxrl-self train ALGO --env ENV`` process (the algorithm's default config and environment) with
one knob changed, measured as the peak resident set size of that process (``ru_maxrss`` of ``os.wait4`` on it:
the high-water mark over its whole life, imports, compilation, run, checkpoints and end-of-run evaluation
included). The rows that would run long are capped to a few updates with ``--total-timesteps`` or
``--num-updates`` (the row says so): every array of a run has its shape fixed by the config before the first
update (buffers, rollouts, parameters, optimiser state), so the peak does not grow with updates, apart from the
metrics kept on the host (a few floats per update). The compilation cache is off (``--compile-cache off``), so
each row pays, and measures, its own compilation. A baseline row measures the interpreter with ``jaxrl_self``,
jax and a CPU backend and nothing else.

Rows run one after the other, each under the machine-wide timing lock (``_common.timing_lock``), so none runs while
a timed benchmark does (this is no timing job, but it would disturb one). Writes
``benchmarks/results/memory.{json,md}``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

NAME = "memory"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "jaxrl-self")
BASELINE = "import jaxrl_self.cli, jax, jax.numpy as jnp; jnp.zeros(1).block_until_ready()"


@dataclasses.dataclass(frozen=True)
class Row:
    algo: str  # "baseline" for the interpreter alone
    env: str
    knob: str  # the knob this row varies ("default" for the algorithm's default run)
    value: str  # its value, as text
    flags: tuple[str, ...] = ()  # the knob's flags
    cap: tuple[str, ...] = ()  # flags that cap the run's length (memory does not grow with updates)


PLR_CAP = ("--total-timesteps", "32768")  # 4 updates of 32 envs x 256 steps (default: 2M steps, 244 updates)
LM_CAP = ("--num-updates", "4")  # default: 200 updates

ROWS = [
    Row("baseline", "-", "interpreter + jax", "-"),
    Row("ppo", "cartpole", "default", "4 envs x 128 steps"),
    *[Row("ppo", "cartpole", "num_envs", str(n), ("--num-envs", str(n)), ("--total-timesteps", str(n * 128 * 8)))
      for n in (64, 1024, 4096)],
    Row("robust-plr", "maze", "default", "32 envs x 256 steps, capacity 4000", (), PLR_CAP),
    *[Row("robust-plr", "maze", "capacity", str(c), ("--capacity", str(c)), PLR_CAP) for c in (1000, 16000)],
    *[Row("robust-plr", "maze", "num_envs", str(n), ("--num-envs", str(n)), ("--total-timesteps", str(n * 256 * 4)))
      for n in (8, 128)],
    Row("grpo", "addition", "default", "16 prompts x 8, 16 new tokens", (), LM_CAP),
    *[Row("grpo", "addition", "group_size", str(g), ("--group-size", str(g)), LM_CAP) for g in (32, 128)],
    Row("grpo", "addition", "max_new_tokens", "8", ("--max-new-tokens", "8"), LM_CAP),
    Row("tppo", "chain", "default", "64 slots, window 8, 38 new tokens", (), LM_CAP),
    *[Row("tppo", "chain", "num_slots", str(s), ("--num-slots", str(s)), LM_CAP) for s in (256, 1024)],
]


def measure(row: Row, work: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run the row's process; its peak RSS (MiB), wall seconds and exit status."""
    if row.algo == "baseline":
        cmd = [sys.executable, "-c", BASELINE]
    else:
        run_dir = work / f"{row.algo}-{row.knob}-{row.value}".replace(" ", "_")
        cmd = [sys.executable, "-m", "jaxrl_self.cli", "train", row.algo, "--env", row.env, *row.flags, *row.cap,
               "--no-progress", "--keep-checkpoints", "0", "--compile-cache", "off", "--run-dir", str(run_dir)]
    log_path = work / "last.log"
    with C.timing_lock(f"{NAME} {row.algo} {row.knob}={row.value}") as lock, open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=C.REPO_ROOT)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise C.WorkerError(f"{' '.join(cmd)} failed (exit {code}):\n{log_path.read_text()[-3000:]}")
    peak_mib = usage.ru_maxrss / 1024  # Linux: kilobytes
    C.log(f"[{NAME}] {row.algo} {row.knob}={row.value}: peak RSS {peak_mib:.0f} MiB, wall {wall:.1f} s "
          f"(load {lock['load1_before']} -> {lock['load1_after']})")
    return {**dataclasses.asdict(row), "command": " ".join(cmd[1:]).replace(str(work), "TMP"),
            "peak_rss_mib": round(peak_mib, 1), "wall_s": round(wall, 2), "timing": lock}


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    base = next((r["peak_rss_mib"] for r in data["rows"] if r["algo"] == "baseline"), None)
    lines = [
        "# Peak host memory of the default CLI runs", "",
        f"- created {data['created']} by `{data['command']}`; wall {data['wall_s']} s",
        f"- machine: {m['cpu_model']}, {m['cpus_usable']}/{m['cpu_count']} CPUs usable, {m['mem_total_gib']} GiB, "
        f"{m['platform']}; {versions}",
        "- each row: one `jaxrl-self train ALGO --env ENV [knob] [cap] --no-progress --keep-checkpoints 0 "
        "--compile-cache off` process; peak RSS = `ru_maxrss` of that process over its whole life (compile "
        "included)", "",
        "| algorithm | env | knob | value | cap (memory does not grow with updates) | peak RSS MiB | over baseline MiB "
        "| wall s |",
        "|---|---|---|---|---|---:|---:|---:|",
    ]
    for r in data["rows"]:
        over = "-" if base is None or r["algo"] == "baseline" else f"{r['peak_rss_mib'] - base:.0f}"
        lines.append(f"| {r['algo']} | {r['env']} | {r['knob']} | {r['value']} | {' '.join(r['cap']) or '-'} | "
                     f"{r['peak_rss_mib']:.0f} | {over} | {r['wall_s']:.1f} |")
    lines += ["", "Baseline: the interpreter with `jaxrl_self.cli`, jax and a CPU backend, nothing compiled.", "",
              "Method: `benchmarks/memory.py` (module docstring)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    algos = sorted({r.algo for r in ROWS})
    ap.add_argument("--only", nargs="+", choices=algos, default=algos, help="algorithms to measure")
    ap.add_argument("--output", default=NAME, help="result file stem under benchmarks/results/")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per process")
    args = ap.parse_args()
    t_start = time.perf_counter()
    machine = C.machine_info()
    env = C.worker_env("cpu")
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxrl_self_memory_") as tmp:
        for row in ROWS:
            if row.algo in args.only:
                rows.append(measure(row, Path(tmp), env, args.timeout))
    data = {"benchmark": NAME, "created": C.utc_now(),
            "command": " ".join(["python", "benchmarks/memory.py", *sys.argv[1:]]),
            "wall_s": round(time.perf_counter() - t_start, 1), "machine": machine,
            "versions": C.package_versions(PACKAGES), "xla_flags": env.get("XLA_FLAGS", ""), "rows": rows}
    C.publish(NAME, args.output, data, markdown(data), data["wall_s"])


if __name__ == "__main__":
    main()
