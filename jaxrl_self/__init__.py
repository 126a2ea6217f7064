"""jaxrl_self: reinforcement learning where a whole training run is one XLA program.

Submodules are imported lazily, so ``import jaxrl_self`` is cheap and never touches a JAX backend.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from jaxrl_self import _malloc, _xla_guard

XLA_GUARD_ACTIVE = _xla_guard.install()
#: glibc's allocator keeps freed memory for the next XLA:CPU call (``jaxrl_self._malloc``; opt out with
#: ``JAXRL_SELF_NO_MALLOC_TUNING=1``).
MALLOC_TUNED = _malloc.install()

__version__ = "0.1.0"

_LAZY = {
    "envs": "jaxrl_self.envs",
    "core": "jaxrl_self.core",
    "rl": "jaxrl_self.rl",
    "nets": "jaxrl_self.nets",
    "algos": "jaxrl_self.algos",
    "ppo": "jaxrl_self.algos.ppo",
    "lm": "jaxrl_self.lm",
}

__all__ = ["__version__", "XLA_GUARD_ACTIVE", "MALLOC_TUNED", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'jaxrl_self' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from jaxrl_self import algos, core, envs, lm, nets, rl  # noqa: F401
    from jaxrl_self.algos import ppo  # noqa: F401
