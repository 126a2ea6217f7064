"""Resumable batched generation with a KV cache: a pool of B independent *slots*.

Design note
===========

**Slots, not a batch.** Generation state is a :class:`DecodeState` pytree for a pool of ``B`` slots. Each slot
holds one sequence (prompt + response so far) and advances independently: it can be reset and refilled with
a new prompt while the others keep going (continuous batching, as T-PPO needs), and decoding runs in windows
of any number of steps that can be resumed later, with the same or new parameters::

    state = init_decode_state(cfg, B, cache_len=S)                                  # all slots empty (done)
    state = reset_slots(params, state, fill, prompts, prompt_len, keys, config=cfg)  # prefill where `fill`
    state, out = decode(params, state, l, config=cfg, sampling=samp)                  # a window of l tokens
    ... learn; params = new_params; state = refresh_cache(params, state, config=cfg)  # optional
    state = reset_slots(params, state, state.done, new_prompts, new_len, new_keys, config=cfg)
    state, out = decode(params, state, l, config=cfg, sampling=samp)                  # resume

:func:`generate` is the start-to-finish special case (reset every slot, then one window of
``max_new_tokens`` steps).

**Padding: right-padding, slot-relative positions.** Prompts come right-padded (as :class:`~jaxrl_self.core.Problem`
stores them) with their lengths. A slot's sequence lives at the start of its row: the prompt at positions
``[0, prompt_len)``, the response right after it, ``PAD`` beyond. Positions are slot-relative, so they never
depend on the other slots or on when the slot was filled, and a sequence gets exactly the positions that
:func:`jaxrl_self.lm.score` gives it (``arange``); that is what makes cached log-probs equal to scored ones.

**Cache layout.** ``state.cache`` (:class:`~jaxrl_self.nets.transformer.KVCache`) stores keys/values
``[num_layers, B, num_heads, S, head_dim]`` indexed by position; ``S = cache_len`` bounds prompt + response.
``state.tokens [B, S]`` is the slot's token buffer and ``state.length [B]`` its number of tokens. Invariant:
the cache holds the keys/values of positions ``[0, length - 1)``; the last token ``tokens[length - 1]`` is
*pending*: each decode step feeds it at position ``length - 1`` (writing its key/value, attending to keys
``<= length - 1`` only), samples token ``length`` from the resulting logits and appends it. So every step is
the same one-token computation, including the first one after a prompt, and cache entries at positions
``>= length - 1`` (stale, or the prefill's padding) are never read before being overwritten.

**Resetting a slot** (:func:`reset_slots`, a pure function): prefill runs the new prompts through the model in
one pass into a fresh cache, then ``where(mask, new, old)`` replaces the cache rows, token rows, lengths,
prompt lengths, ``done`` flags and RNG keys of the selected slots; the others are untouched bit for bit.
The prefill costs one forward pass over ``[B, P]`` whatever the mask (shapes are static).

**Finishing.** A slot is done after emitting ``eos_id``, after ``max_new_tokens`` response tokens, or when its
buffer is full (``length == S``). Done slots emit ``pad_id`` with ``mask = False`` and no longer advance. Slots
never filled are done from the start.

**Randomness.** Each slot carries its own key (given at reset); response token at buffer index ``i`` is drawn with
``fold_in(slot_key, i)``. A slot's sample therefore depends only on its prompt, key and parameters: not on the
window boundaries, the other slots, or when it was (re)filled.

**Log-probs.** ``DecodeOutput.logp`` is the *policy* log-prob ``log softmax(logits)[token]`` of the sampled token
under the model's untempered, untruncated distribution (temperature 1), which is what RL ratios and KL terms
need and what :func:`jaxrl_self.lm.score` returns for the same token. ``DecodeOutput.behaviour_logp`` is the
log-prob under the distribution actually sampled from (``logits / temperature``, top-k restricted; 0 for
greedy). They are equal when ``temperature == 1`` and ``top_k == 0``. ``values`` (value-head models) is the
value of the state the token was chosen in (``V(tokens[:i])`` for the token at index ``i``), as in
:mod:`jaxrl_self.lm.scoring`.

**New parameters mid-flight.** Resuming with new parameters reuses cached keys/values computed by the old
ones for the context (as an inference server would). :func:`refresh_cache` recomputes the cache of every slot
from its tokens with the new parameters in one forward pass over ``[B, S]``, after which log-probs again
match :func:`~jaxrl_self.lm.score` under the new parameters exactly.

**What the caller keeps.** Which problem a slot holds (e.g. a ``Problem`` pytree with a leading ``[B]`` axis,
updated with the same ``where(mask, ...)`` as the reset), and a finished slot's response
(``state.tokens[b, prompt_len:length]``, or the windows' outputs) before it is reset. Masks always come from
lengths, never from token values, so a model that emits ``PAD`` mid-response cannot corrupt them. Preconditions
not checkable under ``jit``: ``1 <= prompt_len <= P`` (a prompt has at least BOS).

**Cost per step** (CPU-friendly at these sizes): one token per slot through the model, attention of one query
over the ``S`` cached positions (masked), an ``O(S)`` select to append the token. :func:`decode` stops early
(``lax.while_loop``) once every slot is done unless ``early_exit=False`` (plain ``lax.scan``); both give
identical outputs.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB
from jaxrl_self.lm.sampling import SamplingConfig, sample_token
from jaxrl_self.nets.transformer import KVCache, Params, TransformerConfig, apply, stack_cache, unstack_cache

__all__ = [
    "DecodeState",
    "DecodeOutput",
    "init_decode_state",
    "reset_slots",
    "refresh_cache",
    "decode",
    "generate",
    "prefill",
    "clean_prompts",
]


@struct.dataclass
class DecodeState:
    """A pool of ``B`` generation slots with buffer length ``S`` (see the module docstring).

    Attributes:
        cache: :class:`KVCache` ``[L, B, H, S, D]``; valid at positions ``[0, length - 1)`` of each row.
        tokens: ``[B, S]`` int32, the slot's prompt ++ response so far, ``PAD`` after ``length``.
        length: ``[B]`` int32, tokens in the slot (prompt + generated), ``>= 1``.
        prompt_len: ``[B]`` int32, prompt tokens in the slot; the response is ``tokens[prompt_len:length]``.
        done: ``[B]`` bool, the slot finished (or was never filled) and no longer advances.
        rng: ``[B]`` typed PRNG keys, one per slot.
    """

    cache: KVCache
    tokens: jax.Array
    length: jax.Array
    prompt_len: jax.Array
    done: jax.Array
    rng: jax.Array

    @property
    def response_len(self) -> jax.Array:
        """``[B]`` int32, generated tokens so far."""
        return self.length - self.prompt_len

    @property
    def response_mask(self) -> jax.Array:
        """``[B, S]`` bool, True on the response tokens of the buffer."""
        idx = jnp.arange(self.tokens.shape[1])[None, :]
        return (idx >= self.prompt_len[:, None]) & (idx < self.length[:, None])


@struct.dataclass
class DecodeOutput:
    """What a window of ``l`` decode steps produced, ``[B, l]`` per field; column ``j`` is step ``j``.

    Attributes:
        tokens: int32 sampled tokens; ``pad_id`` where ``~mask``.
        mask: bool, True where the slot was active and generated a token. Per slot it is a prefix of the window.
        logp: float32 policy log-prob (temperature 1, untruncated) of the token; 0 where ``~mask``.
        behaviour_logp: float32 log-prob under the sampling distribution (tempered, top-k); 0 if greedy/``~mask``.
        values: float32 value of the state the token was chosen in (None without a value head); 0 where ``~mask``.
        finished: bool, this token ended its response (EOS, ``max_new_tokens`` or a full buffer).
        position: int32 index of the token in its slot's buffer ``state.tokens`` (meaningful where ``mask``).
    """

    tokens: jax.Array
    mask: jax.Array
    logp: jax.Array
    behaviour_logp: jax.Array
    values: Optional[jax.Array]
    finished: jax.Array
    position: jax.Array


# ---------------------------------------------------------------------------------------------------- state
def init_decode_state(config: TransformerConfig, batch_size: int, cache_len: Optional[int] = None,
                      pad_id: int = VOCAB.PAD) -> DecodeState:
    """An empty pool: ``batch_size`` slots, all done, buffers of ``cache_len`` (default ``config.max_len``)."""
    cache = KVCache.zeros(config, batch_size, cache_len)
    S = cache.cache_len
    return DecodeState(
        cache=cache,
        tokens=jnp.full((batch_size, S), pad_id, jnp.int32),
        length=jnp.ones((batch_size,), jnp.int32),
        prompt_len=jnp.ones((batch_size,), jnp.int32),
        done=jnp.ones((batch_size,), bool),
        rng=jax.random.split(jax.random.key(0), batch_size),
    )


def prefill(params: Params, tokens: jax.Array, cache_len: int, *, config: TransformerConfig) -> KVCache:
    """A fresh cache ``[L, B, H, cache_len, D]`` holding the keys/values of ``tokens [B, T]`` at positions
    ``[0, T)`` (one causal forward pass; entries ``>= T`` are zero)."""
    B, T = tokens.shape
    cache = KVCache.zeros(config, B, cache_len)
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    mask = (jnp.arange(cache_len)[None, :] <= jnp.arange(T)[:, None])[None]
    return apply(params, tokens, positions, mask, cache, config=config).cache


def clean_prompts(prompts: jax.Array, prompt_len: jax.Array, pad_id: int = VOCAB.PAD) -> jax.Array:
    """``prompts [B, P]`` with everything at or after ``prompt_len [B]`` replaced by ``pad_id`` (int32): what
    :func:`reset_slots` prefills and stores."""
    P = prompts.shape[1]
    return jnp.where(jnp.arange(P)[None, :] < prompt_len[:, None], prompts, pad_id).astype(jnp.int32)


def _select_rows(mask: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    """``where(mask[b], new[b], old[b])`` row by row; ``mask [B]``, arrays ``[B, ...]``."""
    return jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


def reset_slots(params: Params, state: DecodeState, mask: jax.Array, prompts: jax.Array, prompt_len: jax.Array,
                keys: jax.Array, *, config: TransformerConfig, pad_id: int = VOCAB.PAD,
                prefilled: Optional[KVCache] = None) -> DecodeState:
    """Refill the slots where ``mask`` with new prompts; the other slots are returned unchanged.

    Args:
        state: the pool (``B`` slots, buffer ``S``).
        mask: ``[B]`` bool, which slots to reset.
        prompts: ``[B, P]`` int, right-padded prompts (rows where ``~mask`` are ignored), ``P <= S``.
        prompt_len: ``[B]`` int in ``[1, P]`` (at least one token, e.g. BOS). Content past it is ignored.
        keys: ``[B]`` typed PRNG keys, the new slots' sampling keys.
        config: the model config.
        prefilled: the new prompts' cache, ``prefill(params, clean_prompts(prompts, prompt_len), S)``, when the
            caller has it (:func:`jaxrl_self.lm.rollout` prefills each of its ``G`` identical prompts once);
            default: computed here.

    Returns:
        The new state: reset slots hold their prompt, ``length = prompt_len``, ``done = prompt_len >= S``.
    """
    B, S = state.tokens.shape
    if prompts.ndim != 2 or prompts.shape[0] != B:
        raise ConfigError("prompts.shape", prompts.shape, f"[B={B}, P] matching the pool", "reset_slots")
    P = prompts.shape[1]
    if P > S:
        raise ConfigError("prompts.shape[1]", P, f"<= the pool's cache_len={S}", "reset_slots")
    if prefilled is not None and any((a.shape, a.dtype) != (b.shape, b.dtype) for a, b in
                                     ((prefilled.keys, state.cache.keys), (prefilled.values, state.cache.values))):
        raise ConfigError("prefilled", f"keys {prefilled.keys.shape} {prefilled.keys.dtype}",
                          f"a KVCache like the pool's: keys {state.cache.keys.shape} {state.cache.keys.dtype}",
                          "reset_slots")
    if mask.shape != (B,) or prompt_len.shape != (B,) or keys.shape != (B,):
        raise ConfigError("mask/prompt_len/keys shapes", (mask.shape, prompt_len.shape, keys.shape),
                          f"each ({B},)", "reset_slots")
    prompt_len = prompt_len.astype(jnp.int32)
    clean = clean_prompts(prompts, prompt_len, pad_id)
    cache = prefill(params, clean, S, config=config) if prefilled is None else prefilled
    tokens = jnp.pad(clean, ((0, 0), (0, S - P)), constant_values=pad_id)
    row = mask.astype(bool)
    cache = jax.tree.map(lambda n, o: jnp.where(row[None, :, None, None, None], n, o), cache, state.cache)
    return DecodeState(
        cache=cache,
        tokens=_select_rows(row, tokens, state.tokens),
        length=jnp.where(row, prompt_len, state.length),
        prompt_len=jnp.where(row, prompt_len, state.prompt_len),
        done=jnp.where(row, prompt_len >= S, state.done),
        rng=jnp.where(row, keys, state.rng),
    )


def refresh_cache(params: Params, state: DecodeState, *, config: TransformerConfig) -> DecodeState:
    """Recompute every slot's keys/values from its tokens with ``params`` (one forward pass over ``[B, S]``)."""
    return state.replace(cache=prefill(params, state.tokens, state.tokens.shape[1], config=config))


