"""Token sampling and per-token log-probability maths shared by generation and scoring.

Two log-probabilities matter in RL on language models:

* the **policy log-prob** ``log softmax(logits)[token]``: the model's own distribution at temperature 1,
  untruncated. This is ``log pi_theta(a | s)``, what PPO ratios, KL penalties, RLT's student log-probs and
  :func:`jaxrl_self.lm.score` use.
* the **behaviour log-prob**: the log-probability of the token under the distribution it was actually drawn
  from (logits / temperature, restricted to the top-k). Off-policy corrections need it when
  ``temperature != 1`` or ``top_k`` is on. Greedy decoding is deterministic: its behaviour log-prob is 0.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB

__all__ = ["SamplingConfig", "sample_token", "token_logprobs", "entropy_from_logits"]


@struct.dataclass
class SamplingConfig:
    """How tokens are drawn during generation.

    ``max_new_tokens`` and ``pad_id`` are static (they fix shapes and buffer contents). ``temperature``,
    ``top_k``, ``greedy`` and ``eos_id`` are traced leaves: changing them does not recompile, and a stacked
    batch of configs can be vmapped over (a sampling sweep in one program).

    Attributes:
        max_new_tokens: the longest response. A slot stops after this many generated tokens.
        temperature: divides the logits before sampling; > 0. Ignored when ``greedy``.
        top_k: sample among the ``top_k`` most likely tokens only (ties at the k-th logit are kept);
            0 = the full vocabulary. Ignored when ``greedy``.
        greedy: take the argmax token (behaviour log-prob 0).
        eos_id: the token that ends a response (default ``VOCAB.EOS``).
        pad_id: what finished slots emit (default ``VOCAB.PAD``).
    """

    max_new_tokens: int = struct.field(pytree_node=False, default=32)
    temperature: Any = 1.0
    top_k: Any = 0
    greedy: Any = False
    eos_id: Any = VOCAB.EOS
    pad_id: int = struct.field(pytree_node=False, default=VOCAB.PAD)

    def __post_init__(self):
        # Only the static fields are checked here: flax rebuilds the dataclass with arbitrary leaves (tracers,
        # vmap axis specs like 0 or None, tree_map outputs), so the traced fields are checked by `check`.
        owner = "SamplingConfig"
        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) \
                or self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", self.max_new_tokens, "a positive int", owner)
        if not isinstance(self.pad_id, int) or isinstance(self.pad_id, bool) or self.pad_id < 0:
            raise ConfigError("pad_id", self.pad_id, "a token id (int >= 0)", owner)

    def check(self, vocab_size: int) -> None:
        """Raise :class:`ConfigError` for bad values. Traced fields are checked when concrete (Python or numpy
        numbers); called by :func:`~jaxrl_self.lm.decode` and :func:`~jaxrl_self.lm.generate` before tracing."""
        owner = "SamplingConfig"
        if not 0 <= self.pad_id < vocab_size:
            raise ConfigError("pad_id", self.pad_id, f"a token id in [0, {vocab_size})", owner)
        t, k, g, e = (_concrete(x) for x in (self.temperature, self.top_k, self.greedy, self.eos_id))
        if e is not None and not (np.issubdtype(e.dtype, np.integer) and np.all((e >= 0) & (e < vocab_size))):
            raise ConfigError("eos_id", self.eos_id, f"a token id in [0, {vocab_size})", owner)
        if t is not None and not np.all(t > 0):
            raise ConfigError("temperature", self.temperature, "a float > 0 (use greedy=True for argmax)", owner)
        if k is not None and not (np.all(k >= 0) and np.all(k <= vocab_size) and np.all(np.round(k) == k)):
            raise ConfigError("top_k", self.top_k, f"an int in [0, vocab_size={vocab_size}] (0 = no top-k)", owner)
        if g is not None and g.dtype != np.bool_:
            raise ConfigError("greedy", self.greedy, "True or False", owner)


def _concrete(x: Any) -> Optional[np.ndarray]:
    """``x`` as a numpy array when it is a concrete number/array, else None (a tracer)."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except Exception:  # pragma: no cover - anything exotic is left to JAX to reject
        return None


def token_logprobs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """``log softmax(logits)[..., tokens]``: ``logits [..., V]``, ``tokens [...]`` int -> float32 ``[...]``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy_from_logits(logits: jax.Array) -> jax.Array:
    """Entropy (nats) of ``softmax(logits)`` over the last axis, float32."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def sample_token(keys: jax.Array, logits: jax.Array, sampling: SamplingConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw one token per row.

    Args:
        keys: ``[B]`` typed PRNG keys, one per row (each row's draw depends on its own key only).
        logits: ``[B, V]`` untempered logits.
        sampling: temperature / top-k / greedy settings.

    Returns:
        ``(token [B] int32, policy_logp [B] f32, behaviour_logp [B] f32)``; see the module docstring.
    """
    logits = logits.astype(jnp.float32)
    V = logits.shape[-1]
    scaled = logits / jnp.asarray(sampling.temperature, jnp.float32)
    # A setting known when tracing (a Python/numpy value, not a tracer) skips the work it switches off: the sort
    # behind top-k (a [B, V] sort on every decoding step) and the argmax; the results are the same bits.
    k_static, greedy_static = _concrete(sampling.top_k), _concrete(sampling.greedy)
    if k_static is None or np.any(k_static > 0):
        k = jnp.asarray(sampling.top_k, jnp.int32)
        kth = jnp.take(jnp.sort(scaled, axis=-1), V - jnp.clip(k, 1, V), axis=-1)[..., None]  # k-th largest
        scaled = jnp.where((k > 0) & (scaled < kth), -jnp.inf, scaled)
    sampled = jax.vmap(jax.random.categorical)(keys, scaled).astype(jnp.int32)
    if greedy_static is not None and not np.any(greedy_static):
        return sampled, token_logprobs(logits, sampled), token_logprobs(scaled, sampled)
    greedy = jnp.asarray(sampling.greedy, bool)
    token = jnp.where(greedy, jnp.argmax(logits, axis=-1).astype(jnp.int32), sampled)
    behaviour = jnp.where(greedy, 0.0, token_logprobs(scaled, token))
    return token, token_logprobs(logits, token), behaviour
