"""GRPO and RLOO for language models on verifiable token tasks, as one XLA program.

::

    from jaxrl_self import envs
    from jaxrl_self.algos import grpo
    task = envs.make("addition", max_digits=5)
    train = grpo.make_train(grpo.Config(base_model="addition-base", min_difficulty=4), task)
    state, metrics = jax.jit(train)(jax.random.key(0))                 # the whole run
    jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 3))   # 3 seeds in one program

One update (:func:`make_train`'s ``update``), top to bottom, on the shared LM-RL layer (:mod:`jaxrl_self.lm`):

1. **problems**: ``num_prompts`` problems ``B`` from the run's problem source: the task's sampler (default) or
   passes over a fixed :class:`~jaxrl_self.lm.ProblemSet` (``make_train(..., problems=...)``);
2. **rollout**: ``group_size`` responses ``G`` per prompt from the current policy with the KV-cache sampler,
   temperature ``temperature`` (:func:`jaxrl_self.lm.rollout`); the sampler returns each token's policy
   log-prob ``log π_old(y_t | x, y_<t)`` (untempered), the denominator of the PPO ratio;
3. **rewards**: ``reward_fn`` on each group (:func:`jaxrl_self.lm.compute_rewards`); default: the task's
   verifier (1 if correct, else 0, minus ``format_penalty`` when no answer can be parsed), a labelled reward;
4. **advantages** within each group (:mod:`jaxrl_self.rl.group`): GRPO ``(r_i − r̄)/(σ + ε)``, RLOO
   ``r_i − mean_{j≠i} r_j`` or Dr. GRPO ``r_i − r̄``; every token of response ``i`` gets ``A_i``;
5. **reference**: ``log π_ref`` of the sampled tokens under the frozen initial policy (one forward pass);
6. **learn**: ``update_epochs`` passes of ``num_minibatches`` minibatches of whole responses; per token
   ``ℓ_t = −min(ρ_t A, clip(ρ_t, 1−ε, 1+ε) A) + β·k3_t − c_H·H_t`` with ``ρ_t = exp(log π_θ − log π_old)``,
   ``k3_t = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1`` (Schulman's unbiased, non-negative
   estimator of ``KL(π_θ || π_ref)``) and ``H_t`` the entropy; aggregated over response tokens only
   (``loss_agg``, default the token mean over the minibatch); global-norm clipping, Adam
   (:func:`jaxrl_self.lm.group_policy_loss`, :func:`jaxrl_self.lm.learn`).

A non-finite loss (or parameter) stops learning: ``RunState.nonfinite_update`` records the first bad update,
which and all later updates leave ``params``/``opt_state`` untouched. ``init(key, params=..., ref_params=...,
problems=..., reward_extras=...)`` starts from what an outer program holds (all vmappable).
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self import lm
from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.sequence import SequenceTask
from jaxrl_self.lm.config import GroupConfig
from jaxrl_self.lm.diagnostics import EvalResult
from jaxrl_self.lm.rewards import GroupRewardFn, RewardFn, group_reward, is_group_reward, verifier_reward
from jaxrl_self.nets.transformer import TransformerConfig
from jaxrl_self.rl import group

__all__ = ["NAME", "DEFAULT_ENV", "Config", "RunState", "Metrics", "EvalResult", "RewardFn", "GroupRewardFn",
           "group_reward", "is_group_reward", "verifier_reward", "make_train", "make_eval"]

NAME = "grpo"
#: What it trains on: token tasks (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("task",)
#: The environment the CLI uses when ``--task``/``--env`` is not given.
DEFAULT_ENV = "addition"


# ============================================================================================ configuration
@struct.dataclass
class Config(GroupConfig):
    """GRPO / RLOO hyper-parameters: the shared LM-RL and group fields (:class:`~jaxrl_self.lm.GroupConfig`)
    and the group size."""

    group_size: int = _static(8)
    """responses sampled per prompt (G >= 2); an update trains on B * G responses"""

    @property
    def batch_size(self) -> int:
        """Responses per update: ``num_prompts * group_size``."""
        return self.num_prompts * self.group_size

    def validate(self, env: Any = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field. Traced values are skipped;
        with ``env`` (a :class:`~jaxrl_self.core.SequenceTask`) the task and lengths are checked too."""
        self.validate_group(env, env_params, owner="grpo.Config", group_size=self.group_size,
                            group_field="group_size", batch_size=lambda: self.batch_size)


# ============================================================================================ state and metrics
#: Everything a run needs to continue: :class:`jaxrl_self.lm.RunState` (params, optimiser state, reference,
#: RNG, counters, the reward's extras and the problem source's state).
RunState = lm.RunState


@struct.dataclass
class Metrics:
    """One row per update (scalars per seed). Loss statistics are means over epochs and minibatches."""

    env_steps: jax.Array  # cumulative response tokens generated
    episode_return: jax.Array  # = reward_mean (the runner's progress bar and summary read this)
    episode_return_valid: jax.Array  # always True
    reward_mean: jax.Array  # mean reward over the B * G responses
    reward_std: jax.Array  # its standard deviation over the batch
    accuracy: jax.Array  # fraction of responses the task's verifier accepts (NaN without ground_truth_metrics)
    format_valid: jax.Array  # fraction with a parseable answer
    response_length: jax.Array  # mean response tokens (EOS included)
    truncated: jax.Array  # fraction of responses cut at max_new_tokens without EOS
    degenerate_groups: jax.Array  # fraction of groups whose rewards are all equal (zero advantage)
    loss: jax.Array
    policy_loss: jax.Array
    kl: jax.Array  # token-mean k3 estimate of KL(π_θ || π_ref) (0 without a reference)
    entropy: jax.Array  # token-mean policy entropy (nats)
    approx_kl: jax.Array  # token-mean k3 estimate of KL(π_old || π_θ)
    clip_fraction: jax.Array
    grad_norm: jax.Array  # global norm before clipping
    learning_rate: jax.Array
    reward: dict = struct.field(default_factory=dict)  # the reward function's own metrics (batch means)
    problems: dict = struct.field(default_factory=dict)  # the problem source's (problem_pass for a fixed set)


