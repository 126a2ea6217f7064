"""Level buffer (PLR / robust PLR / ACCEL): weights, sampling, replay gate, insertion, duplicates, vmap.

Expected weights are written out from the papers' formulas in plain numpy; insertions are traced by hand.
Configs are passed to the jitted functions as pytrees, so the numeric fields (temperature, ρ, replay_prob,
fill ratio) are traced and one compiled program serves every value.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from scipy import stats as sps

from jaxrl_self.core import ConfigError
from jaxrl_self.curricula import LevelBuffer, LevelSampler, LevelSamplerConfig


@struct.dataclass
class ToyLevel:
    """A small generic level pytree: an id and a grid."""

    ident: jax.Array  # int32[]
    grid: jax.Array  # bool[2, 2]


def toy(i: int) -> ToyLevel:
    return ToyLevel(ident=jnp.int32(i), grid=jnp.asarray(np.array([[i & 1, i & 2], [i & 4, 0]], bool)))


def toy_batch(ids) -> ToyLevel:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[toy(i) for i in ids])


def make_buffer(cap, scores, timestamps, clock, max_returns=None) -> LevelBuffer:
    """A buffer with ``len(scores)`` filled slots, built directly (for weight tests)."""
    n = len(scores)
    pad = cap - n
    return LevelBuffer(
        levels=toy_batch(range(cap)),
        scores=jnp.asarray(list(scores) + [0.0] * pad, jnp.float32),
        max_returns=jnp.asarray((list(max_returns) if max_returns is not None else [0.0] * n) + [-np.inf] * pad,
                                jnp.float32),
        timestamps=jnp.asarray(list(timestamps) + [0] * pad, jnp.int32),
        size=jnp.int32(n),
        clock=jnp.int32(clock),
    )


# --------------------------------------------------------------------------- reference maths (numpy)
def ref_ranks(scores):
    """1-based ranks by descending score, ties by lower index first."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = np.empty(len(scores), np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def ref_weights(cap, scores, timestamps, clock, temperature, rho, prioritization="rank", k=1):
    n = len(scores)
    out = np.zeros(cap)
    if n == 0:
        return out
    ranks = ref_ranks(np.asarray(scores, np.float64))
    if prioritization == "rank":
        h = (1.0 / ranks) ** (1.0 / temperature)
    else:
        h = (ranks <= k).astype(np.float64)
    p_s = h / h.sum()
    stale = clock - np.asarray(timestamps, np.float64)
    p_c = stale / stale.sum() if stale.sum() > 0 else np.full(n, 1.0 / n)
    out[:n] = (1 - rho) * p_s + rho * p_c
    return out


# --------------------------------------------------------------------------- shared compiled functions
CAP = 6


def level_weights(cfg, buf):
    return LevelSampler(cfg).level_weights(buf)


weights_fn = jax.jit(level_weights)


@jax.jit
def insert_batch_fn(cfg, buf, levels, scores, max_returns, valid):
    return LevelSampler(cfg).insert_batch(buf, levels, scores, max_returns, valid)


def cfg(**kw) -> LevelSamplerConfig:
    base = dict(capacity=CAP, temperature=1.0, staleness_coef=0.0, replay_prob=0.8, minimum_fill_ratio=0.5)
    base.update(kw)
    return LevelSamplerConfig(**base)


def empty_buffer(config) -> LevelBuffer:
    return LevelSampler(config).initialize(toy(0))


# --------------------------------------------------------------------------- config
def test_config_is_hashable_and_validated():
    a, b = LevelSamplerConfig(capacity=8), LevelSamplerConfig(capacity=8)
    assert hash(a) == hash(b) and a == b
    bad = [
        (dict(capacity=0), "capacity"),
        (dict(prioritization="softmax"), "prioritization"),
        (dict(top_k=0), "top_k"),
        (dict(temperature=0.0), "temperature"),
        (dict(staleness_coef=1.5), "staleness_coef"),
        (dict(replay_prob=-0.1), "replay_prob"),
        (dict(minimum_fill_ratio=2.0), "minimum_fill_ratio"),
    ]
    for kwargs, field in bad:
        with pytest.raises(ConfigError, match=field) as err:
            LevelSampler(LevelSamplerConfig(**kwargs))
        assert err.value.field == field


