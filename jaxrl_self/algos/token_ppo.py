"""Token-level PPO with a value head for language models on verifiable token tasks (synchronous baseline).

Every generated token is an action; the state is the prompt plus the response so far. This is the classic
RLHF-style PPO (Ziegler et al., 2019; Ouyang et al., 2022) with the task's verifier as the reward model, and
the synchronous baseline that Truncated PPO (:mod:`jaxrl_self.algos.tppo`) is compared with: every response of
a batch is generated to the end before anything is learned.

::

    task = envs.make("addition", max_digits=4)
    train = token_ppo.make_train(token_ppo.Config(base_model="addition-base"), task)
    state, metrics = jax.jit(train)(jax.random.key(0))

One update, top to bottom:

1. **rollout**: ``num_prompts`` problems, ``group_size`` responses each (default 1), sampled with the KV cache;
   the sampler also returns ``log π_old(y_t | s_t)`` and the value ``V_old(s_t)`` of the state each token was
   chosen in (the shared trunk's value head) (:func:`jaxrl_self.lm.rollout`);
2. **rewards**: the task reward ``R`` of each whole response (default: the verifier, 1/0) is paid at its last
   token; with ``use_reference`` every token also pays ``−β (log π_old − log π_ref)`` (the per-token KL penalty
   of Ziegler et al.) (:func:`token_rewards`);
3. **advantages**: GAE over the response tokens (:func:`jaxrl_self.rl.token_gae`), ``δ_t = r_t + γ V(s_{t+1}) − V(s_t)`` with
   ``V(s_{T}) = 0`` after the last token (the response is over: a terminal state, also when it was cut at
   ``max_new_tokens``), ``A_t = δ_t + γλ A_{t+1}``; defaults ``γ = 1``, ``λ = 0.95``; value targets
   ``A_t + V_old(s_t)``; advantages whitened over the batch's response tokens (``normalize_advantages``);
4. **learn**: ``update_epochs`` x ``num_minibatches`` of whole responses: clipped surrogate +
   ``vf_coef`` x clipped value loss − ``ent_coef`` x entropy, token means over response tokens
   (:func:`ppo_token_loss`), global-norm clipping, Adam.

Built on the shared LM-RL layer (:mod:`jaxrl_self.lm`: problem sources, rewards, rollout, learner, optimiser,
guard) and :mod:`jaxrl_self.rl` (``token_rewards``, ``token_gae``, the PPO losses).
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self import lm, rl
from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.sequence import SequenceTask
from jaxrl_self.lm.config import NON_NEGATIVE, POSITIVE, UNIT, LMRLConfig
from jaxrl_self.lm.diagnostics import EvalResult
from jaxrl_self.lm.learner import Rollout
from jaxrl_self.lm.rewards import GroupRewardFn, RewardFn, verifier_reward
from jaxrl_self.nets.transformer import TransformerConfig
from jaxrl_self.rl import token_gae, token_rewards

__all__ = [
    "NAME",
    "DEFAULT_ENV",
    "Config",
    "RunState",
    "Metrics",
    "Batch",
    "EvalResult",
    "RewardFn",
    "GroupRewardFn",
    "token_rewards",
    "token_gae",
    "make_batch",
    "ppo_token_loss",
    "make_train",
    "make_eval",
]

NAME = "token_ppo"
#: What it trains on: token tasks (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("task",)
DEFAULT_ENV = "addition"


# ============================================================================================ configuration
@struct.dataclass
class Config(LMRLConfig):
    """Token-level PPO hyper-parameters: the shared LM-RL fields (:class:`~jaxrl_self.lm.LMRLConfig`; some with
    other defaults here) and these."""

    # -- shared fields with token PPO's defaults
    update_epochs: int = _static(4)
    """passes over each batch of responses"""
    num_minibatches: int = _static(4)
    """minibatches of whole responses per epoch; must divide num_prompts * group_size"""
    model: TransformerConfig = _static(TransformerConfig(num_layers=2, d_model=64, num_heads=4, d_ff=256, max_len=64,
                                                         value_head=True))
    """architecture of a freshly initialised policy (a value head is always added)"""
    learning_rate: float = 1e-4
    """Adam step size (after the warm-up)"""
    # -- sizes (static)
    num_prompts: int = _static(64)
    """prompts per update"""
    group_size: int = _static(1)
    """responses sampled per prompt; an update trains on num_prompts * group_size responses"""
    # -- switches (static)
    normalize_advantages: bool = _static(True)
    """whiten the advantages over the batch's response tokens"""
    clip_value_loss: bool = _static(True)
    """clip the value loss around the rollout's values with value_clip_eps"""
    use_reference: bool = _static(False)
    """keep a frozen copy of the initial policy and pay -kl_coef * (log π_old - log π_ref) per token"""
    # -- numeric hyper-parameters (traced)
    gamma: float = 1.0
    """discount over response tokens"""
    gae_lambda: float = 0.95
    """GAE λ over response tokens"""
    value_clip_eps: float = 0.2
    """value clip range around the rollout's values"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    kl_coef: float = 0.0
    """β of the per-token KL penalty in the reward (needs use_reference)"""

    @property
    def batch_size(self) -> int:
        return self.num_prompts * self.group_size

    def validate(self, env: Any = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (traced values skipped)."""
        self.validate_shared(env, env_params, owner="token_ppo.Config", sizes=("num_prompts", "group_size"),
                             batch_size=lambda: self.batch_size,
                             flags=("normalize_advantages", "clip_value_loss", "use_reference"),
                             extra_numeric={"gamma": UNIT, "gae_lambda": UNIT, "value_clip_eps": POSITIVE,
                                            "vf_coef": NON_NEGATIVE, "kl_coef": NON_NEGATIVE})


