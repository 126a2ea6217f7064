"""Run a training over seeds in chunks of one compiled program, with checkpoints, metrics and progress.

The pieces (all usable on their own)::

    keys   = seed_keys(seed=0, num_seeds=4)                     # key(seed + i) for seed index i
    chunk  = make_chunk_fn(train, chunk_updates=50)             # (states, num_active) -> (states, metrics)
    states = jax.jit(jax.vmap(train.init))(keys)
    states, metrics = jax.jit(chunk)(states, 50)                # metrics leaves: (50, num_seeds, ...)

and :class:`Runner` / :func:`run_training`, which put them together with a run folder. ``Runner.programs()``
returns the compiled programs as :class:`CompiledPrograms`; another runner of the same run takes them with
``Runner(..., programs=...)`` (or ``run_training(..., programs=...)``) and compiles nothing.

**The chunk program.** ``chunk(states, num_active)`` is a ``lax.scan`` over ``chunk_updates`` steps of
``jax.vmap(train.update)`` over the seed axis. It is lowered and compiled once (``.lower(...).compile()``,
timed apart from running) and the compiled executable is called for every chunk, so there is no
recompilation between chunks; a resumed run compiles the same program again (or loads it from JAX's
persistent compilation cache).

**Chunk sizes.** A run of ``N`` updates cut into ``K`` chunks uses ``c = ceil(N / K)`` updates per chunk
(or ``c = checkpoint_every``). When ``c`` does not divide ``N`` the last chunk is *partial*: it runs the same
compiled program with ``num_active = N mod c``, and a ``lax.cond`` on the (scalar, seed-independent) update
index turns the trailing updates into no-ops that are neither computed nor recorded. No second compile. When
``c`` divides ``N`` the cond is left out of the program.

**Progress.** With ``progress=True`` the runner says on stderr when it starts compiling and how long that took
(``compiling the training program (2 seeds, chunk of 10 updates)...``, ``compiled in 12.3 s``: the silent seconds
before the first update), and the scan body calls ``jax.experimental.io_callback`` (ordered, outside the seed vmap)
once per update with that update's ``env_steps`` / ``episode_return`` per seed; the host side moves a tqdm bar
showing env steps/s and the latest mean return. Never per environment step. ``progress=False`` prints neither (the
notes about the run folder, e.g. ``resumed from update N``, are printed either way).

**Language-model runs** (the config is an :class:`~jaxrl_self.lm.LMRLConfig`, as every LM-RL method's is; they
train on token tasks) count generated tokens as ``env_steps``, so the bar and ``summary.json`` give tokens/s and
completions/s instead: ``tokens_per_s`` / ``completions_per_s``, with ``tokens`` and ``completions`` over the run
(:func:`lm_completions_per_update` says how completions are counted).

**Non-finite losses.** Algorithms record in ``RunState.nonfinite_update`` (per seed) the first update whose
loss was NaN/inf, and skip it and every later update. After each chunk the runner checks it; if any seed
reports one, the chunk's checkpoint is *not* written, the metrics before the bad update are kept,
``nonfinite.json`` is written to the run folder, and :class:`~jaxrl_self.core.NonFiniteLossError` is raised
with the update index and seed index. The previous checkpoint stays the newest.

**Resume.** ``resume=True`` restores the newest checkpoint whose config matches the run (another config:
:class:`~jaxrl_self.core.CheckpointMismatchError` naming the fields) and prints ``resumed from update N
(RUN_DIR/checkpoints/N)`` on stderr. A newer checkpoint that cannot be read (a truncated file, a disk that filled
up) is set aside: renamed ``checkpoints/<step>.unreadable-<time>``, kept for inspection, with a one-line warning;
the run continues from the previous one and writes that step again (see
:meth:`~jaxrl_self.run.checkpoint.Checkpointer.restore`). ``summary.json`` records ``resumed_from_checkpoint``
and ``set_aside_checkpoints``.

**Run folder** (``runs/<algo>-<env>-<YYYYmmdd-HHMMSS>/``)::

    config.json          algorithm, environment, seeds, every config field (also stored in each checkpoint)
    metrics.jsonl        one row per update per seed + one mean-over-seeds row (see jaxrl_self.run.metrics)
    metrics.csv          the same rows, scalar metrics only
    summary.json         compile / run times, env steps/s (LM runs: tokens/s, completions/s), final return, status
    checkpoints/<step>/  orbax checkpoints (step = updates done), the newest ``keep_checkpoints`` kept
    checkpoints/<step>.unreadable-<time>/  a checkpoint --resume could not read, set aside (see below)
    learning_curve.png   episode return vs env steps, mean ± 95% CI over seeds
    nonfinite.json       only when a loss became NaN/inf
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import importlib
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from jaxrl_self.core.algorithm import SEED_AXIS, Train
from jaxrl_self.core.errors import ConfigError, NonFiniteLossError
from jaxrl_self.core.mesh import SEEDS, check_divides
from jaxrl_self.run.checkpoint import Checkpointer, config_to_dict, diff_configs
from jaxrl_self.run.distributed import barrier
from jaxrl_self.run.devices import (host_array, make_mesh, parse_mesh, replicated, resolve_mesh_shape,
                                    shard_abstract, state_sharding)
from jaxrl_self.run.metrics import MetricsWriter, flatten_metrics, flatten_tree, write_json
from jaxrl_self.run.stats import final_value, mean_ci

__all__ = [
    "CompiledPrograms",
    "RunOptions",
    "RunResult",
    "Runner",
    "run_training",
    "make_chunk_fn",
    "plan_chunks",
    "seed_keys",
    "load_algorithm",
    "UnknownAlgorithmError",
    "run_description",
    "algorithm_registry",
    "default_env_kwargs",
    "RestoredRun",
    "restore_run",
    "is_lm_config",
    "lm_completions_per_update",
]

#: Metrics the progress bar is fed (those a run's metrics have; ``num_finished``: T-PPO's finished responses).
PROGRESS_FIELDS = ("env_steps", "episode_return", "episode_return_valid", "num_finished")
#: Config fields, tried in order, holding the responses an LM update samples per prompt (see
#: :func:`lm_completions_per_update`).
RESPONSES_PER_PROMPT = ("group_size", "n_votes", "num_datasets")


# ---------------------------------------------------------------------------------------------- options
@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run a training: seeds, chunks and checkpoints, run folder, progress and metric sinks."""

    seeds: int = 1
    """Number of seeds, run side by side (vmapped) in one program."""
    seed: int = 0
    """Base seed: seed index i uses jax.random.key(seed + i)."""
    chunks: int = 10
    """Cut the run into this many chunks of one compiled program; a checkpoint is saved after each (1 = one program)."""
    checkpoint_every: int | None = None
    """Updates per chunk (overrides --chunks)."""
    keep_checkpoints: int = 3
    """Keep the newest N checkpoints (0 = do not write checkpoints)."""
    run_dir: str | None = None
    """Run folder (default: RUNS_ROOT/<algo>-<env>-<timestamp>)."""
    runs_root: str = "runs"
    """Parent folder of new run folders."""
    resume: bool = False
    """Continue the run in --run-dir from its newest checkpoint (the config must match)."""
    progress: bool = True
    """Show a progress bar (env steps/s, latest mean return), fed once per update."""
    tensorboard: bool = False
    """Also write TensorBoard events to RUN_DIR/tb (needs the 'tensorboard' extra)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the 'wandb' extra)."""
    wandb_project: str = "jaxrl-self"
    """W&B project name."""
    devices: int | None = None
    """Devices to run on (default 1; 0 = every visible device, of every process): seeds split over as many as divide
    --seeds, environments over the rest, unless --mesh says otherwise (docs/scaling.md)."""
    mesh: str | None = None
    """Device mesh, e.g. seeds=2,envs=4: seeds split over 2 devices, each seed's environments (or prompts) over 4."""
    distributed: bool = False
    """Join a multi-process run (jax.distributed.initialize): coordinates from the three flags below, else from
    JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, else auto-detected (SLURM, Cloud TPU, Open MPI)."""
    coordinator_address: str | None = None
    """Multi-process run: HOST:PORT of process 0's coordinator (implies --distributed)."""
    num_processes: int | None = None
    """Multi-process run: how many processes (implies --distributed)."""
    process_id: int | None = None
    """Multi-process run: this process's index, 0 .. num_processes-1 (implies --distributed)."""
    distributed_timeout_s: int = 300
    """Multi-process run: seconds to wait for the other processes when connecting and before a restore."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible values (before anything is compiled)."""
        checks = [
            ("seeds", self.seeds, self.seeds >= 1, "an integer >= 1"),
            ("chunks", self.chunks, self.chunks >= 1, "an integer >= 1"),
            ("checkpoint_every", self.checkpoint_every,
             self.checkpoint_every is None or self.checkpoint_every >= 1, "None or an integer >= 1"),
            ("keep_checkpoints", self.keep_checkpoints, self.keep_checkpoints >= 0, "an integer >= 0"),
            ("devices", self.devices, self.devices is None or self.devices >= 0,
             "an integer >= 1, or 0 for every visible device"),
            ("distributed_timeout_s", self.distributed_timeout_s, self.distributed_timeout_s >= 1,
             "an integer >= 1 (seconds)"),
        ]
        for field, value, ok, allowed in checks:
            if not ok:
                raise ConfigError(field, value, allowed, owner="RunOptions")
        if self.mesh is not None:
            parse_mesh(self.mesh)


