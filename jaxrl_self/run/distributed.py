"""Several processes, one run: ``jax.distributed.initialize()`` from the run options or the environment.

Every process runs the same command (``jaxrl-self train ... --distributed``); after :func:`initialize`,
``jax.devices()`` lists the devices of all processes, the runner's mesh (:mod:`jaxrl_self.run.devices`) spans them,
and each compiled chunk is one SPMD program over all of them. What each process does:

* all of them compute, and all of them take part in saving and restoring checkpoints (orbax writes each array's
  shards from the process that holds them; the run folder must be on a file system every process sees);
* process 0 alone writes ``config.json``, the metrics files, ``summary.json`` and the plot, and prints the progress
  bar and the notes about the run folder.

Where the coordinates come from, first found wins: ``--coordinator-address HOST:PORT --num-processes N
--process-id I``; the environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID``; else JAX's cluster auto-detection (SLURM's ``srun``, Cloud TPU, Open MPI, Kubernetes), which
``--distributed`` with no coordinates asks for. On CPU the collectives between processes use gloo.

Nothing waits forever: connecting gives up after ``distributed_timeout_s``. A process other than 0 first waits
for the coordinator to accept connections and stops with :class:`DistributedTimeoutError` (one line) if it does
not; once connected, ``jax.distributed.initialize``'s ``initialization_timeout`` bounds the wait for the other
processes, after which XLA's coordination client terminates the process itself (a C++ fatal log, not
catchable from Python); a restore first waits at a barrier for every process, with the same timeout, and
a process that never arrives makes the others stop with :class:`DistributedTimeoutError` instead of hanging; a
process that dies mid-run is noticed by the others through JAX's heartbeat (``heartbeat_timeout_seconds``) and
they exit with an error. Restart all processes with ``--resume`` to continue from the newest checkpoint.
"""
from __future__ import annotations

import os
from typing import Any

import jax

from jaxrl_self.core.errors import ConfigError

__all__ = ["initialize", "wants_distributed", "barrier", "DistributedTimeoutError", "is_primary"]

#: Environment variables read when the flags leave a coordinate out (JAX reads the first itself too).
ENV_VARS = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
            "process_id": "JAX_PROCESS_ID"}


class DistributedTimeoutError(TimeoutError):
    """Another process did not reach a barrier (a restore, the end of a save) in time."""


def wants_distributed(options: Any) -> bool:
    """Whether the run options ask for a multi-process run (``--distributed`` or any coordinate flag)."""
    return bool(options.distributed or options.coordinator_address is not None or options.num_processes is not None
                or options.process_id is not None)


def _coordinates(options: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, var in ENV_VARS.items():
        value = getattr(options, field)
        if value is None and os.environ.get(var):
            value = os.environ[var]
            if field != "coordinator_address":
                if not value.isdigit():
                    raise ConfigError(field, value, f"an integer >= 0 (read from ${var})", owner="RunOptions")
                value = int(value)
        out[field] = value
    n, i = out["num_processes"], out["process_id"]
    if n is not None and n < 1:
        raise ConfigError("num_processes", n, "an integer >= 1", owner="RunOptions")
    if i is not None and n is not None and not 0 <= i < n:
        raise ConfigError("process_id", i, f"an integer in [0, {n - 1}] (--num-processes {n})", owner="RunOptions")
    return out


def initialize(options: Any) -> bool:
    """Join the multi-process run the options describe (see the module docstring); returns whether it did.

    Does nothing when the options do not ask for it, or when this process already joined one. Must run before
    JAX starts a backend (the CLI calls it first thing; :func:`~jaxrl_self.run.run_training` too).
    """
    if not wants_distributed(options):
        return False
    if jax.distributed.is_initialized():
        return False
    coords = _coordinates(options)
    if coords["coordinator_address"] and coords["process_id"] not in (None, 0):
        _wait_for_coordinator(coords["coordinator_address"], float(options.distributed_timeout_s))
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk over gloo
    try:
        jax.distributed.initialize(**coords, initialization_timeout=int(options.distributed_timeout_s))
    except RuntimeError as e:  # JAX's own message is long and multi-line: keep its first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistributedTimeoutError(f"could not join the multi-process run ({coords}): {first}") from None
    return True


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Wait until process 0's coordinator accepts connections; raise :class:`DistributedTimeoutError` after
    ``timeout_s``. (XLA's own client terminates the process when it cannot connect in time, with a C++ fatal log;
    waiting here first turns the common case, a coordinator that is not up or a wrong address, into one line.)"""
    import socket
    import time

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("coordinator_address", address, "HOST:PORT, e.g. node0:7777", owner="RunOptions")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout_s)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedTimeoutError(f"could not join the multi-process run: no coordinator answered at "
                                              f"{address} within {timeout_s:.0f} s ({e.strerror or e})") from None
            time.sleep(0.2)


def is_primary() -> bool:
    """This is process 0, the one that writes the run folder's files."""
    return jax.process_index() == 0


_barriers: dict[str, int] = {}


def barrier(name: str, timeout_s: float) -> None:
    """Wait until every process reaches the barrier ``name`` (no-op with one process); raise
    :class:`DistributedTimeoutError` after ``timeout_s`` seconds. Each call gets a fresh barrier id."""
    if jax.process_count() == 1:
        return
    from orbax.checkpoint import multihost

    _barriers[name] = _barriers.get(name, 0) + 1
    key = f"jaxrl_self:{name}:{_barriers[name]}"
    try:
        multihost.sync_global_processes(key, timeout=int(timeout_s))
    except Exception as e:  # deadline exceeded, or a peer that went away
        raise DistributedTimeoutError(f"{name}: not every process arrived within {timeout_s:.0f} s "
                                      f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
                                      ) from None
