"""Parallel PLR and parallel ACCEL (minimax's ``use_parallel_eval``): new, replayed and edited levels side by side.

    jaxrl-self train parallel_plr --env maze --seeds 3
    jaxrl-self train parallel_accel --env maze --seeds 3

Where :mod:`jaxrl_self.curricula.plr` alternates kinds of cycle, here every cycle rolls out ``S x num_envs``
environments at once, in slices of ``num_envs``:

* slice 0, **new**: fresh levels from the generator, scored and offered to the buffer;
* slice 1, **replay**: levels drawn from the buffer (a ``lax.cond`` on the sampler's replay decision, taken with
  probability ``replay_prob``, 1 by default as in minimax, once the buffer is ``minimum_fill_ratio`` full;
  before that the slice holds more new levels), re-scored; **the only slice the student learns from** (and
  only when it holds replayed levels, unless ``exploratory_grad_updates``);
* slice 2 (ACCEL only), **mutated**: ``num_edits`` edits of each level of slice 1 when it was replayed (more
  new levels otherwise), scored and offered to the buffer, no gradient.

So ``S = 2`` (PLR) or ``3`` (ACCEL), a cycle costs ``S x num_envs x num_steps`` environment steps, and a run of
``total_timesteps`` has ``total_timesteps // (S * num_envs * num_steps)`` updates. The buffer, the scores and
the rollouts are those of :mod:`jaxrl_self.curricula.plr` (see its docstring); state and metrics have the same
types (``RunState.levels`` holds all ``S x num_envs`` levels of the latest cycle; ``Metrics.branch`` is 1 on
cycles whose slice 1 was replayed, else 0).
"""
from __future__ import annotations

import warnings
from typing import Annotated, Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_self.core.algorithm import FLAT_FLAGS, Train
from jaxrl_self.core.environment import LevelEnv
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.curricula import common, evaluation, plr
from jaxrl_self.curricula.common import NEW, REPLAY, static
from jaxrl_self.curricula.level_sampler import LevelSamplerConfig
from jaxrl_self.curricula.plr import CycleCounts, Metrics, RunState, update_keys

__all__ = ["NAME", "DEFAULT_ENV", "Config", "RunState", "Metrics", "num_slices", "make_train", "make_eval"]

NAME = "parallel_plr"
#: What it trains on: level environments (the maze) (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("level",)
DEFAULT_ENV = "maze"


@struct.dataclass
class Config(plr.Config):
    """:class:`jaxrl_self.curricula.plr.Config` for the parallel loop: ``replay_prob`` 1 and no gradient on new
    levels by default (minimax's parallel PLR); ``use_accel`` adds the mutated slice."""

    exploratory_grad_updates: bool = static(False)
    """before the buffer is warm, take gradient steps on the (then new) levels of slice 1"""
    sampler: Annotated[LevelSamplerConfig, FLAT_FLAGS] = LevelSamplerConfig(replay_prob=1.0)
    """the level buffer; ``replay_prob`` (1 here) is the probability that slice 1 is replayed once the buffer is
    ``minimum_fill_ratio`` full"""

    def validate(self, env=None, env_params=None) -> None:
        super().validate(env, env_params)
        cycle = num_slices(self) * self.ppo.batch_size
        if self.ppo.total_timesteps < cycle:
            raise ConfigError("total_timesteps", self.ppo.total_timesteps,
                              f">= {num_slices(self)} slices x num_envs x num_steps = {cycle} (one cycle)", self.owner)


def num_slices(config: plr.Config) -> int:
    """``S``: 2 (new + replay) or 3 with ``use_accel`` (+ mutated)."""
    return 3 if config.use_accel else 2


