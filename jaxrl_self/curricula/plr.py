"""Prioritized Level Replay (PLR), robust PLR (PLR⊥) and ACCEL: the level buffer inside the training program.

    jaxrl-self train plr --env maze --seeds 3            # PLR: gradient steps on new levels too
    jaxrl-self train robust_plr --env maze --seeds 3     # PLR⊥: gradients only on replayed levels
    jaxrl-self train accel --env maze --seeds 3          # ACCEL: PLR⊥ + edits of replayed levels

::

    from jaxrl_self import envs
    from jaxrl_self.curricula import plr
    train = plr.make_train(plr.Config(exploratory_grad_updates=False), envs.make("maze"))
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 3))   # 3 seeds, one program

Jiang et al. (2021a, "Prioritized Level Replay"; 2021b, "Replay-Guided Adversarial Environment Design") and
Parker-Holder et al. (2022, "Evolving Curricula with Regret-Based Environment Design"), in the single-cycle
form of jaxued's ``examples/maze_plr.py``. Every update is one *cycle* of ``num_envs`` levels x ``num_steps``
steps, of one of three kinds chosen inside the program by ``lax.switch``:

* **new** (0): ``num_envs`` fresh levels from the generator are played, scored and offered to the buffer;
  PPO updates the student on them only with ``exploratory_grad_updates`` (PLR), not in PLR⊥/ACCEL;
* **replay** (1): ``num_envs`` levels are drawn from the buffer (:class:`~jaxrl_self.curricula.LevelSampler`:
  P = (1-ρ) P_S + ρ P_C with rank prioritisation h = (1/rank)^(1/β) and staleness), played, re-scored, and
  the student takes PPO gradient steps on them;
* **mutate** (2, ACCEL only): the levels of the last replay cycle are edited (``num_edits`` edits each with the
  environment's ``mutate_level``: flip a wall, move the goal), played *without* gradient (unless
  ``exploratory_grad_updates``), scored and offered to the buffer.

The kind: replay with probability ``replay_prob`` once the buffer is ``minimum_fill_ratio`` full, else new;
with ACCEL the cycle after a replay cycle is always a mutate cycle (jaxued's order).

Scores (``score_function``): ``"max_mc"`` = mean over completed episodes of mean_t (R_max - V(s_t)), R_max the
best return ever seen on the level (jaxued's default); ``"positive_value_loss"`` = mean over episodes of
mean_t max(A_t, 0) with GAE advantages A (the papers' default); see :mod:`jaxrl_self.curricula.scores`. Every
rollout starts a fresh episode on each level and an episode that ends restarts on the *same* level, so a score
describes one level (the replay bug minimax fixed in v0.2.0).

One update, top to bottom: **choose** the kind, **levels** for it (switch), **rollout** (one code path for all
kinds), **score** and **write** the buffer (update the replayed slots or insert new/edited levels), **learn**
(a ``lax.cond``: skipped on cycles without gradient), **watch** (level and buffer statistics, periodic held-out
evaluation). Under a vmap over seeds the kinds differ per seed, so the switch and conds compute every branch and
select; the rollout and PPO code run once per update regardless, which keeps that cost low.
"""
from __future__ import annotations

import math
import warnings
from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.algorithm import Train
from jaxrl_self.core.environment import LevelEnv
from jaxrl_self.core.algorithm import FLAT_FLAGS
from jaxrl_self.core.errors import ConfigError, errors_within
from jaxrl_self.curricula import common, evaluation
from jaxrl_self.curricula.common import MUTATE, NEW, REPLAY, StudentConfig, static
from jaxrl_self.curricula.level_sampler import LevelBuffer, LevelSampler, LevelSamplerConfig

__all__ = [
    "NAME",
    "DEFAULT_ENV",
    "BRANCH_NAMES",
    "Config",
    "RunState",
    "CycleCounts",
    "Metrics",
    "UpdateKeys",
    "update_keys",
    "make_sampler",
    "fill_warning",
    "make_train",
    "make_eval",
]

NAME = "plr"
#: What it trains on: level environments (the maze) (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("level",)
DEFAULT_ENV = "maze"
BRANCH_NAMES = ("new", "replay", "mutate")


