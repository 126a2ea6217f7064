"""Proximal Policy Optimization (Schulman et al., 2017) for discrete and continuous actions, as one XLA program.

::

    from jaxrl_self import envs, ppo
    train = ppo.make_train(ppo.Config(total_timesteps=500_000), envs.make("cartpole"))
    state, metrics = jax.jit(train)(jax.random.key(0))      # the whole run
    jax.jit(jax.vmap(train))(jax.random.split(key, 8))      # 8 seeds in one program

One update (:func:`make_train`'s ``update``), top to bottom:

1. **collect** ``num_steps`` steps of ``num_envs`` environments (:func:`collect`); the environments auto-reset
   and report ``final_obs``, the observation an episode ended on;
2. **values** of every visited observation and of every ``final_obs`` (:func:`rollout_values`); a feed-forward
   critic is not run during the rollout at all but once, batched, afterwards;
3. **advantages** by GAE(λ) (:func:`compute_advantages`): a terminated step has no bootstrap, a truncated one
   bootstraps from ``V(final_obs)``; both cut the λ-trace;
4. **learn**: ``update_epochs`` passes over the batch in ``num_minibatches`` shuffled minibatches
   (:func:`learn`): clipped surrogate + ``vf_coef`` * (clipped) value loss - ``ent_coef`` * entropy, global
   gradient-norm clipping, Adam, optionally a linearly annealed learning rate.

Networks (``Config.network``): ``"mlp"`` (separate 64-64 tanh actor and critic MLPs on the flattened
observation), ``"lstm"`` (dense encoder + LSTM) and ``"maze_lstm"`` (minimax/jaxued maze agent: conv on the
5x5x3 view, direction embedding, LSTM 256, actor/critic heads); ``"auto"`` picks ``maze_lstm`` for dict
observations with an ``"image"`` entry and ``mlp`` otherwise. Recurrent agents keep the LSTM state in the
run state, reset it where episodes start, and train on whole ``num_steps``-long sequences replayed from the
rollout's initial state, with minibatches made of environments.

The pieces (:func:`make_network`, :func:`collect`, :func:`rollout_values`, :func:`compute_advantages`,
:func:`learn`) are importable so curricula can run them on their own rollouts (e.g. PLR scores levels from
the advantages of a rollout and may skip the gradient step).

A non-finite loss or gradient stops learning: ``RunState.nonfinite_update`` records the index of the first
bad update, and that update and all later ones leave ``params``/``opt_state`` untouched.

Actions are sampled by the Gumbel-max trick with the noise of a whole rollout drawn at once (an exact sample of
the categorical policy, kept out of the per-step loop); log-probabilities and entropies come from ``distrax``.

**Continuous actions** (a 1-D :class:`~jaxrl_self.core.spaces.Box` action space) use a diagonal Gaussian policy
with a state-independent log standard deviation (:class:`~jaxrl_self.nets.GaussianMLPActorCritic`, ``network``
``"mlp"``/``"auto"`` only), as PureJaxRL's ``ppo_continuous_action.py``: the sample ``mean + std * eps`` (the
normal noise of a rollout drawn at once) is what the agent stores and scores; the environment receives it
clipped to the box (:class:`~jaxrl_self.envs.wrappers.ClipAction`; no tanh squashing). ``normalize_obs`` and
``normalize_rewards`` (PureJaxRL's ``NormalizeVecObservation`` / ``NormalizeVecReward``) are the options Brax
PPO users expect; both work for discrete actions too. The maths: :mod:`jaxrl_self.rl.distributions`.
"""
from __future__ import annotations

from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl_self import rl
from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.environment import Environment, tree_select
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import SequenceTask
from jaxrl_self.core.spaces import Box, Dict, Discrete, flat_dim
from jaxrl_self.envs.wrappers import ClipAction, FlattenObservation, LogWrapper
from jaxrl_self.nets.actor_critic import (ACTIVATIONS, GaussianMLPActorCritic, GaussianPolicy, MLPActorCritic,
                                          RecurrentActorCritic)
from jaxrl_self.rl.distributions import (gaussian_entropy, gaussian_log_prob, gaussian_noise,
                                          gaussian_sample)
from jaxrl_self.rl.normalize import RewardScale, RunningMeanStd
from jaxrl_self.rl.rollout import RolloutState, Trajectory

__all__ = [
    "NAME",
    "NETWORKS",
    "Config",
    "RunState",
    "Metrics",
    "Batch",
    "EvalResult",
    "resolve_network",
    "prepare_env",
    "make_network",
    "make_optimizer",
    "initial_carry",
    "policy_step_fn",
    "gumbel_noise_fn",
    "action_noise_fn",
    "is_continuous",
    "action_dim",
    "collect",
    "rollout_values",
    "compute_advantages",
    "make_batch",
    "ppo_loss",
    "learn",
    "episode_stats",
    "make_train",
    "make_eval",
]