def make_train(config: Config, env: LevelEnv, env_params: Any = None) -> Train[RunState]:
    """Parallel PLR / ACCEL as a :class:`~jaxrl_self.core.Train`; ``train(key) -> (RunState, Metrics)``."""
    config.validate(env, env_params)
    n, t, s = config.ppo.num_envs, config.ppo.num_steps, num_slices(config)
    num_updates = config.ppo.total_timesteps // (s * n * t)
    if (message := plr.fill_warning(config, num_updates, s * n)) is not None:
        warnings.warn(message, stacklevel=2)
    student = common.make_student(config, env, env_params, num_updates)
    generator = common.level_generator(env, config.n_walls)
    sampler = plr.make_sampler(config)
    evaluate, heldout = common.make_student_eval(config, student)
    replay_slice = slice(n, 2 * n)

    def init(key: jax.Array) -> RunState:
        k_params, k_levels, k_run = jax.random.split(key, 3)
        params = common.init_params(student, k_params)
        levels = jax.vmap(generator)(jax.random.split(k_levels, s * n))
        info = jax.tree.map(lambda x: x[0], common.level_info(env, levels))
        zero = jnp.zeros((), jnp.int32)
        return RunState(
            params=params, opt_state=student.tx.init(params), rng=k_run,
            buffer=sampler.initialize(jax.tree.map(lambda x: x[0], levels), info), levels=levels,
            last_replay_levels=jax.tree.map(lambda x: x[replay_slice], levels),
            last_branch=jnp.full((), -1, jnp.int32), counts=CycleCounts(zero, zero, zero, zero),
            update_step=zero, env_steps=zero, nonfinite_update=jnp.full((), -1, jnp.int32),
        )

    def update(state: RunState) -> tuple[RunState, Metrics]:
        keys = update_keys(state.rng)
        k_fresh, k_draw, k_mutate = jax.random.split(keys.levels, 3)

        # 1. the levels of the three slices
        replay = sampler.sample_replay_decision(state.buffer, keys.decide)
        fresh = jax.vmap(generator)(jax.random.split(k_fresh, s * n))
        new = jax.tree.map(lambda x: x[:n], fresh)
        buffer, mid_idx, middle = jax.lax.cond(
            replay,
            lambda b: sampler.sample_replay_levels(b, k_draw, n),
            lambda b: (b, jnp.full((n,), -1, jnp.int32), jax.tree.map(lambda x: x[replay_slice], fresh)),
            state.buffer,
        )
        slices, indices = [new, middle], [jnp.full((n,), -1, jnp.int32), mid_idx]
        if config.use_accel:
            children = jax.vmap(env.mutate_level, (0, 0, None))(jax.random.split(k_mutate, n), middle,
                                                                config.num_edits)
            spare = jax.tree.map(lambda x: x[2 * n:], fresh)
            slices.append(jax.tree.map(lambda a, b: jnp.where(replay, a, b), children, spare))
            indices.append(jnp.full((n,), -1, jnp.int32))
        levels = jax.tree.map(lambda *xs: jnp.concatenate(xs), *slices)
        indices = jnp.concatenate(indices)

        # 2. one rollout of all slices side by side
        ro = common.rollout_on_levels(student, state.params, keys.rollout, levels, t)

        # 3. score; replayed slots get their new score, the other levels are offered to the buffer
        stored_max = jnp.where(indices >= 0, buffer.max_returns[jnp.clip(indices, 0)], -jnp.inf)
        scores = common.score_levels(config.score_function, ro, stored_max)
        info = common.level_info(env, levels)
        mid_scores = jax.tree.map(lambda x: x[replay_slice], scores)
        buffer = jax.lax.cond(
            replay,
            lambda b: sampler.update_scores(b, mid_idx, mid_scores.score, mid_scores.max_return, mid_scores.valid),
            lambda b: b,
            buffer,
        )
        buffer, _ = sampler.insert_batch(buffer, levels, scores.score, scores.max_return,
                                         scores.valid & (indices < 0), info)

        # 4. learn on slice 1 only
        healthy = state.nonfinite_update < 0
        learned = common.learn_step(student, keys.learn, state.params, state.opt_state, ro.envs(n, 2 * n),
                                    replay | config.exploratory_grad_updates, healthy)
        nonfinite = jnp.where(healthy & ~learned.finite, state.update_step, state.nonfinite_update)

        # 5. watch
        eval_metrics, eval_valid = evaluation.periodic_eval(
            evaluate, heldout, learned.params, keys.eval, state.update_step, eval_every=config.eval_every,
            num_updates=num_updates)
        branch = jnp.where(replay, REPLAY, NEW).astype(jnp.int32)
        c = state.counts
        counts = CycleCounts(new=c.new + ~replay, replay=c.replay + replay,
                             mutate=c.mutate + (replay & config.use_accel),
                             grad_updates=c.grad_updates + learned.applied)
        env_steps = state.env_steps + s * n * t
        mid_info = jax.tree.map(lambda x: x[replay_slice], info)
        metrics = Metrics(
            env_steps=env_steps, **common.fields_of(common.episode_summary(ro)), branch=branch,
            grad_applied=learned.applied, param_change=learned.param_change, loss=learned.loss,
            loss_valid=learned.computed, learn=learned.stats, learn_valid=learned.computed,
            learning_rate=common.learning_rate_at(config, counts.grad_updates, num_updates),
            level=common.batch_stats(info, scores), replay=common.batch_stats(mid_info, mid_scores),
            replay_valid=replay, buffer=common.buffer_summary(sampler, buffer), eval=eval_metrics,
            eval_valid=eval_valid,
        )
        new_state = RunState(
            params=learned.params, opt_state=learned.opt_state, rng=keys.next, buffer=buffer, levels=levels,
            last_replay_levels=jax.tree.map(lambda a, b: jnp.where(replay, a, b), middle, state.last_replay_levels),
            last_branch=branch, counts=counts, update_step=state.update_step + 1, env_steps=env_steps,
            nonfinite_update=nonfinite,
        )
        return new_state, metrics

    return Train(init=init, update=update, num_updates=num_updates, config=config)


make_eval = common.make_eval
