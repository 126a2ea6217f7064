"""A small causal decoder-only Transformer language model with an optional value head and a KV cache.

Algorithms only ever see a parameter pytree and two pure functions::

    params = init_params(key, config)
    logits, values, cache = apply(params, tokens, positions, attn_mask, cache=None, config=config)

Architecture (GPT-style, pre-norm):

* token embedding (+ learned absolute position embedding when ``positional="learned"``);
* ``num_layers`` blocks of ``x = x + Attn(RMSNorm(x))`` then ``x = x + MLP(RMSNorm(x))`` with a GELU MLP of
  width ``d_ff``; multi-head attention with rotary position embeddings (``positional="rope"``, applied to
  queries and keys, rotate-half convention, base ``rope_base``) or none (learned positions are added at the
  input). No biases, no dropout;
* a final RMSNorm, then the LM head. With ``tie_embeddings=True`` (default) the head is the transposed token
  embedding (``logits = h @ E.T``); otherwise an untied ``d_model x vocab`` matrix;
* with ``value_head=True``, a scalar value per position from a linear layer on the same final hidden state
  (shared trunk, as in token-level PPO). ``values[b, t]`` is computed from tokens ``0..t`` only.

Weights are initialised N(0, 0.02); the two residual output projections of every block use
N(0, 0.02 / sqrt(2 * num_layers)); the value head starts at zero output (zero kernel). No orthogonal
initialiser is used, so vmapping ``init_params`` over seeds is cheap and avoids the XLA:CPU QR trap.

Precision: parameters are float32; activations are computed in ``config.dtype`` (float32 or bfloat16);
attention softmax, logits and values are always float32.

Masks: ``attn_mask[b, q, k]`` is True where query ``q`` may attend to key ``k``; it is the *only* source of
causality (build it with :func:`causal_mask`). A masked score is replaced by the most negative float32 before
the softmax, so a masked key has exactly zero weight and its content can never leak into the output.

KV cache: :class:`KVCache` holds keys and values ``[num_layers, batch, num_heads, cache_len, head_dim]``
indexed by *position*: the key/value of the token at position ``p`` of row ``b`` lives at ``[:, b, :, p]``.
When ``cache`` is given, ``apply`` first writes the keys/values of ``tokens`` at their positions (distinct
within a row and ``< cache_len``; a decode step or a prefill writes ``start[b] + arange(T)``), then attends over
the whole cache
with ``attn_mask`` of shape ``[B, T, cache_len]``. Without a cache the tokens attend among themselves
(``attn_mask`` is ``[B, T, T]``). Per-slot bookkeeping (how many entries of a row are valid) lives with the
caller: see :mod:`jaxrl_self.lm.generate`.
"""
from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.algorithm import static_field as _static
from jaxrl_self.core.sequence import VOCAB

__all__ = [
    "TransformerConfig",
    "KVCache",
    "ModelOutput",
    "Transformer",
    "init_params",
    "apply",
    "causal_mask",
    "num_params",
    "unstack_cache",
    "stack_cache",
]

Params = Any
_POSITIONAL = ("rope", "learned")
_DTYPES = ("float32", "bfloat16", "float16")
_NEG = float(jnp.finfo(jnp.float32).min)


