"""The persistent compilation cache of the ``jaxrl-self`` command line: compiles paid once per machine.

A CLI run of a configuration compiled before (same program, same jax/jaxlib, same XLA flags) loads the
executables from a folder instead of compiling them again. The CLI turns it on (``jaxrl_self.cli.main``);
``import jaxrl_self`` and library use never do.

Where the cache lives, first match wins:

1. ``--compile-cache DIR`` on the command line (``--compile-cache off`` switches it off);
2. the environment variable ``JAXRL_SELF_COMPILE_CACHE`` (a folder, or ``0``/``off``/``false``/``no`` for off);
3. a cache the user already set for JAX (``JAX_COMPILATION_CACHE_DIR`` or ``jax_compilation_cache_dir``), kept
   as it is;
4. ``$XDG_CACHE_HOME/jaxrl_self/jax``, else ``~/.cache/jaxrl_self/jax``.

JAX writes an entry only for programs that took at least ``jax_persistent_cache_min_compile_time_secs`` to compile
(JAX's default 1 s); the CLI lowers it to :data:`MIN_COMPILE_TIME_S` so that the smaller CPU programs (a run's
init program, the evaluation) are cached too, while op-by-op dispatches (milliseconds each) are not written.
The folder is never pruned by us: delete it to reclaim the space.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

__all__ = ["ENV_VAR", "OFF_VALUES", "MIN_COMPILE_TIME_S", "default_cache_dir", "resolve_cache_dir",
           "enable_compile_cache"]

#: Environment variable naming the cache folder (or switching it off).
ENV_VAR = "JAXRL_SELF_COMPILE_CACHE"
#: Values of ``--compile-cache`` / :data:`ENV_VAR` that switch the cache off (case-insensitive).
OFF_VALUES = ("0", "off", "false", "no", "none")
#: Programs that compile faster than this are not written to the cache (JAX's default is 1 s).
MIN_COMPILE_TIME_S = 0.1


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/jaxrl_self/jax``, else ``~/.cache/jaxrl_self/jax``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxrl_self" / "jax"


def resolve_cache_dir(setting: str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The cache folder for ``setting`` (the ``--compile-cache`` value, None when not given) and the environment,
    in the order of the module docstring; None when switched off. Does not touch JAX."""
    environ = os.environ if environ is None else environ
    value = setting if setting is not None else environ.get(ENV_VAR)
    if value is not None:
        text = value.strip()
        if not text:
            from jaxrl_self.core.errors import ConfigError

            raise ConfigError("compile_cache" if setting is not None else ENV_VAR, value,
                              f"a folder, or one of {', '.join(OFF_VALUES)} to switch the compilation cache off",
                              owner="cli" if setting is not None else "environ")
        if text.lower() in OFF_VALUES:
            return None
        return Path(text).expanduser()
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    return default_cache_dir(environ)


def enable_compile_cache(setting: str | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at :func:`resolve_cache_dir` and lower the minimum compile time of a
    cached program to :data:`MIN_COMPILE_TIME_S`; returns the folder, or None when the cache is switched off (then
    ``jax_enable_compilation_cache`` is set to False, so a ``JAX_COMPILATION_CACHE_DIR`` of the user's is not used
    either). JAX creates the folder at its first compile, so a command that compiles nothing leaves none behind.

    Call it before the first compilation of the process: JAX opens the cache folder once, at its first compile.
    A cache the user configured for JAX (step 3 of the module docstring) keeps its own thresholds.
    """
    import jax

    env = os.environ if environ is None else environ
    configured = jax.config.jax_compilation_cache_dir  # JAX reads JAX_COMPILATION_CACHE_DIR into it at import
    if setting is None and env.get(ENV_VAR) is None and configured:  # the user's own JAX cache: leave it as it is
        return Path(configured)
    path = resolve_cache_dir(setting, env)
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