# --------------------------------------------------------------------------- weights
def test_rank_weights_explicit_numbers():
    # scores [3, 1, 2, 1] -> ranks [1, 3, 2, 4] (the tie at 1.0: slot 1 before slot 3)
    buf = make_buffer(5, [3.0, 1.0, 2.0, 1.0], timestamps=[8, 2, 10, 5], clock=10)
    p_s = np.array([12, 4, 6, 3, 0]) / 25  # h = [1, 1/3, 1/2, 1/4], Σ = 25/12
    p_c = np.array([2, 8, 0, 5, 0]) / 15  # staleness [2, 8, 0, 5]
    np.testing.assert_allclose(weights_fn(cfg(capacity=5, temperature=1.0, staleness_coef=0.0), buf), p_s, rtol=1e-6)
    np.testing.assert_allclose(weights_fn(cfg(capacity=5, temperature=1.0, staleness_coef=1.0), buf), p_c, rtol=1e-6)
    np.testing.assert_allclose(weights_fn(cfg(capacity=5, temperature=1.0, staleness_coef=0.3), buf),
                               0.7 * p_s + 0.3 * p_c, rtol=1e-6)
    # temperature 0.5: h = [1, 1/9, 1/4, 1/16], Σ = 205/144
    np.testing.assert_allclose(weights_fn(cfg(capacity=5, temperature=0.5, staleness_coef=0.0), buf),
                               np.array([144, 16, 36, 9, 0]) / 205, rtol=1e-6)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("rho", [0.0, 0.3, 1.0])
def test_rank_weights_match_formula(temperature, rho):
    scores = [0.5, 2.0, -1.0, 2.0, 0.1]  # a tie (slots 1, 3), a negative score, one empty slot
    ts, clock = [3, 7, 1, 9, 4], 9
    buf = make_buffer(CAP, scores, ts, clock)
    w = np.asarray(weights_fn(cfg(temperature=temperature, staleness_coef=rho), buf))
    np.testing.assert_allclose(w, ref_weights(CAP, scores, ts, clock, temperature, rho), rtol=1e-5, atol=1e-7)
    assert w[-1] == 0.0 and abs(w.sum() - 1) < 1e-6


@pytest.mark.parametrize("k", [1, 2, 4, 10])
def test_topk_weights(k):
    scores, ts, clock = [0.5, 2.0, -1.0, 2.0, 0.1], [3, 7, 1, 9, 4], 9
    buf = make_buffer(CAP, scores, ts, clock)
    for rho in (0.0, 0.3):
        w = np.asarray(weights_fn(cfg(prioritization="topk", top_k=k, staleness_coef=rho), buf))
        np.testing.assert_allclose(w, ref_weights(CAP, scores, ts, clock, 1.0, rho, "topk", k), rtol=1e-5, atol=1e-7)
    if k == 2:  # the two tied best slots share P_S
        w = np.asarray(weights_fn(cfg(prioritization="topk", top_k=2), buf))
        np.testing.assert_allclose(w, [0, 0.5, 0, 0.5, 0, 0], atol=1e-7)


def test_empty_single_and_ties():
    c = cfg(staleness_coef=0.3)
    np.testing.assert_array_equal(weights_fn(c, empty_buffer(c)), np.zeros(CAP))
    # one filled slot, staleness 0 (the uniform fallback) and staleness > 0
    for clock in (4, 9):
        w = weights_fn(c, make_buffer(CAP, [-3.0], [4], clock))
        np.testing.assert_allclose(w, [1, 0, 0, 0, 0, 0], atol=1e-7)
    # all scores tied: ranks follow slot order; -0.0 ties with 0.0
    buf = make_buffer(CAP, [0.0, -0.0, 0.0, 0.0], [1, 2, 3, 4], 4)
    np.testing.assert_array_equal(LevelSampler(c).ranks(buf)[:4], [1, 2, 3, 4])
    w = np.asarray(weights_fn(cfg(staleness_coef=0.0), buf))
    np.testing.assert_allclose(w[:4], np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (25 / 12), rtol=1e-6)