@dataclasses.dataclass
class RunResult:
    """What :meth:`Runner.run` returns.

    ``metrics`` maps metric names to arrays of shape ``(updates_run_now, num_seeds, ...)`` (only the updates
    run by this process: a resumed run's earlier rows are in ``run_dir/metrics.jsonl``). A language-model run
    (:func:`is_lm_config`) also keeps ``initial_states``, the states this process started from (after ``init``, or
    the checkpoint it resumed from at update ``initial_update``), for a before/after evaluation; None otherwise.
    """

    states: Any
    metrics: dict[str, np.ndarray]
    summary: dict[str, Any]
    run_dir: Path | None
    initial_states: Any = None
    initial_update: int = 0


# ---------------------------------------------------------------------------------------------- algorithms
class UnknownAlgorithmError(ValueError):
    """An algorithm name that is neither registered nor an importable module."""


def load_algorithm(name_or_module: str | ModuleType) -> ModuleType:
    """An algorithm module from a registered name (``"ppo"``, ``"soar-maze"``: ``-`` and ``_`` alike) or a dotted
    module path (``"my_pkg.my_algo"``).

    The module must expose ``Config``, ``make_train`` (and ``make_eval`` for ``jaxrl-self eval``).
    """
    if isinstance(name_or_module, ModuleType):
        return name_or_module
    name = str(name_or_module)
    registry: Mapping[str, str] = {}
    try:
        algos = importlib.import_module("jaxrl_self.algos")
        registry = algorithm_registry(algos)
    except ImportError:  # pragma: no cover - algos package missing
        algos = None
    key = name.strip().lower().replace("-", "_")  # soar-maze = soar_maze
    if algos is not None and key in registry:
        target = registry[key]
        module = importlib.import_module(target) if isinstance(target, str) else target
    else:
        module = None
        if all(part.isidentifier() for part in name.split(".")):
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as e:
                if e.name is None or not name.startswith(e.name):  # the module exists but an import inside failed
                    raise
        if module is None:
            import difflib

            known = sorted(registry)
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownAlgorithmError(
                f"unknown algorithm {name!r}.{hint} Known names: {', '.join(known) or '(none)'}"
                " (or pass the dotted path of a module with Config and make_train, e.g. my_package.my_algo)")
    missing = [a for a in ("Config", "make_train") if not hasattr(module, a)]
    if missing:
        raise UnknownAlgorithmError(f"module {module.__name__!r} is not an algorithm: it lacks {missing}")
    return module


