"""Domain randomisation (DR): PPO on random levels, evaluated on held-out mazes, as one XLA program.

    jaxrl-self train dr --env maze --seeds 3
    jaxrl-self train dr --env maze --n-walls 60          # the 60-wall generator (dcd's DR baseline)

::

    from jaxrl_self import envs
    from jaxrl_self.curricula import dr
    from jaxrl_self.curricula.common import student_ppo
    train = dr.make_train(dr.Config(ppo=student_ppo(total_timesteps=1_000_000)), envs.make("maze"))
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 3))

The baseline of every UED comparison (Jiang et al., 2021; Parker-Holder et al., 2022): every episode is played
on a fresh level from the generator (``n_walls`` walls placed uniformly with replacement, agent and goal on
free cells; jaxued's ``maze_dr.py`` / minimax's DR runner). As there, the environments and the LSTM state run on
from one update to the next (PureJaxRL-style rollouts; an episode that ends restarts on a new random level).

One update, top to bottom:

1. **collect** ``num_steps`` steps of ``num_envs`` environments (:func:`jaxrl_self.algos.ppo.collect`);
2. **values and advantages**: truncation-aware GAE(λ);
3. **learn**: PPO epochs (:func:`jaxrl_self.curricula.common.learn_step`);
4. **watch**: statistics of the levels the environments are on (wall count, shortest path), and every
   ``eval_every`` updates the held-out evaluation (:mod:`jaxrl_self.curricula.evaluation`).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.algos import ppo
from jaxrl_self.core.algorithm import Train
from jaxrl_self.core.environment import LevelEnv
from jaxrl_self.curricula import common, evaluation
from jaxrl_self.curricula.common import StudentConfig
from jaxrl_self.envs.wrappers import LogWrapper
from jaxrl_self.rl import rollout as rollout_lib
from jaxrl_self.rl.rollout import RolloutState

__all__ = ["NAME", "DEFAULT_ENV", "Config", "RunState", "Metrics", "make_train", "make_eval"]

NAME = "dr"
#: What it trains on: level environments (the maze) (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("level",)
DEFAULT_ENV = "maze"


@struct.dataclass
class Config(StudentConfig):
    """DR: the student's PPO settings, the wall budget ``n_walls`` and the held-out evaluation (the fields of
    :class:`~jaxrl_self.curricula.common.StudentConfig`; defaults from jaxued's maze scripts)."""


@struct.dataclass
class RunState:
    """Everything a DR run needs to continue."""

    params: Any
    opt_state: Any
    rng: jax.Array
    rollout: RolloutState  # environments (on their current random levels), observations, LSTM state
    update_step: jax.Array  # int32, updates done
    env_steps: jax.Array  # int32
    nonfinite_update: jax.Array  # int32, -1 or the first update with a non-finite loss


@struct.dataclass
class Metrics:
    """One row per update. ``eval.*`` is valid only where ``eval_valid``."""

    env_steps: jax.Array
    episode_return: jax.Array  # mean return of the episodes that finished in this update's rollout
    episode_length: jax.Array
    episode_return_valid: jax.Array
    episodes_finished: jax.Array
    loss: jax.Array
    learn: common.LearnStats
    learning_rate: jax.Array
    param_change: jax.Array  # L2 norm of the parameter change
    level: common.LevelStats  # the levels the environments were on at the start of the update
    eval: evaluation.EvalMetrics
    eval_valid: jax.Array


def make_train(config: Config, env: LevelEnv, env_params: Any = None) -> Train[RunState]:
    """DR as a :class:`~jaxrl_self.core.Train`; ``train(key) -> (RunState, Metrics)``."""
    config.validate(env, env_params)
    num_updates = config.ppo.num_updates
    student = common.make_student(config, env, env_params, num_updates)
    generator = common.level_generator(env, config.n_walls)
    dr_env = LogWrapper(common.ResampleFrom(env, generator))
    params_env = student.env_params
    evaluate, heldout = common.make_student_eval(config, student)
    n, batch = config.ppo.num_envs, config.ppo.batch_size

    def init(key: jax.Array) -> RunState:
        k_params, k_env, k_run = jax.random.split(key, 3)
        params = common.init_params(student, k_params)
        ro = rollout_lib.reset(k_env, dr_env, params_env, n, ppo.initial_carry(student.network, n))
        zero = jnp.zeros((), jnp.int32)
        return RunState(params=params, opt_state=student.tx.init(params), rng=k_run, rollout=ro, update_step=zero,
                        env_steps=zero, nonfinite_update=jnp.full((), -1, jnp.int32))

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_collect, k_learn, k_eval = jax.random.split(state.rng, 4)
        levels = env.get_level(state.rollout.env_state.env_state)  # LogState -> the maze state
        info = common.level_info(env, levels)

        # 1. collect, 2. values and advantages
        carry0 = state.rollout.carry
        rollout_state, traj = ppo.collect(k_collect, student.network, state.params, dr_env, params_env,
                                          state.rollout, config.ppo.num_steps)
        values, next_values = ppo.rollout_values(student.network, state.params, traj)
        advantages, targets = ppo.compute_advantages(student.config, traj, values, next_values)
        ro = common.Rollout(traj=traj, values=values, advantages=advantages, targets=targets, carry0=carry0)

        # 3. learn
        healthy = state.nonfinite_update < 0
        learned = common.learn_step(student, k_learn, state.params, state.opt_state, ro, True, healthy)
        nonfinite = jnp.where(healthy & ~learned.finite, state.update_step, state.nonfinite_update)

        # 4. watch: level statistics and the periodic held-out evaluation
        eval_metrics, eval_valid = evaluation.periodic_eval(
            evaluate, heldout, learned.params, k_eval, state.update_step, eval_every=config.eval_every,
            num_updates=num_updates)
        env_steps = state.env_steps + batch
        metrics = Metrics(
            env_steps=env_steps, **ppo.episode_stats(traj), loss=learned.loss, learn=learned.stats,
            learning_rate=common.learning_rate_at(config, state.update_step, num_updates),
            param_change=learned.param_change,
            level=common.level_stats(info),
            eval=eval_metrics, eval_valid=eval_valid,
        )
        new_state = RunState(params=learned.params, opt_state=learned.opt_state, rng=rng, rollout=rollout_state,
                             update_step=state.update_step + 1, env_steps=env_steps, nonfinite_update=nonfinite)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=num_updates, config=config)


make_eval = common.make_eval