@struct.dataclass
class TransformerConfig:
    """Architecture of the LM. Every field is static (shape-determining); the config is hashable.

    Attributes:
        vocab_size: number of token ids (default: the shared task vocabulary, 64).
        num_layers: Transformer blocks.
        d_model: residual width.
        num_heads: attention heads; ``d_model`` must be divisible by it (``head_dim = d_model // num_heads``).
        d_ff: hidden width of the MLP.
        max_len: the longest sequence (prompt + response) the model handles: size of the learned position table
            and the upper bound on a KV cache's length.
        positional: ``"rope"`` (rotary embeddings on queries/keys) or ``"learned"`` (absolute, added to the input).
        value_head: add a scalar value head (one value per position).
        value_detach: the value head reads the trunk's features under ``stop_gradient``: a value loss then trains
            the head alone and never changes the policy's features (a value model of its own, but linear).
        tie_embeddings: LM head is the transposed token embedding (True) or its own matrix (False).
        dtype: activation dtype name, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
        rope_base: rotary frequency base.
    """

    vocab_size: int = _static(VOCAB.size)
    num_layers: int = _static(2)
    d_model: int = _static(64)
    num_heads: int = _static(4)
    d_ff: int = _static(256)
    max_len: int = _static(128)
    positional: Literal["rope", "learned"] = _static("rope")
    value_head: bool = _static(False)
    value_detach: bool = _static(False)
    tie_embeddings: bool = _static(True)
    dtype: str = _static("float32")
    rope_base: float = _static(10000.0)

    def __post_init__(self):
        owner = "TransformerConfig"
        for name in ("vocab_size", "num_layers", "d_model", "num_heads", "d_ff", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(name, value, "a positive int", owner)
        if self.d_model % self.num_heads:
            raise ConfigError("num_heads", self.num_heads, f"a divisor of d_model={self.d_model}", owner)
        if self.positional not in _POSITIONAL:
            raise ConfigError("positional", self.positional, f"one of {_POSITIONAL}", owner)
        if self.positional == "rope" and self.head_dim % 2:
            raise ConfigError("num_heads", self.num_heads,
                              f"a value giving an even head_dim for rope (d_model={self.d_model})", owner)
        if str(self.dtype) not in _DTYPES:
            raise ConfigError("dtype", self.dtype, f"one of {_DTYPES}", owner)
        if not isinstance(self.value_head, bool):
            raise ConfigError("value_head", self.value_head, "True or False", owner)
        if not isinstance(self.value_detach, bool):
            raise ConfigError("value_detach", self.value_detach, "True or False", owner)
        if not isinstance(self.tie_embeddings, bool):
            raise ConfigError("tie_embeddings", self.tie_embeddings, "True or False", owner)
        rope_base = self.rope_base
        if (not isinstance(rope_base, (int, float)) or isinstance(rope_base, bool) or not math.isfinite(rope_base)
                or not rope_base > 0):
            raise ConfigError("rope_base", self.rope_base, "a finite positive float", owner)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def jnp_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)


@struct.dataclass
class KVCache:
    """Per-layer attention keys and values, indexed by position.

    Attributes:
        keys: ``[num_layers, batch, num_heads, cache_len, head_dim]`` in ``config.dtype`` (heads before
            positions: a decode step's attention reads each head's keys as one contiguous matrix).
        values: same shape and dtype. Rotary embeddings are already applied to the stored keys.
    """

    keys: jax.Array
    values: jax.Array

    @classmethod
    def zeros(cls, config: TransformerConfig, batch_size: int, cache_len: Optional[int] = None) -> "KVCache":
        """An all-zero cache for ``batch_size`` rows of ``cache_len`` (default ``config.max_len``) positions."""
        cache_len = config.max_len if cache_len is None else int(cache_len)
        if not 1 <= cache_len <= config.max_len:
            raise ConfigError("cache_len", cache_len, f"an int in [1, max_len={config.max_len}]", "KVCache")
        shape = (config.num_layers, batch_size, config.num_heads, cache_len, config.head_dim)
        z = jnp.zeros(shape, config.jnp_dtype)
        return cls(keys=z, values=z)

    @property
    def cache_len(self) -> int:
        return (self.keys[0] if isinstance(self.keys, tuple) else self.keys).shape[-2]


class ModelOutput(NamedTuple):
    """``apply``'s result: ``logits [B, T, V]`` float32, ``values [B, T]`` float32 or None, ``cache`` or None."""

    logits: jax.Array
    values: Optional[jax.Array]
    cache: Optional[KVCache]


# ---------------------------------------------------------------------------------------------------- modules
def _rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """Rotary embedding, rotate-half convention. ``x [B, T, H, D]``, ``positions [B, T]`` int."""
    half = x.shape[-1] // 2
    freqs = base ** (-jnp.arange(half, dtype=jnp.float32) / half)  # [D/2]
    angles = positions.astype(jnp.float32)[..., None] * freqs  # [B, T, D/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def _write(cache: Any, layer: int, new: jax.Array, positions: jax.Array) -> Any:
    """Write ``new [B, T, H, D]`` into layer ``layer`` of ``cache`` at ``positions [B, T]``: ``cache`` is the
    stacked ``[L, B, H, S, D]`` array or a tuple of ``L`` per-layer ``[B, H, S, D]`` arrays (how the decode loop
    carries it: :func:`unstack_cache`).

    One scatter of ``B·T`` rows, not a per-layer slice and a re-stack: inside a decode loop XLA updates the loop's
    buffer in place, so a step costs its rows, not a copy of the cache."""
    rows = jnp.arange(new.shape[0])[:, None]
    if isinstance(cache, tuple):
        layer_cache = cache[layer]
        updated = layer_cache.at[rows, :, positions].set(new.astype(layer_cache.dtype), mode="promise_in_bounds",
                                                          unique_indices=True)
        return cache[:layer] + (updated,) + cache[layer + 1:]
    return cache.at[layer, rows, :, positions].set(new.astype(cache.dtype), mode="promise_in_bounds",
                                                    unique_indices=True)


