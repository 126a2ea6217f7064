"""Tests of the UED maze: contract, ASCII format, named mazes, dynamics, observation, generators, BFS, renderer.

References are independent plain-Python/numpy implementations (BFS with a deque, an observation built by
padding + rotating the map like minigrid) or hand-computed values.
"""
from __future__ import annotations

import collections
import functools
import importlib.resources
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import envs
from jaxrl_self.envs.maze import (
    NAMED_LEVEL_NAMES,
    Level,
    Maze,
    four_rooms,
    level_from_str,
    level_is_valid,
    level_to_str,
    named_level,
    named_levels,
    perfect_maze,
    stack_levels,
)
from jaxrl_self.envs.maze import render

DIRS = [(1, 0), (0, 1), (-1, 0), (0, -1)]


# ---------------------------------------------------------------------------------------------- references
def py_bfs(wall: np.ndarray, agent, goal) -> int:
    """Moves from agent to goal over free cells (4-connected), -1 if unreachable."""
    h, w = wall.shape
    agent, goal = tuple(int(v) for v in agent), tuple(int(v) for v in goal)
    dist = {agent: 0}
    q = collections.deque([agent])
    while q:
        x, y = q.popleft()
        if (x, y) == goal:
            return dist[(x, y)]
        for dx, dy in DIRS:
            nx, ny = x + dx, y + dy
            if 0 <= nx < w and 0 <= ny < h and not wall[ny, nx] and (nx, ny) not in dist:
                dist[(nx, ny)] = dist[(x, y)] + 1
                q.append((nx, ny))
    return -1


def py_reachable(wall: np.ndarray, start) -> int:
    """Number of free cells reachable from ``start`` (included)."""
    h, w = wall.shape
    seen = {tuple(int(v) for v in start)}
    stack = list(seen)
    while stack:
        x, y = stack.pop()
        for dx, dy in DIRS:
            nx, ny = x + dx, y + dy
            if 0 <= nx < w and 0 <= ny < h and not wall[ny, nx] and (nx, ny) not in seen:
                seen.add((nx, ny))
                stack.append((nx, ny))
    return len(seen)


def py_bfs_actions(wall: np.ndarray, agent, agent_dir, goal) -> int:
    """Least number of (left, right, forward) actions whose last forward bumps into the goal, -1 if impossible."""
    h, w = wall.shape
    goal = tuple(int(v) for v in goal)
    start = (int(agent[0]), int(agent[1]), int(agent_dir))
    dist = {start: 0}
    q = collections.deque([start])
    while q:
        x, y, d = q.popleft()
        k = dist[(x, y, d)]
        dx, dy = DIRS[d]
        if (x + dx, y + dy) == goal:
            return k + 1
        nxt = [(x, y, (d - 1) % 4), (x, y, (d + 1) % 4)]
        nx, ny = x + dx, y + dy
        if 0 <= nx < w and 0 <= ny < h and not wall[ny, nx]:
            nxt.append((nx, ny, d))
        for s in nxt:
            if s not in dist:
                dist[s] = k + 1
                q.append(s)
    return -1


def np_observation(wall, goal, pos, d, view=5):
    """minigrid-style reference: pad the map with walls, cut the view box, rotate so the agent faces up, and
    transpose to minigrid's (x, y) image order. Returns the object-id channel int[V, V]."""
    h, w = wall.shape
    p = view
    obj = np.where(wall, 2, 1)
    obj[goal[1], goal[0]] = 8
    padded = np.pad(obj, p, constant_values=2)
    x, y = pos[0] + p, pos[1] + p
    c = view // 2
    # box in the grid frame containing the view, then rotate it to "facing up" (rows = far .. near)
    if d == 3:  # up: rows y-4..y, cols x-2..x+2 already in the right orientation
        box = padded[y - view + 1 : y + 1, x - c : x + c + 1]
    elif d == 1:  # down: rows y..y+4 reversed, cols reversed
        box = padded[y : y + view, x - c : x + c + 1][::-1, ::-1]
    elif d == 0:  # right: cols x..x+4; far = large x -> top; left of agent = smaller y
        box = padded[y - c : y + c + 1, x : x + view].T[::-1, :]
    else:  # left: cols x-4..x; far = small x -> top; left of agent = larger y
        box = padded[y - c : y + c + 1, x - view + 1 : x + 1].T[:, ::-1]
    return box.T  # (row, col) -> minigrid (x, y) order: image[i, j] = box[j, i]


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env():
    return Maze()


