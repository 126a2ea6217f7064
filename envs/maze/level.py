"""The maze ``Level`` pytree, its ASCII text format, and the named held-out mazes.

Coordinates and directions (the conventions of jaxued and minimax, i.e. of minigrid):

* a position is ``(x, y)``: ``x`` is the column (0 = left), ``y`` the row (0 = top); the wall map is indexed
  ``wall_map[y, x]``. The grid is the *inner* ``H x W`` area; the wall around it is implicit (never stored,
  always solid).
* directions: ``0`` = right (``+x``, ``'>'``), ``1`` = down (``+y``, ``'v'``), ``2`` = left (``-x``, ``'<'``),
  ``3`` = up (``-y``, ``'^'``). Turning right adds 1 (mod 4), turning left subtracts 1.

Text format (one character per cell, rows top to bottom, joined by ``"\\n"``, no trailing newline)::

    '#' wall   '.' free   'G' goal   '>' 'v' '<' '^' agent facing right / down / left / up

Exactly one goal and one agent; they stand on free cells (the cell under them is not a wall).
"""
from __future__ import annotations

import difflib
import functools
import importlib.resources
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = [
    "Level",
    "DIR_TO_VEC",
    "AGENT_CHARS",
    "NAMED_LEVEL_NAMES",
    "level_from_str",
    "level_to_str",
    "level_is_valid",
    "stack_levels",
    "parse_level_file",
    "named_levels",
    "named_level",
]

#: ``DIR_TO_VEC[d] = (dx, dy)`` for direction ``d`` (0 right, 1 down, 2 left, 3 up).
DIR_TO_VEC = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], dtype=np.int32)
#: The agent's character for each direction.
AGENT_CHARS = (">", "v", "<", "^")
_ALLOWED = "'#' (wall), '.' (free), 'G' (goal), '>' 'v' '<' '^' (agent facing right/down/left/up)"

#: The eight held-out mazes of the UED literature, in the order of ``envs/data/heldout_mazes.txt``.
NAMED_LEVEL_NAMES = (
    "SixteenRooms",
    "SixteenRooms2",
    "Labyrinth",
    "LabyrinthFlipped",
    "Labyrinth2",
    "StandardMaze",
    "StandardMaze2",
    "StandardMaze3",
)


@struct.dataclass
class Level:
    """One maze (a pytree; add a leading axis for a batch of levels).

    Attributes:
        wall_map: ``bool[H, W]``, ``wall_map[y, x]`` is True where the inner grid has a wall.
        goal_pos: ``int32[2]``, the goal's ``(x, y)``.
        agent_pos: ``int32[2]``, the agent's start ``(x, y)``.
        agent_dir: ``int32[]``, the agent's start direction (0 right, 1 down, 2 left, 3 up).
    """

    wall_map: jax.Array
    goal_pos: jax.Array
    agent_pos: jax.Array
    agent_dir: jax.Array

    @property
    def height(self) -> int:
        return int(self.wall_map.shape[-2])

    @property
    def width(self) -> int:
        return int(self.wall_map.shape[-1])

    @classmethod
    def from_str(cls, text: str, height: int | None = None, width: int | None = None) -> "Level":
        """Parse the ASCII format (see the module docstring); same as :func:`level_from_str`."""
        return level_from_str(text, height, width)

    def to_str(self) -> str:
        """The ASCII text of this (unbatched, concrete) level; same as :func:`level_to_str`."""
        return level_to_str(self)


def _make_level(wall_map, goal_pos, agent_pos, agent_dir) -> Level:
    return Level(
        wall_map=jnp.asarray(wall_map, jnp.bool_),
        goal_pos=jnp.asarray(goal_pos, jnp.int32),
        agent_pos=jnp.asarray(agent_pos, jnp.int32),
        agent_dir=jnp.asarray(agent_dir, jnp.int32),
    )


