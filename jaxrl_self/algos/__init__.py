"""Algorithms by name, imported lazily (the CLI looks them up here).

    from jaxrl_self import algos
    ppo = algos.get("ppo")            # the module jaxrl_self.algos.ppo
    ppo.make_train(ppo.Config(), env)

Every algorithm module exposes ``NAME``, ``Config``, ``RunState``, ``Metrics``, ``make_train`` and
``make_eval`` (see docs / notes on the algorithm interface).
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["ALGORITHMS", "get", "names"]

#: algorithm name -> module path
ALGORITHMS: dict[str, str] = {
    "ppo": "jaxrl_self.algos.ppo",
    "grpo": "jaxrl_self.algos.grpo",
    "token_ppo": "jaxrl_self.algos.token_ppo",
    "tppo": "jaxrl_self.algos.tppo",
    # curricula on level environments (the maze): PPO students with a level curriculum
    "dr": "jaxrl_self.curricula.dr",
    "plr": "jaxrl_self.curricula.plr",
    "robust_plr": "jaxrl_self.curricula.robust_plr",
    "accel": "jaxrl_self.curricula.accel",
    "parallel_plr": "jaxrl_self.curricula.parallel_plr",
    "parallel_accel": "jaxrl_self.curricula.parallel_accel",
    "paired": "jaxrl_self.curricula.paired",
    # self-improvement on the LM-RL layer
    "ttrl": "jaxrl_self.teach.ttrl",
    "rlt": "jaxrl_self.teach.rlt",
    "soar": "jaxrl_self.teach.soar",
    "soar_maze": "jaxrl_self.teach.soar_maze",  # SOAR's grounded teacher designing mazes (a curriculum)
}


def names() -> list[str]:
    return sorted(ALGORITHMS)


def get(name: str) -> ModuleType:
    """The module implementing algorithm ``name`` (case-insensitive; ``-`` and ``_`` alike: ``soar-maze``)."""
    key = name.strip().lower().replace("-", "_")
    if key not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; known algorithms: {', '.join(names())}")
    return importlib.import_module(ALGORITHMS[key])


def __getattr__(name: str) -> ModuleType:
    if name in ALGORITHMS:
        return get(name)
    raise AttributeError(f"module 'jaxrl_self.algos' has no attribute {name!r}")