@functools.lru_cache(maxsize=None)
def sample_batch(max_walls: int, **kwargs) -> Level:
    """256 generator levels (one compile per configuration, shared by the tests below), on the host."""
    sample = jax.jit(jax.vmap(Maze(max_walls=max_walls, **kwargs).sample_level))
    return jax.device_get(sample(jax.random.split(jax.random.key(7), 256)))


@pytest.fixture(scope="module")
def random_levels():
    """128 levels: 48 from the 25-wall generator, 48 from the 60-wall one, 32 with 100 walls (often unsolvable)."""
    parts = [jax.tree.map(lambda x, n=n: x[:n], sample_batch(w)) for w, n in ((25, 48), (60, 48), (100, 32))]
    return jax.tree.map(lambda *x: np.concatenate(x), *parts)


def _unstack(levels):
    n = levels.wall_map.shape[0]
    return [jax.tree.map(lambda x: np.asarray(x[i]), levels) for i in range(n)]


# ---------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", ["maze", "maze-60"])
def test_check_env(name):
    env = envs.make(name)
    assert isinstance(env, Maze)
    assert env.max_walls == (60 if name == "maze-60" else 25)
    report = envs.check_env(env)
    assert report["level_checked"] and report["time_checked"]


def test_constructor_errors():
    with pytest.raises(ValueError, match="view_size must be odd"):
        Maze(view_size=4)
    with pytest.raises(ValueError, match=r"max_walls .*\[0, 167\]"):
        Maze(max_walls=168)
    with pytest.raises(ValueError, match="mutation_weights"):
        Maze(mutation_weights=(1, 1, -1, 0))


# ---------------------------------------------------------------------------------------------- ASCII and named
def _file_blocks() -> dict[str, str]:
    text = (importlib.resources.files("jaxrl_self.envs") / "data" / "heldout_mazes.txt").read_text()
    blocks = re.findall(r"^\[(\w+)\]\n((?:[^\n]+\n?)+)", text, flags=re.M)
    return {name: body.strip("\n") for name, body in blocks}


def test_named_levels_round_trip_and_solvable(env):
    blocks = _file_blocks()
    levels = named_levels()
    assert list(levels) == list(NAMED_LEVEL_NAMES) == list(blocks)
    stacked = stack_levels(levels.values())
    sp = np.asarray(jax.jit(jax.vmap(env.shortest_path))(stacked))
    for i, (name, lv) in enumerate(levels.items()):
        assert env.level_to_str(lv) == blocks[name]  # exact text round trip
        back = env.level_from_str(env.level_to_str(lv))
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(lv)))
        assert lv.wall_map.shape == (13, 13) and lv.wall_map.dtype == jnp.bool_
        assert lv.goal_pos.dtype == jnp.int32 and lv.agent_dir.dtype == jnp.int32
        ref = py_bfs(np.asarray(lv.wall_map), lv.agent_pos, lv.goal_pos)
        assert ref > 0 and sp[i] == ref, name
    # spot values read off the ASCII: SixteenRooms starts at (1, 1) facing right, goal at (11, 11)
    s16 = levels["SixteenRooms"]
    assert s16.agent_pos.tolist() == [1, 1] and int(s16.agent_dir) == 0 and s16.goal_pos.tolist() == [11, 11]
    assert int(levels["LabyrinthFlipped"].agent_dir) == 2  # '<'


def test_named_level_unknown_name():
    assert named_level("Labyrinth2").agent_pos.tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"unknown named maze 'labirinth'.*Did you mean 'Labyrinth'.*SixteenRooms"):
        named_level("labirinth")


GOOD = "#.\n>G"


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("#.\n>Gx", r"row 1 has 3 characters, expected 2"),
        ("#x\n>G", r"unknown character 'x' at row 0, column 1; allowed: '#' \(wall\)"),
        ("#.\n>.", r"no goal 'G'"),
        ("#.\n.G", r"no agent"),
        ("GG\n>.", r"second goal 'G' at row 0, column 1"),
        (">G\n^.", r"second agent '\^' at row 1, column 0"),
        ("#.\n>G\n..", r"3 rows, expected 2"),
        ("", r"empty"),
    ],
)
def test_level_from_str_errors(text, pattern):
    small = Maze(height=2, width=2, max_walls=0)
    assert small.level_to_str(small.level_from_str(GOOD)) == GOOD
    with pytest.raises(ValueError, match=pattern):
        small.level_from_str(text)


