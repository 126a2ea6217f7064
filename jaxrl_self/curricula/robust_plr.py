"""Robust PLR (PLR⊥, Jiang et al., 2021b): PLR that takes gradient steps only on replayed levels.

    jaxrl-self train robust_plr --env maze --seeds 3

The loop of :mod:`jaxrl_self.curricula.plr` with ``exploratory_grad_updates=False``: new levels are played,
scored and offered to the buffer, but the student's parameters change only on replay cycles, so it trains only
on levels the curriculum chose (the property the robustness guarantee of PLR⊥ rests on).
"""
from __future__ import annotations

from flax import struct

from jaxrl_self.curricula import plr
from jaxrl_self.curricula.common import static

__all__ = ["NAME", "DEFAULT_ENV", "Config", "RunState", "Metrics", "make_train", "make_eval"]

NAME = "robust_plr"
#: What it trains on: level environments (the maze) (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("level",)
DEFAULT_ENV = "maze"


@struct.dataclass
class Config(plr.Config):
    """:class:`jaxrl_self.curricula.plr.Config` with ``exploratory_grad_updates=False``."""

    exploratory_grad_updates: bool = static(False)
    """take PPO gradient steps on new levels too (False: robust PLR / PLR⊥)"""


RunState = plr.RunState
Metrics = plr.Metrics
make_train = plr.make_train
make_eval = plr.make_eval