def unstack_cache(cache: "KVCache") -> "KVCache":
    """The same cache with ``keys``/``values`` as tuples of per-layer ``[B, H, S, D]`` arrays, which
    :func:`apply` accepts too. A loop that carries it reads and writes a layer without slicing the stacked
    array on every step (:func:`stack_cache` turns it back)."""
    if isinstance(cache.keys, tuple):
        return cache
    return KVCache(keys=tuple(cache.keys), values=tuple(cache.values))


def stack_cache(cache: "KVCache") -> "KVCache":
    """The inverse of :func:`unstack_cache`: ``keys``/``values`` as stacked ``[L, B, H, S, D]`` arrays."""
    if not isinstance(cache.keys, tuple):
        return cache
    return KVCache(keys=jnp.stack(cache.keys), values=jnp.stack(cache.values))


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, attn_mask: jax.Array, dtype, cached: bool) -> jax.Array:
    """Softmax attention of ``q [B, T, H, D]`` over keys/values ``[B, T, H, D]`` (``cached=False``) or a cache
    layer's ``[B, H, S, D]`` (``cached=True``) where ``attn_mask [B|1, T, S]``; returns ``[B, T, H, D]``."""
    keys = "bhkd" if cached else "bkhd"
    scores = jnp.einsum(f"bqhd,{keys}->bhqk", q, k, preferred_element_type=jnp.float32) / math.sqrt(q.shape[-1])
    scores = jnp.where(attn_mask[:, None, :, :], scores, _NEG)
    probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
    return jnp.einsum(f"bhqk,{keys}->bqhd", probs, v.astype(dtype))


class _Linear(nn.Module):
    """``x [N, prod(in_shape)] @ kernel``, the kernel stored as ``in_shape + out_shape`` (the parameter
    ``nn.DenseGeneral`` would hold, so checkpoints are unchanged) but multiplied as one 2-D matrix: XLA:CPU's
    gradient of a product that contracts or emits several axes goes through slow transposing copies."""

    in_shape: tuple
    out_shape: tuple
    dtype: Any
    kernel_init: Any

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, self.in_shape + self.out_shape, jnp.float32)
        kernel = kernel.reshape(math.prod(self.in_shape), math.prod(self.out_shape)).astype(self.dtype)
        return x.astype(self.dtype) @ kernel


