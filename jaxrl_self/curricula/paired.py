"""PAIRED (Dennis et al., 2020, "Emergent Complexity and Zero-shot Transfer via Unsupervised Environment
Design") on the maze, as one XLA program.

    jaxrl-self train paired --env maze --seeds 3

::

    from jaxrl_self import envs
    from jaxrl_self.curricula import paired
    train = paired.make_train(paired.Config(), envs.make("maze"))
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 3))    # 3 seeds, one program

Three agents learn with PPO: an **adversary** that builds levels in the :class:`~jaxrl_self.envs.maze.MazeEditor`
(goal, agent, then walls, one cell per step), and two students of the same architecture (the maze LSTM agent),
the **protagonist** and the **antagonist**, that play those levels. One update, top to bottom:

1. **design**: the adversary rolls the editor out for one whole design episode (``n_walls + 2`` steps) in
   ``num_envs`` editors side by side, each with its own random noise vector; the levels are read from the last
   step's ``info["level"]``. The editor itself pays nothing.
2. **play**: the protagonist and the antagonist each play the ``num_envs`` levels for ``num_steps`` steps
   (:func:`jaxrl_self.curricula.common.rollout_on_levels`: every environment starts a fresh episode on its
   level with a zero LSTM state and replays the same level whenever an episode ends), so a good student
   completes several episodes per level. The two students are one computation vmapped over the stacked pair.
3. **regret** of each level θ (minimax's ``relative_regret``, jaxued's ``est_regret``)::

       regret(θ) = max_k R^A_k(θ) − mean_k R^P_k(θ)        (clipped at 0 when clip_regret, as minimax)

   over the *completed* episodes ``k`` of the antagonist (A) and the protagonist (P) in this update's rollout,
   undiscounted returns. A student with no completed episode on a level counts as 0 there (both references
   start their max and mean at 0; with ``num_steps >= max_steps_in_episode``, as by default, every level gets
   at least one completed episode, a time-out counting as one of return 0).
4. **rewards**: the adversary gets the level's regret on its *last* design step and 0 before (the design
   episode terminates there: nothing is bootstrapped). The students get the maze's reward; the antagonist,
   as in minimax and jaxued, has no regret bonus of its own.
5. **learn**: one PPO update per agent (:func:`jaxrl_self.algos.ppo.learn` through
   :func:`~jaxrl_self.curricula.common.learn_step` for the students), students with the config's ``ppo``,
   the adversary with ``adversary.ppo``. A non-finite loss or gradient in any of the three skips
   the whole update for all three (``RunState.nonfinite_update``).
6. **watch**: regret, returns, the designed levels (walls, shortest path, solvable fraction), the three PPO
   updates, and every ``eval_every`` updates the protagonist on the held-out mazes
   (:mod:`jaxrl_self.curricula.evaluation`).

Defaults: the students' are those of every curriculum here (:func:`~jaxrl_self.curricula.common.student_ppo`,
jaxued's maze scripts: 32 levels x 256 steps, 5 epochs of 1 minibatch, lr 1e-4 annealed, γ 0.995, λ 0.98,
entropy 1e-3); the editor's and the adversary's (:class:`AdversaryConfig`, :func:`adversary_ppo`) are minimax's
``configs/maze/paired.json`` (60 wall steps, noise dimension 50, conv 128 + LSTM 256, entropy 0.05, otherwise the
students' PPO settings), regret clipped at 0. ``env_steps`` and ``total_timesteps`` count the steps of *both* students (``2 * num_envs * num_steps`` per
update, jaxued's count); the adversary's design steps are not counted.

``RunState.params`` / ``opt_state`` are :class:`Agents` triples; :func:`make_eval` (``jaxrl-self eval``)
evaluates the protagonist.
"""
from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self import rl
from jaxrl_self.algos import ppo
from jaxrl_self.core.algorithm import FLAT_FLAGS, Train
from jaxrl_self.core.environment import Environment, LevelEnv
from jaxrl_self.core.errors import ConfigError, errors_within
from jaxrl_self.core.spaces import Dict, Discrete
from jaxrl_self.curricula import common, evaluation
from jaxrl_self.curricula.common import StudentConfig, static
from jaxrl_self.curricula.scores import EpisodeStats, episode_stats
from jaxrl_self.envs.maze.editor import EDITOR_ORDERS, MazeEditor
from jaxrl_self.nets.adversary import AdversaryActorCritic
from jaxrl_self.rl.rollout import Trajectory