def test_level_to_str_rejects_bad_levels():
    lv = level_from_str(GOOD)
    with pytest.raises(ValueError, match="same cell"):
        level_to_str(lv.replace(goal_pos=lv.agent_pos))
    with pytest.raises(ValueError, match="on a wall"):
        level_to_str(lv.replace(goal_pos=jnp.array([0, 0], jnp.int32)))
    with pytest.raises(ValueError, match="batch"):
        level_to_str(stack_levels([lv, lv]))
    # an "agent on goal" cannot even be written in the text format: the only way is two symbols in one cell
    assert Level.from_str(GOOD).to_str() == GOOD


# ---------------------------------------------------------------------------------------------- dynamics
SMALL = "\n".join([
    ">.#..",
    "...#G",
    ".....",
])


@pytest.fixture(scope="module")
def small():
    env = Maze(height=3, width=5, max_walls=0)
    step = jax.jit(env.step_env)
    return env, step


def test_turning_moving_walls_and_goal_reward(small):
    env, step = small
    params = env.default_params.replace(max_steps_in_episode=100)
    lv = env.level_from_str(SMALL)
    _, s = env.reset_to_level(jax.random.key(0), lv, params)
    k = jax.random.key(0)
    assert s.agent_pos.tolist() == [0, 0] and int(s.agent_dir) == 0 and int(s.time) == 0

    def act(s, a):
        obs, s2, r, term, trunc, info = step(k, s, a, params)
        return s2, float(r), bool(term), bool(trunc)

    s, r, term, _ = act(s, 2)  # forward to (1, 0)
    assert s.agent_pos.tolist() == [1, 0] and r == 0.0 and not term
    s, r, term, _ = act(s, 2)  # wall at (2, 0): stay
    assert s.agent_pos.tolist() == [1, 0] and int(s.time) == 2
    s, *_ = act(s, 0)  # left: right(0) -> up(3)
    assert int(s.agent_dir) == 3
    s, *_ = act(s, 2)  # border above: stay
    assert s.agent_pos.tolist() == [1, 0]
    s, *_ = act(s, 1)  # right: up -> right
    s, *_ = act(s, 1)  # right -> down
    assert int(s.agent_dir) == 1
    for expect in ([1, 1], [1, 2], [1, 2]):  # down twice, then the bottom border
        s, *_ = act(s, 2)
        assert s.agent_pos.tolist() == expect
    s, *_ = act(s, 0)  # down -> right
    assert int(s.agent_dir) == 0
    for expect in ([2, 2], [3, 2], [4, 2]):
        s, *_ = act(s, 2)
        assert s.agent_pos.tolist() == expect
    s, *_ = act(s, 0)  # face up; goal at (4, 1) is straight ahead
    assert int(s.time) == 14
    s, r, term, trunc = act(s, 2)  # bump into the goal: step t = 15
    assert term and not trunc and int(s.time) == 15
    assert r == pytest.approx(1.0 - 0.9 * 15 / 100)
    assert s.agent_pos.tolist() == [4, 2]  # the goal cell is not entered


def test_reward_without_time_penalty():
    env = Maze(height=1, width=2, max_walls=0, penalize_time=False)
    lv = env.level_from_str(">G")
    _, s = env.reset_to_level(jax.random.key(0), lv)
    _, _, r, term, _, _ = env.step_env(jax.random.key(0), s, 2, env.default_params)
    assert bool(term) and float(r) == 1.0