# --------------------------------------------------------------------------- sampling
def test_sampling_updates_staleness():
    c = cfg(staleness_coef=0.5)
    buf = make_buffer(CAP, [1.0, 2.0, 3.0, 4.0], [1, 2, 3, 4], 4)
    new, idx, levels = jax.jit(lambda b, k: LevelSampler(c).sample_replay_levels(b, k, 3))(buf, jax.random.key(3))
    idx = np.asarray(idx)
    assert int(new.clock) == 7 and idx.shape == (3,) and np.all(idx < 4)
    expected_ts = np.array([1, 2, 3, 4, 0, 0])
    for j, i in enumerate(idx):  # the j-th draw is visit 5 + j
        expected_ts[i] = 5 + j
    np.testing.assert_array_equal(new.timestamps, expected_ts)
    np.testing.assert_array_equal(levels.ident, idx)  # the returned levels are the drawn slots
    np.testing.assert_array_equal(new.scores, buf.scores)


def test_sampling_frequencies_match_weights():
    """Chi-square goodness of fit of 20k draws against level_weights."""
    scores, ts, clock = [0.5, 2.0, -1.0, 2.0, 0.1], [3, 7, 1, 9, 4], 9
    buf = make_buffer(CAP, scores, ts, clock)
    n = 20_000

    # (a) ρ = 0: P_replay does not change between the draws of one call, so one call gives i.i.d. draws.
    c0 = cfg(temperature=0.7, staleness_coef=0.0)
    _, idx, _ = jax.jit(lambda b, k: LevelSampler(c0).sample_replay_levels(b, k, n))(buf, jax.random.key(0))
    # (b) ρ = 0.4: one draw from the same buffer per key.
    c1 = cfg(temperature=0.7, staleness_coef=0.4)
    keys = jax.random.split(jax.random.key(1), n)
    idx1 = jax.jit(jax.vmap(lambda k: LevelSampler(c1).sample_replay_levels(buf, k, 1)[1][0]))(keys)
    for c, draws in ((c0, idx), (c1, idx1)):
        p = np.asarray(weights_fn(c, buf), np.float64)
        counts = np.bincount(np.asarray(draws), minlength=CAP)
        assert counts[p == 0].sum() == 0  # empty slots are never drawn
        support = p > 0
        chi2 = (((counts[support] - n * p[support]) ** 2) / (n * p[support])).sum()
        assert sps.chi2.sf(chi2, df=support.sum() - 1) > 1e-3, (counts, n * p)


def test_replay_decision_gate():
    c = cfg(capacity=4, replay_prob=0.3, minimum_fill_ratio=0.5)
    keys = jax.random.split(jax.random.key(2), 4000)
    decide = jax.jit(jax.vmap(lambda b, k: LevelSampler(c).sample_replay_decision(b, k), in_axes=(None, 0)))
    buf = empty_buffer(c)
    rates = []
    for i in range(4):
        rates.append(float(decide(buf, keys).mean()))
        buf, _ = insert_batch_fn(c, buf, toy_batch([i]), jnp.array([1.0 + i]), jnp.zeros(1), jnp.ones(1, bool))
    rates.append(float(decide(buf, keys).mean()))
    assert rates[:2] == [0.0, 0.0]  # size 0, 1 of 4 < 0.5
    for r in rates[2:]:  # size 2, 3, 4: replay_prob, within 4 standard errors
        assert abs(r - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 4000)
    # a minimum fill ratio of 0 still never replays from an empty buffer
    c0 = cfg(capacity=4, replay_prob=1.0, minimum_fill_ratio=0.0)
    assert not bool(LevelSampler(c0).sample_replay_decision(LevelSampler(c0).initialize(toy(0)), keys[0]))


