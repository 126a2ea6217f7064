"""A tiny algorithm that satisfies the runner's interface, for fast runner / CLI / sweep tests.

Online linear regression: each update draws a batch ``x ~ N(0, I)``, targets ``y = x @ w_true + noise``, and
takes one Adam step on the squared error. "Return" is ``-loss``; it is marked valid only on even updates, to
exercise the masking of placeholder values. ``poison_update`` injects a NaN loss at that update (for the
non-finite tests). Static fields fix shapes; ``lr`` / ``noise`` / ``poison_update`` are traced, so configs can
be stacked and vmapped (a sweep).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_self.core import ConfigError, Train

NAME = "toy"


@struct.dataclass
class Config:
    lr: float = 0.05
    """Adam learning rate."""
    noise: float = 0.1
    """Target noise std."""
    poison_update: int = -1
    """Inject a NaN loss at this update index (-1: never)."""
    num_features: int = struct.field(pytree_node=False, default=4)
    """Regression dimension (static)."""
    batch_size: int = struct.field(pytree_node=False, default=8)
    """Samples per update (static)."""
    num_updates: int = struct.field(pytree_node=False, default=20)
    """Number of updates (static)."""

    def validate(self, env=None) -> None:
        for name in ("num_features", "batch_size", "num_updates"):
            v = getattr(self, name)
            if v < 1:
                raise ConfigError(name, v, "an integer >= 1")
        if not isinstance(self.lr, jax.core.Tracer) and not self.lr > 0:
            raise ConfigError("lr", self.lr, "a float > 0")


@struct.dataclass
class RunState:
    params: jax.Array
    opt_state: optax.OptState
    rng: jax.Array
    w_true: jax.Array
    update_step: jax.Array
    nonfinite_update: jax.Array


@struct.dataclass
class Metrics:
    env_steps: jax.Array
    loss: jax.Array
    episode_return: jax.Array
    episode_return_valid: jax.Array


def make_train(config: Config, env=None, env_params=None) -> Train:
    config.validate(env)
    opt = optax.adam(config.lr)

    def init(key):
        k_true, k_rng = jax.random.split(key)
        params = jnp.zeros((config.num_features,), jnp.float32)
        return RunState(params, opt.init(params), k_rng,
                        jax.random.normal(k_true, (config.num_features,)),
                        jnp.int32(0), jnp.int32(-1))

    def update(s: RunState):
        rng, kx, kn = jax.random.split(s.rng, 3)
        x = jax.random.normal(kx, (config.batch_size, config.num_features))
        y = x @ s.w_true + config.noise * jax.random.normal(kn, (config.batch_size,))

        def loss_fn(p):
            loss = jnp.mean((x @ p - y) ** 2)
            return loss + jnp.where(s.update_step == config.poison_update, jnp.nan, 0.0)

        loss, grad = jax.value_and_grad(loss_fn)(s.params)
        upd, opt_state = opt.update(grad, s.opt_state, s.params)
        new_params = optax.apply_updates(s.params, upd)
        ok = jnp.isfinite(loss) & (s.nonfinite_update < 0)
        nonfinite = jnp.where((s.nonfinite_update < 0) & ~jnp.isfinite(loss), s.update_step, s.nonfinite_update)
        new = RunState(
            params=jnp.where(ok, new_params, s.params),
            opt_state=jax.tree.map(lambda a, b: jnp.where(ok, a, b), opt_state, s.opt_state),
            rng=rng, w_true=s.w_true, update_step=s.update_step + 1, nonfinite_update=nonfinite)
        metrics = Metrics(env_steps=(s.update_step + 1) * config.batch_size, loss=loss,
                          episode_return=-loss, episode_return_valid=(s.update_step % 2) == 0)
        return new, metrics

    return Train(init=init, update=update, num_updates=config.num_updates, config=config)


@struct.dataclass
class EvalResult:
    episode_return: jax.Array  # [num_episodes]


def make_eval(config: Config, env=None):
    """``evaluate(params, key, num_episodes)``: -MSE of ``params`` on fresh data (against a fixed w_true=1)."""

    def evaluate(params, key, num_episodes: int = 8):
        x = jax.random.normal(key, (num_episodes, config.num_features))
        ret = -((x @ params - x.sum(-1)) ** 2)
        return EvalResult(ret)

    return evaluate
