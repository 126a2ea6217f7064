"""A grounded-reward level teacher for the maze: SOAR's teacher signal driving PAIRED's level generator, as one
compiled program.

    jaxrl-self train soar_maze --env maze --seeds 3
    jaxrl-self train soar_maze --env maze --teacher-reward learnability       # the intrinsic ablation
    jaxrl-self train soar_maze --env maze --no-promotion                      # the baseline never moves

::

    from jaxrl_self import envs
    from jaxrl_self.teach import soar_maze
    train = soar_maze.make_train(soar_maze.Config(), envs.make("maze"))
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 3))     # 3 seeds, one program

PAIRED pays its level designer by regret, which needs a second student and is known to be unstable; PLR and
ACCEL pick or edit levels by a score. Here the designer (PAIRED's adversary in PAIRED's maze editor,
:class:`~jaxrl_self.curricula.paired.AdversaryConfig`) is paid, as SOAR's teacher is
(:mod:`jaxrl_self.teach.soar`), by the *measured progress* students make on hard mazes after training on its
levels. The *hard mazes* are procedurally generated solvable mazes (the student's generator, ``n_walls``) that
the starting student solves 0 times in ``hard_attempts`` attempts, chosen in ``init`` from ``hard_candidates``
fixed candidates (the same for every seed), excluding every held-out level; the named held-out mazes are only
evaluated. Each outer step (:func:`make_train`'s ``update``), top to bottom:

1. **design**: the adversary builds ``g = num_batches`` batches of ``N = num_envs`` levels (``g × N`` design
   episodes of the editor side by side, ``adversary.n_walls + 2`` steps each);
2. **inner loop**: for each batch ``k``, ``r = num_students`` copies of the *baseline* student (fresh Adam
   state each) take ``inner_updates`` PPO updates on the batch's levels (each: ``num_steps`` steps on every level,
   episodes restarting on their level, then the PPO epochs); all ``g × r`` copies are one ``jax.vmap``;
3. **reward** (``teacher_reward="grounded"``): the baseline and every copy play a fresh sample of
   ``reward_levels`` hard mazes, ``reward_attempts`` episodes each (the same sample and the same random numbers
   for all of them, so the differences are not noise of the sampling); batch ``k`` earns
   ``R_k = (1/r) Σ_j [solved(θ_kj) − solved(θ_base)]`` (:func:`jaxrl_self.teach.grounded.grounded_rewards`). The
   ablation ``"learnability"`` pays ``R_k = mean_l p_l (1 − p_l)``, ``p_l`` the baseline's solved rate on level
   ``l`` of the batch (``reward_attempts`` episodes; the learnability of the UED literature), and never reads
   the hard mazes;
4. **teacher update**: RLOO over the ``g`` batches, ``A_k = R_k − mean_{l≠k} R_l``, given to every step of
   every design of batch ``k``; PPO's clipped loss on the design steps (:func:`jaxrl_self.algos.ppo.learn`,
   the adversary's PPO; its critic regresses to ``R_k`` and takes no part in the advantage);
5. **promotion** (``promotion=True``): when the mean of the last ``promotion_window`` steps' mean rewards
   exceeds ``promotion_threshold``, the median copy (by its hard-maze solved rate) of the best batch becomes the
   baseline, and the window restarts (:func:`jaxrl_self.teach.grounded.promotion_step`). Without promotion the
   baseline never changes: the ablation measures what the teacher learns, not a student;
6. **watch**: rewards, the designed levels (walls, shortest path, solvable share), the copies' training returns,
   and every ``eval_every`` outer steps the baseline on the held-out mazes
   (:mod:`jaxrl_self.curricula.evaluation`).

The deployed student is the baseline (``RunState.params``): ``jaxrl-self eval`` evaluates it. ``env_steps`` and
``total_timesteps`` count the students' *training* steps (``g × r × inner_updates × num_envs × num_steps`` per
outer step, every copy's, promoted or not): the budget DR, PLR, ACCEL and PAIRED are compared at.
``measure_steps`` counts the steps spent measuring (the hard mazes in ``init``, the reward's episodes), which the
other curricula do not have; the adversary's design steps are counted by neither, as in PAIRED.
"""
from __future__ import annotations

