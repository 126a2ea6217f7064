"""UED level scores from a rollout: positive value loss, MaxMC, (negative) return, L1 value loss.

Inputs are time-major rollout arrays ``[T, ...]`` (``[T, N]`` for ``N`` environments; any trailing batch shape
works), with the conventions of :mod:`jaxrl_self.rl.advantages`:

* ``rewards[t]``, ``values[t] = V(s_t)``, ``advantages[t]`` (GAE ``A_t``), ``dones[t]``: the episode ended
  at step ``t`` (terminated or truncated).
* Each environment plays **one level for the whole rollout** and resets to the *same* level when an episode
  ends (``jaxrl_self.envs.wrappers.ReplayLevel``), and the rollout **starts a fresh episode at t = 0** (the
  curriculum resets every environment to its level at the start of a rollout, as minimax and jaxued do).
  Episode ``k`` of an environment is then the steps after its ``(k-1)``-th done up to and including its
  ``k``-th done. Steps after the last done (an unfinished episode) are ignored.

Scores follow minimax v0.2.0 (``util/rl/ued_scores.py``; jaxued's ``utils.py`` computes the same): a
per-step quantity is averaged over the steps of each completed episode, and these per-episode means are
averaged over the completed episodes of the rollout:

* **positive value loss** = mean over episodes of mean_t max(A_t, 0) (Jiang et al., 2021b);
* **MaxMC** = mean over episodes of mean_t (R_max - V_t), where ``R_max`` is the highest undiscounted
  episodic return ever seen on the level: ``max(stored max return, best return in this rollout)``;
* **L1 value loss** = mean over episodes of mean_t |A_t| (original PLR);
* **return** = mean undiscounted return of the completed episodes; **negative return** = its negation
  (PAIRED-style adversaries).

A level with no completed episode has no score: its ``valid`` flag is False and its score is 0 (not -inf,
so no inf/NaN leaks into metrics); the level buffer does not insert it. Where we differ from the references:
the per-rollout max return starts from -inf, not 0 (minimax and jaxued clamp a negative best return to 0).
"""
from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.errors import ConfigError

__all__ = [
    "ScoreFunction",
    "SCORE_FUNCTIONS",
    "EpisodeStats",
    "LevelScores",
    "episode_stats",
    "positive_value_loss",
    "l1_value_loss",
    "max_mc",
    "mean_return",
    "negative_return",
    "compute_scores",
]

ScoreFunction = Literal["positive_value_loss", "max_mc", "l1_value_loss", "return", "neg_return"]
SCORE_FUNCTIONS: tuple[str, ...] = ("positive_value_loss", "max_mc", "l1_value_loss", "return", "neg_return")


@struct.dataclass
class EpisodeStats:
    """Per-environment statistics over the completed episodes of one rollout (shape ``[...]``, the batch
    shape of the rollout). Means over zero episodes are 0.

    Attributes:
        num_episodes: ``int32``, completed episodes.
        mean_return: ``float32``, mean undiscounted episodic return.
        max_return: ``float32``, best undiscounted episodic return; ``-inf`` without a completed episode.
        mean_positive_advantage: ``float32``, mean over episodes of the episode's mean ``max(A_t, 0)``.
        mean_abs_advantage: ``float32``, mean over episodes of the episode's mean ``|A_t|``.
        mean_value: ``float32``, mean over episodes of the episode's mean ``V_t``.
    """

    num_episodes: jax.Array
    mean_return: jax.Array
    max_return: jax.Array
    mean_positive_advantage: jax.Array
    mean_abs_advantage: jax.Array
    mean_value: jax.Array

    @property
    def has_completed_episode(self) -> jax.Array:
        """``bool``: at least one episode ended within the rollout."""
        return self.num_episodes > 0


@struct.dataclass
class LevelScores:
    """What the level buffer needs for each environment's level.

    Attributes:
        score: ``float32``, the UED score (0 where ``valid`` is False).
        valid: ``bool``, the rollout completed an episode on the level (insert/update only these).
        max_return: ``float32``, best undiscounted episodic return in this rollout (``-inf`` if none): pass it
            to the buffer, which keeps the running max per level.
    """

    score: jax.Array
    valid: jax.Array
    max_return: jax.Array


def _check_shapes(**arrays: jax.Array) -> tuple[int, ...]:
    shapes = {name: tuple(jnp.shape(a)) for name, a in arrays.items()}
    first = next(iter(shapes.values()))
    if len(first) < 1:
        raise ValueError(f"rollout arrays must be time-major [T, ...], got shapes {shapes}")
    if any(s != first for s in shapes.values()):
        raise ValueError(f"rollout arrays must all have the same shape [T, ...], got {shapes}")
    return first