__all__ = [
    "NAME",
    "DEFAULT_ENV",
    "adversary_ppo",
    "AdversaryConfig",
    "Config",
    "Agents",
    "RunState",
    "Metrics",
    "make_editor",
    "make_adversary_network",
    "design_levels",
    "episodic_returns",
    "regret",
    "adversary_rewards",
    "adversary_batch",
    "make_train",
    "make_eval",
]

NAME = "paired"
#: What it trains on: level environments (the maze) (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("level",)
DEFAULT_ENV = "maze"


# ============================================================================================ configuration
def adversary_ppo(**changes: Any) -> ppo.Config:
    """The adversary's PPO, minimax's ``configs/maze/paired.json``: LSTM 256, 5 epochs of 1 minibatch, lr 1e-4
    annealed, γ 0.995, λ 0.98, clip 0.2, entropy 0.05, value coefficient 0.5, grad-norm clip 0.5. Its run size
    (``total_timesteps``, ``num_envs``, ``num_steps``) is not its own: the curriculum sets it (one design per
    student level, ``n_walls + 2`` steps each, one update per cycle), so those three stay at these defaults."""
    base = ppo.Config(total_timesteps=1, num_envs=1, num_steps=1, update_epochs=5, num_minibatches=1,
                      lstm_features=256, anneal_lr=True, normalize_obs=False, normalize_advantages=True,
                      clip_value_loss=True, learning_rate=1e-4, gamma=0.995, gae_lambda=0.98, clip_eps=0.2,
                      ent_coef=0.05, vf_coef=0.5, max_grad_norm=0.5, adam_eps=1e-5)
    return base.replace(**changes)


_DERIVED = ("total_timesteps", "num_envs", "num_steps")  # the adversary's run size, set by the curriculum


