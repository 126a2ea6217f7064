"""Errors with messages that name the field, the value and what is allowed."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

__all__ = ["ConfigError", "NonFiniteLossError", "CheckpointMismatchError", "check_field", "errors_within"]


class ConfigError(ValueError):
    """A configuration value is invalid. Raised before compiling."""

    def __init__(self, field: str, value: Any, allowed: str, owner: str = "Config"):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{owner}.{field}={value!r} is not allowed: {allowed}")


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN/inf. ``update`` is the first bad update index; the last good checkpoint is kept."""

    def __init__(self, update: int, seed_index: int | None = None, detail: str = ""):
        self.update, self.seed_index = update, seed_index
        where = f" (seed index {seed_index})" if seed_index is not None else ""
        super().__init__(f"non-finite loss at update {update}{where}; parameters from before that update were kept"
                         + (f". {detail}" if detail else ""))


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a run with a different configuration."""

    def __init__(self, path: str, differences: dict[str, tuple[Any, Any]]):
        self.path, self.differences = path, differences
        lines = "\n".join(f"  {k}: checkpoint={a!r}, this run={b!r}" for k, (a, b) in sorted(differences.items()))
        super().__init__(f"checkpoint {path} was made with another config; differing fields:\n{lines}")


def check_field(owner: str, field: str, value: Any, ok: bool, allowed: str) -> None:
    """Raise :class:`ConfigError` unless ``ok``. Use only on concrete (non-traced) values."""
    if not ok:
        raise ConfigError(field, value, allowed, owner)


@contextlib.contextmanager
def errors_within(owner: str, prefix: str = "") -> Iterator[None]:
    """Re-raise a :class:`ConfigError` from a nested config's ``validate`` as one of ``owner``, its field
    prefixed (``prefix="adversary."``: ``paired.Config.adversary.learning_rate``; ``""`` for a nested config
    whose flags are flat on the command line, e.g. a curriculum's student PPO)."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(prefix + e.field, e.value, e.allowed, owner) from None