def test_truncation_and_eval_limit(small):
    env, step = small
    lv = env.level_from_str(SMALL)
    for limit in (5, 450):
        params = env.default_params.replace(max_steps_in_episode=limit)
        _, s = env.reset_to_level(jax.random.key(0), lv, params)
        for t in range(1, limit + 1):
            _, s, r, term, trunc, _ = step(jax.random.key(0), s, 1, params)  # spin in place
            assert bool(trunc) == (t == limit) and not bool(term) and float(r) == 0.0
    # the auto-resetting step() restarts the episode at time 0 on the level's start after a truncation
    params = env.default_params.replace(max_steps_in_episode=2)
    _, s = env.reset_to_level(jax.random.key(0), lv, params)
    wrapped = envs.ReplayLevel(env)
    for t in range(2):
        obs, s, _, _, trunc, info = wrapped.step(jax.random.key(t), s, 2, params)
    assert bool(trunc) and int(s.time) == 0 and s.agent_pos.tolist() == [0, 0]
    assert not np.array_equal(info["final_obs"]["image"], obs["image"])  # final obs is from (1, 0)


def test_default_params():
    p = Maze().default_params
    assert p.max_steps_in_episode == 250
    assert Maze().action_space().n == 3


# ---------------------------------------------------------------------------------------------- observation
OBS_LEVEL = "\n".join([
    ".......",
    ".#.....",
    "...G...",
    "...>.#.",
    ".......",
    "#..#...",
    ".......",
])
# Hand-computed views of OBS_LEVEL with the agent at (3, 3): rows from the farthest (top) to the agent's row,
# columns from the agent's left to its right; 'A' marks the agent's own (empty) cell; '#' includes the border.
OBS_EXPECTED = {
    3: ["#####",  # facing up: the far row y = -1 is the border; the agent's right is +x
        ".....",
        "#....",
        "..G..",
        "..A.#"],
    0: ["#####",  # facing right: x = 7 is the border; the agent's left is up (y - 1)
        ".....",
        "..#..",
        ".....",
        ".GA.#"],
    1: ["#####",  # facing down: y = 7 is the border; the agent's left is +x
        ".....",
        "..#..",
        ".....",
        "#.A.."],
    2: ["#####",  # facing left: x = -1 is the border; the agent's left is down (y + 1)
        "#....",
        "....#",
        ".....",
        "#.AG."],
}


def _chars_to_obj(rows):
    code = {"#": 2, ".": 1, "G": 8, "A": 1}
    return np.array([[code[c] for c in r] for r in rows]).T  # (row, col) -> image[i = col, j = row]


def test_observation_hand_computed():
    env = Maze(height=7, width=7)
    lv = env.level_from_str(OBS_LEVEL)
    for d, rows in OBS_EXPECTED.items():
        obs = env.get_obs(lv, lv.agent_pos, jnp.int32(d))
        img = np.asarray(obs["image"])
        assert img.dtype == np.uint8 and img.shape == (5, 5, 3) and int(obs["agent_dir"]) == d
        np.testing.assert_array_equal(img[..., 0], _chars_to_obj(rows), err_msg=f"direction {d}")
        colour = {1: 0, 2: 5, 8: 1}
        np.testing.assert_array_equal(img[..., 1], np.vectorize(colour.get)(img[..., 0]))
        assert not img[..., 2].any()
        np.testing.assert_array_equal(img[..., 0], np_observation(np.asarray(lv.wall_map), (3, 2), (3, 3), d))


def test_observation_matches_numpy_reference_on_random_states(random_levels):
    env = Maze()
    rng = np.random.default_rng(0)
    levels = _unstack(random_levels)[:40]
    cases = []
    for lv in levels:
        free = np.argwhere(~lv.wall_map)
        y, x = free[rng.integers(len(free))]
        cases.append((lv, (int(x), int(y)), int(rng.integers(4))))
    stacked = stack_levels([jax.tree.map(jnp.asarray, c[0]) for c in cases])
    pos = jnp.array([c[1] for c in cases], jnp.int32)
    dirs = jnp.array([c[2] for c in cases], jnp.int32)
    imgs = np.asarray(jax.jit(jax.vmap(env.get_obs))(stacked, pos, dirs)["image"])
    for img, (lv, p, d) in zip(imgs, cases):
        if tuple(lv.goal_pos) == p:
            continue
        np.testing.assert_array_equal(img[..., 0], np_observation(lv.wall_map, lv.goal_pos, p, d))


