"""ACCEL (Parker-Holder et al., 2022): robust PLR whose buffer also grows by editing the levels it replays.

    jaxrl-self train accel --env maze --seeds 3
    jaxrl-self train accel --env maze --n-walls 0        # new levels are empty rooms (the ACCEL paper's start)

The loop of :mod:`jaxrl_self.curricula.plr` with ``use_accel=True`` and ``exploratory_grad_updates=False``:
after every replay cycle comes a *mutate* cycle that applies ``num_edits`` random edits (the maze's
``mutate_level``: flip a wall or move the goal, minimax's ``move_goal_flip_walls``) to each level of that replay
batch, plays the children without gradient, scores them and offers them to the buffer. New levels come from
the generator with ``n_walls`` walls: the environment's 25-wall generator by default (jaxued's ACCEL), or empty
rooms with ``--n-walls 0`` (the paper's setting, where complexity can only come from edits).
"""
from __future__ import annotations

from flax import struct

from jaxrl_self.curricula import plr
from jaxrl_self.curricula.common import static

__all__ = ["NAME", "DEFAULT_ENV", "Config", "RunState", "Metrics", "make_train", "make_eval"]

NAME = "accel"
#: What it trains on: level environments (the maze) (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("level",)
DEFAULT_ENV = "maze"


@struct.dataclass
class Config(plr.Config):
    """:class:`jaxrl_self.curricula.plr.Config` with ``use_accel=True``, ``exploratory_grad_updates=False``."""

    exploratory_grad_updates: bool = static(False)
    """take PPO gradient steps on new and edited levels too (False: ACCEL's robust default)"""
    use_accel: bool = static(True)
    """after each replay cycle, a cycle on edited copies of the replayed levels"""


RunState = plr.RunState
Metrics = plr.Metrics
make_train = plr.make_train
make_eval = plr.make_eval
