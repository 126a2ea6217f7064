"""Name -> environment registry.

Entry points are ``"module:attribute"`` strings imported on first use, so ``import jaxrl_self.envs`` stays
fast and a broken optional environment cannot break the others. Users register their own with
:func:`register` (an entry-point string or any callable returning an environment or task).
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any, Callable

__all__ = ["register", "make", "registered_names", "UnknownEnvironmentError"]


class UnknownEnvironmentError(ValueError):
    """Raised by :func:`make` for a name that is not registered."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    entry_point: str | Callable[..., Any]
    kwargs: dict
    description: str

    def load(self) -> Callable[..., Any]:
        if callable(self.entry_point):
            return self.entry_point
        module, _, attr = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, _Spec] = {}


def _key(name: str) -> str:
    return name.strip().lower()


def register(
    name: str,
    entry_point: str | Callable[..., Any],
    *,
    description: str = "",
    overwrite: bool = False,
    **kwargs: Any,
) -> None:
    """Register ``name`` (case-insensitive) -> ``entry_point(**kwargs)``.

    ``kwargs`` are defaults that ``make(name, **overrides)`` can override.
    """
    key = _key(name)
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"environment name {name!r} is already registered; pass overwrite=True to replace it")
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ValueError(f"entry_point must look like 'package.module:Class', got {entry_point!r}")
    _REGISTRY[key] = _Spec(key, entry_point, dict(kwargs), description)


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def describe() -> dict[str, str]:
    """Registered names with their one-line descriptions."""
    return {n: _REGISTRY[n].description for n in registered_names()}


def make(name: str, **kwargs: Any) -> Any:
    """Build a registered environment (or sequence task) by name; ``kwargs`` override registered defaults."""
    key = _key(name)
    spec = _REGISTRY.get(key)
    if spec is None:
        known = registered_names()
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownEnvironmentError(f"unknown environment {name!r}.{hint} Known names: {', '.join(known)}")
    return spec.load()(**{**spec.kwargs, **kwargs})
