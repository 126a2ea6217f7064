"""Parallel ACCEL (minimax): new, replayed and edited levels rolled out side by side every cycle.

    jaxrl-self train parallel_accel --env maze --seeds 3

:mod:`jaxrl_self.curricula.parallel_plr` with ``use_accel=True``: each cycle plays ``3 x num_envs`` levels
(new | replayed | edited copies of the replayed ones), learns only from the replayed slice, and offers the new
and edited levels to the buffer.
"""
from __future__ import annotations

from flax import struct

from jaxrl_self.curricula import parallel_plr
from jaxrl_self.curricula.common import static

__all__ = ["NAME", "DEFAULT_ENV", "Config", "RunState", "Metrics", "make_train", "make_eval"]

NAME = "parallel_accel"
#: What it trains on: level environments (the maze) (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("level",)
DEFAULT_ENV = "maze"


@struct.dataclass
class Config(parallel_plr.Config):
    """:class:`jaxrl_self.curricula.parallel_plr.Config` with ``use_accel=True``."""

    use_accel: bool = static(True)
    """add the slice of edited copies of the replayed levels"""


RunState = parallel_plr.RunState
Metrics = parallel_plr.Metrics
make_train = parallel_plr.make_train
make_eval = parallel_plr.make_eval