from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self import rl
from jaxrl_self.algos import ppo
from jaxrl_self.core.algorithm import FLAT_FLAGS, Train
from jaxrl_self.core.environment import Environment, LevelEnv, tree_select
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.curricula import common, evaluation
from jaxrl_self.curricula.common import StudentConfig, static
from jaxrl_self.curricula.paired import AdversaryConfig, design_levels, make_adversary_network, make_editor
from jaxrl_self.rl import group
from jaxrl_self.teach.grounded import grounded_rewards, promoted_student, promotion_step

__all__ = ["NAME", "DEFAULT_ENV", "TEACHER_REWARDS", "HARD_SEED", "Config", "HardMazes", "Promotion", "RunState",
           "Metrics", "hard_mazes", "learnability_rewards", "design_advantages", "make_inner", "make_train",
           "make_eval"]

NAME = "soar_maze"
#: What it trains on: level environments (the maze) (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("level",)
DEFAULT_ENV = "maze"
TEACHER_REWARDS = ("grounded", "learnability")
#: Seed of the hard-maze candidates (the same candidates for every run seed).
HARD_SEED = 14_2026


# ============================================================================================ configuration
@struct.dataclass
class Config(StudentConfig):
    """The grounded maze teacher: the student (:class:`~jaxrl_self.curricula.common.StudentConfig`; its PPO runs
    the inner loop, ``ppo.total_timesteps`` is the budget of the copies' training steps, ``n_walls`` the generator
    of the hard-maze candidates), the level designer (``adversary``, PAIRED's), the inner loop, the reward, the
    hard mazes and the promotion rule."""

    ppo: Annotated[ppo.Config, FLAT_FLAGS] = common.student_ppo(anneal_lr=False)
    """the student's PPO (the curricula's defaults, constant learning rate: each copy's run is short)"""
    adversary: AdversaryConfig = AdversaryConfig()
    """the level designer: PAIRED's editor, network and PPO (flags ``--adversary.*``)"""
    # -- the outer step (static)
    teacher_reward: str = static("grounded")
    """'grounded' (the copies' solved-rate gain on hard mazes) or 'learnability' (mean p(1-p) of the baseline)"""
    num_batches: int = static(4)
    """g: batches of levels the adversary designs per outer step (the RLOO group)"""
    num_students: int = static(2)
    """r: copies of the baseline trained on each batch"""
    inner_updates: int = static(2)
    """PPO updates each copy takes on its batch"""
    promotion: bool = static(True)
    """promote the median copy of the best batch when the reward's moving average exceeds the threshold"""
    promotion_window: int = static(3)
    """outer steps in the moving average"""
    # -- the hard mazes (static)
    hard_candidates: int = static(512)
    """candidate mazes from the generator (the same for every seed) the hard mazes are chosen from"""
    hard_attempts: int = static(8)
    """a candidate is hard when the starting student solves it 0 times in this many attempts"""
    hard_size: int = static(64)
    """hard mazes kept (the first that qualify, in candidate order)"""
    hard_seed: int = static(HARD_SEED)
    """seed of the candidates"""
    reward_levels: int = static(32)
    """hard mazes sampled afresh each outer step for the reward"""
    reward_attempts: int = static(2)
    """episodes per sampled maze (and per designed level for learnability)"""
    # -- traced
    promotion_threshold: float = 0.01
    """τ: promote when the moving average of the mean reward exceeds it"""

    @property
    def num_copies(self) -> int:
        return self.num_batches * self.num_students

    @property
    def env_steps_per_update(self) -> int:
        """Training steps of all copies per outer step: ``g × r × inner_updates × num_envs × num_steps``."""
        return self.num_copies * self.inner_updates * self.ppo.batch_size

    @property
    def num_updates(self) -> int:
        return self.ppo.total_timesteps // self.env_steps_per_update

    def validate(self, env: Environment | None = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (before compiling)."""
        owner = self.owner
        if not isinstance(self.adversary, AdversaryConfig):
            raise ConfigError("adversary", type(self.adversary).__name__, "a paired.AdversaryConfig", owner)
        super().validate(env, env_params)  # the student's PPO (sizes first: the designs are counted from them)
        if self.teacher_reward not in TEACHER_REWARDS:
            raise ConfigError("teacher_reward", self.teacher_reward, f"one of {TEACHER_REWARDS}", owner)
        common.check_positive_int(owner, "num_batches", self.num_batches, 2)  # RLOO needs two batches
        for name in ("num_students", "inner_updates", "promotion_window", "hard_candidates", "hard_attempts",
                     "hard_size", "reward_levels", "reward_attempts"):
            common.check_positive_int(owner, name, getattr(self, name))
        common.check_positive_int(owner, "hard_seed", self.hard_seed, 0)
        self.adversary.validate(owner, "adversary.", env, self.num_batches * self.ppo.num_envs)
        if self.hard_size > self.hard_candidates:
            raise ConfigError("hard_size", self.hard_size, f"an int in [1, hard_candidates={self.hard_candidates}]",
                              owner)
        if not isinstance(self.promotion, (bool, np.bool_)):
            raise ConfigError("promotion", self.promotion, "True or False", owner)
        tau = self.promotion_threshold
        if not isinstance(tau, jax.core.Tracer) and (
                isinstance(tau, (bool, np.bool_)) or not isinstance(tau, (int, float, np.integer, np.floating))
                or not np.isfinite(tau)):
            raise ConfigError("promotion_threshold", tau, "a finite number", owner)
        if self.ppo.total_timesteps < self.env_steps_per_update:
            raise ConfigError("total_timesteps", self.ppo.total_timesteps,
                              f">= num_batches x num_students x inner_updates x num_envs x num_steps = "
                              f"{self.env_steps_per_update} (one outer step)", owner)


# ============================================================================================ state and metrics
@struct.dataclass
class HardMazes:
    """The starting student's fail@``hard_attempts`` mazes: ``levels`` (``[hard_size]``; the first ``count``
    qualify, the rest repeat qualifying ones) and ``qualified`` (how many of the candidates qualified)."""

    levels: Any
    count: jax.Array  # int32: valid slots, min(qualified, hard_size)
    qualified: jax.Array  # int32


@struct.dataclass
class Promotion:
    """The promotion rule's memory: the last ``m`` outer steps' mean rewards (``filled`` since the last
    promotion, newest last) and the number of promotions."""

    window: jax.Array
    filled: jax.Array
    count: jax.Array


@struct.dataclass
class RunState:
    """Everything a run needs to continue (vmapped runs add a leading seed axis). ``params`` is the baseline
    student (the deployed one); levels are designed afresh each outer step and every copy starts fresh episodes,
    so no environment state is kept."""

    params: Any  # the baseline student
    adversary: Any  # the teacher's parameters
    adversary_opt: Any  # its optax state
    rng: jax.Array
    hard: HardMazes
    promotion: Promotion
    update_step: jax.Array  # int32, outer steps done
    env_steps: jax.Array  # int32, training steps of all copies
    measure_steps: jax.Array  # int32, env steps spent measuring (hard mazes, rewards)
    nonfinite_update: jax.Array  # int32, -1 or the first outer step with a non-finite loss


@struct.dataclass
class Metrics:
    """One row per outer step (scalars per seed). ``episode_*`` are the copies' training episodes (the runner's
    progress bar shows them), ``loss`` the teacher's; ``eval.*`` (the baseline) is valid only where
    ``eval_valid``."""

    env_steps: jax.Array
    measure_steps: jax.Array
    episode_return: jax.Array  # mean return of the copies' completed training episodes (all inner updates)
    episode_length: jax.Array
    episode_return_valid: jax.Array
    episodes_finished: jax.Array
    reward_mean: jax.Array  # mean teacher reward over the g batches
    reward_max: jax.Array
    reward_std: jax.Array
    grounded_mean: jax.Array  # mean over batches of the copies' solved-rate gain (computed for both rewards)
    moving_average: jax.Array  # the promotion rule's (NaN until the window is full)
    promoted: jax.Array  # bool: this step promoted a copy
    promotions: jax.Array  # int32: promotions so far
    baseline_hard_solved: jax.Array  # the baseline's solved rate on this step's hard sample (before promotion)
    student_hard_solved: jax.Array  # the copies' mean solved rate on it
    hard_qualified: jax.Array  # int32: candidates that qualified as hard
    loss: jax.Array  # the teacher's mean total PPO loss
    teacher: common.LearnStats
    inner: common.LearnStats  # the copies' PPO statistics (mean over copies and inner updates)
    level: common.LevelStats  # the designed levels
    eval: evaluation.EvalMetrics  # the baseline on the held-out mazes
    eval_valid: jax.Array


# ============================================================================================ pure pieces
def learnability_rewards(solved: jax.Array) -> jax.Array:
    """The intrinsic ablation ``[g]`` from the baseline's solved rates ``[g, N]`` on each batch's levels:
    ``mean_l p_l (1 − p_l)`` (largest for levels solved half the time)."""
    return jnp.mean(solved * (1.0 - solved), axis=1)


def design_advantages(rewards: jax.Array, design_steps: int, levels_per_batch: int,
                      estimator: str = "rloo") -> jax.Array:
    """``[T, g * N]`` advantages of the design steps: every step of every design of batch ``k`` (designs
    ``k N .. (k+1) N − 1``) gets the group advantage of the ``g`` batch rewards (RLOO:
    ``R_k − mean_{l≠k} R_l``)."""
    adv = group.group_advantages(rewards[None, :], estimator)[0]  # [g]
    return jnp.broadcast_to(jnp.repeat(adv, levels_per_batch)[None], (design_steps, adv.shape[0] * levels_per_batch))


# ============================================================================================ program pieces
def _in_set(levels: Any, others: Any) -> jax.Array:
    """``[C]`` bool: level ``c`` equals (every leaf) one of ``others`` (``[M]``)."""
    c, m = jax.tree.leaves(levels)[0].shape[0], jax.tree.leaves(others)[0].shape[0]
    same = [(a[:, None] == b[None]).reshape(c, m, -1).all(-1) for a, b in
            zip(jax.tree.leaves(levels), jax.tree.leaves(others))]
    return jnp.any(jnp.logical_and.reduce(jnp.stack(same)) if len(same) > 1 else same[0], axis=1)


def hard_mazes(config: Config, student: common.Student, params: Any, key: jax.Array, exclude: Any,
               candidates: Any = None) -> HardMazes:
    """The hard mazes of a student with ``params``: of the ``hard_candidates`` levels from the generator
    (``n_walls``; seed ``hard_seed``; or the given ``candidates``), the solvable ones not in ``exclude`` (the
    held-out levels) that it solves 0 times in ``hard_attempts`` attempts (sampled actions, ``eval_max_steps``
    steps), the first ``hard_size`` of them in candidate order."""
    if candidates is None:
        generator = common.level_generator(student.env, config.n_walls)
        keys = jax.random.split(jax.random.key(config.hard_seed), config.hard_candidates)
        candidates = jax.vmap(generator)(keys)
    played = evaluation.play_levels(student.network, student.env, params, key, candidates,
                                    num_attempts=config.hard_attempts, max_steps=config.eval_max_steps,
                                    env_params=student.env_params)
    solvable = jax.vmap(student.env.shortest_path)(candidates) >= 0
    hard = solvable & ~jnp.any(played.solved, axis=1) & ~_in_set(candidates, exclude)
    order = jnp.argsort(~hard, stable=True)  # qualifying candidates first, in candidate order
    qualified = jnp.sum(hard).astype(jnp.int32)
    count = jnp.minimum(qualified, config.hard_size)
    slots = jnp.arange(config.hard_size)
    pick = order[jnp.where(slots < count, slots, slots % jnp.maximum(count, 1))]
    return HardMazes(levels=jax.tree.map(lambda x: x[pick], candidates), count=count, qualified=qualified)


def make_inner(config: Config, student: common.Student):
    """``inner(keys [C], params, levels [C, N]) -> (params [C], stats)``: ``C`` copies of ``params``, each
    trained by ``inner_updates`` PPO updates on its own batch of ``N`` levels (fresh Adam state, every update a
    fresh rollout of ``num_steps`` steps per level), vmapped over the copies. ``inner.one`` is one copy."""
    t = config.ppo.num_steps

    def one(key, params, levels, healthy=jnp.bool_(True)):
        def step(carry, k):
            p, o = carry
            k_roll, k_learn = jax.random.split(k)
            ro = common.rollout_on_levels(student, p, k_roll, levels, t)
            learned = common.learn_step(student, k_learn, p, o, ro, True, healthy)
            return (learned.params, learned.opt_state), (common.episode_summary(ro), learned.stats, learned.finite)

        (p, _), (episodes, stats, finite) = jax.lax.scan(step, (params, student.tx.init(params)),
                                                         jax.random.split(key, config.inner_updates))
        return p, (episodes, stats, finite)

    def inner(keys, params, levels, healthy=jnp.bool_(True)):
        return jax.vmap(one, (0, None, 0, None))(keys, params, levels, healthy)

    inner.one = one
    return inner


# ============================================================================================ the run
def make_train(config: Config, env: LevelEnv, env_params: Any = None, *, hard: HardMazes | None = None
               ) -> Train[RunState]:
    """The grounded maze teacher as a :class:`~jaxrl_self.core.Train`; ``train(key) -> (RunState, Metrics)``.
    ``hard``: hard mazes chosen once (:func:`hard_mazes`) instead of in ``init``."""
    config.validate(env, env_params)
    g, r, n = config.num_batches, config.num_students, config.ppo.num_envs
    G, E, A = g * n, config.reward_levels, config.reward_attempts
    num_updates = config.num_updates
    student = common.make_student(config, env, env_params, config.inner_updates)
    evaluate, heldout = common.make_student_eval(config, student)
    editor = make_editor(config.adversary, env)
    editor_params = editor.default_params
    adversary_cfg = config.adversary.run_ppo(G, num_updates)
    adversary = make_adversary_network(config.adversary, editor)
    adversary_tx = ppo.make_optimizer(adversary_cfg, num_updates)
    design_steps = config.adversary.design_steps
    inner = make_inner(config, student)
    steps_per_measure = E * A * config.eval_max_steps  # one student on the reward's sample

    def solved_on(params, key, levels, attempts):
        """``[L]`` solved rate of ``params`` on ``levels`` (``attempts`` episodes each)."""
        played = evaluation.play_levels(student.network, env, params, key, levels, num_attempts=attempts,
                                        max_steps=config.eval_max_steps, env_params=student.env_params)
        return jnp.mean(played.solved.astype(jnp.float32), axis=1)

    def init(key: jax.Array) -> RunState:
        k_student, k_adv, k_obs, k_hard, k_run = jax.random.split(key, 5)
        params = common.init_params(student, k_student)
        obs, _ = editor.reset(k_obs, editor_params)
        adv_params = adversary.init(k_adv, adversary.initial_carry(1), jax.tree.map(lambda o: o[None, None], obs),
                                    jnp.ones((1, 1), jnp.bool_))
        chosen = hard_mazes(config, student, params, k_hard, heldout.levels) if hard is None else hard
        zero = jnp.zeros((), jnp.int32)
        spent = config.hard_candidates * config.hard_attempts * config.eval_max_steps if hard is None else 0
        return RunState(params=params, adversary=adv_params, adversary_opt=adversary_tx.init(adv_params), rng=k_run,
                        hard=chosen, promotion=Promotion(window=jnp.zeros((config.promotion_window,), jnp.float32),
                                                         filled=zero, count=zero),
                        update_step=zero, env_steps=zero, measure_steps=jnp.asarray(spent, jnp.int32),
                        nonfinite_update=jnp.full((), -1, jnp.int32))

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_design, k_inner, k_sample, k_measure, k_learn, k_eval = jax.random.split(state.rng, 7)
        healthy = state.nonfinite_update < 0

        # 1. design: g batches of n levels, one design episode of the editor each (design b * n + i: batch b)
        design, levels = design_levels(k_design, adversary, state.adversary, editor, G, design_steps)
        batches = jax.tree.map(lambda x: x.reshape((g, n) + x.shape[1:]), levels)

        # 2. inner loop: r copies of the baseline per batch (copy k * r + j: batch k), one vmap
        copies_levels = jax.tree.map(lambda x: jnp.repeat(x, r, axis=0), batches)
        copies, (episodes, inner_stats, inner_finite) = inner(jax.random.split(k_inner, g * r), state.params,
                                                              copies_levels, healthy)

        # 3. reward: the copies' solved-rate gain on a fresh sample of hard mazes (common random numbers)
        idx = jax.random.randint(k_sample, (E,), 0, jnp.maximum(state.hard.count, 1))
        sample = jax.tree.map(lambda x: x[idx], state.hard.levels)
        base_solved = jnp.mean(solved_on(state.params, k_measure, sample, A))
        copy_solved = jax.vmap(lambda p: jnp.mean(solved_on(p, k_measure, sample, A)))(copies).reshape(g, r)
        grounded = jnp.where(state.hard.count > 0, grounded_rewards(copy_solved, base_solved), 0.0)
        measured = (g * r + 1) * steps_per_measure
        if config.teacher_reward == "grounded":
            rewards = grounded
        else:  # learnability of the designed levels for the baseline
            p_levels = solved_on(state.params, k_measure, levels, A).reshape(g, n)
            rewards = learnability_rewards(p_levels)
            measured += G * A * config.eval_max_steps

        # 4. the teacher's update: RLOO over batches on every design step
        advantages = design_advantages(rewards, design_steps, n)
        targets = jnp.broadcast_to(jnp.repeat(rewards, n)[None], advantages.shape)
        batch = ppo.make_batch(design, design.extras["value"], advantages, targets)
        adv_params, adv_opt, adv_stats = ppo.learn(k_learn, adversary_cfg, adversary, adversary_tx, state.adversary,
                                                   state.adversary_opt, batch, adversary.initial_carry(G))
        finite = rl.all_finite(adv_stats["loss"]) & rl.all_finite(adv_stats["grad_norm"]) & jnp.all(inner_finite)
        (adv_params, adv_opt), nonfinite, keep = rl.keep_if_finite(
            state.nonfinite_update, state.update_step, finite, (adv_params, adv_opt),
            (state.adversary, state.adversary_opt))

        # 5. promotion: the median copy of the best batch, when the moving average clears the threshold
        pr = state.promotion
        window, filled, fired, average = promotion_step(pr.window, pr.filled, jnp.mean(rewards),
                                                        config.promotion_threshold, config.promotion)
        fired = fired & keep  # never promote from a step with a non-finite loss
        best, median = promoted_student(rewards, copy_solved)
        chosen = jax.tree.map(lambda x: x[best * r + median], copies)
        baseline = tree_select(fired, chosen, state.params)

        # 6. watch
        eval_metrics, eval_valid = evaluation.periodic_eval(
            evaluate, heldout, baseline, k_eval, state.update_step, eval_every=config.eval_every,
            num_updates=num_updates)
        weights = episodes.episodes_finished.astype(jnp.float32)
        total = jnp.maximum(jnp.sum(weights), 1.0)
        env_steps = state.env_steps + config.env_steps_per_update
        measure_steps = state.measure_steps + measured
        metrics = Metrics(
            env_steps=env_steps, measure_steps=measure_steps,
            episode_return=jnp.sum(weights * episodes.episode_return) / total,
            episode_length=jnp.sum(weights * episodes.episode_length) / total,
            episode_return_valid=jnp.any(episodes.episode_return_valid),
            episodes_finished=jnp.sum(episodes.episodes_finished).astype(jnp.int32),
            reward_mean=jnp.mean(rewards), reward_max=jnp.max(rewards), reward_std=jnp.std(rewards),
            grounded_mean=jnp.mean(grounded), moving_average=average, promoted=fired,
            promotions=pr.count + fired, baseline_hard_solved=base_solved, student_hard_solved=jnp.mean(copy_solved),
            hard_qualified=state.hard.qualified, loss=jnp.mean(adv_stats["loss"]),
            teacher=common.LearnStats(**{f: jnp.mean(adv_stats[f]) for f in common.LearnStats.__dataclass_fields__}),
            inner=jax.tree.map(jnp.mean, inner_stats),
            level=common.level_stats(common.level_info(env, levels)),
            eval=eval_metrics, eval_valid=eval_valid,
        )
        new_state = RunState(params=baseline, adversary=adv_params, adversary_opt=adv_opt, rng=rng, hard=state.hard,
                             promotion=Promotion(window=window, filled=filled, count=pr.count + fired),
                             update_step=state.update_step + 1, env_steps=env_steps, measure_steps=measure_steps,
                             nonfinite_update=nonfinite)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=num_updates, config=config)


make_eval = common.make_eval
