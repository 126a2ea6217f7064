"""Shared plumbing for the benchmark scripts in ``benchmarks/``.

Every benchmark follows the same pattern: an *orchestrator* (the script run by the user, stdlib only) starts one
or more *workers* one after the other, each a subprocess that measures and prints one JSON object; peers
(gymnax, jaxued, rejax, TRL...) run in their own virtual environment, built once from PyPI, because they pin
other versions of jax than ours. The orchestrator collects the workers' JSON, adds the machine description and
writes ``benchmarks/results/<name>.json`` plus a markdown table ``<name>.md``.

This module is imported both by orchestrators and by workers running in *other* venvs (with another jax), so
its top level uses the standard library only; the JAX timing helpers import jax lazily.

Orchestrator side:

* :func:`machine_info` - CPU model, cores, memory, platform, load, git commit.
* :func:`ensure_venv` - build (once, under a file lock) and cache ``benchmarks/.venvs/<name>``.
* :func:`run_worker` - run a worker script with a given interpreter and parse its JSON result.
* :func:`write_results` - write the JSON and markdown result files.
* :func:`timing_lock` - hold the machine-wide timing lock around a timed row (no two timed runs overlap) and
  record the wait and the load average before and after it.

Worker side:

* :func:`worker_info` - versions, XLA_FLAGS, backend and devices of the running worker.
* :func:`compile_timed` - ``jax.jit(fn).lower(...).compile()`` with lowering and compilation timed apart.
* :func:`time_calls` - repeat a call until each repetition lasts ``min_rep_s``; seconds per call per repetition.
* :func:`emit_result` - print the worker's JSON result on stdout.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

__all__ = [
    "BENCH_DIR",
    "REPO_ROOT",
    "RESULTS_DIR",
    "VENVS_DIR",
    "RESULT_MARKER",
    "WorkerError",
    "machine_info",
    "ensure_venv",
    "run_worker",
    "write_results",
    "timing_lock",
    "TIMING_LOCK",
    "utc_now",
    "worker_info",
    "package_versions",
    "compile_timed",
    "time_calls",
    "TimedCalls",
    "emit_result",
    "log",
    "fmt_rate",
    "fmt_ratio",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VENVS_DIR = BENCH_DIR / ".venvs"  # git-ignored

#: Workers print their result as one line ``RESULT_MARKER + json``; anything else on stdout (a library's
#: chatter) is ignored, so a stray ``print`` in a peer library cannot corrupt the result.
RESULT_MARKER = "@@BENCH_RESULT@@ "


class WorkerError(RuntimeError):
    """A worker subprocess failed or printed no result."""


def log(*parts: Any) -> None:
    """Progress message on stderr (stdout is reserved for a worker's result)."""
    print(*parts, file=sys.stderr, flush=True)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ============================================================================================ machine description
def _cpuinfo(field: str) -> str | None:
    """The first ``field`` line of /proc/cpuinfo (None off Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def _cpu_vector_features() -> list[str]:
    """The vector-instruction features XLA:CPU's kernels depend on: one "Intel Xeon" name covers CPUs with and
    without AVX-512 / AMX, whose speeds differ."""
    have = set((_cpuinfo("flags") or "").split())
    return sorted(f for f in ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "amx_tile") if f in have)


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 2)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    """Describe the machine the benchmark runs on (orchestrator side; no jax needed).

    ``cpu_count`` is the number of logical CPUs, ``cpus_usable`` those this process may run on (affinity /
    cgroup pinning). ``loadavg`` is the 1/5/15-minute load average when the description was taken: a load well
    above zero means other work shared the CPU and the figures are suspect.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = None
    status = _git("status", "--porcelain")
    return {
        "cpu_model": _cpu_model(),
        "cpu_vector_features": _cpu_vector_features(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "mem_total_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "loadavg": load,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
    }


# ============================================================================================ peer venvs
def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (blocks until free), so two benchmark scripts never build one venv at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"[venv] waiting for the lock {path} (another benchmark is building this venv)")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_logged(cmd: Sequence[str], what: str, timeout: float) -> str:
    log(f"[venv] {what}: {' '.join(map(str, cmd))}")
    try:
        out = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{what} timed out after {timeout:.0f} s: {' '.join(map(str, cmd))}") from e
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-40:])
        raise RuntimeError(f"{what} failed (exit {out.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return out.stdout


def ensure_venv(
    name: str,
    requirements: Sequence[str],
    *,
    rebuild: bool = False,
    base_python: str | None = None,
    timeout: float = 1800.0,
) -> Path:
    """Return the interpreter of the cached venv ``benchmarks/.venvs/<name>``, building it first if needed.

    The venv is built with ``<base_python> -m venv`` (default: the interpreter running this code; from inside
    a venv, ``venv`` uses its base interpreter, so the new venv does not see our packages) and
    ``pip install <requirements>`` from PyPI, whatever versions pip resolves. A marker file written *after* a
    successful install records the requirements and ``pip freeze``; the venv is reused while the marker's
    requirements equal ``requirements`` and rebuilt otherwise (or when ``rebuild``). A file lock serialises
    concurrent builders; a half-built venv (no marker: an interrupted build) is deleted and rebuilt.

    Args:
        name: folder name under ``benchmarks/.venvs/`` (e.g. ``"peers"``).
        requirements: pip requirement strings, e.g. ``["gymnax", "jaxued"]`` or ``["rejax==0.1.2"]``.
        rebuild: delete and rebuild even when the cached venv matches.
        base_python: interpreter used to create the venv.
        timeout: seconds allowed for each of venv creation and ``pip install``.

    Returns:
        Path of the venv's ``python``.
    """
    if not requirements:
        raise ValueError(f"ensure_venv({name!r}): requirements must not be empty")
    venv = VENVS_DIR / name
    marker = venv / ".bench_venv.json"
    python = _venv_python(venv)
    with _file_lock(VENVS_DIR / f"{name}.lock"):
        if not rebuild and marker.exists():
            try:
                meta = json.loads(marker.read_text())
            except (OSError, json.JSONDecodeError):
                meta = {}
            if meta.get("requirements") == list(requirements) and python.exists():
                return python
            log(f"[venv] {venv}: requirements changed ({meta.get('requirements')} -> {list(requirements)}); rebuilding")
        if venv.exists():
            shutil.rmtree(venv)
        t0 = time.perf_counter()
        _run_logged([base_python or sys.executable, "-m", "venv", venv], "create venv", timeout)
        _run_logged([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *requirements],
                    f"pip install into {name}", timeout)
        freeze = _run_logged([python, "-m", "pip", "freeze", "--disable-pip-version-check"], "pip freeze", 120)
        meta = {
            "requirements": list(requirements),
            "created": utc_now(),
            "build_s": round(time.perf_counter() - t0, 1),
            "freeze": freeze.split(),
        }
        marker.write_text(json.dumps(meta, indent=1))
        log(f"[venv] built {venv} in {meta['build_s']} s")
    return python


def venv_metadata(python: Path | str) -> dict[str, Any]:
    """The marker written by :func:`ensure_venv` for the venv of ``python`` (empty if none)."""
    marker = Path(python).parent.parent / ".bench_venv.json"
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# ============================================================================================ timing lock
#: One lock file per machine (not per checkout), so timed rows of benchmarks started from two checkouts or by two
#: people never overlap. ``JAXRL_SELF_BENCH_LOCK`` names another file.
TIMING_LOCK = Path(os.environ.get("JAXRL_SELF_BENCH_LOCK") or "/tmp/jaxrl_self_bench.lock")
_held: list[dict[str, Any]] = []  # the records of the locks this process holds (the lock is re-entrant in-process)


def _load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - no load average on this platform
        return None


@contextlib.contextmanager
def timing_lock(what: str) -> Iterator[dict[str, Any]]:
    """Hold the machine-wide timing lock (:data:`TIMING_LOCK`, an ``fcntl.flock``) while timing ``what``.

    Waits, with a message on stderr naming who holds it, while another benchmark times a row. Yields the row's
    record, to be stored beside its figures: ``lock_wait_s`` (seconds spent waiting), ``load1_before`` and, once
    the block ends, ``load1_after`` (the 1-minute load average: well above the cores a row uses means something
    else ran). Nested use in the same process does not lock again (the record is the outer one's, and its
    ``load1_after`` is taken when the outer block ends). Take it in the orchestrator, around the worker that
    times, not in the worker too: a child process waiting for its parent's lock would wait forever.
    """
    if _held:
        yield _held[-1]
        return
    TIMING_LOCK.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(TIMING_LOCK, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            log(f"[bench] waiting for the timing lock {TIMING_LOCK} before timing {what} (held by: {holder})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        record: dict[str, Any] = {"what": what, "lock_wait_s": round(time.perf_counter() - t0, 2),
                                  "load1_before": _load1()}
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} ({' '.join(sys.argv[:1])}) timing {what} since {utc_now()}\n")
        fh.flush()
        _held.append(record)
        try:
            yield record
        finally:
            _held.pop()
            record["load1_after"] = _load1()
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


# ============================================================================================ workers
def run_worker(
    python: Path | str,
    script: Path | str,
    args: Sequence[str] = (),
    *,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``python script *args`` and return the JSON object it printed with :func:`emit_result`.

    The worker's stderr streams through to ours (progress); its stdout is captured and searched for the result
    line. ``env`` replaces the environment (default: ours). Raises :class:`WorkerError` on a non-zero exit,
    a timeout, or a missing result.
    """
    cmd = [str(python), str(script), *map(str, args)]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env, timeout=timeout,
                             cwd=REPO_ROOT)
    except subprocess.TimeoutExpired as e:
        raise WorkerError(f"worker timed out after {timeout} s: {' '.join(cmd)}") from e
    if out.returncode != 0:
        raise WorkerError(f"worker failed (exit {out.returncode}): {' '.join(cmd)}\n{out.stdout[-4000:]}")
    for line in reversed(out.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise WorkerError(f"worker printed no result line: {' '.join(cmd)}\nstdout tail:\n{out.stdout[-4000:]}")


def emit_result(result: dict[str, Any]) -> None:
    """Print a worker's result (JSON-serialisable) on stdout for :func:`run_worker`."""
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed distribution versions (``None`` when not installed)."""
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = None
    return out


#: jax options that change what a program computes or costs; recorded by :func:`worker_info`.
_JAX_CONFIG_KEYS = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable",
                    "jax_default_matmul_precision")


def _jax_config(jax: Any, name: str) -> Any:
    value = getattr(jax.config, name, None)  # jax.config.read() refuses options that have a context manager
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def worker_info(packages: Sequence[str] = ("jax", "jaxlib", "flax", "numpy")) -> dict[str, Any]:
    """What a worker runs with: interpreter, package versions, XLA_FLAGS, backend and devices.

    Call it after the worker has imported what it benchmarks (so that e.g. jaxrl_self's XLA guard has set its
    flag) and before measuring.
    """
    import jax

    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "versions": package_versions(packages),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_platforms": os.environ.get("JAX_PLATFORMS", ""),
        "jax_config": {k: _jax_config(jax, k) for k in _JAX_CONFIG_KEYS},
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "compilation_cache_dir": os.environ.get("JAX_COMPILATION_CACHE_DIR") or None,
    }


# ============================================================================================ timing (worker side)
def compile_timed(fn: Callable[..., Any], *args: Any, donate_argnums: tuple[int, ...] = ()
                  ) -> tuple[Callable[..., Any], float, float]:
    """AOT-compile ``jax.jit(fn, donate_argnums=donate_argnums)`` for ``args``.

    Returns ``(compiled, lower_s, compile_s)``: ``lower_s`` is tracing + lowering to StableHLO,
    ``compile_s`` the XLA compilation. Nothing is executed. A donated argument's buffers may be reused for the
    outputs (a training step's state, as a loop calling it would), so the caller must not use it afterwards.
    """
    import jax

    t0 = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=donate_argnums).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, t1 - t0, t2 - t1


@dataclasses.dataclass(frozen=True)
class TimedCalls:
    """Timing of a repeated call.

    Attributes:
        seconds_per_call: one entry per repetition: wall seconds of the repetition / ``calls_per_rep``.
        calls_per_rep: calls per repetition (chosen so that a repetition lasts at least ``min_rep_s``).
        warmup_s: wall seconds of the first (warm-up) call, not part of the samples.
    """

    seconds_per_call: list[float]
    calls_per_rep: int
    warmup_s: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds_per_call)


def time_calls(call: Callable[[], Any], *, reps: int, min_rep_s: float, max_calls_per_rep: int = 100_000) -> TimedCalls:
    """Time ``call()`` (which must return a JAX value; it is blocked on) ``reps`` times.

    One warm-up call (timed: ``warmup_s``), then one more to calibrate its duration ``t``; each repetition then
    makes ``k = ceil(min_rep_s / t)`` calls in a row, blocking on each result before dispatching the next (no
    overlap of consecutive calls), so short programs are timed over at least ``min_rep_s`` seconds.
    """
    import jax

    if reps < 1:
        raise ValueError(f"time_calls: reps must be >= 1, got {reps}")
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    once = max(time.perf_counter() - t0, 1e-7)
    k = int(min(max_calls_per_rep, max(1, math.ceil(min_rep_s / once))))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(k):
            out = jax.block_until_ready(call())
        samples.append((time.perf_counter() - t0) / k)
    del out
    return TimedCalls(samples, k, warmup)


def jit_timed(fn: Callable[..., Any], *args: Any, reps: int, min_rep_s: float) -> dict[str, Any]:
    """``jax.jit(fn)`` compiled ahead of time for ``args`` (:func:`compile_timed`), then called on them repeatedly
    (:func:`time_calls`): ``{"median_s", "min_s", "samples_s", "compile_s"}`` (seconds per call; compile = lower +
    XLA compile). How the profile benchmarks time each part of an update alone."""
    compiled, lower_s, compile_s = compile_timed(fn, *args)
    timed = time_calls(lambda: compiled(*args), reps=reps, min_rep_s=min_rep_s)
    return {"median_s": timed.median_s, "min_s": min(timed.seconds_per_call), "samples_s": timed.seconds_per_call,
            "compile_s": lower_s + compile_s}


# ============================================================================================ results
def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``benchmarks/results/<name>.json`` and ``<name>.md``; returns both paths."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{name}.json"
    md_path = RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[tuple[Path, str]]:
    """A detached ``git worktree`` of ``rev`` (a commit, tag or branch of this repository) in a temporary folder,
    removed on exit: yields ``(folder, full commit hash)``. Run a worker from it with :func:`checkout_env` to time
    the code *before* a change in the same job as the code after it (before/after ratios)."""
    import tempfile

    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO_ROOT, text=True,
                            capture_output=True)
    if commit.returncode != 0:
        raise ValueError(f"--before {rev!r}: not a commit of this repository ({commit.stderr.strip()})")
    sha = commit.stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="jaxrl_self_before_"))
    folder = root / "src"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(folder), sha], cwd=REPO_ROOT, check=True)
    try:
        yield folder, sha
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO_ROOT, check=False)
        shutil.rmtree(root, ignore_errors=True)


def checkout_env(env: dict[str, str], folder: Path) -> dict[str, str]:
    """``env`` with ``folder`` (a :func:`checkout`) first on ``PYTHONPATH``: its ``jaxrl_self`` is imported instead
    of the installed one (an editable install's finder comes after ``PYTHONPATH``)."""
    return dict(env, PYTHONPATH=os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])]))