NAME = "ppo"
#: What it trains on: any environment with actions, not token tasks (see core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("env",)
NETWORKS = ("auto", "mlp", "lstm", "maze_lstm")
RECURRENT = ("lstm", "maze_lstm")


# ============================================================================================ configuration
@struct.dataclass
class Config:
    """PPO hyper-parameters. Defaults are PureJaxRL's CartPole configuration.

    Static fields (shapes, control flow) must be equal across a vmapped batch of configs; the numeric fields
    below them are traced, so ``jax.vmap`` over stacked configs is a hyper-parameter sweep in one program.
    """

    # -- sizes (static)
    total_timesteps: int = _static(500_000)
    """environment steps in the run, over all environments; updates = total_timesteps // (num_envs * num_steps)"""
    num_envs: int = _static(4)
    """parallel environments"""
    num_steps: int = _static(128)
    """steps per environment per update (rollout length; the sequence length of recurrent training)"""
    update_epochs: int = _static(4)
    """passes over each rollout"""
    num_minibatches: int = _static(4)
    """minibatches per epoch; must divide num_envs * num_steps (feed-forward) or num_envs (recurrent)"""
    # -- network (static)
    network: str = _static("auto")
    """'auto', 'mlp', 'lstm' (dense encoder + LSTM) or 'maze_lstm' (conv + direction embedding + LSTM)"""
    hidden_sizes: tuple[int, ...] = _static((64, 64))
    """widths of the actor and critic MLPs ('mlp') or of the dense encoder ('lstm')"""
    activation: str = _static("tanh")
    """activation of the MLPs: 'tanh', 'relu' or 'gelu'"""
    lstm_features: int = _static(256)
    """LSTM units of the recurrent networks"""
    # -- switches (static)
    anneal_lr: bool = _static(True)
    """decay the learning rate linearly to 0 over the run (constant within an update)"""
    normalize_obs: bool = _static(False)
    """normalise observations with running mean/variance (vector observations only)"""
    normalize_rewards: bool = _static(False)
    """divide rewards by the running std of the discounted return (PureJaxRL's NormalizeVecReward)"""
    normalize_advantages: bool = _static(True)
    """standardise advantages within each minibatch"""
    clip_value_loss: bool = _static(True)
    """clip the value loss around the rollout's values with clip_eps"""
    # -- numeric hyper-parameters (traced)
    learning_rate: float = 2.5e-4
    """Adam step size (start value when annealed)"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE λ"""
    clip_eps: float = 0.2
    """PPO ratio clip ε (also the value-clip range)"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip"""
    adam_eps: float = 1e-5
    """Adam ε"""
    obs_clip: float = 10.0
    """normalised observations are clipped to [-obs_clip, obs_clip]"""

    # ------------------------------------------------------------------------------------------ derived
    @property
    def batch_size(self) -> int:
        """Transitions per update: ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    # ------------------------------------------------------------------------------------------ checks
    def validate(self, env: Environment | None = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field. Traced values are skipped;
        with ``env`` the action/observation spaces and the network choice are checked too."""
        owner = "ppo.Config"

        def fail(field, value, allowed):
            raise ConfigError(field, value, allowed, owner)

        for name in ("total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches", "lstm_features"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                fail(name, v, "a positive integer")
        if self.total_timesteps < self.batch_size:
            fail("total_timesteps", self.total_timesteps,
                 f">= num_envs * num_steps = {self.batch_size} (at least one update)")
        if self.network not in NETWORKS:
            fail("network", self.network, f"one of {NETWORKS}")
        if (not isinstance(self.hidden_sizes, (tuple, list)) or not self.hidden_sizes
                or not all(isinstance(h, (int, np.integer)) and h > 0 for h in self.hidden_sizes)):
            fail("hidden_sizes", self.hidden_sizes, "a non-empty tuple of positive integers")
        if self.activation not in ACTIVATIONS:
            fail("activation", self.activation, f"one of {tuple(ACTIVATIONS)}")
        for name in ("anneal_lr", "normalize_obs", "normalize_rewards", "normalize_advantages", "clip_value_loss"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                fail(name, getattr(self, name), "True or False")

        numeric = {
            "learning_rate": (lambda x: np.isfinite(x) & (x > 0), "a finite number > 0"),
            "gamma": (lambda x: (x >= 0) & (x <= 1), "a number in [0, 1]"),
            "gae_lambda": (lambda x: (x >= 0) & (x <= 1), "a number in [0, 1]"),
            "clip_eps": (lambda x: np.isfinite(x) & (x > 0), "a finite number > 0"),
            "ent_coef": (lambda x: np.isfinite(x) & (x >= 0), "a finite number >= 0"),
            "vf_coef": (lambda x: np.isfinite(x) & (x >= 0), "a finite number >= 0"),
            "max_grad_norm": (lambda x: x > 0, "a number > 0 (inf disables clipping)"),
            "adam_eps": (lambda x: np.isfinite(x) & (x > 0), "a finite number > 0"),
            "obs_clip": (lambda x: x > 0, "a number > 0 (inf disables clipping)"),
        }
        for name, (ok, allowed) in numeric.items():
            v = getattr(self, name)
            if isinstance(v, jax.core.Tracer):
                continue
            try:
                arr = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                fail(name, v, allowed)
            if arr.size == 0 or not np.all(ok(arr)):
                fail(name, v, allowed)

        if env is not None:
            _validate_env(self, env, env_params, fail)


def _validate_env(config: Config, env: Environment, env_params: Any, fail) -> None:
    if isinstance(env, SequenceTask) or not hasattr(env, "action_space"):
        fail("env", getattr(env, "name", type(env).__name__),
             "an environment with observations and actions (e.g. cartpole, maze); token tasks such as 'addition' "
             "train with grpo, token_ppo, tppo, ttrl, rlt or soar")
    params = env.default_params if env_params is None else env_params
    act = env.action_space(params)
    if not (isinstance(act, Discrete) or (isinstance(act, Box) and len(act.shape) == 1 and act.shape[0] >= 1
                                          and jnp.issubdtype(act.dtype, jnp.floating))):
        fail("env", f"{env.name} (action space {act!r})",
             "an environment with a Discrete action space or a 1-D float Box of continuous actions")
    obs = env.observation_space(params)
    network = resolve_network(config, env, env_params)
    if isinstance(act, Box) and network != "mlp":
        fail("network", network, f"'mlp' or 'auto' for continuous actions ({env.name} acts in {act!r}; the "
             "Gaussian policy has no recurrent variant)")
    if network == "maze_lstm":
        if not (isinstance(obs, Dict) and "image" in obs.spaces and len(obs.spaces["image"].shape) == 3
                and min(obs.spaces["image"].shape[:2]) >= 3):
            fail("network", network,
                 f"'maze_lstm' needs dict observations with an 'image' entry of shape (H>=3, W>=3, C); "
                 f"{env.name} observes {obs!r}")
        if config.normalize_obs:
            fail("normalize_obs", True, "False with network='maze_lstm' (only vector observations are normalised)")
    else:
        try:
            flat_dim(obs)
        except TypeError:
            fail("network", network, f"a network that reads {obs!r}")
    if network in RECURRENT:
        if config.num_envs % config.num_minibatches:
            fail("num_minibatches", config.num_minibatches,
                 f"a divisor of num_envs={config.num_envs} (recurrent minibatches are made of whole environments)")
    elif config.batch_size % config.num_minibatches:
        fail("num_minibatches", config.num_minibatches,
             f"a divisor of num_envs * num_steps = {config.batch_size}")


# ============================================================================================ state and metrics
@struct.dataclass
class RunState:
    """Everything a run needs to continue (one pytree; vmapped runs add a leading axis to every leaf)."""

    params: Any  # network parameters
    opt_state: Any  # optax state (Adam moments, step count)
    rng: jax.Array  # typed PRNG key
    rollout: RolloutState  # environment states, current observations, episode-start flags, LSTM state
    obs_stats: RunningMeanStd | None  # observation normaliser (None when normalize_obs=False)
    reward_scale: RewardScale | None  # reward scaling state (None when normalize_rewards=False)
    update_step: jax.Array  # int32, updates done
    env_steps: jax.Array  # int32, environment steps done (all environments)
    nonfinite_update: jax.Array  # int32, -1, or the first update whose loss was NaN/inf (it and all later skipped)


@struct.dataclass
class Metrics:
    """One row per update (scalars per seed). Loss statistics are means over all epochs and minibatches."""

    env_steps: jax.Array  # cumulative environment steps after this update
    episode_return: jax.Array  # mean undiscounted return of the episodes that finished during the rollout
    episode_length: jax.Array  # their mean length
    episode_return_valid: jax.Array  # bool: at least one episode finished (else the two above are 0)
    episodes_finished: jax.Array  # how many finished
    loss: jax.Array  # total loss
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array  # k3 estimate of KL(old || new)
    clip_fraction: jax.Array
    grad_norm: jax.Array  # global norm before clipping
    learning_rate: jax.Array
    value_mean: jax.Array  # mean V(s) over the rollout
    advantage_mean: jax.Array  # mean raw advantage over the rollout


@struct.dataclass
class Batch:
    """What the learner needs, time-major ``[T, N, ...]``. ``obs`` is the network input (normalised if
    configured); ``value``/``logp`` are those of the policy that collected the data; ``target`` is the
    λ-return ``advantage + value``."""

    obs: Any
    first: jax.Array
    action: jax.Array
    logp: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


# ============================================================================================ network
def resolve_network(config: Config, env: Environment, env_params: Any = None) -> str:
    """The network name ``config.network`` stands for with this environment (``"auto"`` resolved)."""
    if config.network != "auto":
        return config.network
    obs = env.observation_space(env.default_params if env_params is None else env_params)
    return "maze_lstm" if isinstance(obs, Dict) and "image" in obs.spaces else "mlp"


def is_continuous(env: Environment, env_params: Any = None) -> bool:
    """Whether ``env`` acts in a :class:`Box` (continuous actions, the Gaussian policy)."""
    return isinstance(env.action_space(env.default_params if env_params is None else env_params), Box)


def action_dim(env: Environment, env_params: Any = None) -> int:
    """The policy's output width: the number of discrete actions, or the dimension of a continuous action."""
    space = env.action_space(env.default_params if env_params is None else env_params)
    return int(space.shape[0]) if isinstance(space, Box) else int(space.n)


def prepare_env(config: Config, env: Environment, env_params: Any = None) -> Environment:
    """``env`` wrapped for training: continuous actions clipped to their box (:class:`ClipAction`), observations
    flattened for vector networks (when they are not already a float32 vector) and episodes logged with
    :class:`~jaxrl_self.envs.LogWrapper` (outermost)."""
    if isinstance(env, LogWrapper):
        return env
    params = env.default_params if env_params is None else env_params
    if is_continuous(env, params):
        env = ClipAction(env)
    obs = env.observation_space(params)
    flat_vector = isinstance(obs, Box) and len(obs.shape) == 1 and jnp.dtype(obs.dtype) == jnp.float32
    if resolve_network(config, env, env_params) not in ("maze_lstm",) and not flat_vector:
        env = FlattenObservation(env)
    return LogWrapper(env)


def make_network(config: Config, num_actions: int, network: str, continuous: bool = False) -> nn.Module:
    """The Flax module for a resolved network name (see :mod:`jaxrl_self.nets.actor_critic`); ``continuous``: the
    Gaussian MLP with ``num_actions`` action dimensions."""
    if network == "mlp":
        cls = GaussianMLPActorCritic if continuous else MLPActorCritic
        return cls(num_actions, tuple(config.hidden_sizes), config.activation)
    if network == "lstm":
        return RecurrentActorCritic(num_actions, encoder="mlp", lstm_features=config.lstm_features,
                                    encoder_hidden=tuple(config.hidden_sizes))
    if network == "maze_lstm":
        return RecurrentActorCritic(num_actions, encoder="maze", lstm_features=config.lstm_features)
    raise ConfigError("network", network, f"one of {NETWORKS}", "ppo.Config")


def initial_carry(network: nn.Module, num_envs: int) -> Any:
    """Zero LSTM state ``(c, h)`` of ``[num_envs, H]`` for a recurrent network, ``None`` for a feed-forward one."""
    return network.initial_carry(num_envs) if isinstance(network, RecurrentActorCritic) else None


def make_optimizer(config: Config, num_updates: int) -> optax.GradientTransformation:
    """Global-norm clip, Adam, and a learning rate that is constant within an update and (when annealed)
    decays linearly: ``lr * (1 - k / num_updates)`` at update ``k``, as in PureJaxRL.

    The chain runs on the parameters raveled into one vector (``optax.flatten``): the same arithmetic, but a
    handful of fused kernels per step instead of several per parameter leaf, which is what small networks on
    a CPU pay for. ``opt_state`` therefore holds flat vectors.
    """
    steps_per_update = config.update_epochs * config.num_minibatches

    def schedule(count):
        if not config.anneal_lr:
            return config.learning_rate
        return config.learning_rate * (1.0 - (count // steps_per_update) / num_updates)

    return optax.flatten(
        optax.chain(
            optax.clip_by_global_norm(config.max_grad_norm),
            optax.scale_by_adam(eps=config.adam_eps),
            optax.scale_by_learning_rate(schedule),
        )
    )


# ============================================================================================ 1. collect
def _normalizer(config: Config, obs_stats: RunningMeanStd | None):
    if obs_stats is None:
        return lambda obs: obs
    return lambda obs: rl.normalize.normalize(obs_stats, obs, config.obs_clip)


def policy_step_fn(network: nn.Module, params: Any, normalize=lambda obs: obs,
                   greedy: bool = False) -> rl.rollout.PolicyStep:
    """The rollout's policy step (see :mod:`jaxrl_self.rl.rollout`) for a categorical policy.

    Its randomness is Gumbel noise ``[N, num_actions]`` (see :func:`gumbel_noise_fn`): the action is
    ``argmax(logits + noise)``, an exact sample of ``Categorical(logits)`` (the Gumbel-max trick, which is how
    ``jax.random.categorical`` samples too). ``greedy=True`` ignores the noise and takes the most likely action.
    Feed-forward: only the actor runs; extras ``{"logp"}``. Recurrent: one LSTM step; extras
    ``{"logp", "value", "carry"}`` where ``carry`` is the LSTM state *after* the step (needed to value
    ``final_obs``)."""

    def act(noise, logits):
        if isinstance(logits, GaussianPolicy):  # continuous: noise is standard normal
            action = logits.mean if greedy else gaussian_sample(logits.mean, logits.log_std, noise)
            return action, gaussian_log_prob(logits.mean, logits.log_std, action)
        action = jnp.argmax(logits if greedy else logits + noise, axis=-1).astype(jnp.int32)
        return action, distrax.Categorical(logits=logits).log_prob(action)

    if isinstance(network, RecurrentActorCritic):

        def step(noise, carry, obs, first):
            x = jax.tree.map(lambda o: o[None], normalize(obs))
            carry, logits, value = network.apply(params, carry, x, first[None])
            action, logp = act(noise, logits[0])
            return carry, action, {"logp": logp, "value": value[0], "carry": carry}

    else:

        def step(noise, carry, obs, first):
            logits = network.apply(params, normalize(obs), method="actor")
            action, logp = act(noise, logits)
            return carry, action, {"logp": logp}

    return step


def gumbel_noise_fn(num_steps: int, num_envs: int, num_actions: int):
    """``key -> [num_steps, num_envs, num_actions]`` standard Gumbel noise for :func:`policy_step_fn`."""
    return lambda key: jax.random.gumbel(key, (num_steps, num_envs, num_actions), jnp.float32)


def action_noise_fn(network: nn.Module, num_steps: int, num_envs: int):
    """The rollout noise of ``network``'s policy: Gumbel (categorical) or standard normal (Gaussian)."""
    if isinstance(network, GaussianMLPActorCritic):
        return lambda key: gaussian_noise(key, (num_steps, num_envs, network.num_actions))
    return gumbel_noise_fn(num_steps, num_envs, network.num_actions)


def collect(
    key: jax.Array,
    network: nn.Module,
    params: Any,
    env: Environment,
    env_params: Any,
    state: RolloutState,
    num_steps: int,
    normalize=lambda obs: obs,
    greedy: bool = False,
) -> tuple[RolloutState, Trajectory]:
    """Roll the policy out for ``num_steps`` steps of every environment in ``state``. ``traj.obs`` and
    ``traj.final_obs`` are raw (un-normalised) observations."""
    noise_fn = action_noise_fn(network, num_steps, state.first.shape[0])
    step = policy_step_fn(network, params, normalize, greedy)
    return rl.rollout.rollout(key, step, env, env_params, state, num_steps, noise_fn=noise_fn)


# ============================================================================================ 2. values
#: Rows per chunk of the recurrent network's batched value step (:func:`rollout_values`).
VALUE_CHUNK_ROWS = 2048


def rollout_values(
    network: nn.Module, params: Any, traj: Trajectory, normalize=lambda obs: obs
) -> tuple[jax.Array, jax.Array]:
    """``(V(obs_t), V(final_obs_t))``, both ``[T, N]``.

    Feed-forward: one batched critic pass over ``obs`` and ``final_obs`` together. Recurrent: ``V(obs_t)``
    comes from the rollout; ``V(final_obs_t)`` is one batched LSTM step from the state after step ``t``
    (for ongoing episodes this equals ``V(obs_{t+1})``; where an episode ended it values the last observation
    of that episode, which is what a truncated episode bootstraps from). That batched step runs in chunks of
    about :data:`VALUE_CHUNK_ROWS` rows (whole time steps; a ``lax.map``): each row's computation is unchanged
    (the same values bit for bit), and XLA:CPU multiplies ``[2048, 256] x [256, 1024]`` at about twice the rate
    of ``[8192, 256] x [256, 1024]`` (32 envs x 256 steps: 60 -> 32 ms).
    """
    if isinstance(network, RecurrentActorCritic):
        T, N = traj.first.shape
        steps = max(1, min(T, VALUE_CHUNK_ROWS // N))  # time steps per chunk
        chunks = -(-T // steps)

        def split(x):  # [T, N, ...] -> [chunks, steps, N, ...] (zero rows pad the last chunk)
            x = jnp.pad(x, [(0, chunks * steps - T)] + [(0, 0)] * (x.ndim - 1))
            return x.reshape((chunks, steps) + x.shape[1:])

        def values_of(chunk):
            carry, obs = chunk
            carry = jax.tree.map(lambda c: c.reshape((steps * N,) + c.shape[2:]), carry)
            obs = jax.tree.map(lambda o: o.reshape((1, steps * N) + o.shape[2:]), obs)
            _, _, v = network.apply(params, carry, obs, jnp.zeros((1, steps * N), jnp.bool_))
            return v.reshape(steps, N)

        chunked = jax.tree.map(split, (traj.extras["carry"], normalize(traj.final_obs)))
        next_values = jax.lax.map(values_of, chunked).reshape(chunks * steps, N)[:T]
        return traj.extras["value"], next_values
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), normalize(traj.obs), normalize(traj.final_obs))
    v = network.apply(params, both, method="critic")
    return v[0], v[1]


# ============================================================================================ 3. advantages
def compute_advantages(
    config: Config, traj: Trajectory, values: jax.Array, next_values: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Truncation-aware GAE(λ) (:func:`jaxrl_self.rl.gae`): ``(advantages, targets)``, each ``[T, N]``."""
    return rl.gae(traj.reward, values, next_values, traj.terminated, traj.done, config.gamma, config.gae_lambda)


def make_batch(traj: Trajectory, values: jax.Array, advantages: jax.Array, targets: jax.Array,
               normalize=lambda obs: obs) -> Batch:
    return Batch(
        obs=normalize(traj.obs),
        first=traj.first,
        action=traj.action,
        logp=traj.extras["logp"],
        value=values,
        advantage=advantages,
        target=targets,
    )


# ============================================================================================ 4. learn
def ppo_loss(config: Config, network: nn.Module, params: Any, mb: Batch, carry0: Any = None):
    """The PPO objective on one minibatch. Feed-forward: ``mb`` leaves are ``[B, ...]``. Recurrent: ``[T, n, ...]``
    whole sequences replayed from ``carry0`` (``[n, H]``).

    Returns ``(loss, aux)`` with ``aux`` a dict of scalars: policy_loss, value_loss, entropy, approx_kl,
    clip_fraction.
    """
    if isinstance(network, RecurrentActorCritic):
        _, logits, values = network.apply(params, carry0, mb.obs, mb.first)
    else:
        logits, values = network.apply(params, mb.obs)
    if isinstance(logits, GaussianPolicy):
        logp = gaussian_log_prob(logits.mean, logits.log_std, mb.action)
        entropies = gaussian_entropy(logits.mean, logits.log_std)
    else:
        dist = distrax.Categorical(logits=logits)
        logp, entropies = dist.log_prob(mb.action), dist.entropy()
    adv = rl.normalize_advantages(mb.advantage) if config.normalize_advantages else mb.advantage
    policy_loss, stats = rl.ppo_policy_loss(logp, mb.logp, adv, config.clip_eps)
    value_loss = rl.value_loss(values, mb.value, mb.target, config.clip_eps if config.clip_value_loss else None)
    entropy = rl.entropy_bonus(entropies)
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    aux = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": stats.approx_kl,
        "clip_fraction": stats.clip_fraction,
    }
    return loss, aux


def learn(
    key: jax.Array,
    config: Config,
    network: nn.Module,
    tx: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    batch: Batch,
    carry0: Any = None,
    apply_updates: bool | jax.Array = True,
) -> tuple[Any, Any, dict]:
    """``update_epochs`` epochs of ``num_minibatches`` minibatch gradient steps on ``batch`` (``[T, N, ...]``).

    Feed-forward networks shuffle individual transitions; recurrent ones shuffle environments and train on
    whole sequences from ``carry0`` (the LSTM state at the start of the rollout, ``[N, H]``).
    ``apply_updates=False`` computes the losses without changing ``params``/``opt_state`` (PLR's "no gradient on
    new levels"; may be traced).

    Returns ``(params, opt_state, stats)``; ``stats`` holds ``[update_epochs, num_minibatches]`` arrays:
    loss, grad_norm and the entries of :func:`ppo_loss`'s aux.
    """
    recurrent = isinstance(network, RecurrentActorCritic)
    grad_fn = jax.value_and_grad(lambda p, mb, c0: ppo_loss(config, network, p, mb, c0), has_aux=True)

    def minibatch_step(carry, mb_and_c0):
        params, opt_state = carry
        mb, c0 = mb_and_c0
        (loss, aux), grads = grad_fn(params, mb, c0)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        if apply_updates is not True:
            new_params = tree_select(jnp.asarray(apply_updates), new_params, params)
            new_opt_state = tree_select(jnp.asarray(apply_updates), new_opt_state, opt_state)
        return (new_params, new_opt_state), {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}

    def epoch(carry, k):
        if recurrent:
            mbs = rl.shuffle_split(k, batch, config.num_minibatches, axis=1)
            c0s = rl.shuffle_split(k, carry0, config.num_minibatches, axis=0)
        else:
            mbs = rl.shuffle_split(k, rl.flatten_time(batch), config.num_minibatches)
            c0s = None
        return jax.lax.scan(minibatch_step, carry, (mbs, c0s))

    (params, opt_state), stats = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, config.update_epochs))
    return params, opt_state, stats


def episode_stats(traj: Trajectory) -> dict[str, jax.Array]:
    """Mean return/length of the episodes that finished in ``traj`` (needs :class:`LogWrapper` info), their
    count, and whether there were any. Zeros (never placeholders averaged in) when none finished."""
    finished = traj.info["returned_episode"]
    count = jnp.sum(finished)
    denom = jnp.maximum(count, 1).astype(jnp.float32)
    return {
        "episode_return": jnp.sum(jnp.where(finished, traj.info["returned_episode_return"], 0.0)) / denom,
        "episode_length": jnp.sum(jnp.where(finished, traj.info["returned_episode_length"], 0)) / denom,
        "episode_return_valid": count > 0,
        "episodes_finished": count.astype(jnp.int32),
    }


# ============================================================================================ the run
def make_train(config: Config, env: Environment, env_params: Any = None) -> Train[RunState]:
    """Build the training run: ``train(key) -> (RunState, Metrics)`` (metrics ``[num_updates]`` per field).

    ``config`` may hold traced numeric fields (call ``make_train`` inside ``jax.vmap`` for a sweep); the static
    fields and ``env`` fix the program. ``env`` is wrapped by :func:`prepare_env`.
    """
    config.validate(env, env_params)
    if env_params is None:
        env_params = env.default_params
    network_name = resolve_network(config, env, env_params)
    num_actions = action_dim(env, env_params)
    network = make_network(config, num_actions, network_name, is_continuous(env, env_params))
    env = prepare_env(config, env, env_params)
    recurrent = network_name in RECURRENT
    num_updates = config.num_updates
    tx = make_optimizer(config, num_updates)

    def init(key: jax.Array) -> RunState:
        k_params, k_env, k_run = jax.random.split(key, 3)
        ro = rl.rollout.reset(k_env, env, env_params, config.num_envs, initial_carry(network, config.num_envs))
        obs_stats = None
        if config.normalize_obs:
            obs_stats = rl.normalize.update(RunningMeanStd.create(ro.obs.shape[1:]), ro.obs)
        reward_scale = RewardScale.create(config.num_envs) if config.normalize_rewards else None
        x = _normalizer(config, obs_stats)(ro.obs)
        if recurrent:
            params = network.init(k_params, ro.carry, jax.tree.map(lambda o: o[None], x), ro.first[None])
        else:
            params = network.init(k_params, x)
        zero = jnp.zeros((), jnp.int32)
        return RunState(
            params=params,
            opt_state=tx.init(params),
            rng=k_run,
            rollout=ro,
            obs_stats=obs_stats,
            reward_scale=reward_scale,
            update_step=zero,
            env_steps=zero,
            nonfinite_update=jnp.full((), -1, jnp.int32),
        )

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_collect, k_learn = jax.random.split(state.rng, 3)
        normalize = _normalizer(config, state.obs_stats)

        # 1. collect
        carry0 = state.rollout.carry
        rollout_state, traj = collect(k_collect, network, state.params, env, env_params, state.rollout,
                                      config.num_steps, normalize)
        # 2. values of obs and final_obs
        values, next_values = rollout_values(network, state.params, traj, normalize)
        # 3. advantages (on scaled rewards with normalize_rewards; the logged returns stay raw)
        reward_scale = state.reward_scale
        if config.normalize_rewards:
            reward_scale, scaled = rl.normalize.scale_rewards(reward_scale, traj.reward, traj.done, config.gamma)
            advantages, targets = compute_advantages(config, traj.replace(reward=scaled), values, next_values)
        else:
            advantages, targets = compute_advantages(config, traj, values, next_values)
        # 4. learn
        batch = make_batch(traj, values, advantages, targets, normalize)
        params, opt_state, stats = learn(k_learn, config, network, tx, state.params, state.opt_state, batch, carry0)

        # non-finite guard: keep the last good parameters from the first bad update on. Finite losses and
        # gradient norms at every minibatch imply finite Adam steps, hence finite parameters.
        finite = rl.all_finite(stats["loss"]) & rl.all_finite(stats["grad_norm"])
        (params, opt_state), nonfinite_update, keep = rl.keep_if_finite(
            state.nonfinite_update, state.update_step, finite, (params, opt_state), (state.params, state.opt_state))
        obs_stats = state.obs_stats
        if config.normalize_obs:
            obs_stats = tree_select(keep, rl.normalize.update(obs_stats, traj.obs), obs_stats)
        if config.normalize_rewards:
            reward_scale = tree_select(keep, reward_scale, state.reward_scale)

        env_steps = state.env_steps + config.batch_size
        metrics = Metrics(
            env_steps=env_steps,
            **episode_stats(traj),
            **{k: jnp.mean(v) for k, v in stats.items()},
            learning_rate=_lr_at(config, state.update_step, num_updates),
            value_mean=jnp.mean(values),
            advantage_mean=jnp.mean(advantages),
        )
        new_state = RunState(
            params=params,
            opt_state=opt_state,
            rng=rng,
            rollout=rollout_state,
            obs_stats=obs_stats,
            reward_scale=reward_scale,
            update_step=state.update_step + 1,
            env_steps=env_steps,
            nonfinite_update=nonfinite_update,
        )
        return new_state, metrics

    return Train(init=init, update=update, num_updates=num_updates, config=config)


def _lr_at(config: Config, update_step: jax.Array, num_updates: int) -> jax.Array:
    """The learning rate used by update ``update_step`` (matches :func:`make_optimizer`'s schedule)."""
    lr = jnp.asarray(config.learning_rate, jnp.float32)
    if config.anneal_lr:
        lr = lr * (1.0 - update_step.astype(jnp.float32) / num_updates)
    return lr


# ============================================================================================ evaluation
@struct.dataclass
class EvalResult:
    """Returns and lengths of the first episode of each of ``num_episodes`` parallel environments."""

    episode_return: jax.Array  # [num_episodes] float32
    episode_length: jax.Array  # [num_episodes] int32
    finished: jax.Array  # [num_episodes] bool: the episode ended within max_steps

    @property
    def mean_return(self) -> jax.Array:
        return jnp.mean(self.episode_return)


def make_eval(config: Config, env: Environment, env_params: Any = None, max_steps: int | None = None,
              greedy: bool = False):
    """``evaluate(params, key, env_params=None, num_episodes=16, obs_stats=None) -> EvalResult``.

    Plays one episode in each of ``num_episodes`` environments (a Python int: it fixes shapes) for at most
    ``max_steps`` steps (default: ``env_params.max_steps_in_episode``), sampling actions (``greedy=False``)
    or taking the most likely one. ``obs_stats`` is ``RunState.obs_stats`` when the run normalised
    observations. Jit it with ``num_episodes`` static.
    """
    config.validate(env, env_params)
    base_params = env.default_params if env_params is None else env_params
    network_name = resolve_network(config, env, base_params)
    network = make_network(config, action_dim(env, base_params), network_name, is_continuous(env, base_params))
    wrapped = prepare_env(config, env, base_params)
    if max_steps is None:
        max_steps = int(base_params.max_steps_in_episode)

    def evaluate(params, key, env_params=None, num_episodes: int = 16, obs_stats=None) -> EvalResult:
        p = base_params if env_params is None else env_params
        k_reset, k_run = jax.random.split(key)
        ro = rl.rollout.reset(k_reset, wrapped, p, num_episodes, initial_carry(network, num_episodes))
        _, traj = collect(k_run, network, params, wrapped, p, ro, max_steps, _normalizer(config, obs_stats), greedy)
        ended = traj.done
        first_end = jnp.argmax(ended, axis=0)
        finished = jnp.any(ended, axis=0)
        alive = jnp.cumsum(ended, axis=0) - ended == 0  # steps up to and including the first end
        ret = jnp.sum(jnp.where(alive, traj.reward, 0.0), axis=0)
        length = jnp.where(finished, first_end + 1, max_steps).astype(jnp.int32)
        return EvalResult(episode_return=ret, episode_length=length, finished=finished)

    return evaluate

