"""Guard against a known XLA:CPU deadlock on small machines.

On jax/jaxlib 0.10.x with few CPU cores, a jitted program that runs several batched LAPACK QR calls
(``jax.vmap`` over an orthogonal initialiser, i.e. initialising networks for several seeds at once) can hang
forever: both intra-op worker threads wait inside the QR kernel for sub-tasks queued behind themselves.
``--xla_cpu_enable_concurrency_optimized_scheduler=false`` avoided it in every run we tried
(see docs/troubleshooting.md).

XLA reads ``XLA_FLAGS`` when the first backend is created, not when jax is imported, so setting it here works
as long as no computation has run yet. The flag only concerns the CPU backend; on GPU/TPU it is inert.

Opt out with ``JAXRL_SELF_NO_XLA_GUARD=1``.
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


def install() -> bool:
    """Add the flag to ``XLA_FLAGS`` unless the user opted out or already chose a value.

    Returns True when the flag is (now) active for this process.
    """
    if os.environ.get("JAXRL_SELF_NO_XLA_GUARD", "") not in ("", "0"):
        return False
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
