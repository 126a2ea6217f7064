"""Host-side (numpy) pictures of maze levels, states and observations.

* :func:`render_level` — the level's start: walls grey, goal green, agent a red triangle pointing its way,
  with the implicit border drawn as wall.
* :func:`render_state` — the current agent position/direction, the cells of its ``V x V`` view highlighted.
* :func:`render_observation` — the agent's egocentric view itself (agent at the bottom centre, facing up).
* :func:`render_frame` — the highlighted map with the view next to it (what a video frame wants).
* :func:`save_png` — write any of these to a PNG (needs Pillow: ``pip install pillow`` or the ``render`` extra).

All take concrete, unbatched values (index a batch first) and return ``uint8[height_px, width_px, 3]``.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from jaxrl_self.envs.maze.level import DIR_TO_VEC, Level

__all__ = ["render_level", "render_state", "render_observation", "render_frame", "view_cells", "save_png"]

_BLACK = (0, 0, 0)
_GRID = (100, 100, 100)
_WALL = (100, 100, 100)
_GOAL = (0, 255, 0)
_AGENT = (255, 0, 0)
_UNSEEN = (40, 40, 40)

# cell codes in the atlas
_EMPTY_T, _WALL_T, _GOAL_T, _UNSEEN_T, _AGENT_T = 0, 1, 2, 3, 4  # agent tiles: 4 + direction


@functools.lru_cache(maxsize=8)
def _atlas(tile: int) -> np.ndarray:
    """``uint8[8, tile, tile, 3]``: empty, wall, goal, unseen, then the agent facing right, down, left, up."""
    c = (np.arange(tile) + 0.5) / tile
    yf, xf = np.meshgrid(c, c, indexing="ij")
    line = max(1, round(0.031 * tile))
    grid = np.zeros((tile, tile), bool)
    grid[:line, :] = True
    grid[:, :line] = True

    def plain(colour, with_grid):
        t = np.empty((tile, tile, 3), np.uint8)
        t[:] = colour
        if with_grid:
            t[grid] = _GRID
        return t

    # the agent: a triangle pointing right (minigrid's shape), rotated for the other directions
    a, b, cc = np.array([0.12, 0.19]), np.array([0.87, 0.50]), np.array([0.12, 0.81])
    v0, v1 = cc - a, b - a
    px, py = xf - a[0], yf - a[1]
    d00, d01, d11 = v0 @ v0, v0 @ v1, v1 @ v1
    d02, d12 = v0[0] * px + v0[1] * py, v1[0] * px + v1[1] * py
    inv = 1.0 / (d00 * d11 - d01 * d01)
    u, v = (d11 * d02 - d01 * d12) * inv, (d00 * d12 - d01 * d02) * inv
    tri = (u >= 0) & (v >= 0) & (u + v < 1)
    right = plain(_BLACK, False)
    right[tri] = _AGENT
    agents = [np.rot90(right, k=-k).copy() for k in range(4)]  # clockwise quarter turns: right, down, left, up
    for t in agents:
        t[grid] = _GRID
    tiles = [plain(_BLACK, True), plain(_WALL, False), plain(_GOAL, False), plain(_UNSEEN, True), *agents]
    return np.stack(tiles)


def _paint(codes: np.ndarray, tile: int) -> np.ndarray:
    """Cell codes ``int[R, C]`` -> picture ``uint8[R * tile, C * tile, 3]``."""
    r, c = codes.shape
    return _atlas(tile)[codes].transpose(0, 2, 1, 3, 4).reshape(r * tile, c * tile, 3)


def _unbatched(x: Any, ndim: int, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{what} has shape {a.shape}; rendering takes one unbatched level/state "
                         "(index the batch first, e.g. jax.tree.map(lambda x: x[0], levels))")
    return a


def _codes(wall_map, goal_pos, agent_pos, agent_dir, border: bool) -> np.ndarray:
    wall = _unbatched(wall_map, 2, "wall_map")
    gx, gy = (int(v) for v in _unbatched(goal_pos, 1, "goal_pos"))
    ax, ay = (int(v) for v in _unbatched(agent_pos, 1, "agent_pos"))
    codes = np.where(wall, _WALL_T, _EMPTY_T).astype(np.int64)
    codes[gy, gx] = _GOAL_T
    codes[ay, ax] = _AGENT_T + int(np.asarray(agent_dir)) % 4
    if border:
        codes = np.pad(codes, 1, constant_values=_WALL_T)
    return codes


def view_cells(agent_pos: Any, agent_dir: Any, view_size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates ``(x, y)``, each ``int[V, V]``, of the cells the agent sees, laid out like the observation
    image: ``[i, j]`` = ``i`` from the agent's left to its right, ``j`` from the farthest row to its own row."""
    v = int(view_size)
    i, j = np.meshgrid(np.arange(v), np.arange(v), indexing="ij")
    fwd, lat = v - 1 - j, i - v // 2
    dx, dy = DIR_TO_VEC[int(np.asarray(agent_dir)) % 4]
    ax, ay = (int(t) for t in np.asarray(agent_pos))
    return ax + fwd * dx - lat * dy, ay + fwd * dy + lat * dx


