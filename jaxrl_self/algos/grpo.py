"""GRPO and RLOO for language models on verifiable token tasks, as one XLA program.

::

    from jaxrl_self import envs
    from jaxrl_self.algos import grpo
    task = envs.make("addition", max_digits=4)
    train = grpo.make_train(grpo.Config(base_model="addition-base", min_difficulty=4), task)
    state, metrics = jax.jit(train)(jax.random.key(0))                 # the whole run
    jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 3))   # 3 seeds in one program

One update (:func:`make_train`'s ``update``), top to bottom:

1. **problems**: ``num_prompts`` problems ``B`` from the task (:func:`sample_problems`);
2. **rollout**: ``group_size`` responses ``G`` per prompt from the current policy with the KV-cache sampler,
   temperature ``temperature`` (:func:`rollout`); the sampler returns each token's policy log-prob
   ``log π_old(y_t | x, y_<t)`` (untempered), which is the denominator of the PPO ratio;
3. **rewards**: ``r = reward_fn(problem, response, response_mask, key, extras)`` for each of the ``B·G``
   responses (:func:`compute_rewards`); default :func:`verifier_reward`: 1 if the task's verifier accepts
   the answer, else 0 (minus ``format_penalty`` when no answer can be parsed);
4. **advantages** within each group (:mod:`jaxrl_self.rl.group`): GRPO ``(r_i − r̄)/(σ + ε)``, RLOO
   ``r_i − mean_{j≠i} r_j`` or Dr. GRPO ``r_i − r̄``; every token of response ``i`` gets ``A_i``;
5. **reference**: ``log π_ref`` of the sampled tokens under the frozen initial policy (one forward pass);
6. **learn**: ``update_epochs`` passes of ``num_minibatches`` minibatches of whole responses; per token
   ``ℓ_t = −min(ρ_t A, clip(ρ_t, 1−ε, 1+ε) A) + β·k3_t − c_H·H_t`` with ``ρ_t = exp(log π_θ − log π_old)``,
   ``k3_t = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1`` (Schulman's unbiased, non-negative
   estimator of ``KL(π_θ || π_ref)``) and ``H_t`` the entropy; aggregated over response tokens only
   (``loss_agg``, default the token mean over the minibatch); global-norm clipping, Adam.

Masks come from response lengths (the sampler's prefix mask), never from token values; every per-token input
is replaced by a constant at padded positions *before* any arithmetic, so neither the loss nor its gradient
can see padding (tested).

Pluggable rewards. A :class:`RewardFn` maps one response to a float32 scalar and is vmapped over the batch;
a :class:`GroupRewardFn` (mark it with :func:`group_reward`) sees the ``G`` responses of one prompt at once
(TTRL's majority vote). ``extras`` is ``RunState.reward_extras``: any pytree the reward needs (a frozen
student's parameters for RLT), set through ``make_train(..., reward_extras=...)`` and replaceable between
updates by an outer loop.

The pieces (:func:`sample_problems`, :func:`rollout`, :func:`compute_rewards`, :func:`make_batch`,
:func:`policy_token_loss`, :func:`learn`) are importable for TTRL, RLT and SOAR, which reuse them with their
own rewards and data. A non-finite loss (or parameter) stops learning as in PPO: ``RunState.nonfinite_update``
records the first bad update, which and all later updates leave ``params``/``opt_state`` untouched.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl_self import lm, rl
from jaxrl_self.lm.evaluate import PROMPT_LAYOUTS, prompt_lengths
from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.environment import tree_select
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import Problem, SequenceTask
from jaxrl_self.nets.transformer import TransformerConfig
from jaxrl_self.nets.transformer import init_params as init_model_params
from jaxrl_self.rl import group

__all__ = [
    "NAME",
    "DEFAULT_ENV",
    "Config",
    "RunState",
    "Metrics",
    "Rollout",
    "Batch",
    "EvalResult",
    "RewardFn",
    "GroupRewardFn",
    "group_reward",
    "is_group_reward",
    "verifier_reward",
    "task_params_for",
    "load_policy",
    "learning_rate_at",
    "make_optimizer",
    "sample_problems",
    "rollout",
    "compute_rewards",
    "make_batch",
    "policy_token_loss",
    "grpo_loss",
    "learn",
    "make_train",
    "make_eval",
]

NAME = "grpo"
#: The environment the CLI uses when ``--task``/``--env`` is not given.
DEFAULT_ENV = "addition"


# ============================================================================================ configuration
@struct.dataclass
class Config:
    """GRPO / RLOO hyper-parameters.

    Static fields (shapes, control flow) must be equal across a vmapped batch of configs; the numeric fields
    below them are traced, so ``jax.vmap`` over stacked configs is a hyper-parameter sweep in one program.
    """

    # -- sizes (static)
    num_updates: int = _static(200)
    """updates in the run (each: sample, score, learn)"""
    num_prompts: int = _static(16)
    """prompts per update (B)"""
    group_size: int = _static(8)
    """responses sampled per prompt (G >= 2); an update trains on B * G responses"""
    max_new_tokens: int = _static(16)
    """response budget in tokens (a response without EOS is cut there)"""
    update_epochs: int = _static(1)
    """passes over each batch of responses (> 1: PPO-style reuse with ratio clipping)"""
    num_minibatches: int = _static(1)
    """minibatches of whole responses per epoch; must divide B * G"""
    # -- method (static)
    advantage: str = _static("grpo")
    """group advantage: 'grpo' (r - mean)/(std + eps), 'rloo' (leave-one-out baseline), 'dr_grpo' (r - mean)"""
    std_ddof: int = _static(0)
    """GRPO's std: 0 = population (default), 1 = sample std (TRL)"""
    loss_agg: str = _static("token_mean")
    """'token_mean' (all response tokens weigh the same), 'seq_mean_token_mean' (original GRPO), 'seq_mean_token_sum_norm' (Dr. GRPO)"""
    use_reference: bool = _static(True)
    """keep a frozen copy of the initial policy and add kl_coef * k3 KL to it; False skips its forward pass"""
    # -- model (static)
    base_model: str = _static("")
    """start from this model: a shipped base model ('addition-base'), a model file or a pretrain run folder; '' = fresh init of `model`"""
    model: TransformerConfig = _static(TransformerConfig(num_layers=2, d_model=64, num_heads=4, d_ff=256, max_len=64))
    """architecture of a freshly initialised policy (ignored with base_model or explicit init_params)"""
    prompt_layout: str = _static("auto")
    """how prompts are shown to the model: 'packed', 'padded', or 'auto' (the base model's layout, else 'packed')"""
    # -- task (traced; None = the task's default)
    min_difficulty: Optional[int] = None
    """lowest difficulty sampled (addition: operand digits, chain: steps); None = the task's default"""
    max_difficulty: Optional[int] = None
    """highest difficulty sampled; None = the task's default"""
    # -- numeric hyper-parameters (traced)
    learning_rate: float = 3e-4
    """Adam step size (after the warm-up)"""
    warmup_updates: int = 0
    """linear learning-rate warm-up over this many updates (0 = constant)"""
    kl_coef: float = 0.0
    """β, weight of the k3 KL to the reference (needs use_reference)"""
    clip_eps: float = 0.2
    """PPO ratio clip ε"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    temperature: float = 1.0
    """sampling temperature of the rollouts (the loss always uses the untempered policy)"""
    adv_eps: float = 1e-6
    """ε of GRPO's (r - mean)/(std + ε)"""
    format_penalty: float = 0.0
    """default reward only: subtracted when no answer can be parsed from the response"""
    max_grad_norm: float = 1.0
    """global gradient-norm clip"""
    adam_eps: float = 1e-8
    """Adam ε"""
    weight_decay: float = 0.0
    """decoupled weight decay (AdamW); 0 = Adam"""

    @property
    def batch_size(self) -> int:
        """Responses per update: ``num_prompts * group_size``."""
        return self.num_prompts * self.group_size

    def validate(self, env: Any = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field. Traced values are skipped;
        with ``env`` (a :class:`~jaxrl_self.core.SequenceTask`) the task and lengths are checked too."""
        _validate(self, "grpo.Config", env, env_params)


def _validate(config: Any, owner: str, env: Any, env_params: Any, extra_numeric: dict | None = None) -> None:
    """Shared checks of the GRPO and token-PPO configs (both have the sizes, model and task fields)."""

    def fail(field, value, allowed):
        raise ConfigError(field, value, allowed, owner)

    for name in ("num_updates", "num_prompts", "max_new_tokens", "update_epochs", "num_minibatches"):
        v = getattr(config, name)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
            fail(name, v, "a positive integer")
    G = getattr(config, "group_size", 1)
    if not isinstance(G, (int, np.integer)) or isinstance(G, bool) or G < (2 if hasattr(config, "advantage") else 1):
        fail("group_size", G, "an integer >= 2 (a group needs at least two responses)"
             if hasattr(config, "advantage") else "a positive integer")
    if config.batch_size % config.num_minibatches:
        fail("num_minibatches", config.num_minibatches, f"a divisor of the responses per update = {config.batch_size}")
    if hasattr(config, "advantage") and config.advantage not in group.ESTIMATORS:
        fail("advantage", config.advantage, f"one of {group.ESTIMATORS}")
    if hasattr(config, "std_ddof") and config.std_ddof not in (0, 1):
        fail("std_ddof", config.std_ddof, "0 (population std) or 1 (sample std)")
    if hasattr(config, "loss_agg") and config.loss_agg not in group.AGGREGATIONS:
        fail("loss_agg", config.loss_agg, f"one of {group.AGGREGATIONS}")
    for name in ("use_reference", "normalize_advantages", "clip_value_loss"):
        if hasattr(config, name) and not isinstance(getattr(config, name), (bool, np.bool_)):
            fail(name, getattr(config, name), "True or False")
    if not isinstance(config.base_model, str):
        fail("base_model", config.base_model, "a base model name or '' (fresh initialisation)")
    if not isinstance(config.model, TransformerConfig):
        fail("model", config.model, "a jaxrl_self.nets.transformer.TransformerConfig")
    if config.prompt_layout not in ("auto",) + PROMPT_LAYOUTS:
        fail("prompt_layout", config.prompt_layout, f"one of {('auto',) + PROMPT_LAYOUTS}")
    for name in ("min_difficulty", "max_difficulty"):
        v = getattr(config, name)
        if v is None or isinstance(v, jax.core.Tracer):
            continue
        arr = np.asarray(v)
        if not (np.issubdtype(arr.dtype, np.integer) and np.all(arr >= 1)):
            fail(name, v, "None or an integer >= 1")
    lo, hi = config.min_difficulty, config.max_difficulty
    if (lo is not None and hi is not None and not isinstance(lo, jax.core.Tracer)
            and not isinstance(hi, jax.core.Tracer) and np.any(np.asarray(lo) > np.asarray(hi))):
        fail("min_difficulty", lo, f"<= max_difficulty={hi}")

    numeric = {
        "learning_rate": (lambda x: np.isfinite(x) & (x > 0), "a finite number > 0"),
        "kl_coef": (lambda x: np.isfinite(x) & (x >= 0), "a finite number >= 0"),
        "clip_eps": (lambda x: np.isfinite(x) & (x > 0), "a finite number > 0"),
        "ent_coef": (lambda x: np.isfinite(x) & (x >= 0), "a finite number >= 0"),
        "temperature": (lambda x: np.isfinite(x) & (x > 0), "a finite number > 0"),
        "max_grad_norm": (lambda x: x > 0, "a number > 0 (inf disables clipping)"),
        "adam_eps": (lambda x: np.isfinite(x) & (x > 0), "a finite number > 0"),
        "weight_decay": (lambda x: np.isfinite(x) & (x >= 0), "a finite number >= 0"),
        "format_penalty": (lambda x: np.isfinite(x), "a finite number"),
        "adv_eps": (lambda x: np.isfinite(x) & (x >= 0), "a finite number >= 0"),
        "warmup_updates": (lambda x: (x >= 0) & (x == np.round(x)), "an integer >= 0"),
        **(extra_numeric or {}),
    }
    for name, (ok, allowed) in numeric.items():
        if not hasattr(config, name):
            continue
        v = getattr(config, name)
        if isinstance(v, jax.core.Tracer):
            continue
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            fail(name, v, allowed)
        if arr.size == 0 or not np.all(ok(arr)):
            fail(name, v, allowed)

    if env is not None:
        if not isinstance(env, SequenceTask):
            fail("env", getattr(env, "name", type(env).__name__),
                 "a SequenceTask (a token task such as 'addition' or 'chain'); pass --task addition")
        task_params_for(config, env, env_params)  # checks the difficulty range against the task
        if not config.base_model:
            _check_model(config.model, env, config.max_new_tokens, owner, "model")


def _check_model(model: TransformerConfig, task: SequenceTask, max_new_tokens: int, owner: str, field: str) -> None:
    need = task.prompt_len + max_new_tokens
    if model.max_len < need:
        raise ConfigError(field, f"max_len={model.max_len}",
                          f"max_len >= prompt_len + max_new_tokens = {task.prompt_len} + {max_new_tokens} = {need}",
                          owner)
    if model.vocab_size != task.vocab.size:
        raise ConfigError(field, f"vocab_size={model.vocab_size}", f"the task's vocabulary size {task.vocab.size}",
                          owner)


# ============================================================================================ state and metrics
@struct.dataclass
class RunState:
    """Everything a run needs to continue (one pytree; vmapped runs add a leading axis to every leaf)."""

    params: Any  # policy parameters
    opt_state: Any  # optax state
    ref_params: Any  # frozen reference policy (the initial parameters); None without use_reference
    rng: jax.Array  # typed PRNG key
    update_step: jax.Array  # int32, updates done
    env_steps: jax.Array  # int32, response tokens generated so far
    nonfinite_update: jax.Array  # int32, -1, or the first update whose loss was NaN/inf (it and later ones skipped)
    reward_extras: Any = None  # passed to the reward function as `extras` (e.g. a frozen student's params)


@struct.dataclass
class Metrics:
    """One row per update (scalars per seed). Loss statistics are means over epochs and minibatches."""

    env_steps: jax.Array  # cumulative response tokens generated
    episode_return: jax.Array  # = reward_mean (the runner's progress bar and summary read this)
    episode_return_valid: jax.Array  # always True
    reward_mean: jax.Array  # mean reward over the B * G responses
    reward_std: jax.Array  # its standard deviation over the batch
    accuracy: jax.Array  # fraction of responses the task's verifier accepts (whatever the reward function)
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


@struct.dataclass
class Rollout:
    """``B`` prompts with ``G`` sampled responses each, flattened to ``N = B * G`` rows (row ``b * G + g``).

    ``problem`` keeps the ``[B]`` problems; every other field is ``[N, ...]``. ``logp`` is the policy log-prob
    ``log π_old`` of each sampled token (temperature 1; 0 where ``~mask``).
    """

    problem: Problem  # [B] leaves
    prompts: jax.Array  # [N, P] int32, right-padded
    prompt_len: jax.Array  # [N] int32
    responses: jax.Array  # [N, R] int32, PAD after the end
    mask: jax.Array  # [N, R] bool, True on generated tokens (a prefix of each row)
    logp: jax.Array  # [N, R] float32
    values: Optional[jax.Array]  # [N, R] float32 V(state before token) for value-head models, else None

    @property
    def response_len(self) -> jax.Array:
        return jnp.sum(self.mask, axis=-1).astype(jnp.int32)


@struct.dataclass
class Batch:
    """What the GRPO learner needs, ``[N, ...]`` per field (whole responses; minibatches cut along ``N``)."""

    prompts: jax.Array  # [N, P] int32
    prompt_len: jax.Array  # [N] int32
    responses: jax.Array  # [N, R] int32
    mask: jax.Array  # [N, R] bool
    old_logp: jax.Array  # [N, R] float32, log π_old of the sampled tokens
    ref_logp: jax.Array  # [N, R] float32, log π_ref (zeros without a reference)
    advantage: jax.Array  # [N] float32, one advantage per response


# ============================================================================================ rewards
class RewardFn(Protocol):
    """Reward of ONE response (vmapped over the batch by the algorithm).

    Args:
      problem: the :class:`~jaxrl_self.core.Problem` (unbatched leaves).
      response: ``[R]`` int32 response tokens, PAD after the end.
      response_mask: ``[R]`` bool, True on generated tokens.
      key: a typed PRNG key for stochastic rewards.
      extras: ``RunState.reward_extras`` (any pytree, shared by the batch).

    Returns:
      float32 scalar reward.
    """

    def __call__(self, problem: Problem, response: jax.Array, response_mask: jax.Array, key: jax.Array,
                 extras: Any) -> jax.Array: ...


class GroupRewardFn(Protocol):
    """Rewards of the ``G`` responses of ONE prompt at once (e.g. TTRL's majority vote), marked with
    :func:`group_reward`: ``(problem, responses [G, R], response_mask [G, R], key, extras) -> [G] float32``."""

    def __call__(self, problem: Problem, responses: jax.Array, response_mask: jax.Array, key: jax.Array,
                 extras: Any) -> jax.Array: ...


def group_reward(fn: Any) -> Any:
    """Mark ``fn`` as a :class:`GroupRewardFn` (it sees a whole group). Returns ``fn``."""
    fn.per_group = True
    return fn


def is_group_reward(fn: Any) -> bool:
    return bool(getattr(fn, "per_group", False))


def verifier_reward(task: SequenceTask, format_penalty: float | jax.Array = 0.0) -> RewardFn:
    """The default reward: ``1`` if ``task.is_correct(problem, response)``, else ``0``, minus ``format_penalty``
    when no answer can be parsed (``task.extract_answer`` invalid). ``format_penalty`` may be traced."""

    def reward(problem: Problem, response: jax.Array, response_mask: jax.Array, key: jax.Array, extras: Any):
        del key, extras
        response = jnp.where(response_mask, response, task.vocab.PAD)
        correct = task.is_correct(problem, response)
        _, valid = task.extract_answer(response)
        return correct.astype(jnp.float32) - jnp.where(valid, 0.0, jnp.asarray(format_penalty, jnp.float32))

    return reward


# ============================================================================================ task and policy
def task_params_for(config: Any, task: SequenceTask, env_params: Any = None) -> Any:
    """The task parameters to sample from: ``env_params`` (default ``task.default_params``) with its difficulty
    range replaced by ``config.min_difficulty``/``max_difficulty`` where given.

    The range is the params' single ``min_X``/``max_X`` pair of fields (``min_digits``/``max_digits`` for
    addition, ``min_steps``/``max_steps`` for the chain), so any task following that naming works.
    """
    params = task.default_params if env_params is None else env_params
    lo, hi = config.min_difficulty, config.max_difficulty
    if lo is None and hi is None:
        return params
    names = [f.name for f in dataclasses.fields(params)] if dataclasses.is_dataclass(params) else []
    pairs = [n[4:] for n in names if n.startswith("min_") and f"max_{n[4:]}" in names]
    if len(pairs) != 1:
        raise ConfigError("min_difficulty", lo, f"None: {type(params).__name__} has no single min_X/max_X range "
                          f"(fields {names}); pass env_params instead", "Config")
    x = pairs[0]
    updates = {}
    if lo is not None:
        updates[f"min_{x}"] = jnp.asarray(lo, jnp.int32)
    if hi is not None:
        updates[f"max_{x}"] = jnp.asarray(hi, jnp.int32)
    params = params.replace(**updates)
    if hasattr(task, "validate_params"):
        task.validate_params(params)
    return params


def load_policy(config: Any, task: SequenceTask | None = None, *, value_head: bool = False,
                init_params: Any = None, model_config: TransformerConfig | None = None,
                owner: str = "Config") -> tuple[Any, TransformerConfig, str]:
    """``(params or None, model_config, prompt_layout)`` of the initial policy.

    In order: explicit ``init_params`` (with ``model_config``, default ``config.model``); ``config.base_model``,
    a shipped base model's name, a model file or a ``jaxrl-self pretrain`` run folder
    (:func:`jaxrl_self.lm.base_models.load_model_or_run`); otherwise ``(None,
    config.model)``: the caller initialises fresh parameters per seed. With ``value_head=True`` the returned
    config has a value head and loaded parameters get a fresh one (zero output) on their shared trunk.
    ``prompt_layout`` is ``config.prompt_layout`` unless ``"auto"``: then the base model's
    (``metadata["prompt_layout"]``), else ``"packed"``.
    """
    params, cfg = None, config.model if model_config is None else model_config
    layout = "packed"
    if init_params is not None:
        params = init_params
    elif config.base_model:
        from jaxrl_self.lm.base_models import load_model_or_run

        params, cfg, meta = load_model_or_run(config.base_model)
        layout = dict(meta).get("prompt_layout", "packed")
    if config.prompt_layout != "auto":
        layout = config.prompt_layout
    if value_head and not cfg.value_head:
        cfg = cfg.replace(value_head=True)
        if params is not None:
            fresh = init_model_params(jax.random.key(0), cfg)
            params = {**fresh, **{k: v for k, v in params.items() if k != "value_head"}}
    if task is not None:
        _check_model(cfg, task, config.max_new_tokens, owner, "base_model" if config.base_model else "model")
    return params, cfg, layout


def learning_rate_at(config: Any, update: jax.Array) -> jax.Array:
    """The learning rate of update ``update`` (0-based): ``learning_rate * min(1, (update + 1) / warmup_updates)``
    (a linear warm-up, then constant; ``warmup_updates = 0``: constant). Fields may be traced."""
    warm = jnp.maximum(jnp.asarray(config.warmup_updates, jnp.float32), 1.0)
    frac = jnp.minimum(1.0, (jnp.asarray(update, jnp.float32) + 1.0) / warm)
    return jnp.asarray(config.learning_rate, jnp.float32) * frac


def make_optimizer(config: Any) -> optax.GradientTransformation:
    """Global-norm clip, then Adam (AdamW with ``weight_decay > 0``) with :func:`learning_rate_at` (constant
    within an update; all of it may be traced). The warm-up keeps Adam's first, sign-like steps small: on a
    pretrained model a full-size first step can undo much of the pretraining at once."""
    steps_per_update = config.update_epochs * config.num_minibatches
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.scale_by_adam(eps=config.adam_eps),
        optax.add_decayed_weights(config.weight_decay),
        optax.scale_by_learning_rate(lambda count: learning_rate_at(config, count // steps_per_update)),
    )


# ============================================================================================ 1. problems
def sample_problems(key: jax.Array, task: SequenceTask, task_params: Any, num: int) -> Problem:
    """``num`` independent problems (leaves ``[num, ...]``)."""
    return jax.vmap(lambda k: task.sample_problem(k, task_params))(jax.random.split(key, num))


# ============================================================================================ 2. rollout
def rollout(key: jax.Array, params: Any, model_config: TransformerConfig, problems: Problem, group_size: int,
            max_new_tokens: int, temperature: float | jax.Array = 1.0, greedy: bool | jax.Array = False,
            prompt_layout: str = "packed") -> Rollout:
    """Sample ``group_size`` responses for each of the ``B`` problems (one batched KV-cache generation of
    ``B * group_size`` rows). Row ``b * G + g`` is response ``g`` to problem ``b``; each row has its own key.
    ``prompt_layout`` (``"packed"``/``"padded"``, :func:`jaxrl_self.lm.evaluate.prompt_lengths`) must be the
    one the model was trained with."""
    prompts = jnp.repeat(problems.prompt, group_size, axis=0)
    plen = prompt_lengths(prompts, prompt_layout)
    sampling = lm.SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, greedy=greedy)
    _, out = lm.generate(params, prompts, plen, key, config=model_config, sampling=sampling)
    return Rollout(problem=problems, prompts=prompts, prompt_len=plen, responses=out.tokens, mask=out.mask,
                   logp=out.logp, values=out.values)


# ============================================================================================ 3. rewards
def compute_rewards(key: jax.Array, reward_fn: RewardFn | GroupRewardFn, ro: Rollout, group_size: int,
                    extras: Any = None) -> jax.Array:
    """Rewards ``[B, G]`` float32 of a rollout: a :class:`RewardFn` is vmapped over groups and members, a
    :class:`GroupRewardFn` over groups."""
    B = ro.problem.prompt.shape[0]
    responses = ro.responses.reshape(B, group_size, -1)
    masks = ro.mask.reshape(B, group_size, -1)
    if is_group_reward(reward_fn):
        fn = jax.vmap(reward_fn, in_axes=(0, 0, 0, 0, None))
        rewards = fn(ro.problem, responses, masks, jax.random.split(key, B), extras)
    else:
        keys = jax.random.split(key, B * group_size).reshape(B, group_size)
        fn = jax.vmap(jax.vmap(reward_fn, in_axes=(None, 0, 0, 0, None)), in_axes=(0, 0, 0, 0, None))
        rewards = fn(ro.problem, responses, masks, keys, extras)
    return jnp.asarray(rewards, jnp.float32).reshape(B, group_size)


def verify(task: SequenceTask, ro: Rollout, group_size: int) -> tuple[jax.Array, jax.Array]:
    """``(correct, format_valid)``, both ``[B * G]`` bool, from the task's verifier (for logging)."""
    problems = jax.tree.map(lambda x: jnp.repeat(x, group_size, axis=0), ro.problem)
    responses = jnp.where(ro.mask, ro.responses, task.vocab.PAD)
    correct = jax.vmap(task.is_correct)(problems, responses)
    valid = jax.vmap(task.extract_answer)(responses)[1]
    return correct, valid


# ============================================================================================ 4-5. batch
def make_batch(ro: Rollout, advantages: jax.Array, ref_logp: Optional[jax.Array] = None) -> Batch:
    """The learner's batch from a rollout, per-response advantages ``[B, G]`` (or ``[N]``) and the reference
    log-probs ``[N, R]`` (None: zeros, no KL term)."""
    return Batch(
        prompts=ro.prompts,
        prompt_len=ro.prompt_len,
        responses=ro.responses,
        mask=ro.mask,
        old_logp=ro.logp,
        ref_logp=jnp.zeros_like(ro.logp) if ref_logp is None else ref_logp,
        advantage=advantages.reshape(-1).astype(jnp.float32),
    )


def reference_logp(ref_params: Any, model_config: TransformerConfig, ro: Rollout) -> jax.Array:
    """``log π_ref`` ``[N, R]`` of the sampled tokens (0 where ``~mask``), one forward pass."""
    return lm.score_response(ref_params, ro.prompts, ro.prompt_len, ro.responses, ro.mask, config=model_config).logp


# ============================================================================================ 6. learn
def policy_token_loss(logp: jax.Array, old_logp: jax.Array, ref_logp: jax.Array, entropy: jax.Array,
                      advantages: jax.Array, mask: jax.Array, *, clip_eps: float | jax.Array,
                      kl_coef: float | jax.Array = 0.0, ent_coef: float | jax.Array = 0.0,
                      agg: str = "token_mean", use_kl: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO's loss on per-token arrays ``[N, R]`` (``advantages`` ``[N]`` per response or ``[N, R]`` per token).

    ``ℓ_t = −min(ρ_t A, clip(ρ_t, 1 − ε, 1 + ε) A) + β k3(log π_θ, log π_ref)_t − c_H H_t``, reduced over the
    tokens where ``mask`` with :func:`jaxrl_self.rl.group.aggregate_tokens` (``agg``). Inputs are replaced by
    constants at padded positions first, so whatever they hold there (even NaN/inf) changes neither the loss
    nor its gradient. With ``agg="token_mean"`` and ``kl_coef = ent_coef = 0`` this is exactly
    :func:`jaxrl_self.rl.ppo_policy_loss` with the same mask.

    Returns ``(loss, aux)``; ``aux``: policy_loss, kl (token mean of k3 to the reference), entropy, approx_kl
    (token mean of k3 between π_old and π_θ), clip_fraction.
    """
    m = jnp.asarray(mask, bool)
    zero = jnp.zeros((), jnp.float32)
    logp, old_logp, ref_logp, entropy = (jnp.where(m, x, zero) for x in (logp, old_logp, ref_logp, entropy))
    adv = advantages[:, None] if advantages.ndim == 1 else advantages
    adv = jnp.where(m, adv, zero)
    ratio = jnp.exp(logp - old_logp)
    surrogate = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    kl = rl.kl_k3(logp, ref_logp) if use_kl else jnp.zeros_like(logp)
    per_token = surrogate + kl_coef * kl - ent_coef * entropy
    loss = group.aggregate_tokens(per_token, m, agg)
    sg = jax.lax.stop_gradient
    aux = {
        "policy_loss": group.aggregate_tokens(surrogate, m, agg),
        "kl": sg(rl.masked_mean(kl, m)),
        "entropy": sg(rl.masked_mean(entropy, m)),
        "approx_kl": sg(rl.approx_kl(logp, old_logp, m)),
        "clip_fraction": sg(rl.clip_fraction(ratio, clip_eps, m)),
    }
    return loss, aux


def grpo_loss(config: Config, model_config: TransformerConfig, params: Any, mb: Batch):
    """The GRPO objective on one minibatch of whole responses (leaves ``[n, ...]``): score the responses under
    ``params`` in one forward pass, then :func:`policy_token_loss`. Returns ``(loss, aux)``."""
    out = lm.score_response(params, mb.prompts, mb.prompt_len, mb.responses, mb.mask, config=model_config,
                            with_entropy=True)
    return policy_token_loss(out.logp, mb.old_logp, mb.ref_logp, out.entropy, mb.advantage, mb.mask,
                             clip_eps=config.clip_eps, kl_coef=config.kl_coef, ent_coef=config.ent_coef,
                             agg=config.loss_agg, use_kl=config.use_reference)


def learn(key: jax.Array, config: Any, loss_fn, tx: optax.GradientTransformation, params: Any, opt_state: Any,
          batch: Any) -> tuple[Any, Any, dict]:
    """``update_epochs`` epochs of ``num_minibatches`` shuffled minibatches of whole responses.

    ``loss_fn(params, minibatch) -> (loss, aux)``; ``batch`` is any pytree whose leaves share the leading
    response axis ``N``. Returns ``(params, opt_state, stats)`` with ``stats`` leaves
    ``[update_epochs, num_minibatches]``: loss, grad_norm and the entries of ``aux``.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch_step(carry, mb):
        params, opt_state = carry
        (loss, aux), grads = grad_fn(params, mb)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}

    def epoch(carry, k):
        if config.num_minibatches == 1:  # one minibatch: the order of responses does not matter
            mbs = jax.tree.map(lambda x: x[None], batch)
        else:
            mbs = rl.shuffle_split(k, batch, config.num_minibatches)
        return jax.lax.scan(minibatch_step, carry, mbs)

    (params, opt_state), stats = jax.lax.scan(epoch, (params, opt_state),
                                              jax.random.split(key, config.update_epochs))
    return params, opt_state, stats


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def guard_nonfinite(state: Any, params: Any, opt_state: Any, loss: jax.Array) -> tuple[Any, Any, jax.Array]:
    """Keep ``state``'s params/opt_state from the first update whose loss or parameters are non-finite on.
    Returns ``(params, opt_state, nonfinite_update)``."""
    finite = _all_finite(loss) & _all_finite(params)
    healthy = state.nonfinite_update < 0
    keep = healthy & finite
    params = tree_select(keep, params, state.params)
    opt_state = tree_select(keep, opt_state, state.opt_state)
    return params, opt_state, jnp.where(healthy & ~finite, state.update_step, state.nonfinite_update)


def rollout_stats(task: SequenceTask, ro: Rollout, rewards: jax.Array, group_size: int,
                  max_new_tokens: int) -> dict[str, jax.Array]:
    """Rollout metrics: reward mean/std, verifier accuracy, parseable fraction, response length, truncation."""
    correct, valid = verify(task, ro, group_size)
    length = ro.response_len
    last = jnp.take_along_axis(ro.responses, jnp.maximum(length - 1, 0)[:, None], axis=1)[:, 0]
    truncated = (length >= max_new_tokens) & (last != task.vocab.EOS)
    return {
        "reward_mean": jnp.mean(rewards),
        "reward_std": jnp.std(rewards),
        "accuracy": jnp.mean(correct.astype(jnp.float32)),
        "format_valid": jnp.mean(valid.astype(jnp.float32)),
        "response_length": jnp.mean(length.astype(jnp.float32)),
        "truncated": jnp.mean(truncated.astype(jnp.float32)),
    }


# ============================================================================================ the run
def make_train(config: Config, env: SequenceTask, env_params: Any = None, *, reward_fn: Any = None,
               reward_extras: Any = None, init_params: Any = None,
               model_config: TransformerConfig | None = None) -> Train[RunState]:
    """Build the training run: ``train(key) -> (RunState, Metrics)`` (metrics ``[num_updates]`` per field).

    Args:
      config: the :class:`Config` (may hold traced numeric fields: call inside ``jax.vmap`` for a sweep).
      env: the :class:`~jaxrl_self.core.SequenceTask`.
      env_params: the task's parameters (default ``env.default_params``); the config's difficulty range is
        applied on top (:func:`task_params_for`).
      reward_fn: a :class:`RewardFn` or :class:`GroupRewardFn`; default :func:`verifier_reward` with
        ``config.format_penalty``.
      reward_extras: the initial ``RunState.reward_extras``.
      init_params, model_config: start from these parameters instead of ``config.base_model`` / a fresh
        initialisation (the same for every seed).
    """
    config.validate(env, env_params)
    task = env
    task_params = task_params_for(config, task, env_params)
    params0, model_cfg, layout = load_policy(config, task, init_params=init_params, model_config=model_config,
                                             owner="grpo.Config")
    reward_fn = verifier_reward(task, config.format_penalty) if reward_fn is None else reward_fn
    tx = make_optimizer(config)
    B, G, R = config.num_prompts, config.group_size, config.max_new_tokens

    def loss_fn(params, mb):
        return grpo_loss(config, model_cfg, params, mb)

    def init(key: jax.Array) -> RunState:
        k_params, k_run = jax.random.split(key)
        params = init_model_params(k_params, model_cfg) if params0 is None else params0
        zero = jnp.zeros((), jnp.int32)
        return RunState(
            params=params,
            opt_state=tx.init(params),
            ref_params=params if config.use_reference else None,
            rng=k_run,
            update_step=zero,
            env_steps=zero,
            nonfinite_update=jnp.full((), -1, jnp.int32),
            reward_extras=reward_extras,
        )

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_prob, k_gen, k_rew, k_learn = jax.random.split(state.rng, 5)
        # 1. problems, 2. G responses each
        problems = sample_problems(k_prob, task, task_params, B)
        ro = rollout(k_gen, state.params, model_cfg, problems, G, R, config.temperature, prompt_layout=layout)
        # 3. rewards, 4. group-relative advantages
        rewards = compute_rewards(k_rew, reward_fn, ro, G, state.reward_extras)
        advantages = group.group_advantages(rewards, config.advantage, eps=config.adv_eps, ddof=config.std_ddof)
        # 5. reference log-probs
        ref_logp = reference_logp(state.ref_params, model_cfg, ro) if config.use_reference else None
        # 6. learn
        batch = make_batch(ro, advantages, ref_logp)
        params, opt_state, stats = learn(k_learn, config, loss_fn, tx, state.params, state.opt_state, batch)
        params, opt_state, nonfinite = guard_nonfinite(state, params, opt_state, stats["loss"])

        env_steps = state.env_steps + jnp.sum(ro.response_len)
        rs = rollout_stats(task, ro, rewards, G, R)
        metrics = Metrics(
            env_steps=env_steps,
            episode_return=rs["reward_mean"],
            episode_return_valid=jnp.ones((), bool),
            **rs,
            degenerate_groups=jnp.mean(jnp.all(advantages == 0, axis=-1).astype(jnp.float32)),
            **{k: jnp.mean(v) for k, v in stats.items()},
            learning_rate=learning_rate_at(config, state.update_step),
        )
        new_state = state.replace(params=params, opt_state=opt_state, rng=rng, update_step=state.update_step + 1,
                                  env_steps=env_steps, nonfinite_update=nonfinite)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=config.num_updates, config=config)