def worker_env(platform: str | None = "cpu") -> dict[str, str]:
    """Environment for a benchmark worker process (ours and the peers' get the same): ``XLA_FLAGS`` with
    jaxrl_self's XLA:CPU guard flag (unless ``JAXRL_SELF_NO_XLA_GUARD`` is set), ``JAX_PLATFORMS=platform``
    (``None`` leaves it as it is), unbuffered output, and no persistent compilation cache (compile times are
    measured)."""
    import sys

    env = dict(os.environ)
    sys.path.insert(0, str(REPO_ROOT))
    from jaxrl_self._xla_guard import FLAG, FLAG_NAME  # constants only; does not import jax

    flags = env.get("XLA_FLAGS", "")
    if env.get("JAXRL_SELF_NO_XLA_GUARD", "") in ("", "0") and FLAG_NAME not in flags:
        flags = (flags + " " + FLAG).strip()
    env["XLA_FLAGS"] = flags
    if platform is not None:
        env["JAX_PLATFORMS"] = platform
    env["PYTHONUNBUFFERED"] = "1"
    for k in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        env.pop(k, None)
    env["JAXRL_SELF_COMPILE_CACHE"] = "off"  # a `jaxrl-self` command in a worker compiles too
    return env


def publish(tag: str, name: str, data: dict[str, Any], markdown: str, wall_s: float | None = None,
            plot: Callable[[dict[str, Any], Path], Any] | None = None) -> tuple[Path, Path]:
    """:func:`write_results`, then ``plot(data, results/<name>.png)`` if given (a failing plot is logged and never
    costs the numbers), log where they went (``[tag] done in ... -> paths``) and print the markdown."""
    json_path, md_path = write_results(name, data, markdown)
    if plot is not None:
        try:
            plot(data, RESULTS_DIR / f"{name}.png")
        except Exception as e:  # a plot must never cost the numbers
            log(f"[{tag}] plot failed: {e!r}")
    took = f" in {wall_s} s" if wall_s is not None else ""
    log(f"[{tag}] done{took} -> {json_path.relative_to(REPO_ROOT)}, {md_path.relative_to(REPO_ROOT)}")
    print(md_path.read_text())
    return json_path, md_path


def t_interval(xs: Sequence[float | None]) -> dict[str, Any]:
    """Mean and 95% Student-t half-width over seeds (:func:`jaxrl_self.run.stats.mean_ci`; None and non-finite
    values left out): ``{"mean", "half", "n"}``, ``mean`` None without values, ``half`` None with one."""
    from jaxrl_self.run.stats import mean_ci

    ci = mean_ci([x for x in xs if x is not None])
    if ci.n == 0:
        return {"mean": None, "half": None, "n": 0}
    return {"mean": ci.mean, "half": ci.half_width if ci.n > 1 else None, "n": ci.n}


def welch_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """mean(a) - mean(b) with its Welch 95% interval (:func:`jaxrl_self.run.stats.welch_diff_ci`):
    ``{"diff", "low", "high", "equal"}``, ``equal`` when the interval holds 0."""
    from jaxrl_self.run.stats import welch_diff_ci

    w = welch_diff_ci(a, b)
    return {"diff": w.diff, "low": w.low, "high": w.high, "equal": w.holds_zero}


def fmt_rate(x: float | None) -> str:
    """``12345678.9 -> '12.3 M'`` (steps per second, 3 significant digits)."""
    if x is None or not math.isfinite(x):
        return "-"
    for scale, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}x"