class _Attention(nn.Module):
    config: TransformerConfig
    layer: int = 0

    @nn.compact
    def __call__(self, x, positions, attn_mask, cache):
        cfg = self.config
        dtype, h, d = cfg.jnp_dtype, cfg.num_heads, cfg.head_dim
        init = nn.initializers.normal(0.02)
        out_init = nn.initializers.normal(0.02 / math.sqrt(2 * cfg.num_layers))
        B, T = positions.shape
        qkv = _Linear((cfg.d_model,), (3, h, d), dtype, init, name="qkv")(x).reshape(B, T, 3, h, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if cfg.positional == "rope":
            q = _rope(q, positions, cfg.rope_base)
            k = _rope(k, positions, cfg.rope_base)
        if cache is not None:
            cache = KVCache(keys=_write(cache.keys, self.layer, k, positions),
                            values=_write(cache.values, self.layer, v, positions))
            k, v = cache.keys[self.layer], cache.values[self.layer]
        out = _attend(q, k, v, attn_mask, dtype, cached=cache is not None)
        out = _Linear((h, d), (cfg.d_model,), dtype, out_init, name="out")(out.reshape(B * T, h * d))
        return out, cache


class _Block(nn.Module):
    config: TransformerConfig
    layer: int = 0

    @nn.compact
    def __call__(self, x, positions, attn_mask, cache):
        cfg = self.config
        dtype = cfg.jnp_dtype
        init = nn.initializers.normal(0.02)
        out_init = nn.initializers.normal(0.02 / math.sqrt(2 * cfg.num_layers))
        a, cache = _Attention(cfg, self.layer, name="attn")(nn.RMSNorm(dtype=dtype, name="norm_attn")(x),
                                                            positions, attn_mask, cache)
        x = x + a
        y = nn.RMSNorm(dtype=dtype, name="norm_mlp")(x)
        y = nn.Dense(cfg.d_ff, use_bias=False, dtype=dtype, kernel_init=init, name="mlp_in")(y)
        y = nn.Dense(cfg.d_model, use_bias=False, dtype=dtype, kernel_init=out_init, name="mlp_out")(nn.gelu(y))
        return x + y, cache


class Transformer(nn.Module):
    """The Linen module behind :func:`init_params` / :func:`apply` (use those; see the module docstring)."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, tokens, positions, attn_mask, cache: Optional[KVCache] = None) -> ModelOutput:
        cfg = self.config
        dtype = cfg.jnp_dtype
        embed = nn.Embed(cfg.vocab_size, cfg.d_model, embedding_init=nn.initializers.normal(0.02), dtype=dtype,
                         name="embed")
        B, T = tokens.shape
        positions = jnp.broadcast_to(positions, (B, T))  # a [1, T] row of positions serves every sequence
        x = embed(tokens)
        if cfg.positional == "learned":
            pos_embed = nn.Embed(cfg.max_len, cfg.d_model, embedding_init=nn.initializers.normal(0.02),
                                 dtype=dtype, name="pos_embed")
            x = x + pos_embed(positions)
        # The trunk runs on [B*T, d_model] rows: XLA:CPU differentiates a 2-D matrix product ~4x faster than
        # the same product over [B, T, d] (whose weight gradient it feeds through a slow transposing fusion).
        x = x.reshape(B * T, cfg.d_model)
        for i in range(cfg.num_layers):
            x, cache = _Block(cfg, i, name=f"block_{i}")(x, positions, attn_mask, cache)
        h = nn.RMSNorm(dtype=dtype, name="norm_out")(x)
        if cfg.tie_embeddings:
            logits = embed.attend(h)
        else:
            logits = nn.Dense(cfg.vocab_size, use_bias=False, dtype=dtype,
                              kernel_init=nn.initializers.normal(0.02), name="lm_head")(h)
        values = None
        if cfg.value_head:
            features = jax.lax.stop_gradient(h) if cfg.value_detach else h
            values = nn.Dense(1, dtype=jnp.float32, kernel_init=nn.initializers.zeros, name="value_head")(
                features.astype(jnp.float32))[..., 0].reshape(B, T)
        return ModelOutput(logits.astype(jnp.float32).reshape(B, T, -1), values, cache)


# ---------------------------------------------------------------------------------------------------- pure API
def causal_mask(num_queries: int, num_keys: Optional[int] = None, valid: Optional[jax.Array] = None) -> jax.Array:
    """``[1, Q, K]`` (or ``[B, Q, K]`` with ``valid``) bool mask: query ``q`` sees keys ``k <= q``.

    ``valid [B, K]`` (optional) additionally masks out keys that are padding.
    """
    num_keys = num_queries if num_keys is None else num_keys
    mask = jnp.arange(num_keys)[None, :] <= jnp.arange(num_queries)[:, None]
    mask = mask[None]
    if valid is not None:
        mask = mask & valid[:, None, :]
    return mask


def init_params(key: jax.Array, config: TransformerConfig) -> Params:
    """Fresh parameters (a pytree of float32 arrays) for ``config``."""
    tokens = jnp.zeros((1, 1), jnp.int32)
    return Transformer(config).init(key, tokens, tokens, causal_mask(1))["params"]


def apply(params: Params, tokens: jax.Array, positions: jax.Array, attn_mask: jax.Array,
          cache: Optional[KVCache] = None, *, config: TransformerConfig) -> ModelOutput:
    """Run the model on a block of tokens.

    Args:
        params: from :func:`init_params`.
        tokens: ``[B, T]`` int token ids.
        positions: ``[B, T]`` (or ``[1, T]``) int positions (rotary angle / learned position index, and the cache
            index the keys/values are written to). With a cache they must be distinct within each row and in
            ``[0, cache_len)``: the write is a scatter that assumes so (no clamping).
        attn_mask: ``[B or 1, T, T]`` bool without a cache, ``[B or 1, T, cache_len]`` with one; True = may attend.
        cache: optional :class:`KVCache` (``batch == B``) to write into and attend over.
        config: the model's :class:`TransformerConfig` (static).

    Returns:
        :class:`ModelOutput` ``(logits [B, T, V] f32, values [B, T] f32 | None, new cache | None)``.
    """
    return Transformer(config).apply({"params": params}, tokens, positions, attn_mask, cache)


def num_params(params: Params) -> int:
    """Total number of scalars in a parameter pytree."""
    return sum(int(x.size) for x in jax.tree.leaves(params))