@pytest.mark.parametrize("view", [3, 7])
def test_observation_other_view_sizes(view, random_levels):
    env = Maze(view_size=view)
    lv = jax.tree.map(lambda x: jnp.asarray(x[0]), random_levels)
    assert env.observation_space().spaces["image"].shape == (view, view, 3)
    free = np.argwhere(~np.asarray(lv.wall_map) & ~_one_hot(lv.goal_pos))[::7][:12]  # (y, x) rows
    dirs = np.arange(len(free)) % 4
    imgs = jax.jit(jax.vmap(env.get_obs, (None, 0, 0)))(lv, jnp.asarray(free[:, ::-1]), jnp.asarray(dirs))["image"]
    for img, (y, x), d in zip(np.asarray(imgs), free, dirs):
        want = np_observation(np.asarray(lv.wall_map), lv.goal_pos, (x, y), d, view)
        np.testing.assert_array_equal(img[..., 0], want)


def _one_hot(pos, shape=(13, 13)):
    m = np.zeros(shape, bool)
    m[int(pos[1]), int(pos[0])] = True
    return m


def test_see_agent_and_normalize():
    env = Maze(height=7, width=7, see_agent=True, normalize_obs=True)
    lv = env.level_from_str(OBS_LEVEL)
    obs, _ = env.reset_to_level(jax.random.key(0), lv)
    img = np.asarray(obs["image"])
    assert img.dtype == np.float32 and env.observation_space().spaces["image"].dtype == jnp.float32
    np.testing.assert_allclose(img[2, 4], [1.0, 0.0, 0.0])  # the agent (10, red 0, dir 0) / 10
    np.testing.assert_allclose(img[1, 4], [0.8, 0.1, 0.0])  # the goal, on the agent's left (facing right)
    np.testing.assert_allclose(img[2, 2], [0.2, 0.5, 0.0])  # the wall two cells ahead

# ---------------------------------------------------------------------------------------------- BFS
def test_bfs_matches_python_reference(env, random_levels):
    sp = np.asarray(jax.jit(jax.vmap(env.shortest_path))(random_levels))
    spa = np.asarray(jax.jit(jax.vmap(env.shortest_path_actions))(random_levels))
    ref = [py_bfs(lv.wall_map, lv.agent_pos, lv.goal_pos) for lv in _unstack(random_levels)]
    ref_a = [py_bfs_actions(lv.wall_map, lv.agent_pos, lv.agent_dir, lv.goal_pos) for lv in _unstack(random_levels)]
    np.testing.assert_array_equal(sp, ref)
    np.testing.assert_array_equal(spa, ref_a)
    assert (np.array(ref) == -1).sum() >= 5 and (np.array(ref) > 0).sum() >= 80  # both kinds covered
    assert sp.dtype == np.int32


def test_optimal_return(env):
    lv = named_level("SixteenRooms")
    n = py_bfs_actions(np.asarray(lv.wall_map), lv.agent_pos, lv.agent_dir, lv.goal_pos)
    assert float(env.optimal_return(lv)) == pytest.approx(1 - 0.9 * n / 250)


# ---------------------------------------------------------------------------------------------- generators
def _check_valid(levels):
    """Every level of a batch: goal and agent on free cells of the grid, distinct, direction in 0..3."""
    wall, goal, agent, d = (np.asarray(x) for x in (levels.wall_map, levels.goal_pos, levels.agent_pos,
                                                     levels.agent_dir))
    n, h, w = wall.shape
    for pos in (goal, agent):
        assert ((pos >= 0) & (pos < [w, h])).all()
        assert not wall[np.arange(n), pos[:, 1], pos[:, 0]].any()
    assert (goal != agent).any(axis=1).all()
    assert ((d >= 0) & (d < 4)).all()


def test_level_is_valid():
    lv = level_from_str(GOOD)  # "#." / ">G"
    bad = [lv.replace(goal_pos=lv.agent_pos), lv.replace(goal_pos=jnp.array([0, 0], jnp.int32)),
           lv.replace(agent_pos=jnp.array([2, 0], jnp.int32)), lv.replace(agent_dir=jnp.int32(4))]
    got = np.asarray(jax.jit(jax.vmap(level_is_valid))(stack_levels([lv, *bad])))
    np.testing.assert_array_equal(got, [True, False, False, False, False])


