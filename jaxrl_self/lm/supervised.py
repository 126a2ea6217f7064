"""Supervised training of the Transformer LM on a fixed dataset of token sequences with an arbitrary loss mask.

::

    data = lm.SequenceDataset.of(tokens, loss_mask)               # [N, T] int32, [N, T] bool (and valid [N])
    train = lm.make_supervised(lm.SupervisedConfig(num_steps=200, batch_size=32, model=cfg), data,
                               init_params=params)                # start from these (or fresh: None)
    state, metrics = jax.jit(train)(key)
    states, _ = jax.jit(jax.vmap(lambda k, p, d: train.run(train.init(k, p, data=d))))(keys, params, datasets)

What RLT's distillation (fresh students on question + explanation + solution), its teacher's format warm-up and
SOAR's teacher warm-up need: the data is part of the run state (``init(key, params=..., data=...)``), so one
compiled program trains different copies from different parameters on different datasets of the same shape.

One update, top to bottom (:func:`make_train`):

1. **minibatch**: ``batch_size`` rows from passes over the valid rows of the dataset, in a new random order each
   pass (:func:`jaxrl_self.lm.cycle_indices`; ``Metrics.data_pass`` counts them);
2. **loss**: next-token cross-entropy on the tokens where ``loss_mask`` is True, a token mean over the minibatch
   (:func:`masked_sequence_loss`; ``loss_mask[b, t]`` marks token ``t`` as a target, predicted from the tokens
   before it, so ``loss_mask[:, 0]`` never counts);
3. **AdamW** with global-norm clipping and warm-up + cosine decay (:func:`make_optimizer`), and the shared
   non-finite guard (:func:`jaxrl_self.rl.keep_if_finite`).

:mod:`jaxrl_self.lm.pretrain` is the same trainer on problems sampled fresh from a task every step; both share
the config fields (:class:`SupervisedConfig`), the loss and the step (:func:`supervised_step`).
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl_self import rl
from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.lm.config import check_numeric
from jaxrl_self.lm.problems import cycle_indices
from jaxrl_self.lm.scoring import join_prompt_response
from jaxrl_self.nets.transformer import Params, TransformerConfig, apply, causal_mask
from jaxrl_self.nets.transformer import init_params as init_model_params

__all__ = ["SupervisedConfig", "SequenceDataset", "RunState", "Metrics", "learning_rate_at", "make_optimizer",
           "token_nll", "masked_sequence_loss", "supervised_step", "fine_tune", "make_train"]

NAME = "supervised"


# ============================================================================================ configuration
@struct.dataclass
class SupervisedConfig:
    """Supervised training hyper-parameters (also the first fields of :class:`~jaxrl_self.lm.PretrainConfig`).

    Static fields fix shapes and the program; the numeric fields after them are traced, so ``jax.vmap`` over a
    stacked batch of configs (``make_train`` called inside the vmap) is a sweep in one program.
    """

    # -- sizes and model (static)
    num_steps: int = _static(2000)
    """optimiser steps"""
    batch_size: int = _static(64)
    """sequences per step"""
    model: TransformerConfig = _static(TransformerConfig(num_layers=2, d_model=64, num_heads=4, d_ff=256,
                                                         max_len=64, positional="learned"))
    """the Transformer (a fresh one, or the architecture of the given parameters); max_len must hold the
    sequences. Learned absolute positions (the default here) let small models find operand digits / chain
    steps; rope learns reversed addition far slower"""
    # -- optimiser (traced)
    learning_rate: float = 1e-3
    """peak AdamW learning rate (after warmup)"""
    warmup_steps: int = 100
    """linear warmup from learning_rate / warmup_steps to learning_rate"""
    min_lr_ratio: float = 0.1
    """the cosine decay ends at min_lr_ratio * learning_rate on the last step"""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (matrices and embeddings only)"""
    b1: float = 0.9
    """Adam β1"""
    b2: float = 0.98
    """Adam β2"""
    adam_eps: float = 1e-8
    """Adam ε"""
    max_grad_norm: float = 1.0
    """global gradient-norm clip"""

    @property
    def num_updates(self) -> int:
        return self.num_steps

    def validate_supervised(self, owner: str) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad shared field (traced values are
        skipped)."""
        for name in ("num_steps", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ConfigError(name, v, "a positive int", owner)
        if not isinstance(self.model, TransformerConfig):
            raise ConfigError("model", self.model, "a TransformerConfig", owner)
        check_numeric(self, owner, {
            "learning_rate": (lambda x: np.isfinite(x) & (x > 0), "a finite float > 0"),
            "warmup_steps": (lambda x: (x >= 0) & (x == np.round(x)), "an int >= 0"),
            "min_lr_ratio": (lambda x: (x >= 0) & (x <= 1), "a float in [0, 1]"),
            "weight_decay": (lambda x: np.isfinite(x) & (x >= 0), "a finite float >= 0"),
            "b1": (lambda x: (x >= 0) & (x < 1), "a float in [0, 1)"),
            "b2": (lambda x: (x >= 0) & (x < 1), "a float in [0, 1)"),
            "adam_eps": (lambda x: np.isfinite(x) & (x > 0), "a finite float > 0"),
            "max_grad_norm": (lambda x: x > 0, "a float > 0 (inf disables clipping)"),
        })

    def validate(self, data: Optional["SequenceDataset"] = None) -> None:
        self.validate_supervised("SupervisedConfig")
        if data is not None and data.tokens.shape[-1] > self.model.max_len:
            raise ConfigError("model.max_len", self.model.max_len,
                              f">= the dataset's sequence length {data.tokens.shape[-1]}", "SupervisedConfig")


# ============================================================================================ data
@struct.dataclass
class SequenceDataset:
    """``N`` token sequences ``tokens [N, T]`` (PAD after their end), which of their tokens are targets
    (``loss_mask [N, T]``; ``loss_mask[b, t]``: token ``t`` is predicted from ``tokens[b, :t]``) and which rows
    are usable (``valid [N]``)."""

    tokens: jax.Array
    loss_mask: jax.Array
    valid: jax.Array

    @classmethod
    def of(cls, tokens: jax.Array, loss_mask: jax.Array, valid: Optional[jax.Array] = None) -> "SequenceDataset":
        tokens = jnp.asarray(tokens, jnp.int32)
        loss_mask = jnp.asarray(loss_mask, bool)
        if tokens.ndim != 2 or loss_mask.shape != tokens.shape:
            raise ConfigError("loss_mask.shape", loss_mask.shape, f"tokens.shape = {tokens.shape} ([N, T])",
                              "SequenceDataset")
        valid = jnp.ones(tokens.shape[:1], bool) if valid is None else jnp.asarray(valid, bool)
        if valid.shape != tokens.shape[:1]:
            raise ConfigError("valid.shape", valid.shape, f"({tokens.shape[0]},)", "SequenceDataset")
        return cls(tokens=tokens, loss_mask=loss_mask, valid=valid)

    @classmethod
    def from_responses(cls, prompts: jax.Array, prompt_len: jax.Array, responses: jax.Array,
                       response_mask: jax.Array, valid: Optional[jax.Array] = None) -> "SequenceDataset":
        """``prompt ++ response`` rows (:func:`~jaxrl_self.lm.join_prompt_response`) with the loss on the
        response tokens: supervised fine-tuning on completions."""
        rlen = jnp.sum(response_mask, axis=-1).astype(jnp.int32)
        tokens = join_prompt_response(prompts, prompt_len, responses, rlen)
        t = jnp.arange(tokens.shape[1])[None, :]
        return cls.of(tokens, (t >= prompt_len[:, None]) & (t < (prompt_len + rlen)[:, None]), valid)


# ============================================================================================ optimiser and loss
def learning_rate_at(config: SupervisedConfig, step: Any) -> jax.Array:
    """Learning rate of update ``step`` (0-based): linear warmup to ``learning_rate`` over ``warmup_steps``
    (``lr * (step + 1) / warmup_steps``), then cosine decay to ``min_lr_ratio * learning_rate`` at the last
    step ``num_steps - 1``."""
    peak = jnp.asarray(config.learning_rate, jnp.float32)
    s = jnp.asarray(step, jnp.float32)
    warm = jnp.asarray(config.warmup_steps, jnp.float32)
    warm_lr = peak * (s + 1.0) / jnp.maximum(warm, 1.0)
    span = jnp.maximum(config.num_steps - 1 - warm, 1.0)
    progress = jnp.clip((s - warm) / span, 0.0, 1.0)
    ratio = jnp.asarray(config.min_lr_ratio, jnp.float32)
    cos_lr = peak * (ratio + (1.0 - ratio) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))
    return jnp.where(s < warm, warm_lr, cos_lr)


def _decay_mask(params: Params) -> Any:
    return jax.tree.map(lambda x: x.ndim >= 2, params)


def make_optimizer(config: SupervisedConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW with :func:`learning_rate_at` (decay on matrices/embeddings only)."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adamw(learning_rate=lambda count: learning_rate_at(config, count), b1=config.b1, b2=config.b2,
                    eps=config.adam_eps, weight_decay=config.weight_decay, mask=_decay_mask),
    )


def token_nll(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked next-token cross-entropy.

    Args:
        logits: ``[B, T, V]``, ``logits[b, t]`` predicts ``targets[b, t]``.
        targets: ``[B, T]`` int.
        mask: ``[B, T]`` bool; only True positions count (logits and targets elsewhere are never read into
            the result).

    Returns:
        ``(loss, stats)``: ``loss`` is the mean NLL over masked tokens (0 if none); ``stats`` has
        ``token_accuracy`` (argmax == target over masked tokens) and ``sequence_accuracy`` (rows with at least
        one masked token whose masked argmaxes are all right; mean over such rows).
    """
    mask = mask.astype(bool)
    safe_logits = jnp.where(mask[..., None], logits.astype(jnp.float32), 0.0)
    logp = jax.nn.log_softmax(safe_logits, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    m = mask.astype(jnp.float32)
    n_tok = jnp.sum(m)
    loss = jnp.sum(jnp.where(mask, nll, 0.0)) / jnp.maximum(n_tok, 1.0)
    hit = jnp.argmax(safe_logits, axis=-1) == targets
    token_acc = jnp.sum(jnp.where(mask, hit, False)) / jnp.maximum(n_tok, 1.0)
    rows = jnp.any(mask, axis=1)
    row_ok = jnp.all(hit | ~mask, axis=1) & rows
    seq_acc = jnp.sum(row_ok) / jnp.maximum(jnp.sum(rows), 1)
    return loss, {"token_accuracy": token_acc, "sequence_accuracy": seq_acc.astype(jnp.float32)}


def masked_sequence_loss(params: Params, tokens: jax.Array, loss_mask: jax.Array, *,
                         config: TransformerConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced cross-entropy of ``tokens [B, T]`` on the tokens where ``loss_mask [B, T]``: one causal
    forward pass with positions ``arange(T)``; ``logits[:, t]`` predicts ``tokens[:, t + 1]``, which counts iff
    ``loss_mask[:, t + 1]``. Content at unmasked positions after the last target never changes the result."""
    B, T = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    logits = apply(params, tokens, positions, causal_mask(T), config=config).logits
    return token_nll(logits[:, :-1], tokens[:, 1:], loss_mask[:, 1:])


def supervised_step(state: Any, tokens: jax.Array, loss_mask: jax.Array, *, model: TransformerConfig,
                    tx: optax.GradientTransformation) -> tuple[Any, Any, jax.Array, jax.Array, dict, jax.Array]:
    """One AdamW step on :func:`masked_sequence_loss` from ``state.params``/``state.opt_state``, guarded
    (:func:`jaxrl_self.rl.keep_if_finite`). Returns ``(params, opt_state, nonfinite_update, loss, stats,
    grad_norm)``."""
    (loss, stats), grads = jax.value_and_grad(
        lambda p: masked_sequence_loss(p, tokens, loss_mask, config=model), has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    (params, opt_state), nonfinite, _ = rl.keep_if_finite(
        state.nonfinite_update, state.update_step, jnp.isfinite(loss) & rl.all_finite(params),
        (params, opt_state), (state.params, state.opt_state))
    return params, opt_state, nonfinite, loss, stats, optax.tree.norm(grads)


def fine_tune(key: jax.Array, params: Params, steps: int, config: SupervisedConfig, make_batch) -> Params:
    """``steps`` guarded AdamW steps (:func:`make_optimizer` of ``config``, :func:`supervised_step`) from
    ``params`` on fresh batches ``make_batch(key) -> (tokens [B, T], loss_mask [B, T])``, one ``lax.scan``;
    ``steps = 0`` returns ``params``. The warm-ups of the teachers (RLT's reader and format warm-up, SOAR's
    problem-writing warm-up) inside their ``init``."""
    if steps == 0:
        return params
    tx = make_optimizer(config)

    def step(s, k):
        tokens, mask = make_batch(k)
        p, o, bad, *_ = supervised_step(s, tokens, mask, model=config.model, tx=tx)
        return s.replace(params=p, opt_state=o, update_step=s.update_step + 1, nonfinite_update=bad), None

    s0 = _StepState(params, tx.init(params), jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32))
    s, _ = jax.lax.scan(step, s0, jax.random.split(key, steps))
    return s.params


@struct.dataclass
class _StepState:
    params: Params
    opt_state: Any
    update_step: jax.Array
    nonfinite_update: jax.Array


# ============================================================================================ the run
@struct.dataclass
class RunState:
    """Everything a supervised run needs to continue, the dataset and the position in it included."""

    params: Params
    opt_state: Any
    update_step: jax.Array  # int32
    nonfinite_update: jax.Array  # int32, -1 or the first update with a NaN/inf loss (it and all later skipped)
    data: SequenceDataset
    data_key: jax.Array  # the key of the passes' orders
    drawn: jax.Array  # int32, rows drawn so far


@struct.dataclass
class Metrics:
    """One row per update (scalars per copy), on that update's minibatch before the parameter update."""

    loss: jax.Array  # cross-entropy (nats) per target token
    token_accuracy: jax.Array
    sequence_accuracy: jax.Array  # rows whose every target token is the argmax
    learning_rate: jax.Array
    grad_norm: jax.Array
    data_pass: jax.Array  # int32, the pass over the dataset this minibatch started in (0-based)


def make_train(config: SupervisedConfig, data: SequenceDataset, *, init_params: Any = None,
               model_config: TransformerConfig | None = None) -> Train[RunState]:
    """Build the supervised run ``train(key) -> (RunState, Metrics)`` with ``config.num_steps`` updates.

    ``data`` is the default dataset (``init(key, params=None, data=None)`` takes another of the same shape);
    ``init_params`` (architecture ``model_config``, default ``config.model``) the default start, else a fresh
    initialisation per key.
    """
    model = config.model if model_config is None else model_config
    config.replace(model=model).validate(data)
    tx = make_optimizer(config)

    def init(key: jax.Array, params: Any = None, *, data: Optional[SequenceDataset] = data) -> RunState:
        k_params, k_data = jax.random.split(key)
        if params is None:
            params = init_params if init_params is not None else init_model_params(k_params, model)
        return RunState(params=params, opt_state=tx.init(params), update_step=jnp.zeros((), jnp.int32),
                        nonfinite_update=jnp.full((), -1, jnp.int32), data=data, data_key=k_data,
                        drawn=jnp.zeros((), jnp.int32))

    def update(state: RunState) -> tuple[RunState, Metrics]:
        # 1. a minibatch from passes over the valid rows
        idx, ok, passes = cycle_indices(state.data_key, state.drawn, config.batch_size, state.data.valid)
        tokens, loss_mask = state.data.tokens[idx], state.data.loss_mask[idx] & ok[:, None]
        # 2-3. loss on the target tokens, AdamW, guard
        params, opt_state, nonfinite, loss, stats, grad_norm = supervised_step(state, tokens, loss_mask, model=model,
                                                                               tx=tx)
        metrics = Metrics(loss=loss, token_accuracy=stats["token_accuracy"],
                          sequence_accuracy=stats["sequence_accuracy"],
                          learning_rate=learning_rate_at(config, state.update_step), grad_norm=grad_norm,
                          data_pass=passes[0])
        new_state = state.replace(params=params, opt_state=opt_state, update_step=state.update_step + 1,
                                  nonfinite_update=nonfinite, drawn=state.drawn + config.batch_size)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=config.num_steps, config=config)