def render_level(level: Level, tile: int = 16, border: bool = True) -> np.ndarray:
    """The level at its start: ``uint8[(H + 2b) * tile, (W + 2b) * tile, 3]`` with ``b = 1`` if ``border``."""
    return _paint(_codes(level.wall_map, level.goal_pos, level.agent_pos, level.agent_dir, border), tile)


def render_state(state: Any, view_size: int = 5, tile: int = 16, border: bool = True,
                 highlight: bool = True) -> np.ndarray:
    """A :class:`~jaxrl_self.envs.maze.env.MazeState` (current position and direction); the cells in the
    agent's view (those inside the picture) are lightened when ``highlight``."""
    lv = state.level
    img = _paint(_codes(lv.wall_map, lv.goal_pos, state.agent_pos, state.agent_dir, border), tile)
    if highlight:
        h, w = np.asarray(lv.wall_map).shape
        b = int(border)
        xs, ys = view_cells(state.agent_pos, state.agent_dir, view_size)
        mask = np.zeros((h + 2 * b, w + 2 * b), bool)
        ok = (xs + b >= 0) & (xs + b < w + 2 * b) & (ys + b >= 0) & (ys + b < h + 2 * b)
        mask[ys[ok] + b, xs[ok] + b] = True
        mask = np.kron(mask, np.ones((tile, tile), bool))
        lighter = (img + 0.3 * (255 - img.astype(np.float32))).astype(np.uint8)
        img = np.where(mask[..., None], lighter, img)
    return img


def render_observation(obs: Any, tile: int = 16) -> np.ndarray:
    """The agent's view from an observation ``{"image": [V, V, 3], "agent_dir": ...}`` (or the image alone;
    uint8 or the ``normalize_obs`` float version): rows from the farthest (top) to the agent's row (bottom),
    the agent at the bottom centre facing up. Unknown object ids are drawn as unseen."""
    image = obs["image"] if isinstance(obs, dict) else obs
    image = _unbatched(image, 3, "observation image")
    obj = np.asarray(image[..., 0])
    if np.issubdtype(obj.dtype, np.floating):
        obj = np.rint(obj * 10.0)
    obj = obj.astype(np.int64).T  # image[i, j] is (across, depth) -> rows = depth, columns = across
    codes = np.full(obj.shape, _UNSEEN_T, np.int64)
    codes[obj == 1] = _EMPTY_T
    codes[obj == 2] = _WALL_T
    codes[obj == 8] = _GOAL_T
    v = obj.shape[0]
    codes[v - 1, obj.shape[1] // 2] = _AGENT_T + 3  # the agent, facing up
    return _paint(codes, tile)


def render_frame(state: Any, obs: Any, view_size: int = 5, tile: int = 16, gap: int = 1) -> np.ndarray:
    """:func:`render_state` with :func:`render_observation` to its right (top-aligned), ``gap`` tiles apart."""
    full = render_state(state, view_size=view_size, tile=tile)
    view = render_observation(obs, tile=tile)
    h = max(full.shape[0], view.shape[0])
    out = np.zeros((h, full.shape[1] + gap * tile + view.shape[1], 3), np.uint8)
    out[: full.shape[0], : full.shape[1]] = full
    out[: view.shape[0], full.shape[1] + gap * tile :] = view
    return out


def save_png(image: Any, path: str | os.PathLike) -> str:
    """Write an ``uint8[H, W, 3]`` picture to ``path`` as PNG; returns the path. Needs Pillow."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("save_png needs Pillow: pip install pillow (or pip install 'jaxrl-self[render]')") from e
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"save_png takes a uint8 [H, W, 3] image, got {arr.dtype} {arr.shape}")
    Image.fromarray(arr).save(os.fspath(path), format="PNG")
    return os.fspath(path)