def test_generator_budget_and_validity():
    for walls in (25, 60):
        levels = sample_batch(walls)
        counts = levels.wall_map.reshape(256, -1).sum(1)
        assert counts.max() <= walls
        # draws with replacement: E[#walls] = N (1 - (1 - 1/N)^k), N = 169 cells, k = walls draws
        expected = 169 * (1 - (1 - 1 / 169) ** walls)
        assert abs(counts.mean() - expected) < 0.4, (counts.mean(), expected)
        _check_valid(levels)
        assert len(np.unique(levels.agent_dir)) == 4
    exact = sample_batch(25, replace_wall_pos=False)
    assert (exact.wall_map.reshape(256, -1).sum(1) == 25).all()
    _check_valid(exact)
    some = sample_batch(25, sample_n_walls=True)
    c = some.wall_map.reshape(256, -1).sum(1)
    assert c.max() <= 25 and c.min() <= 3 and c.max() >= 20
    _check_valid(some)


@pytest.mark.parametrize("shape", [(13, 13), (3, 40)])
def test_kth_true_matches_numpy(shape):
    from jaxrl_self.envs.maze.generators import kth_true

    rng = np.random.default_rng(1)
    masks = rng.random((32, *shape)) < 0.6
    masks[:, 0, 0] = True
    ks = np.array([rng.integers(m.sum()) for m in masks], np.int32)
    got = np.asarray(jax.jit(jax.vmap(kth_true))(jnp.asarray(masks), jnp.asarray(ks)))
    want = [np.flatnonzero(m.reshape(-1))[k] for m, k in zip(masks, ks)]
    np.testing.assert_array_equal(got, want)
    full = np.ones(shape, bool)  # every rank of a full mask, including the last cell
    ranks = jnp.arange(full.size, dtype=jnp.int32)
    every = jax.jit(jax.vmap(kth_true, (None, 0)))(jnp.asarray(full), ranks)
    np.testing.assert_array_equal(every, np.arange(full.size))


def test_goal_agent_placement_is_uniform():
    """On an empty 2x3 grid every ordered (agent, goal) pair of distinct cells is equally likely (30 pairs)."""
    env = Maze(height=2, width=3, max_walls=0)
    levels = jax.device_get(jax.jit(jax.vmap(env.sample_level))(jax.random.split(jax.random.key(9), 6000)))
    a = levels.agent_pos[:, 1] * 3 + levels.agent_pos[:, 0]
    g = levels.goal_pos[:, 1] * 3 + levels.goal_pos[:, 0]
    assert (a != g).all()
    counts = np.bincount(a * 6 + g, minlength=36).reshape(6, 6)
    assert (np.diag(counts) == 0).all()
    off = counts[~np.eye(6, dtype=bool)]
    chi2 = ((off - 200.0) ** 2 / 200.0).sum()  # 29 degrees of freedom: P(chi2 > 70) < 1e-4
    assert chi2 < 70, counts
    assert np.bincount(levels.agent_dir, minlength=4).min() > 1300


def _n_edits(a, b) -> int:
    return int((a.wall_map != b.wall_map).sum() + np.any(a.goal_pos != b.goal_pos)
               + np.any((a.agent_pos != b.agent_pos) | (a.agent_dir != b.agent_dir)))


def test_mutate_level(random_levels):
    env = Maze(mutation_weights=(1, 1, 1, 1))
    levels = jax.tree.map(lambda x: x[:64], random_levels)
    n = jnp.arange(64, dtype=jnp.int32) % 9  # traced and different per level
    mutated = jax.device_get(jax.jit(jax.vmap(env.mutate_level))(jax.random.split(jax.random.key(5), 64), levels, n))
    _check_valid(mutated)
    diffs = [_n_edits(a, b) for a, b in zip(_unstack(levels), _unstack(mutated))]
    assert all(d <= int(k) for d, k in zip(diffs, n))
    assert diffs[0] == 0 and sum(diffs) > 64  # n = 0 is the identity; edits do happen
    moved_goal = [np.any(a.goal_pos != b.goal_pos) for a, b in zip(_unstack(levels), _unstack(mutated))]
    moved_agent = [np.any(a.agent_pos != b.agent_pos) for a, b in zip(_unstack(levels), _unstack(mutated))]
    assert any(moved_goal) and any(moved_agent)
    # default weights (minimax/jaxued ACCEL) never move the agent
    default = jax.device_get(jax.jit(jax.vmap(Maze().mutate_level, (0, 0, None)))(
        jax.random.split(jax.random.key(6), 64), levels, 8))
    np.testing.assert_array_equal(default.agent_pos, levels.agent_pos)


