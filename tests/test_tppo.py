"""Truncated PPO (jaxrl_self/algos/tppo.py) and EGAE (jaxrl_self/rl/advantages.py).

* EGAE against hand-computed windows: a response that finishes mid-window, one the window edge cuts
  (``V(s_l) := V(s_{l-1})``, the zero-bootstrap ablation, an explicit bootstrap), one that starts and finishes
  on its first token, an idle slot, γ < 1, per-response λ; and against a plain-Python loop on random windows;
* value targets: the Monte-Carlo return on every token of the finished responses only (or the window's
  λ-returns in the "all" ablation);
* the pool: over several steps every prompt gets a serial number, no response is lost or duplicated, every
  response grows by exactly its window tokens and is scored exactly once, on exactly its tokens;
* the learner: the old log-probs are the behaviour policy's (ratio 1 before the first gradient step); the
  windowed learner recomputes exactly what a full forward pass gives;
* runs: same seed, same metrics; save/restore of the whole RunState mid-pool resumes bit for bit; config errors.

One update program is compiled for the module (a tiny model, 4 slots, windows of 2 tokens).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self import envs, lm
from jaxrl_self.algos import grpo, tppo
from jaxrl_self.core import ConfigError
from jaxrl_self.nets.transformer import TransformerConfig, init_params
from jaxrl_self.rl.advantages import egae, length_adaptive_lambda, window_next_values
from treecheck import assert_bitwise

TASK = envs.make("chain", max_steps_cap=4)  # prompt_len 12
R = 6  # max_new_tokens
TINY = TransformerConfig(num_layers=1, d_model=16, num_heads=2, d_ff=32, max_len=TASK.prompt_len + R,
                         value_head=True)
CONFIG = tppo.Config(num_updates=8, num_slots=4, window=2, max_new_tokens=R, update_epochs=1, num_minibatches=1,
                     learning_rate=1e-3, prompt_layout="packed", value_warmup_updates=1)


# ================================================================================================ EGAE
def _window():
    """Time-major window [T=4, B=4] (see test_egae_hand_computed)."""
    v = np.array([[0.2, 0.5, 0.7, 0.0],
                  [0.4, 0.3, 0.0, 0.0],
                  [0.6, 0.2, 0.0, 0.0],
                  [9.9, 0.6, 9.9, 9.9]], np.float32)  # 9.9: garbage at inactive steps, must not matter
    mask = np.array([[1, 1, 1, 0],
                     [1, 1, 0, 0],
                     [1, 1, 0, 0],
                     [0, 1, 0, 0]], bool)
    finished = np.zeros((4, 4), bool)
    finished[2, 0] = True  # A finishes on its 3rd token
    finished[0, 2] = True  # C: started in this window, finished on its first token
    r = np.zeros((4, 4), np.float32)
    r[2, 0] = 1.0
    r[0, 2] = 1.0
    r[3, 3] = 5.0  # garbage reward on an inactive step
    return r, v, mask, finished


def test_egae_hand_computed():
    r, v, mask, fin = _window()
    adv, ret = egae(r, v, mask, fin, gamma=1.0, gae_lambda=0.5)
    # A (finished at t=2, reward 1): V = .2 .4 .6, next V = .4 .6 0
    #   δ = .2 .2 .4 ; A2 = .4, A1 = .2 + .5*.4 = .4, A0 = .2 + .5*.4 = .4
    # B (cut by the window edge): V = .5 .3 .2 .6, next V = .3 .2 .6 and V(s_l) := V(s_3) = .6
    #   δ = -.2 -.1 .4 0 ; A3 = 0, A2 = .4, A1 = -.1 + .2 = .1, A0 = -.2 + .05 = -.15
    # C (just started, finished at once, reward 1): δ0 = 1 - .7 = .3
    # D (idle slot): nothing
    expected = np.array([[0.4, -0.15, 0.3, 0.0],
                         [0.4, 0.1, 0.0, 0.0],
                         [0.4, 0.4, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(adv, expected, atol=1e-6)
    np.testing.assert_allclose(ret, np.where(mask, expected + v, 0.0), atol=1e-6)
    np.testing.assert_allclose(window_next_values(v, mask, fin),
                               [[0.4, 0.3, 0, 0], [0.6, 0.2, 0, 0], [0, 0.6, 0, 0], [0, 0.6, 0, 0]], atol=1e-7)


def test_egae_zero_and_explicit_bootstrap_hand_computed():
    r, v, mask, fin = _window()
    # zero bootstrap (ablation): B's last δ3 = 0 - .6 = -.6 ; A3 = -.6, A2 = .4 - .3 = .1, A1 = -.1 + .05 = -.05,
    # A0 = -.2 - .025 = -.225 ; finished responses are unchanged
    adv, _ = egae(r, v, mask, fin, 1.0, 0.5, bootstrap_values=np.zeros(4, np.float32))
    np.testing.assert_allclose(adv[:, 1], [-0.225, -0.05, 0.1, -0.6], atol=1e-6)
    np.testing.assert_allclose(adv[:, 0], [0.4, 0.4, 0.4, 0.0], atol=1e-6)
    # an explicit V(s_l) = 1.0: δ3 = .4 ; A2 = .4 + .2 = .6, A1 = -.1 + .3 = .2, A0 = -.2 + .1 = -.1
    adv, _ = egae(r, v, mask, fin, 1.0, 0.5, bootstrap_values=np.ones(4, np.float32))
    np.testing.assert_allclose(adv[:, 1], [-0.1, 0.2, 0.6, 0.4], atol=1e-6)


def test_egae_discount_and_per_response_lambda_hand_computed():
    r, v, mask, fin = _window()
    # γ = .9, λ = .5 for A: δ0 = .9*.4 - .2 = .16, δ1 = .9*.6 - .4 = .14, δ2 = 1 - .6 = .4
    #   A2 = .4, A1 = .14 + .45*.4 = .32, A0 = .16 + .45*.32 = .304
    # γ = .9, λ = 1 for B: δ = .9*.3-.5 = -.23, .9*.2-.3 = -.12, .9*.6-.2 = .34, .9*.6-.6 = -.06
    #   A3 = -.06, A2 = .34 - .054 = .286, A1 = -.12 + .2574 = .1374, A0 = -.23 + .12366 = -.10634
    adv, _ = egae(r, v, mask, fin, 0.9, np.array([0.5, 1.0, 0.0, 0.3], np.float32))
    np.testing.assert_allclose(adv[:3, 0], [0.304, 0.32, 0.4], atol=1e-6)
    np.testing.assert_allclose(adv[:, 1], [-0.10634, 0.1374, 0.286, -0.06], atol=1e-6)
    np.testing.assert_allclose(adv[0, 2], 0.3, atol=1e-6)


def _egae_reference(r, v, mask, fin, gamma, lam, boot):
    """Plain Python: per response, GAE over its active prefix with the EGAE bootstrap."""
    T, B = r.shape
    out = np.zeros((T, B))
    for b in range(B):
        n = int(mask[:, b].sum())
        if n == 0:
            continue
        assert mask[:n, b].all()
        ended = bool(fin[n - 1, b])
        a = 0.0
        for t in reversed(range(n)):
            if t == n - 1:
                nv = 0.0 if ended else (v[t, b] if boot is None else boot[b])
                a = r[t, b] + gamma * nv - v[t, b]
            else:
                a = r[t, b] + gamma * v[t + 1, b] - v[t, b] + gamma * lam[b] * a
            out[t, b] = a
    return out


@pytest.mark.parametrize("use_boot", [False, True])
def test_egae_matches_python_loop_on_random_windows(use_boot):
    rng = np.random.default_rng(0)
    T, B = 7, 16
    n = rng.integers(0, T + 1, B)
    mask = np.arange(T)[:, None] < n[None, :]
    ends = rng.random(B) < 0.5
    fin = mask & (np.arange(T)[:, None] == (n - 1)[None, :]) & ends[None, :]
    r = np.where(fin, rng.normal(size=(T, B)), 0.0).astype(np.float32)
    v = rng.normal(size=(T, B)).astype(np.float32)
    lam = rng.random(B).astype(np.float32)
    boot = rng.normal(size=B).astype(np.float32) if use_boot else None
    adv, ret = egae(r, v, mask, fin, 0.97, lam, bootstrap_values=boot)
    ref = _egae_reference(r, v, mask, fin, 0.97, lam, boot)
    np.testing.assert_allclose(adv, ref, atol=1e-5)
    np.testing.assert_allclose(ret, np.where(mask, ref + v, 0.0), atol=1e-5)


def test_length_adaptive_lambda_hand_computed():
    lam = length_adaptive_lambda(np.array([4, 10, 100, 0]), 1.0)
    np.testing.assert_allclose(lam, [0.75, 0.9, 0.99, 0.0], atol=1e-7)  # length 0 counts as 1: 1 - 1 = 0
    np.testing.assert_allclose(length_adaptive_lambda(np.array([10, 100]), 0.05), [0.0, 0.8], atol=1e-6)


# ================================================================================================ the run
def _biased_params():
    """A tiny random policy whose EOS is likely enough that responses end at every length 1..R."""
    params = init_params(jax.random.key(0), TINY)
    emb = params["embed"]["embedding"]
    params["embed"]["embedding"] = emb.at[TASK.vocab.EOS].multiply(50.0)
    return params


def _token_sum_reward(problem, response, response_mask, key, extras):
    """A reward that depends on every token of the response (to check that exactly it was scored)."""
    del problem, key, extras
    return jnp.sum(jnp.where(response_mask, response, 0)).astype(jnp.float32) / 100.0 + jnp.sum(response_mask)


@pytest.fixture(scope="module")
def run():
    train = tppo.make_train(CONFIG, TASK, reward_fn=_token_sum_reward, init_params=_biased_params(),
                            model_config=TINY)
    init = jax.jit(train.init)
    state0 = init(jax.random.key(3))
    update = jax.jit(train.update).lower(state0).compile()
    return train, init, update, state0


def _steps(update, state, n):
    states, metrics = [state], []
    for _ in range(n):
        state, m = update(state)
        states.append(state)
        metrics.append(jax.device_get(m))
    return states, metrics


def test_pool_bookkeeping_no_response_lost_or_duplicated(run):
    _, _, update, state0 = run
    states, metrics = _steps(update, state0, CONFIG.num_updates)
    l, B = CONFIG.window, CONFIG.num_slots
    responses: dict[int, list[int]] = {}  # prompt id -> tokens accumulated window by window
    prompts: dict[int, np.ndarray] = {}
    finished: list[int] = []
    mid_window_finishes = 0
    for k in range(1, len(states)):
        prev, cur, m = jax.device_get(states[k - 1]), jax.device_get(states[k]), metrics[k - 1]
        ps, cs = prev.pool.slots, cur.pool.slots
        refilled = ps.done
        # 1. refilled slots get the next serial numbers, in slot order; the others keep theirs
        n_new = int(refilled.sum())
        assert int(cur.prompts_issued) == int(prev.prompts_issued) + n_new
        np.testing.assert_array_equal(cur.pool.prompt_id[refilled],
                                      np.arange(int(prev.prompts_issued), int(cur.prompts_issued)))
        np.testing.assert_array_equal(cur.pool.prompt_id[~refilled], prev.pool.prompt_id[~refilled])
        # 2. every slot generated one window: the buffer before it is kept, the new tokens are appended
        grown = 0
        for b in range(B):
            pid = int(cur.pool.prompt_id[b])
            start = int(cs.prompt_len[b]) if refilled[b] else int(ps.length[b])
            if refilled[b]:
                assert pid not in responses
                plen = int(cs.prompt_len[b])
                prompts[pid] = cs.tokens[b, :plen]
                np.testing.assert_array_equal(cs.tokens[b, :plen], cur.pool.problem.prompt[b, :plen])
                responses[pid] = []
            else:
                np.testing.assert_array_equal(cs.tokens[b, :start], ps.tokens[b, :start])
            new = cs.tokens[b, start:int(cs.length[b])]
            assert 1 <= len(new) <= l
            assert len(new) == l or cs.done[b]  # a slot stops early only when its response finished
            mid_window_finishes += int(len(new) < l)
            responses[pid].extend(new.tolist())
            grown += len(new)
            np.testing.assert_array_equal(cs.tokens[b, cs.prompt_len[b]:cs.length[b]], responses[pid])
        assert int(m.window_tokens) == grown and int(cur.env_steps) == int(prev.env_steps) + grown
        # 3. the slots done now finished in this step and were scored exactly once, on exactly their tokens
        done_ids = cur.pool.prompt_id[cs.done].tolist()
        assert not set(done_ids) & set(finished), "a response was scored twice"
        finished.extend(done_ids)
        assert int(m.num_finished) == len(done_ids)
        assert int(cur.responses_finished) == int(prev.responses_finished) + len(done_ids)
        if done_ids:
            want = [np.sum(responses[i]) / 100.0 + len(responses[i]) for i in done_ids]
            np.testing.assert_allclose(float(m.episode_return), np.mean(want), rtol=1e-6)
            for i in done_ids:
                toks = responses[i]
                assert len(toks) == R or toks[-1] == TASK.vocab.EOS
                assert TASK.vocab.EOS not in toks[:-1]
        else:
            assert not bool(m.episode_return_valid) and np.isnan(m.episode_return)
    # 4. every issued prompt is either finished (once) or in flight (once): nothing lost, nothing duplicated
    last = jax.device_get(states[-1])
    in_flight = last.pool.prompt_id[~last.pool.slots.done].tolist()
    assert sorted(finished + in_flight) == list(range(int(last.prompts_issued)))
    assert len(finished) >= B and mid_window_finishes > 0  # the run exercised refills and mid-window ends


def test_first_gradient_step_sees_the_behaviour_policy(run):
    # update_epochs = num_minibatches = 1: the only minibatch is evaluated at θ_old, where the learner's log-probs
    # (a full forward over the refreshed buffer) equal the sampler's, so the ratio is 1
    _, _, update, state0 = run
    _, metrics = _steps(update, state0, 3)
    for m in metrics:
        assert abs(float(m.approx_kl)) < 1e-6 and float(m.clip_fraction) == 0.0


def test_value_warmup_trains_only_the_value_head(run):
    _, _, update, state0 = run
    states, _ = _steps(update, state0, 2)  # value_warmup_updates = 1: step 1 warms up, step 2 trains everything
    def changed(a, b):
        return {k: any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a[k]), jax.tree.leaves(b[k])))
                for k in a}

    first, second = changed(states[0].params, states[1].params), changed(states[1].params, states[2].params)
    assert first.pop("value_head") and not any(first.values())
    assert second["value_head"] and all(v for k, v in second.items() if k.startswith("block"))


def test_same_seed_same_metrics_and_seed_matters(run):
    _, init, update, state0 = run
    s1, m1 = _steps(update, state0, 3)
    s2, m2 = _steps(update, init(jax.random.key(3)), 3)
    for a, b in zip(jax.tree.leaves((m1, s1[-1].params)), jax.tree.leaves((m2, s2[-1].params))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    s3, _ = _steps(update, init(jax.random.key(4)), 1)
    assert not np.array_equal(np.asarray(s3[-1].pool.slots.tokens), np.asarray(s1[1].pool.slots.tokens))


@pytest.fixture(scope="module")
def run_separate():
    """The same run with ``value_model="separate"``: a second network, initialised as a copy, learns the value
    (and a learning-rate warm-up over 3 steps)."""
    train = tppo.make_train(CONFIG.replace(value_model="separate", value_warmup_updates=2, warmup_updates=3), TASK,
                            reward_fn=_token_sum_reward,
                            init_params=_biased_params(), model_config=TINY)
    init = jax.jit(train.init)
    state0 = init(jax.random.key(3))
    update = jax.jit(train.update).lower(state0).compile()
    return train, init, update, state0


def _changed(a, b):
    return {k: any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a[k]), jax.tree.leaves(b[k]))) for k in a}


def test_separate_value_network_warms_up_alone_and_never_moves_the_policy_head(run_separate):
    _, _, update, state0 = run_separate
    for a, b in zip(jax.tree.leaves(state0.params), jax.tree.leaves(state0.value_params)):
        np.testing.assert_array_equal(a, b)  # the value network starts as a copy of the initial policy
    states, metrics = _steps(update, state0, 4)  # value_warmup_updates = 2
    warm_pi, warm_v = _changed(states[0].params, states[2].params), _changed(states[0].value_params,
                                                                             states[2].value_params)
    assert not any(warm_pi.values()), "the policy moved during the value warm-up"
    # the whole value network learns (its trunk from the second step on: the fresh head's kernel starts at zero)
    assert all(warm_v.values()), warm_v
    # the frozen policy's Adam state does not advance during the warm-up (no step count without gradients)
    policy_opt = lambda st: st.opt_state.inner_states["policy"]  # noqa: E731
    assert_bitwise(policy_opt(states[2]), policy_opt(states[0]))
    counts = [int(x) for x in jax.tree.leaves(policy_opt(states[3])) if np.ndim(x) == 0]
    assert counts and all(c == CONFIG.update_epochs * CONFIG.num_minibatches for c in counts)
    after_pi = _changed(states[2].params, states[4].params)
    assert after_pi.pop("value_head") is False  # the policy's own value head is unused
    assert all(after_pi.values()) and all(_changed(states[2].value_params, states[4].value_params).values())
    for m in metrics:  # the policy that sampled the window scores it at the first (only) minibatch: ratio 1
        assert abs(float(m.approx_kl)) < 1e-6 and float(m.clip_fraction) == 0.0


def test_logged_learning_rate_is_the_scheduled_one(run_separate):
    """T-PPO logs the warm-up's learning rate, as GRPO and token PPO do (it used to log the constant peak)."""
    _, _, update, state0 = run_separate
    _, metrics = _steps(update, state0, 4)
    lr = CONFIG.learning_rate
    np.testing.assert_allclose([float(m.learning_rate) for m in metrics], [lr / 3, 2 * lr / 3, lr, lr], rtol=1e-6)


