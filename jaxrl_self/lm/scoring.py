"""Scoring whole sequences in one forward pass: per-token log-probs, entropies and values.

Alignment convention (shared with :mod:`jaxrl_self.lm.generate`): every per-token quantity is stored at the
index of the token it is *about*. For a sequence ``x``:

* ``logp[b, t] = log pi(x[b, t] | x[b, :t])``: computed from the logits at position ``t - 1``;
* ``entropy[b, t]``: entropy of that same distribution ``pi(. | x[b, :t])``;
* ``values[b, t] = V(x[b, :t])``: the value head at position ``t - 1``, i.e. the value of the state in which
  token ``t`` was chosen (what token-level PPO/GAE needs).

Index 0 has no predecessor and is always 0 / masked out.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB
from jaxrl_self.lm.sampling import entropy_from_logits, token_logprobs
from jaxrl_self.nets.transformer import Params, TransformerConfig, apply, causal_mask

__all__ = ["ScoreOutput", "score", "score_response", "join_prompt_response", "concat_segments"]


@struct.dataclass
class ScoreOutput:
    """Per-token results, aligned with the scored tokens (see the module docstring). Zero where ``~mask``.

    Attributes:
        logp: ``[B, T]`` float32 policy log-probs (temperature 1).
        entropy: ``[B, T]`` float32, or None when not requested.
        values: ``[B, T]`` float32, or None when the model has no value head.
        mask: ``[B, T]`` bool, True on the scored (response) tokens.
    """

    logp: jax.Array
    entropy: Optional[jax.Array]
    values: Optional[jax.Array]
    mask: jax.Array


def _shift_right(x: jax.Array) -> jax.Array:
    """``y[:, t] = x[:, t - 1]``, ``y[:, 0] = 0``."""
    return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def score(params: Params, tokens: jax.Array, prompt_len: jax.Array, length: Optional[jax.Array] = None, *,
          config: TransformerConfig, with_entropy: bool = False, temperature: Any = None) -> ScoreOutput:
    """Score right-padded sequences ``prompt ++ response ++ PAD...`` in one causal forward pass.

    Args:
        tokens: ``[B, T]`` int. Row ``b`` holds its prompt at ``[0, prompt_len[b])``, its response at
            ``[prompt_len[b], length[b])``, anything after (padding content never matters: causality).
        prompt_len: ``[B]`` int, in ``[1, T]``.
        length: ``[B]`` int total length; default ``T`` (no padding).
        config: the model config. ``T <= config.max_len``.
        with_entropy: also return per-token entropies.
        temperature: score under ``softmax(logits / temperature)`` (None: the untempered policy, the default;
            RLT scores its student at 0.7).

    Returns:
        :class:`ScoreOutput` with ``mask[b, t] = prompt_len[b] <= t < length[b]``.
    """
    B, T = tokens.shape
    if T > config.max_len:
        raise ConfigError("tokens.shape[1]", T, f"<= max_len={config.max_len}", "score")
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    logits, values, _ = apply(params, tokens, positions, causal_mask(T), config=config)
    if temperature is not None:
        logits = logits / jnp.asarray(temperature, logits.dtype)
    idx = jnp.arange(T)[None, :]
    length = jnp.full((B,), T, jnp.int32) if length is None else length
    mask = (idx >= prompt_len[:, None]) & (idx < length[:, None])
    logp = jnp.where(mask, _shift_right(token_logprobs(logits, jnp.roll(tokens, -1, axis=1))), 0.0)
    entropy = jnp.where(mask, _shift_right(entropy_from_logits(logits)), 0.0) if with_entropy else None
    values = None if values is None else jnp.where(mask, _shift_right(values), 0.0)
    return ScoreOutput(logp=logp, entropy=entropy, values=values, mask=mask)


def concat_segments(segments: list[tuple[jax.Array, jax.Array]], pad_id: int = VOCAB.PAD
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Concatenate per-row segments without gaps: ``segments`` is a list of ``(tokens [B, L_i], length [B])``
    (the first ``length`` tokens of each row are used). Returns ``(tokens [B, sum L_i] int32, starts [B, k]
    int32, total [B] int32)``: segment ``i`` of row ``b`` occupies ``[starts[b, i], starts[b, i] + length_i[b])``,
    PAD after ``total``. Token positions are exact (no re-tokenisation), so spans can be scored directly."""
    B = segments[0][0].shape[0]
    width = sum(int(t.shape[1]) for t, _ in segments)
    out = jnp.full((B, width), pad_id, jnp.int32)
    rows = jnp.arange(B)[:, None]
    offset = jnp.zeros((B,), jnp.int32)
    starts = []
    for tokens, length in segments:
        col = jnp.arange(tokens.shape[1])[None, :]
        length = jnp.asarray(length, jnp.int32)
        dest = jnp.where(col < length[:, None], offset[:, None] + col, width)  # width: out of bounds, dropped
        out = out.at[rows, dest].set(jnp.asarray(tokens, jnp.int32), mode="drop")
        starts.append(offset)
        offset = offset + length
    return out, jnp.stack(starts, axis=1), offset


