"""The shared LM-RL learner: rollouts of groups, the batch, the clipped policy loss, minibatch epochs, the
optimiser and its schedule.

GRPO, token PPO, T-PPO, TTRL, RLT and SOAR compose these pieces in their own ``update`` (each reads top to
bottom in its own file)::

    ro = rollout(key, params, model_config, problems, G, R, temperature, prompt_layout=layout)
    rewards, reward_metrics = lm.compute_rewards(k, reward_fn, ro.problem, ro.responses, ro.mask, G, extras)
    take = subset_index(k, B, G, M)                    # train on M <= G of each group (all G: None)
    ro, rewards = select_groups(ro, take), take_groups(rewards, take)
    adv = rl.group.group_advantages(rewards, "grpo")
    batch = make_batch(ro, adv, reference_logp(ref_params, model_config, ro), row_valid=problem_valid)
    params, opt_state, stats = learn(k, config, loss_fn, tx, params, opt_state, batch)

Masks come from response lengths (the sampler's prefix mask), never from token values; every per-token input is
replaced by a constant at padded positions *before* any arithmetic, so neither the loss nor its gradient can
see padding. ``row_valid`` zeroes the token mask of whole rows (problems a set marked invalid).
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_self import rl
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import Problem
from jaxrl_self.core.mesh import shard_envs
from jaxrl_self.lm.evaluate import prompt_lengths
from jaxrl_self.lm.generate import clean_prompts, generate, prefill
from jaxrl_self.lm.sampling import SamplingConfig
from jaxrl_self.lm.scoring import score_response
from jaxrl_self.nets.transformer import TransformerConfig
from jaxrl_self.rl import group

__all__ = ["RunState", "init_run_state", "Rollout", "Batch", "rollout", "subset_index", "select_groups", "take_groups",
           "make_batch", "row_mask",
           "reference_logp", "policy_token_loss", "group_policy_loss", "learn", "learning_rate_at",
           "make_optimizer", "guard_nonfinite"]


@struct.dataclass
class RunState:
    """What a policy-gradient LM run (GRPO, token PPO, TTRL, the teachers' RL) needs to continue: one pytree;
    vmapped runs add a leading axis to every leaf."""

    params: Any  # policy parameters (with a value head for token PPO)
    opt_state: Any  # optax state
    ref_params: Any  # frozen reference policy (the initial parameters); None without use_reference
    rng: jax.Array  # typed PRNG key
    update_step: jax.Array  # int32, updates done
    env_steps: jax.Array  # int32, response tokens generated so far
    nonfinite_update: jax.Array  # int32, -1, or the first update whose loss was NaN/inf (it and later ones skipped)
    reward_extras: Any = None  # passed to the reward function as `extras` (e.g. a frozen student's params)
    problems: Any = None  # the problem source's state (a problem set and its position; None: the task sampler)


def init_run_state(key: jax.Array, policy: Any, tx: optax.GradientTransformation, source: Any, *,
                   use_reference: bool, params: Any = None, ref_params: Any = None, problems: Any = None,
                   reward_extras: Any = None) -> RunState:
    """A fresh :class:`RunState`: ``params`` (an outer program's) or the policy's own start (fresh ones drawn
    with the first half of ``split(key)``), the reference ``ref_params`` (default: the start), the problem
    source's state (``problems``: a :class:`~jaxrl_self.lm.ProblemSet` to train on instead of the one given to
    ``make_train``) and the reward's extras. Every argument may be batched under ``jax.vmap``."""
    k_params, k_run = jax.random.split(key)
    params = policy.initial_params(k_params, params)
    zero = jnp.zeros((), jnp.int32)
    return RunState(
        params=params,
        opt_state=tx.init(params),
        ref_params=(params if ref_params is None else ref_params) if use_reference else None,
        rng=k_run,
        update_step=zero,
        env_steps=zero,
        nonfinite_update=jnp.full((), -1, jnp.int32),
        reward_extras=reward_extras,
        problems=source.init(key, problems),
    )


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
    """What the group policy-gradient learner needs, ``[N, ...]`` per field (whole responses)."""

    prompts: jax.Array  # [N, P] int32
    prompt_len: jax.Array  # [N] int32
    responses: jax.Array  # [N, R] int32
    mask: jax.Array  # [N, R] bool, the trained tokens
    old_logp: jax.Array  # [N, R] float32, log π_old of the sampled tokens
    ref_logp: jax.Array  # [N, R] float32, log π_ref (zeros without a reference)
    advantage: jax.Array  # [N] float32, one advantage per response


# ============================================================================================ rollouts
def rollout(key: jax.Array, params: Any, model_config: TransformerConfig, problems: Problem, group_size: int,
            max_new_tokens: int, temperature: float | jax.Array = 1.0, greedy: bool | jax.Array = False,
            prompt_layout: str = "packed") -> Rollout:
    """Sample ``group_size`` responses for each of the ``B`` problems (one batched KV-cache generation of
    ``B * group_size`` rows). Row ``b * G + g`` is response ``g`` to problem ``b``; each row has its own key.
    ``prompt_layout`` (``"packed"``/``"padded"``, :func:`jaxrl_self.lm.evaluate.prompt_lengths`) must be the
    one the model was trained with."""
    # on a device mesh each device samples its share of the B * G rows (core.mesh.shard_envs)
    prompts = shard_envs(jnp.repeat(problems.prompt, group_size, axis=0), what="response")
    plen = prompt_lengths(prompts, prompt_layout)
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, greedy=greedy)
    # each prompt's keys/values are computed once and copied to its G rows (G prefills' numbers up to rounding)
    S = problems.prompt.shape[1] + max_new_tokens
    if S > model_config.max_len:
        raise ConfigError("max_new_tokens", max_new_tokens, f"<= max_len={model_config.max_len} - prompt length "
                          f"{problems.prompt.shape[1]}", "rollout")
    unique_len = prompt_lengths(problems.prompt, prompt_layout)
    cache = prefill(params, clean_prompts(problems.prompt, unique_len), S, config=model_config)
    cache = shard_envs(jax.tree.map(lambda x: jnp.repeat(x, group_size, axis=1), cache), what="response", axis=1)
    _, out = generate(params, prompts, plen, key, config=model_config, sampling=sampling, prefilled=cache)
    tokens, mask, logp, values = shard_envs((out.tokens, out.mask, out.logp, out.values), what="response")
    return Rollout(problem=problems, prompts=prompts, prompt_len=plen, responses=tokens, mask=mask, logp=logp,
                   values=values)