# --------------------------------------------------------------------------- insertion
def test_insert_into_free_slots_and_invalid():
    c = cfg()
    buf, idx = insert_batch_fn(c, empty_buffer(c), toy_batch([10, 11, 12, 13]), jnp.array([1.0, 2.0, 3.0, jnp.nan]),
                               jnp.array([5.0, 6.0, 7.0, 8.0]), jnp.array([True, False, True, True]))
    # level 11 has no completed episode, level 13 a NaN score: neither is inserted
    np.testing.assert_array_equal(idx, [0, -1, 1, -1])
    assert int(buf.size) == 2 and int(buf.clock) == 4
    np.testing.assert_array_equal(buf.levels.ident[:2], [10, 12])
    np.testing.assert_array_equal(buf.scores[:2], [1.0, 3.0])
    np.testing.assert_array_equal(buf.max_returns[:2], [5.0, 7.0])
    np.testing.assert_array_equal(buf.timestamps[:2], [1, 3])  # stamped with the clock of their visit


def test_replacement_when_full():
    c = cfg(capacity=4, temperature=1.0, staleness_coef=0.5)
    # slot 0 has the lowest score but is very stale, so the lowest replay weight is slot 2 (second-lowest score)
    scores, ts, clock = [0.1, 5.0, 1.0, 3.0], [1, 20, 30, 25], 30
    buf = make_buffer(4, scores, ts, clock)
    w = ref_weights(4, scores, ts, clock, 1.0, 0.5)
    assert np.argmin(w) == 2 and np.argmin(scores) == 0
    # a score below / equal to the candidate's (1.0) is rejected; the clock still advances
    for s in (0.5, 1.0):
        new, idx = insert_batch_fn(c, buf, toy_batch([7]), jnp.array([s]), jnp.array([0.0]), jnp.array([True]))
        assert int(idx[0]) == -1 and int(new.clock) == clock + 1
        np.testing.assert_array_equal(new.scores, buf.scores)
        np.testing.assert_array_equal(new.levels.ident, buf.levels.ident)
    # a higher score replaces the lowest-weighted slot
    new, idx = insert_batch_fn(c, buf, toy_batch([7]), jnp.array([1.5]), jnp.array([0.25]), jnp.array([True]))
    assert int(idx[0]) == 2 and int(new.size) == 4
    np.testing.assert_array_equal(new.levels.ident, [0, 1, 7, 3])
    np.testing.assert_array_equal(new.scores, np.float32([0.1, 5.0, 1.5, 3.0]))
    assert float(new.max_returns[2]) == 0.25 and int(new.timestamps[2]) == clock + 1
    # sequential batch: each insertion recomputes the weights of the buffer as it is then
    seq, idx = insert_batch_fn(c, buf, toy_batch([7, 8]), jnp.array([1.5, 9.0]), jnp.zeros(2), jnp.ones(2, bool))
    s1 = [0.1, 5.0, 1.5, 3.0]
    w1 = ref_weights(4, s1, [1, 20, 31, 25], 31, 1.0, 0.5)
    assert int(idx[1]) == int(np.argmin(w1))