def _free_graph(wall):
    free = ~wall
    cells = int(free.sum())
    edges = int((free[:, 1:] & free[:, :-1]).sum() + (free[1:, :] & free[:-1, :]).sum())
    return cells, edges


def test_perfect_maze_is_a_tree():
    levels = jax.device_get(jax.jit(jax.vmap(perfect_maze))(jax.random.split(jax.random.key(3), 16)))
    _check_valid(levels)
    for lv in _unstack(levels):
        cells, edges = _free_graph(lv.wall_map)
        assert cells == 49 + 48 and edges == cells - 1
        assert not lv.wall_map[::2, ::2].any()  # every maze cell (even coordinates) is open
        assert lv.wall_map[1::2, 1::2].all()  # the pillars between cells stay walls
        assert py_reachable(lv.wall_map, lv.agent_pos) == cells  # connected
    assert len({level_to_str(lv) for lv in _unstack(levels)}) == 16
    with pytest.raises(ValueError, match="odd"):
        perfect_maze(jax.random.key(0), 12, 13)


def test_four_rooms_solvable():
    levels = jax.device_get(jax.jit(jax.vmap(four_rooms))(jax.random.split(jax.random.key(4), 32)))
    _check_valid(levels)
    for lv in _unstack(levels):
        assert lv.wall_map.sum() == 13 + 13 - 1 - 4  # the cross minus four doors
        assert lv.wall_map[6, 6] and lv.wall_map[6, :].sum() == 11 and lv.wall_map[:, 6].sum() == 11
        assert py_bfs(lv.wall_map, lv.agent_pos, lv.goal_pos) > 0


# ---------------------------------------------------------------------------------------------- renderer
def test_render(tmp_path, env):
    lv = named_level("SixteenRooms")
    img = render.render_level(lv, tile=8)
    assert img.shape == (15 * 8, 15 * 8, 3) and img.dtype == np.uint8
    assert (img[:8, :8] == 100).all()  # border wall, grey
    gx, gy = (int(v) + 1 for v in lv.goal_pos)
    assert (img[gy * 8 : gy * 8 + 8, gx * 8 : gx * 8 + 8] == [0, 255, 0]).all()
    obs, state = env.reset_to_level(jax.random.key(0), lv)
    st_img = render.render_state(state, tile=8)
    assert st_img.shape == img.shape and (st_img >= img).all() and (st_img != img).any()  # highlight brightens
    view = render.render_observation(obs, tile=8)
    assert view.shape == (40, 40, 3)
    frame = render.render_frame(state, obs, tile=8)
    assert frame.shape == (120, 120 + 8 + 40, 3)
    path = render.save_png(frame, tmp_path / "frame.png")
    from PIL import Image

    with Image.open(path) as im:
        assert im.size == (frame.shape[1], frame.shape[0])
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), frame)


def test_jaxued_action_space_adds_four_no_ops():
    """num_actions=7 is jaxued's/minimax's minigrid action space: 0..2 act as before, 3..6 only spend a step."""
    from jaxrl_self.envs.maze import Maze

    env = Maze(num_actions=7)
    assert env.action_space().n == 7 and Maze().action_space().n == 3
    params = env.default_params
    key = jax.random.key(0)
    obs, state = env.reset_env(key, params)
    for a in range(3, 7):
        obs2, new, reward, term, trunc, _ = env.step_env(key, state, jnp.asarray(a), params)
        assert int(new.time) == int(state.time) + 1 and float(reward) == 0.0 and not bool(term)
        np.testing.assert_array_equal(np.asarray(new.agent_pos), np.asarray(state.agent_pos))
        assert int(new.agent_dir) == int(state.agent_dir)
        np.testing.assert_array_equal(np.asarray(obs2["image"]), np.asarray(obs["image"]))
    three, seven = Maze(), Maze(num_actions=7)
    for a in range(3):  # the acting actions are the same transitions
        _, s3, *_ = three.step_env(key, state, jnp.asarray(a), params)
        _, s7, *_ = seven.step_env(key, state, jnp.asarray(a), params)
        assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), s3, s7))
    with pytest.raises(ValueError, match="num_actions must be 3 .* or 7"):
        Maze(num_actions=4)
