"""Checkpoints of a whole run: a thin wrapper over orbax's ``CheckpointManager``.

Each checkpoint is one orbax step directory ``<dir>/<step>/`` (``step`` = number of updates done) holding two
items::

    state   the whole batched RunState (params, optimiser state, RNG keys, env state, counters...),
            saved with ``ocp.args.StandardSave`` and restored into the abstract structure of ``train.init``;
    config  a JSON description of the run (algorithm, environment, seeds, every config field), saved with
            ``ocp.args.JsonSave``.

Never losing a run:

* orbax writes a step into ``<step>.orbax-checkpoint-tmp-*`` and renames it when complete, so a crash
  mid-save leaves at most a temporary directory, which is ignored (and cleaned up by the next manager);
* saves are synchronous (:meth:`Checkpointer.save` returns once the step is on disk), and old steps are only
  deleted *after* the new one is confirmed finalised; with ``keep >= 1`` the newest good checkpoint always
  survives a failed save. (orbax's own ``max_to_keep`` is not used: it schedules deletions when a save
  starts, so a failed save could remove the previous step.)
* :meth:`Checkpointer.restore` falls back to the next older step (with a warning) if the newest one cannot be
  read. With ``set_aside_unreadable=True`` (what ``--resume`` does) the unreadable newer steps are then *set
  aside*: renamed ``<step>.unreadable-<YYYYmmdd-HHMMSS>`` in the same folder, a name orbax does not take for a
  step, so the files are kept for inspection and the resumed run can write that step again. Nothing is moved
  unless an older step was restored (a checkpoint that no code can read is left where it is), and a step
  written with another config is never set aside: it raises :class:`~jaxrl_self.core.CheckpointMismatchError`.

Config checks: :func:`config_to_dict` turns a (nested) config dataclass into JSON; :func:`diff_configs`
compares two such dicts field by field; :meth:`Checkpointer.check_compatible` raises
:class:`~jaxrl_self.core.CheckpointMismatchError` naming each differing field.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import os
import sys
import typing
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jaxrl_self.core.errors import CheckpointMismatchError
from jaxrl_self.run.distributed import barrier

__all__ = [
    "Checkpointer",
    "CheckpointSaveError",
    "SetAsideStep",
    "UNREADABLE_TAG",
    "config_to_dict",
    "config_from_dict",
    "diff_configs",
    "COMPARED_KEYS_IGNORED",
]

#: Top-level keys of the run description that may differ between a checkpoint and the run resuming it.
COMPARED_KEYS_IGNORED = ("runner", "version", "created")

#: A step directory that could not be read is renamed ``<step>.<UNREADABLE_TAG>-<YYYYmmdd-HHMMSS>``.
UNREADABLE_TAG = "unreadable"

_MISSING = "<missing>"


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; earlier checkpoints are untouched."""


@dataclasses.dataclass(frozen=True)
class SetAsideStep:
    """A checkpoint step that could not be read, renamed out of orbax's sight (kept, never deleted).

    Attributes:
        step: the step (updates done) it held.
        path: where it is now, ``<checkpoints>/<step>.unreadable-<YYYYmmdd-HHMMSS>``.
        error: why it could not be read, in one line.
    """

    step: int
    path: Path
    error: str

    def message(self, restored_step: int) -> str:
        """The one-line warning shown when a resumed run continues from ``restored_step`` instead."""
        return (f"warning: checkpoint step {self.step} could not be read ({self.error}); set aside as {self.path} "
                f"(kept for inspection); continuing from step {restored_step}")