def subset_index(key: jax.Array | None, num_groups: int, group_size: int, num_train: int) -> jax.Array:
    """``[B, M]`` int32: which ``M = num_train`` members of each group of ``G`` are trained on; ``key=None``:
    the first ``M`` (TTRL's reference code), else ``M`` drawn without replacement per group."""
    if key is None:
        return jnp.broadcast_to(jnp.arange(num_train, dtype=jnp.int32), (num_groups, num_train))
    perm = jax.vmap(lambda k: jax.random.permutation(k, group_size))(jax.random.split(key, num_groups))
    return perm[:, :num_train].astype(jnp.int32)


def take_groups(x: jax.Array, index: jax.Array) -> jax.Array:
    """``x [B, G, ...]`` -> ``[B, M, ...]`` at ``index [B, M]``."""
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def select_groups(ro: Rollout, index: jax.Array) -> Rollout:
    """The rollout restricted to ``index [B, M]`` of each group: ``N = B * M`` rows (``problem`` unchanged)."""
    B, M = index.shape
    G = ro.prompts.shape[0] // B

    def pick(x):
        if x is None:
            return None
        return take_groups(x.reshape((B, G) + x.shape[1:]), index).reshape((B * M,) + x.shape[1:])

    return ro.replace(prompts=pick(ro.prompts), prompt_len=pick(ro.prompt_len), responses=pick(ro.responses),
                      mask=pick(ro.mask), logp=pick(ro.logp), values=pick(ro.values))