@struct.dataclass
class AdversaryConfig:
    """A level-designing adversary: the maze editor it writes in, its network and its PPO. PAIRED's adversary
    and the grounded maze teacher (:mod:`jaxrl_self.teach.soar_maze`) are both one of these.

    On the command line its flags carry the prefix of the field holding it: ``--adversary.learning-rate``,
    ``--adversary.n-walls``."""

    ppo: Annotated[ppo.Config, FLAT_FLAGS] = adversary_ppo()
    """the adversary's PPO (default :func:`adversary_ppo`; run size set by the curriculum)"""
    # -- the editor (static)
    n_walls: int = static(60)
    """wall-placement steps of the editor (a design is n_walls + 2 steps; at most n_walls walls)"""
    noise_dim: int = static(50)
    """length of the adversary's random noise vector (0: none)"""
    editor_order: str = static("goal_first")
    """'goal_first' (goal, agent, then walls: the PAIRED paper, jaxued) or 'walls_first' (minimax's PAIRED)"""
    noise_per_step: bool = static(False)
    """redraw the noise at every design step (dcd, minimax) instead of once per design"""
    # -- the network (static; its LSTM width is ppo.lstm_features)
    conv_features: int = static(128)
    """conv filters of the adversary on the level image (minimax: 128)"""

    @property
    def design_steps(self) -> int:
        """Steps of one design episode: ``n_walls + 2``."""
        return self.n_walls + 2

    def run_ppo(self, num_designs: int, num_updates: int) -> ppo.Config:
        """The adversary's PPO with its run size: ``num_designs`` editors x ``design_steps`` steps per update,
        ``num_updates`` updates."""
        return self.ppo.replace(total_timesteps=max(1, num_updates) * num_designs * self.design_steps,
                                num_envs=num_designs, num_steps=self.design_steps)

    def validate(self, owner: str, prefix: str = "adversary.", env: Environment | None = None,
                 num_designs: int = 1) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` (of ``owner``, fields prefixed) for the first bad field;
        with ``env``, also check that it is a maze-like level environment the editor can build levels for."""
        base = getattr(env, "unwrapped", env)
        if env is not None:
            if not isinstance(base, LevelEnv) or not all(
                    isinstance(getattr(base, a, None), int) for a in ("height", "width")):
                raise ConfigError("env", repr(env), "a maze-like LevelEnv with integer height and width "
                                  "(e.g. envs.make('maze'))", owner)
        with errors_within(owner, prefix):
            if not isinstance(self.ppo, ppo.Config):
                raise ConfigError("ppo", type(self.ppo).__name__, "a jaxrl_self.algos.ppo.Config "
                                  "(curricula.paired.adversary_ppo(...) has the defaults)")
            default = adversary_ppo()
            for name in _DERIVED:
                if getattr(self.ppo, name) != getattr(default, name):
                    raise ConfigError(name, getattr(self.ppo, name), f"{getattr(default, name)}, its default (the "
                                      "curriculum sets the adversary's run size: one design per level, n_walls + 2 "
                                      "steps, one update per cycle)")
            if not isinstance(self.n_walls, (int, np.integer)) or isinstance(self.n_walls, bool) or self.n_walls < 0:
                raise ConfigError("n_walls", self.n_walls, "an int >= 0 (the editor's wall steps)")
            if env is not None and self.n_walls > base.height * base.width - 2:
                raise ConfigError("n_walls", self.n_walls, f"an int in [0, {base.height * base.width - 2}]")
            common.check_positive_int("", "noise_dim", self.noise_dim, 0)
            common.check_positive_int("", "conv_features", self.conv_features)
            if self.editor_order not in EDITOR_ORDERS:
                raise ConfigError("editor_order", self.editor_order, f"one of {EDITOR_ORDERS}")
            if not isinstance(self.noise_per_step, (bool, np.bool_)):
                raise ConfigError("noise_per_step", self.noise_per_step, "True or False")
            if self.ppo.normalize_obs:
                raise ConfigError("normalize_obs", True, "False (the editor's observations are not normalised)")
            common.check_positive_int("", "num_minibatches", self.ppo.num_minibatches)
            if num_designs % self.ppo.num_minibatches:
                raise ConfigError("num_minibatches", self.ppo.num_minibatches,
                                  f"a divisor of num_envs={num_designs} (minibatches are made of whole designs)")
            self.run_ppo(num_designs, 1).validate()


@struct.dataclass
class Config(StudentConfig):
    """PAIRED: the students' settings (:class:`~jaxrl_self.curricula.common.StudentConfig`, used by the
    protagonist and the antagonist alike; ``ppo.total_timesteps`` counts both), the adversary and the regret.
    Static fields fix shapes or control flow; the numeric ones are traced (a vmapped sweep)."""

    adversary: AdversaryConfig = AdversaryConfig()
    """the level designer: editor, network and PPO (flags ``--adversary.*``)"""
    clip_regret: bool = static(True)
    """clip the regret at 0 (minimax's relative_regret) or not (jaxued's est_regret)"""

    # ------------------------------------------------------------------------------------------ derived
    @property
    def env_steps_per_update(self) -> int:
        """Student steps per update: ``2 * num_envs * num_steps`` (protagonist and antagonist)."""
        return 2 * self.ppo.batch_size

    @property
    def num_updates(self) -> int:
        return self.ppo.total_timesteps // self.env_steps_per_update

    def adversary_ppo(self) -> ppo.Config:
        """The adversary's PPO config with its run size (``num_envs`` editors x ``design_steps`` steps)."""
        return self.adversary.run_ppo(self.ppo.num_envs, self.num_updates)

    # ------------------------------------------------------------------------------------------ checks
    def validate(self, env: Environment | None = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (traced values are skipped);
        with ``env``, also check that it is a maze-like level environment the editor can build levels for."""
        owner = self.owner
        if not isinstance(self.adversary, AdversaryConfig):
            raise ConfigError("adversary", type(self.adversary).__name__, "a paired.AdversaryConfig", owner)
        if isinstance(self.ppo, ppo.Config):  # the students' sizes first: the adversary's run size derives from them
            with errors_within(owner):
                self.ppo.validate()
        self.adversary.validate(owner, "adversary.", env, self.ppo.num_envs if isinstance(self.ppo, ppo.Config)
                                else 1)
        super().validate(env, env_params)
        if self.n_walls is not None:
            raise ConfigError("n_walls", self.n_walls, "None (PAIRED has no random levels; the editor's wall "
                              "steps are adversary.n_walls)", owner)
        if self.ppo.total_timesteps < self.env_steps_per_update:
            raise ConfigError("total_timesteps", self.ppo.total_timesteps,
                              f">= 2 * num_envs * num_steps = {self.env_steps_per_update} (one update: both "
                              "students play every level)", owner)
        if not isinstance(self.clip_regret, (bool, np.bool_)):
            raise ConfigError("clip_regret", self.clip_regret, "True or False", owner)


# ============================================================================================ state and metrics
@struct.dataclass
class Agents:
    """One value per agent (parameters, optimiser states, statistics...)."""

    protagonist: Any
    antagonist: Any
    adversary: Any


@struct.dataclass
class RunState:
    """Everything a PAIRED run needs to continue (vmapped runs add a leading seed axis to every leaf). Levels are
    designed afresh every update and every rollout starts fresh episodes, so no environment state is kept."""

    params: Agents  # network parameters of the three agents
    opt_state: Agents  # their optax states
    rng: jax.Array  # typed PRNG key
    update_step: jax.Array  # int32, updates done
    env_steps: jax.Array  # int32, student environment steps done (both students)
    nonfinite_update: jax.Array  # int32, -1, or the first update whose loss was NaN/inf (it and all later skipped)


@struct.dataclass
class Metrics:
    """One row per update (scalars per seed). ``episode_*`` and ``loss`` are the protagonist's (the runner's
    progress bar and summary show them); ``eval.*`` is valid only where ``eval_valid``."""

    env_steps: jax.Array  # cumulative student steps (both students)
    episode_return: jax.Array  # protagonist: mean return of its completed episodes in this update
    episode_length: jax.Array
    episode_return_valid: jax.Array
    episodes_finished: jax.Array
    antagonist_return: jax.Array  # antagonist: mean return of its completed episodes
    antagonist_return_valid: jax.Array
    regret: jax.Array  # mean over the levels of the regret = the adversary's mean return
    regret_max: jax.Array  # the largest regret of a level
    protagonist_mean_return: jax.Array  # mean over levels of the protagonist's per-level mean return
    antagonist_max_return: jax.Array  # mean over levels of the antagonist's per-level best return
    loss: jax.Array  # the protagonist's mean total PPO loss
    antagonist_loss: jax.Array
    adversary_loss: jax.Array
    protagonist: common.LearnStats  # PPO statistics of each agent (entropy: its policy's, in nats)
    antagonist: common.LearnStats
    adversary: common.LearnStats
    learning_rate: jax.Array  # the students' learning rate of the next update
    level: common.LevelStats  # the designed levels: mean walls, mean shortest path (solvable ones), solvable share
    eval: evaluation.EvalMetrics  # the protagonist on the held-out mazes
    eval_valid: jax.Array


# ============================================================================================ pieces
def make_editor(adversary: AdversaryConfig, env: LevelEnv) -> MazeEditor:
    """The :class:`~jaxrl_self.envs.maze.MazeEditor` that builds ``env``'s levels under ``adversary``."""
    base = env.unwrapped
    return MazeEditor(base.height, base.width, adversary.n_walls, adversary.noise_dim, order=adversary.editor_order,
                      noise_per_step=adversary.noise_per_step)


def make_adversary_network(adversary: AdversaryConfig, editor: Environment) -> AdversaryActorCritic:
    """The adversary for ``editor``: one logit per cell, a time embedding over the design steps."""
    params = editor.default_params
    return AdversaryActorCritic(num_actions=editor.action_space(params).n,
                                num_time_steps=int(editor.observation_space(params).spaces["time"].n),
                                conv_features=adversary.conv_features, lstm_features=adversary.ppo.lstm_features)


def design_levels(key: jax.Array, network: AdversaryActorCritic, params: Any, editor: Environment, num: int,
                  design_steps: int) -> tuple[Trajectory, Any]:
    """``(design, levels)``: ``num`` design episodes of ``editor`` side by side (``design_steps`` steps each, a
    zero LSTM state, actions sampled from the adversary), the rollout ``[design_steps, num]`` and the ``num``
    levels as built after the last step (``info["level"]``)."""
    k_reset, k_roll = jax.random.split(key)
    start = rl.rollout.reset(k_reset, editor, editor.default_params, num, network.initial_carry(num))
    _, design = ppo.collect(k_roll, network, params, editor, editor.default_params, start, design_steps)
    return design, jax.tree.map(lambda x: x[-1], design.info["level"])


def episodic_returns(rewards: jax.Array, dones: jax.Array) -> EpisodeStats:
    """Undiscounted returns of the *completed* episodes of a time-major rollout ``[T, N]``, per environment
    (``num_episodes``, ``mean_return``, ``max_return``; :func:`jaxrl_self.curricula.scores.episode_stats`, whose
    value/advantage statistics are zero here)."""
    zeros = jnp.zeros(jnp.shape(rewards), jnp.float32)
    return episode_stats(rewards, zeros, dones, zeros)


def regret(protagonist: EpisodeStats, antagonist: EpisodeStats, clip: bool = True) -> jax.Array:
    """PAIRED's regret per level: the antagonist's best completed episode minus the protagonist's mean completed
    episode, ``max(·, 0)`` when ``clip``. No completed episode counts as 0 (as minimax and jaxued)."""
    ant_max = jnp.where(antagonist.num_episodes > 0, antagonist.max_return, 0.0)
    pro_mean = jnp.where(protagonist.num_episodes > 0, protagonist.mean_return, 0.0)
    r = ant_max - pro_mean
    return jnp.maximum(r, 0.0) if clip else r


def adversary_rewards(design: Trajectory, level_regret: jax.Array) -> Trajectory:
    """The design rollout (``[T, N]``) with the adversary's rewards: ``level_regret`` (``[N]``) on the last step,
    0 before it. Every design episode must end on that step (``terminated``: nothing is bootstrapped)."""
    reward = jnp.zeros_like(design.reward).at[-1].set(level_regret.astype(design.reward.dtype))
    return design.replace(reward=reward)


def adversary_batch(adversary_cfg: ppo.Config, design: Trajectory, level_regret: jax.Array) -> ppo.Batch:
    """The adversary's PPO batch from its design rollout (``[T, N]``) and the regret of each design (``[N]``):
    rewards by :func:`adversary_rewards`, ``V(s_t)`` as recorded by the rollout, GAE(λ) with the adversary's
    γ and λ. A design step is followed by the next step of the same design, except the last, which terminates,
    so ``V(s'_t) = V(s_{t+1})`` comes from the rollout's own values: no extra pass of the (large) adversary
    network over the final observations."""
    design = adversary_rewards(design, level_regret)
    values = design.extras["value"]
    next_values = rl.bootstrap_next_values(values, jnp.zeros_like(values[0]), jnp.zeros_like(values), design.done)
    advantages, targets = ppo.compute_advantages(adversary_cfg, design, values, next_values)
    return ppo.make_batch(design, values, advantages, targets)


def _stack(a: Any, b: Any) -> Any:
    """Two pytrees of one structure -> one with a leading axis of 2."""
    return jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)


def _unstack(tree: Any) -> tuple[Any, Any]:
    """Inverse of :func:`_stack`."""
    return jax.tree.map(lambda x: x[0], tree), jax.tree.map(lambda x: x[1], tree)


def _learn_stats(stats: dict) -> common.LearnStats:
    """:class:`~jaxrl_self.curricula.common.LearnStats` (means) of :func:`jaxrl_self.algos.ppo.learn`'s stats."""
    return common.LearnStats(**{f.name: jnp.mean(stats[f.name]) for f in dataclasses.fields(common.LearnStats)})


# ============================================================================================ the run
def make_train(config: Config, env: LevelEnv, env_params: Any = None, *,
               editor: Environment | None = None) -> Train[RunState]:
    """PAIRED as a :class:`~jaxrl_self.core.Train`; ``train(key) -> (RunState, Metrics)``.

    ``env`` is the students' level environment (the maze). ``editor`` (default :func:`make_editor`) is any
    environment whose design episodes last exactly ``config.adversary.design_steps`` steps, end ``terminated``, and report
    the level built in ``info["level"]``. ``config`` may hold traced numeric fields (a sweep under ``vmap``).
    """
    config.validate(env, env_params)
    num_updates, n = config.num_updates, config.ppo.num_envs
    student = common.make_student(config, env, env_params, num_updates)
    evaluate, heldout = common.make_student_eval(config, student)
    editor = make_editor(config.adversary, env) if editor is None else editor
    editor_params = editor.default_params
    if not isinstance(editor.action_space(editor_params), Discrete) or not isinstance(
            editor.observation_space(editor_params), Dict):
        raise ConfigError("editor", repr(editor), "an environment with a Discrete action space and dict "
                          "observations (image, time, noise)", config.owner)
    adversary_cfg = config.adversary_ppo()
    adversary = make_adversary_network(config.adversary, editor)
    adversary_tx = ppo.make_optimizer(adversary_cfg, num_updates)

    def init(key: jax.Array) -> RunState:
        k_pro, k_ant, k_adv, k_obs, k_run = jax.random.split(key, 5)
        obs, _ = editor.reset(k_obs, editor_params)
        adv_params = adversary.init(k_adv, adversary.initial_carry(1), jax.tree.map(lambda o: o[None, None], obs),
                                    jnp.ones((1, 1), jnp.bool_))
        params = Agents(common.init_params(student, k_pro), common.init_params(student, k_ant), adv_params)
        opt_state = Agents(student.tx.init(params.protagonist), student.tx.init(params.antagonist),
                           adversary_tx.init(adv_params))
        zero = jnp.zeros((), jnp.int32)
        return RunState(params=params, opt_state=opt_state, rng=k_run, update_step=zero, env_steps=zero,
                        nonfinite_update=jnp.full((), -1, jnp.int32))

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_design, k_play, k_learn, k_eval = jax.random.split(state.rng, 5)
        params, opt = state.params, state.opt_state

        # 1. design: the adversary builds n levels, one design episode of the editor each
        design, levels = design_levels(k_design, adversary, params.adversary, editor, n,
                                       config.adversary.design_steps)

        # 2. play: the protagonist and the antagonist (stacked: [protagonist, antagonist]) on the same levels
        students, students_opt = _stack(params.protagonist, params.antagonist), _stack(opt.protagonist, opt.antagonist)
        rollouts = jax.vmap(lambda p, k: common.rollout_on_levels(student, p, k, levels, config.ppo.num_steps))(
            students, jax.random.split(k_play))

        # 3. regret per level: the antagonist's best episode minus the protagonist's mean episode
        pro_eps, ant_eps = _unstack(jax.vmap(episodic_returns)(rollouts.traj.reward, rollouts.traj.done))
        level_regret = regret(pro_eps, ant_eps, config.clip_regret)

        # 4. the adversary's reward: the regret, on the last design step
        adv_batch = adversary_batch(adversary_cfg, design, level_regret)

        # 5. learn: a PPO update for each agent, every rollout replayed from a zero LSTM state
        k_students, k_adv = jax.random.split(k_learn)
        healthy = state.nonfinite_update < 0
        learned = jax.vmap(lambda k, p, o, r: common.learn_step(student, k, p, o, r, True, healthy))(
            jax.random.split(k_students), students, students_opt, rollouts)
        adv_params, adv_opt, adv_stats = ppo.learn(
            k_adv, adversary_cfg, adversary, adversary_tx, params.adversary, opt.adversary,
            adv_batch, adversary.initial_carry(n))
        finite = jnp.all(learned.finite) & rl.all_finite(adv_stats["loss"]) & rl.all_finite(adv_stats["grad_norm"])
        (pro_p, ant_p), (pro_o, ant_o) = _unstack(learned.params), _unstack(learned.opt_state)
        # one non-finite loss or gradient skips the update for all three agents
        (new_params, new_opt), nonfinite, _ = rl.keep_if_finite(
            state.nonfinite_update, state.update_step, finite,
            (Agents(pro_p, ant_p, adv_params), Agents(pro_o, ant_o, adv_opt)), (params, opt))

        # 6. watch: returns, regret, the designed levels, the protagonist on the held-out mazes
        eval_metrics, eval_valid = evaluation.periodic_eval(
            evaluate, heldout, new_params.protagonist, k_eval, state.update_step, eval_every=config.eval_every,
            num_updates=num_updates)
        pro_summary, ant_summary = _unstack(jax.vmap(common.episode_summary)(rollouts))
        (pro_loss, ant_loss), (pro_stats, ant_stats) = _unstack(learned.loss), _unstack(learned.stats)
        env_steps = state.env_steps + config.env_steps_per_update
        metrics = Metrics(
            env_steps=env_steps,
            **common.fields_of(pro_summary),
            antagonist_return=ant_summary.episode_return,
            antagonist_return_valid=ant_summary.episode_return_valid,
            regret=jnp.mean(level_regret),
            regret_max=jnp.max(level_regret),
            protagonist_mean_return=jnp.mean(jnp.where(pro_eps.num_episodes > 0, pro_eps.mean_return, 0.0)),
            antagonist_max_return=jnp.mean(jnp.where(ant_eps.num_episodes > 0, ant_eps.max_return, 0.0)),
            loss=pro_loss,
            antagonist_loss=ant_loss,
            adversary_loss=jnp.mean(adv_stats["loss"]),
            protagonist=pro_stats,
            antagonist=ant_stats,
            adversary=_learn_stats(adv_stats),
            learning_rate=common.learning_rate_at(config, state.update_step, num_updates),
            level=common.level_stats(common.level_info(env, levels)),
            eval=eval_metrics,
            eval_valid=eval_valid,
        )
        new_state = RunState(params=new_params, opt_state=new_opt, rng=rng, update_step=state.update_step + 1,
                             env_steps=env_steps, nonfinite_update=nonfinite)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=num_updates, config=config)


# ============================================================================================ evaluation
def make_eval(config: Config, env: LevelEnv, env_params: Any = None, max_steps: int | None = None,
              greedy: bool | None = None):
    """``evaluate(params, key, env_params=None, num_episodes=16) -> ppo.EvalResult`` of the **protagonist**
    (``params``: ``RunState.params``, an :class:`Agents`, or the protagonist's own parameters); the students'
    :func:`jaxrl_self.curricula.common.make_eval`. ``jaxrl-self eval RUN_DIR`` runs it on the held-out mazes."""
    student_eval = common.make_eval(config, env, env_params, max_steps, greedy)

    def evaluate(params, key, env_params=None, num_episodes: int = 16):
        protagonist = params.protagonist if isinstance(params, Agents) else params
        return student_eval(protagonist, key, env_params, num_episodes)

    return evaluate