# ============================================================================================ state and metrics
#: Everything a run needs to continue: :class:`jaxrl_self.lm.RunState` (``params`` include the value head).
RunState = lm.RunState


@struct.dataclass
class Metrics:
    """One row per update (scalars per seed). Loss statistics are means over epochs and minibatches."""

    env_steps: jax.Array
    episode_return: jax.Array  # = reward_mean
    episode_return_valid: jax.Array
    reward_mean: jax.Array
    reward_std: jax.Array
    accuracy: jax.Array
    format_valid: jax.Array
    response_length: jax.Array
    truncated: jax.Array
    loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array
    kl_ref: jax.Array  # token-mean log π_old − log π_ref of the sampled tokens (0 without a reference)
    value_mean: jax.Array  # token-mean V_old(s_t)
    advantage_mean: jax.Array  # token-mean raw advantage
    learning_rate: jax.Array
    reward: dict = struct.field(default_factory=dict)  # the reward function's own metrics (batch means)
    problems: dict = struct.field(default_factory=dict)  # the problem source's (problem_pass for a fixed set)


@struct.dataclass
class Batch:
    """What the token-PPO learner needs, ``[N, ...]`` per field (whole responses)."""

    prompts: jax.Array  # [N, P] int32
    prompt_len: jax.Array  # [N] int32
    responses: jax.Array  # [N, R] int32
    mask: jax.Array  # [N, R] bool
    old_logp: jax.Array  # [N, R] float32
    old_values: jax.Array  # [N, R] float32, V_old(s_t)
    advantages: jax.Array  # [N, R] float32 (normalised if configured)
    returns: jax.Array  # [N, R] float32, value targets


# ============================================================================================ batch and loss
def make_batch(ro: Rollout, advantages: jax.Array, returns: jax.Array, normalize: bool,
               row_valid: jax.Array | None = None) -> Batch:
    """The learner's batch; ``normalize`` whitens the advantages over the response tokens of the batch;
    rows where ``row_valid`` (``[N]``, or ``[B]`` per problem) is False get an empty mask."""
    mask = lm.row_mask(ro.mask, row_valid)
    adv = rl.normalize_advantages(advantages, mask) if normalize else advantages
    return Batch(prompts=ro.prompts, prompt_len=ro.prompt_len, responses=ro.responses, mask=mask,
                 old_logp=ro.logp, old_values=ro.values, advantages=adv, returns=returns)


def ppo_token_loss(logp: jax.Array, old_logp: jax.Array, values: jax.Array, old_values: jax.Array,
                   returns: jax.Array, advantages: jax.Array, entropy: jax.Array, mask: jax.Array, *,
                   clip_eps: float | jax.Array, value_clip_eps: float | jax.Array | None,
                   vf_coef: float | jax.Array, ent_coef: float | jax.Array) -> tuple[jax.Array, dict]:
    """Token-level PPO loss on ``[N, R]`` arrays, token means over ``mask``:
    ``L = ppo_policy_loss + vf_coef · value_loss − ent_coef · entropy`` (:mod:`jaxrl_self.rl.losses`).

    Inputs are replaced by constants at padded positions before any arithmetic, so padding changes neither
    the loss nor its gradient. ``value_clip_eps=None`` disables value clipping. Returns ``(loss, aux)``.
    """
    m = jnp.asarray(mask, bool)
    z = jnp.zeros((), jnp.float32)
    logp, old_logp, values, old_values, returns, advantages, entropy = (
        jnp.where(m, x, z) for x in (logp, old_logp, values, old_values, returns, advantages, entropy))
    policy_loss, stats = rl.ppo_policy_loss(logp, old_logp, advantages, clip_eps, m)
    v_loss = rl.value_loss(values, old_values, returns, value_clip_eps, m)
    ent = rl.entropy_bonus(entropy, m)
    loss = policy_loss + vf_coef * v_loss - ent_coef * ent
    return loss, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": jax.lax.stop_gradient(ent),
                  "approx_kl": stats.approx_kl, "clip_fraction": stats.clip_fraction}