def test_duplicates_update_existing_entry():
    c = cfg(capacity=4)
    levels = toy_batch([1, 2, 1, 3, 2, 1])
    scores = jnp.array([1.0, 2.0, 0.5, 3.0, 4.0, 6.0])
    max_returns = jnp.array([0.3, 0.2, 0.9, 0.0, 0.1, 0.4])
    valid = jnp.array([True, True, True, True, True, False])
    buf, idx = insert_batch_fn(c, empty_buffer(c), levels, scores, max_returns, valid)
    # 1 -> slot 0, 2 -> slot 1, 1 again -> update slot 0, 3 -> slot 2, 2 again -> update slot 1, invalid 1 -> -1
    np.testing.assert_array_equal(idx, [0, 1, 0, 2, 1, -1])
    assert int(buf.size) == 3 and int(buf.clock) == 6
    np.testing.assert_array_equal(buf.levels.ident[:3], [1, 2, 3])
    np.testing.assert_array_equal(buf.scores[:3], [0.5, 4.0, 3.0])  # latest score
    np.testing.assert_allclose(buf.max_returns[:3], [0.9, 0.2, 0.0])  # running max
    np.testing.assert_array_equal(buf.timestamps[:3], [3, 5, 4])  # stamped at the duplicate's visit
    # a duplicate of a stored level updates it even when the buffer is full and the score is low
    full, _ = insert_batch_fn(c, buf, toy_batch([4]), jnp.array([5.0]), jnp.array([0.0]), jnp.array([True]))
    full, idx = insert_batch_fn(c, full, toy_batch([2]), jnp.array([-7.0]), jnp.array([1.0]), jnp.array([True]))
    assert int(idx[0]) == 1 and float(full.scores[1]) == -7.0 and float(full.max_returns[1]) == 1.0
    # without the check, copies take their own slots
    c2 = cfg(capacity=4, duplicate_check=False)
    buf2, idx2 = insert_batch_fn(c2, empty_buffer(c2), toy_batch([1, 1]), jnp.array([1.0, 2.0]), jnp.zeros(2),
                                 jnp.ones(2, bool))
    np.testing.assert_array_equal(idx2, [0, 1])


def test_duplicate_check_on_maze_levels():
    from jaxrl_self.envs.maze.level import Level

    def maze(walls, goal, agent, d):
        w = np.zeros((13, 13), bool)
        for y, x in walls:
            w[y, x] = True
        return Level(wall_map=jnp.asarray(w), goal_pos=jnp.array(goal, jnp.int32),
                     agent_pos=jnp.array(agent, jnp.int32), agent_dir=jnp.int32(d))

    a = maze([(1, 1), (2, 2)], (5, 5), (0, 0), 0)
    b = maze([(1, 1), (2, 2)], (5, 5), (0, 0), 1)  # differs only in the agent's direction
    c_ = maze([(1, 1)], (5, 5), (0, 0), 0)  # differs only in one wall
    sampler = LevelSampler(LevelSamplerConfig(capacity=4))
    levels = jax.tree.map(lambda *xs: jnp.stack(xs), a, b, c_, a)
    buf, idx = jax.jit(sampler.insert_batch)(sampler.initialize(a), levels, jnp.arange(4.0), jnp.zeros(4))
    np.testing.assert_array_equal(idx, [0, 1, 2, 0])
    assert int(buf.size) == 3 and int(sampler.find(buf, c_)) == 2


def test_update_scores_after_replay():
    c = cfg()
    buf = make_buffer(CAP, [1.0, 2.0, 3.0], [1, 2, 3], 3, max_returns=[0.5, 0.5, 0.5])
    new = jax.jit(lambda b: LevelSampler(c).update_scores(
        b, jnp.array([2, 0, 2, 1]), jnp.array([7.0, 8.0, 9.0, 4.0]), jnp.array([0.2, 0.9, 0.6, 3.0]),
        jnp.array([True, True, True, False])))(buf)
    np.testing.assert_array_equal(new.scores[:3], [8.0, 2.0, 9.0])  # slot 2 drawn twice: the later score wins
    np.testing.assert_allclose(new.max_returns[:3], [0.9, 0.5, 0.6])  # max(stored, new); slot 1 invalid
    np.testing.assert_array_equal(new.timestamps, buf.timestamps)
    assert int(new.clock) == 3