def _one_line(error: BaseException, limit: int = 240) -> str:
    """``Type: message`` of ``error`` on one line, cut to ``limit`` characters (orbax errors run to pages)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------- configs <-> JSON
def _json_value(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return config_to_dict(x)
    if isinstance(x, enum.Enum):
        return _json_value(x.value)
    if isinstance(x, Mapping):
        return {str(k): _json_value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_value(v) for v in x]
    if hasattr(x, "shape") and hasattr(x, "dtype"):  # numpy / jax arrays and scalars
        a = np.asarray(x)
        return _json_value(a.item() if a.ndim == 0 else a.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass (possibly nested, possibly a ``flax.struct`` dataclass) as a JSON-able dict."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    return {f.name: _json_value(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config of class ``cls`` from :func:`config_to_dict` output (unknown keys are an error)."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; fields: {sorted(names)}")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - unresolvable annotations
        hints = {}
    kwargs = {}
    for name, value in data.items():
        f = names[name]
        sub = _dataclass_type(hints.get(name), f)
        if sub is not None and isinstance(value, Mapping):
            value = config_from_dict(sub, value)
        elif isinstance(value, list):
            value = _tuplify(value)
        kwargs[name] = value
    return cls(**kwargs)


def _tuplify(v: Any) -> Any:
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


def _dataclass_type(hint: Any, field: dataclasses.Field) -> type | None:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint) or ():
        if isinstance(arg, type) and dataclasses.is_dataclass(arg):
            return arg
    default = field.default
    if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = field.default_factory()  # type: ignore[misc]
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return type(default)
    return None


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def diff_configs(saved: Mapping[str, Any], current: Mapping[str, Any],
                 ignore: tuple[str, ...] = COMPARED_KEYS_IGNORED) -> dict[str, tuple[Any, Any]]:
    """Field-by-field differences ``{dotted.field: (saved, current)}`` between two run descriptions."""
    a = _flatten({k: v for k, v in saved.items() if k not in ignore})
    b = _flatten({k: v for k, v in current.items() if k not in ignore})
    diffs = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if _normalise(va) != _normalise(vb):
            diffs[key] = (va, vb)
    return diffs


def _normalise(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_normalise(x) for x in v)
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    return v


# ---------------------------------------------------------------------------------------- the manager
def _is_closed_loop_noise(unraisable: Any) -> bool:
    exc = unraisable.exc_value
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


def _drop_closed_loop_noise() -> None:
    """Silence the aftermath of a failed restore: the reads orbax still had in flight finish on the event loop it
    has already closed, and each prints ``Exception ignored ... RuntimeError: Event loop is closed`` with a
    traceback (nobody waits for those reads; nothing is lost). From the first restore on, this process's
    ``sys.unraisablehook`` drops exactly that error and passes every other one to the previous hook."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_noise", False):
        return

    def hook(unraisable: Any) -> None:
        if not _is_closed_loop_noise(unraisable):
            previous(unraisable)

    hook.drops_closed_loop_noise = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


