"""Supervised pretraining of the Transformer LM on a :class:`~jaxrl_self.core.SequenceTask`: the base models
that self-improvement methods (GRPO, TTRL, RLT, SOAR, T-PPO) start from.

::

    from jaxrl_self import envs, lm
    task = envs.make("addition", max_digits=5)
    config = lm.PretrainConfig(num_steps=2000, difficulty_weights=(1, 1, 1, 0.15))  # mostly 1-3 digits
    train = lm.make_train(config, task)
    state, metrics = jax.jit(train)(jax.random.key(0))                 # one program
    # or chunked, with checkpoints and a progress bar: jaxrl_self.run.Runner(train, ...).run()
    # or: jaxrl-self pretrain --task addition --difficulty-weights 1 1 1 0.15

One update, top to bottom (:func:`make_train`):

1. **sample** ``batch_size`` fresh problems (no fixed dataset): a difficulty ``d`` per problem from
   ``difficulty_weights`` (``P(d) ∝ w[d - 1]``) and a problem of exactly that difficulty
   (:func:`~jaxrl_self.lm.evaluate.difficulty_params`); with no weights, from the task params;
2. **teacher forcing**: each sequence is ``prompt ++ solution`` in the model's prompt layout
   (:func:`make_sequences`; ``"packed"``: the solution follows the prompt's last real token; ``"padded"``: it
   follows the whole PAD-padded prompt), scored in one causal forward pass;
3. **loss**: next-token cross-entropy on the *solution* tokens only (``<think> .. </a> <eos>``), a token mean
   over the batch; the prompt and everything after the solution's ``EOS`` are masked out
   (:func:`token_nll`);
4. **AdamW** with global gradient-norm clipping and a linear-warmup + cosine-decay learning rate
   (:func:`learning_rate_at`); weight decay on matrices and embeddings only (not on norm scales).

**Metrics** (one row per update): ``loss``, ``token_accuracy`` (argmax = target on solution tokens),
``sequence_accuracy``, ``learning_rate``, ``grad_norm``. ``sequence_accuracy`` is the fraction of the batch
whose teacher-forced argmax matches *every* solution token; that is exactly the fraction of problems whose
greedy decode reproduces the reference solution, so it is a free (no generation), unbiased, per-update
estimate of greedy exact-match accuracy on the training distribution, and a lower bound on greedy accuracy
(a response can differ after ``</a>`` and still be correct). Held-out greedy/pass@k/maj@k numbers per
difficulty come from :mod:`jaxrl_self.lm.evaluate`.

A non-finite loss stops learning: ``RunState.nonfinite_update`` records the first bad update; it and every
later update leave parameters and optimiser state untouched (the runner then raises).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.environment import tree_select
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB, Problem, SequenceTask
from jaxrl_self.lm.evaluate import (PROMPT_LAYOUTS, check_prompt_layout, difficulty_params, max_difficulty,
                                    prompt_lengths)
from jaxrl_self.lm.scoring import join_prompt_response
from jaxrl_self.nets.transformer import Params, TransformerConfig, apply, causal_mask, init_params

__all__ = [
    "NAME",
    "PretrainConfig",
    "Config",
    "RunState",
    "Metrics",
    "learning_rate_at",
    "make_optimizer",
    "make_problem_sampler",
    "make_sequences",
    "token_nll",
    "sequence_loss",
    "make_train",
]

NAME = "pretrain"


# ============================================================================================ configuration
@struct.dataclass
class PretrainConfig:
    """Supervised pretraining hyper-parameters.

    Static fields fix shapes and the program; the numeric fields after them are traced, so ``jax.vmap`` over a
    stacked batch of configs (``make_train`` called inside the vmap) is a sweep in one program.
    """

    # -- sizes and model (static)
    num_steps: int = _static(2000)
    """optimiser steps; every step draws a fresh batch of problems"""
    batch_size: int = _static(64)
    """problems per step"""
    model: TransformerConfig = _static(TransformerConfig(num_layers=2, d_model=64, num_heads=4, d_ff=256,
                                                         max_len=64, positional="learned"))
    """the Transformer; max_len must be >= the task's prompt_len + solution_len. Learned absolute positions
    (the default here) let small models find operand digits / chain steps; rope learns reversed addition far
    slower"""
    prompt_layout: str = _static("packed")
    """'packed' (the solution follows the prompt's last real token) or 'padded' (it follows the whole
    PAD-padded prompt); evaluation and RL must use the same layout"""
    # -- data (traced)
    difficulty_weights: tuple[float, ...] = ()
    """relative weight of difficulty 1, 2, ... (digits, chain steps); empty = sample with the task's params"""
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

    def validate(self, task: SequenceTask | None = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (traced values are skipped);
        with ``task``, also check the model's ``max_len`` and the length of ``difficulty_weights``."""
        owner = "PretrainConfig"

        def fail(field, value, allowed):
            raise ConfigError(field, value, allowed, owner)

        for name in ("num_steps", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                fail(name, v, "a positive int")
        if not isinstance(self.model, TransformerConfig):
            fail("model", self.model, "a TransformerConfig")
        if self.prompt_layout not in PROMPT_LAYOUTS:
            fail("prompt_layout", self.prompt_layout, f"one of {PROMPT_LAYOUTS}")

        def concrete(x):
            return None if isinstance(x, jax.core.Tracer) else np.asarray(x, np.float64)

        weights = self.difficulty_weights
        if not isinstance(weights, (tuple, list)):
            fail("difficulty_weights", weights, "a tuple of non-negative floats (empty = the task's params)")
        w = [concrete(x) for x in weights]
        if weights and all(x is not None for x in w):
            arr = np.stack(w)
            if not (np.all(np.isfinite(arr)) and np.all(arr >= 0) and np.all(arr.sum(0) > 0)):
                fail("difficulty_weights", tuple(np.asarray(arr).tolist()),
                     "finite non-negative weights with a positive sum")
        numeric = {
            "learning_rate": (lambda x: np.isfinite(x) & (x > 0), "a finite float > 0"),
            "warmup_steps": (lambda x: (x >= 0) & (x == np.round(x)), "an int >= 0"),
            "min_lr_ratio": (lambda x: (x >= 0) & (x <= 1), "a float in [0, 1]"),
            "weight_decay": (lambda x: np.isfinite(x) & (x >= 0), "a finite float >= 0"),
            "b1": (lambda x: (x >= 0) & (x < 1), "a float in [0, 1)"),
            "b2": (lambda x: (x >= 0) & (x < 1), "a float in [0, 1)"),
            "adam_eps": (lambda x: np.isfinite(x) & (x > 0), "a finite float > 0"),
            "max_grad_norm": (lambda x: x > 0, "a float > 0 (inf disables clipping)"),
        }
        for name, (ok, allowed) in numeric.items():
            v = concrete(getattr(self, name))
            if v is not None and not np.all(ok(v)):
                fail(name, getattr(self, name), allowed)
        if task is not None:
            need = task.prompt_len + task.solution_len
            if self.model.max_len < need:
                fail("model.max_len", self.model.max_len,
                     f">= prompt_len + solution_len = {task.prompt_len} + {task.solution_len} = {need} for {task!r}")
            top = max_difficulty(task)
            if len(weights) > top:
                fail("difficulty_weights", tuple(weights),
                     f"at most {top} weights (difficulties 1..{top} of {task!r})")


Config = PretrainConfig  # the name the runner and the algorithm interface look for


# ============================================================================================ state and metrics
@struct.dataclass
class RunState:
    """Everything a pretraining run needs to continue."""

    params: Params  # Transformer parameters
    opt_state: Any  # optax state (AdamW moments, step count)
    rng: jax.Array  # typed PRNG key
    update_step: jax.Array  # int32, updates done
    nonfinite_update: jax.Array  # int32, -1, or the first update whose loss was NaN/inf (it and all later skipped)


@struct.dataclass
class Metrics:
    """One row per update (scalars per seed), on that update's fresh batch (before the parameter update)."""

    loss: jax.Array  # cross-entropy (nats) per solution token
    token_accuracy: jax.Array  # argmax == target on solution tokens
    sequence_accuracy: jax.Array  # whole solution reproduced by greedy decoding (see module docstring)
    learning_rate: jax.Array
    grad_norm: jax.Array  # global norm before clipping
    difficulty_mean: jax.Array  # mean difficulty of the batch (checks the mixture)


# ============================================================================================ optimiser
def learning_rate_at(config: PretrainConfig, step: Any) -> jax.Array:
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


def make_optimizer(config: PretrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW with :func:`learning_rate_at` (decay on matrices/embeddings only)."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adamw(learning_rate=lambda count: learning_rate_at(config, count), b1=config.b1, b2=config.b2,
                    eps=config.adam_eps, weight_decay=config.weight_decay, mask=_decay_mask),
    )


# ============================================================================================ data
def make_problem_sampler(config: PretrainConfig, task: SequenceTask, task_params: Any = None):
    """``sample(key) -> Problem [batch_size]``: fresh problems from the difficulty mixture (see module doc)."""
    weights = config.difficulty_weights
    params = task.default_params if task_params is None else task_params

    def one(key: jax.Array) -> Problem:
        if not weights:
            return task.sample_problem(key, params)
        k_d, k_p = jax.random.split(key)
        logits = jnp.log(jnp.stack([jnp.asarray(w, jnp.float32) for w in weights]))
        d = 1 + jax.random.categorical(k_d, logits).astype(jnp.int32)
        return task.sample_problem(k_p, difficulty_params(task, d))

    def sample(key: jax.Array) -> Problem:
        return jax.vmap(one)(jax.random.split(key, config.batch_size))

    return sample


def make_sequences(problems: Problem, layout: str, pad_id: int = VOCAB.PAD) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Teacher-forcing sequences ``prompt ++ solution`` for a batch of problems.

    Returns ``(tokens [B, P + S] int32, prompt_len [B], length [B])``: row ``b`` holds the prompt (per
    ``layout``, see :func:`~jaxrl_self.lm.evaluate.prompt_lengths`) at ``[0, prompt_len)``, the solution at
    ``[prompt_len, length)`` and PAD after, exactly where generation would put a response.
    """
    check_prompt_layout(layout, "make_sequences")
    plen = prompt_lengths(problems.prompt, layout, pad_id)
    slen = prompt_lengths(problems.solution, "packed", pad_id)  # solutions never contain PAD before their end
    tokens = join_prompt_response(problems.prompt, plen, problems.solution, slen, pad_id)
    return tokens, plen, plen + slen


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


def sequence_loss(params: Params, tokens: jax.Array, prompt_len: jax.Array, length: jax.Array, *,
                  config: TransformerConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced loss on the response part of ``tokens [B, T]`` (positions ``[prompt_len, length)``).

    One causal forward pass with positions ``arange(T)`` (as :func:`~jaxrl_self.lm.score` and generation use);
    ``logits[:, t]`` predicts ``tokens[:, t + 1]``, which counts iff ``prompt_len <= t + 1 < length``. Content
    at or after ``length`` never changes the result (causality + mask).
    """
    B, T = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    logits = apply(params, tokens, positions, causal_mask(T), config=config).logits
    target_pos = jnp.arange(1, T)[None, :]
    mask = (target_pos >= prompt_len[:, None]) & (target_pos < length[:, None])
    return token_nll(logits[:, :-1], tokens[:, 1:], mask)


# ============================================================================================ the run
def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train(config: PretrainConfig, task: SequenceTask, task_params: Any = None) -> Train[RunState]:
    """Build the pretraining run: ``train(key) -> (RunState, Metrics)`` with ``config.num_steps`` updates.

    ``task_params`` (task-specific, e.g. ``AdditionParams``) is used when ``config.difficulty_weights`` is
    empty (default: ``task.default_params``). ``config`` may hold traced numeric fields (sweeps).
    """
    config.validate(task)
    if task_params is not None and hasattr(task, "validate_params"):
        task.validate_params(task_params)
    model = config.model
    tx = make_optimizer(config)
    sample = make_problem_sampler(config, task, task_params)

    def init(key: jax.Array) -> RunState:
        k_params, k_run = jax.random.split(key)
        params = init_params(k_params, model)
        return RunState(params=params, opt_state=tx.init(params), rng=k_run, update_step=jnp.zeros((), jnp.int32),
                        nonfinite_update=jnp.full((), -1, jnp.int32))

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_batch = jax.random.split(state.rng)
        # 1. a fresh batch; 2. teacher-forcing sequences
        problems = sample(k_batch)
        tokens, plen, length = make_sequences(problems, config.prompt_layout)
        # 3. loss on solution tokens
        (loss, stats), grads = jax.value_and_grad(
            lambda p: sequence_loss(p, tokens, plen, length, config=model), has_aux=True)(state.params)
        # 4. AdamW
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # non-finite guard: keep the last good parameters from the first bad update on
        finite = jnp.isfinite(loss) & _all_finite(params)
        healthy = state.nonfinite_update < 0
        keep = healthy & finite
        params = tree_select(keep, params, state.params)
        opt_state = tree_select(keep, opt_state, state.opt_state)
        metrics = Metrics(loss=loss, token_accuracy=stats["token_accuracy"],
                          sequence_accuracy=stats["sequence_accuracy"],
                          learning_rate=learning_rate_at(config, state.update_step),
                          grad_norm=optax.tree.norm(grads),
                          difficulty_mean=jnp.mean(problems.difficulty.astype(jnp.float32)))
        new_state = RunState(params=params, opt_state=opt_state, rng=rng, update_step=state.update_step + 1,
                             nonfinite_update=jnp.where(healthy & ~finite, state.update_step, state.nonfinite_update))
        return new_state, metrics

    return Train(init=init, update=update, num_updates=config.num_steps, config=config)