def test_extra_data_and_stats():
    sampler = LevelSampler(cfg(capacity=3, staleness_coef=0.0))
    buf = sampler.initialize(toy(0), example_extra=jnp.int32(0))
    buf, idx = jax.jit(sampler.insert_batch)(buf, toy_batch([1, 2, 1]), jnp.array([1.0, 3.0, 2.0]),
                                             jnp.array([0.5, 1.5, 0.7]), extras=jnp.array([4, 5, 6], jnp.int32))
    np.testing.assert_array_equal(idx, [0, 1, 0])
    np.testing.assert_array_equal(sampler.get_extra(buf, jnp.array([0, 1])), [4, 5])  # duplicate keeps its extra
    stats_fn = jax.jit(sampler.stats)
    st = stats_fn(buf)
    assert int(st.size) == 2 and abs(float(st.fill_ratio) - 2 / 3) < 1e-6
    assert float(st.mean_score) == 2.5 and float(st.min_score) == 2.0 and float(st.max_score) == 3.0
    w = ref_weights(3, [2.0, 3.0], [3, 2], 3, 1.0, 0.0)
    np.testing.assert_allclose(float(st.weighted_score), w[0] * 2.0 + w[1] * 3.0, rtol=1e-6)
    np.testing.assert_allclose(float(st.mean_staleness), 0.5)
    np.testing.assert_allclose(float(st.mean_max_return), (0.7 + 1.5) / 2, rtol=1e-6)
    empty = stats_fn(sampler.initialize(toy(0), example_extra=jnp.int32(0)))
    assert all(np.isfinite(np.asarray(v)).all() and float(v) == 0 for v in jax.tree.leaves(empty))
    with pytest.raises(ValueError, match="extra"):
        sampler.insert(buf, toy(3), 1.0, 0.0)


# --------------------------------------------------------------------------- vmap over seeds
def test_vmap_over_buffers():
    c = cfg(capacity=4, staleness_coef=0.3, temperature=0.5)
    sampler = LevelSampler(c)

    def run(buf, key, ids, scores):
        k1, k2 = jax.random.split(key)
        buf, idx = sampler.insert_batch(buf, toy_batch_traced(ids), scores, scores * 0.5, scores > 0)
        replay = sampler.sample_replay_decision(buf, k1)
        buf, ridx, _ = sampler.sample_replay_levels(buf, k2, 2)
        return buf, idx, ridx, replay, sampler.level_weights(buf)

    def toy_batch_traced(ids):
        return ToyLevel(ident=ids, grid=jnp.zeros((ids.shape[0], 2, 2), bool))

    ids = jnp.array([[1, 2, 3, 4, 5, 6], [1, 1, 2, 2, 3, 3], [9, 8, 7, 6, 5, 4]], jnp.int32)
    scores = jnp.array([[1.0, 2, 3, 4, 5, 6], [1, 2, 3, -1, 5, 6], [6, 5, 4, 3, 2, 1]], jnp.float32)
    keys = jax.random.split(jax.random.key(5), 3)
    bufs = jax.vmap(lambda _: sampler.initialize(toy(0)))(jnp.arange(3))
    batched = jax.jit(jax.vmap(run))(bufs, keys, ids, scores)
    run_single = jax.jit(run)
    for s in range(3):
        single = run_single(sampler.initialize(toy(0)), keys[s], ids[s], scores[s])
        for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            np.testing.assert_allclose(np.asarray(got[s]), np.asarray(want), rtol=1e-6)
    np.testing.assert_array_equal(batched[0].size, [4, 3, 4])


def test_vmap_over_configs_is_a_sweep():
    """Numeric config fields are pytree leaves: a stacked batch of configs vmaps (one program)."""
    scores, ts, clock = [0.5, 2.0, -1.0, 2.0, 0.1], [3, 7, 1, 9, 4], 9
    buf = make_buffer(CAP, scores, ts, clock)
    grid = [(0.5, 0.0), (1.0, 0.3), (2.0, 1.0)]
    configs = jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *[cfg(temperature=t, staleness_coef=r)
                                                                       for t, r in grid])
    w = jax.jit(jax.vmap(level_weights, in_axes=(0, None)))(configs, buf)
    for row, (t, r) in zip(np.asarray(w), grid):
        np.testing.assert_allclose(row, ref_weights(CAP, scores, ts, clock, t, r), rtol=1e-5, atol=1e-7)