# ---------------------------------------------------------------------------------------------------- decoding
def _decode_step(params: Params, state: DecodeState, config: TransformerConfig,
                 sampling: SamplingConfig) -> tuple[DecodeState, DecodeOutput]:
    """Feed each slot's pending token, sample the next one, append it (active slots only)."""
    B, S = state.tokens.shape
    active = ~state.done
    pos = jnp.maximum(state.length - 1, 0)  # position of the pending token
    pending = jnp.take_along_axis(state.tokens, pos[:, None], axis=1)
    attn_mask = (jnp.arange(S)[None, :] <= pos[:, None])[:, None, :]  # [B, 1, S]
    logits, values, cache = apply(params, pending, pos[:, None], attn_mask, state.cache, config=config)
    keys = jax.vmap(jax.random.fold_in)(state.rng, state.length)
    token, logp, behaviour = sample_token(keys, logits[:, 0], sampling)
    token = jnp.where(active, token, sampling.pad_id)
    append = active[:, None] & (jnp.arange(S)[None, :] == state.length[:, None])
    length = state.length + active.astype(jnp.int32)
    finished = active & ((token == sampling.eos_id) | (length - state.prompt_len >= sampling.max_new_tokens)
                         | (length >= S))
    new_state = state.replace(cache=cache, tokens=jnp.where(append, token[:, None], state.tokens), length=length,
                              done=state.done | finished)
    zero = jnp.zeros((), jnp.float32)
    out = DecodeOutput(
        tokens=token,
        mask=active,
        logp=jnp.where(active, logp, zero),
        behaviour_logp=jnp.where(active, behaviour, zero),
        values=None if values is None else jnp.where(active, values[:, 0], zero),
        finished=finished,
        position=state.length,
    )
    return new_state, out