def level_from_str(text: str, height: int | None = None, width: int | None = None) -> Level:
    """Parse one level from its ASCII text.

    Surrounding blank lines and whitespace are ignored; everything else must be exact. ``height``/``width``
    (optional) are the expected grid size. Raises ``ValueError`` naming the row, column and character at the
    first problem (ragged or wrong-sized rows, unknown characters, missing or repeated goal/agent).
    """
    if not isinstance(text, str):
        raise TypeError(f"level text must be a str, got {type(text).__name__}")
    rows = text.strip().splitlines()
    if not rows or rows == [""]:
        raise ValueError("level text is empty; expected rows of " + _ALLOWED)
    if height is not None and len(rows) != height:
        raise ValueError(f"level text has {len(rows)} rows, expected {height}")
    ncols = width if width is not None else len(rows[0])
    wall = np.zeros((len(rows), ncols), dtype=bool)
    goal, agent, agent_dir = None, None, None
    for y, row in enumerate(rows):
        if len(row) != ncols:
            raise ValueError(f"level text row {y} has {len(row)} characters, expected {ncols}: {row!r}")
        for x, c in enumerate(row):
            if c == "#":
                wall[y, x] = True
            elif c == ".":
                pass
            elif c == "G":
                if goal is not None:
                    raise ValueError(f"level text has a second goal 'G' at row {y}, column {x} (the first is at "
                                     f"row {goal[1]}, column {goal[0]}); exactly one goal is allowed")
                goal = (x, y)
            elif c in AGENT_CHARS:
                if agent is not None:
                    raise ValueError(f"level text has a second agent {c!r} at row {y}, column {x} (the first is "
                                     f"at row {agent[1]}, column {agent[0]}); exactly one agent is allowed")
                agent, agent_dir = (x, y), AGENT_CHARS.index(c)
            else:
                raise ValueError(f"level text has an unknown character {c!r} at row {y}, column {x}; "
                                 f"allowed: {_ALLOWED}")
    if goal is None:
        raise ValueError("level text has no goal 'G'; exactly one is required")
    if agent is None:
        raise ValueError("level text has no agent ('>' 'v' '<' '^'); exactly one is required")
    return _make_level(wall, goal, agent, agent_dir)


def level_to_str(level: Level) -> str:
    """The ASCII text of one concrete, unbatched level (inverse of :func:`level_from_str`).

    Raises ``ValueError`` for a batched or malformed level (goal/agent out of the grid, on a wall, or on the
    same cell; direction outside 0..3), since such a level has no faithful text.
    """
    wall = np.asarray(level.wall_map)
    if wall.ndim != 2:
        raise ValueError(f"level_to_str takes one level; wall_map has shape {wall.shape} (a batch?). "
                         "Index it first, e.g. jax.tree.map(lambda x: x[i], levels)")
    h, w = wall.shape
    gx, gy = (int(v) for v in np.asarray(level.goal_pos))
    ax, ay = (int(v) for v in np.asarray(level.agent_pos))
    d = int(np.asarray(level.agent_dir))
    for name, (px, py) in (("goal_pos", (gx, gy)), ("agent_pos", (ax, ay))):
        if not (0 <= px < w and 0 <= py < h):
            raise ValueError(f"Level.{name}=({px}, {py}) lies outside the {h}x{w} grid")
        if wall[py, px]:
            raise ValueError(f"Level.{name}=({px}, {py}) lies on a wall")
    if (gx, gy) == (ax, ay):
        raise ValueError(f"Level.goal_pos and Level.agent_pos are the same cell ({gx}, {gy})")
    if not 0 <= d < 4:
        raise ValueError(f"Level.agent_dir={d}, allowed 0 (right), 1 (down), 2 (left), 3 (up)")
    grid = np.where(wall, "#", ".").astype("<U1")
    grid[gy, gx] = "G"
    grid[ay, ax] = AGENT_CHARS[d]
    return "\n".join("".join(row) for row in grid)