def test_separate_value_network_supplies_the_window_values_and_bootstrap(run_separate):
    _, _, update, state0 = run_separate
    states, _ = _steps(update, state0, 2)
    state = states[-1]
    value_params = jax.tree.map(lambda x: x * 1.1, state.value_params)  # clearly not the policy's head
    cfg = CONFIG.replace(value_model="separate", bootstrap="exact")
    pool, _, window = tppo.collect_window(
        jax.random.key(5), state.params, state.pool, state.prompts_issued, config=cfg, task=TASK,
        task_params=lm.task_params_for(cfg, TASK), model_config=TINY, prompt_layout=cfg.prompt_layout,
        reward_fn=_token_sum_reward, value_params=value_params)
    slots = pool.slots
    S = slots.tokens.shape[1]
    ref = lm.score(value_params, slots.tokens, slots.prompt_len, jnp.full_like(slots.length, S), config=TINY).values
    m = np.asarray(window.mask)
    want = np.take_along_axis(np.asarray(ref), np.clip(np.asarray(window.position), 0, S - 1), axis=1)
    np.testing.assert_allclose(np.where(m, window.values, 0), np.where(m, want, 0), atol=2e-5)
    cut = ~np.asarray(window.done)
    assert cut.any()
    after = lm.score(value_params, slots.tokens, slots.prompt_len, jnp.full_like(slots.length, S),
                     config=TINY)  # V(s_l) = the value that position `length` would have (the next token's state)
    boot = np.take_along_axis(np.asarray(after.values), np.asarray(slots.length)[:, None], axis=1)[:, 0]
    np.testing.assert_allclose(np.asarray(window.bootstrap)[cut], boot[cut], atol=2e-5)
    head = np.take_along_axis(np.asarray(lm.score(state.params, slots.tokens, slots.prompt_len,
                                                  jnp.full_like(slots.length, S), config=TINY).values),
                              np.clip(np.asarray(window.position), 0, S - 1), axis=1)
    assert not np.allclose(np.where(m, window.values, 0), np.where(m, head, 0))


