"""Shared test setup.

jaxrl_self is imported before anything touches a JAX backend so that its XLA:CPU guard (see
docs/troubleshooting.md) is in place. A persistent compilation cache in a per-session temp dir lets
subprocess-based tests (kill-and-resume, CLI) reuse programs compiled by the parent.
"""
import os
import tempfile

import jaxrl_self  # noqa: F401  (sets XLA_FLAGS before the backend starts)

# The test programs are tiny: compiling them costs more than running them. XLA's backend optimisations
# (-O0: about 30% of the suite's CPU time) and its newer fusion emitters (off: another ~40% of what remains)
# are switched off for tests. Subprocesses (CLI, kill-and-resume, wheel install) inherit the flags.
# Set JAXRL_SELF_TEST_FULL_OPT=1 to test with XLA's defaults.
_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
if not os.environ.get("JAXRL_SELF_TEST_FULL_OPT"):
    _flags = os.environ.get("XLA_FLAGS", "")
    _extra = [f for f in _FAST_COMPILE if f.split("=")[0] not in _flags]
    os.environ["XLA_FLAGS"] = " ".join([_flags, *_extra]).strip()

_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxrl_self_test_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
