"""Actor-critic networks (Flax Linen).

Two families for discrete actions, both returning *logits* (the algorithm builds the distribution) and a scalar
value, and one for continuous actions:

* :class:`MLPActorCritic`: separate actor and critic MLPs on a flat observation (PPO's classic control
  network: 64-64 tanh, orthogonal init with gain sqrt(2), actor output gain 0.01, critic output gain 1).
  ``apply(params, obs) -> (logits, value)``; ``method="actor"`` / ``method="critic"`` run one half only.
* :class:`RecurrentActorCritic`: an observation encoder, an :class:`LSTM` and separate actor/critic heads.
  With ``encoder="maze"`` it is the maze student of minimax / jaxued: a 3x3 conv with 16 filters (VALID, ReLU)
  on the agent's egocentric ``5x5x3`` view, the facing direction (0..3) one-hot encoded and projected to 5
  features, concatenated, an LSTM with 256 units, then actor and critic heads with one hidden layer of 32
  ReLU units. ``encoder="mlp"`` replaces the conv by a dense layer on a flat observation (for small POMDPs).

  ``apply(params, carry, obs, first) -> (carry, logits, value)`` runs a whole sequence: ``obs`` leaves are
  time-major ``[T, N, ...]``, ``first`` is ``[T, N]`` bool (the LSTM state is reset to zeros *before*
  processing a step whose ``first`` is true), ``carry`` is the LSTM state ``(c, h)``, each ``[N, H]``.
  One environment step is the ``T = 1`` case.

* :class:`GaussianMLPActorCritic`: :class:`MLPActorCritic` whose actor outputs the mean of a diagonal Gaussian
  (output gain 0.01) and a state-independent log standard deviation (a parameter ``[A]``, initialised to
  ``log_std_init`` = 0), as PureJaxRL's ``ppo_continuous_action.py``; ``actor`` returns a :class:`GaussianPolicy`.

Observations may be float or integer; they are cast to float32 inside.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.linen.initializers import constant

from jaxrl_self.nets.conv import PatchConv
from jaxrl_self.nets.initializers import lecun_normal, orthogonal

from jaxrl_self.nets.recurrence import lstm_sequence

__all__ = ["MLPActorCritic", "GaussianMLPActorCritic", "GaussianPolicy", "RecurrentActorCritic", "LSTM", "MazeEncoder", "MLPEncoder", "ACTIVATIONS"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu}
_SQRT2 = float(np.sqrt(2.0))


def _dense(features: int, scale: float, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, kernel_init=orthogonal(scale), bias_init=constant(0.0), name=name)


class _Torso(nn.Module):
    """Dense layers with orthogonal(sqrt 2) init, each followed by the activation."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for i, width in enumerate(self.hidden_sizes):
            x = act(_dense(width, _SQRT2, name=f"dense_{i}")(x))
        return x


class MLPActorCritic(nn.Module):
    """Separate actor and critic MLPs. ``obs``: ``[..., D]`` float; returns ``logits [..., A]``, ``value [...]``."""

    num_actions: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"

    def setup(self):
        self.actor_torso = _Torso(tuple(self.hidden_sizes), self.activation)
        self.actor_out = _dense(self.num_actions, 0.01)
        self.critic_torso = _Torso(tuple(self.hidden_sizes), self.activation)
        self.critic_out = _dense(1, 1.0)

    def actor(self, obs: jax.Array) -> jax.Array:
        return self.actor_out(self.actor_torso(jnp.asarray(obs, jnp.float32)))

    def critic(self, obs: jax.Array) -> jax.Array:
        return self.critic_out(self.critic_torso(jnp.asarray(obs, jnp.float32)))[..., 0]

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.actor(obs), self.critic(obs)


class LSTM(nn.Module):
    """An LSTM over a time-major sequence with per-step resets.

    ``carry = (c, h)``, each ``[N, H]``; ``x``: ``[T, N, F]``; ``first``: ``[T, N]`` bool. Before step ``t``, rows
    with ``first[t]`` restart from zeros. Gates ``i, f, g, o``:
    ``c' = σ(f) c + σ(i) tanh(g)``, ``h' = σ(o) tanh(c')``. The input projection ``x W_x + b`` of all ``T`` steps
    is one batched matmul outside the time loop; only ``h W_h`` runs step by step.
    Init: ``W_x`` lecun-normal, ``W_h`` orthogonal, bias 0 (as Flax's ``LSTMCell``; the initialisers are
    :mod:`jaxrl_self.nets.initializers`, Flax's distributions with a faster compile).

    Returns ``(carry, h_seq)``: the final state and the ``[T, N, H]`` outputs.
    """

    features: int = 256

    @nn.compact
    def __call__(self, carry, x: jax.Array, first: jax.Array):
        hdim = self.features
        gates_x = nn.Dense(4 * hdim, kernel_init=lecun_normal(), name="input")(x)  # [T, N, 4H]
        w_h = self.param("recurrent_kernel", orthogonal(), (hdim, 4 * hdim))

        # the time loop (a lax.scan) with a backward pass that keeps dW_h out of the loop: jaxrl_self.nets.recurrence
        return lstm_sequence(w_h, gates_x, first, carry)

    @staticmethod
    def initial_carry(batch_size: int, features: int = 256) -> tuple[jax.Array, jax.Array]:
        z = jnp.zeros((batch_size, features), jnp.float32)
        return z, z


