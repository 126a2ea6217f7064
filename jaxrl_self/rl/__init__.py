"""RL building blocks shared by every algorithm: rollouts, advantages, losses, minibatching, normalisation,
policy distributions and the non-finite guard.

Each is a small pure function over time-major arrays, unit-tested against plain-numpy references
(``tests/test_rl_math.py``).
"""
from jaxrl_self.rl import advantages, distributions, guard, losses, minibatch, normalize, rollout
from jaxrl_self.rl.advantages import (bootstrap_next_values, discounted_returns, gae, td_errors, token_gae,
                                      token_rewards)
from jaxrl_self.rl.guard import all_finite, keep_if_finite
from jaxrl_self.rl.losses import (
    PolicyLossStats,
    approx_kl,
    clip_fraction,
    entropy_bonus,
    kl_k3,
    masked_mean,
    normalize_advantages,
    ppo_policy_loss,
    value_loss,
)
from jaxrl_self.rl.minibatch import flatten_time, shuffle_split, split
from jaxrl_self.rl.normalize import RunningMeanStd
from jaxrl_self.rl.rollout import RolloutState, Trajectory

__all__ = [
    "advantages",
    "distributions",
    "losses",
    "minibatch",
    "normalize",
    "rollout",
    "guard",
    "all_finite",
    "keep_if_finite",
    "gae",
    "token_gae",
    "token_rewards",
    "td_errors",
    "bootstrap_next_values",
    "discounted_returns",
    "PolicyLossStats",
    "approx_kl",
    "clip_fraction",
    "entropy_bonus",
    "kl_k3",
    "masked_mean",
    "normalize_advantages",
    "ppo_policy_loss",
    "value_loss",
    "flatten_time",
    "shuffle_split",
    "split",
    "RunningMeanStd",
    "RolloutState",
    "Trajectory",
]
