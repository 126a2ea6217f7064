"""Guard against a known XLA:CPU deadlock on small machines.

On jax/jaxlib 0.10.x with few CPU cores, a jitted program that runs several batched LAPACK QR calls
(``jax.vmap`` over an orthogonal initialiser, i.e. initialising networks for several seeds at once) can hang
forever: both intra-op worker threads wait inside the QR kernel for sub-tasks queued behind themselves.
``--xla_cpu_enable_concurrency_optimized_scheduler=false`` avoided it in every run we tried
(see docs/troubleshooting.md).

XLA reads ``XLA_FLAGS`` when the first backend is created, not when jax is imported, so setting it here works
as long as no computation has run yet. The flag only concerns the CPU backend; on GPU/TPU it is inert.

A second trap, with several CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``, how a device
mesh is tested on one machine): XLA:CPU runs the devices' collectives (all-gather, all-reduce) on its intra-op
thread pool, which has one thread per core. With more devices than cores the threads can all block in a
collective waiting for devices whose work is queued behind them, and the program hangs (on 2 cores with 4
devices, in most runs of a sharded PPO update). XLA sizes that pool from the ``NPROC`` environment variable when
it is set, so :func:`install` sets ``NPROC`` to the number of cores plus ``N`` when ``N`` is at least the number of
cores (2 devices on 2 cores hung too, under load) and ``NPROC`` is unset (:func:`install_collective_threads`). Real accelerators and one CPU device are unaffected.

Opt out of both with ``JAXRL_SELF_NO_XLA_GUARD=1``.
"""
from __future__ import annotations

import os
import sys
import warnings

FLAG_NAME = "xla_cpu_enable_concurrency_optimized_scheduler"
FLAG = f"--{FLAG_NAME}=false"


def _backends_initialised() -> bool:
    if "jax" not in sys.modules:
        return False
    try:  # private, but only used to decide whether to warn
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # pragma: no cover - jax internals moved
        return False


def forced_cpu_devices(flags: str | None = None) -> int:
    """``N`` of ``--xla_force_host_platform_device_count=N`` in ``XLA_FLAGS`` (1 when absent)."""
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    n = 1
    for part in flags.split():
        name, _, value = part.lstrip("-").partition("=")
        if name == "xla_force_host_platform_device_count" and value.isdigit():
            n = int(value)
    return n


def install_collective_threads() -> bool:
    """Set ``NPROC`` (XLA:CPU's intra-op thread count) to cores + N when ``XLA_FLAGS`` forces N >= cores (N >= 2)
    CPU devices and ``NPROC`` is unset (see the module docstring). Returns True when it set it."""
    n, cores = forced_cpu_devices(), os.cpu_count() or 1
    if n < 2 or n < cores or "NPROC" in os.environ or _backends_initialised():
        return False
    os.environ["NPROC"] = str(cores + n)
    return True


def install() -> bool:
    """Add the flag to ``XLA_FLAGS`` unless the user opted out or already chose a value (and see
    :func:`install_collective_threads`).

    Returns True when the flag is (now) active for this process.
    """
    if os.environ.get("JAXRL_SELF_NO_XLA_GUARD", "") not in ("", "0"):
        return False
    install_collective_threads()
    current = os.environ.get("XLA_FLAGS", "")
    if FLAG_NAME in current:  # the user decided; respect it
        return f"{FLAG_NAME}=false" in current
    if _backends_initialised():
        warnings.warn(
            "jaxrl_self was imported after JAX created its CPU backend, so it could not set "
            f"XLA_FLAGS={FLAG}. On small CPU machines, vmapping network initialisation over seeds can then "
            "hang in XLA's QR kernel. Import jaxrl_self first or export the flag yourself.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    os.environ["XLA_FLAGS"] = (current + " " + FLAG).strip()
    return True
