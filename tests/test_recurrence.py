"""The LSTM recurrence with a hand-written backward pass equals the plain scan, values and gradients."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_self.nets.actor_critic import LSTM
from jaxrl_self.nets.recurrence import lstm_sequence, lstm_sequence_reference

OPT0 = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}  # tiny programs: compile fast


def jit(f):
    return jax.jit(f, compiler_options=OPT0)


def _problem(t=12, n=3, h=5, seed=0):
    ks = jax.random.split(jax.random.key(seed), 5)
    w_h = jax.random.normal(ks[0], (h, 4 * h)) * 0.4
    gates_x = jax.random.normal(ks[1], (t, n, 4 * h))
    first = (jax.random.uniform(ks[2], (t, n)) < 0.25).at[0, 0].set(True)
    carry = (jax.random.normal(ks[3], (n, h)), jax.random.normal(ks[4], (n, h)))
    return w_h, gates_x, first, carry


def _loss(fn, w_h, gates_x, first, carry):
    (c, h), h_seq = fn(w_h, gates_x, first, carry)
    weights = jnp.cos(jnp.arange(h_seq.size, dtype=jnp.float32)).reshape(h_seq.shape)
    return jnp.sum(weights * h_seq) + jnp.sum(jnp.sin(c)) + 0.5 * jnp.sum(h * h)


def test_values_are_those_of_the_plain_scan():
    w_h, gates_x, first, carry = _problem()
    out = jit(lstm_sequence)(w_h, gates_x, first, carry)
    ref = jit(lstm_sequence_reference)(w_h, gates_x, first, carry)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gradients_match_autodiff_of_the_plain_scan():
    args = _problem()
    grad = jit(jax.grad(lambda *a: _loss(lstm_sequence, *a), argnums=(0, 1, 3)))
    ref = jit(jax.grad(lambda *a: _loss(lstm_sequence_reference, *a), argnums=(0, 1, 3)))
    got, want = grad(*args), ref(*args)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    # a reset cuts the gradient: the initial state of a sequence reset at t = 0 gets none
    d_c0, d_h0 = got[2]
    assert np.all(np.asarray(d_c0)[0] == 0) and np.all(np.asarray(d_h0)[0] == 0)
    assert np.any(np.asarray(d_c0)[1:] != 0)


def test_the_lstm_module_uses_it_under_vmap():
    """The Flax LSTM (used by every recurrent agent) gives the reference gradient, also under vmap."""
    t, n, f, h = 7, 2, 3, 4
    lstm = LSTM(h)
    x = jax.random.normal(jax.random.key(1), (2, t, n, f))
    first = jnp.zeros((2, t, n), bool).at[:, 3, 1].set(True)
    carry = LSTM.initial_carry(n, h)
    params = lstm.init(jax.random.key(2), carry, x[0], first[0])

    def loss(p, xs, fs):
        _, hs = lstm.apply(p, carry, xs, fs)
        return jnp.sum(jnp.tanh(hs) * jnp.arange(h))

    def ref_loss(p, xs, fs):
        gates = xs @ p["params"]["input"]["kernel"] + p["params"]["input"]["bias"]
        _, hs = lstm_sequence_reference(p["params"]["recurrent_kernel"], gates, fs, carry)
        return jnp.sum(jnp.tanh(hs) * jnp.arange(h))

    got = jit(jax.vmap(jax.grad(loss), (None, 0, 0)))(params, x, first)
    want = jit(jax.vmap(jax.grad(ref_loss), (None, 0, 0)))(params, x, first)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