@pytest.mark.parametrize("fixture", ["run", "run_separate"])
def test_resume_mid_pool_is_bitwise(fixture, request, tmp_path):
    from jaxrl_self.run.checkpoint import Checkpointer

    _, _, update, state0 = request.getfixturevalue(fixture)
    full, m_full = _steps(update, state0, 4)
    half, _ = _steps(update, state0, 2)
    mid = half[-1]
    assert not bool(jnp.all(mid.pool.slots.done)) and bool(jnp.any(mid.pool.slots.response_len > 0))  # mid-pool
    with Checkpointer(tmp_path / "ckpt", keep=1) as ckpt:
        ckpt.save(2, mid, {"algo": "tppo"})
        step, restored, _ = ckpt.restore(jax.eval_shape(lambda: state0))
    assert step == 2
    resumed, m_resumed = _steps(update, restored, 2)
    assert_bitwise(full[-1], resumed[-1])  # parameters (both networks), Adam state, RNG, the pool...
    assert_bitwise(m_full[2:], m_resumed)


# ================================================================================================ learner pieces
def test_window_scores_equal_a_full_forward(run):
    _, _, update, state0 = run
    states, _ = _steps(update, state0, 2)
    slots = lm.refresh_cache(states[-1].params, states[-1].pool.slots, config=TINY)
    params = states[-1].params
    S = slots.tokens.shape[1]
    full = lm.score(params, slots.tokens, slots.prompt_len, jnp.full_like(slots.length, S), config=TINY,
                    with_entropy=True)
    l = 3
    for start in (slots.prompt_len, jnp.full_like(slots.length, S - 1)):  # window after the prompt; at the end
        logp, ent, val = jax.jit(lambda p, t, c, s: tppo.window_scores(p, t, c, s, l, config=TINY))(
            params, slots.tokens, slots.cache, start)
        pos = start[:, None] + jnp.arange(l)[None, :]
        ok = pos < S
        pos = jnp.minimum(pos, S - 1)
        for got, ref in ((logp, full.logp), (ent, full.entropy), (val, full.values)):
            want = jnp.take_along_axis(ref, pos, axis=1)
            np.testing.assert_allclose(np.where(ok, got, 0), np.where(ok, want, 0), atol=2e-5)