# ============================================================================================ the batch
def make_batch(ro: Rollout, advantages: jax.Array, ref_logp: Optional[jax.Array] = None,
               row_valid: Optional[jax.Array] = None) -> Batch:
    """The learner's batch from a rollout, per-response advantages ``[B, G]`` (or ``[N]``), the reference
    log-probs ``[N, R]`` (None: zeros, no KL term) and ``row_valid`` (``[N]``, or ``[B]`` per problem: rows
    that are not valid get an empty token mask, so they weigh nothing)."""
    mask = row_mask(ro.mask, row_valid)
    return Batch(
        prompts=ro.prompts,
        prompt_len=ro.prompt_len,
        responses=ro.responses,
        mask=mask,
        old_logp=ro.logp,
        ref_logp=jnp.zeros_like(ro.logp) if ref_logp is None else ref_logp,
        advantage=advantages.reshape(-1).astype(jnp.float32),
    )


def row_mask(mask: jax.Array, row_valid: Optional[jax.Array]) -> jax.Array:
    """``mask [N, R]`` with the rows of invalid problems emptied; ``row_valid`` is ``[N]`` or ``[B]`` (one flag per
    problem, repeated over its ``N // B`` responses); None keeps ``mask``."""
    if row_valid is None:
        return mask
    return mask & jnp.repeat(row_valid, mask.shape[0] // row_valid.shape[0])[:, None]


def reference_logp(ref_params: Any, model_config: TransformerConfig, ro: Rollout) -> jax.Array:
    """``log π_ref`` ``[N, R]`` of the sampled tokens (0 where ``~mask``), one forward pass."""
    return score_response(ref_params, ro.prompts, ro.prompt_len, ro.responses, ro.mask, config=model_config).logp


# ============================================================================================ the loss
def policy_token_loss(logp: jax.Array, old_logp: jax.Array, ref_logp: jax.Array, entropy: jax.Array,
                      advantages: jax.Array, mask: jax.Array, *, clip_eps: float | jax.Array,
                      kl_coef: float | jax.Array = 0.0, ent_coef: float | jax.Array = 0.0,
                      agg: str = "token_mean", use_kl: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The clipped policy loss on per-token arrays ``[N, R]`` (``advantages`` ``[N]`` per response or ``[N, R]``).

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


def group_policy_loss(config: Any, model_config: TransformerConfig, params: Any, mb: Batch):
    """The group policy-gradient objective (GRPO, RLOO, and every method that trains like them) on one
    minibatch of whole responses: score them under ``params`` in one forward pass, then
    :func:`policy_token_loss` with ``config.clip_eps``, ``kl_coef``, ``ent_coef``, ``loss_agg`` and
    ``use_reference``. Returns ``(loss, aux)``."""
    out = score_response(params, mb.prompts, mb.prompt_len, mb.responses, mb.mask, config=model_config,
                         with_entropy=True)
    return policy_token_loss(out.logp, mb.old_logp, mb.ref_logp, out.entropy, mb.advantage, mb.mask,
                             clip_eps=config.clip_eps, kl_coef=config.kl_coef, ent_coef=config.ent_coef,
                             agg=config.loss_agg, use_kl=config.use_reference)


# ============================================================================================ learning
def learn(key: jax.Array, config: Any, loss_fn, tx: optax.GradientTransformation, params: Any, opt_state: Any,
          batch: Any) -> tuple[Any, Any, dict]:
    """``config.update_epochs`` epochs of ``config.num_minibatches`` shuffled minibatches of whole responses.

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


def guard_nonfinite(state: Any, params: Any, opt_state: Any, loss: jax.Array) -> tuple[Any, Any, jax.Array]:
    """:func:`jaxrl_self.rl.keep_if_finite` for the LM learners: an update whose loss or new parameters are
    non-finite (and every later one) leaves ``state.params``/``state.opt_state`` as they were. Returns
    ``(params, opt_state, nonfinite_update)``."""
    finite = rl.all_finite(loss) & rl.all_finite(params)
    (params, opt_state), nonfinite, _ = rl.keep_if_finite(state.nonfinite_update, state.update_step, finite,
                                                          (params, opt_state), (state.params, state.opt_state))
    return params, opt_state, nonfinite