def algorithm_registry(algos: ModuleType) -> Mapping[str, Any]:
    """Name -> module path of the algorithms registered in :mod:`jaxrl_self.algos`."""
    return {name: algos.ALGORITHMS[name] for name in algos.names()}


def algorithm_name(module: ModuleType) -> str:
    return str(getattr(module, "NAME", module.__name__.rsplit(".", 1)[-1]))


def run_description(*, algo: str, env: str, config: Any, seed: int, num_seeds: int,
                    num_updates: int, env_kwargs: Mapping[str, Any] | None = None,
                    algo_module: str | None = None, runner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON description of a run stored as ``config.json`` and in every checkpoint.

    All keys except ``runner``, ``version`` and ``created`` must match for a checkpoint to be resumed.
    """
    from jaxrl_self import __version__

    return {
        "algo": algo,
        "algo_module": algo_module,
        "env": env,
        "env_kwargs": dict(env_kwargs or {}),
        "seed": int(seed),
        "num_seeds": int(num_seeds),
        "num_updates": int(num_updates),
        "config": config_to_dict(config),
        "runner": dict(runner or {}),
        "version": __version__,
    }


def is_lm_config(config: Any) -> bool:
    """Whether ``config`` is a language-model RL method's: an :class:`~jaxrl_self.lm.LMRLConfig` (every LM-RL
    method's ``Config`` builds on it, and each trains on token tasks: ``ENV_KINDS`` ``("task",)`` or a task name)."""
    lm_config = sys.modules.get("jaxrl_self.lm.config")  # not imported: no config can be one (PPO needs no lm import)
    return lm_config is not None and isinstance(config, lm_config.LMRLConfig)


def lm_completions_per_update(config: Any) -> int | None:
    """Completions (responses) one update of an LM run samples per seed, from its config: ``num_prompts`` times the
    responses per prompt it passes to the rollout, the first of :data:`RESPONSES_PER_PROMPT` the config has
    (``group_size``: GRPO, token PPO, RLT; ``n_votes``: TTRL; ``num_datasets``: SOAR's teacher). None when the config
    has no such fields (T-PPO, whose responses span updates: the runner counts its ``num_finished`` metric instead)
    or is not an LM config. These are the responses whose tokens ``env_steps`` counts."""
    if not is_lm_config(config) or not hasattr(config, "num_prompts"):
        return None
    for name in RESPONSES_PER_PROMPT:
        if hasattr(config, name):
            return int(config.num_prompts) * int(getattr(config, name))
    return None


# ---------------------------------------------------------------------------------------------- pieces
def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """Typed keys ``[key(seed), key(seed + 1), ...]``: seed index ``i`` is the same run whatever ``num_seeds``."""
    return jax.vmap(jax.random.key)(jnp.arange(num_seeds, dtype=jnp.uint32) + jnp.uint32(seed))


def plan_chunks(num_updates: int, chunks: int = 1, chunk_updates: int | None = None) -> tuple[int, int]:
    """``(updates_per_chunk, number_of_chunks)`` for a run of ``num_updates`` (see the module docstring)."""
    if num_updates < 1:
        raise ConfigError("num_updates", num_updates, "the configured run must have at least one update")
    if chunk_updates is None:
        chunk_updates = math.ceil(num_updates / max(1, min(int(chunks), num_updates)))
    chunk_updates = max(1, min(int(chunk_updates), num_updates))
    return chunk_updates, math.ceil(num_updates / chunk_updates)


def make_chunk_fn(train: Train, chunk_updates: int, *, masked: bool = False,
                  callback: Callable[..., None] | None = None,
                  callback_fields: tuple[str, ...] = PROGRESS_FIELDS,
                  spmd_axis_name: str | None = None) -> Callable[[Any, jax.Array], tuple[Any, Any]]:
    """``chunk(states, num_active) -> (states, metrics)`` over a batch of seeds (leading axis of ``states``).

    * ``lax.scan`` of ``chunk_updates`` steps of ``jax.vmap(train.update)``; metrics leaves come out with
      shape ``(chunk_updates, num_seeds, ...)``.
    * ``masked=True``: steps ``i >= num_active`` are skipped by a ``lax.cond`` (state unchanged, metrics
      zeros), so a partial final chunk reuses the same compiled program. ``num_active`` is ignored otherwise.
    * ``callback(active, **fields)``: called on the host once per update through an ordered ``io_callback``
      outside the seed vmap, with the metrics named in ``callback_fields`` (each of shape ``(num_seeds,)``).
    * ``spmd_axis_name``: the mesh axis the seed axis is split over (:data:`~jaxrl_self.core.mesh.SEEDS` when the
      program is compiled under a device mesh), so that sharding constraints inside the update keep it split.
    """
    # named: see core.uniform_over_seeds
    batched_update = jax.vmap(train.update, axis_name=SEED_AXIS, spmd_axis_name=spmd_axis_name)

    def chunk(states, num_active):
        num_active = jnp.asarray(num_active, jnp.int32)

        def skip(s):  # a switched-off step of a partial chunk: state unchanged, zero metrics
            row_shapes = jax.eval_shape(batched_update, s)[1]
            return s, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), row_shapes)

        def body(s, i):
            if masked:
                active = i < num_active
                s, row = jax.lax.cond(active, batched_update, skip, s)
            else:
                active = jnp.bool_(True)
                s, row = batched_update(s)
            if callback is not None:
                fields = {k: v for k, v in flatten_tree(row).items() if k in callback_fields}
                if not jax.sharding.get_abstract_mesh().empty:  # on a mesh: whole on every device first (cheap,
                    fields = jax.lax.with_sharding_constraint(fields, jax.sharding.PartitionSpec())  # a few scalars)
                io_callback(functools.partial(_call_host, callback), None, active, fields, ordered=True)
            return s, row

        return jax.lax.scan(body, states, jnp.arange(chunk_updates, dtype=jnp.int32))

    return chunk


