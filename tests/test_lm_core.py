"""Tests for the language-model core: the Transformer (nets/transformer.py), KV-cache generation over a pool
of slots (lm/generate.py), sampling (lm/sampling.py) and whole-sequence scoring (lm/scoring.py).

References are plain numpy (a forward pass, log-softmax, top-k), Python loops without a cache, and
*independent* code paths of the library that must agree (cached decoding vs one-pass scoring).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import lm
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB
from jaxrl_self.nets.transformer import KVCache, TransformerConfig, apply, causal_mask, init_params

CFG = TransformerConfig(vocab_size=VOCAB.size, num_layers=2, d_model=32, num_heads=4, d_ff=64, max_len=40,
                        positional="rope", value_head=True)
B, P, NEW = 4, 8, 12  # slots, padded prompt length, response budget
PROMPT_LEN = np.array([1, 3, 8, 5], np.int32)  # different lengths in one batch, incl. BOS-only and full
ATOL = 2e-5


@functools.lru_cache(maxsize=None)
def _init_fn(cfg: TransformerConfig):
    return jax.jit(functools.partial(init_params, config=cfg))


def _params(cfg: TransformerConfig, seed: int = 0):
    """Random parameters with sharpened attention (queries/keys x10), so that positions and context matter
    far above float32 noise (at N(0, 0.02) attention is almost uniform and tests would be weak)."""
    params = _init_fn(cfg)(jax.random.key(seed))
    for i in range(cfg.num_layers):
        qkv = params[f"block_{i}"]["attn"]["qkv"]["kernel"]
        params[f"block_{i}"]["attn"]["qkv"]["kernel"] = qkv.at[:, :2].multiply(10.0)
    if cfg.value_head:  # the value head starts at zero; give it weights so value tests are not vacuous
        k = params["value_head"]["kernel"]
        params["value_head"]["kernel"] = jax.random.normal(jax.random.key(seed + 100), k.shape) * 0.3
    return params


def _seqs(seed: int) -> jnp.ndarray:
    """Random full sequences ``[B, P + NEW]`` (no padding)."""
    return jnp.asarray(np.random.default_rng(seed).integers(1, VOCAB.size, size=(B, P + NEW)).astype(np.int32))


def _prompts(seed: int = 1, plen=PROMPT_LEN, pad_fill: int | None = None) -> jnp.ndarray:
    """Random right-padded prompts starting with BOS; content past ``plen`` is random (or ``pad_fill``)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(3, VOCAB.size, size=(len(plen), P)).astype(np.int32)
    x[:, 0] = VOCAB.BOS
    if pad_fill is not None:
        x[np.arange(P)[None, :] >= np.asarray(plen)[:, None]] = pad_fill
    return jnp.asarray(x)


@pytest.fixture(scope="module")
def params():
    return _params(CFG)


@functools.lru_cache(maxsize=None)
def _gen_jit(early_exit: bool):
    return jax.jit(functools.partial(lm.generate, config=CFG, early_exit=early_exit))


def _gen_fn(sampling: lm.SamplingConfig, early_exit: bool = True):
    """Jitted ``generate``; ``sampling`` is a traced argument (one compile per static eos/pad/max_new_tokens)."""
    return functools.partial(_gen_jit(early_exit), sampling=sampling)


@functools.lru_cache(maxsize=None)
def _score_fn(cfg: TransformerConfig = CFG):
    return jax.jit(functools.partial(lm.score, config=cfg, with_entropy=True))


@functools.lru_cache(maxsize=None)
def _score_response_fn():
    return jax.jit(functools.partial(lm.score_response, config=CFG))


@functools.lru_cache(maxsize=None)
def _apply_fn(cfg: TransformerConfig = CFG):
    return jax.jit(functools.partial(apply, config=cfg))


def _full_apply(params, tokens, cfg=CFG):
    """No-cache forward over ``tokens [B, T]`` with positions ``arange(T)`` and a causal mask."""
    tokens = jnp.asarray(tokens)
    Bt, T = tokens.shape
    pos = jnp.broadcast_to(jnp.arange(T), (Bt, T))
    return _apply_fn(cfg)(params, tokens, pos, jnp.broadcast_to(causal_mask(T), (Bt, T, T)))


