"""Test-time RL (TTRL; Zuo et al., 2025, arXiv:2504.16084) and its label-free successors, as one XLA program.

On a fixed set of *unlabeled* test problems, the model samples ``N = n_votes`` answers per prompt; the majority
answer is the pseudo-label and agreeing with it is the reward; GRPO trains on ``M = n_train`` of the ``N``
samples. No answer is ever read for training: the rewards see the responses only (the problems' answers feed
the ground-truth diagnostics alone, which ``ground_truth_metrics=False`` switches off).

::

    from jaxrl_self.teach import ttrl
    config = ttrl.Config(base_model="addition-base", difficulty=2, reward="majority", guard="none")
    train = ttrl.make_train(config, task)         # task = lm.base_model_task(lm.read_metadata("addition-base"))
    state, metrics = jax.jit(train)(jax.random.key(0))
    # jaxrl-self train ttrl --task addition --base-model addition-base --difficulty 2

One update (:func:`make_train`'s ``update``), top to bottom:

1. **problems**: ``num_prompts`` problems from passes over the test set (:class:`jaxrl_self.lm.SetSource`;
   default: ``num_problems`` held-out problems of ``difficulty`` digits, seed ``problem_seed``);
2. **rollout**: ``n_votes`` responses per prompt at ``temperature``;
3. **votes**: the strictly extracted answers (digits closed by ``</a>``, nothing but EOS/PAD after it; invalid
   answers never vote) and their majority (ties: the answer seen first; :mod:`jaxrl_self.teach.label_free`);
4. **rewards** (``reward``): ``"majority"`` (TTRL: 1 if the answer is the majority's, else 0),
   ``"majority+novelty"`` (EVOL-RL), ``"self_certainty"`` (Intuitor: the mean KL of each token's distribution
   from uniform, under the sampling policy), ``"semantic_entropy"`` (EMPO: the frequency of the answer's
   cluster); see :mod:`jaxrl_self.teach.label_free` for the equations and what differs from the papers;
5. **guard**: the flip signal of every prompt's majority against the base model's vote (beyond the base's own
   resampling noise) and against the prompt's previous visit (TTRL-Guard's flip rate); ``guard="stop"`` stops
   learning when the departure signal fires, ``"minority"`` adds TTRL-Guard's minority-preservation bonus to the
   advantages of well-supported minority answers while the flip rate is high;
6. **subset**: (``min_majority_ratio > 0``: only the prompts whose vote is that confident) the first ``n_train`` samples of each group (as the reference code; ``train_subset="random"``:
   ``n_train`` at random); the group advantage (``advantage``, default GRPO) is computed among them;
7. **learn**: the clipped policy loss with ``kl_coef`` × k3 KL to the base model (:func:`jaxrl_self.lm.learn`).

Metrics per update: the reward and the vote's share, the guard's signals, and (ground truth) the reference
code's label accuracy, reward accuracy, majority ratio, pass@1 over the samples, maj@N and pass@N.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self import lm
from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.environment import tree_select
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import SequenceTask
from jaxrl_self.lm.config import COUNT, NON_NEGATIVE, POSITIVE, UNIT, GroupConfig
from jaxrl_self.lm.evaluate import HELD_OUT_SEED, difficulty_params, max_difficulty
from jaxrl_self.nets.transformer import TransformerConfig, apply, causal_mask
from jaxrl_self.rl import group
from jaxrl_self.teach import label_free as lf

__all__ = ["NAME", "DEFAULT_ENV", "REWARDS", "GUARDS", "SUBSETS", "TEST_SET_SEED", "Config", "RunState", "Metrics",
           "test_set", "make_train", "make_eval"]

NAME = "ttrl"
#: What it trains on: token tasks (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("task",)
DEFAULT_ENV = "addition"
REWARDS = ("majority", "majority+novelty", "self_certainty", "semantic_entropy")
GUARDS = ("none", "stop", "minority")
SUBSETS = ("first", "random")
#: Seed of the default test sets (a stream apart from the evaluation sets' HELD_OUT_SEED).
TEST_SET_SEED = HELD_OUT_SEED + 101


# ============================================================================================ configuration
@struct.dataclass
class Config(GroupConfig):
    """TTRL hyper-parameters: the shared LM-RL and group fields (some with TTRL's defaults) and these."""

    # -- shared fields with TTRL's defaults
    num_updates: int = _static(120)
    """updates in the run (each: num_prompts test problems, n_votes samples each, one learning step)"""
    max_new_tokens: int = _static(10)
    """response budget in tokens"""
    base_model: str = _static("addition-base")
    """the model to improve (a shipped base model, a model file or an exported pretrain run); '' = fresh `model`"""
    learning_rate: float = 2e-4
    """Adam step size (after the warm-up)"""
    kl_coef: float = 0.01
    """β of the k3 KL to the base model (the reference policy)"""
    # -- sizes (static)
    n_votes: int = _static(16)
    """N, samples per prompt; all of them vote"""
    n_train: int = _static(16)
    """M <= N, samples per prompt trained on (the reference code: 32 of 64)"""
    train_subset: str = _static("first")
    """which M: 'first' (the reference code) or 'random'"""
    # -- the unlabeled test set (static)
    difficulty: int = _static(4)
    """difficulty of the test problems (addition: operand digits)"""
    num_problems: int = _static(64)
    """test problems (read in shuffled passes)"""
    problem_seed: int = _static(TEST_SET_SEED)
    """seed of the test set (lm.held_out_problems); benchmarks evaluate on other seeds too"""
    # -- method (static)
    reward: str = _static("majority")
    """'majority' (TTRL), 'majority+novelty' (EVOL-RL), 'self_certainty' (Intuitor), 'semantic_entropy' (EMPO)"""
    guard: str = _static("none")
    """'none', 'stop' (stop learning when the departure-from-base signal fires), 'minority' (TTRL-Guard's
    minority preservation while the flip rate is high)"""
    # -- guard (traced)
    guard_ema: float = 0.8
    """weight of the past in the moving averages of the departure and flip rates"""
    guard_margin: float = 0.15
    """the guard fires when the averaged departure rate exceeds the base model's resampling noise by this"""
    guard_min_steps: int = 5
    """updates before the guard may fire"""
    flip_threshold: float = 0.3
    """τ_fr: flip rate above which minority preservation switches on (off after 3 steps below)"""
    minority_strength: float = 0.3
    """β_max of the minority bonus β_t = β_max min(FR / τ_fr, 1)"""
    min_majority_ratio: float = 0.0
    """a confidence filter: prompts whose majority holds fewer than this share of the N votes are not trained on
    (0 = train on every prompt); TTRL's pseudo-label is noise where the vote is split"""

    @property
    def batch_size(self) -> int:
        """Responses trained on per update: ``num_prompts * n_train``."""
        return self.num_prompts * self.n_train

    def validate(self, env: Any = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (before compiling)."""
        owner = "ttrl.Config"
        for name, allowed in (("reward", REWARDS), ("guard", GUARDS), ("train_subset", SUBSETS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, getattr(self, name), f"one of {allowed}", owner)
        for name in ("n_votes", "n_train", "num_problems", "difficulty"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(name, v, "a positive integer", owner)
        if (not isinstance(self.problem_seed, (int, np.integer)) or isinstance(self.problem_seed, bool)
                or self.problem_seed < 0):
            raise ConfigError("problem_seed", self.problem_seed, "an integer >= 0 (the test set's seed)", owner)
        if self.n_train > self.n_votes:
            raise ConfigError("n_train", self.n_train, f"<= n_votes={self.n_votes} (M of the N votes are trained on)",
                              owner)
        if self.n_train < 2:
            raise ConfigError("n_train", self.n_train, "an integer >= 2 (a group advantage needs two samples)", owner)
        self.validate_group(env, env_params, owner=owner, group_size=self.n_votes, group_field="n_votes",
                            batch_size=lambda: self.batch_size,
                            extra_numeric={"guard_ema": UNIT, "guard_margin": NON_NEGATIVE,
                                           "guard_min_steps": COUNT, "flip_threshold": POSITIVE,
                                           "minority_strength": NON_NEGATIVE, "min_majority_ratio": UNIT})
        if env is not None and not 1 <= self.difficulty <= max_difficulty(env):
            raise ConfigError("difficulty", self.difficulty, f"an int in [1, {max_difficulty(env)}] for {env!r}",
                              owner)


# ============================================================================================ state and metrics
@struct.dataclass
class RunState(lm.RunState):
    """:class:`jaxrl_self.lm.RunState` plus the collapse guard's memory."""

    guard: Any = None  # label_free.GuardState


@struct.dataclass
class Metrics:
    """One row per update (scalars per seed)."""

    env_steps: jax.Array  # cumulative response tokens generated
    episode_return: jax.Array  # = reward_mean (the progress bar and summary read this)
    episode_return_valid: jax.Array
    reward_mean: jax.Array  # mean pseudo-reward over the N samples
    majority_ratio: jax.Array  # votes for the majority / N (mean over prompts)
    answered: jax.Array  # fraction of prompts with at least one valid vote
    format_valid: jax.Array  # fraction of samples with a strictly valid answer
    response_length: jax.Array
    departure: jax.Array  # fraction of the batch whose majority differs from the base model's
    departure_ema: jax.Array
    base_noise: jax.Array  # the base model's own vote-to-vote disagreement
    flip_rate: jax.Array  # fraction of revisited prompts whose majority changed since the last visit
    flip_ema: jax.Array
    guard_fired: jax.Array  # bool: the departure signal has fired
    minority_on: jax.Array  # bool: minority preservation is on
    learning: jax.Array  # bool: this update changed the parameters
    trained_prompts: jax.Array  # fraction of the batch's prompts trained on (the confidence filter)
    label_accuracy: jax.Array  # ground truth: majority == true answer (= maj@N); NaN without ground_truth_metrics
    reward_accuracy: jax.Array  # ground truth: fraction of samples whose pseudo-reward equals their true reward
    pass_at_1: jax.Array  # ground truth: mean correctness over the N samples
    pass_at_n: jax.Array  # ground truth: any of the N correct
    loss: jax.Array
    policy_loss: jax.Array
    kl: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array
    learning_rate: jax.Array
    problems: dict = struct.field(default_factory=dict)  # problem_pass, problems_valid
    reward: dict = struct.field(default_factory=dict)  # the reward's own statistics


# ============================================================================================ the test set
def test_set(config: Config, task: SequenceTask) -> lm.ProblemSet:
    """The default unlabeled test set: ``num_problems`` held-out problems of ``difficulty`` (seed ``problem_seed``)."""
    return lm.ProblemSet.of(lm.held_out_problems(task, (config.difficulty,), config.num_problems,
                                                 config.problem_seed))


def _response_logits(params: Any, model_config: TransformerConfig, ro: lm.Rollout) -> jax.Array:
    """``[N, R, V]`` logits of the distribution each response token was drawn from (one forward pass)."""
    seq = lm.join_prompt_response(ro.prompts, ro.prompt_len, ro.responses, ro.response_len)
    T = seq.shape[1]
    logits = apply(params, seq, jnp.broadcast_to(jnp.arange(T), seq.shape), causal_mask(T), config=model_config).logits
    idx = jnp.clip(ro.prompt_len[:, None] - 1 + jnp.arange(ro.responses.shape[1])[None, :], 0, T - 1)
    return jnp.take_along_axis(logits, idx[..., None], axis=1)


# ============================================================================================ the run
def make_train(config: Config, env: SequenceTask, env_params: Any = None, *, problems: Optional[lm.ProblemSet] = None,
               reward_fn: Any = None, init_params: Any = None,
               model_config: TransformerConfig | None = None) -> Train[RunState]:
    """Build the run ``train(key) -> (RunState, Metrics)``.

    Args:
      config: the :class:`Config`.
      env: the task (:class:`~jaxrl_self.core.SequenceTask`); the base model's own by default on the CLI.
      problems: the unlabeled test set (a :class:`~jaxrl_self.lm.ProblemSet`; default :func:`test_set`); its
        answers are read by the diagnostics only.
      reward_fn: a label-free group or per-response reward to use instead of ``config.reward`` (a labelled one is
        refused: TTRL trains without labels).
      init_params, model_config: start from these parameters instead of ``config.base_model``.
    """
    config.validate(env, env_params)
    task = env
    if reward_fn is not None and lm.is_labelled(reward_fn):
        raise ConfigError("reward_fn", getattr(reward_fn, "__name__", reward_fn),
                          "a label-free reward (TTRL trains on unlabeled problems; it must not read answers)",
                          "ttrl.make_train")
    data = test_set(config, task) if problems is None else problems
    source = lm.problem_source(task, problems=data)
    policy = lm.load_policy(config, task, init_params=init_params, model_config=model_config, owner="ttrl.Config")
    model_cfg, layout = policy.model_config, policy.prompt_layout
    tx = lm.make_optimizer(config)
    B, N, M, R = config.num_prompts, config.n_votes, config.n_train, config.max_new_tokens
    strict = jax.vmap(jax.vmap(lambda r: task.extract_answer(r, strict=True)))

    def votes_of(params, key, problems):
        """``(labels [P, A], has [P])``: one N-sample vote per problem."""
        ro = lm.rollout(key, params, model_cfg, problems, N, R, config.temperature, prompt_layout=layout)
        answers, valid = strict(ro.responses.reshape(-1, N, R))
        v = jax.vmap(lf.vote)(answers, valid)
        return v.answer, v.has_majority

    def loss_fn(params, mb):
        return lm.group_policy_loss(config, model_cfg, params, mb)

    def init(key: jax.Array, params: Any = None, *, ref_params: Any = None, problems: Any = None) -> RunState:
        base = lm.init_run_state(key, policy, tx, source, use_reference=config.use_reference, params=params,
                                 ref_params=ref_params, problems=problems)
        k_a, k_b = jax.random.split(jax.random.fold_in(key, 2))
        test = base.problems.data.problems
        (label_a, has_a), (label_b, has_b) = votes_of(base.params, k_a, test), votes_of(base.params, k_b, test)
        return RunState(**{f: getattr(base, f) for f in base.__dataclass_fields__},
                        guard=lf.guard_init(label_a, has_a, label_b, has_b))

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_prob, k_gen, k_rew, k_sub, k_learn = jax.random.split(state.rng, 6)
        # 1. problems, 2. N samples each
        source_state, drawn = source.draw(state.problems, k_prob, B)
        ro = lm.rollout(k_gen, state.params, model_cfg, drawn.problems, N, R, config.temperature,
                        prompt_layout=layout)
        # 3. votes on the strictly extracted answers
        responses, masks = ro.responses.reshape(B, N, R), ro.mask.reshape(B, N, R)
        answers, valid = strict(responses)
        votes = jax.vmap(lf.vote)(answers, valid)
        # 4. label-free rewards
        reward_metrics = {}
        if reward_fn is not None:
            rewards, reward_metrics = lm.compute_rewards(k_rew, reward_fn, ro.problem, ro.responses, ro.mask, N)
            reward_metrics = lm.mean_metrics(reward_metrics)
        elif config.reward == "majority":
            rewards = jax.vmap(lf.majority_rewards)(votes)
        elif config.reward == "majority+novelty":
            sim = jax.vmap(lambda r, m: lf.token_similarity(r, m, model_cfg.vocab_size))(responses, masks)
            rewards, novelty = jax.vmap(lf.novelty_rewards)(votes, valid, sim)
            reward_metrics = {"novelty": jnp.mean(novelty)}
        elif config.reward == "semantic_entropy":
            rewards, entropy = jax.vmap(lf.semantic_entropy_rewards)(votes, valid)
            reward_metrics = {"semantic_entropy": jnp.mean(entropy)}
        else:  # self_certainty under the policy that sampled (the current parameters)
            certainty = lf.self_certainty(_response_logits(state.params, model_cfg, ro), ro.mask)
            rewards = certainty.reshape(B, N)
            reward_metrics = {"self_certainty": jnp.mean(certainty)}
        # 5. the guard's signals
        guard, guard_metrics = lf.guard_step(state.guard, drawn.index, votes.answer, votes.has_majority,
                                             state.update_step, ema=config.guard_ema, margin=config.guard_margin,
                                             flip_threshold=config.flip_threshold,
                                             min_steps=config.guard_min_steps)
        # 6. train on M of the N samples
        take = lm.subset_index(k_sub if config.train_subset == "random" else None, B, N, M)
        train_ro = lm.select_groups(ro, take)
        advantages = group.group_advantages(lm.take_groups(rewards, take), config.advantage, eps=config.adv_eps,
                                            ddof=config.std_ddof)
        if config.guard == "minority":
            strength = config.minority_strength * jnp.minimum(guard_metrics["flip_rate"] / config.flip_threshold, 1.0)
            bonus = _minority(votes, valid, take, advantages, strength)
            advantages = advantages + jnp.where(guard_metrics["minority_on"], bonus, 0.0)
        # 7. learn
        ref_logp = lm.reference_logp(state.ref_params, model_cfg, train_ro) if config.use_reference else None
        confident = votes.count >= config.min_majority_ratio * N  # the confidence filter (0: every prompt)
        batch = lm.make_batch(train_ro, advantages, ref_logp, row_valid=drawn.valid & confident)
        params, opt_state, stats = lm.learn(k_learn, config, loss_fn, tx, state.params, state.opt_state, batch)
        params, opt_state, nonfinite = lm.guard_nonfinite(state, params, opt_state, stats["loss"])
        learning = nonfinite < 0
        if config.guard == "stop":  # early stop: from the update at which the guard fires on, nothing is learnt
            learning = learning & (guard.fired_at < 0)
            params, opt_state = tree_select(learning, (params, opt_state), (state.params, state.opt_state))

        # ground-truth diagnostics (the only place the test set's answers are read)
        if config.ground_truth_metrics:
            correct = jax.vmap(jax.vmap(task.is_correct, in_axes=(None, 0)))(ro.problem, responses)
            diag = jax.vmap(lf.vote_diagnostics)(votes, correct, ro.problem.answer,
                                                 jax.vmap(lf.majority_rewards)(votes))
            diag = {k: jnp.mean(v) for k, v in diag.items()}
        else:
            diag = {k: jnp.full((), jnp.nan, jnp.float32) for k in
                    ("label_accuracy", "reward_accuracy", "pass_at_1", "pass_at_n")}
        env_steps = state.env_steps + jnp.sum(ro.response_len)
        reward_mean = jnp.mean(rewards)
        metrics = Metrics(
            env_steps=env_steps, episode_return=reward_mean, episode_return_valid=jnp.ones((), bool),
            reward_mean=reward_mean, majority_ratio=jnp.mean(votes.count / N),
            answered=jnp.mean(votes.has_majority.astype(jnp.float32)),
            format_valid=jnp.mean(valid.astype(jnp.float32)),
            response_length=jnp.mean(ro.response_len.astype(jnp.float32)),
            **{k: guard_metrics[k] for k in ("departure", "departure_ema", "base_noise", "flip_rate", "flip_ema",
                                             "guard_fired", "minority_on")},
            learning=learning, trained_prompts=jnp.mean(confident.astype(jnp.float32)), label_accuracy=diag["label_accuracy"], reward_accuracy=diag["reward_accuracy"],
            pass_at_1=diag["pass_at_1"], pass_at_n=diag["pass_at_n"],
            **{k: jnp.mean(v) for k, v in stats.items()},
            learning_rate=lm.learning_rate_at(config, state.update_step),
            problems=drawn.stats, reward=reward_metrics)
        new_state = state.replace(params=params, opt_state=opt_state, rng=rng, update_step=state.update_step + 1,
                                  env_steps=env_steps, nonfinite_update=nonfinite, problems=source_state, guard=guard)
        return new_state, metrics

    return Train(init=init, update=update, num_updates=config.num_updates, config=config)


def _minority(votes: lf.Vote, valid: jax.Array, take: jax.Array, advantages: jax.Array,
              strength: jax.Array) -> jax.Array:
    """The minority bonus of the trained samples ``take [B, M]`` (their clusters are counted over all N votes)."""
    bonus_all = jax.vmap(lambda v, ok, adv: lf.minority_bonus(v, ok, adv, strength))(
        votes, valid, jnp.broadcast_to(jnp.mean(jnp.abs(advantages), axis=1, keepdims=True), valid.shape))
    return lm.take_groups(bonus_all, take)


def make_eval(config: Config, env: SequenceTask, env_params: Any = None, *,
              model_config: TransformerConfig | None = None, greedy: bool = True):
    """Accuracy on fresh problems of the test set's difficulty (:func:`jaxrl_self.lm.make_eval`). ``jaxrl-self
    eval`` passes the task's default parameters, which would mix every difficulty; the test set's difficulty
    always applies."""
    del env_params
    inner = lm.make_eval(config, env, difficulty_params(env, config.difficulty), model_config=model_config,
                         greedy=greedy)

    def evaluate(params, key, env_params=None, num_episodes: int = 256, temperature: float = 1.0):
        del env_params
        return inner(params, key, None, num_episodes, temperature)

    return evaluate
