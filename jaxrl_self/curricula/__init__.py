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
]