def _assert_same_generation(a, b):
    """Two ``(DecodeState, DecodeOutput)`` results are equal on everything that is defined: all outputs and
    state fields, and the cache at the positions its invariant covers (``< length - 1``)."""
    (sa, oa), (sb, ob) = a, b
    for x, y in zip(jax.tree.leaves(oa), jax.tree.leaves(ob)):
        np.testing.assert_array_equal(x, y)
    for f in ("tokens", "length", "prompt_len", "done"):
        np.testing.assert_array_equal(getattr(sa, f), getattr(sb, f))
    np.testing.assert_array_equal(jax.random.key_data(sa.rng), jax.random.key_data(sb.rng))
    valid = np.arange(sa.tokens.shape[1])[None, :] < np.asarray(sa.length)[:, None] - 1  # [B, S]
    for x, y in [(sa.cache.keys, sb.cache.keys), (sa.cache.values, sb.cache.values)]:
        x, y = np.moveaxis(np.asarray(x), 3, 2), np.moveaxis(np.asarray(y), 3, 2)  # [L, B, S, H, D]
        np.testing.assert_array_equal(x[:, valid], y[:, valid])


def _gather_rows(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.take_along_axis(np.asarray(x), np.clip(np.asarray(idx), 0, x.shape[1] - 1), axis=1)


# ------------------------------------------------------------------------------------------------ numpy model
def _np_rms(x, scale, eps=1e-6):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def _np_gelu(x):  # flax.linen.gelu's default tanh approximation
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _np_rope(x, pos, base):  # x [T, H, D]
    half = x.shape[-1] // 2
    ang = pos[:, None].astype(np.float64) * base ** (-np.arange(half) / half)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _np_forward(params, tokens, cfg):
    """Reference forward pass of one sequence ``tokens [T]`` in float64: ``(logits [T, V], values [T])``."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    T = len(tokens)
    pos = np.arange(T)
    emb = p["embed"]["embedding"]
    x = emb[tokens]
    if cfg.positional == "learned":
        x = x + p["pos_embed"]["embedding"][pos]
    causal = np.tril(np.ones((T, T), bool))
    for i in range(cfg.num_layers):
        blk = p[f"block_{i}"]
        h = _np_rms(x, blk["norm_attn"]["scale"])
        qkv = np.einsum("td,dshk->tshk", h, blk["attn"]["qkv"]["kernel"])
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        if cfg.positional == "rope":
            q, k = _np_rope(q, pos, cfg.rope_base), _np_rope(k, pos, cfg.rope_base)
        s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(cfg.head_dim)
        s = np.where(causal[None], s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        w = w / w.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", w, v)
        x = x + np.einsum("qhd,hdm->qm", o, blk["attn"]["out"]["kernel"])
        h = _np_rms(x, blk["norm_mlp"]["scale"])
        x = x + _np_gelu(h @ blk["mlp_in"]["kernel"]) @ blk["mlp_out"]["kernel"]
    h = _np_rms(x, p["norm_out"]["scale"])
    logits = h @ (emb.T if cfg.tie_embeddings else p["lm_head"]["kernel"])
    values = (h @ p["value_head"]["kernel"] + p["value_head"]["bias"])[:, 0] if cfg.value_head else None
    return logits, values


def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


# ------------------------------------------------------------------------------------------------ model
def test_config_validation_names_field_and_value():
    with pytest.raises(ConfigError, match=r"num_heads=3"):
        TransformerConfig(d_model=64, num_heads=3)
    with pytest.raises(ConfigError, match=r"positional='alibi'.*rope"):
        TransformerConfig(positional="alibi")
    with pytest.raises(ConfigError, match=r"dtype='int8'"):
        TransformerConfig(dtype="int8")
    with pytest.raises(ConfigError, match=r"num_layers=0"):
        TransformerConfig(num_layers=0)
    with pytest.raises(ConfigError, match=r"temperature=0"):
        lm.SamplingConfig(temperature=0).check(64)
    with pytest.raises(ConfigError, match=r"max_new_tokens=0"):
        lm.SamplingConfig(max_new_tokens=0)
    with pytest.raises(ConfigError, match=r"top_k=65"):
        lm.SamplingConfig(top_k=65).check(64)
    with pytest.raises(ConfigError, match=r"eos_id=64"):
        lm.SamplingConfig(eos_id=64).check(64)
    with pytest.raises(ConfigError, match=r"temperature=0"):
        lm.generate(None, jnp.ones((1, 2), jnp.int32), jnp.ones(1, jnp.int32), jax.random.key(0), config=CFG,
                    sampling=lm.SamplingConfig(temperature=0))
    with pytest.raises(ConfigError, match=r"cache_len=41"):
        lm.generate(None, jnp.ones((1, 9), jnp.int32), jnp.ones(1, jnp.int32), jax.random.key(0), config=CFG,
                    sampling=lm.SamplingConfig(max_new_tokens=32))
    jax.tree.map(lambda _: 0, lm.SamplingConfig())  # traced fields may hold anything (e.g. vmap axis specs)
    with pytest.raises(ConfigError, match=r"cache_len"):
        KVCache.zeros(CFG, 2, CFG.max_len + 1)
    assert hash(CFG) == hash(TransformerConfig(**{f: getattr(CFG, f) for f in CFG.__dataclass_fields__}))
    assert jax.tree.leaves(CFG) == []  # a static pytree: safe inside traced configs


L = P + NEW  # every no-cache forward in this file uses [B, L] tokens and a [B, L, L] mask: one compile per config
LEARNED = TransformerConfig(num_layers=2, d_model=32, num_heads=2, d_ff=48, max_len=L, positional="learned",
                            tie_embeddings=False, value_head=False)


def _mask(valid=None):
    return jnp.broadcast_to(causal_mask(L, valid=valid), (B, L, L))


def _pos(offset=0, scale=1):
    return jnp.broadcast_to(jnp.arange(L) * scale + offset, (B, L))


def test_shapes_and_dtypes(params):
    logits, values, cache = _full_apply(params, _seqs(0))
    assert logits.shape == (B, L, VOCAB.size) and logits.dtype == jnp.float32
    assert values.shape == (B, L) and values.dtype == jnp.float32
    assert cache is None
    state = lm.init_decode_state(CFG, B, 24)
    assert state.cache.keys.shape == (CFG.num_layers, B, CFG.num_heads, 24, CFG.head_dim)
    assert state.tokens.shape == (B, 24) and state.tokens.dtype == jnp.int32
    assert bool(state.done.all())
    out = _full_apply(_init_fn(LEARNED)(jax.random.key(0)), _seqs(0), LEARNED)
    assert out.values is None and out.logits.shape == (B, L, VOCAB.size)
    assert "lm_head" in _init_fn(LEARNED)(jax.random.key(0)) and "lm_head" not in params


def test_one_row_of_positions_serves_every_sequence(params):
    """``positions [1, T]`` broadcast over the batch give what ``[B, T]`` gives."""
    tokens = _seqs(3)
    Bt, T = tokens.shape
    mask = jnp.broadcast_to(causal_mask(T), (Bt, T, T))
    one = _apply_fn()(params, tokens, jnp.arange(T)[None], mask).logits
    np.testing.assert_array_equal(one, _full_apply(params, tokens).logits)


def test_reset_slots_refuses_a_prefilled_cache_of_another_shape(params):
    state = lm.init_decode_state(CFG, B, 24)
    wrong = KVCache.zeros(CFG, 1, 24)
    with pytest.raises(ConfigError, match="prefilled"):
        lm.reset_slots(params, state, jnp.ones(B, bool), jnp.ones((B, P), jnp.int32), jnp.ones(B, jnp.int32),
                       jax.random.split(jax.random.key(0), B), config=CFG, prefilled=wrong)


@pytest.mark.parametrize("cfg", [CFG, LEARNED], ids=["rope-tied-value", "learned-untied"])
def test_forward_matches_numpy_reference(cfg):
    params = _params(cfg, seed=3)
    if not cfg.tie_embeddings:
        params["lm_head"]["kernel"] = params["lm_head"]["kernel"] * 20.0  # make the head matter
    tokens = _seqs(4)
    logits, values, _ = _full_apply(params, tokens, cfg)
    for b in range(B):
        ref_logits, ref_values = _np_forward(params, np.asarray(tokens[b]), cfg)
        np.testing.assert_allclose(logits[b], ref_logits, atol=1e-4, rtol=1e-4)
        if cfg.value_head:
            np.testing.assert_allclose(values[b], ref_values, atol=1e-4, rtol=1e-4)


def test_rope_depends_on_relative_positions_only(params):
    tokens = _seqs(0)
    a = _apply_fn()(params, tokens, _pos(), _mask()).logits
    b = _apply_fn()(params, tokens, _pos(offset=11), _mask()).logits
    np.testing.assert_allclose(a, b, atol=1e-4)
    c = _apply_fn()(params, tokens, _pos(scale=2), _mask()).logits  # different relative distances
    assert np.abs(np.asarray(a[:, 1:] - c[:, 1:])).max() > 1e-2


def test_causal_masking(params):
    tokens = np.asarray(_seqs(5))
    changed = tokens.copy()
    changed[:, 5] = (changed[:, 5] + 7) % VOCAB.size
    a, va, _ = _full_apply(params, tokens)
    b, vb, _ = _full_apply(params, changed)
    np.testing.assert_array_equal(a[:, :5], b[:, :5])
    np.testing.assert_array_equal(va[:, :5], vb[:, :5])
    assert np.abs(np.asarray(a[:, 5:] - b[:, 5:])).min(axis=-1).max() > 0  # later positions do see it


def test_attention_mask_hides_padding_keys(params):
    """With an explicit key-validity mask, masked (padding) tokens in the *middle* cannot leak."""
    tokens = np.asarray(_seqs(6))
    valid = np.ones((B, L), bool)
    valid[:, 2:4] = False  # a gap of padding
    other = tokens.copy()
    other[:, 2:4] = 0
    mask = _mask(jnp.asarray(valid))
    a = _apply_fn()(params, jnp.asarray(tokens), _pos(), mask)
    b = _apply_fn()(params, jnp.asarray(other), _pos(), mask)
    np.testing.assert_array_equal(a.logits[:, valid[0]], b.logits[:, valid[0]])
    assert np.abs(np.asarray(a.logits - _apply_fn()(params, jnp.asarray(other), _pos(), _mask()).logits)).max() > 0


# ------------------------------------------------------------------------------------------------ sampling
def test_sample_token_topk_temperature_against_numpy():
    logits = jax.random.normal(jax.random.key(0), (3, VOCAB.size)) * 2.0
    sampling = lm.SamplingConfig(temperature=0.7, top_k=5)
    keys = jax.random.split(jax.random.key(1), 400)
    draw = jax.jit(jax.vmap(lambda k: lm.sample_token(jax.random.split(k, 3), logits, sampling)))
    tok, logp, beh = map(np.asarray, draw(keys))
    lg = np.asarray(logits, np.float64)
    top5 = np.argsort(-lg, axis=-1)[:, :5]
    for r in range(3):
        assert set(tok[:, r]) <= set(top5[r])  # only top-k tokens are ever drawn
        z = lg[r] / 0.7
        ref_beh = _np_log_softmax(np.where(np.isin(np.arange(VOCAB.size), top5[r]), z, -np.inf))
        np.testing.assert_allclose(beh[:, r], ref_beh[tok[:, r]], atol=1e-5)
        np.testing.assert_allclose(logp[:, r], _np_log_softmax(lg[r])[tok[:, r]], atol=1e-5)
        # frequencies follow the tempered, truncated distribution (400 draws; loose bound)
        freq = np.bincount(tok[:, r], minlength=VOCAB.size)[top5[r]] / 400
        assert np.abs(freq - np.exp(ref_beh[top5[r]])).max() < 0.1


def test_entropy_and_logprob_helpers():
    logits = np.random.default_rng(0).normal(size=(5, VOCAB.size)) * 3
    ls = _np_log_softmax(logits)
    np.testing.assert_allclose(lm.entropy_from_logits(jnp.asarray(logits)), -(np.exp(ls) * ls).sum(-1), atol=1e-5)
    toks = np.arange(5) * 7
    np.testing.assert_allclose(lm.token_logprobs(jnp.asarray(logits), jnp.asarray(toks)), ls[np.arange(5), toks],
                               atol=1e-5)


# ------------------------------------------------------------------------------------------------ scoring
def test_join_prompt_response_against_python():
    prompts, resp = _prompts(seed=7), np.asarray(_prompts(seed=8))
    rlen = np.array([0, 4, 8, 2])
    out = np.asarray(lm.join_prompt_response(prompts, jnp.asarray(PROMPT_LEN), jnp.asarray(resp), jnp.asarray(rlen)))
    for b in range(B):
        ref = list(np.asarray(prompts[b, :PROMPT_LEN[b]])) + list(resp[b, :rlen[b]])
        ref += [VOCAB.PAD] * (2 * P - len(ref))
        assert out[b].tolist() == ref


def test_score_against_numpy_and_padding_invariance(params):
    T = L
    rng = np.random.default_rng(9)
    seq = rng.integers(3, VOCAB.size, size=(B, T)).astype(np.int32)
    length = np.array([20, 9, 14, 6])
    other = seq.copy()
    for b in range(B):
        other[b, length[b]:] = rng.integers(0, VOCAB.size, size=T - length[b])  # different padding content
    plen = jnp.asarray(PROMPT_LEN)
    a = _score_fn()(params, jnp.asarray(seq), plen, jnp.asarray(length))
    c = _score_fn()(params, jnp.asarray(other), plen, jnp.asarray(length))
    for field in ("logp", "entropy", "values", "mask"):
        np.testing.assert_array_equal(getattr(a, field), getattr(c, field))
    for b in range(B):
        logits, values = _np_forward(params, seq[b, :length[b]], CFG)
        ls = _np_log_softmax(logits)
        t = np.arange(PROMPT_LEN[b], length[b])
        np.testing.assert_allclose(a.logp[b, t], ls[t - 1, seq[b, t]], atol=1e-4)
        np.testing.assert_allclose(a.entropy[b, t], -(np.exp(ls) * ls).sum(-1)[t - 1], atol=1e-4)
        np.testing.assert_allclose(a.values[b, t], values[t - 1], atol=1e-4)
        assert a.mask[b].tolist() == [PROMPT_LEN[b] <= i < length[b] for i in range(T)]
        assert float(np.abs(a.logp[b, ~np.asarray(a.mask[b])]).max(initial=0)) == 0.0


# ------------------------------------------------------------------------------------------------ generation
def _assert_matches_score(params, state, outs, atol=ATOL, cfg=CFG):
    """Every generated token's logp/value (from the cache) equals one-pass scoring of the final sequences."""
    sc = _score_fn(cfg)(params, state.tokens, state.prompt_len, state.length)
    for out in outs:
        m = np.asarray(out.mask)
        assert m.any()
        idx = np.asarray(out.position)
        np.testing.assert_array_equal(np.where(m, _gather_rows(state.tokens, idx), -1), np.where(m, out.tokens, -1))
        np.testing.assert_allclose(np.where(m, _gather_rows(sc.logp, idx), 0), np.where(m, out.logp, 0), atol=atol)
        np.testing.assert_allclose(np.where(m, _gather_rows(sc.values, idx), 0), np.where(m, out.values, 0),
                                   atol=atol)
        assert np.asarray(_gather_rows(sc.mask, idx))[m].all()


def test_cached_generation_logprobs_equal_scoring(params):
    """The key test: KV-cache decoding (different prompt lengths in one batch) == one-pass scoring."""
    sampling = lm.SamplingConfig(max_new_tokens=NEW, temperature=1.0)
    prompts = _prompts()
    state, out = _gen_fn(sampling)(params, prompts, jnp.asarray(PROMPT_LEN), jax.random.key(0))
    assert out.tokens.shape == (B, NEW) and out.tokens.dtype == jnp.int32
    assert out.logp.dtype == jnp.float32 and out.values.shape == (B, NEW)
    np.testing.assert_array_equal(out.logp, out.behaviour_logp)  # temperature 1, no top-k
    _assert_matches_score(params, state, [out])
    # the response is left-aligned: column n is response token n, and score_response agrees too
    r = _score_response_fn()(params, prompts, jnp.asarray(PROMPT_LEN), out.tokens, out.mask)
    np.testing.assert_allclose(r.logp, out.logp, atol=ATOL)
    np.testing.assert_allclose(r.values, out.values, atol=ATOL)
    # final buffers: prompt ++ response ++ PAD
    for b in range(B):
        n = int(out.mask[b].sum())
        row = np.asarray(state.tokens[b])
        assert row[:PROMPT_LEN[b]].tolist() == np.asarray(prompts[b, :PROMPT_LEN[b]]).tolist()
        assert row[PROMPT_LEN[b]:PROMPT_LEN[b] + n].tolist() == np.asarray(out.tokens[b, :n]).tolist()
        assert (row[PROMPT_LEN[b] + n:] == VOCAB.PAD).all()


def test_tempered_topk_generation_logprobs(params):
    """With temperature/top-k, ``logp`` is still the untempered policy log-prob; ``behaviour_logp`` is the
    log-prob under the tempered, truncated distribution (checked against numpy on no-cache logits)."""
    sampling = lm.SamplingConfig(max_new_tokens=NEW, temperature=0.6, top_k=4)
    state, out = _gen_fn(sampling)(params, _prompts(), jnp.asarray(PROMPT_LEN), jax.random.key(1))
    _assert_matches_score(params, state, [out])
    logits = np.asarray(_full_apply(params, state.tokens).logits, np.float64)
    m = np.asarray(out.mask)
    for b in range(B):
        for j in np.flatnonzero(m[b]):
            z = logits[b, int(out.position[b, j]) - 1] / 0.6
            z = np.where(z >= np.sort(z)[-4], z, -np.inf)
            np.testing.assert_allclose(out.behaviour_logp[b, j], _np_log_softmax(z)[out.tokens[b, j]], atol=1e-4)


def test_generation_ignores_prompt_padding_content(params):
    sampling = lm.SamplingConfig(max_new_tokens=NEW)
    a = _gen_fn(sampling)(params, _prompts(pad_fill=VOCAB.PAD), jnp.asarray(PROMPT_LEN), jax.random.key(2))
    b = _gen_fn(sampling)(params, _prompts(pad_fill=17), jnp.asarray(PROMPT_LEN), jax.random.key(2))
    _assert_same_generation(a, b)


def test_greedy_is_deterministic_and_equals_uncached_argmax_loop(params):
    sampling = lm.SamplingConfig(max_new_tokens=NEW, greedy=True, eos_id=VOCAB.EOS)
    prompts = _prompts()
    s1, o1 = _gen_fn(sampling)(params, prompts, jnp.asarray(PROMPT_LEN), jax.random.key(0))
    s2, o2 = _gen_fn(sampling)(params, prompts, jnp.asarray(PROMPT_LEN), jax.random.key(123))
    np.testing.assert_array_equal(o1.tokens, o2.tokens)
    np.testing.assert_array_equal(o1.behaviour_logp, 0.0)
    # reference: grow each sequence one argmax at a time with a full no-cache forward pass
    seq = np.full((B, P + NEW), VOCAB.PAD, np.int32)
    seq[:, :P] = np.where(np.arange(P)[None] < PROMPT_LEN[:, None], np.asarray(prompts), VOCAB.PAD)
    length, done = PROMPT_LEN.copy(), np.zeros(B, bool)
    ref = np.full((B, NEW), VOCAB.PAD, np.int32)
    for n in range(NEW):
        logits = np.asarray(_full_apply(params, seq).logits)
        for b in range(B):
            if done[b]:
                continue
            tok = int(np.argmax(logits[b, length[b] - 1]))
            ref[b, n], seq[b, length[b]] = tok, tok
            length[b] += 1
            done[b] = tok == VOCAB.EOS
    np.testing.assert_array_equal(o1.tokens, ref)
    np.testing.assert_array_equal(s1.tokens, seq)
    _assert_matches_score(params, s1, [o1])


def test_top_k_one_equals_greedy(params):
    greedy = _gen_fn(lm.SamplingConfig(max_new_tokens=NEW, greedy=True))(
        params, _prompts(), jnp.asarray(PROMPT_LEN), jax.random.key(0))[1]
    top1 = _gen_fn(lm.SamplingConfig(max_new_tokens=NEW, top_k=1, temperature=1.3))(
        params, _prompts(), jnp.asarray(PROMPT_LEN), jax.random.key(5))[1]
    np.testing.assert_array_equal(greedy.tokens, top1.tokens)
    np.testing.assert_allclose(top1.behaviour_logp, 0.0, atol=1e-6)  # a one-token support
    np.testing.assert_allclose(greedy.logp, top1.logp, atol=1e-6)


def test_eos_stops_a_slot(params):
    """Take a token that a first run produced as the EOS of a second run with the same keys: a slot must
    stop right after its first occurrence (PAD and mask=False afterwards), and sample the same tokens until then."""
    key, plen = jax.random.key(7), jnp.asarray(PROMPT_LEN)
    _, first = _gen_fn(lm.SamplingConfig(max_new_tokens=NEW))(params, _prompts(), plen, key)
    toks, n_first = np.asarray(first.tokens), np.asarray(first.mask).sum(1)
    assert n_first[0] >= 3
    eos = int(toks[0, 2])
    assert eos != VOCAB.EOS
    state, out = _gen_fn(lm.SamplingConfig(max_new_tokens=NEW, eos_id=eos))(params, _prompts(), plen, key)
    tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
    for b in range(B):
        n = int(mask[b].sum())
        hits = np.flatnonzero(tokens[b, :n] == eos)
        assert (hits == n - 1).all() and (len(hits) == 1 or n == NEW)  # stops at its first EOS, not before
        assert mask[b].tolist() == [i < n for i in range(NEW)]
        assert (tokens[b, n:] == VOCAB.PAD).all() and (np.asarray(out.logp[b, n:]) == 0).all()
        assert np.asarray(out.finished[b]).tolist() == [i == n - 1 for i in range(NEW)]
        assert bool(state.done[b]) and int(state.length[b]) == PROMPT_LEN[b] + n
        # same keys, same tokens as the first run up to where either run stopped
        first_hits = np.flatnonzero(toks[b, :n_first[b]] == eos)
        common = min(n_first[b], first_hits[0] + 1 if len(first_hits) else NEW)
        assert tokens[b, :common].tolist() == toks[b, :common].tolist()
        np.testing.assert_allclose(out.logp[b, :common], first.logp[b, :common], atol=1e-6)
    n0 = int(mask[0].sum())
    assert n0 <= 3 and tokens[0, n0 - 1] == eos


def test_early_exit_equals_scan(params):
    plen = jnp.asarray(PROMPT_LEN)
    # a sampled run where slots finish at different times (or not at all): identical outputs and states
    sampling = lm.SamplingConfig(max_new_tokens=NEW, eos_id=VOCAB.EOS)
    a = _gen_fn(sampling, True)(params, _prompts(), plen, jax.random.key(0))
    b = _gen_fn(sampling, False)(params, _prompts(), plen, jax.random.key(0))
    _assert_same_generation(a, b)
    # every slot done after 3 steps (same prompt, greedy, EOS = its 3rd token): the while-loop exits early
    same = jnp.broadcast_to(_prompts()[2], (B, P))
    plen_same = jnp.full((B,), PROMPT_LEN[2])
    greedy = lm.SamplingConfig(max_new_tokens=NEW, greedy=True)
    eos = int(_gen_fn(greedy)(params, same, plen_same, jax.random.key(0))[1].tokens[0, 2])
    stop = lm.SamplingConfig(max_new_tokens=NEW, greedy=True, eos_id=eos)
    a = _gen_fn(stop, True)(params, same, plen_same, jax.random.key(0))
    b = _gen_fn(stop, False)(params, same, plen_same, jax.random.key(0))
    assert bool(a[0].done.all()) and not np.asarray(a[1].mask[:, 3:]).any()
    _assert_same_generation(a, b)


# ------------------------------------------------------------------------------------------------ slot pool
POOL_S = P + NEW  # = generate's default cache_len, so pool runs and `generate` runs are comparable
SAMPLING = lm.SamplingConfig(max_new_tokens=NEW, eos_id=VOCAB.EOS)


WINDOW = 4


@functools.lru_cache(maxsize=None)
def _pool_fns():
    reset = jax.jit(functools.partial(lm.reset_slots, config=CFG))
    window = jax.jit(functools.partial(lm.decode, num_steps=WINDOW, config=CFG))
    refresh = jax.jit(functools.partial(lm.refresh_cache, config=CFG))
    return reset, window, refresh


def test_slot_reset_mid_flight_gives_fresh_continuation(params):
    reset, window, _ = _pool_fns()
    key_a, key_b = jax.random.key(10), jax.random.key(11)
    prompts_a, prompts_b = _prompts(seed=12), _prompts(seed=13, plen=PROMPT_LEN[::-1])
    plen_a, plen_b = jnp.asarray(PROMPT_LEN), jnp.asarray(PROMPT_LEN[::-1].copy())
    keys_a, keys_b = jax.random.split(key_a, B), jax.random.split(key_b, B)  # the keys `generate` uses

    state = reset(params, lm.init_decode_state(CFG, B, POOL_S), jnp.ones(B, bool), prompts_a, plen_a, keys_a)
    state, w1 = window(params, state, sampling=SAMPLING)  # everybody advances WINDOW tokens
    refill = jnp.array([False, True, False, True])
    state = reset(params, state, refill, prompts_b, plen_b, keys_b)  # slots 1, 3 get new prompts mid-flight
    assert int(state.length[1]) == int(plen_b[1]) and int(state.length[0]) == int(plen_a[0]) + WINDOW
    outs = []
    for _ in range(NEW // WINDOW):  # resume
        state, w = window(params, state, sampling=SAMPLING)
        outs.append(w)
    assert bool(state.done.all())

    fresh_a, _ = _gen_fn(SAMPLING)(params, prompts_a, plen_a, key_a)  # reference: start to finish, no reset
    fresh_b, _ = _gen_fn(SAMPLING)(params, prompts_b, plen_b, key_b)
    for b, ref in [(0, fresh_a), (1, fresh_b), (2, fresh_a), (3, fresh_b)]:
        np.testing.assert_array_equal(state.tokens[b], ref.tokens[b])
        assert int(state.length[b]) == int(ref.length[b]) and int(state.prompt_len[b]) == int(ref.prompt_len[b])
    # the log-probs/values of every token generated after the reset match one-pass scoring ...
    _assert_matches_score(params, state, outs)
    # ... and so do the kept slots' tokens from before the reset (their sequences continued across it)
    _assert_matches_score(params, state, [w1.replace(mask=w1.mask & ~refill[:, None])])


def test_resume_with_new_params_after_refresh(params):
    reset, window, refresh = _pool_fns()
    params_b = _params(CFG, seed=42)
    keys = jax.random.split(jax.random.key(20), B)
    state = reset(params, lm.init_decode_state(CFG, B, POOL_S), jnp.ones(B, bool), _prompts(),
                  jnp.asarray(PROMPT_LEN), keys)
    state, w1 = window(params, state, sampling=SAMPLING)
    stale, w2_stale = window(params_b, state, sampling=SAMPLING)  # reuses keys/values of the old params
    state = refresh(params_b, state)
    state, w2 = window(params_b, state, sampling=SAMPLING)
    _assert_matches_score(params, state, [w1])  # old tokens were scored by the old policy
    _assert_matches_score(params_b, state, [w2])  # new tokens by the new one, after the refresh
    assert np.abs(np.asarray(w2_stale.logp - w2.logp)).max() > 1e-4  # the stale cache does change them


def test_vmap_over_seeds_init_and_generate(params):
    sampling = lm.SamplingConfig(max_new_tokens=NEW)
    plen = jnp.asarray(PROMPT_LEN)

    def run(key):
        k_init, k_gen = jax.random.split(key)
        p = init_params(k_init, CFG)
        _, out = lm.generate(p, _prompts(), plen, k_gen, config=CFG, sampling=sampling)
        return p, out

    keys = jax.random.split(jax.random.key(0), 2)
    p, out = jax.jit(jax.vmap(run))(keys)
    assert out.tokens.shape == (2, B, NEW) and out.logp.shape == (2, B, NEW)
    assert not np.array_equal(out.tokens[0], out.tokens[1])
    for i in range(2):  # each seed equals the same run alone
        k_init, k_gen = jax.random.split(keys[i])
        p_i = jax.tree.map(lambda x: x[i], p)
        for a, b in zip(jax.tree.leaves(p_i), jax.tree.leaves(_init_fn(CFG)(k_init))):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)  # jit vs eager: last-bit differences
        _, ref = _gen_fn(sampling)(p_i, _prompts(), plen, k_gen)
        np.testing.assert_array_equal(out.tokens[i], ref.tokens)
        np.testing.assert_allclose(out.logp[i], ref.logp, atol=ATOL)


def test_value_detach_keeps_value_gradients_out_of_the_trunk():
    """``value_detach=True``: a value loss moves only the value head; the values and logits are unchanged."""
    shared, detached = CFG.replace(value_head=True), CFG.replace(value_head=True, value_detach=True)
    params = init_params(jax.random.key(0), shared)
    params["value_head"] = jax.tree.map(lambda x: x + 0.1, params["value_head"])  # non-zero kernel: a real gradient
    tokens = jax.random.randint(jax.random.key(1), (2, 6), 0, VOCAB.size)
    positions = jnp.broadcast_to(jnp.arange(6), (2, 6))

    def value_loss(p, cfg):
        return jnp.sum(apply(p, tokens, positions, causal_mask(6), config=cfg).values ** 2)

    g_shared, g_detached = (jax.grad(value_loss)(params, cfg) for cfg in (shared, detached))
    for name in params:
        norm_s = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g_shared[name]))
        norm_d = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g_detached[name]))
        if name == "value_head":
            np.testing.assert_allclose(norm_d, norm_s, rtol=1e-6)
        else:
            assert norm_s > 0 and norm_d == 0.0, name
    out_s, out_d = (apply(params, tokens, positions, causal_mask(6), config=cfg) for cfg in (shared, detached))
    np.testing.assert_array_equal(out_s.values, out_d.values)
    np.testing.assert_array_equal(out_s.logits, out_d.logits)
