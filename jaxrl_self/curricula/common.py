"""Pieces every curriculum shares: the student agent, rollouts on given levels, scores and level statistics.

A UED curriculum on a :class:`~jaxrl_self.core.LevelEnv` repeats one *cycle*: choose ``N`` levels (new random
ones, replayed ones from a buffer, edited ones...), roll the student out on them, score them, maybe update the
buffer, maybe take PPO gradient steps. This module holds the parts that do not depend on how levels are chosen:

* :class:`StudentConfig` — the student's PPO, a nested :class:`~jaxrl_self.algos.ppo.Config` (defaults
  :func:`student_ppo`, jaxued's ``maze_plr.py``: 32 envs x 256 steps, 5 epochs of 1 minibatch, lr 1e-4
  annealed, γ = 0.995, λ = 0.98, entropy 1e-3, the maze LSTM-256 agent), the level generator's wall budget and
  the held-out evaluation settings. Each curriculum's ``Config`` extends it.
* :class:`Student` (:func:`make_student`) — network, optimiser and environments; :func:`init_params`.
* :func:`rollout_on_levels` (starting from :func:`start_on_levels`) — reset ``N`` environments to ``N`` given levels, act ``num_steps`` steps with a
  zero initial LSTM state; every episode that ends restarts *on the same level*
  (:class:`~jaxrl_self.envs.wrappers.ReplayLevel`, the fix of minimax v0.2.0), values and truncation-aware
  GAE(λ) computed as in PPO. :func:`score_levels` turns a rollout into UED scores
  (:mod:`jaxrl_self.curricula.scores`).
* :func:`learn_step` — PPO epochs on a rollout under a ``lax.cond`` (skipped when no gradient is due, e.g.
  robust PLR on new levels), with the non-finite guard of :mod:`jaxrl_self.algos.ppo`.
* :class:`LevelInfo` (wall count, shortest path; stored per buffer slot), :class:`BatchStats` and
  :class:`BufferSummary` — what lets a user watch the curriculum move.
* :func:`level_generator` and :class:`ResampleFrom` — random levels with a chosen wall budget.
"""
from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl_self import rl
from jaxrl_self.algos import ppo
from jaxrl_self.core.algorithm import FLAT_FLAGS
from jaxrl_self.core.algorithm import static_field as static
from jaxrl_self.core.environment import Environment, LevelEnv, tree_select
from jaxrl_self.core.errors import ConfigError, errors_within
from jaxrl_self.curricula import evaluation
from jaxrl_self.curricula.level_sampler import LevelBuffer, LevelSampler
from jaxrl_self.curricula.scores import SCORE_FUNCTIONS, LevelScores, compute_scores, episode_stats
from jaxrl_self.envs.wrappers import ReplayLevel, ResampleLevel
from jaxrl_self.rl.rollout import RolloutState, Trajectory

__all__ = [
    "NEW",
    "REPLAY",
    "MUTATE",
    "static",
    "student_ppo",
    "StudentConfig",
    "Student",
    "make_student",
    "init_params",
    "level_generator",
    "ResampleFrom",
    "Rollout",
    "start_on_levels",
    "rollout_on_levels",
    "score_levels",
    "EpisodeSummary",
    "episode_summary",
    "LearnStats",
    "LearnResult",
    "learn_step",
    "LevelInfo",
    "level_info",
    "LevelStats",
    "level_stats",
    "BatchStats",
    "batch_stats",
    "learning_rate_at",
    "BufferSummary",
    "buffer_summary",
    "make_student_eval",
    "make_eval",
    "fields_of",
    "check_positive_int",
]

#: Branch indices of a PLR/ACCEL cycle (``lax.switch`` order).
NEW, REPLAY, MUTATE = 0, 1, 2


def check_positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(name, value, f"an int >= {minimum}", owner)


