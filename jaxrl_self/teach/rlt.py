"""Reinforcement-learned teachers (RLT; Cetin et al., Sakana AI, 2025, arXiv:2506.08388), as one XLA program.

A teacher is shown a question *and its solution* and writes an explanation; it is paid by how well a frozen
student, reading the question and the explanation, predicts the solution, and by how natural the explanation is
from the student's point of view. The explanations then distil new students (:func:`distillation_data`).

::

    from jaxrl_self.teach import rlt
    task = lm.base_model_task(lm.read_metadata("addition-long"))
    state, metrics = jax.jit(rlt.make_train(rlt.Config(), task))(jax.random.key(0))
    explanations = rlt.explain(rlt.Config(), task, state.params, problems, key)   # for distillation
    # jaxrl-self train rlt --task addition --base-model addition-long

``init`` runs the two supervised warm-ups of the run, ``update`` one RL step of the teacher; ``jax.jit(train)``
is the whole thing:

1. **the reader** (the frozen student of the reward, ``student="reader"``): the base model fine-tuned for
   ``reader_steps`` on student contexts (question, the task's own scratchpad as explanation, solution), loss on
   everything after the question: a student that has learnt to read (and write) explanations. ``student="base"``: the
   base model itself;
2. **the teacher's format warm-up**: the base model fine-tuned for ``warmup_steps`` on teacher contexts followed
   by explanations in the scratchpad's *format* with random digits (``s c , s c ...`` of the right length):
   it learns where an explanation goes, how long it is and how it ends, but nothing in it is true, so the
   warm-up teacher is not the oracle and RL has everything left to learn (the docs' design note);
3. **RL** (each update): ``num_prompts`` problems, ``group_size`` explanations each from the teacher at
   ``temperature``; the reward of :mod:`jaxrl_self.teach.explain` (``r = r_SS - λ r_KL + r_fmt``: the reader's
   log-probs of the answer digits given question + explanation, the teacher-minus-reader log-probs of the
   explanation tokens, a format penalty), the group advantage, the clipped policy loss with ``kl_coef`` x k3 KL to
   the warm-up teacher (``RunState.ref_params``), Adam.

The explanation is read and scored at exact token positions (:func:`~jaxrl_self.teach.explain.student_contexts`);
the teacher's log-probs are the sampling policy's (untempered; equal to the reference code's at temperature 1).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self import lm
from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import VOCAB, Problem, SequenceTask
from jaxrl_self.envs.tokens import AdditionTask
from jaxrl_self.lm.config import NON_NEGATIVE, POSITIVE, GroupConfig, check_model
from jaxrl_self.lm.diagnostics import EvalResult
from jaxrl_self.lm.supervised import SupervisedConfig, fine_tune
from jaxrl_self.nets.transformer import TransformerConfig
from jaxrl_self.rl import group
from jaxrl_self.teach import explain as ex

__all__ = ["NAME", "DEFAULT_ENV", "STUDENTS", "Config", "RunState", "Metrics", "oracle_explanations",
           "format_explanations", "score_explanations", "explain", "distillation_data", "make_train", "make_eval"]

NAME = "rlt"
#: What it trains on: the addition task only (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("addition",)
DEFAULT_ENV = "addition"
STUDENTS = ("reader", "base")


# ============================================================================================ configuration
@struct.dataclass
class Config(GroupConfig):
    """RLT hyper-parameters: the shared LM-RL and group fields (some with RLT's defaults) and these."""

    # -- shared fields with RLT's defaults
    num_updates: int = _static(150)
    """RL updates of the teacher"""
    max_new_tokens: int = _static(18)
    """the teacher's budget: an explanation of up to max_explanation tokens, </think>, <eos>"""
    base_model: str = _static("addition-long")
    """teacher, reader and distilled students start from this model (it needs the contexts' room: addition-long)"""
    min_difficulty: Any = 4
    """lowest difficulty of the RL problems (addition: operand digits)"""
    max_difficulty: Any = 4
    """highest difficulty of the RL problems"""
    learning_rate: float = 1e-4
    """Adam step size of the teacher's RL"""
    kl_coef: float = 0.04
    """β of the k3 KL to the warm-up teacher (the reference code: 0.04)"""
    num_prompts: int = _static(16)
    """questions per RL update"""
    # -- RLT (static)
    group_size: int = _static(8)
    """explanations per question (G >= 2)"""
    max_explanation: int = _static(16)
    """the longest explanation (tokens of digits and commas); the scratchpad of 5 digits is 14"""
    student: str = _static("reader")
    """the frozen student of the reward: 'reader' (the base model fine-tuned to read explanations) or 'base'"""
    reader_steps: int = _static(600)
    """supervised steps of the reader (student='reader')"""
    warmup_steps: int = _static(300)
    """supervised steps of the teacher's format warm-up"""
    sft_batch: int = _static(64)
    """sequences per supervised step (both warm-ups)"""
    # -- reward and warm-ups (traced)
    reward_kl_coef: float = 3.0
    """λ of r = r_SS - λ r_KL + r_fmt (reference: 3)"""
    reward_alpha: float = 0.01
    """α of mean + α min (r_SS) and mean + α max (r_KL) (reference: 0.01)"""
    student_temperature: float = 0.7
    """temperature of the student's log-probs in the reward (reference: 0.7)"""
    explanation_penalty: float = 1.0
    """-r_fmt of a malformed explanation (reference: 1)"""
    sft_learning_rate: float = 1e-3
    """peak learning rate of the warm-ups (AdamW, warm-up + cosine)"""

    @property
    def batch_size(self) -> int:
        return self.num_prompts * self.group_size

    def validate(self, env: Any = None, env_params: Any = None) -> None:
        owner = "rlt.Config"
        if self.student not in STUDENTS:
            raise ConfigError("student", self.student, f"one of {STUDENTS}", owner)
        for name in ("max_explanation", "reader_steps", "warmup_steps", "sft_batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name.endswith("steps") else 1):
                raise ConfigError(name, v, "a positive integer" if not name.endswith("steps") else "an integer >= 0",
                                  owner)
        if isinstance(self.max_new_tokens, (int, np.integer)) and self.max_new_tokens < self.max_explanation + 2:
            raise ConfigError("max_new_tokens", self.max_new_tokens,
                              f">= max_explanation + 2 = {self.max_explanation + 2} (the explanation, </think>, <eos>)",
                              owner)
        if env is not None and (not isinstance(env, AdditionTask) or env.scratchpad):  # before the base model's task
            raise ConfigError("env", repr(env), "an AdditionTask without scratchpad (RLT's teacher writes the "
                              "explanation; pass --task addition)", owner)
        self.validate_group(env, env_params, owner=owner, group_size=self.group_size, group_field="group_size",
                            batch_size=lambda: self.batch_size,
                            extra_numeric={"reward_kl_coef": NON_NEGATIVE, "reward_alpha": NON_NEGATIVE,
                                           "student_temperature": POSITIVE, "explanation_penalty": NON_NEGATIVE,
                                           "sft_learning_rate": POSITIVE})
        if env is not None:
            if not self.base_model:
                check_model(self.model, env, 0, owner, "model", context=self.context_len(env))

    def context_len(self, task: AdditionTask) -> int:
        """The longest context of the run: the student's (question, explanation, solution)."""
        return task.prompt_len + self.max_explanation + task.answer_len + 5


# ============================================================================================ state and metrics
#: :class:`jaxrl_self.lm.RunState` of the teacher: ``params`` the teacher, ``ref_params`` the warm-up teacher,
#: ``reward_extras`` the frozen student's parameters.
RunState = lm.RunState


@struct.dataclass
class Metrics:
    """One row per RL update (scalars per seed)."""

    env_steps: jax.Array
    episode_return: jax.Array  # = reward_mean
    episode_return_valid: jax.Array
    reward_mean: jax.Array
    r_ss: jax.Array  # mean over explanations
    r_kl: jax.Array
    r_fmt: jax.Array
    well_formed: jax.Array  # fraction of well-formed explanations
    explanation_length: jax.Array
    oracle_match: jax.Array  # ground truth: fraction of explanations equal to the task's scratchpad
    digit_accuracy: jax.Array  # ground truth: fraction of explanation positions equal to the scratchpad's
    loss: jax.Array
    policy_loss: jax.Array
    kl: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array
    learning_rate: jax.Array


# ============================================================================================ explanations
def oracle_explanations(task: AdditionTask, problems: Problem, width: int) -> tuple[jax.Array, jax.Array]:
    """The task's own scratchpad of each problem (``s_k c_k`` per column, commas between), ``[B, width]``
    PAD-padded, and its length: the oracle explanation (source (d))."""
    pad_task = AdditionTask(task.max_digits, reverse_answer=task.reverse_answer, scratchpad=True)
    sol = jax.vmap(lambda p: _rebuild(pad_task, p))(problems)  # [B, solution_len] with <think> .. </think>
    inside = jnp.cumsum(sol == VOCAB.THINK, axis=1) - jnp.cumsum(sol == VOCAB.THINK_END, axis=1)
    keep = (inside > 0) & (sol != VOCAB.THINK)
    length = jnp.sum(keep, axis=1).astype(jnp.int32)
    order = jnp.argsort(~keep, axis=1, stable=True)
    taken = jnp.take_along_axis(sol, order, axis=1)[:, :width]
    idx = jnp.arange(width)[None, :]
    return jnp.where(idx < length[:, None], taken, VOCAB.PAD).astype(jnp.int32), jnp.minimum(length, width)


def _rebuild(scratch: AdditionTask, problem: Problem) -> jax.Array:
    """The scratchpad solution of a (non-scratchpad) problem, rebuilt from the digits of its prompt (the problem
    written out with a placeholder answer and parsed by the scratchpad task)."""
    tail = jnp.asarray([VOCAB.A, VOCAB.digit(0), VOCAB.A_END, VOCAB.EOS], jnp.int32)
    plen = lm.prompt_lengths(problem.prompt[None], "packed")
    written, _, _ = lm.concat_segments([(problem.prompt[None], plen), (tail[None], jnp.full((1,), 4, jnp.int32))])
    return scratch.parse_problem(written[0])[0].solution


def format_explanations(key: jax.Array, oracle: jax.Array, length: jax.Array) -> jax.Array:
    """The warm-up's explanations: the oracle's commas in place and every digit drawn uniformly at random (the
    format without the content)."""
    digits = VOCAB.digit(jax.random.randint(key, oracle.shape, 0, 10))
    is_digit = VOCAB.digit_value(oracle) >= 0
    return jnp.where(is_digit, digits, oracle).astype(jnp.int32)


def _sequences(contexts: ex.Contexts, targets: jax.Array, target_len: jax.Array, closing: tuple[str, ...]
               ) -> tuple[jax.Array, jax.Array]:
    """``contexts ++ targets ++ closing`` and the loss mask on the targets and the closing tokens."""
    B = targets.shape[0]
    close = jnp.broadcast_to(jnp.asarray([VOCAB.id(t) for t in closing], jnp.int32), (B, len(closing)))
    tokens, starts, total = lm.concat_segments([(contexts.tokens, contexts.length), (targets, target_len),
                                                (close, jnp.full((B,), len(closing), jnp.int32))])
    return tokens, ex.span_mask(starts[:, 1], total - starts[:, 1], tokens.shape[1])


def _student_sequences(problems: Problem, explanation: jax.Array, length: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Student contexts and the loss mask on everything after the question: ``<think>``, the explanation,
    ``</think>`` and the solution (``<a> .. </a> <eos>``): what a student must write itself."""
    ctx = ex.student_contexts(problems, explanation, length)
    start = ctx.explanation_start - 1
    return ctx.tokens, ex.span_mask(start, ctx.length - start, ctx.tokens.shape[1])


def distillation_data(problems: Problem, explanation: jax.Array | None = None,
                      length: jax.Array | None = None) -> lm.SequenceDataset:
    """Supervised data for a fresh student: student contexts ``(question, explanation, solution)`` with the loss
    on the explanation and the solution, or, with ``explanation=None``, plain ``(question, solution)`` with the
    loss on the solution (source (c))."""
    if explanation is None:
        tokens, plen, total = lm.make_sequences(problems, "packed")
        t = jnp.arange(tokens.shape[1])[None, :]
        return lm.SequenceDataset.of(tokens, (t >= plen[:, None]) & (t < total[:, None]))
    tokens, mask = _student_sequences(problems, explanation, length)
    return lm.SequenceDataset.of(tokens, mask)


# ============================================================================================ the run
def _warm_up(key: jax.Array, params: Any, steps: int, config: Config, model: TransformerConfig,
             make_batch) -> Any:
    """``steps`` AdamW steps from ``params`` on fresh batches ``make_batch(key) -> (tokens, loss_mask)``."""
    sft = SupervisedConfig(num_steps=max(steps, 1), batch_size=config.sft_batch, model=model,
                           learning_rate=config.sft_learning_rate, warmup_steps=min(50, max(steps, 1)))
    return fine_tune(key, params, steps, sft, make_batch)


def make_train(config: Config, env: SequenceTask, env_params: Any = None, *, init_params: Any = None,
               model_config: TransformerConfig | None = None) -> Train[RunState]:
    """Build the run ``train(key) -> (RunState, Metrics)``: warm-ups in ``init``, the teacher's RL in ``update``."""
    config.validate(env, env_params)
    task = env
    task_params = lm.task_params_for(config, task, env_params)
    source = lm.problem_source(task, task_params)
    policy = lm.load_policy(config, task, init_params=init_params, model_config=model_config, owner="rlt.Config",
                            context=config.context_len(task))
    model_cfg = policy.model_config
    tx = lm.make_optimizer(config)
    B, G, R, E = config.num_prompts, config.group_size, config.max_new_tokens, config.max_explanation
    sample = lambda k, n: lm.sample_problems(k, task, task_params, n)  # noqa: E731

    def reader_batch(k):
        problems = sample(k, config.sft_batch)
        oracle, length = oracle_explanations(task, problems, E)
        return _student_sequences(problems, oracle, length)

    def teacher_batch(k):
        k_p, k_d = jax.random.split(k)
        problems = sample(k_p, config.sft_batch)
        oracle, length = oracle_explanations(task, problems, E)
        return _sequences(ex.teacher_contexts(problems), format_explanations(k_d, oracle, length), length,
                          ("</think>", "<eos>"))

    def loss_fn(params, mb):
        return lm.group_policy_loss(config, model_cfg, params, mb)

    def init(key: jax.Array, params: Any = None) -> RunState:
        k_state, k_reader, k_teacher = jax.random.split(key, 3)
        base = policy.initial_params(jax.random.fold_in(key, 7), params)
        student = _warm_up(k_reader, base, config.reader_steps, config, model_cfg, reader_batch) \
            if config.student == "reader" else base
        teacher = _warm_up(k_teacher, base, config.warmup_steps, config, model_cfg, teacher_batch)
        return lm.init_run_state(k_state, policy, tx, source, use_reference=True, params=teacher, ref_params=teacher,
                                 reward_extras=student)

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_prob, k_gen, k_learn = jax.random.split(state.rng, 4)
        # 1. questions and their solutions; G explanations each from the teacher
        source_state, drawn = source.draw(state.problems, k_prob, B)
        problems = drawn.problems
        teacher_ctx = ex.teacher_contexts(problems)
        ro = lm.rollout(k_gen, state.params, model_cfg, problems.replace(prompt=teacher_ctx.tokens), G, R,
                        config.temperature, prompt_layout="packed")
        expl, length, ok = ex.parse_explanations(ro.responses, ro.mask, E)
        # 2. the reward: the frozen student reads (question, explanation) and predicts the solution
        rep = jax.tree.map(lambda x: jnp.repeat(x, G, axis=0), problems)
        parts = score_explanations(config, task, model_cfg, state.reward_extras, rep, expl, length, ok,
                                   teacher_logp=ro.logp[:, :E])
        e_mask = jnp.arange(E)[None, :] < length[:, None]
        rewards = parts.reward.reshape(B, G)
        # 3. the group advantage, the policy loss with the KL to the warm-up teacher
        advantages = group.group_advantages(rewards, config.advantage, eps=config.adv_eps, ddof=config.std_ddof)
        ref_logp = lm.reference_logp(state.ref_params, model_cfg, ro)
        batch = lm.make_batch(ro, advantages, ref_logp)
        params, opt_state, stats = lm.learn(k_learn, config, loss_fn, tx, state.params, state.opt_state, batch)
        params, opt_state, nonfinite = lm.guard_nonfinite(state, params, opt_state, stats["loss"])

        oracle, o_len = oracle_explanations(task, rep, E)  # ground truth (diagnostics only)
        same = (expl == oracle) & e_mask
        env_steps = state.env_steps + jnp.sum(ro.response_len)
        metrics = Metrics(
            env_steps=env_steps, episode_return=jnp.mean(parts.reward), episode_return_valid=jnp.ones((), bool),
            reward_mean=jnp.mean(parts.reward), r_ss=jnp.mean(parts.r_ss), r_kl=jnp.mean(parts.r_kl),
            r_fmt=jnp.mean(parts.r_fmt), well_formed=jnp.mean(ok.astype(jnp.float32)),
            explanation_length=jnp.mean(length.astype(jnp.float32)),
            oracle_match=jnp.mean((jnp.all(same | ~e_mask, axis=1) & (length == o_len)).astype(jnp.float32)),
            digit_accuracy=jnp.sum(same) / jnp.maximum(jnp.sum(e_mask), 1),
            **{k: jnp.mean(v) for k, v in stats.items()},
            learning_rate=lm.learning_rate_at(config, state.update_step))
        new_state = state.replace(params=params, opt_state=opt_state, rng=rng, update_step=state.update_step + 1,
                                  env_steps=env_steps, nonfinite_update=nonfinite, problems=source_state)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=config.num_updates, config=config)


def score_explanations(config: Config, task: AdditionTask, model_config: TransformerConfig, student_params: Any,
                       problems: Problem, explanation: jax.Array, length: jax.Array, well_formed: jax.Array, *,
                       teacher_params: Any = None, teacher_logp: jax.Array | None = None) -> ex.RewardParts:
    """The RLT reward of explanations ``[N, max_explanation]`` of ``problems`` (leaves ``[N]``): the student's
    log-probs in the student context (one forward pass at ``student_temperature``) and the teacher's log-probs of
    the explanation tokens, given (``teacher_logp [N, max_explanation]``, the sampling policy's) or scored in the
    teacher context with ``teacher_params``."""
    E = config.max_explanation
    ctx = ex.student_contexts(problems, explanation, length)
    s = lm.score(student_params, ctx.tokens, jnp.ones_like(ctx.length), ctx.length, config=model_config,
                 temperature=config.student_temperature).logp
    take = lambda x, i: jnp.take_along_axis(x, jnp.clip(i, 0, x.shape[1] - 1), axis=1)  # noqa: E731
    a_idx = ctx.answer_start[:, None] + jnp.arange(task.answer_len)[None, :]
    a_mask = jnp.arange(task.answer_len)[None, :] < ctx.answer_len[:, None]
    e_mask = jnp.arange(E)[None, :] < length[:, None]
    if teacher_logp is None:  # score the explanation after the teacher context
        tctx = ex.teacher_contexts(problems)
        tokens, starts, total = lm.concat_segments([(tctx.tokens, tctx.length), (explanation, length)])
        t = lm.score(teacher_params, tokens, jnp.ones_like(total), total, config=model_config).logp
        teacher_logp = take(t, starts[:, 1:2] + jnp.arange(E)[None, :])
    student_e = take(s, ctx.explanation_start[:, None] + jnp.arange(E)[None, :])
    return ex.rlt_reward(take(s, a_idx), a_mask, jnp.where(e_mask, teacher_logp, 0.0), student_e, e_mask, well_formed,
                         kl_coef=config.reward_kl_coef, alpha=config.reward_alpha,
                         format_penalty=config.explanation_penalty)


def explain(config: Config, task: AdditionTask, teacher_params: Any, problems: Problem, key: jax.Array, *,
            greedy: bool = True, model_config: TransformerConfig | None = None
            ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The teacher's explanation of each problem (greedy by default): ``(explanation [N, max_explanation],
    length [N], well_formed [N])``; a malformed one keeps its valid prefix."""
    cfg = lm.load_policy(config, task).model_config if model_config is None else model_config
    ctx = ex.teacher_contexts(problems)
    ro = lm.rollout(key, teacher_params, cfg, problems.replace(prompt=ctx.tokens), 1, config.max_new_tokens,
                    config.temperature, greedy, prompt_layout="packed")
    return ex.parse_explanations(ro.responses, ro.mask, config.max_explanation)


def make_eval(config: Config, env: SequenceTask, env_params: Any = None, *,
              model_config: TransformerConfig | None = None, greedy: bool = True):
    """The teacher's explanations' agreement with the oracle scratchpad on fresh problems (``episode_return``:
    1 for an explanation equal to it), for ``jaxrl-self eval``."""
    task = env
    task_params = lm.task_params_for(config, task, env_params)

    def evaluate(params, key, env_params=None, num_episodes: int = 256, temperature: float = 1.0):
        k_p, k_g = jax.random.split(key)
        problems = lm.sample_problems(k_p, task, task_params, num_episodes)
        expl, length, ok = explain(config, task, params, problems, k_g, greedy=greedy, model_config=model_config)
        oracle, o_len = oracle_explanations(task, problems, config.max_explanation)
        beyond = jnp.arange(expl.shape[1])[None, :] >= length[:, None]
        match = jnp.all((expl == oracle) | beyond, axis=1) & (length == o_len)
        return EvalResult(episode_return=match.astype(jnp.float32), correct=match, format_valid=ok,
                             response_length=length, difficulty=jnp.asarray(problems.difficulty, jnp.int32))

    return evaluate