def level_is_valid(level: Level) -> jax.Array:
    """Traced check of one level: goal and agent inside the grid, on free cells, distinct; direction in 0..3."""
    h, w = level.wall_map.shape[-2:]

    def ok(pos):
        x, y = pos[0], pos[1]
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        return inside & ~level.wall_map[jnp.clip(y, 0, h - 1), jnp.clip(x, 0, w - 1)]

    distinct = jnp.any(level.goal_pos != level.agent_pos)
    return ok(level.goal_pos) & ok(level.agent_pos) & distinct & (level.agent_dir >= 0) & (level.agent_dir < 4)


def stack_levels(levels: Iterable[Level]) -> Level:
    """Stack levels of the same grid size into one ``Level`` with a leading axis (e.g. for ``LevelSet``)."""
    levels = list(levels)
    if not levels:
        raise ValueError("stack_levels needs at least one level")
    shapes = {tuple(np.shape(lv.wall_map)) for lv in levels}
    if len(shapes) != 1:
        raise ValueError(f"stack_levels: levels have different grid sizes {sorted(shapes)}")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *levels)


# ---------------------------------------------------------------------------------------------- level files
def parse_level_file(text: str, height: int | None = None, width: int | None = None) -> dict[str, Level]:
    """Parse a file of named levels: ``[Name]`` headers, each followed by the level's rows; blank lines
    separate entries; lines starting with ``"# "`` (hash, space) are comments (a maze row never has a space).
    Errors name the entry and the line number."""
    entries: dict[str, tuple[int, list[str]]] = {}
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("# "):
            continue
        if not stripped:
            current = None
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            if current in entries:
                raise ValueError(f"level file line {lineno}: level [{current}] appears twice")
            entries[current] = (lineno, [])
            continue
        if current is None:
            raise ValueError(f"level file line {lineno}: maze row {stripped!r} outside a [Name] section")
        entries[current][1].append(stripped)
    out = {}
    for name, (lineno, rows) in entries.items():
        try:
            out[name] = level_from_str("\n".join(rows), height, width)
        except ValueError as e:
            raise ValueError(f"level file, level [{name}] (header on line {lineno}): {e}") from None
    return out


@functools.lru_cache(maxsize=1)
def _heldout_text() -> str:
    return (importlib.resources.files("jaxrl_self.envs") / "data" / "heldout_mazes.txt").read_text()


@functools.lru_cache(maxsize=1)
def _named_levels_cached() -> dict[str, Level]:
    levels = parse_level_file(_heldout_text(), 13, 13)
    missing = [n for n in NAMED_LEVEL_NAMES if n not in levels]
    if missing:  # pragma: no cover - guards the shipped data file
        raise RuntimeError(f"envs/data/heldout_mazes.txt lacks the named levels {missing}")
    return {n: levels[n] for n in NAMED_LEVEL_NAMES}


def named_levels() -> dict[str, Level]:
    """The eight held-out 13x13 mazes (SixteenRooms, SixteenRooms2, Labyrinth, LabyrinthFlipped, Labyrinth2,
    StandardMaze, StandardMaze2, StandardMaze3), as in dcd/minimax/jaxued, with the start direction of
    ``envs/data/heldout_mazes.txt``. ``stack_levels(named_levels().values())`` gives one batched Level."""
    return dict(_named_levels_cached())


def named_level(name: str) -> Level:
    """One held-out maze by name (case-sensitive); an unknown name raises ``ValueError`` listing the names."""
    levels = _named_levels_cached()
    if name in levels:
        return levels[name]
    lower = {n.lower(): n for n in levels}
    close = difflib.get_close_matches(str(name).lower(), list(lower), n=1, cutoff=0.4)
    hint = f" Did you mean {lower[close[0]]!r}?" if close else ""
    raise ValueError(f"unknown named maze {name!r}.{hint} Known names: {', '.join(levels)}")