def _fake_window(B, l, done, reward, length):
    z = jnp.zeros((B, l))
    return tppo.Window(prompt_id=jnp.arange(B), start=length - 1, tokens=z.astype(jnp.int32), mask=z > 1,
                       logp=z, values=z, finished=z > 1, position=z.astype(jnp.int32), done=jnp.asarray(done),
                       reward=jnp.asarray(reward, jnp.float32), correct=jnp.asarray(done),
                       format_valid=jnp.asarray(done), response_len=length, bootstrap=jnp.zeros(B))


def test_value_targets_are_monte_carlo_returns_of_finished_responses_only(run):
    _, _, _, state0 = run
    pool = state0.pool
    B, S = pool.slots.tokens.shape
    plen = jnp.array([3, 4, 5, 2])
    length = plen + jnp.array([4, 2, 6, 3])
    slots = pool.slots.replace(prompt_len=plen, length=length)
    values = jax.random.normal(jax.random.key(0), (B, S))
    pool = pool.replace(slots=slots, values=values)
    done = np.array([True, False, True, False])
    window = _fake_window(B, 2, done, [1.0, 0.0, 2.0, 0.0], length - plen)
    cfg = CONFIG.replace(gamma=0.9)
    mask, target = tppo.value_targets(cfg, window, pool)
    want_mask = np.zeros((B, S), bool)
    want = np.zeros((B, S), np.float32)
    for b, r in ((0, 1.0), (2, 2.0)):  # G_t = γ^(n-1-t) r on every token of a finished response
        n = int(length[b] - plen[b])
        want_mask[b, plen[b]:length[b]] = True
        want[b, plen[b]:length[b]] = r * 0.9 ** np.arange(n - 1, -1, -1)
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_allclose(np.where(want_mask, target, 0), want, atol=1e-5)