class MazeEncoder(nn.Module):
    """minimax/jaxued maze encoder: conv(16, 3x3, VALID) + ReLU on ``obs["image"]`` ``[..., 5, 5, 3]``, flattened,
    concatenated with a 5-d projection of the one-hot facing direction ``obs["agent_dir"]`` ``[...]`` (0..3)
    when that key is present."""

    conv_features: int = 16
    dir_features: int = 5
    num_directions: int = 4

    @nn.compact
    def __call__(self, obs: Any) -> jax.Array:
        image = jnp.asarray(obs["image"], jnp.float32)
        lead = image.shape[:-3]
        # = nn.Conv(conv_features, (3, 3), padding="VALID") with the same parameters, as a matmul of patches
        # (XLA:CPU's conv weight gradient is far slower inside the PPO epoch loop: jaxrl_self.nets.conv)
        x = PatchConv(self.conv_features, 3, kernel_init=lecun_normal(), name="conv")(
            image.reshape((-1,) + image.shape[-3:])
        )
        x = nn.relu(x).reshape(lead + (-1,))
        if "agent_dir" in obs:
            d = jax.nn.one_hot(obs["agent_dir"], self.num_directions, dtype=jnp.float32)
            x = jnp.concatenate([x, _dense(self.dir_features, _SQRT2, name="dir_embed")(d)], axis=-1)
        return x


class MLPEncoder(nn.Module):
    """Dense layers on a flat observation ``[..., D]`` (for recurrent agents on small vector POMDPs)."""

    hidden_sizes: Sequence[int] = (64,)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return _Torso(tuple(self.hidden_sizes), self.activation, name="torso")(jnp.asarray(obs, jnp.float32))


@struct.dataclass
class GaussianPolicy:
    """A diagonal Gaussian policy's parameters: ``mean [..., A]`` and ``log_std`` (``[A]``, broadcast over the
    batch). The maths is in :mod:`jaxrl_self.rl.distributions`."""

    mean: jax.Array
    log_std: jax.Array


class GaussianMLPActorCritic(MLPActorCritic):
    """:class:`MLPActorCritic` for continuous actions: ``num_actions`` is the action dimension, ``actor`` returns a
    :class:`GaussianPolicy` (mean from the actor MLP, state-independent ``log_std`` parameter)."""

    log_std_init: float = 0.0

    def setup(self):
        super().setup()
        self.log_std = self.param("log_std", constant(self.log_std_init), (self.num_actions,))

    def actor(self, obs: jax.Array) -> GaussianPolicy:
        return GaussianPolicy(mean=super().actor(obs), log_std=self.log_std)


class RecurrentActorCritic(nn.Module):
    """Encoder -> :class:`LSTM` -> separate actor and critic heads. See the module docstring."""

    num_actions: int
    encoder: str = "maze"  # "maze" (conv on the image + direction embedding) or "mlp"
    lstm_features: int = 256
    head_hidden: int = 32
    head_activation: str = "relu"
    encoder_hidden: Sequence[int] = (64,)

    @nn.compact
    def __call__(self, carry, obs: Any, first: jax.Array):
        if self.encoder == "maze":
            x = MazeEncoder(name="encoder")(obs)
        elif self.encoder == "mlp":
            x = MLPEncoder(tuple(self.encoder_hidden), name="encoder")(obs)
        else:
            raise ValueError(f"RecurrentActorCritic.encoder={self.encoder!r}; allowed: 'maze', 'mlp'")
        carry, h = LSTM(self.lstm_features, name="lstm")(carry, x, first)
        act = ACTIVATIONS[self.head_activation]
        logits = _dense(self.num_actions, 0.01, name="actor_out")(act(_dense(self.head_hidden, 2.0, name="actor_hidden")(h)))
        value = _dense(1, 1.0, name="critic_out")(act(_dense(self.head_hidden, 2.0, name="critic_hidden")(h)))
        return carry, logits, value[..., 0]

    def initial_carry(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
        return LSTM.initial_carry(batch_size, self.lstm_features)