# ============================================================================================ evaluation
@struct.dataclass
class EvalResult:
    """Per held-out problem (``[num_episodes]`` each): one response per problem, greedy or sampled."""

    episode_return: jax.Array  # float32, 1.0 where the verifier accepts the response (what `jaxrl-self eval` reads)
    correct: jax.Array  # bool
    format_valid: jax.Array  # bool, a parseable answer
    response_length: jax.Array  # int32
    difficulty: jax.Array  # int32, the problem's difficulty

    @property
    def accuracy(self) -> jax.Array:
        return jnp.mean(self.correct.astype(jnp.float32))


def make_eval(config: Config, env: SequenceTask, env_params: Any = None, *,
              model_config: TransformerConfig | None = None, greedy: bool = True, value_head: bool = False):
    """``evaluate(params, key, env_params=None, num_episodes=256, temperature=1.0) -> EvalResult``.

    ``num_episodes`` problems drawn with ``key`` from the task (difficulty range of ``config`` applied), one
    response each: greedy (default; greedy accuracy) or sampled at ``temperature`` (``greedy=False``: the
    mean of ``correct`` is an unbiased pass@1). Use a key no training run uses for a held-out set; the same key
    gives the same problems. ``model_config`` defaults to the one :func:`make_train` would use
    (``value_head=True``: with a value head, as token PPO's). Jit it with ``num_episodes`` static. (For pass@k,
    maj@k and per-difficulty tables see :func:`jaxrl_self.lm.evaluate.make_evaluate`.)
    """
    task = env
    base_params = task_params_for(config, task, env_params)
    _, cfg, layout = load_policy(config, task, value_head=value_head)
    model_config = cfg if model_config is None else model_config

    def evaluate(params, key, env_params=None, num_episodes: int = 256, temperature: float = 1.0) -> EvalResult:
        tp = base_params if env_params is None else task_params_for(config, task, env_params)
        k_prob, k_gen = jax.random.split(key)
        problems = sample_problems(k_prob, task, tp, num_episodes)
        ro = rollout(k_gen, params, model_config, problems, 1, config.max_new_tokens, temperature, greedy,
                     prompt_layout=layout)
        correct, valid = verify(task, ro, 1)
        return EvalResult(episode_return=correct.astype(jnp.float32), correct=correct, format_valid=valid,
                          response_length=ro.response_len, difficulty=jnp.asarray(problems.difficulty, jnp.int32))

    return evaluate
