"""Name -> environment registry.

Entry points are ``"module:attribute"`` strings imported on first use, so ``import jaxrl_self.envs`` stays
fast and a broken optional environment cannot break the others. Users register their own with
:func:`register` (an entry-point string or any callable returning an environment or task).

Names with a registered *prefix* (``"gymnax:Pendulum-v1"``) are built by the prefix's adapter factory from the
rest of the name (:func:`register_prefix`); an adapter whose library is not installed raises
:class:`MissingExtraError`, one line naming the pip extra.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
from typing import Any, Callable

__all__ = ["register", "register_prefix", "make", "registered_names", "registered_prefixes",
           "UnknownEnvironmentError", "MissingExtraError"]


class UnknownEnvironmentError(ValueError):
    """Raised by :func:`make` for a name that is not registered."""


def _load_entry(entry: str | Callable[..., Any]) -> Callable[..., Any]:
    """A callable, or the attribute a ``"module:attribute"`` string names (imported now)."""
    if callable(entry):
        return entry
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    entry_point: str | Callable[..., Any]
    kwargs: dict
    description: str

    def load(self) -> Callable[..., Any]:
        return _load_entry(self.entry_point)


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


class MissingExtraError(UnknownEnvironmentError):
    """An adapter's library is not installed (the message names the pip extra)."""


@dataclasses.dataclass(frozen=True)
class _Prefix:
    prefix: str
    factory: str | Callable[..., Any]
    extra: str
    module: str  # the library the factory needs (checked before calling it)
    description: str

    def load(self) -> Callable[..., Any]:
        return _load_entry(self.factory)


_PREFIXES: dict[str, _Prefix] = {}


def register_prefix(prefix: str, factory: str | Callable[..., Any], *, extra: str, module: str,
                    description: str = "", overwrite: bool = False) -> None:
    """Make ``"<prefix>:<NAME>"`` build ``factory(NAME, **kwargs)``; ``module`` is the library it imports (a
    missing one is reported as ``pip install 'jaxrl-self[<extra>]'``)."""
    if prefix in _PREFIXES and not overwrite:
        raise ValueError(f"environment prefix {prefix!r} is already registered")
    _PREFIXES[prefix] = _Prefix(prefix, factory, extra, module, description)


def registered_prefixes() -> dict[str, str]:
    """Registered adapter prefixes with their descriptions."""
    return {p: _PREFIXES[p].description for p in sorted(_PREFIXES)}


def _make_prefixed(name: str, kwargs: dict) -> Any:
    prefix, _, rest = name.partition(":")
    spec = _PREFIXES[prefix]
    if not rest:
        raise UnknownEnvironmentError(f"environment {name!r}: name the {prefix} environment after the colon, "
                                      f"e.g. {prefix}:<NAME>")
    if importlib.util.find_spec(spec.module) is None:
        raise MissingExtraError(f"environment {name!r} needs {spec.module}, which is not installed: "
                                f"pip install 'jaxrl-self[{spec.extra}]'")
    return spec.load()(rest, **kwargs)


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def describe() -> dict[str, str]:
    """Registered names with their one-line descriptions."""
    return {n: _REGISTRY[n].description for n in registered_names()}


def make(name: str, **kwargs: Any) -> Any:
    """Build a registered environment (or sequence task) by name; ``kwargs`` override registered defaults."""
    key = _key(name)
    spec = _REGISTRY.get(key)
    if spec is None and isinstance(name, str) and name.partition(":")[0] in _PREFIXES:
        return _make_prefixed(name, kwargs)
    if spec is None:
        known = registered_names()
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownEnvironmentError(f"unknown environment {name!r}.{hint} Known names: {', '.join(known)}")
    return spec.load()(**{**spec.kwargs, **kwargs})
