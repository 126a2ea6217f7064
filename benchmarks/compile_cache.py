"""Compiles paid once: the first and the second process of the README's first command, with the CLI's persistent
compilation cache (``jaxrl_self/run/compile_cache.py``).

    python benchmarks/compile_cache.py              # 3 pairs of `jaxrl-self train ppo --env cartpole`, and of it
                                                    # with --no-progress
    python benchmarks/compile_cache.py --quick      # a tiny config, to check the script

What is measured: a *pair* is two processes of the same command, one after the other, sharing one cache folder that
is emptied before the pair; the first compiles and fills it, the second loads its programs from it. Two variants:
the README's command as it is, and the same with ``--no-progress``. The difference matters: JAX never writes a
program that holds host callbacks to its persistent cache, and the progress bar is fed by an ``io_callback`` in the
training program's scan, so with the bar on only the init program is cached. For each process:
the wall time of the whole process (interpreter start, imports, compile, run, checkpoints, end-of-run evaluation;
what a user waits for) and the CLI's own ``compile_s`` from the run folder's ``summary.json`` (tracing, lowering
and compiling or loading the init and chunk programs). Figures are medians over ``--pairs`` pairs. Each process
is one timed row under the machine-wide timing lock (``_common.timing_lock``), which records the 1-minute load
average before and after it. The processes get the benchmark worker environment (``_common.worker_env``: the XLA
guard flag, ``JAX_PLATFORMS=cpu``) with the cache folder passed as ``--compile-cache``.

Writes ``benchmarks/results/compile_cache.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

NAME = "compile_cache"
#: README.md's first command (the test tests/test_benchmark_claims.py holds the README to it).
COMMAND = ("train", "ppo", "--env", "cartpole")
#: The variants measured: extra flags after the command.
VARIANTS = {"readme": (), "no-progress": ("--no-progress",)}
QUICK_FLAGS = ("--total-timesteps", "1024", "--num-envs", "4", "--num-steps", "32", "--update-epochs", "1",
               "--num-minibatches", "2")
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "jaxrl-self")


def _folder_stats(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def run_process(argv: list[str], cache: Path, run_dir: Path, env: dict[str, str], label: str,
                timeout: float) -> dict[str, Any]:
    """One CLI process, timed as a whole; its summary.json figures and what the cache folder holds after it."""
    cmd = [sys.executable, "-m", "jaxrl_self.cli", *argv, "--run-dir", str(run_dir), "--compile-cache", str(cache)]
    with C.timing_lock(f"{NAME} {label}") as lock:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=C.REPO_ROOT, timeout=timeout)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise C.WorkerError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    s = json.loads((run_dir / "summary.json").read_text())
    entries, size = _folder_stats(cache)
    accounted = s["compile_s"] + s["run_s"] + s.get("checkpoint_s", 0.0)
    row = {"process": label, "wall_s": round(wall, 3), "compile_s": round(s["compile_s"], 3),
           "compile_init_s": round(s.get("compile_init_s", 0.0), 3),
           "compile_chunk_s": round(s.get("compile_chunk_s", 0.0), 3), "run_s": round(s["run_s"], 3),
           "checkpoint_s": round(s.get("checkpoint_s", 0.0), 3), "other_s": round(wall - accounted, 3),
           "env_steps": s.get("env_steps"), "final_return": (s.get("final_return") or {}).get("mean"),
           "cache_entries_after": entries, "cache_bytes_after": size, "timing": lock}
    C.log(f"[{NAME}] {label}: wall {wall:.1f} s, compile {s['compile_s']:.2f} s, run {s['run_s']:.1f} s, "
          f"cache {entries} files / {size / 2**20:.1f} MiB (load {lock['load1_before']} -> {lock['load1_after']})")
    return row


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over pairs of one variant's rows: per process (first, second) and the second/first ratios."""
    keys = ("compile_s", "wall_s", "run_s", "checkpoint_s", "other_s", "cache_entries_after", "cache_bytes_after")
    med: dict[str, Any] = {w: {k: _median([r for r in rows if r["process"] == w], k) for k in keys}
                           for w in ("first", "second")}
    med["compile_ratio"] = round(med["second"]["compile_s"] / med["first"]["compile_s"], 3)
    med["wall_ratio"] = round(med["second"]["wall_s"] / med["first"]["wall_s"], 3)
    med["compile_saved_s"] = round(med["first"]["compile_s"] - med["second"]["compile_s"], 3)
    med["wall_saved_s"] = round(med["first"]["wall_s"] - med["second"]["wall_s"], 3)
    return med


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    lines = [
        "# Compiles paid once: first vs second process with the persistent compilation cache", "",
        f"- created {data['created']} by `{data['command']}`; wall {data['wall_s']} s",
        f"- machine: {m['cpu_model']}, {m['cpus_usable']}/{m['cpu_count']} CPUs usable, {m['mem_total_gib']} GiB, "
        f"{m['platform']}; load average at start {m['loadavg']}",
        f"- {versions}; XLA_FLAGS=`{data['xla_flags']}`",
        f"- command: `jaxrl-self {' '.join(data['argv'])}` (README.md's first command"
        + (", shrunk by --quick" if data["quick"] else "") + "), a fresh run folder each time, "
        f"`--compile-cache` a folder emptied before each pair; {data['pairs']} pair(s) per variant", "",
        "Median over pairs (seconds). *compile* is the CLI's `compile_s` (trace + lower + compile or load of the "
        "init and chunk programs); *wall* is the whole process as a user waits for it; *other* is wall minus "
        "compile, run and checkpoints (interpreter start, imports, setup, end-of-run report).", "",
        "| variant | process | compile s | wall s | run s | checkpoints s | other s | cache files |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, med in data["median"].items():
        for which in ("first", "second"):
            r = med[which]
            lines.append(f"| {variant} | {which} | {r['compile_s']:.2f} | {r['wall_s']:.2f} | {r['run_s']:.2f} | "
                         f"{r['checkpoint_s']:.2f} | {r['other_s']:.2f} | {r['cache_entries_after']:.0f} |")
    lines.append("")
    for variant, med in data["median"].items():
        lines.append(f"- {variant}: second / first compile {med['compile_ratio']:.2f}x ({med['compile_saved_s']:.2f} s "
                     f"saved), wall {med['wall_ratio']:.2f}x ({med['wall_saved_s']:.2f} s saved)")
    lines += ["", "With the progress bar on (the README's command) the training program holds the bar's `io_callback`, "
              "and JAX does not write programs with host callbacks to its cache: only the init program is loaded.", "",
              "| variant | pair | process | compile s | wall s | run s | load1 before / after | lock wait s |",
              "|---|---:|---|---:|---:|---:|---|---:|"]
    for row in data["rows"]:
        t = row["timing"]
        lines.append(f"| {row['variant']} | {row['pair']} | {row['process']} | {row['compile_s']:.2f} | "
                     f"{row['wall_s']:.2f} | {row['run_s']:.2f} | {t['load1_before']} / {t['load1_after']} | "
                     f"{t['lock_wait_s']} |")
    lines += ["", "Method: `benchmarks/compile_cache.py` (module docstring)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3, help="first/second pairs per variant (cache emptied before each)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--quick", action="store_true", help="a tiny config instead of the README's default")
    ap.add_argument("--output", default=NAME, help="result file stem under benchmarks/results/")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per process")
    args = ap.parse_args()
    if args.pairs < 1:
        ap.error(f"--pairs={args.pairs} is not allowed: an integer >= 1")
    t_start = time.perf_counter()
    machine = C.machine_info()
    argv = [*COMMAND, *(QUICK_FLAGS if args.quick else ())]
    env = C.worker_env("cpu")
    work = Path(tempfile.mkdtemp(prefix="jaxrl_self_compile_cache_"))
    rows = []
    try:
        for pair in range(args.pairs):  # the variants alternate, so a drift in load reaches both alike
            for variant in args.variants:
                cache = work / "cache"
                shutil.rmtree(cache, ignore_errors=True)
                for which in ("first", "second"):
                    row = run_process([*argv, *VARIANTS[variant]], cache, work / f"run-{variant}-{pair}-{which}", env,
                                      f"{variant} pair {pair} {which}", args.timeout)
                    rows.append({"variant": variant, "pair": pair, **row, "process": which})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {v: summarise([r for r in rows if r["variant"] == v]) for v in args.variants}
    data = {"benchmark": NAME, "quick": args.quick, "created": C.utc_now(),
            "command": " ".join(["python", "benchmarks/compile_cache.py", *sys.argv[1:]]),
            "wall_s": round(time.perf_counter() - t_start, 1), "machine": machine,
            "versions": C.package_versions(PACKAGES), "xla_flags": env.get("XLA_FLAGS", ""), "argv": argv,
            "variants": {v: list(VARIANTS[v]) for v in args.variants}, "pairs": args.pairs, "median": median,
            "rows": rows}
    C.publish(NAME, args.output, data, markdown(data), data["wall_s"])


if __name__ == "__main__":
    main()