# ============================================================================================ configuration
def student_ppo(**changes: Any) -> ppo.Config:
    """The curricula's student PPO, jaxued's ``examples/maze_plr.py`` except the run length (2M env steps
    here, 245M there): 32 envs x 256 steps, 5 epochs of 1 minibatch, the maze LSTM-256 agent, lr 1e-4 annealed,
    γ 0.995, λ 0.98, clip 0.2, entropy 1e-3, normalised advantages, clipped value loss; ``changes`` replace
    fields (``student_ppo(num_envs=8, lstm_features=32)``)."""
    base = ppo.Config(total_timesteps=2_000_000, num_envs=32, num_steps=256, update_epochs=5, num_minibatches=1,
                      network="auto", lstm_features=256, anneal_lr=True, normalize_obs=False,
                      normalize_advantages=True, clip_value_loss=True, learning_rate=1e-4, gamma=0.995,
                      gae_lambda=0.98, clip_eps=0.2, ent_coef=1e-3, vf_coef=0.5, max_grad_norm=0.5, adam_eps=1e-5)
    return base.replace(**changes)


@struct.dataclass
class StudentConfig:
    """The student's PPO (a :class:`~jaxrl_self.algos.ppo.Config`), the level generator and the held-out
    evaluation; every curriculum's ``Config`` extends it.

    ``ppo.total_timesteps`` is the run's environment-step budget, all environments and all kinds of cycle
    counted; ``ppo.num_envs`` the levels of one cycle; ``ppo.num_steps`` the steps per level per cycle. The
    student's PPO flags are flat on the command line (``--num-envs``, ``--learning-rate``). Static fields fix
    shapes or control flow; the numeric ones (the PPO's) are traced (a vmapped sweep).
    """

    ppo: Annotated[ppo.Config, FLAT_FLAGS] = student_ppo()
    """the student's PPO hyper-parameters (default :func:`student_ppo`)"""
    # -- levels (static)
    n_walls: int | None = static(None)
    """wall budget of the random-level generator (walls drawn with replacement); None: the environment's own
    generator (25 for 'maze', 60 for 'maze-60'); 0: empty rooms"""
    episode_steps: int | None = static(None)
    """time limit of training episodes (None: the environment's, 250 for the maze)"""
    # -- held-out evaluation (static)
    eval_every: int = static(25)
    """evaluate on the held-out mazes after every this many updates (and after the last); 0: only at the end;
    -1: never (no evaluation in the program; eval metrics are zeros with eval_valid False)"""
    eval_attempts: int = static(10)
    """episodes per held-out level at each evaluation"""
    eval_procedural: int = static(4)
    """held-out PerfectMaze and FourRooms levels each (fixed, drawn from eval_seed), besides the 8 named mazes"""
    eval_max_steps: int = static(250)
    """episode time limit of the held-out evaluation"""
    eval_seed: int = static(0)
    """seed of the procedural held-out levels (the same levels in every run)"""
    eval_greedy: bool = static(False)
    """evaluate the most likely action instead of sampling"""

    @property
    def owner(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1] + ".Config"

    def validate(self, env: Environment | None = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (traced values skipped)."""
        owner = self.owner
        if not isinstance(self.ppo, ppo.Config):
            raise ConfigError("ppo", type(self.ppo).__name__, "a jaxrl_self.algos.ppo.Config "
                              "(curricula.common.student_ppo(...) has the curricula's defaults)", owner)
        with errors_within(owner):
            self.ppo.validate(env, env_params)
        if self.ppo.normalize_obs:
            raise ConfigError("normalize_obs", True, "False (curricula roll the student out on raw level "
                              "observations)", owner)
        if env is not None and not isinstance(env, LevelEnv):
            raise ConfigError("env", repr(env), "a level environment (LevelEnv, e.g. 'maze')", owner)
        if self.n_walls is not None:
            check_positive_int(owner, "n_walls", self.n_walls, 0)
            base = getattr(env, "unwrapped", env)
            if env is not None and not (hasattr(base, "height") and hasattr(base, "width")):
                raise ConfigError("n_walls", self.n_walls, f"None for {env!r} (a wall budget needs the maze)", owner)
            if env is not None and self.n_walls > base.height * base.width - 2:
                raise ConfigError("n_walls", self.n_walls, f"an int in [0, {base.height * base.width - 2}]", owner)
        if self.episode_steps is not None:
            check_positive_int(owner, "episode_steps", self.episode_steps)
        check_positive_int(owner, "eval_every", self.eval_every, -1)
        check_positive_int(owner, "eval_attempts", self.eval_attempts)
        check_positive_int(owner, "eval_procedural", self.eval_procedural, 0)
        check_positive_int(owner, "eval_max_steps", self.eval_max_steps)
        check_positive_int(owner, "eval_seed", self.eval_seed, 0)
        if not isinstance(self.eval_greedy, (bool, np.bool_)):
            raise ConfigError("eval_greedy", self.eval_greedy, "True or False", owner)


# ============================================================================================ levels
def level_generator(env: LevelEnv, n_walls: int | None) -> Callable[[jax.Array], Any]:
    """``key -> Level``: ``env.sample_level`` when ``n_walls`` is None, else the maze's random-walls generator
    with that wall budget (and the environment's other generator settings)."""
    if n_walls is None:
        return env.sample_level
    from jaxrl_self.envs.maze import random_walls_level

    maze = env.unwrapped
    h, w = maze.height, maze.width
    replace = bool(getattr(maze, "replace_wall_pos", True))
    sample_n = bool(getattr(maze, "sample_n_walls", False))
    return lambda key: random_walls_level(key, h, w, int(n_walls), replace, sample_n)


class ResampleFrom(ResampleLevel):
    """Domain randomisation with a given generator: every reset plays a fresh ``generator(key)`` level."""

    def __init__(self, env: LevelEnv, generator: Callable[[jax.Array], Any]):
        super().__init__(env)
        self.generator = generator

    def reset_env(self, key, params):
        k_level, k_reset = jax.random.split(key)
        return self._env.reset_env_to_level(k_reset, self.generator(k_level), params)


# ============================================================================================ the student
@dataclasses.dataclass(frozen=True)
class Student:
    """The student agent and its environments (Python-side, built once by :func:`make_student`).

    Attributes:
        config: the student's :class:`~jaxrl_self.algos.ppo.Config`.
        network: the Flax module (``RecurrentActorCritic`` for the maze).
        tx: the optimiser (grad-norm clip, Adam, linear LR decay over ``num_updates`` gradient updates).
        env: the level environment (``reset_to_level``, ``mutate_level``, ``shortest_path``).
        replay_env: ``ReplayLevel(env)``: an episode that ends restarts on its level.
        env_params: training env params (time limit ``episode_steps`` when set).
    """

    config: ppo.Config
    network: nn.Module
    tx: optax.GradientTransformation
    env: LevelEnv
    replay_env: Environment
    env_params: Any

    @property
    def recurrent(self) -> bool:
        return ppo.initial_carry(self.network, 1) is not None


def make_student(config: StudentConfig, env: LevelEnv, env_params: Any, num_updates: int) -> Student:
    """The student of a curriculum run with ``num_updates`` updates (sets the LR schedule's length)."""
    if not isinstance(env, LevelEnv):
        raise TypeError(f"curricula need a LevelEnv (e.g. envs.make('maze')), got {type(env).__name__}")
    params = env.default_params if env_params is None else env_params
    if config.episode_steps is not None:
        params = params.replace(max_steps_in_episode=int(config.episode_steps))
    cfg = config.ppo
    network = ppo.make_network(cfg, env.action_space(params).n, ppo.resolve_network(cfg, env, params))
    return Student(config=cfg, network=network, tx=ppo.make_optimizer(cfg, num_updates), env=env,
                   replay_env=ReplayLevel(env), env_params=params)


def init_params(student: Student, key: jax.Array) -> Any:
    """Network parameters initialised on one observation of a sampled level."""
    k_level, k_params = jax.random.split(key)
    obs, _ = student.env.reset_to_level(k_level, student.env.sample_level(k_level), student.env_params)
    obs = jax.tree.map(lambda o: o[None], obs)
    if student.recurrent:
        carry = ppo.initial_carry(student.network, 1)
        return student.network.init(k_params, carry, jax.tree.map(lambda o: o[None], obs), jnp.ones((1, 1), bool))
    return student.network.init(k_params, obs)


# ============================================================================================ rollouts
@struct.dataclass
class Rollout:
    """A rollout of ``N`` environments on ``N`` levels, time-major ``[T, N]``.

    ``values[t] = V(obs_t)``; ``advantages``/``targets`` from truncation-aware GAE(λ); ``carry0`` the zero LSTM
    state the rollout started from (``[N, H]``; None for a feed-forward agent).
    """

    traj: Trajectory
    values: jax.Array
    advantages: jax.Array
    targets: jax.Array
    carry0: Any

    def batch(self) -> ppo.Batch:
        return ppo.make_batch(self.traj, self.values, self.advantages, self.targets)

    def envs(self, start: int, stop: int) -> "Rollout":
        """The environments ``start:stop`` (static ints) of this rollout."""
        def cut(x, axis):
            return jax.lax.slice_in_dim(x, start, stop, axis=axis)

        return Rollout(
            traj=jax.tree.map(lambda x: cut(x, 1), self.traj),
            values=cut(self.values, 1), advantages=cut(self.advantages, 1), targets=cut(self.targets, 1),
            carry0=None if self.carry0 is None else jax.tree.map(lambda x: cut(x, 0), self.carry0),
        )


def start_on_levels(student: Student, key: jax.Array, levels: Any) -> RolloutState:
    """One environment reset to each level (``levels``: Level pytree ``[N, ...]``), with a zero recurrent state:
    where :func:`rollout_on_levels` starts."""
    n = jax.tree.leaves(levels)[0].shape[0]
    obs, env_state = jax.vmap(student.env.reset_to_level, (0, 0, None))(
        jax.random.split(key, n), levels, student.env_params)
    return RolloutState(env_state=env_state, obs=obs, first=jnp.ones((n,), jnp.bool_),
                        carry=ppo.initial_carry(student.network, n))


def rollout_on_levels(student: Student, params: Any, key: jax.Array, levels: Any, num_steps: int) -> Rollout:
    """Reset one environment per level (``levels``: Level pytree ``[N, ...]``) and act ``num_steps`` steps from
    a zero recurrent state; episodes restart on their own level. Values and GAE as in PPO."""
    k_reset, k_run = jax.random.split(key)
    start = start_on_levels(student, k_reset, levels)
    _, traj = ppo.collect(k_run, student.network, params, student.replay_env, student.env_params, start, num_steps)
    values, next_values = ppo.rollout_values(student.network, params, traj)
    advantages, targets = ppo.compute_advantages(student.config, traj, values, next_values)
    return Rollout(traj=traj, values=values, advantages=advantages, targets=targets, carry0=start.carry)


def score_levels(score_function: str, rollout: Rollout, level_max_returns: jax.Array | None = None) -> LevelScores:
    """UED scores of the rollout's levels (``[N]``); ``level_max_returns`` are the buffer's stored max returns
    (MaxMC on replayed levels; -inf or None for new ones)."""
    t = rollout.traj
    return compute_scores(score_function, t.reward, rollout.values, t.done, rollout.advantages, level_max_returns)


@struct.dataclass
class EpisodeSummary:
    """The completed episodes of a rollout: mean undiscounted return and length, count, any (all scalars)."""

    episode_return: jax.Array
    episode_length: jax.Array
    episode_return_valid: jax.Array
    episodes_finished: jax.Array


def episode_summary(rollout: Rollout) -> EpisodeSummary:
    """Mean return/length over every completed episode of the rollout (steps after an environment's last
    episode end are an unfinished episode and ignored)."""
    t = rollout.traj
    stats = episode_stats(t.reward, rollout.values, t.done, rollout.advantages)
    count = jnp.sum(stats.num_episodes)
    denom = jnp.maximum(count, 1).astype(jnp.float32)
    steps = jnp.arange(1, t.done.shape[0] + 1, dtype=jnp.int32)[:, None]
    covered = jnp.max(jnp.where(t.done, steps, 0), axis=0)  # steps up to each environment's last episode end
    return EpisodeSummary(
        episode_return=jnp.sum(stats.num_episodes * stats.mean_return) / denom,
        episode_length=jnp.sum(covered).astype(jnp.float32) / denom,
        episode_return_valid=count > 0,
        episodes_finished=count.astype(jnp.int32),
    )


# ============================================================================================ learning
@struct.dataclass
class LearnStats:
    """PPO loss statistics, means over epochs and minibatches (zeros where no update ran)."""

    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array


@struct.dataclass
class LearnResult:
    """What :func:`learn_step` returns.

    Attributes:
        params, opt_state: after the step (unchanged when no update was applied).
        loss: mean total PPO loss (0 when no gradient was computed). stats: :class:`LearnStats`.
        applied: bool, the parameters were updated. computed: bool, the PPO epochs ran.
        finite: bool, every loss and gradient norm was finite (True when nothing ran).
        param_change: global L2 norm of the parameter change (exactly 0 when not applied).
    """

    params: Any
    opt_state: Any
    loss: jax.Array
    stats: LearnStats
    applied: jax.Array
    computed: jax.Array
    finite: jax.Array
    param_change: jax.Array


def learn_step(student: Student, key: jax.Array, params: Any, opt_state: Any, rollout: Rollout,
               train: jax.Array | bool, healthy: jax.Array) -> LearnResult:
    """PPO epochs on ``rollout`` when ``train & healthy`` (a ``lax.cond``: skipped, no gradient is computed;
    under a vmap over seeds with a per-seed predicate both branches run and a select picks one).

    A non-finite loss or gradient norm leaves ``params``/``opt_state`` unchanged (``finite`` False); the caller
    records it in ``RunState.nonfinite_update`` and passes ``healthy=False`` from then on."""
    run_it = jnp.asarray(train, jnp.bool_) & healthy
    zero = jnp.zeros((), jnp.float32)

    def run(_):
        p, o, s = ppo.learn(key, student.config, student.network, student.tx, params, opt_state, rollout.batch(),
                            rollout.carry0)
        finite = rl.all_finite(s["loss"]) & rl.all_finite(s["grad_norm"])
        stats = LearnStats(**{f.name: jnp.mean(s[f.name]) for f in dataclasses.fields(LearnStats)})
        return p, o, jnp.mean(s["loss"]), stats, finite

    def skip(_):
        return params, opt_state, zero, LearnStats(*(zero,) * len(dataclasses.fields(LearnStats))), jnp.bool_(True)

    new_params, new_opt, loss, stats, finite = jax.lax.cond(run_it, run, skip, None)
    keep = run_it & finite
    new_params, new_opt = tree_select(keep, (new_params, new_opt), (params, opt_state))
    change = optax.tree.norm(jax.tree.map(lambda a, b: a - b, new_params, params))
    return LearnResult(params=new_params, opt_state=new_opt, loss=loss, stats=stats, applied=keep,
                       computed=run_it, finite=finite, param_change=change)


def learning_rate_at(config: StudentConfig, grad_updates: jax.Array, num_updates: int) -> jax.Array:
    """The learning rate of the next gradient update after ``grad_updates`` of them (the optimiser's schedule:
    ``lr * (1 - k / num_updates)`` when annealed; it advances only on updates that took gradient steps)."""
    lr = jnp.asarray(config.ppo.learning_rate, jnp.float32)
    if config.ppo.anneal_lr:
        lr = lr * (1.0 - jnp.asarray(grad_updates, jnp.float32) / num_updates)
    return lr


# ============================================================================================ level statistics
@struct.dataclass
class LevelInfo:
    """Per-level features (stored with each buffer slot): ``num_walls`` (int32) and ``shortest_path`` (int32,
    moves from the start to the goal, -1 if unsolvable)."""

    num_walls: jax.Array
    shortest_path: jax.Array


def level_info(env: LevelEnv, levels: Any) -> LevelInfo:
    """:class:`LevelInfo` of a batch of levels (``[N]``; BFS in JAX)."""
    n = jax.tree.leaves(levels)[0].shape[0]
    wall_map = getattr(levels, "wall_map", None)
    walls = (jnp.sum(wall_map.reshape(n, -1), axis=1, dtype=jnp.int32) if wall_map is not None
             else jnp.zeros((n,), jnp.int32))
    return LevelInfo(num_walls=walls, shortest_path=jax.vmap(env.shortest_path)(levels).astype(jnp.int32))


@struct.dataclass
class LevelStats:
    """A batch of levels: mean wall count, mean shortest path (over the solvable levels), solvable fraction."""

    mean_walls: jax.Array
    mean_shortest_path: jax.Array
    solvable: jax.Array


def level_stats(info: LevelInfo, weights: jax.Array | None = None) -> LevelStats:
    """:class:`LevelStats` of levels with features ``info`` (``[N]``), uniformly or under ``weights`` (>= 0)."""
    w = jnp.ones(info.num_walls.shape, jnp.float32) if weights is None else weights.astype(jnp.float32)
    total = jnp.maximum(jnp.sum(w), 1e-12)
    solvable = info.shortest_path >= 0
    w_solv = jnp.where(solvable, w, 0.0)
    return LevelStats(
        mean_walls=jnp.sum(w * info.num_walls) / total,
        mean_shortest_path=jnp.sum(w_solv * info.shortest_path) / jnp.maximum(jnp.sum(w_solv), 1e-12),
        solvable=jnp.sum(w_solv) / total,
    )


@struct.dataclass
class BatchStats:
    """The levels played in one cycle: :class:`LevelStats` plus the mean score over the levels that got one and
    the fraction that got one (had a completed episode)."""

    mean_walls: jax.Array
    mean_shortest_path: jax.Array
    solvable: jax.Array
    mean_score: jax.Array
    scored: jax.Array


def batch_stats(info: LevelInfo, scores: LevelScores) -> BatchStats:
    geo = level_stats(info)
    valid = scores.valid.astype(jnp.float32)
    return BatchStats(mean_walls=geo.mean_walls, mean_shortest_path=geo.mean_shortest_path, solvable=geo.solvable,
                      mean_score=jnp.sum(valid * scores.score) / jnp.maximum(jnp.sum(valid), 1.0),
                      scored=jnp.mean(valid))


@struct.dataclass
class BufferSummary:
    """The level buffer at the end of an update (see :class:`~jaxrl_self.curricula.BufferStats` for the first
    fields). ``replay_*`` are expectations under the replay distribution P_replay (what the next replay cycle
    will look like); ``mean_walls``/``mean_shortest_path`` are uniform over the filled slots."""

    size: jax.Array
    fill_ratio: jax.Array
    mean_score: jax.Array
    max_score: jax.Array
    weighted_score: jax.Array
    mean_staleness: jax.Array
    mean_max_return: jax.Array
    mean_walls: jax.Array
    mean_shortest_path: jax.Array
    replay_walls: jax.Array
    replay_shortest_path: jax.Array
    replay_solvable: jax.Array


def buffer_summary(sampler: LevelSampler, buffer: LevelBuffer) -> BufferSummary:
    """:class:`BufferSummary` of a buffer whose ``extra`` is a :class:`LevelInfo` per slot."""
    s = sampler.stats(buffer)
    info: LevelInfo = buffer.extra
    uniform = level_stats(info, buffer.filled)
    replay = level_stats(info, sampler.level_weights(buffer))
    return BufferSummary(size=s.size, fill_ratio=s.fill_ratio.astype(jnp.float32), mean_score=s.mean_score,
                         max_score=s.max_score, weighted_score=s.weighted_score, mean_staleness=s.mean_staleness,
                         mean_max_return=s.mean_max_return, mean_walls=uniform.mean_walls,
                         mean_shortest_path=uniform.mean_shortest_path, replay_walls=replay.mean_walls,
                         replay_shortest_path=replay.mean_shortest_path, replay_solvable=replay.solvable)


# ============================================================================================ evaluation
def make_student_eval(config: StudentConfig, student: Student):
    """``(evaluate, heldout)``: the held-out evaluation of this student (:mod:`jaxrl_self.curricula.evaluation`)
    with the config's eval settings."""
    heldout = evaluation.heldout_set(student.env, config.eval_procedural, config.eval_seed)
    evaluate = evaluation.make_heldout_eval(student.network, student.env, heldout, num_attempts=config.eval_attempts,
                                            max_steps=config.eval_max_steps, env_params=student.env_params,
                                            greedy=config.eval_greedy)
    return evaluate, heldout


def make_eval(config: StudentConfig, env: LevelEnv, env_params: Any = None, max_steps: int | None = None,
              greedy: bool | None = None):
    """``evaluate(params, key, env_params=None, num_episodes=16) -> ppo.EvalResult`` for ``jaxrl-self eval``
    (:func:`jaxrl_self.algos.ppo.make_eval` with the student's network; default time limit
    ``config.eval_max_steps``, sampling unless ``config.eval_greedy``)."""
    return ppo.make_eval(config.ppo, env, env_params,
                         max_steps=config.eval_max_steps if max_steps is None else max_steps,
                         greedy=config.eval_greedy if greedy is None else greedy)


def fields_of(x: Any) -> dict[str, Any]:
    """The fields of a (flax struct) dataclass as a dict, without copying (for ``Metrics(**fields_of(...))``)."""
    return {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}


def validate_score_function(owner: str, score_function: str) -> None:
    if score_function not in SCORE_FUNCTIONS:
        raise ConfigError("score_function", score_function, f"one of {SCORE_FUNCTIONS}", owner)