def _call_host(callback, active, fields) -> None:
    callback(bool(active), **{k: np.asarray(v) for k, v in fields.items()})


# ---------------------------------------------------------------------------------------------- progress
class Progress:
    """A tqdm bar over updates showing env steps/s and the latest mean return; fed by the update callback.

    steps/s is measured from the first update this process ran (so compile time is not counted), summing the
    env steps of all seeds. The return shown is the mean over seeds that finished an episode in the latest
    update that had any. A language-model run (``lm=True``) shows ``tokens/s`` (its env steps are generated tokens)
    and ``completions/s``: ``completions_per_update`` (all seeds) per update, or the ``num_finished`` metric summed
    over seeds where the run has it (T-PPO).
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = "train", *,
                 lm: bool = False, completions_per_update: int | None = None):
        self.done = initial
        self.env_steps = 0.0
        self.last_return = math.nan
        self.lm = lm
        self.completions_per_update = completions_per_update
        self.completions = 0.0  # counted from the first update seen
        self._first: tuple[float, float] | None = None  # (time, env steps) at the first update seen
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="upd", dynamic_ncols=True,
                             file=sys.stderr, smoothing=0.1)

    def __call__(self, active: bool, env_steps=None, episode_return=None, episode_return_valid=None,
                 num_finished=None) -> None:
        if not active:
            return
        self.done += 1
        now = time.perf_counter()
        post = {}
        if env_steps is not None:
            self.env_steps = float(np.sum(env_steps))
            if self._first is None:
                self._first = (now, self.env_steps)
            elif now > self._first[0]:
                elapsed = now - self._first[0]
                post["tokens/s" if self.lm else "steps/s"] = f"{(self.env_steps - self._first[1]) / elapsed:,.0f}"
                if self.lm:
                    done = float(np.sum(num_finished)) if num_finished is not None else self.completions_per_update
                    self.completions += done or 0.0
                    if done is not None:
                        post["completions/s"] = f"{self.completions / elapsed:,.1f}"
        if episode_return is not None:
            ret = np.asarray(episode_return, np.float64)
            valid = np.ones(ret.shape, bool) if episode_return_valid is None else np.asarray(episode_return_valid, bool)
            if np.any(valid):
                self.last_return = float(ret[valid].mean())
        if not math.isnan(self.last_return):
            post["return"] = f"{self.last_return:.1f}"
        if self._bar is not None:
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# ---------------------------------------------------------------------------------------------- runner
@dataclasses.dataclass(frozen=True)
class CompiledPrograms:
    """The two compiled programs a :class:`Runner` executes, to hand to other runners of the same run.

    Get them from :meth:`Runner.programs` (compiles once) and pass them as ``Runner(..., programs=...)``:
    a resumed run, a second run folder, the same configuration from several places (tests, notebooks, a CLI
    call inside a sweep) then compile nothing. The fields describe what was compiled, and a runner refuses
    programs that do not fit it (different config, seed count, chunking or progress callback).

    Attributes:
        init: ``init(keys) -> states``: ``jax.vmap(train.init)`` over the seed keys, compiled (on a mesh it takes
            the keys' raw data, ``jax.random.key_data(keys)``, as a replicated array).
        chunk: ``chunk(states, num_active) -> (states, metrics)``: :func:`make_chunk_fn`, compiled.
        chunk_updates: updates per chunk call.
        masked: whether ``chunk`` honours ``num_active < chunk_updates`` (a partial last chunk).
        num_seeds: length of the seed axis the programs were compiled for.
        progress: whether ``chunk`` calls the host progress callback every update.
        config: the algorithm config the programs were built from (``train.config``; ``None`` if it had none).
        mesh: the device mesh they were compiled for (``seeds=1,envs=1``: one device).
    """

    init: Callable[[jax.Array], Any]
    chunk: Callable[[Any, Any], tuple[Any, Any]]
    chunk_updates: int
    masked: bool
    num_seeds: int
    progress: bool = False
    config: Any = None
    mesh: str = "seeds=1,envs=1"


class Runner:
    """Runs ``train`` for ``options.seeds`` seeds, in chunks, with a run folder (or none: ``run_dir=False``).

    Args:
        train: the algorithm's :class:`~jaxrl_self.core.Train`.
        options: seeds, chunking, checkpoints, sinks.
        description: the run description (:func:`run_description`); saved as ``config.json`` and with each
            checkpoint, and compared field by field on resume.
        run_dir: the run folder; ``None`` uses ``options.run_dir``; ``False`` runs without any files (no
            checkpoints, no metrics files: the result holds everything).
        compiler_options: XLA options for compiling the init and chunk programs (e.g.
            ``{"xla_backend_optimization_level": 0}`` to compile faster and run slower); default
            :attr:`default_compiler_options` (None: XLA's defaults).
        programs: already compiled programs of this run (:meth:`programs` of another runner); checked with
            :meth:`use_programs`, then nothing is compiled.
    """

    #: compiler options used when the constructor gets none (tests lower the optimisation level here)
    default_compiler_options: Mapping[str, Any] | None = None

    def __init__(self, train: Train, options: RunOptions = RunOptions(), *,
                 description: Mapping[str, Any] | None = None, run_dir: str | os.PathLike | bool | None = None,
                 compiler_options: Mapping[str, Any] | None = None, programs: CompiledPrograms | None = None):
        options.validate()
        self.train = train
        self.compiler_options = dict(compiler_options if compiler_options is not None
                                     else self.default_compiler_options or {}) or None
        self.options = options
        self.num_updates = int(train.num_updates)
        self.chunk_updates, self.num_chunks = plan_chunks(self.num_updates, options.chunks, options.checkpoint_every)
        self.masked = self.num_updates % self.chunk_updates != 0
        self.mesh_shape = resolve_mesh_shape(num_seeds=options.seeds, devices=options.devices, mesh=options.mesh)
        check_divides(train.config, self.mesh_shape.envs)
        self.mesh = make_mesh(self.mesh_shape)  # None: one device, the single-device program
        self.primary = jax.process_index() == 0  # only process 0 writes the run folder's files
        desc = dict(description or {})
        desc.setdefault("num_updates", self.num_updates)
        desc.setdefault("seed", options.seed)
        desc.setdefault("num_seeds", options.seeds)
        if train.config is not None and "config" not in desc and dataclasses.is_dataclass(train.config):
            desc["config"] = config_to_dict(train.config)
        desc["runner"] = {"chunk_updates": self.chunk_updates, "num_chunks": self.num_chunks,
                          "mesh": str(self.mesh_shape), "processes": jax.process_count()}
        self.description = desc
        if run_dir is False:
            self.run_dir = None
        else:
            rd = run_dir if run_dir not in (None, True) else options.run_dir
            self.run_dir = Path(rd) if rd is not None else None
        if options.resume and self.run_dir is None:
            raise ConfigError("resume", True, "--resume needs --run-dir pointing at the run to continue",
                              owner="RunOptions")
        self.keys = seed_keys(options.seed, options.seeds)
        self.lm = is_lm_config(train.config)  # tokens/s and completions/s instead of env steps/s
        self.completions_per_update = lm_completions_per_update(train.config)  # per seed; None: count num_finished
        self.timings: dict[str, float] = {}
        self._compiled_chunk = None
        self._compiled_init = None
        self._progress: Progress | None = None
        self._resumed: dict[str, Any] = {}  # resumed_from_checkpoint / set_aside_checkpoints, for summary.json
        if programs is not None:
            self.use_programs(programs)

    # ------------------------------------------------------------------ compile
    def abstract_states(self) -> Any:
        """Shapes and dtypes of the batched ``RunState`` (with the mesh's shardings on a mesh)."""
        return shard_abstract(jax.eval_shape(jax.vmap(self.train.init), self.keys), self.mesh)

    def _init_input(self) -> jax.Array:
        """What the compiled init takes: the seed keys; on a mesh their raw data as a replicated global array."""
        if self.mesh is None:
            return self.keys
        raw = np.asarray(jax.random.key_data(self.keys))
        return jax.make_array_from_callback(raw.shape, replicated(self.mesh), lambda index: raw[index])

    def _jit(self, fn, in_shardings, out_shardings):
        """``jax.jit`` with the compiler options; the shardings apply on a mesh (one device: JAX places it)."""
        kw = {} if self.mesh is None else {"in_shardings": in_shardings, "out_shardings": out_shardings}
        return jax.jit(fn, compiler_options=self.compiler_options, **kw)

    def compile(self, need_init: bool = True) -> dict[str, float]:
        """Lower and compile the init and chunk programs; returns the compile times in seconds. With
        ``options.progress`` it says so on stderr, a line before and one after (nothing when nothing is compiled)."""
        todo = (need_init and self._compiled_init is None) or self._compiled_chunk is None
        if not todo:
            return dict(self.timings)
        say = self.options.progress and self.primary
        if say:
            seeds, c = self.options.seeds, self.chunk_updates
            where = "" if self.mesh is None else f", mesh {self.mesh_shape} over {self.mesh_shape.size} devices"
            print(f"compiling the training program ({seeds} seed{'s' * (seeds != 1)}, chunk of {c} "
                  f"update{'s' * (c != 1)}{where})...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        abstract = self.abstract_states()
        # one process: the bar moves every update (an io_callback in the program); several: after each chunk, from
        # the chunk's metrics (a host callback would run on process 0's device only)
        callback = self._on_update if self.options.progress and jax.process_count() == 1 else None
        mesh = self.mesh
        spmd, state_sh, whole = (None, None, None) if mesh is None else (SEEDS, state_sharding(mesh), replicated(mesh))
        chunk = make_chunk_fn(self.train, self.chunk_updates, masked=self.masked, callback=callback,
                              spmd_axis_name=spmd)
        with (jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext()):
            if need_init and self._compiled_init is None:
                t = time.perf_counter()
                batched_init = jax.vmap(self.train.init, spmd_axis_name=spmd)
                if mesh is None:
                    init, init_arg = batched_init, self.keys
                else:  # on a mesh the keys go in as raw key data, one global array every process can build
                    def init(raw):
                        return batched_init(jax.random.wrap_key_data(raw))

                    init_arg = jax.eval_shape(jax.random.key_data, self.keys)
                self._compiled_init = self._jit(init, whole, state_sh).lower(init_arg).compile()
                self.timings["compile_init_s"] = time.perf_counter() - t
            if self._compiled_chunk is None:
                t = time.perf_counter()
                self._compiled_chunk = self._jit(chunk, (state_sh, whole), (state_sh, whole)).lower(
                    abstract, jax.ShapeDtypeStruct((), jnp.int32)).compile()
                self.timings["compile_chunk_s"] = time.perf_counter() - t
        if say:
            print(f"compiled in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        return dict(self.timings)

    def programs(self) -> CompiledPrograms:
        """This run's compiled init and chunk programs (compiled now if they are not yet), for other runners."""
        self.compile(need_init=True)
        return CompiledPrograms(init=self._compiled_init, chunk=self._compiled_chunk,
                                chunk_updates=self.chunk_updates, masked=self.masked, num_seeds=self.options.seeds,
                                progress=bool(self.options.progress), config=self.train.config,
                                mesh=str(self.mesh_shape))

    def use_programs(self, programs: CompiledPrograms) -> None:
        """Run with ``programs`` instead of compiling; raises :class:`~jaxrl_self.core.ConfigError` naming the
        first field in which they differ from this runner's run."""
        expected = {"chunk_updates": self.chunk_updates, "masked": self.masked, "num_seeds": self.options.seeds,
                    "progress": bool(self.options.progress), "mesh": str(self.mesh_shape)}
        for name, want in expected.items():
            got = getattr(programs, name)
            if got != want:
                raise ConfigError(f"programs.{name}", got, f"this runner needs {name}={want!r} (programs compiled "
                                  "for another chunking, seed count, progress setting or mesh)", owner="Runner")
        if programs.config is not None and self.train.config is not None and programs.config != self.train.config:
            diff = diff_configs(config_to_dict(programs.config), config_to_dict(self.train.config), ignore=())
            raise ConfigError("programs.config", ", ".join(diff) or type(programs.config).__name__,
                              "the programs were compiled for another config (fields that differ listed)",
                              owner="Runner")
        self._compiled_init, self._compiled_chunk = programs.init, programs.chunk

    def _feed_progress(self, metrics: dict[str, np.ndarray]) -> None:
        """Move the bar over a chunk's updates after it ran (multi-process runs have no in-program callback)."""
        fields = [k for k in PROGRESS_FIELDS if k in metrics]
        for i in range(len(next(iter(metrics.values()), []))):
            self._on_update(True, **{k: metrics[k][i] for k in fields})

    def _on_update(self, active: bool, **fields) -> None:
        if self._progress is not None:
            self._progress(active, **fields)

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """Run (or resume) to the end. Raises NonFiniteLossError / CheckpointMismatchError (see module doc)."""
        opts = self.options
        ckpt = None
        start, states = 0, None
        self._resumed = {}
        if self.run_dir is not None:
            ckpt_dir = self.run_dir / "checkpoints"
            has_ckpt = ckpt_dir.exists() and any(p.name.isdigit() for p in ckpt_dir.iterdir())
            if opts.resume and not self.run_dir.exists():
                raise FileNotFoundError(f"--resume: run folder {self.run_dir} does not exist")
            if has_ckpt and not opts.resume:
                raise FileExistsError(f"run folder {self.run_dir} already has checkpoints; pass --resume to "
                                      "continue it or choose another --run-dir")
            if opts.keep_checkpoints > 0 or has_ckpt:
                ckpt = Checkpointer(ckpt_dir, keep=max(1, opts.keep_checkpoints),
                                    barrier_timeout_s=opts.distributed_timeout_s)
            if opts.resume and has_ckpt:
                start, states = self._resume(ckpt)
            elif opts.resume:
                self._say(f"note: {self.run_dir} has no checkpoint yet; starting from scratch")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if start == 0 and self.primary:
                write_json(self.run_dir / "config.json", {**self.description,
                                                          "created": datetime.datetime.now().isoformat()})
        if start >= self.num_updates:  # resuming a finished run: nothing to run, nothing to compile
            self._say(f"note: {self.run_dir} already finished ({start} updates)")
            if ckpt is not None:
                ckpt.close()
            path = self.run_dir / "summary.json" if self.run_dir is not None else None
            summary = json.loads(path.read_text()) if path is not None and path.exists() else {}
            if summary.get("status") != "finished":
                # killed after its last checkpoint, before its end-of-run files (or an older process's summary is
                # left): write summary.json and the curve now, from metrics.jsonl (this process ran nothing)
                summary = build_summary({}, timings={}, run_s=0.0, checkpoint_s=0.0, num_updates=self.num_updates,
                                        start_update=start, status="finished", description=self.description,
                                        lm=self.lm, completions_per_update=self.completions_per_update)
                summary.update(self._resumed)
                if self.run_dir is not None and self.primary:
                    self._write_summary_and_plot(summary)
                # an LM run's held-out evaluation (jaxrl-self train) was never run either: give it the states
                return RunResult(states, {}, summary, self.run_dir, initial_states=states if self.lm else None,
                                 initial_update=start)
            return RunResult(states, {}, summary, self.run_dir)
        self.compile(need_init=states is None)
        if states is None:
            t = time.perf_counter()
            states = jax.block_until_ready(self._compiled_init(self._init_input()))
            self.timings["init_s"] = time.perf_counter() - t

        writer = None
        if self.run_dir is not None and self.primary:
            writer = MetricsWriter(self.run_dir, tensorboard=opts.tensorboard, wandb=opts.wandb, start_update=start,
                                   wandb_kwargs={"project": opts.wandb_project, "name": self.run_dir.name,
                                                 "config": self.description})
        initial_states = states if self.lm else None  # for the held-out before/after of an LM run
        self._progress = Progress(self.num_updates, initial=start, enabled=opts.progress and self.primary,
                                  desc=str(self.description.get("algo", "train")), lm=self.lm,
                                  completions_per_update=None if self.completions_per_update is None
                                  else self.completions_per_update * opts.seeds)
        all_metrics: list[dict[str, np.ndarray]] = []
        run_s = ckpt_s = 0.0
        status = "failed"
        done = start
        try:
            while done < self.num_updates:
                n_active = min(self.chunk_updates, self.num_updates - done)
                t = time.perf_counter()
                new_states, m = self._compiled_chunk(states, np.int32(n_active))
                new_states = jax.block_until_ready(new_states)
                metrics = {k: v[:n_active] for k, v in flatten_metrics(jax.device_get(m)).items()}
                run_s += time.perf_counter() - t
                if jax.process_count() > 1:
                    self._feed_progress(metrics)
                bad = self._first_nonfinite(new_states)
                if bad is not None:
                    status = "nonfinite"
                    update, seed_index = bad
                    metrics = {k: v[: max(0, update - done)] for k, v in metrics.items()}
                    all_metrics.append(metrics)
                    if writer is not None:
                        writer.write(metrics, first_update=done)
                    last = ckpt.latest_step() if ckpt is not None else None
                    if self.run_dir is not None and self.primary:
                        write_json(self.run_dir / "nonfinite.json", {
                            "update": update, "seed_index": seed_index,
                            "nonfinite_update_per_seed": host_array(new_states.nonfinite_update).tolist(),
                            "last_good_checkpoint_step": last,
                            "message": "a loss became NaN/inf; this chunk's checkpoint was not written"})
                    raise NonFiniteLossError(update, seed_index, detail=(
                        f"last good checkpoint: step {last}" if last is not None else "no checkpoint was written"))
                states = new_states
                all_metrics.append(metrics)
                if writer is not None:
                    writer.write(metrics, first_update=done)
                done += n_active
                if ckpt is not None:
                    t = time.perf_counter()
                    ckpt.save(done, states, self.description)
                    ckpt_s += time.perf_counter() - t
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self._progress.close()
            summary = self._finish(writer, status, start, all_metrics, run_s, ckpt_s)
            if ckpt is not None:
                ckpt.close()
        return RunResult(states, _concat(all_metrics), summary, self.run_dir, initial_states=initial_states,
                         initial_update=start)

    # ------------------------------------------------------------------ helpers
    def _resume(self, ckpt: Checkpointer) -> tuple[int, Any]:
        """Restore the newest readable checkpoint of this run (another config: CheckpointMismatchError); newer
        unreadable ones are set aside (one warning line each) so the run can write those steps again."""
        barrier("restore", self.options.distributed_timeout_s)  # every process restores, or none waits forever
        start, states, _ = ckpt.restore(self.abstract_states(), expected_config=self.description,
                                        set_aside_unreadable=True, rename=self.primary)
        for moved in ckpt.set_aside:
            self._say(moved.message(start))
        self._check_counter(states, start)
        path = Path(self.run_dir or ckpt.directory.parent) / "checkpoints" / str(start)
        if start < self.num_updates:  # (a finished run says so itself)
            self._say(f"resumed from update {start} ({path})")
        self._resumed = {"resumed_from_checkpoint": str(path)}
        if ckpt.set_aside:
            self._resumed["set_aside_checkpoints"] = [str(m.path) for m in ckpt.set_aside]
        return start, states

    @staticmethod
    def _first_nonfinite(states) -> tuple[int, int] | None:
        nf = getattr(states, "nonfinite_update", None)
        if nf is None:
            return None
        nf = host_array(nf).reshape(-1)
        bad = np.where(nf >= 0, nf, np.iinfo(nf.dtype).max)
        if not np.any(nf >= 0):
            return None
        seed_index = int(np.argmin(bad))
        return int(nf[seed_index]), seed_index

    def _check_counter(self, states, step: int) -> None:
        counter = getattr(states, "update_step", None)
        if counter is not None and not np.all(host_array(counter) == step):
            raise RuntimeError(f"checkpoint step {step} does not match RunState.update_step "
                               f"{host_array(counter).tolist()}")

    def _finish(self, writer, status, start, all_metrics, run_s, ckpt_s) -> dict[str, Any]:
        metrics = _concat(all_metrics)
        summary = build_summary(metrics, timings=self.timings, run_s=run_s, checkpoint_s=ckpt_s,
                                num_updates=self.num_updates, start_update=start, status=status,
                                description=self.description, lm=self.lm,
                                completions_per_update=self.completions_per_update)
        summary.update(self._resumed)
        if writer is not None:
            writer.close()
        if self.run_dir is not None and self.primary:
            self._write_summary_and_plot(summary)
        return summary

    def _say(self, line: str) -> None:
        """A note about the run folder on stderr (process 0 only: every process would say the same)."""
        if self.primary:
            print(line, file=sys.stderr, flush=True)

    def _write_summary_and_plot(self, summary: dict[str, Any]) -> None:
        assert self.run_dir is not None
        # The curve and final return cover the whole run, including chunks run before a resume.
        try:
            from jaxrl_self.run.plot import load_run, plot_run

            run = load_run(self.run_dir)
            if "episode_return" in run.metric_names:
                values, valid = run.values("episode_return")
                summary["final_return"] = mean_ci(final_value(values, valid)).as_dict()
                plot_run(self.run_dir)
        except Exception as e:  # a plot must never cost a run
            summary["plot_error"] = repr(e)
        write_json(self.run_dir / "summary.json", summary)


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    chunks = [c for c in chunks if c]
    if not chunks:
        return {}
    return {k: np.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]}


def build_summary(metrics: dict[str, np.ndarray], *, timings: Mapping[str, float], run_s: float, checkpoint_s: float,
                  num_updates: int, start_update: int, status: str,
                  description: Mapping[str, Any] | None = None, lm: bool = False,
                  completions_per_update: int | None = None) -> dict[str, Any]:
    """``summary.json``: timings, throughput and the final return over seeds (mean and 95% t-CI).

    ``lm``: a language-model run, whose ``env_steps`` are generated tokens: also ``tokens`` / ``tokens_per_s`` (the
    env steps under their name) and ``completions`` / ``completions_per_s``, counted as ``completions_per_update``
    per seed per update, or from the ``num_finished`` metric where the run has it (T-PPO)."""
    updates_run = int(next(iter(metrics.values())).shape[0]) if metrics else 0
    summary: dict[str, Any] = {
        "status": status,
        "algo": (description or {}).get("algo"),
        "env": (description or {}).get("env"),
        "num_seeds": (description or {}).get("num_seeds"),
        "num_updates": num_updates,
        "updates_done": start_update + updates_run,
        "resumed_from_update": start_update,
        "compile_s": float(sum(v for k, v in timings.items() if k.startswith("compile"))),
        **{k: float(v) for k, v in timings.items()},
        "run_s": float(run_s),
        "checkpoint_s": float(checkpoint_s),
    }
    if "env_steps" in metrics and updates_run:
        steps = np.asarray(metrics["env_steps"], np.float64)  # (U, S)
        # env steps run by this process (all seeds); after a resume, assumes a constant number per update
        total = float(np.sum(steps[-1])) * updates_run / (start_update + updates_run)
        summary["env_steps"] = float(np.sum(steps[-1]))
        summary["env_steps_per_s"] = total / run_s if run_s > 0 else None
        if lm:
            summary["tokens"], summary["tokens_per_s"] = summary["env_steps"], summary["env_steps_per_s"]
            done = start_update + updates_run
            if "num_finished" in metrics:  # this process's, scaled to the run as for env steps after a resume
                now = float(np.sum(np.asarray(metrics["num_finished"], np.float64)))
                completions = now * done / updates_run
            elif completions_per_update is not None:
                now = float(completions_per_update * steps.shape[1] * updates_run)
                completions = float(completions_per_update * steps.shape[1] * done)
            else:
                now = completions = None
            if completions is not None:
                summary["completions"] = completions
                summary["completions_per_s"] = now / run_s if run_s > 0 else None
    summary["updates_per_s"] = updates_run / run_s if run_s > 0 else None
    if "episode_return" in metrics and updates_run:
        values = np.asarray(metrics["episode_return"]).T
        valid = np.asarray(metrics["episode_return_valid"]).T if "episode_return_valid" in metrics else None
        summary["final_return"] = mean_ci(final_value(values, valid)).as_dict()
    return summary


# ---------------------------------------------------------------------------------------------- front door
def default_run_dir(runs_root: str | os.PathLike, algo: str, env: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    env = re.sub(r"[^\w.-]+", "_", env)  # an adapter name such as "kinetix:s" -> "kinetix_s" (portable folder)
    base = Path(runs_root) / f"{algo}-{env}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


@dataclasses.dataclass
class RestoredRun:
    """What :func:`restore_run` rebuilt from a run folder: its description, algorithm module, config, environment,
    training run, the checkpoint step and the batched ``RunState`` (leading axis: seeds)."""

    description: dict[str, Any]
    module: ModuleType
    config: Any
    env: Any
    train: Train
    step: int
    states: Any


def restore_run(run_dir: str | os.PathLike, *, algo: str | None = None, step: int | None = None,
                owner: str = "run") -> RestoredRun:
    """Rebuild a run from its folder's ``config.json`` and restore its newest checkpoint (or ``step``).

    ``algo``: the run must have been made by this algorithm (a :class:`~jaxrl_self.core.ConfigError` naming
    ``run_dir`` otherwise). Raises ``FileNotFoundError`` for a folder that is not a run folder.
    """
    from jaxrl_self import envs
    from jaxrl_self.run.checkpoint import config_from_dict

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path} not found: is {run_dir} a run folder?")
    desc = json.loads(cfg_path.read_text())
    if algo is not None and desc.get("algo") != algo:
        raise ConfigError("run_dir", str(run_dir), f"a {algo} run folder (this one ran {desc.get('algo')!r})", owner)
    module = load_algorithm(desc.get("algo_module") or desc["algo"])
    config = config_from_dict(module.Config, desc["config"])
    env = envs.make(desc["env"], **dict(desc.get("env_kwargs") or {}))
    train = module.make_train(config, env)
    abstract = jax.eval_shape(jax.vmap(train.init), seed_keys(int(desc.get("seed", 0)), int(desc.get("num_seeds", 1))))
    abstract = shard_abstract(abstract, None)  # onto this process's device, whatever layout the run was saved from
    with Checkpointer(run_dir / "checkpoints", keep=1) as ckpt:
        restored_step, states, _ = ckpt.restore(abstract, step)
    return RestoredRun(description=desc, module=module, config=config, env=env, train=train,
                       step=int(restored_step), states=states)


def default_env_kwargs(config: Any, env: str) -> dict[str, Any] | None:
    """What the config says the task ``env`` should be built with when the caller gives no ``env_kwargs``:
    ``config.task_kwargs_for(env)`` where the config defines it (an LM config starting from a base model returns
    the constructor arguments of the task that model was trained on), else None (the registry's defaults)."""
    hook = getattr(config, "task_kwargs_for", None)
    return hook(env) if callable(hook) else None


def run_training(algo: str | ModuleType, env: str = "cartpole", config: Any = None,
                 options: RunOptions = RunOptions(), *, env_kwargs: Mapping[str, Any] | None = None,
                 run_dir: str | os.PathLike | bool | None = None,
                 programs: CompiledPrograms | None = None) -> RunResult:
    """Train ``algo`` on the registered environment ``env`` with a run folder, checkpoints and metrics.

    ``config`` defaults to ``algo.Config()``. Bad names and config values raise before compiling
    (:class:`UnknownAlgorithmError`, ``UnknownEnvironmentError``, :class:`~jaxrl_self.core.ConfigError`).
    ``run_dir=False`` runs without writing files. ``programs``: compiled programs of the same run
    (:meth:`Runner.programs`), used instead of compiling. Without ``env_kwargs``, the task is built as the config
    asks (:func:`default_env_kwargs`: a config that starts from a base model trains on the task that model was
    trained on when ``env`` names it, e.g. ``chain-base`` and ``"chain"`` give ``ChainTask(max_steps_cap=16)``).
    """
    from jaxrl_self import envs
    from jaxrl_self.run import distributed

    options.validate()
    distributed.initialize(options)  # a multi-process run joins before anything starts a JAX backend
    module = load_algorithm(algo)
    algo_name = algorithm_name(module)
    config = module.Config() if config is None else config
    if env_kwargs is None:
        env_kwargs = default_env_kwargs(config, env)
    env_obj = envs.make(env, **dict(env_kwargs or {}))
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate(env_obj)
    train = module.make_train(config, env_obj)
    if run_dir is None:
        run_dir = options.run_dir if options.run_dir is not None else default_run_dir(options.runs_root, algo_name, env)
    desc = run_description(algo=algo_name, env=env, config=config, seed=options.seed, num_seeds=options.seeds,
                           num_updates=int(train.num_updates), env_kwargs=env_kwargs,
                           algo_module=module.__name__)
    return Runner(train, options, description=desc, run_dir=run_dir, programs=programs).run()
