"""Shared test setup.

jaxrl_self is imported before anything touches a JAX backend so that its XLA:CPU guard (see
docs/troubleshooting.md) is in place. A persistent compilation cache in a per-session temp dir lets
subprocess-based tests (kill-and-resume, CLI) reuse programs compiled by the parent.
"""
import os
import tempfile

import jaxrl_self  # noqa: F401  (sets XLA_FLAGS before the backend starts)

# The test programs are tiny: XLA's backend optimisations cost more compile time than they save in run time
# (about 30% of the suite's CPU time). Subprocesses (CLI, kill-and-resume, wheel install) inherit the flag.
# Set JAXRL_SELF_TEST_FULL_OPT=1 to test at XLA's default optimisation level.
if not os.environ.get("JAXRL_SELF_TEST_FULL_OPT") and "xla_backend_optimization_level" not in os.environ.get(
        "XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxrl_self_test_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
