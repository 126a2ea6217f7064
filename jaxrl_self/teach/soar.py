"""SOAR (Sundaram et al., 2026, arXiv:2601.18778): a teacher that writes problems, paid by the students' measured
progress on hard problems they cannot solve yet, as one compiled bilevel program.

Teacher and students are copies of one base model. The *hard set* is the base model's fail@``hard_samples``
problems of ``hard_difficulty`` (0 successes in that many samples), split into a training half (the teacher's
reward reads it) and a test half (evaluation only). Each outer step (:func:`make_train`'s ``update``), top to
bottom:

1. **write**: the teacher, shown the fixed prompt ``<bos> <r0>``, writes ``g = num_datasets`` datasets of
   ``n = num_prompts`` question/answer pairs ``<q> a + b = </q> <a> s </a> <eos>`` at ``temperature``; each pair
   is parsed strictly (:meth:`~jaxrl_self.envs.tokens.AdditionTask.parse_problem`); a malformed pair is masked out
   of its dataset (never drawn by a student, no weight in the teacher's loss; ``fill_rate`` reports the share
   kept). Answers are *not* verified: the students are rewarded for matching the teacher's answer
   (``answer_correct`` measures how often it is the true sum);
2. **inner loop**: for each dataset ``k``, ``r = num_students`` copies of the current *baseline* student take
   ``student.num_updates`` RLOO steps on it (:mod:`jaxrl_self.algos.grpo` with the dataset injected into its run
   state); all ``g × r`` runs are one ``jax.vmap``, no meta-gradient;
3. **reward** of dataset ``k`` (``teacher_reward="grounded"``): the mean over its ``r`` students of the change in
   greedy accuracy on a fresh sample of ``reward_problems`` hard training problems,
   ``R_k = (1/r) Σ_j [acc(θ_kj) − acc(θ_base)]``; the ablation ``"learnability"`` pays
   ``R_k = mean_i 1[p_i > 0] (1 − p_i)`` instead, ``p_i`` the baseline's success rate (``student.group_size``
   samples) on pair ``i`` against the teacher's answer (no hard problem is read);
4. **teacher update**: RLOO over the ``g`` datasets, ``A_k = R_k − mean_{l≠k} R_l``, every pair of dataset ``k``
   gets ``A_k``; the clipped policy loss on the written tokens (:func:`jaxrl_self.lm.group_policy_loss`), Adam;
5. **promotion** (``promotion=True``): when the mean of the last ``m = promotion_window`` steps' rewards
   ``R̄ = mean_k R_k`` exceeds ``τ = promotion_threshold``, the median student (by its accuracy) of the best
   dataset becomes the new baseline, that dataset joins the promoted set, and the window restarts.

::

    from jaxrl_self.teach import soar
    task = lm.base_model_task(lm.read_metadata("addition-base"))
    state, metrics = jax.jit(soar.make_train(soar.Config(), task))(jax.random.key(0))
    # jaxrl-self train soar --task addition --base-model addition-base

``init`` builds the hard set and runs the teacher's format warm-up (the base model never wrote a question: its
pretraining loss covers answers only). The warm-up writes problems of difficulties ``1 .. warmup_difficulty``
with their true sums, the base model's own pretraining range; the hard set's problems are never shown to it.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self import lm, rl
from jaxrl_self.algos import grpo
from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.environment import tree_select
from jaxrl_self.core.errors import ConfigError, errors_within
from jaxrl_self.core.sequence import VOCAB, Problem, SequenceTask
from jaxrl_self.lm.config import POSITIVE, GroupConfig, check_model
from jaxrl_self.lm.evaluate import HELD_OUT_SEED, difficulty_params, max_difficulty
from jaxrl_self.lm.supervised import SupervisedConfig, fine_tune
from jaxrl_self.nets.transformer import TransformerConfig
from jaxrl_self.rl import group
from jaxrl_self.teach.grounded import grounded_rewards, promoted_student, promotion_step

__all__ = ["NAME", "DEFAULT_ENV", "TEACHER_REWARDS", "TEACHER_PROMPT", "HARD_SEED", "Config", "HardSet",
           "Promotion", "RunState", "Metrics", "teacher_prompts", "written_problems", "write_datasets", "empty_set",
           "learnability_rewards", "teacher_advantages", "hard_set", "make_inner", "make_train",
           "eval_params", "make_eval"]

NAME = "soar"
#: What it trains on: token tasks (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("task",)
DEFAULT_ENV = "addition"
TEACHER_REWARDS = ("grounded", "learnability")
#: The teacher's fixed prompt: "write a problem".
TEACHER_PROMPT = ("<bos>", "<r0>")
#: Seed of the hard set's candidates (the same for every run seed: a fixed benchmark).
HARD_SEED = HELD_OUT_SEED + 202


# ============================================================================================ configuration
@struct.dataclass
class Config(GroupConfig):
    """SOAR: the shared LM-RL and group fields for the teacher's RL (some with SOAR's defaults), the student's
    inner RLOO (a :class:`jaxrl_self.algos.grpo.Config`), the hard set and the promotion rule."""

    # -- the teacher's RL: shared fields with SOAR's defaults
    num_updates: int = _static(40)
    """outer steps (each: write g datasets, g x r inner runs, one teacher update, maybe a promotion)"""
    max_new_tokens: int = _static(24)
    """the longest problem the teacher writes: <q> a + b = </q> <a> s </a> <eos> is 23 tokens at 5 digits"""
    base_model: str = _static("addition-long")
    """the model teacher and students start from (addition-long: rotary positions, partly right at 4 digits, so
    the fail@128 4-digit problems sit at an edge; at 5 digits the shipped models face a cliff, see docs/soar.md)"""
    num_prompts: int = _static(32)
    """n, pairs per dataset (the teacher is prompted n times per dataset)"""
    advantage: str = _static("rloo")
    """the teacher's advantage over its g datasets (SOAR: 'rloo')"""
    use_reference: bool = _static(False)
    """keep a frozen copy of the warm-up teacher for a KL term (kl_coef)"""
    learning_rate: float = 3e-4
    """the teacher's Adam step size"""
    # -- the bilevel loop (static)
    num_datasets: int = _static(4)
    """g, datasets written per outer step (the teacher's RLOO group)"""
    num_students: int = _static(4)
    """r, student copies trained on each dataset"""
    student: grpo.Config = grpo.Config(num_updates=10, num_prompts=16, group_size=4, advantage="rloo",
                                       max_new_tokens=10, use_reference=False, base_model="")
    """the students' inner RLOO on a dataset (num_updates = inner steps); base_model is ignored (they start
    from the baseline)"""
    teacher_reward: str = _static("grounded")
    """'grounded' (the students' progress on hard problems) or 'learnability' (1 - p where the baseline's success
    rate p > 0, else 0; the intrinsic ablation)"""
    promotion: bool = _static(True)
    """promote the best dataset's median student when the reward's moving average exceeds the threshold"""
    promotion_window: int = _static(3)
    """m, outer steps in the moving average"""
    # -- the hard set (static)
    hard_difficulty: int = _static(4)
    """difficulty of the hard problems (addition: operand digits)"""
    hard_candidates: int = _static(2048)
    """candidate problems; those the base model never solves in hard_samples tries qualify"""
    hard_samples: int = _static(128)
    """samples per candidate (the paper's fail@128)"""
    hard_seed: int = _static(HARD_SEED)
    """seed of the candidates (the same hard set for every run seed)"""
    reward_problems: int = _static(32)
    """hard training problems drawn afresh each outer step to measure the students' progress"""
    # -- the teacher's format warm-up (static)
    warmup_steps: int = _static(300)
    """supervised steps teaching the teacher to write problems"""
    warmup_difficulty: int = _static(4)
    """the warm-up's problems have difficulties 1 .. warmup_difficulty (the shipped base models' pretraining
    range is 1-4): the teacher learns to write what the base model has seen, never the hard set itself"""
    sft_batch: int = _static(64)
    """sequences per warm-up step"""
    # -- traced
    promotion_threshold: float = 0.01
    """τ: promote when the moving average of the reward exceeds it"""
    sft_learning_rate: float = 1e-3
    """peak learning rate of the warm-up (AdamW, warm-up + cosine)"""

    @property
    def batch_size(self) -> int:
        """Written pairs per outer step: ``num_prompts * num_datasets``."""
        return self.num_prompts * self.num_datasets

    def validate(self, env: Any = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (before compiling)."""
        owner = "soar.Config"
        if self.teacher_reward not in TEACHER_REWARDS:
            raise ConfigError("teacher_reward", self.teacher_reward, f"one of {TEACHER_REWARDS}", owner)
        if not isinstance(self.student, grpo.Config):
            raise ConfigError("student", type(self.student).__name__, "a jaxrl_self.algos.grpo.Config", owner)
        self.validate_group(env, env_params, owner=owner, group_size=self.num_datasets, group_field="num_datasets",
                            batch_size=lambda: self.batch_size, flags=("promotion",),
                            sizes=("num_students", "promotion_window", "hard_difficulty", "hard_candidates",
                                   "hard_samples", "reward_problems", "sft_batch"),
                            extra_numeric={"promotion_threshold": (lambda x: x == x, "a number"),
                                           "sft_learning_rate": POSITIVE})
        steps = self.warmup_steps  # static: a Python loop count and an SFT schedule length
        if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
            raise ConfigError("warmup_steps", steps, "an integer >= 0 (supervised warm-up steps of the teacher)", owner)
        with errors_within(owner, "student."):  # the students start from the teacher's base model
            self.student.replace(base_model=self.base_model).validate(env, None)
        if env is not None:
            if not hasattr(env, "parse_problem"):
                raise ConfigError("env", repr(env), "a task whose problems a model can write (parse_problem): "
                                  "pass --task addition", owner)
            top = max_difficulty(env)
            if not 1 <= self.hard_difficulty <= top:
                raise ConfigError("hard_difficulty", self.hard_difficulty, f"an int in [1, {top}] for {env!r}", owner)
            if not isinstance(self.warmup_difficulty, int) or not 1 <= self.warmup_difficulty <= top:
                raise ConfigError("warmup_difficulty", self.warmup_difficulty, f"an int in [1, {top}] for {env!r}",
                                  owner)


# ============================================================================================ state and metrics
@struct.dataclass
class HardSet:
    """The base model's fail@``hard_samples`` problems: ``train`` (for rewards) and ``test`` (evaluation only)
    halves of the ``hard_candidates`` (a candidate is valid in at most one), and how many qualified."""

    train: lm.ProblemSet
    test: lm.ProblemSet
    qualified: jax.Array  # int32


@struct.dataclass
class Promotion:
    """The promotion rule's memory: the last ``m`` outer steps' mean rewards (``filled`` of them since the last
    promotion) and the promoted datasets (``num_updates * n`` rows, ``count`` datasets so far)."""

    window: jax.Array  # [m] float32, newest last
    filled: jax.Array  # int32
    promoted: lm.ProblemSet  # [num_updates * n]
    count: jax.Array  # int32


@struct.dataclass
class RunState(lm.RunState):
    """The teacher's :class:`jaxrl_self.lm.RunState` (params, optimiser, RNG, counters) plus the outer loop's
    state: the baseline student, the hard set and the promotion memory. One pytree: checkpointed whole."""

    baseline: Any = None  # parameters the students start from
    hard: Any = None  # HardSet
    promotion: Any = None  # Promotion


@struct.dataclass
class Metrics:
    """One row per outer step (scalars per seed)."""

    env_steps: jax.Array  # cumulative teacher tokens written
    episode_return: jax.Array  # = reward_mean
    episode_return_valid: jax.Array
    reward_mean: jax.Array  # mean teacher reward over the g datasets
    reward_max: jax.Array
    reward_std: jax.Array
    grounded_mean: jax.Array  # mean over datasets of the students' accuracy change (computed for both rewards)
    moving_average: jax.Array  # the promotion rule's moving average (NaN until the window is full)
    promoted: jax.Array  # bool: this step promoted a student
    promotions: jax.Array  # int32: promotions so far
    baseline_reward_accuracy: jax.Array  # the baseline's greedy accuracy on this step's hard training sample
    student_reward_accuracy: jax.Array  # the students' mean accuracy on it
    baseline_test_accuracy: jax.Array  # greedy accuracy of the baseline (after promotion) on the hard test half
    inner_reward_first: jax.Array  # the students' mean RLOO reward at their first inner step
    inner_reward_last: jax.Array  # ... and at their last
    fill_rate: jax.Array  # fraction of written pairs that parse strictly
    answer_correct: jax.Array  # fraction of well-formed pairs whose answer is the true sum
    distinct_questions: jax.Array  # fraction of well-formed questions not written before in this step
    question_difficulty: jax.Array  # mean difficulty (addition: longest operand) of well-formed questions
    difficulty_std: jax.Array  # its standard deviation (a spread measure)
    hard_difficulty_share: jax.Array  # fraction of well-formed questions at the hard difficulty or above
    loss: jax.Array
    policy_loss: jax.Array
    kl: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array
    learning_rate: jax.Array


# ============================================================================================ pure pieces
def written_problems(task: SequenceTask, tokens: jax.Array) -> tuple[Problem, jax.Array, jax.Array]:
    """Pairs written by the teacher ``tokens [N, T]`` -> ``(problems, valid [N], correct [N])``.

    ``problems`` carry the teacher's own answer (the students are trained to match it, as in SOAR) and a
    solution ``<a> answer </a> <eos>`` built from it; ``valid``: the pair parses strictly; ``correct``: valid and
    the answer is the true one (a diagnostic only)."""

    def one(t):
        problem, ok = task.parse_problem(t)
        written, ok_answer = task.extract_answer(t, strict=True)
        ok = ok & ok_answer
        correct = ok & jnp.all(written == problem.answer)
        length = jnp.sum(written != task.vocab.PAD).astype(jnp.int32)
        solution, _, _ = lm.concat_segments([
            (jnp.full((1, 1), task.vocab.A, jnp.int32), jnp.ones((1,), jnp.int32)),
            (written[None], length[None]),
            (jnp.asarray([[task.vocab.A_END, task.vocab.EOS]], jnp.int32), jnp.full((1,), 2, jnp.int32))])
        return problem.replace(answer=written, solution=task.pad_to(solution[0], task.solution_len)), ok, correct

    return jax.vmap(one)(tokens)


def write_datasets(task: SequenceTask, responses: jax.Array, num_datasets: int
                   ) -> tuple[lm.ProblemSet, Problem, jax.Array, jax.Array]:
    """The teacher's rollout rows ``[n * g, T]`` (row ``b * g + k``: pair ``b`` of dataset ``k``) as ``g`` datasets:
    ``(datasets [g, n], problems [n * g], valid [n * g], correct [n * g])`` (:func:`written_problems`)."""
    problems, valid, correct = written_problems(task, responses)
    g = num_datasets
    by_dataset = lambda x: jnp.swapaxes(x.reshape((-1, g) + x.shape[1:]), 0, 1)  # noqa: E731  [n*g] -> [g, n]
    return (lm.ProblemSet(problems=jax.tree.map(by_dataset, problems), valid=by_dataset(valid)), problems, valid,
            correct)


@functools.partial(jax.jit, static_argnums=0)  # one compile per (task, shape); op by op it took ~10 s on CPU
def _written_template(task: SequenceTask, tokens: jax.Array) -> Problem:
    return written_problems(task, tokens)[0]


def empty_set(task: SequenceTask, num: int, width: int) -> lm.ProblemSet:
    """``num`` rows shaped like written pairs (of ``width`` tokens), none valid: the shape of a dataset."""
    return lm.ProblemSet(problems=_written_template(task, jnp.zeros((num, width), jnp.int32)),
                         valid=jnp.zeros((num,), bool))


def teacher_prompts(num: int) -> Problem:
    """``num`` copies of the teacher's fixed prompt as the :class:`~jaxrl_self.core.Problem` a rollout takes
    (no answer: the teacher writes one)."""
    prompt = jnp.broadcast_to(jnp.asarray(VOCAB.encode(TEACHER_PROMPT), jnp.int32), (num, len(TEACHER_PROMPT)))
    zeros = jnp.zeros((num, 1), jnp.int32)
    return Problem(prompt=prompt, answer=zeros, solution=zeros, difficulty=jnp.zeros((num,), jnp.int32))


def learnability_rewards(success: jax.Array, valid: jax.Array) -> jax.Array:
    """The intrinsic ablation ``[g]``: ``mean_i 1[p_i > 0] (1 − p_i)`` over the valid pairs of each dataset
    (``success [g, n]`` the baseline's success rates, ``valid [g, n]``); 0 for a dataset with no valid pair."""
    per_pair = jnp.where(success > 0, 1.0 - success, 0.0)
    n = jnp.sum(valid, axis=1)
    return jnp.where(n > 0, jnp.sum(jnp.where(valid, per_pair, 0.0), axis=1) / jnp.maximum(n, 1), 0.0)


def teacher_advantages(rewards: jax.Array, num_pairs: int, estimator: str = "rloo", eps: float = 1e-6) -> jax.Array:
    """``[n * g]`` advantages of the written pairs, row ``b * g + k`` (pair ``b`` of dataset ``k``): the group
    advantage of the ``g`` dataset rewards (RLOO: ``R_k − mean_{l≠k} R_l``), the same for every pair of a
    dataset."""
    adv = group.group_advantages(rewards[None, :], estimator, eps=eps)[0]  # [g]
    return jnp.tile(adv, num_pairs)


# ============================================================================================ program pieces
def _correct(params: Any, model_cfg: TransformerConfig, layout: str, task: SequenceTask, problems: Problem,
             max_new_tokens: int, key: jax.Array, *, samples: int = 0, temperature: Any = 1.0) -> jax.Array:
    """``[M]`` bool: greedy response correct (``samples = 0``); else ``[M]`` int32 successes in ``samples`` tries."""
    if samples == 0:
        ro = lm.rollout(key, params, model_cfg, problems, 1, max_new_tokens, greedy=True, prompt_layout=layout)
        return jax.vmap(task.is_correct)(problems, ro.responses)

    def one(k):
        ro = lm.rollout(k, params, model_cfg, problems, 1, max_new_tokens, temperature, prompt_layout=layout)
        return jax.vmap(task.is_correct)(problems, ro.responses).astype(jnp.int32)

    return jnp.sum(jax.lax.map(one, jax.random.split(key, samples)), axis=0)


def hard_set(config: Config, task: SequenceTask, params: Any, model_cfg: TransformerConfig, layout: str) -> HardSet:
    """The base model's fail@``hard_samples`` problems among ``hard_candidates`` of ``hard_difficulty`` (seed
    ``hard_seed``): qualifying candidates alternate between the training and the test half, in candidate order."""
    base = jax.random.key(config.hard_seed)
    candidates = lm.sample_problems(jax.random.fold_in(base, 0), task,
                                    difficulty_params(task, config.hard_difficulty), config.hard_candidates)
    successes = _correct(params, model_cfg, layout, task, candidates, config.student.max_new_tokens,
                                jax.random.fold_in(base, 1), samples=config.hard_samples,
                                temperature=config.student.temperature)
    qualify = successes == 0
    rank = jnp.cumsum(qualify) - 1
    return HardSet(train=lm.ProblemSet(problems=candidates, valid=qualify & (rank % 2 == 0)),
                   test=lm.ProblemSet(problems=candidates, valid=qualify & (rank % 2 == 1)),
                   qualified=jnp.sum(qualify, dtype=jnp.int32))


def make_inner(config: Config, task: SequenceTask, model_cfg: TransformerConfig, layout: str):
    """``inner(keys [K], params, datasets [K, n]) -> (params [K], grpo.Metrics [K, steps])``: ``K`` student runs,
    each ``student.num_updates`` RLOO steps from ``params`` on its own dataset (a :class:`~jaxrl_self.lm.ProblemSet`
    of ``n`` pairs), vmapped. ``inner.one(key, params, dataset)`` is one of them."""
    student_cfg = config.student
    if student_cfg.prompt_layout == "auto":
        student_cfg = student_cfg.replace(prompt_layout=layout)
    template = empty_set(task, config.num_prompts, config.max_new_tokens)
    train = grpo.make_train(student_cfg, task, problems=template, model_config=model_cfg)

    def one(key, params, data):
        state, metrics = train.run(train.init(key, params, problems=data))
        return state.params, metrics

    def inner(keys, params, datasets):
        return jax.vmap(one, in_axes=(0, None, 0))(keys, params, datasets)

    inner.one = one
    return inner


def _teacher_sequences(task: SequenceTask, problems: Problem) -> tuple[jax.Array, jax.Array]:
    """The warm-up's ``(tokens, loss_mask)``: ``<bos> <r0> <q> question </q> <a> answer </a> <eos>``, loss on
    everything after the teacher prompt."""
    v = task.vocab
    B = problems.prompt.shape[0]
    plen = lm.prompt_lengths(problems.prompt, "packed")
    alen = jnp.sum(problems.answer != v.PAD, axis=1).astype(jnp.int32)
    ones = lambda k: jnp.full((B,), k, jnp.int32)  # noqa: E731
    k = len(TEACHER_PROMPT)
    tokens, _, total = lm.concat_segments([
        (teacher_prompts(B).prompt, ones(k)),
        (problems.prompt[:, 1:], plen - 1),
        (jnp.full((B, 1), v.A, jnp.int32), ones(1)),
        (problems.answer, alen),
        (jnp.broadcast_to(jnp.asarray([v.A_END, v.EOS], jnp.int32), (B, 2)), ones(2))])
    t = jnp.arange(tokens.shape[1])[None, :]
    return tokens, (t >= k) & (t < total[:, None])


def _distinct(prompts: jax.Array, valid: jax.Array) -> jax.Array:
    """Fraction of the valid rows whose prompt no earlier valid row has."""
    same = jnp.all(prompts[:, None, :] == prompts[None, :, :], axis=-1) & valid[None, :] & valid[:, None]
    earlier = jnp.tril(same, k=-1).any(axis=1)
    n = jnp.sum(valid)
    return jnp.sum(valid & ~earlier) / jnp.maximum(n, 1)


# ============================================================================================ the run
def make_train(config: Config, env: SequenceTask, env_params: Any = None, *, init_params: Any = None,
               model_config: TransformerConfig | None = None, hard: HardSet | None = None) -> Train[RunState]:
    """Build the run ``train(key) -> (RunState, Metrics)``: hard set and warm-up in ``init``, outer steps in
    ``update``. ``init(key, params=...)`` starts teacher and students from other parameters; ``hard``: a hard
    set computed once (:func:`hard_set`, e.g. shared by the seeds and variants of a benchmark) instead of in
    ``init``."""
    del env_params
    config.validate(env)
    task = env
    policy = lm.load_policy(config, task, init_params=init_params, model_config=model_config,
                            owner="soar.Config", context=len(TEACHER_PROMPT) + config.max_new_tokens)
    model_cfg, layout = policy.model_config, policy.prompt_layout
    check_model(model_cfg, task, config.student.max_new_tokens, "soar.Config",
                "base_model" if config.base_model else "model")
    tx = lm.make_optimizer(config)
    g, r, n, R = config.num_datasets, config.num_students, config.num_prompts, config.max_new_tokens
    R_s, E = config.student.max_new_tokens, config.reward_problems
    inner = make_inner(config, task, model_cfg, layout)
    prompts = teacher_prompts(n)
    source = lm.problem_source(task)  # the run state holds no problem set: the teacher's prompt is fixed
    capacity = config.num_updates * n
    warm_params = lm.task_params_for(config.replace(min_difficulty=1, max_difficulty=config.warmup_difficulty), task)
    sft = SupervisedConfig(num_steps=max(config.warmup_steps, 1), batch_size=config.sft_batch, model=model_cfg,
                           learning_rate=config.sft_learning_rate, warmup_steps=min(50, max(config.warmup_steps, 1)))

    def warm_batch(key):
        return _teacher_sequences(task, lm.sample_problems(key, task, warm_params, config.sft_batch))

    def loss_fn(params, mb):
        return lm.group_policy_loss(config, model_cfg, params, mb)

    def init(key: jax.Array, params: Any = None) -> RunState:
        k_state, k_warm = jax.random.split(key)
        base = policy.initial_params(jax.random.fold_in(key, 7), params)
        teacher = fine_tune(k_warm, base, config.warmup_steps, sft, warm_batch)
        state = lm.init_run_state(k_state, policy, tx, source, use_reference=config.use_reference, params=teacher)
        promotion = Promotion(window=jnp.zeros((config.promotion_window,), jnp.float32),
                              filled=jnp.zeros((), jnp.int32), promoted=empty_set(task, capacity, R),
                              count=jnp.zeros((), jnp.int32))
        return RunState(**{f: getattr(state, f) for f in state.__dataclass_fields__}, baseline=base,
                        hard=hard_set(config, task, base, model_cfg, layout) if hard is None else hard,
                        promotion=promotion)

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_write, k_inner, k_sample, k_eval, k_learn = jax.random.split(state.rng, 6)
        # 1. the teacher writes g datasets of n pairs: rollout row b * g + k is pair b of dataset k
        ro = lm.rollout(k_write, state.params, model_cfg, prompts, g, R, config.temperature,
                        prompt_layout="packed")
        datasets, problems, valid, correct = write_datasets(task, ro.responses, g)
        # 2. r students per dataset from the baseline, all g * r runs in one vmap
        copies = jax.tree.map(lambda x: jnp.repeat(x, r, axis=0), datasets)  # run k * r + j: dataset k, copy j
        student_params, inner_metrics = inner(jax.random.split(k_inner, g * r), state.baseline, copies)
        # 3. the reward: progress on a fresh sample of hard training problems (greedy accuracy)
        idx, ok, _ = lm.cycle_indices(k_sample, jnp.zeros((), jnp.int32), E, state.hard.train.valid)
        sample = jax.tree.map(lambda x: x[idx], state.hard.train.problems)
        def accuracy(p, problems=sample, rows=ok):  # greedy accuracy over the valid rows
            return rl.masked_mean(_correct(p, model_cfg, layout, task, problems, R_s, k_eval).astype(jnp.float32),
                                  rows)

        acc_base = accuracy(state.baseline)
        acc_students = jax.vmap(accuracy)(student_params).reshape(g, r)
        grounded = grounded_rewards(acc_students, acc_base)
        if config.teacher_reward == "grounded":
            rewards = grounded
        else:  # learnability: the baseline's success rate on each pair, against the teacher's answer
            flat = jax.tree.map(lambda x: x.reshape((g * n,) + x.shape[2:]), datasets.problems)
            wins = _correct(state.baseline, model_cfg, layout, task, flat, R_s, k_eval,
                                   samples=config.student.group_size, temperature=config.student.temperature)
            rewards = learnability_rewards(wins.reshape(g, n) / config.student.group_size, datasets.valid)
        # 4. the teacher's RLOO over datasets; malformed pairs weigh nothing
        advantages = teacher_advantages(rewards, n, config.advantage, config.adv_eps)
        ref_logp = lm.reference_logp(state.ref_params, model_cfg, ro) if config.use_reference else None
        batch = lm.make_batch(ro, advantages, ref_logp, row_valid=valid)
        params, opt_state, stats = lm.learn(k_learn, config, loss_fn, tx, state.params, state.opt_state, batch)
        params, opt_state, nonfinite = lm.guard_nonfinite(state, params, opt_state, stats["loss"])
        # 5. promotion
        p = state.promotion
        window, filled, fired, average = promotion_step(p.window, p.filled, jnp.mean(rewards),
                                                        config.promotion_threshold, config.promotion)
        best, median = promoted_student(rewards, acc_students)
        chosen = jax.tree.map(lambda x: x[best * r + median], student_params)
        baseline = tree_select(fired, chosen, state.baseline)
        best_set = jax.tree.map(lambda x: x[best], datasets)
        start = jnp.minimum(p.count, config.num_updates - 1) * n
        put = lambda buf, new: jax.lax.dynamic_update_slice_in_dim(buf, new, start, axis=0)  # noqa: E731
        promoted = tree_select(fired, jax.tree.map(put, p.promoted, best_set), p.promoted)
        promotion = Promotion(window=window, filled=filled, promoted=promoted, count=p.count + fired)

        # diagnostics: the hard test half (evaluation only), the written questions
        test_acc = accuracy(baseline, state.hard.test.problems, state.hard.test.valid)
        diff = problems.difficulty.astype(jnp.float32)
        d_mean = rl.masked_mean(diff, valid)
        env_steps = state.env_steps + jnp.sum(ro.response_len)
        metrics = Metrics(
            env_steps=env_steps, episode_return=jnp.mean(rewards), episode_return_valid=jnp.ones((), bool),
            reward_mean=jnp.mean(rewards), reward_max=jnp.max(rewards), reward_std=jnp.std(rewards),
            grounded_mean=jnp.mean(grounded), moving_average=average, promoted=fired, promotions=promotion.count,
            baseline_reward_accuracy=acc_base, student_reward_accuracy=jnp.mean(acc_students),
            baseline_test_accuracy=test_acc,
            inner_reward_first=jnp.mean(inner_metrics.reward_mean[:, 0]),
            inner_reward_last=jnp.mean(inner_metrics.reward_mean[:, -1]),
            fill_rate=jnp.mean(valid.astype(jnp.float32)),
            answer_correct=rl.masked_mean(correct.astype(jnp.float32), valid),
            distinct_questions=_distinct(problems.prompt, valid), question_difficulty=d_mean,
            difficulty_std=jnp.sqrt(rl.masked_mean((diff - d_mean) ** 2, valid)),
            hard_difficulty_share=rl.masked_mean((diff >= config.hard_difficulty).astype(jnp.float32), valid),
            **{k: jnp.mean(v) for k, v in stats.items()},
            learning_rate=lm.learning_rate_at(config, state.update_step))
        new_state = state.replace(params=params, opt_state=opt_state, rng=rng, update_step=state.update_step + 1,
                                  env_steps=env_steps, nonfinite_update=nonfinite, baseline=baseline,
                                  promotion=promotion)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=config.num_updates, config=config)


def eval_params(state: RunState) -> Any:
    """What ``jaxrl-self eval`` evaluates: the baseline (promoted) student, not the teacher (``state.params``)."""
    return state.baseline


def make_eval(config: Config, env: SequenceTask, env_params: Any = None, *,
              model_config: TransformerConfig | None = None, greedy: bool = True):
    """Accuracy on fresh problems of the hard difficulty (:func:`jaxrl_self.lm.make_eval`) of the student
    (:func:`eval_params`)."""
    del env_params
    student = config.student.replace(base_model=config.base_model)  # the students' architecture and layout
    inner = lm.make_eval(student, env, difficulty_params(env, config.hard_difficulty), model_config=model_config,
                         greedy=greedy)

    def evaluate(params, key, env_params=None, num_episodes: int = 256, temperature: float = 1.0):
        del env_params
        return inner(params, key, None, num_episodes, temperature)

    return evaluate
