"""What ``jaxrl-self list`` shows: every registered algorithm, what it is, and the environments it trains on.

* The description is the first paragraph of the algorithm module's docstring, on one line.
* The environments are the registered ones that fit the module's ``ENV_KINDS`` (see
  :data:`~jaxrl_self.core.algorithm.ENVIRONMENT_KINDS`): each registered environment is built once with its
  defaults and classified by :func:`~jaxrl_self.core.algorithm.env_kinds`; an entry of ``ENV_KINDS`` that is not
  a kind is the name of the one environment the method takes (RLT: ``addition``).

A module that cannot be imported, or one that does not declare ``ENV_KINDS``, is still listed, with that said.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from types import ModuleType
from typing import Mapping

from jaxrl_self.core.algorithm import ENVIRONMENT_KINDS, env_kinds

__all__ = ["AlgorithmInfo", "algorithm_catalog", "describe_algorithm", "environment_kinds", "module_summary"]


@dataclasses.dataclass(frozen=True)
class AlgorithmInfo:
    """One algorithm of the registry as ``jaxrl-self list`` prints it.

    Attributes:
        name: the registered name (``jaxrl-self train NAME``).
        description: the first paragraph of its module's docstring, on one line.
        env_kinds: the module's ``ENV_KINDS``; ``None`` when it declares none.
        environments: the registered environments that fit ``env_kinds``, sorted.
        noun: ``tasks`` when all of those are token tasks, else ``environments``.
        error: why the module could not be imported (then the other fields are empty).
    """

    name: str
    description: str = ""
    env_kinds: tuple[str, ...] | None = None
    environments: tuple[str, ...] = ()
    noun: str = "environments"
    error: str | None = None

    def accepts(self) -> str:
        """``environments: cartpole, maze (any environment with actions, not token tasks)``; ``tasks: addition
        only`` when ``ENV_KINDS`` names environments rather than kinds."""
        if self.env_kinds is None:
            return "environments: not declared (its module has no ENV_KINDS)"
        meaning = "; ".join(ENVIRONMENT_KINDS[k] for k in self.env_kinds if k in ENVIRONMENT_KINDS)
        names = ", ".join(self.environments) or "none registered"
        return f"{self.noun}: {names}" + (f" ({meaning})" if meaning else " only")

    def line(self, width: int = 15) -> str:
        """The one line of ``jaxrl-self list``: name, description, what it trains on."""
        if self.error is not None:
            return f"{self.name:<{width}} (cannot be imported: {self.error})"
        accepts = self.accepts()
        return f"{self.name:<{width}} {self.description} {accepts[0].upper()}{accepts[1:]}."


def module_summary(module: ModuleType) -> str:
    """The first paragraph of ``module``'s docstring on one line, reST markup removed (``x`` and :mod:`a.b.x` -> x)."""
    doc = (module.__doc__ or "").strip()
    text = " ".join(doc.split("\n\n", 1)[0].split())
    text = re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def environment_kinds(names: list[str] | None = None) -> dict[str, frozenset[str]]:
    """Registered environment name -> its kinds (built once with its defaults; one that fails to build: none)."""
    from jaxrl_self import envs

    out: dict[str, frozenset[str]] = {}
    for name in envs.registered_names() if names is None else names:
        try:
            out[name] = env_kinds(envs.make(name))
        except Exception:  # a broken optional environment must not break the listing
            out[name] = frozenset()
    return out


def describe_algorithm(name: str, module: ModuleType, kinds: Mapping[str, frozenset[str]]) -> AlgorithmInfo:
    """``module`` (registered as ``name``) with the environments of ``kinds`` (:func:`environment_kinds`) it takes."""
    declared = getattr(module, "ENV_KINDS", None)
    if declared is None:
        return AlgorithmInfo(name, module_summary(module))
    declared = tuple(declared)
    fits = sorted(env for env, k in kinds.items() if env in declared or k & set(declared))
    noun = "tasks" if fits and all("task" in kinds[env] for env in fits) else "environments"
    return AlgorithmInfo(name, module_summary(module), declared, tuple(fits), noun)


def algorithm_catalog() -> list[AlgorithmInfo]:
    """Every algorithm of :mod:`jaxrl_self.algos`, sorted by name (a module that fails to import says why)."""
    import jaxrl_self.algos as algos

    kinds = environment_kinds()
    out = []
    for name in algos.names():
        try:
            module = importlib.import_module(algos.ALGORITHMS[name])
        except Exception as e:  # one broken module must not hide the others
            out.append(AlgorithmInfo(name, error=" ".join(f"{type(e).__name__}: {e}".split())))
            continue
        out.append(describe_algorithm(name, module, kinds))
    return out