def decode(params: Params, state: DecodeState, num_steps: int, *, config: TransformerConfig,
           sampling: SamplingConfig, early_exit: bool = True) -> tuple[DecodeState, DecodeOutput]:
    """Advance every active slot by up to ``num_steps`` tokens (a window); resumable from the returned state.

    Args:
        params: model parameters (may differ from the ones that filled the cache; see :func:`refresh_cache`).
        state: the pool.
        num_steps: window length ``l`` (static).
        config: the model config (static).
        sampling: a :class:`SamplingConfig`; may be passed as a traced argument (temperature, top-k, greedy and
            EOS are leaves, so changing them does not recompile).
        early_exit: stop as soon as every slot is done (``lax.while_loop``); False = always ``num_steps``
            iterations (``lax.scan``). Outputs are identical.

    Returns:
        ``(new_state, DecodeOutput [B, num_steps])``.
    """
    num_steps = int(num_steps)
    if num_steps < 1:
        raise ConfigError("num_steps", num_steps, "a positive int", "decode")
    sampling.check(config.vocab_size)
    if state.tokens.shape[1] > config.max_len:
        raise ConfigError("state cache_len", state.tokens.shape[1], f"<= max_len={config.max_len}", "decode")
    step = functools.partial(_decode_step, params, config=config, sampling=sampling)
    start_len = state.length
    state = state.replace(cache=unstack_cache(state.cache))  # per-layer buffers in the loop (no slicing per step)
    if early_exit:
        template = jax.eval_shape(step, state)[1]
        outs = jax.tree.map(lambda t: jnp.zeros((num_steps,) + t.shape, t.dtype), template)
        outs = outs.replace(tokens=jnp.full_like(outs.tokens, sampling.pad_id))

        def cond(carry):
            i, s, _ = carry
            return (i < num_steps) & jnp.any(~s.done)

        def body(carry):
            i, s, o = carry
            s, row = step(s)
            o = jax.tree.map(lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, x, i, 0), o, row)
            return i + 1, s, o

        _, state, outs = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), state, outs))
    else:
        state, outs = jax.lax.scan(lambda s, _: step(s), state, None, length=num_steps)
    state = state.replace(cache=stack_cache(state.cache))
    outs = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), outs)
    position = start_len[:, None] + jnp.arange(num_steps, dtype=jnp.int32)[None, :]
    return state, outs.replace(position=position)


