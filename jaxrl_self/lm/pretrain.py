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
from flax import struct

from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB, Problem, SequenceTask
from jaxrl_self.lm.evaluate import (PROMPT_LAYOUTS, check_prompt_layout, difficulty_params, max_difficulty,
                                    prompt_lengths)
from jaxrl_self.lm.scoring import join_prompt_response
from jaxrl_self.lm.supervised import (SupervisedConfig, learning_rate_at, make_optimizer, masked_sequence_loss,
                                      supervised_step, token_nll)
from jaxrl_self.nets.transformer import Params, TransformerConfig, init_params

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
    "make_packed_sequences",
    "token_nll",
    "sequence_loss",
    "response_mask",
    "make_train",
]

NAME = "pretrain"


# ============================================================================================ configuration
@struct.dataclass
class PretrainConfig(SupervisedConfig):
    """Supervised pretraining hyper-parameters: the sizes, model and optimiser of
    :class:`~jaxrl_self.lm.SupervisedConfig` (every step draws a fresh batch of ``batch_size`` problems) and the
    prompt layout and difficulty mixture below.

    Static fields fix shapes and the program; the numeric fields are traced, so ``jax.vmap`` over a stacked batch
    of configs (``make_train`` called inside the vmap) is a sweep in one program.
    """

    prompt_layout: str = _static("packed")
    """'packed' (the solution follows the prompt's last real token) or 'padded' (it follows the whole
    PAD-padded prompt); evaluation and RL must use the same layout"""
    problems_per_sequence: int = _static(1)
    """m > 1: every training sequence packs m solved problems back to back (<bos> q1 s1 q2 s2 ...; the loss on
    every solution), so the model also answers questions that start later in its context and trains its
    position table up to m problems long (see make_packed_sequences); generation still starts a context with one
    question"""
    # -- data (traced)
    difficulty_weights: tuple[float, ...] = ()
    """relative weight of difficulty 1, 2, ... (digits, chain steps); empty = sample with the task's params"""

    def sequence_len(self, task: SequenceTask) -> int:
        """The longest training sequence on ``task``: ``1 + m (prompt_len + solution_len - 1)``."""
        return 1 + self.problems_per_sequence * (task.prompt_len + task.solution_len - 1)

    def validate(self, task: SequenceTask | None = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (traced values are skipped);
        with ``task``, also check the model's ``max_len`` and the length of ``difficulty_weights``."""
        owner = "PretrainConfig"

        def fail(field, value, allowed):
            raise ConfigError(field, value, allowed, owner)

        self.validate_supervised(owner)
        m = self.problems_per_sequence
        if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m < 1:
            fail("problems_per_sequence", m, "a positive int")
        if m > 1 and self.prompt_layout != "packed":
            fail("problems_per_sequence", m, "1 with prompt_layout='padded' (packing needs the packed layout)")
        if self.prompt_layout not in PROMPT_LAYOUTS:
            fail("prompt_layout", self.prompt_layout, f"one of {PROMPT_LAYOUTS}")
        weights = self.difficulty_weights
        if not isinstance(weights, (tuple, list)):
            fail("difficulty_weights", weights, "a tuple of non-negative floats (empty = the task's params)")
        w = [None if isinstance(x, jax.core.Tracer) else np.asarray(x, np.float64) for x in weights]
        if weights and all(x is not None for x in w):
            arr = np.stack(w)
            if not (np.all(np.isfinite(arr)) and np.all(arr >= 0) and np.all(arr.sum(0) > 0)):
                fail("difficulty_weights", tuple(np.asarray(arr).tolist()),
                     "finite non-negative weights with a positive sum")
        if task is not None:
            need = self.sequence_len(task)
            if self.model.max_len < need:
                what = "prompt_len + solution_len" if m == 1 else f"{m} packed problems"
                fail("model.max_len", self.model.max_len, f">= {what} = {need} for {task!r}")
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


# ============================================================================================ data
def make_problem_sampler(config: PretrainConfig, task: SequenceTask, task_params: Any = None):
    """``sample(key) -> Problem [batch_size * problems_per_sequence]``: fresh problems from the difficulty mixture
    (see module doc)."""
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
        return jax.vmap(one)(jax.random.split(key, config.batch_size * config.problems_per_sequence))

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


def make_packed_sequences(problems: Problem, num_per_sequence: int, pad_id: int = VOCAB.PAD
                          ) -> tuple[jax.Array, jax.Array]:
    """``m = num_per_sequence`` solved problems per row, back to back, in the packed layout:
    ``<bos> <q> .. </q> solution_1 <q> .. </q> solution_2 ...`` (each later problem without its ``<bos>``).

    ``problems`` has ``B * m`` rows (row ``b * m + j`` is problem ``j`` of sequence ``b``). Returns ``(tokens
    [B, T] int32, loss_mask [B, T] bool)`` with ``T = 1 + m (P + S - 1)``; ``loss_mask`` is True on the solution
    tokens of every problem (what :func:`~jaxrl_self.lm.supervised.masked_sequence_loss` trains on).
    """
    m = int(num_per_sequence)
    tokens, plen, length = make_sequences(problems, "packed", pad_id)
    n, width = tokens.shape
    B = n // m
    T = 1 + m * (width - 1)
    tokens, plen, length = (x.reshape((B, m) + x.shape[1:]) for x in (tokens, plen, length))
    out = jnp.full((B, T), pad_id, jnp.int32)
    mask = jnp.zeros((B, T), bool)
    rows = jnp.arange(B)[:, None]
    col = jnp.arange(width)[None, :]
    offset = jnp.zeros((B,), jnp.int32)
    for j in range(m):
        skip = 0 if j == 0 else 1  # a later problem starts at its <q>: its <bos> is dropped
        src = jnp.clip(col + skip, 0, width - 1)
        piece = jnp.take_along_axis(tokens[:, j], src, axis=1)
        n_piece = length[:, j] - skip
        keep = col < n_piece[:, None]
        dest = jnp.where(keep, offset[:, None] + col, T)  # index T is out of bounds: dropped
        out = out.at[rows, dest].set(piece, mode="drop")
        mask = mask.at[rows, dest].set(keep & (col >= (plen[:, j] - skip)[:, None]), mode="drop")
        offset = offset + n_piece
    return out, mask


def sequence_loss(params: Params, tokens: jax.Array, prompt_len: jax.Array, length: jax.Array, *,
                  config: TransformerConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Teacher-forced loss on the response part of ``tokens [B, T]`` (positions ``[prompt_len, length)``):
    :func:`~jaxrl_self.lm.supervised.masked_sequence_loss` with that mask. Content at or after ``length`` never
    changes the result (causality + mask)."""
    return masked_sequence_loss(params, tokens, response_mask(tokens, prompt_len, length), config=config)


def response_mask(tokens: jax.Array, prompt_len: jax.Array, length: jax.Array) -> jax.Array:
    """``[B, T]`` bool: positions ``prompt_len <= t < length`` of each row."""
    t = jnp.arange(tokens.shape[1])[None, :]
    return (t >= prompt_len[:, None]) & (t < length[:, None])


# ============================================================================================ the run
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
        if config.problems_per_sequence == 1:
            tokens, plen, length = make_sequences(problems, config.prompt_layout)
            loss_mask = response_mask(tokens, plen, length)
        else:
            tokens, loss_mask = make_packed_sequences(problems, config.problems_per_sequence)
        # 3. loss on solution tokens, 4. AdamW (a non-finite loss keeps the last good parameters from then on)
        params, opt_state, nonfinite, loss, stats, grad_norm = supervised_step(state, tokens, loss_mask, model=model,
                                                                               tx=tx)
        metrics = Metrics(loss=loss, token_accuracy=stats["token_accuracy"],
                          sequence_accuracy=stats["sequence_accuracy"],
                          learning_rate=learning_rate_at(config, state.update_step),
                          grad_norm=grad_norm,
                          difficulty_mean=jnp.mean(problems.difficulty.astype(jnp.float32)))
        new_state = RunState(params=params, opt_state=opt_state, rng=rng, update_step=state.update_step + 1,
                             nonfinite_update=nonfinite)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=config.num_steps, config=config)

