"""Curricula over levels: the level-replay buffer (PLR, robust PLR, ACCEL) and UED level scores."""
from jaxrl_self.curricula.level_sampler import (
    BufferStats,
    LevelBuffer,
    LevelSampler,
    LevelSamplerConfig,
)
from jaxrl_self.curricula.scores import (
    SCORE_FUNCTIONS,
    EpisodeStats,
    LevelScores,
    compute_scores,
    episode_stats,
)
from jaxrl_self.curricula.evaluation import (
    EvalMetrics,
    EvalResult,
    HeldOutSet,
    heldout_set,
    make_heldout_eval,
    periodic_eval,
)

__all__ = [
    "BufferStats",
    "LevelBuffer",
    "LevelSampler",
    "LevelSamplerConfig",
    "SCORE_FUNCTIONS",
    "EpisodeStats",
    "LevelScores",
    "compute_scores",
    "episode_stats",
    "EvalMetrics",
    "EvalResult",
    "HeldOutSet",
    "heldout_set",
    "make_heldout_eval",
    "periodic_eval",
]
# Curricula (each an algorithm module for the CLI: Config, make_train, RunState, Metrics, make_eval, NAME):
# jaxrl_self.curricula.dr, .plr, .robust_plr, .accel, .parallel_plr, .parallel_accel; shared pieces in .common.