def generate(params: Params, prompts: jax.Array, prompt_len: jax.Array, key: jax.Array, *,
             config: TransformerConfig, sampling: SamplingConfig, cache_len: Optional[int] = None,
             early_exit: bool = True, prefilled: Optional[KVCache] = None) -> tuple[DecodeState, DecodeOutput]:
    """Sample a response for every prompt, start to finish.

    Args:
        prompts: ``[B, P]`` int right-padded prompts; ``prompt_len [B]`` in ``[1, P]``.
        key: one PRNG key; slot ``b`` samples with ``split(key, B)[b]``.
        config: the model config (static).
        sampling: a :class:`SamplingConfig`; ``sampling.max_new_tokens`` (static) is the response budget.
        cache_len: buffer length ``S`` (default ``P + max_new_tokens``), ``<= config.max_len``.
        prefilled: the prompts' cache when the caller computed it (see :func:`reset_slots`).

    Returns:
        ``(final_state, out)``: ``out.tokens [B, max_new_tokens]`` is the response, left-aligned (column ``n``
        is response token ``n``) and PAD after EOS, with ``out.mask``, ``out.logp`` etc. as in
        :class:`DecodeOutput`; ``final_state.tokens`` holds prompt ++ response per row, ready for
        :func:`jaxrl_self.lm.score`.
    """
    sampling.check(config.vocab_size)
    B, P = prompts.shape
    S = P + sampling.max_new_tokens if cache_len is None else int(cache_len)
    if S > config.max_len:
        raise ConfigError("cache_len", S, f"<= max_len={config.max_len} (prompt {P} + max_new_tokens "
                          f"{sampling.max_new_tokens} by default)", "generate")
    state = init_decode_state(config, B, S, pad_id=sampling.pad_id)
    state = reset_slots(params, state, jnp.ones((B,), bool), prompts, prompt_len, jax.random.split(key, B),
                        config=config, pad_id=sampling.pad_id, prefilled=prefilled)
    return decode(params, state, sampling.max_new_tokens, config=config, sampling=sampling, early_exit=early_exit)