def test_loss_denominator_and_policy_tokens_reweight_exactly(run):
    """``loss_denominator="window"`` turns the policy and value token means into token sums over the minibatch's
    window tokens; ``policy_tokens="finished"`` trains the policy only on rows whose response finished. Checked
    on a real batch (a few steps into the run, so that some windows are cut and some finished) against the
    token-mean loss recomputed from the same per-token inputs."""
    _, _, update, state0 = run
    states, _ = _steps(update, state0, 3)
    state = states[-1]
    cfg = CONFIG.replace(normalize_advantages=False)
    window_out = tppo.collect_window(jax.random.key(5), state.params, state.pool, state.prompts_issued, config=cfg,
                                     task=TASK, task_params=lm.task_params_for(cfg, TASK), model_config=TINY,
                                     prompt_layout=cfg.prompt_layout, reward_fn=_token_sum_reward)
    pool, _, window = window_out
    adv, _ = tppo.window_advantages(cfg, window, cfg.policy_lambda)
    v_mask, v_target = tppo.value_targets(cfg, window, pool)
    done = np.asarray(window.done)
    assert done.any() and not done.all(), "the check needs both finished and cut windows"

    def loss(**over):
        c = cfg.replace(**over)
        batch = tppo.make_batch(c, window, pool, adv, v_mask, v_target)
        total, aux = tppo.tppo_loss(c, TINY, state.params, batch)
        return {**aux, "loss": total}, batch

    mean_all, b_all = loss(loss_denominator="tokens")
    sum_all, _ = loss(loss_denominator="window")
    mean_fin, b_fin = loss(loss_denominator="tokens", policy_tokens="finished")
    sum_fin, _ = loss(loss_denominator="window", policy_tokens="finished")
    n_window = float(np.sum(np.asarray(window.mask)))
    n_value = float(np.sum(np.asarray(v_mask)))
    n_fin = float(np.sum(np.asarray(window.mask) & done[:, None]))
    np.testing.assert_array_equal(np.asarray(b_all.policy_mask), np.asarray(window.mask))
    np.testing.assert_array_equal(np.asarray(b_fin.policy_mask), np.asarray(window.mask) & done[:, None])
    # the logged losses are token means either way; the optimised total weighs them by tokens / window tokens
    for a, b in ((sum_all, mean_all), (sum_fin, mean_fin)):
        for k in ("policy_loss", "value_loss"):
            np.testing.assert_allclose(float(a[k]), float(b[k]), rtol=1e-6)
    vf = cfg.vf_coef
    np.testing.assert_allclose(float(sum_all["loss"]), float(mean_all["policy_loss"])
                               + vf * float(mean_all["value_loss"]) * n_value / n_window, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(sum_fin["loss"]), float(mean_fin["policy_loss"]) * n_fin / n_window
                               + vf * float(mean_fin["value_loss"]) * n_value / n_window, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(mean_fin["loss"]), float(mean_fin["policy_loss"])
                               + vf * float(mean_fin["value_loss"]), rtol=1e-5, atol=1e-7)
    # the finished-only policy loss is the token mean of the PPO surrogate over the finished rows (ratio 1 here:
    # the parameters that sampled the window score it, so the surrogate is -A)
    want = -np.sum(np.where(np.asarray(window.mask) & done[:, None], np.asarray(adv), 0.0)) / n_fin
    np.testing.assert_allclose(float(mean_fin["policy_loss"]), want, rtol=1e-4, atol=1e-6)


