"""PAIRED's adversary network (Dennis et al., 2020; minimax's ``GridWorldACTeacherModel``, jaxued's
``AdversaryActorCritic``) for the :class:`~jaxrl_self.envs.maze.MazeEditor` observations.

::

    image [.., H, W, 3] -> conv(F, 3x3, VALID) + ReLU -> flatten ─┐
    time  [..] int      -> embedding(n_steps + 1 -> 10)          ─┼─ concat -> LSTM(256) -> actor: 32 -> H*W
    noise [.., Z]                                                 ─┘                      -> critic: 32 -> 1

minimax's teacher: 128 conv filters on the padded ``15 x 15`` map (so ``13 x 13 x 128`` features), a 10-d
embedding of the time step, the 50-d noise, an LSTM with 256 units and heads with one hidden layer of 32.
Here the conv reads the ``13 x 13`` inner grid (``11 x 11 x F`` features; the border is constant), and the
heads are those of :class:`~jaxrl_self.nets.actor_critic.RecurrentActorCritic`. With ``F = 128`` the LSTM's
input projection (``15 548 x 1024``) holds almost all of the ~16M parameters: PAIRED's adversary is by far
the most expensive of its three networks.

The module is a :class:`~jaxrl_self.nets.actor_critic.RecurrentActorCritic` (same ``apply(params, carry, obs,
first) -> (carry, logits, value)`` contract, same LSTM and heads), so PPO's rollout, value and learning
functions (:mod:`jaxrl_self.algos.ppo`) run it unchanged.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.initializers import orthogonal

from jaxrl_self.nets.conv import PatchConv
from jaxrl_self.nets.actor_critic import ACTIVATIONS, LSTM, RecurrentActorCritic, _dense

__all__ = ["AdversaryEncoder", "AdversaryActorCritic"]


class AdversaryEncoder(nn.Module):
    """``obs["image"]`` ``[..., H, W, C]`` through conv(``conv_features``, 3x3, VALID) + ReLU, flattened; an
    embedding of ``obs["time"]`` ``[...]`` (clipped to ``[0, num_time_steps - 1]``); ``obs["noise"]``
    ``[..., Z]`` as is. Returns their concatenation ``[..., features]``."""

    num_time_steps: int
    conv_features: int = 128
    time_embed_dim: int = 10

    @nn.compact
    def __call__(self, obs: Any) -> jax.Array:
        image = jnp.asarray(obs["image"], jnp.float32)
        lead = image.shape[:-3]
        # nn.Conv(conv_features, (3, 3), padding="VALID") (its default init), as a matmul of patches
        x = PatchConv(self.conv_features, 3, kernel_init=nn.initializers.lecun_normal(), name="conv")(
            image.reshape((-1,) + image.shape[-3:]))
        x = nn.relu(x).reshape(lead + (-1,))
        t = jnp.clip(jnp.asarray(obs["time"], jnp.int32), 0, self.num_time_steps - 1)
        t = nn.Embed(self.num_time_steps, self.time_embed_dim, embedding_init=orthogonal(1.0), name="time_embed")(t)
        noise = jnp.asarray(obs["noise"], jnp.float32)  # [..., Z]
        return jnp.concatenate([x, t, noise], axis=-1)


class AdversaryActorCritic(RecurrentActorCritic):
    """:class:`AdversaryEncoder` -> LSTM -> actor/critic heads. ``num_actions`` = cells of the grid;
    ``num_time_steps`` = the editor's ``n_steps + 1`` (observed times run from 0 to ``n_steps``)."""

    num_time_steps: int = 63
    conv_features: int = 128
    time_embed_dim: int = 10
    encoder: str = "adversary"

    @nn.compact
    def __call__(self, carry, obs: Any, first: jax.Array):
        x = AdversaryEncoder(self.num_time_steps, self.conv_features, self.time_embed_dim, name="encoder")(obs)
        carry, h = LSTM(self.lstm_features, name="lstm")(carry, x, first)
        act = ACTIVATIONS[self.head_activation]
        hidden = act(_dense(self.head_hidden, 2.0, name="actor_hidden")(h))
        logits = _dense(self.num_actions, 0.01, name="actor_out")(hidden)
        value = _dense(1, 1.0, name="critic_out")(act(_dense(self.head_hidden, 2.0, name="critic_hidden")(h)))
        return carry, logits, value[..., 0]