def episode_stats(rewards: jax.Array, values: jax.Array, dones: jax.Array, advantages: jax.Array) -> EpisodeStats:
    """Statistics of the completed episodes of a time-major rollout (one forward ``lax.scan`` over ``T``).

    Args:
        rewards, values, advantages: ``float32[T, ...]``. dones: ``bool[T, ...]``, episode ended at ``t``.

    Returns:
        :class:`EpisodeStats` with the batch shape ``[...]``.
    """
    _check_shapes(rewards=rewards, values=values, dones=dones, advantages=advantages)
    f32 = jnp.float32
    rewards, values, advantages = (jnp.asarray(x, f32) for x in (rewards, values, advantages))
    dones = jnp.asarray(dones).astype(jnp.bool_)
    # Per-step quantities; column 0 (reward) is summed over an episode, the others are time-averaged.
    per_step = jnp.stack([rewards, values, jnp.maximum(advantages, 0.0), jnp.abs(advantages)], axis=-1)
    batch = rewards.shape[1:]

    def step(carry, xs):
        running, steps, n_eps, total, best_return = carry
        x, done = xs
        running = running + x
        steps = steps + 1
        episode = jnp.concatenate([running[..., :1], running[..., 1:] / steps[..., None].astype(f32)], axis=-1)
        d = done[..., None]
        total = total + jnp.where(d, episode, 0.0)
        best_return = jnp.where(done, jnp.maximum(best_return, episode[..., 0]), best_return)
        n_eps = n_eps + done.astype(jnp.int32)
        running = jnp.where(d, 0.0, running)
        steps = jnp.where(done, 0, steps)
        return (running, steps, n_eps, total, best_return), None

    init = (
        jnp.zeros((*batch, 4), f32),
        jnp.zeros(batch, jnp.int32),
        jnp.zeros(batch, jnp.int32),
        jnp.zeros((*batch, 4), f32),
        jnp.full(batch, -jnp.inf, f32),
    )
    (_, _, n_eps, total, best_return), _ = jax.lax.scan(step, init, (per_step, dones))
    mean = total / jnp.maximum(n_eps, 1)[..., None].astype(f32)
    return EpisodeStats(
        num_episodes=n_eps,
        mean_return=mean[..., 0],
        max_return=best_return,
        mean_positive_advantage=mean[..., 2],
        mean_abs_advantage=mean[..., 3],
        mean_value=mean[..., 1],
    )


def positive_value_loss(stats: EpisodeStats) -> jax.Array:
    """Mean over completed episodes of mean_t max(A_t, 0); 0 without a completed episode."""
    return stats.mean_positive_advantage


def l1_value_loss(stats: EpisodeStats) -> jax.Array:
    """Mean over completed episodes of mean_t |A_t|; 0 without a completed episode."""
    return stats.mean_abs_advantage


def max_mc(stats: EpisodeStats, level_max_returns: jax.Array | None = None) -> jax.Array:
    """MaxMC: mean over completed episodes of mean_t (R_max - V_t) = R_max - stats.mean_value.

    ``R_max = max(level_max_returns, stats.max_return)``: ``level_max_returns`` is the buffer's stored max
    return of each level (``LevelBuffer.max_returns[indices]`` for replayed levels; None or -inf for new
    ones). 0 without a completed episode.
    """
    best = stats.max_return
    if level_max_returns is not None:
        best = jnp.maximum(best, jnp.asarray(level_max_returns, jnp.float32))
    valid = stats.has_completed_episode
    return jnp.where(valid, jnp.where(valid, best, 0.0) - stats.mean_value, 0.0)


def mean_return(stats: EpisodeStats) -> jax.Array:
    """Mean undiscounted return of the completed episodes; 0 without one."""
    return stats.mean_return


def negative_return(stats: EpisodeStats) -> jax.Array:
    """Minus :func:`mean_return` (0 without a completed episode)."""
    return jnp.where(stats.has_completed_episode, -stats.mean_return, 0.0)


def compute_scores(
    score_function: ScoreFunction | str,
    rewards: jax.Array,
    values: jax.Array,
    dones: jax.Array,
    advantages: jax.Array,
    level_max_returns: jax.Array | None = None,
) -> LevelScores:
    """Score each environment's level from one rollout; see the module docstring.

    Args:
        score_function: one of :data:`SCORE_FUNCTIONS` (static).
        rewards, values, dones, advantages: time-major ``[T, ...]`` rollout arrays.
        level_max_returns: ``float32[...]``, the stored max returns of the levels (MaxMC only; None = none).

    Returns:
        :class:`LevelScores` with the batch shape ``[...]``.
    """
    if score_function not in SCORE_FUNCTIONS:
        raise ConfigError("score_function", score_function, f"one of {SCORE_FUNCTIONS}", owner="compute_scores")
    stats = episode_stats(rewards, values, dones, advantages)
    if score_function == "positive_value_loss":
        score = positive_value_loss(stats)
    elif score_function == "max_mc":
        score = max_mc(stats, level_max_returns)
    elif score_function == "l1_value_loss":
        score = l1_value_loss(stats)
    elif score_function == "return":
        score = mean_return(stats)
    else:
        score = negative_return(stats)
    return LevelScores(score=score, valid=stats.has_completed_episode, max_return=stats.max_return)