# ================================================================================================ configuration
@pytest.mark.parametrize("field, value, message", [
    ("window", 0, "positive integer"),
    ("window", R + 1, "max_new_tokens"),
    ("num_minibatches", 3, "divisor of num_slots"),
    ("learner", "partial", "one of"),
    ("bootstrap", "last", "one of"),
    ("value_tokens", "some", "one of"),
    ("value_model", "twin", "one of"),
    ("policy_tokens", "cut", "one of"),
    ("loss_denominator", "batch", "one of"),
    ("policy_lambda", 1.5, "[0, 1]"),
])
def test_config_errors_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=field) as e:
        tppo.make_train(CONFIG.replace(**{field: value}), TASK, init_params=_biased_params(), model_config=TINY)
    assert message in str(e.value)


def test_group_reward_and_non_sequence_env_are_rejected():
    with pytest.raises(ConfigError, match="reward_fn"):
        tppo.make_train(CONFIG, TASK, reward_fn=grpo.group_reward(lambda *a: 0.0), init_params=_biased_params(),
                        model_config=TINY)
    with pytest.raises(ConfigError, match="SequenceTask"):
        CONFIG.validate(envs.make("cartpole"))


def test_cli_knows_tppo(capsys):
    from jaxrl_self.cli import main

    assert main(["train", "tppo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--window" in out and "--value-tokens" in out and "--task" in out
    assert main(["train", "tppo", "--task", "chain", "--window", "0"]) == 2
    assert "window" in capsys.readouterr().err