def token_ppo_loss(config: Config, model_config: TransformerConfig, params: Any, mb: Batch):
    """The objective on one minibatch of whole responses: one scoring pass (log-probs, entropies, values)."""
    out = lm.score_response(params, mb.prompts, mb.prompt_len, mb.responses, mb.mask, config=model_config,
                            with_entropy=True)
    return ppo_token_loss(out.logp, mb.old_logp, out.values, mb.old_values, mb.returns, mb.advantages, out.entropy,
                          mb.mask, clip_eps=config.clip_eps,
                          value_clip_eps=config.value_clip_eps if config.clip_value_loss else None,
                          vf_coef=config.vf_coef, ent_coef=config.ent_coef)


# ============================================================================================ the run
def make_train(config: Config, env: SequenceTask, env_params: Any = None, *, reward_fn: Any = None,
               reward_extras: Any = None, init_params: Any = None, model_config: TransformerConfig | None = None,
               problems: Optional[lm.ProblemSet] = None) -> Train[RunState]:
    """Build the training run ``train(key) -> (RunState, Metrics)``; arguments (and ``init``'s) as in
    :func:`jaxrl_self.algos.grpo.make_train` (a value head is added to the policy if it has none)."""
    config.validate(env, env_params)
    task = env
    source = lm.problem_source(task, lm.task_params_for(config, task, env_params), problems)
    policy = lm.load_policy(config, task, value_head=True, init_params=init_params, model_config=model_config,
                            owner="token_ppo.Config")
    model_cfg = policy.model_config
    reward_fn = verifier_reward(task, config.format_penalty) if reward_fn is None else reward_fn
    tx = lm.make_optimizer(config)
    B, G, R = config.num_prompts, config.group_size, config.max_new_tokens

    def loss_fn(params, mb):
        return token_ppo_loss(config, model_cfg, params, mb)

    def init(key: jax.Array, params: Any = None, *, ref_params: Any = None, problems: Any = None,
             reward_extras: Any = reward_extras) -> RunState:
        return lm.init_run_state(key, policy, tx, source, use_reference=config.use_reference, params=params,
                                 ref_params=ref_params, problems=problems, reward_extras=reward_extras)

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_prob, k_gen, k_rew, k_learn = jax.random.split(state.rng, 5)
        # 1. rollout (log-probs and values from the sampler)
        source_state, drawn = source.draw(state.problems, k_prob, B)
        ro = lm.rollout(k_gen, state.params, model_cfg, drawn.problems, G, R, config.temperature,
                        prompt_layout=policy.prompt_layout)
        # 2. per-token rewards: terminal task reward (+ KL penalty to the reference)
        rewards, reward_metrics = lm.compute_rewards(k_rew, reward_fn, ro.problem, ro.responses, ro.mask, G,
                                                     state.reward_extras)
        rewards = rewards.reshape(-1)
        kl_ref = None
        if config.use_reference:
            kl_ref = jnp.where(ro.mask, ro.logp - lm.reference_logp(state.ref_params, model_cfg, ro), 0.0)
        r_tok = token_rewards(rewards, ro.mask, None if kl_ref is None else -config.kl_coef * kl_ref)
        # 3. GAE over response tokens
        advantages, returns = token_gae(r_tok, ro.values, ro.mask, config.gamma, config.gae_lambda)
        # 4. learn
        batch = make_batch(ro, advantages, returns, config.normalize_advantages, row_valid=drawn.valid)
        params, opt_state, stats = lm.learn(k_learn, config, loss_fn, tx, state.params, state.opt_state, batch)
        params, opt_state, nonfinite = lm.guard_nonfinite(state, params, opt_state, stats["loss"])

        env_steps = state.env_steps + jnp.sum(ro.response_len)
        rs = lm.rollout_stats(task, ro, rewards.reshape(B, G), G, R, config.ground_truth_metrics)
        metrics = Metrics(
            env_steps=env_steps,
            episode_return=rs["reward_mean"],
            episode_return_valid=jnp.ones((), bool),
            **rs,
            **{k: jnp.mean(v) for k, v in stats.items()},
            kl_ref=jnp.zeros(()) if kl_ref is None else rl.masked_mean(kl_ref, ro.mask),
            value_mean=rl.masked_mean(ro.values, ro.mask),
            advantage_mean=rl.masked_mean(advantages, ro.mask),
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
    """Held-out accuracy, as :func:`jaxrl_self.lm.make_eval` (with the value-head model config)."""
    return lm.make_eval(config, env, env_params, model_config=model_config, greedy=greedy, value_head=True)
