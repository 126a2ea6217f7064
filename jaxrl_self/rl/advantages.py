"""Advantage estimators over time-major rollouts.

Conventions shared by every function here (and by :mod:`jaxrl_self.rl.rollout`):

* Arrays are **time-major**: ``[T, ...]`` where ``T`` is the rollout length and ``...`` any batch shape
  (``[T, N]`` for ``N`` environments, ``[T, B]`` for ``B`` token sequences). Time runs along axis 0.
* Step ``t`` is the transition ``(s_t, a_t) -> (r_t, s'_t)``. ``s'_t`` is the observation the transition
  *arrived at*, before any auto-reset: the environment's ``info["final_obs"]``. When the episode goes on,
  ``s'_t = s_{t+1}``; when it ended, ``s_{t+1}`` is the first observation of the next episode.
* ``terminated[t]``: ``s'_t`` is terminal, its value is 0: **no bootstrap**.
* ``done[t] = terminated[t] | truncated[t]``: the episode ended at step ``t`` for whatever reason: the
  λ-return **trace is cut** (nothing after ``t`` belongs to this episode).
* ``next_values[t] = V(s'_t)``. A truncated step (time limit) keeps its bootstrap ``γ V(s'_t)``, so the
  value of ``s'_t`` must be the value of the *final* observation, not of the reset one. For the last step of
  a rollout, ``next_values[T-1]`` is simply ``V(s_T)`` (or ``V(final_obs)`` if the episode ended there), so
  the rollout edge needs no special case.

Other estimators (truncated-window EGAE, group-relative advantages for GRPO/RLOO) belong in this module as
further small functions with the same conventions.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["gae", "td_errors", "bootstrap_next_values", "discounted_returns", "token_rewards", "token_gae"]


def td_errors(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    gamma: float | jax.Array,
) -> jax.Array:
    """One-step TD errors ``δ_t = r_t + γ (1 - terminated_t) V(s'_t) - V(s_t)``.

    All inputs ``[T, ...]`` (``terminated`` bool); returns float32 ``[T, ...]``.
    """
    not_term = 1.0 - jnp.asarray(terminated, jnp.float32)
    return rewards + gamma * not_term * next_values - values


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
    unroll: int = 8,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al., 2016), truncation-aware.

    ``A_t = δ_t + γ λ (1 - done_t) A_{t+1}`` with ``A_T = 0`` and ``δ_t`` from :func:`td_errors`.

    Args:
      rewards: ``[T, ...]`` float32, ``r_t``.
      values: ``[T, ...]`` float32, ``V(s_t)`` under the policy that collected the data.
      next_values: ``[T, ...]`` float32, ``V(s'_t)`` (value of ``final_obs``; see the module docstring).
      terminated: ``[T, ...]`` bool, ``s'_t`` is terminal (no bootstrap).
      done: ``[T, ...]`` bool, the episode ended at ``t`` (terminated or truncated): cut the trace.
      gamma, gae_lambda: scalars (may be traced).
      unroll: ``lax.scan`` unroll factor (speed only).

    Returns:
      ``(advantages, returns)``, both ``[T, ...]`` float32; ``returns = advantages + values`` are the λ-return
      targets for the value function.
    """
    deltas = td_errors(rewards, values, next_values, terminated, gamma)
    decay = gamma * gae_lambda * (1.0 - jnp.asarray(done, jnp.float32))

    def step(next_adv, xs):
        delta, k = xs
        adv = delta + k * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(
        step, jnp.zeros_like(deltas[0]), (deltas, decay), reverse=True, unroll=min(unroll, deltas.shape[0])
    )
    return advantages, advantages + values


def bootstrap_next_values(
    values: jax.Array, last_value: jax.Array, final_values: jax.Array, done: jax.Array
) -> jax.Array:
    """``V(s'_t)`` from the values the rollout already has.

    ``next_values[t] = final_values[t]`` where the episode ended at ``t`` (the value of ``final_obs``), else
    ``values[t+1]`` (with ``values[T] = last_value``, the value of the observation after the rollout).

    Shapes: ``values``/``final_values``/``done`` ``[T, ...]``, ``last_value`` ``[...]``. Useful when
    ``V(final_obs)`` is only computed where episodes ended; when it is available for every step (e.g. computed
    in one batched pass after the rollout) it *is* ``next_values`` and this function is not needed.
    """
    following = jnp.concatenate([values[1:], last_value[None]], axis=0)
    return jnp.where(done, final_values, following)


def discounted_returns(
    rewards: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: float | jax.Array,
) -> jax.Array:
    """Monte-Carlo returns ``G_t = r_t + γ G_{t+1}`` within each episode, bootstrapped where the data stops.

    A terminated step ends with ``G_t = r_t``; a truncated step with ``r_t + γ V(s'_t)``; the last step of the
    rollout (if the episode goes on) with ``r_{T-1} + γ V(s_T)``. This is GAE with λ = 1 written out; it is
    kept as its own function for readability and as a reference for tests and MaxMC-style scores.
    """
    not_term = 1.0 - jnp.asarray(terminated, jnp.float32)
    not_done = 1.0 - jnp.asarray(done, jnp.float32)
    # bootstrap only where the trace stops (episode end or rollout edge)
    is_last = jnp.zeros_like(not_done).at[-1].set(1.0)
    boot = gamma * not_term * next_values * jnp.maximum(1.0 - not_done, is_last)

    def step(next_ret, xs):
        r, b, nd = xs
        ret = r + b + gamma * nd * next_ret
        return ret, ret

    cont = not_done.at[-1].set(0.0)
    _, returns = jax.lax.scan(step, jnp.zeros_like(rewards[0]), (rewards, boot, cont), reverse=True)
    return returns


# =====================================================================================================================
# Truncated windows: EGAE (Truncated PPO, Fan et al. 2025, arXiv:2506.15050)
# =====================================================================================================================
# A window is ``T = l`` consecutive generation steps of ``B`` responses (time-major ``[T, B]``, any batch shape
# after the time axis). Per response, the window's active tokens form a prefix (``mask``); the response either
# *finishes* inside the window (its last active token has ``finished = True``: EOS or the length limit, a terminal
# state, value 0 after it) or is *cut* by the window edge and continues in a later window. EGAE is GAE on the
# window with the unknown value at the cut replaced by ``V(s_l) := V(s_{l-1})``, the value of the state the last
# generated token was chosen in.
__all__ += ["egae", "window_next_values", "length_adaptive_lambda"]


def window_next_values(
    values: jax.Array, mask: jax.Array, finished: jax.Array, bootstrap_values: jax.Array | None = None
) -> jax.Array:
    """``V(s_{t+1})`` for every token of a window (time-major ``[T, ...]``), as EGAE defines it.

    * inside a response: the value of the next token's state, ``values[t + 1]``;
    * after a token that finished its response (``finished[t]``): 0 (terminal);
    * after the last token of a response the window edge cuts (active at ``t``, not finished, not active at
      ``t + 1``): ``bootstrap_values`` (``[...]``) if given, else ``values[t]``, i.e. ``V(s_l) := V(s_{l-1})``.

    Entries where ``~mask`` are 0. ``mask`` must be a prefix along the time axis per response.
    """
    m = jnp.asarray(mask, bool)
    fin = jnp.asarray(finished, bool) & m
    v = jnp.where(m, values, 0.0).astype(jnp.float32)
    following_active = jnp.concatenate([m[1:], jnp.zeros_like(m[:1])], axis=0)
    following = jnp.concatenate([v[1:], jnp.zeros_like(v[:1])], axis=0)
    cut = m & ~fin & ~following_active
    boot = v if bootstrap_values is None else jnp.broadcast_to(jnp.asarray(bootstrap_values, jnp.float32), v.shape)
    out = jnp.where(following_active, following, jnp.where(cut, boot, 0.0))
    return jnp.where(m & ~fin, out, 0.0)


def egae(
    rewards: jax.Array,
    values: jax.Array,
    mask: jax.Array,
    finished: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
    bootstrap_values: jax.Array | None = None,
    unroll: int = 8,
) -> tuple[jax.Array, jax.Array]:
    """Extended GAE over one window of generation steps (time-major ``[T, ...]``).

    ``A_t = δ_t + γ λ A_{t+1}`` within each response's active tokens, ``δ_t = r_t + γ V(s_{t+1}) − V(s_t)``, with
    ``V(s_{t+1})`` from :func:`window_next_values`: 0 after a finishing token (ordinary GAE with the terminal
    reward), ``V(s_{l-1})`` after the last token of a response that the window edge cuts (EGAE's
    ``V(s_l) := V(s_{l-1})``; pass ``bootstrap_values`` to use another value there, e.g. zeros for the
    "standard GAE with zero bootstrap" ablation or the exactly computed ``V(s_l)``). The trace stops at the
    last active token of every response.

    Args:
      rewards: ``[T, ...]`` float32 per-token rewards (the task reward on the finishing token, 0 elsewhere).
      values: ``[T, ...]`` float32 ``V(s_t)``, the value of the state token ``t`` was chosen in.
      mask: ``[T, ...]`` bool, the token was generated in this window (a prefix per response).
      finished: ``[T, ...]`` bool, the token ended its response (EOS or the length limit).
      gamma: discount (scalar, may be traced).
      gae_lambda: λ, a scalar or ``[...]`` (one per response, e.g. :func:`length_adaptive_lambda`).
      bootstrap_values: optional ``[...]`` value of the state after the window for cut responses.
      unroll: ``lax.scan`` unroll factor (speed only).

    Returns:
      ``(advantages, returns)``, ``[T, ...]`` float32, 0 where ``~mask``; ``returns = advantages + values`` are the
      λ-return targets (for a value trained on the window's tokens).
    """
    m = jnp.asarray(mask, bool)
    fin = jnp.asarray(finished, bool) & m
    v = jnp.where(m, values, 0.0).astype(jnp.float32)
    r = jnp.where(m, rewards, 0.0).astype(jnp.float32)
    next_v = window_next_values(v, m, fin, bootstrap_values)
    following_active = jnp.concatenate([m[1:], jnp.zeros_like(m[:1])], axis=0)
    done = fin | ~following_active | ~m  # the λ-trace stops after a response's last token in the window
    lam = jnp.broadcast_to(jnp.asarray(gae_lambda, jnp.float32), v.shape[1:])
    adv, _ = gae(r, v, next_v, fin, done, gamma, lam, unroll=unroll)
    adv = jnp.where(m, adv, 0.0)
    return adv, jnp.where(m, adv + v, 0.0)


def length_adaptive_lambda(length: jax.Array, alpha: float | jax.Array) -> jax.Array:
    """VAPO's length-adaptive λ (Yue et al., 2025): ``λ = 1 − 1 / (α · length)``, clipped to ``[0, 1]``.

    ``length`` (any shape, int or float) is the number of response tokens; ``alpha > 0`` sets how fast λ
    approaches 1 with length (VAPO uses 0.05 for responses of thousands of tokens; responses of tens of tokens
    need ``alpha`` around 1). Returns float32 of ``length``'s shape.
    """
    length = jnp.maximum(jnp.asarray(length, jnp.float32), 1.0)
    return jnp.clip(1.0 - 1.0 / (jnp.asarray(alpha, jnp.float32) * length), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- response tokens
# Language-model responses are batch-major rows ``[N, R]`` with a prefix mask (True on the generated tokens);
# every token is an action and the state after a response's last token is terminal.
def token_rewards(reward: jax.Array, mask: jax.Array, kl_penalty: jax.Array | None = None) -> jax.Array:
    """Per-token rewards ``[N, R]``: the response reward ``reward [N]`` at the last token of each response
    (``mask [N, R]``, a prefix mask), plus ``kl_penalty [N, R]`` (e.g. ``−β (log π_old − log π_ref)``) on every
    response token; 0 outside the response (and for a response with no token)."""
    m = jnp.asarray(mask, bool)
    length = jnp.sum(m, axis=-1)
    last = jnp.arange(m.shape[-1])[None, :] == (length - 1)[:, None]
    r = jnp.where(last & m, reward[:, None].astype(jnp.float32), 0.0)
    if kl_penalty is not None:
        r = r + jnp.where(m, kl_penalty, 0.0)
    return r


def token_gae(rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float | jax.Array,
              gae_lambda: float | jax.Array) -> tuple[jax.Array, jax.Array]:
    """GAE over the response tokens of each row; the state after the last token is terminal (value 0).

    Args:
      rewards: ``[N, R]`` per-token rewards (:func:`token_rewards`).
      values: ``[N, R]`` ``V(s_t)``, the value of the state token ``t`` was chosen in.
      mask: ``[N, R]`` bool prefix mask of the response tokens.
      gamma, gae_lambda: scalars (may be traced).

    Returns:
      ``(advantages, returns)``, ``[N, R]`` float32, 0 outside the response; ``returns = advantages + values``.
      Computed with :func:`gae` on time-major ``[R, N]`` arrays with ``V(s_{t+1})`` taken from the next token
      and the last token marked terminated (which also cuts the λ-trace).
    """
    m = jnp.asarray(mask, bool)
    v = jnp.where(m, values, 0.0).astype(jnp.float32)
    r = jnp.where(m, rewards, 0.0).astype(jnp.float32)
    next_m = jnp.concatenate([m[:, 1:], jnp.zeros_like(m[:, :1])], axis=1)
    next_v = jnp.concatenate([v[:, 1:], jnp.zeros_like(v[:, :1])], axis=1)
    end = m & ~next_m  # the last response token: s_{t+1} is terminal
    done = end | ~m
    adv, _ = gae(r.T, v.T, jnp.where(next_m, next_v, 0.0).T, done.T, done.T, gamma, gae_lambda)
    adv = jnp.where(m, adv.T, 0.0)
    return adv, jnp.where(m, adv + v, 0.0)