def join_prompt_response(prompts: jax.Array, prompt_len: jax.Array, responses: jax.Array,
                         response_len: jax.Array, pad_id: int = VOCAB.PAD) -> jax.Array:
    """Concatenate right-padded prompts and responses row by row, without the gap.

    ``prompts [B, P]`` (valid prefix ``prompt_len``), ``responses [B, R]`` (valid prefix ``response_len``)
    -> ``[B, P + R]`` int32 with ``prompt[:prompt_len] ++ response[:response_len] ++ PAD...``.
    """
    P, R = prompts.shape[1], responses.shape[1]
    idx = jnp.arange(P + R)[None, :]
    pl, rl = prompt_len[:, None], response_len[:, None]
    from_prompt = jnp.take_along_axis(prompts, jnp.clip(idx, 0, P - 1), axis=1)
    from_resp = jnp.take_along_axis(responses, jnp.clip(idx - pl, 0, R - 1), axis=1)
    out = jnp.where(idx < pl, from_prompt, jnp.where(idx < pl + rl, from_resp, pad_id))
    return out.astype(jnp.int32)


def score_response(params: Params, prompts: jax.Array, prompt_len: jax.Array, responses: jax.Array,
                   response_mask: jax.Array, *, config: TransformerConfig, with_entropy: bool = False) -> ScoreOutput:
    """Score responses given separately from their prompts (the layout :func:`~jaxrl_self.lm.generate` returns).

    Args:
        prompts: ``[B, P]`` int, right-padded; ``prompt_len [B]`` in ``[1, P]``.
        responses: ``[B, R]`` int; ``response_mask [B, R]`` bool, a prefix mask (True on the generated tokens).
        config: the model config; ``P + R <= config.max_len``.

    Returns:
        :class:`ScoreOutput` of shape ``[B, R]``: ``logp[b, n] = log pi(responses[b, n] | prompt, responses[b, :n])``,
        ``values[b, n]`` the value of the state before response token ``n``; ``mask = response_mask``.
    """
    response_len = jnp.sum(response_mask, axis=1).astype(jnp.int32)
    seq = join_prompt_response(prompts, prompt_len, responses, response_len)
    out = score(params, seq, prompt_len, prompt_len + response_len, config=config, with_entropy=with_entropy)
    R = responses.shape[1]
    gather_idx = prompt_len[:, None] + jnp.arange(R)[None, :]
    gather_idx = jnp.clip(gather_idx, 0, seq.shape[1] - 1)

    def take(x):
        return None if x is None else jnp.where(response_mask, jnp.take_along_axis(x, gather_idx, axis=1), 0.0)

    return ScoreOutput(logp=take(out.logp), entropy=take(out.entropy), values=take(out.values),
                       mask=response_mask.astype(bool))