# ============================================================================================ the run
def make_train(config: Config, env: SequenceTask, env_params: Any = None, *, reward_fn: Any = None,
               reward_extras: Any = None, init_params: Any = None, model_config: TransformerConfig | None = None,
               problems: Optional[lm.ProblemSet] = None) -> Train[RunState]:
    """Build the training run: ``train(key) -> (RunState, Metrics)`` (metrics ``[num_updates]`` per field).

    Args:
      config: the :class:`Config` (may hold traced numeric fields: call inside ``jax.vmap`` for a sweep).
      env: the :class:`~jaxrl_self.core.SequenceTask`.
      env_params: the task's parameters (default ``env.default_params``); the config's difficulty range is
        applied on top (:func:`jaxrl_self.lm.task_params_for`).
      reward_fn: a :class:`~jaxrl_self.lm.RewardFn` or :class:`~jaxrl_self.lm.GroupRewardFn`; default
        :func:`~jaxrl_self.lm.verifier_reward` with ``config.format_penalty``.
      reward_extras: the initial ``RunState.reward_extras``.
      init_params, model_config: start from these parameters instead of ``config.base_model`` / a fresh
        initialisation (the same for every seed; ``init(key, params=...)`` overrides them per copy).
      problems: train on passes over this :class:`~jaxrl_self.lm.ProblemSet` (held in the run state, so
        ``init(key, problems=...)`` can inject another set of the same shape) instead of the task's sampler.
    """
    config.validate(env, env_params)
    task = env
    source = lm.problem_source(task, lm.task_params_for(config, task, env_params), problems)
    policy = lm.load_policy(config, task, init_params=init_params, model_config=model_config, owner="grpo.Config")
    model_cfg = policy.model_config
    reward_fn = verifier_reward(task, config.format_penalty) if reward_fn is None else reward_fn
    tx = lm.make_optimizer(config)
    B, G, R = config.num_prompts, config.group_size, config.max_new_tokens

    def loss_fn(params, mb):
        return lm.group_policy_loss(config, model_cfg, params, mb)

    def init(key: jax.Array, params: Any = None, *, ref_params: Any = None, problems: Any = None,
             reward_extras: Any = reward_extras) -> RunState:
        return lm.init_run_state(key, policy, tx, source, use_reference=config.use_reference, params=params,
                                 ref_params=ref_params, problems=problems, reward_extras=reward_extras)

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_prob, k_gen, k_rew, k_learn = jax.random.split(state.rng, 5)
        # 1. problems, 2. G responses each
        source_state, drawn = source.draw(state.problems, k_prob, B)
        ro = lm.rollout(k_gen, state.params, model_cfg, drawn.problems, G, R, config.temperature,
                        prompt_layout=policy.prompt_layout)
        # 3. rewards, 4. group-relative advantages
        rewards, reward_metrics = lm.compute_rewards(k_rew, reward_fn, ro.problem, ro.responses, ro.mask, G,
                                                     state.reward_extras)
        advantages = group.group_advantages(rewards, config.advantage, eps=config.adv_eps, ddof=config.std_ddof)
        # 5. reference log-probs
        ref_logp = lm.reference_logp(state.ref_params, model_cfg, ro) if config.use_reference else None
        # 6. learn
        batch = lm.make_batch(ro, advantages, ref_logp, row_valid=drawn.valid)
        params, opt_state, stats = lm.learn(k_learn, config, loss_fn, tx, state.params, state.opt_state, batch)
        params, opt_state, nonfinite = lm.guard_nonfinite(state, params, opt_state, stats["loss"])

        env_steps = state.env_steps + jnp.sum(ro.response_len)
        rs = lm.rollout_stats(task, ro, rewards, G, R, config.ground_truth_metrics)
        metrics = Metrics(
            env_steps=env_steps,
            episode_return=rs["reward_mean"],
            episode_return_valid=jnp.ones((), bool),
            **rs,
            degenerate_groups=jnp.mean(jnp.all(advantages == 0, axis=-1).astype(jnp.float32)),
            **{k: jnp.mean(v) for k, v in stats.items()},
            learning_rate=lm.learning_rate_at(config, state.update_step),
            reward=lm.mean_metrics(reward_metrics),
            problems=drawn.stats,
        )
        new_state = state.replace(params=params, opt_state=opt_state, rng=rng, update_step=state.update_step + 1,
                                  env_steps=env_steps, nonfinite_update=nonfinite, problems=source_state)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=config.num_updates, config=config)


def make_eval(config: Config, env: SequenceTask, env_params: Any = None, *,
              model_config: TransformerConfig | None = None, greedy: bool = True):
    """Held-out accuracy: :func:`jaxrl_self.lm.make_eval` (problems from the task, one response each)."""
    return lm.make_eval(config, env, env_params, model_config=model_config, greedy=greedy)