# ============================================================================================ configuration
@struct.dataclass
class Config(StudentConfig):
    """PLR / robust PLR / ACCEL: the student (:class:`~jaxrl_self.curricula.common.StudentConfig`), the level
    buffer and the curriculum switches. Defaults are jaxued's ``maze_plr.py`` except ``exploratory_grad_updates``
    (True here: plain PLR; ``robust_plr`` and ``accel`` default to False)."""

    # -- curriculum (static)
    score_function: str = static("max_mc")
    """level score: 'max_mc', 'positive_value_loss', 'l1_value_loss', 'return' or 'neg_return'"""
    exploratory_grad_updates: bool = static(True)
    """take PPO gradient steps on new (and mutated) levels too: True = PLR, False = robust PLR (PLR⊥) / ACCEL"""
    use_accel: bool = static(False)
    """ACCEL: after each replay cycle, a cycle on edited copies of the replayed levels"""
    # -- the level buffer
    sampler: Annotated[LevelSamplerConfig, FLAT_FLAGS] = LevelSamplerConfig()
    """the level buffer and its replay distribution (:class:`~jaxrl_self.curricula.LevelSamplerConfig`:
    capacity 4000, rank prioritisation at temperature 0.3, staleness 0.3, replay_prob 0.8 once half full)"""
    # -- curriculum (traced)
    num_edits: int = 5
    """ACCEL: edits per mutated level"""

    def validate(self, env=None, env_params=None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (traced values skipped)."""
        super().validate(env, env_params)
        owner = self.owner
        common.validate_score_function(owner, self.score_function)
        for name in ("exploratory_grad_updates", "use_accel"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(name, getattr(self, name), "True or False", owner)
        if not isinstance(self.sampler, LevelSamplerConfig):
            raise ConfigError("sampler", type(self.sampler).__name__, "a LevelSamplerConfig", owner)
        with errors_within(owner):
            self.sampler.validate()
        if not isinstance(self.num_edits, jax.core.Tracer):
            v = self.num_edits
            try:
                edits = None if isinstance(v, (str, bytes, bool)) else np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                edits = None
            if edits is None or edits.ndim != 0 or not (np.isfinite(edits) and edits == np.round(edits)
                                                        and edits >= 0):
                raise ConfigError("num_edits", self.num_edits, "an int >= 0", owner)


def make_sampler(config: Config) -> LevelSampler:
    return LevelSampler(config.sampler)


def fill_warning(config: Config, num_updates: int, new_per_update: int) -> str | None:
    """A one-line warning when the buffer cannot reach its minimum fill early enough, or None.

    Replay starts once ``size >= minimum_fill_ratio x capacity`` (and the buffer is non-empty). Until then every
    cycle is a new one, inserting at most ``new_per_update`` levels, so the fill takes at least
    ``ceil(max(1, ratio x capacity) / new_per_update)`` updates (more when duplicates or invalid scores are
    rejected). Warned: never reaching it within ``num_updates`` (nothing is ever replayed, and PLR⊥/ACCEL's
    student never takes a gradient step) or spending more than half the run filling. Skipped when the ratio
    is traced or swept (an array)."""
    ratio = config.sampler.minimum_fill_ratio
    if isinstance(ratio, jax.core.Tracer) or np.ndim(ratio) != 0:
        return None
    capacity = int(config.sampler.capacity)
    needed = max(1, math.ceil(float(ratio) * capacity - 1e-9))
    fill_updates = math.ceil(needed / max(1, new_per_update))
    if 2 * fill_updates <= num_updates:
        return None
    lost = ("nothing is ever replayed" + ("" if config.exploratory_grad_updates
                                          else " and the student never takes a gradient step")
            if fill_updates >= num_updates else f"more than half the run ({fill_updates} of {num_updates} updates) "
                                                "only fills the buffer")
    fix = max(1, (num_updates * max(1, new_per_update)) // 4)
    return (f"{config.owner}: the level buffer needs {needed} levels (sampler.minimum_fill_ratio={float(ratio):g} x "
            f"sampler.capacity={capacity}) before its first replay, at most {new_per_update} new levels per update "
            f"over {num_updates} updates: {lost}; lower sampler.capacity (e.g. <= {fix}) or minimum_fill_ratio, "
            "or train longer")


# ============================================================================================ state and metrics
@struct.dataclass
class CycleCounts:
    """How many cycles of each kind ran, and how many applied gradient updates (all int32)."""

    new: jax.Array
    replay: jax.Array
    mutate: jax.Array
    grad_updates: jax.Array


@struct.dataclass
class RunState:
    """Everything a PLR/ACCEL run needs to continue, the level buffer included.

    ``levels`` are the levels of the latest cycle (``[num_envs]``); ``last_replay_levels`` those of the latest
    replay cycle (the parents of ACCEL's next mutate cycle); ``last_branch`` the latest cycle's kind (0 new,
    1 replay, 2 mutate; -1 before the first). ``buffer.extra`` holds a
    :class:`~jaxrl_self.curricula.common.LevelInfo` per slot.
    """

    params: Any
    opt_state: Any
    rng: jax.Array
    buffer: LevelBuffer
    levels: Any
    last_replay_levels: Any
    last_branch: jax.Array
    counts: CycleCounts
    update_step: jax.Array  # int32, updates (cycles) done
    env_steps: jax.Array  # int32, environment steps of all cycles
    nonfinite_update: jax.Array  # int32, -1 or the first update with a non-finite loss


@struct.dataclass
class Metrics:
    """One row per update (cycle). Groups with a ``*_valid`` flag (``learn``, ``replay``, ``eval``) are only
    meaningful where it is True; the run's metric files leave them empty elsewhere."""

    env_steps: jax.Array
    episode_return: jax.Array  # mean return of the episodes completed in this cycle's rollout
    episode_length: jax.Array
    episode_return_valid: jax.Array
    episodes_finished: jax.Array
    branch: jax.Array  # int32: 0 new, 1 replay, 2 mutate
    grad_applied: jax.Array  # bool: PPO updated the parameters
    param_change: jax.Array  # L2 norm of the parameter change (0 when no gradient step)
    loss: jax.Array
    loss_valid: jax.Array  # the PPO epochs ran this cycle
    learn: common.LearnStats
    learn_valid: jax.Array
    learning_rate: jax.Array  # of the next gradient update
    level: common.BatchStats  # the levels of this cycle
    replay: common.BatchStats  # the replayed levels (valid on replay cycles)
    replay_valid: jax.Array
    buffer: common.BufferSummary
    eval: evaluation.EvalMetrics
    eval_valid: jax.Array


@struct.dataclass
class UpdateKeys:
    """The PRNG keys of one update (split from ``RunState.rng``)."""

    next: jax.Array  # the next update's RunState.rng
    decide: jax.Array  # the replay decision
    levels: jax.Array  # new levels / replay draws / mutations
    rollout: jax.Array
    learn: jax.Array
    eval: jax.Array


def update_keys(rng: jax.Array) -> UpdateKeys:
    return UpdateKeys(*jax.random.split(rng, 6))


# ============================================================================================ the run
def make_train(config: Config, env: LevelEnv, env_params: Any = None) -> Train[RunState]:
    """PLR / robust PLR / ACCEL as a :class:`~jaxrl_self.core.Train`; ``train(key) -> (RunState, Metrics)``."""
    config.validate(env, env_params)
    n, t = config.ppo.num_envs, config.ppo.num_steps
    num_updates = config.ppo.num_updates
    if (message := fill_warning(config, num_updates, n)) is not None:
        warnings.warn(message, stacklevel=2)
    student = common.make_student(config, env, env_params, num_updates)
    generator = common.level_generator(env, config.n_walls)
    sampler = make_sampler(config)
    evaluate, heldout = common.make_student_eval(config, student)

    def init(key: jax.Array) -> RunState:
        k_params, k_levels, k_run = jax.random.split(key, 3)
        params = common.init_params(student, k_params)
        levels = jax.vmap(generator)(jax.random.split(k_levels, n))
        example = jax.tree.map(lambda x: x[0], levels)
        info = jax.tree.map(lambda x: x[0], common.level_info(env, levels))
        zero = jnp.zeros((), jnp.int32)
        return RunState(
            params=params, opt_state=student.tx.init(params), rng=k_run,
            buffer=sampler.initialize(example, info), levels=levels, last_replay_levels=levels,
            last_branch=jnp.full((), -1, jnp.int32), counts=CycleCounts(zero, zero, zero, zero),
            update_step=zero, env_steps=zero, nonfinite_update=jnp.full((), -1, jnp.int32),
        )

    # --- the levels of each kind of cycle: (buffer, buffer indices or -1, levels [n])
    def new_levels(state: RunState, buffer: LevelBuffer, key: jax.Array):
        return buffer, jnp.full((n,), -1, jnp.int32), jax.vmap(generator)(jax.random.split(key, n))

    def replay_levels(state: RunState, buffer: LevelBuffer, key: jax.Array):
        return sampler.sample_replay_levels(buffer, key, n)

    def mutated_levels(state: RunState, buffer: LevelBuffer, key: jax.Array):
        children = jax.vmap(env.mutate_level, (0, 0, None))(jax.random.split(key, n), state.last_replay_levels,
                                                            config.num_edits)
        return buffer, jnp.full((n,), -1, jnp.int32), children

    def update(state: RunState) -> tuple[RunState, Metrics]:
        keys = update_keys(state.rng)

        # 1. choose the kind of cycle
        replay = sampler.sample_replay_decision(state.buffer, keys.decide)
        branch = jnp.where(replay, REPLAY, NEW).astype(jnp.int32)
        if config.use_accel:
            branch = jnp.where(state.last_branch == REPLAY, MUTATE, branch)
        is_replay = branch == REPLAY

        # 2. its levels
        kinds = [new_levels, replay_levels, mutated_levels] if config.use_accel else [new_levels, replay_levels]
        buffer, indices, levels = jax.lax.switch(branch, kinds, state, state.buffer, keys.levels)

        # 3. rollout (fresh episodes on every level, restarting on the same level)
        ro = common.rollout_on_levels(student, state.params, keys.rollout, levels, t)

        # 4. score, and write the buffer: replayed slots get their new score, new/edited levels are offered
        stored_max = jnp.where(is_replay, buffer.max_returns[jnp.clip(indices, 0)], -jnp.inf)
        scores = common.score_levels(config.score_function, ro, stored_max)
        info = common.level_info(env, levels)
        buffer = jax.lax.cond(
            is_replay,
            lambda b: sampler.update_scores(b, indices, scores.score, scores.max_return, scores.valid),
            lambda b: sampler.insert_batch(b, levels, scores.score, scores.max_return, scores.valid, info)[0],
            buffer,
        )

        # 5. learn: always on replay cycles; on new/edited levels only with exploratory gradient updates
        healthy = state.nonfinite_update < 0
        train_now = is_replay | config.exploratory_grad_updates
        learned = common.learn_step(student, keys.learn, state.params, state.opt_state, ro, train_now, healthy)
        nonfinite = jnp.where(healthy & ~learned.finite, state.update_step, state.nonfinite_update)

        # 6. watch: statistics of the levels and the buffer, periodic held-out evaluation
        cycle = common.batch_stats(info, scores)
        eval_metrics, eval_valid = evaluation.periodic_eval(
            evaluate, heldout, learned.params, keys.eval, state.update_step, eval_every=config.eval_every,
            num_updates=num_updates)
        c = state.counts
        counts = CycleCounts(new=c.new + (branch == NEW), replay=c.replay + is_replay,
                             mutate=c.mutate + (branch == MUTATE), grad_updates=c.grad_updates + learned.applied)
        env_steps = state.env_steps + n * t
        metrics = Metrics(
            env_steps=env_steps, **common.fields_of(common.episode_summary(ro)), branch=branch,
            grad_applied=learned.applied, param_change=learned.param_change, loss=learned.loss,
            loss_valid=learned.computed, learn=learned.stats, learn_valid=learned.computed,
            learning_rate=common.learning_rate_at(config, counts.grad_updates, num_updates),
            level=cycle, replay=cycle, replay_valid=is_replay, buffer=common.buffer_summary(sampler, buffer),
            eval=eval_metrics, eval_valid=eval_valid,
        )
        new_state = RunState(
            params=learned.params, opt_state=learned.opt_state, rng=keys.next, buffer=buffer, levels=levels,
            last_replay_levels=jax.tree.map(lambda a, b: jnp.where(is_replay, a, b), levels,
                                            state.last_replay_levels),
            last_branch=branch, counts=counts, update_step=state.update_step + 1, env_steps=env_steps,
            nonfinite_update=nonfinite,
        )
        return new_state, metrics

    return Train(init=init, update=update, num_updates=num_updates, config=config)


make_eval = common.make_eval
