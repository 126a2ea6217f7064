"""The UED maze (minimax AMaze / jaxued Maze) as a :class:`~jaxrl_self.core.LevelEnv`.

    from jaxrl_self.envs.maze import Maze, named_level
    env = Maze()                                  # 13x13, 5x5 view, 25-wall DR generator
    obs, state = env.reset_to_level(key, named_level("SixteenRooms"))

Modules: :mod:`~.level` (the ``Level`` pytree, ASCII format, held-out mazes), :mod:`~.env` (dynamics and
observation), :mod:`~.generators` (DR generator, ACCEL edits, perfect mazes, four rooms), :mod:`~.solver`
(BFS shortest paths), :mod:`~.render` (numpy images; Pillow only for ``save_png``).
"""
from jaxrl_self.envs.maze.editor import EDITOR_ORDERS, EditorParams, EditorState, MazeEditor  # noqa: F401 (PAIRED)
from jaxrl_self.envs.maze.env import COLOR_TO_INDEX, OBJECT_TO_INDEX, Maze, MazeParams, MazeState
from jaxrl_self.envs.maze.generators import EDIT_KINDS, four_rooms, mutate_level, perfect_maze, random_walls_level
from jaxrl_self.envs.maze.level import (
    AGENT_CHARS,
    DIR_TO_VEC,
    NAMED_LEVEL_NAMES,
    Level,
    level_from_str,
    level_is_valid,
    level_to_str,
    named_level,
    named_levels,
    parse_level_file,
    stack_levels,
)
from jaxrl_self.envs.maze.solver import distance_map, shortest_path, shortest_path_actions

__all__ = [
    "Maze",
    "MazeParams",
    "MazeState",
    "Level",
    "OBJECT_TO_INDEX",
    "COLOR_TO_INDEX",
    "DIR_TO_VEC",
    "AGENT_CHARS",
    "EDIT_KINDS",
    "NAMED_LEVEL_NAMES",
    "level_from_str",
    "level_to_str",
    "level_is_valid",
    "stack_levels",
    "parse_level_file",
    "named_levels",
    "named_level",
    "random_walls_level",
    "mutate_level",
    "perfect_maze",
    "four_rooms",
    "shortest_path",
    "shortest_path_actions",
    "distance_map",
]