class Checkpointer:
    """Save / restore a batched ``RunState`` plus its run description under ``directory``.

    Args:
        directory: where step directories live (created on the first save).
        keep: how many of the newest checkpoints to keep (>= 1).
        barrier_timeout_s: in a multi-process run, how long :meth:`save` waits for every process to have
            finished the step before any of them lists and prunes the steps (see :meth:`save`).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3, barrier_timeout_s: float = 300):
        import orbax.checkpoint as ocp

        if keep < 1:
            raise ValueError(f"keep={keep} must be >= 1")
        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.keep = int(keep)
        self.barrier_timeout_s = float(barrier_timeout_s)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,  # we prune ourselves, after a save is confirmed (see module docstring)
            create=True,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
        )
        self._mgr = ocp.CheckpointManager(self.directory, options=options)
        #: the steps the last :meth:`restore` with ``set_aside_unreadable=True`` set aside, oldest first
        self.set_aside: list[SetAsideStep] = []

    # ------------------------------------------------------------------ queries
    def all_steps(self) -> list[int]:
        self._mgr.reload()
        return sorted(int(s) for s in self._mgr.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def read_config(self, step: int | None = None) -> dict[str, Any]:
        """The run description stored with ``step`` (default: the newest)."""
        step = self._resolve(step)
        out = self._mgr.restore(step, args=self._ocp.args.Composite(config=self._ocp.args.JsonRestore()))
        return dict(out.config)

    def check_compatible(self, current: Mapping[str, Any], step: int | None = None) -> None:
        """Raise :class:`CheckpointMismatchError` if the checkpoint was made with another run description."""
        step = self._resolve(step)
        diffs = diff_configs(self.read_config(step), current)
        if diffs:
            raise CheckpointMismatchError(str(self.directory / str(step)), diffs)

    # ------------------------------------------------------------------ save / restore
    def save(self, step: int, state: Any, config: Mapping[str, Any]) -> None:
        """Write ``state`` and ``config`` as step ``step``, wait until it is on disk, then prune old steps.

        Raises :class:`CheckpointSaveError` when the step is not finalised; older steps are kept then.

        In a multi-process run the processes meet at a barrier before listing the steps and again before pruning
        (both no-ops with one process). Process 0 finalises the step (renames its folder) after the others return
        from orbax's save, so a process listing before that would prune differently from the others; and process 0
        deletes the pruned folders while a process still listing reads them (``FileNotFoundError`` there). Either
        way one process would stop and orbax's ``delete`` (itself a barrier) would wait for it.
        """
        args = self._ocp.args.Composite(
            state=self._ocp.args.StandardSave(state),
            config=self._ocp.args.JsonSave(dict(config)),
        )
        try:
            self._mgr.save(int(step), args=args, force=True)
            self._mgr.wait_until_finished()
        except Exception as e:
            raise CheckpointSaveError(f"saving checkpoint step {step} in {self.directory} failed: {e!r}; "
                                      f"earlier checkpoints are kept") from e
        barrier(f"checkpoint {step} saved", self.barrier_timeout_s)
        steps = self.all_steps()
        barrier(f"checkpoint {step} listed", self.barrier_timeout_s)
        if int(step) not in steps:
            raise CheckpointSaveError(f"checkpoint step {step} in {self.directory} was not finalised; "
                                      f"earlier checkpoints are kept")
        for old in steps[: -self.keep]:
            self._mgr.delete(old)

    def restore(self, abstract_state: Any, step: int | None = None, *,
                expected_config: Mapping[str, Any] | None = None,
                set_aside_unreadable: bool = False, rename: bool = True) -> tuple[int, Any, dict[str, Any]]:
        """Restore ``(step, state, config)``.

        ``abstract_state`` is the structure to restore into, e.g. ``jax.eval_shape(jax.vmap(train.init), keys)``
        (shapes, dtypes, typed PRNG keys). Without ``step``, tries the newest step first and falls back to
        older ones if it cannot be read.

        Args:
            expected_config: the run description of the run restoring; each step's stored description is
                compared with it before its state is read, and a difference raises
                :class:`~jaxrl_self.core.CheckpointMismatchError` (another config's state may not even fit
                ``abstract_state``; such a step is refused, never taken for damaged).
            set_aside_unreadable: once an older step is restored, rename the newer steps that could not be read
                to ``<step>.unreadable-<time>`` (listed in :attr:`set_aside`, no warning issued: the caller
                reports them) so that the run can write those steps again.
            rename: whether this process renames them (a multi-process run: process 0 alone does, the others
                only list them).
        """
        candidates = [self._resolve(step)] if step is not None else list(reversed(self.all_steps()))
        if not candidates:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        self.set_aside = []
        unreadable: list[tuple[int, str]] = []
        _drop_closed_loop_noise()  # before the first read: a failing read leaves its noise as it fails
        for s in candidates:
            try:
                state, config = self._restore_step(s, abstract_state, expected_config)
            except CheckpointMismatchError:
                raise
            except Exception as e:  # a damaged step: try the previous one
                if step is not None:
                    raise
                unreadable.append((s, _one_line(e)))
                if not set_aside_unreadable:
                    warnings.warn(f"could not restore checkpoint step {s} in {self.directory} ({_one_line(e)}); "
                                  "trying an older one", RuntimeWarning, stacklevel=2)
                continue
            if set_aside_unreadable:
                self.set_aside = [self._set_aside(bad, why, rename) for bad, why in reversed(unreadable)]
            return s, state, config
        raise FileNotFoundError(f"no readable checkpoint in {self.directory} (nothing was moved): "
                                + "; ".join(f"step {s}: {why}" for s, why in unreadable))

    def _restore_step(self, step: int, abstract_state: Any,
                      expected_config: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        if expected_config is not None:
            diffs = diff_configs(self.read_config(step), expected_config)
            if diffs:
                raise CheckpointMismatchError(str(self.directory / str(step)), diffs)
        out = self._mgr.restore(step, args=self._ocp.args.Composite(
            state=self._ocp.args.StandardRestore(abstract_state),
            config=self._ocp.args.JsonRestore(),
        ))
        return out.state, dict(out.config)

    def _set_aside(self, step: int, error: str, rename: bool = True) -> SetAsideStep:
        """Rename step directory ``step`` to ``<step>.unreadable-<time>``: no ``_<digits>`` ending and no orbax
        temporary suffix, so orbax neither lists it as a step nor cleans it up."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        target = self.directory / f"{step}.{UNREADABLE_TAG}-{stamp}"
        i = 2
        while target.exists():
            target, i = self.directory / f"{step}.{UNREADABLE_TAG}-{stamp}-{i}", i + 1
        if rename:
            (self.directory / str(step)).rename(target)
        barrier(f"checkpoint {step} set aside", self.barrier_timeout_s)  # renamed before any process lists again
        self._mgr.reload()
        return SetAsideStep(step=int(step), path=target, error=error)

    def close(self) -> None:
        self._mgr.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _resolve(self, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint in {self.directory}")
        elif int(step) not in self.all_steps():
            raise FileNotFoundError(f"no checkpoint step {step} in {self.directory}; steps: {self.all_steps()}")
        return int(step)
