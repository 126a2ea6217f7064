"""Truncated PPO (T-PPO; Fan et al., 2025, arXiv:2506.15050) for language models on verifiable token tasks.

Synchronous token-level PPO (:mod:`jaxrl_self.algos.token_ppo`) generates a whole batch of responses before it
learns, so every update waits for the batch's *longest* response. T-PPO keeps a fixed pool of ``B`` response
slots in flight (each with its KV cache) and, every training step, advances every slot by a window of ``l``
tokens, learns from that window, and refills the slots whose responses finished with new prompts (continuous
batching). A response longer than ``l`` is continued in the next step under the updated policy; its earlier
tokens are then context only. The whole run is one XLA program: a ``lax.scan`` over training steps with fixed
shapes (``B`` slots, buffers of ``prompt_len + max_new_tokens`` tokens, windows of ``l`` tokens).

::

    from jaxrl_self.algos import tppo
    from jaxrl_self.lm.base_models import base_model_task, load_base_model
    task = base_model_task(load_base_model("chain-base")[2])    # the chain the base model knows (max_steps_cap=16)
    config = tppo.Config(base_model="chain-base", window=8, max_new_tokens=task.solution_len)
    state, metrics = jax.jit(tppo.make_train(config, task))(jax.random.key(0))

One training step (:func:`make_train`'s ``update``), top to bottom:

1. **refill** (:func:`refill`): every slot whose response finished in the previous step (and every slot at the
   start) gets a new problem; its prompt is prefilled into the slot's KV cache. Each prompt gets a serial
   number (``Pool.prompt_id``) so that every response can be followed from its prompt to its score.
2. **window** (:func:`collect_window`): with ``refresh_cache`` the KV cache of every slot is first recomputed
   under the current parameters (continued responses were cached under older ones); then every slot decodes
   up to ``l`` tokens. The sampler records each token's policy log-prob ``log π_old`` and the value
   ``V_old(s_t)`` of the state it was chosen in. A response *finishes* at EOS or at ``max_new_tokens``;
   finished responses are scored once, here, by the reward function (default: the task's verifier, 1/0).
3. **EGAE** (:func:`window_advantages`, :func:`jaxrl_self.rl.advantages.egae`): GAE over the window's tokens,
   ``δ_t = r_t + γ V(s_{t+1}) − V(s_t)``, ``A_t = δ_t + γ λ_π A_{t+1}``. A finished response uses the terminal
   reward and ``V = 0`` after its last token (ordinary GAE); a response cut by the window edge bootstraps with
   ``V(s_l) := V(s_{l−1})`` (``bootstrap="previous"``; ablations: ``"zero"``, the cut treated as terminal, and
   ``"exact"``, the true ``V(s_l)`` from one more forward step). ``λ_π`` is ``policy_lambda`` or, with
   ``length_adaptive_lambda``, ``1 − 1/(α · tokens so far)``. Advantages are whitened over the window's tokens
   (``normalize_advantages``). A cut window carries no reward, only value differences: T-PPO learns only as
   well as its value function does (``value_warmup_updates`` trains the value alone for the first steps).
4. **value targets** (:func:`value_targets`): with ``value_tokens="finished"`` (T-PPO) the value is trained only
   on responses that finished in this step, on all their tokens, against the ``λ_V``-return of the whole
   response (``value_lambda = 1``: the Monte-Carlo return, here the terminal reward); ``"all"`` (ablation)
   trains it like the policy, on the window tokens of all responses against their EGAE ``λ_V``-returns.
5. **learn** (:func:`jaxrl_self.lm.learn`, with :func:`tppo_loss`): ``update_epochs`` x ``num_minibatches`` of slots;
   ``L = PPO-clip(window tokens of all slots) + vf_coef · value loss − ent_coef · entropy`` (token means),
   global-norm clipping, Adam (``value_warmup_updates``: the value loss only, the policy held fixed). With
   ``value_model="separate"`` the value is a second network (a copy of the initial policy with its own Adam
   state) that scores the window after decoding and learns only from the value loss. ``learner="full"``
   re-scores each slot's whole buffer in one causal forward pass (exact gradients, the same computation as the
   token-PPO learner); ``learner="window"`` recomputes only the window's tokens on top of the slot's KV cache,
   with no gradient through the cached context (cheaper by about ``buffer / window``; :func:`window_scores`).

The old log-probs in the PPO ratio are those of the policy that sampled the window: ``π_θ`` at the start of
the step, reading a context cached under the same parameters (``refresh_cache=True``) or under the parameters
that generated it (``False``; then the ``"full"`` learner starts from a ratio that is not exactly 1). Tokens of
earlier windows are never trained by the policy loss again.

Design notes, the equations and what the paper leaves open: ``docs/tppo.md``.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl_self import lm, rl
from jaxrl_self.core.algorithm import Train, static_field as _static
from jaxrl_self.core.environment import tree_select
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.mesh import shard_envs
from jaxrl_self.core.sequence import Problem, SequenceTask
from jaxrl_self.lm.config import COUNT, NON_NEGATIVE, POSITIVE, UNIT, LMRLConfig
from jaxrl_self.lm.diagnostics import EvalResult
from jaxrl_self.lm.evaluate import prompt_lengths
from jaxrl_self.lm.problems import sample_problems
from jaxrl_self.lm.rewards import RewardFn, is_group_reward, verifier_reward
from jaxrl_self.lm.sampling import entropy_from_logits, token_logprobs
from jaxrl_self.nets.transformer import KVCache, TransformerConfig, apply
from jaxrl_self.rl import token_gae
from jaxrl_self.rl.advantages import egae, length_adaptive_lambda

__all__ = [
    "NAME",
    "DEFAULT_ENV",
    "LEARNERS",
    "BOOTSTRAPS",
    "VALUE_TOKENS",
    "VALUE_MODELS",
    "Config",
    "Pool",
    "RunState",
    "Metrics",
    "Window",
    "Batch",
    "EvalResult",
    "init_pool",
    "refill",
    "collect_window",
    "bootstrap_value",
    "window_advantages",
    "value_targets",
    "make_batch",
    "window_scores",
    "tppo_loss",
    "make_train",
    "make_eval",
]

NAME = "tppo"
#: What it trains on: token tasks (kinds: jaxrl_self.core.algorithm.ENVIRONMENT_KINDS).
ENV_KINDS = ("task",)
#: The task the CLI uses when ``--task``/``--env`` is not given: the long-tailed chain.
DEFAULT_ENV = "chain"
LEARNERS = ("full", "window")
BOOTSTRAPS = ("previous", "zero", "exact")
VALUE_TOKENS = ("finished", "all")
VALUE_MODELS = ("head", "separate")
POLICY_TOKENS = ("all", "finished")
LOSS_DENOMINATORS = ("window", "tokens")


# ============================================================================================ configuration
@struct.dataclass
class Config(LMRLConfig):
    """T-PPO hyper-parameters: the shared LM-RL fields (:class:`~jaxrl_self.lm.LMRLConfig`; some with other
    defaults here) and these (static fields first, then the traced numeric ones)."""

    # -- shared fields with T-PPO's defaults
    max_new_tokens: int = _static(38)
    """response budget in tokens (a response without EOS ends there); the chain's longest answer is 38"""
    update_epochs: int = _static(4)
    """passes over each step's batch of slots"""
    num_minibatches: int = _static(4)
    """minibatches of slots per epoch; must divide num_slots"""
    base_model: str = _static("")
    """start from this shipped base model ('chain-base'...) plus a fresh value head; '' = fresh init of `model`"""
    model: TransformerConfig = _static(TransformerConfig(num_layers=2, d_model=64, num_heads=4, d_ff=256, max_len=128,
                                                         positional="learned", value_head=True))
    """architecture of a freshly initialised policy (a value head is always added)"""
    learning_rate: float = 1e-4
    """Adam step size (after the warm-up)"""
    # -- sizes (static)
    num_slots: int = _static(64)
    """B, responses in flight (the pool); each step trains on their window tokens"""
    window: int = _static(8)
    """l, tokens each slot generates per step (a response longer than l spans several steps)"""
    # -- method (static)
    learner: str = _static("full")
    """'full': re-score each slot's whole buffer (exact gradient); 'window': only the window, over the KV cache"""
    refresh_cache: bool = _static(True)
    """recompute every slot's KV cache under the current parameters before decoding a window"""
    bootstrap: str = _static("previous")
    """value after a cut: 'previous' (EGAE, V(s_l) := V(s_l-1)), 'zero' (ablation), 'exact' (V(s_l))"""
    value_model: str = _static("head")
    """'head': the value is a head on the policy's trunk (one network, as token_ppo); 'separate': a second network
    of the policy's architecture, initialised as a copy of the initial policy (value head included) and trained
    only by the value loss with its own Adam state, as in the paper (the policy's own head is then unused)"""
    value_tokens: str = _static("finished")
    """'finished': value on finished responses against their return; 'all': on every window token (ablation)"""
    loss_denominator: str = _static("window")
    """'window': the policy and value losses are sums over their tokens divided by the minibatch's *window*
    tokens, so a step in which few responses finished trains the value (and a 'finished'-only policy) on them
    with proportionally small weight; 'tokens' (ablation): means over their own tokens, which gives a handful of
    finished responses the weight of a whole step. The logged losses are the token means either way"""
    policy_tokens: str = _static("all")
    """'all': PPO-clip on the window tokens of every slot (T-PPO); 'finished' (ablation): only on the window
    tokens of responses that finished in it, i.e. never on a window whose advantages are value differences only"""
    length_adaptive_lambda: bool = _static(False)
    """policy λ per response = 1 - 1/(lambda_alpha * tokens so far) instead of policy_lambda"""
    normalize_advantages: bool = _static(True)
    """whiten the advantages over the window tokens of the step"""
    clip_value_loss: bool = _static(False)
    """clip the value loss around the values recorded when the tokens were sampled (value_clip_eps)"""
    # -- numeric hyper-parameters (traced)
    value_warmup_updates: int = 0
    """first training steps in which only the value learns (the value head, or with value_model="separate" the whole
    value network; the policy is held fixed): EGAE needs an informative value. With a head the one Adam state is
    shared, so its step count advances during the warm-up and the trunk's first steps after it are somewhat larger
    (bias correction; about 1.4x for 40 warm-up steps); the separate network's policy optimiser is left untouched"""
    gamma: float = 1.0
    """discount over response tokens"""
    policy_lambda: float = 0.95
    """λ of the policy's EGAE (unless length_adaptive_lambda)"""
    value_lambda: float = 1.0
    """λ of the value targets (1 = Monte-Carlo return)"""
    lambda_alpha: float = 1.0
    """α of the length-adaptive policy λ = 1 - 1/(α · length)"""
    value_clip_eps: float = 0.2
    """value clip range (with clip_value_loss)"""
    vf_coef: float = 0.5
    """value loss coefficient"""

    def validate(self, env: Any = None, env_params: Any = None) -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad field (traced values are skipped);
        with ``env`` (a :class:`~jaxrl_self.core.SequenceTask`) the task, difficulty range and lengths too."""
        owner = "tppo.Config"
        for name in ("num_slots", "window"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                raise ConfigError(name, v, "a positive integer", owner)
        if isinstance(self.max_new_tokens, (int, np.integer)) and self.window > self.max_new_tokens:
            raise ConfigError("window", self.window, f"<= max_new_tokens={self.max_new_tokens} (a window as long as "
                              "the longest response already makes every response finish in its first window)", owner)
        for name, allowed in (("learner", LEARNERS), ("bootstrap", BOOTSTRAPS), ("value_model", VALUE_MODELS),
                              ("value_tokens", VALUE_TOKENS),
                              ("policy_tokens", POLICY_TOKENS), ("loss_denominator", LOSS_DENOMINATORS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, getattr(self, name), f"one of {allowed}", owner)
        self.validate_shared(env, env_params, owner=owner, batch_size=self.num_slots, batch_name="num_slots",
                             default_task="chain",
                             flags=("refresh_cache", "length_adaptive_lambda", "normalize_advantages",
                                    "clip_value_loss"),
                             extra_numeric={"gamma": UNIT, "policy_lambda": UNIT, "value_lambda": UNIT,
                                            "lambda_alpha": POSITIVE, "value_clip_eps": POSITIVE,
                                            "vf_coef": NON_NEGATIVE, "value_warmup_updates": COUNT})

# ============================================================================================ state and metrics
@struct.dataclass
class Pool:
    """``B`` response slots in flight, ``S = prompt_len + max_new_tokens`` buffer positions each.

    Attributes:
        slots: the generation state (:class:`~jaxrl_self.lm.DecodeState`): token buffers ``[B, S]``, KV caches,
            lengths, prompt lengths, ``done`` flags (finished, waiting to be refilled) and sampling keys.
        problem: the :class:`~jaxrl_self.core.Problem` each slot is answering (leaves ``[B, ...]``).
        prompt_id: ``[B]`` int32 serial number of the slot's prompt (prompts are numbered 0, 1, 2... in the
            order they enter the pool); -1 for a slot never filled.
        values: ``[B, S]`` float32 ``V_old(s)`` recorded when each response token was sampled (buffer positions;
            only the response positions of a slot are meaningful).
    """

    slots: lm.DecodeState
    problem: Problem
    prompt_id: jax.Array
    values: jax.Array


@struct.dataclass
class RunState:
    """Everything a run needs to continue, the pool of half-finished responses included (one pytree)."""

    params: Any  # policy + value head parameters (shared trunk)
    opt_state: Any
    rng: jax.Array
    update_step: jax.Array  # int32
    env_steps: jax.Array  # int32, response tokens generated (= policy-trained tokens) so far
    nonfinite_update: jax.Array  # int32, -1 or the first update with a NaN/inf loss
    pool: Pool
    prompts_issued: jax.Array  # int32, prompts that entered the pool so far (the next prompt_id)
    responses_finished: jax.Array  # int32, responses finished and scored so far
    reward_extras: Any = None
    value_params: Any = None  # value_model="separate": the value network (opt_state then covers both networks)


@struct.dataclass
class Metrics:
    """One row per training step (scalars per seed). Statistics of *finished* responses are NaN in a step where
    none finished (``episode_return_valid`` False); loss statistics are means over epochs and minibatches."""

    env_steps: jax.Array  # cumulative generated (= policy-trained) response tokens
    episode_return: jax.Array  # mean reward of the responses finished in this step
    episode_return_valid: jax.Array  # at least one response finished
    accuracy: jax.Array  # verifier accuracy of the finished responses
    format_valid: jax.Array  # fraction of finished responses with a parseable answer
    response_length: jax.Array  # mean length of the finished responses (EOS included)
    truncated: jax.Array  # fraction of finished responses cut at max_new_tokens without EOS
    num_finished: jax.Array  # responses finished (and scored) in this step
    window_tokens: jax.Array  # tokens generated in this step
    slot_utilization: jax.Array  # window_tokens / (num_slots * window)
    loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array  # token mean over the value-trained tokens of the step; NaN when there were none
    value_tokens: jax.Array  # tokens the value was trained on in this step
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array
    grad_norm: jax.Array
    value_mean: jax.Array  # token mean of V_old over the window
    advantage_mean: jax.Array  # token mean of the raw EGAE advantage over the window
    learning_rate: jax.Array
    reward: dict = struct.field(default_factory=dict)  # the reward function's own metrics (finished responses)


@struct.dataclass
class Window:
    """What one window of decoding produced, per slot (``[B]``) or per window step (``[B, l]``).

    ``tokens``/``mask``/``logp``/``values``/``finished``/``position`` are the sampler's
    :class:`~jaxrl_self.lm.DecodeOutput` (``mask`` a prefix per slot; ``logp = log π_old``; ``values =
    V_old(s_t)``; ``position`` the token's index in the slot buffer).
    """

    prompt_id: jax.Array  # [B] int32, the prompt each slot worked on in this window
    start: jax.Array  # [B] int32, buffer index of the window's first token (slot length before the window)
    tokens: jax.Array  # [B, l] int32
    mask: jax.Array  # [B, l] bool
    logp: jax.Array  # [B, l] float32
    values: jax.Array  # [B, l] float32
    finished: jax.Array  # [B, l] bool
    position: jax.Array  # [B, l] int32
    done: jax.Array  # [B] bool, the slot's response finished in this window (it was scored)
    reward: jax.Array  # [B] float32, task reward of finished responses, 0 elsewhere
    correct: jax.Array  # [B] bool, verifier (meaningful where done)
    format_valid: jax.Array  # [B] bool, a parseable answer (meaningful where done)
    response_len: jax.Array  # [B] int32, response tokens after the window
    bootstrap: jax.Array  # [B] float32, V(s_l) used where the window cuts a response
    reward_metrics: dict = struct.field(default_factory=dict)  # [B] per metric of the reward (meaningful where done)


@struct.dataclass
class Batch:
    """The learner's data, leading axis ``B`` slots (minibatches are cut along it)."""

    tokens: jax.Array  # [B, S] int32 slot buffers after the window
    prompt_len: jax.Array  # [B] int32
    length: jax.Array  # [B] int32
    start: jax.Array  # [B] int32 first window position
    cache: Optional[KVCache]  # keys/values [B, L, H, S, D] (learner="window" only, else None)
    window_mask: jax.Array  # [B, l] bool, the window's tokens
    policy_mask: jax.Array  # [B, l] bool, the policy-trained tokens (window_mask, or its finished rows only)
    old_logp: jax.Array  # [B, l] float32
    advantages: jax.Array  # [B, l] float32 (whitened if configured)
    value_mask: jax.Array  # [B, S] bool, the value-trained positions
    value_target: jax.Array  # [B, S] float32
    value_old: jax.Array  # [B, S] float32, V recorded at sampling time (for value clipping)
    warmup: jax.Array  # [B] bool, value warm-up step: only the value head learns (the same flag on every row)


# ============================================================================================ 1. the pool
def init_pool(model_config: TransformerConfig, task: SequenceTask, num_slots: int, max_new_tokens: int) -> Pool:
    """An empty pool: every slot done (to be filled by the first :func:`refill`), ``prompt_id = -1``."""
    S = task.prompt_len + max_new_tokens
    problem = jax.eval_shape(lambda k: sample_problems(k, task, task.default_params, num_slots), jax.random.key(0))
    return Pool(
        slots=lm.init_decode_state(model_config, num_slots, S),
        problem=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), problem),
        prompt_id=jnp.full((num_slots,), -1, jnp.int32),
        values=jnp.zeros((num_slots, S), jnp.float32),
    )


def refill(key: jax.Array, params: Any, pool: Pool, prompts_issued: jax.Array, *, task: SequenceTask,
           task_params: Any, model_config: TransformerConfig, prompt_layout: str) -> tuple[Pool, jax.Array]:
    """Give every done slot a new problem (in slot order, numbered from ``prompts_issued``) and prefill its
    prompt; the other slots are untouched bit for bit. Returns ``(pool, prompts_issued)``.

    ``B`` problems are sampled every step (fixed shapes); those of slots that keep their response are unused.
    """
    k_prob, k_slot = jax.random.split(key)
    B = pool.prompt_id.shape[0]
    new = sample_problems(k_prob, task, task_params, B)
    fill = pool.slots.done
    plen = prompt_lengths(new.prompt, prompt_layout)
    slots = lm.reset_slots(params, pool.slots, fill, new.prompt, plen, jax.random.split(k_slot, B),
                           config=model_config)
    rank = jnp.cumsum(fill.astype(jnp.int32)) - 1
    prompt_id = jnp.where(fill, prompts_issued + rank, pool.prompt_id).astype(jnp.int32)
    problem = jax.tree.map(lambda n, o: jnp.where(fill.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, pool.problem)
    pool = pool.replace(slots=slots, problem=problem, prompt_id=prompt_id)
    return pool, prompts_issued + jnp.sum(fill, dtype=jnp.int32)


def _responses(slots: lm.DecodeState, max_new_tokens: int, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """Each slot's response so far as ``([B, R] tokens, PAD after the end; [B, R] mask)``."""
    R = max_new_tokens
    idx = slots.prompt_len[:, None] + jnp.arange(R)[None, :]
    mask = jnp.arange(R)[None, :] < slots.response_len[:, None]
    tokens = jnp.take_along_axis(slots.tokens, jnp.clip(idx, 0, slots.tokens.shape[1] - 1), axis=1)
    return jnp.where(mask, tokens, pad_id), mask


def bootstrap_value(params: Any, slots: lm.DecodeState, *, config: TransformerConfig) -> jax.Array:
    """``V(s_l)`` ``[B]``: the value of each slot's current state (its last token fed at position
    ``length - 1`` over the slot's KV cache; one ``[B, 1]`` forward step, nothing is appended)."""
    S = slots.tokens.shape[1]
    pos = jnp.maximum(slots.length - 1, 0)
    pending = jnp.take_along_axis(slots.tokens, pos[:, None], axis=1)
    attn = (jnp.arange(S)[None, :] <= pos[:, None])[:, None, :]
    _, values, _ = apply(params, pending, pos[:, None], attn, slots.cache, config=config)
    return values[:, 0]


def collect_window(key: jax.Array, params: Any, pool: Pool, prompts_issued: jax.Array, *, config: Config,
                   task: SequenceTask, task_params: Any, model_config: TransformerConfig, prompt_layout: str,
                   reward_fn: RewardFn, reward_extras: Any = None, value_params: Any = None,
                   ground_truth: bool = True) -> tuple[Pool, jax.Array, Window]:
    """Refill, (refresh the caches,) decode one window of ``config.window`` tokens per slot and score the
    responses that finished. Returns ``(pool, prompts_issued, window)``; finished slots keep their response
    (``pool.slots.done``) until the next :func:`refill`.

    ``value_params`` (``value_model="separate"``): the values ``V_old(s_t)`` and ``V(s_l)`` come from this value
    network (one causal forward pass over the slots' buffers after the window) instead of the policy's head.
    ``ground_truth=False``: ``window.correct`` is all False (the true answers are not read)."""
    k_refill, k_reward = jax.random.split(key)
    pool, prompts_issued = refill(k_refill, params, pool, prompts_issued, task=task, task_params=task_params,
                                  model_config=model_config, prompt_layout=prompt_layout)
    slots = pool.slots
    if config.refresh_cache:
        slots = lm.refresh_cache(params, slots, config=model_config)
    start = slots.length
    sampling = lm.SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature)
    slots, out = lm.decode(params, slots, config.window, config=model_config, sampling=sampling)
    B, S = slots.tokens.shape
    rows = jnp.arange(B)[:, None]
    exact_boot = None
    if value_params is not None:  # v[b, q]: the value network's V of the state token q is chosen in (as the learner)
        v = lm.score(value_params, slots.tokens, slots.prompt_len, config=model_config).values
        out = out.replace(values=jnp.where(out.mask, jnp.take_along_axis(v, jnp.clip(out.position, 0, S - 1), axis=1),
                                           0.0))
        exact_boot = jnp.take_along_axis(v, jnp.minimum(slots.length, S - 1)[:, None], axis=1)[:, 0]  # V(s_l), cut
    values = pool.values.at[rows, out.position].set(out.values, mode="drop")  # positions past S are dropped

    # score the responses that finished in this window, exactly once
    done = jnp.any(out.finished, axis=1)
    responses, rmask = _responses(slots, config.max_new_tokens, task.vocab.PAD)
    reward, reward_metrics = lm.score_each(k_reward, reward_fn, pool.problem, responses, rmask, reward_extras)
    format_valid = jax.vmap(task.extract_answer)(responses)[1]  # responses are PAD after their end
    if ground_truth:  # diagnostics: the verifier reads the true answers
        correct = jax.vmap(task.is_correct)(pool.problem, responses)
    else:
        correct = jnp.zeros((B,), bool)

    if config.bootstrap == "previous":
        last = jnp.maximum(jnp.sum(out.mask, axis=1) - 1, 0)
        boot = jnp.take_along_axis(out.values, last[:, None], axis=1)[:, 0]
    elif config.bootstrap == "zero":
        boot = jnp.zeros((B,), jnp.float32)
    elif exact_boot is not None:
        boot = exact_boot
    else:
        boot = bootstrap_value(params, slots, config=model_config)

    window = Window(prompt_id=pool.prompt_id, start=start, tokens=out.tokens, mask=out.mask, logp=out.logp,
                    values=out.values, finished=out.finished, position=out.position, done=done,
                    reward=jnp.where(done, jnp.asarray(reward, jnp.float32), 0.0), correct=correct,
                    format_valid=format_valid, response_len=slots.response_len, bootstrap=boot,
                    reward_metrics=reward_metrics)
    return pool.replace(slots=slots, values=values), prompts_issued, window


# ============================================================================================ 2. advantages, targets
def _token_rewards(window: Window) -> jax.Array:
    """``[B, l]``: the task reward on the token that finished the response, 0 elsewhere."""
    return jnp.where(window.finished & window.mask, window.reward[:, None], 0.0)


def window_advantages(config: Config, window: Window, gae_lambda: Any) -> tuple[jax.Array, jax.Array]:
    """EGAE over the window, ``([B, l] advantages, [B, l] λ-returns)`` with ``λ = gae_lambda`` (scalar or
    ``[B]``) and the cut responses bootstrapped with ``window.bootstrap`` (see :func:`collect_window`)."""
    adv, ret = egae(_token_rewards(window).T, window.values.T, window.mask.T, window.finished.T, config.gamma,
                    gae_lambda, bootstrap_values=window.bootstrap)
    return adv.T, ret.T


def _to_buffer(x: jax.Array, position: jax.Array, mask: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Scatter window-coordinate ``x [B, l]`` to buffer coordinates ``[B, S]`` (0 / False elsewhere)."""
    rows = jnp.arange(shape[0])[:, None]
    zero = jnp.zeros(shape, x.dtype)
    return zero.at[rows, position].set(jnp.where(mask, x, jnp.zeros((), x.dtype)), mode="drop")


def value_targets(config: Config, window: Window, pool: Pool) -> tuple[jax.Array, jax.Array]:
    """Value-training positions and targets in buffer coordinates, ``([B, S] bool, [B, S] float32)``.

    ``value_tokens="finished"``: every response token of the slots whose response finished in this window,
    target the ``value_lambda``-return of the whole response computed with the values recorded when its tokens
    were sampled (``value_lambda = 1``: the Monte-Carlo return ``Σ γ^k r``; the values cancel).
    ``"all"``: the window tokens of every slot, target the EGAE ``value_lambda``-return of the window.
    """
    slots = pool.slots
    B, S = slots.tokens.shape
    if config.value_tokens == "all":
        _, ret = window_advantages(config, window, config.value_lambda)
        return _to_buffer(window.mask, window.position, window.mask, (B, S)), _to_buffer(ret, window.position,
                                                                                        window.mask, (B, S))
    resp = slots.response_mask & window.done[:, None]
    last = jnp.arange(S)[None, :] == (slots.length - 1)[:, None]
    rewards = jnp.where(resp & last, window.reward[:, None], 0.0)
    _, ret = token_gae(rewards, pool.values, resp, config.gamma, config.value_lambda)
    return resp, ret


def make_batch(config: Config, window: Window, pool: Pool, advantages: jax.Array, value_mask: jax.Array,
               value_target: jax.Array, warmup: jax.Array | bool = False) -> Batch:
    """The learner's batch (advantages whitened over the window tokens if ``config.normalize_advantages``);
    ``warmup`` (scalar bool) marks a value warm-up step."""
    policy_mask = window.mask & (window.done[:, None] if config.policy_tokens == "finished" else True)
    adv = rl.normalize_advantages(advantages, policy_mask) if config.normalize_advantages else advantages
    slots = pool.slots
    cache = None
    if config.learner == "window":
        cache = jax.tree.map(lambda x: jnp.moveaxis(x, 1, 0), slots.cache)  # slots first, for minibatching
    return Batch(tokens=slots.tokens, prompt_len=slots.prompt_len, length=slots.length, start=window.start,
                 cache=cache, window_mask=window.mask, policy_mask=policy_mask, old_logp=window.logp, advantages=adv,
                 value_mask=value_mask,
                 value_target=value_target, value_old=pool.values,
                 warmup=jnp.broadcast_to(jnp.asarray(warmup, bool), window.start.shape))


# ============================================================================================ 3. the loss
def window_scores(params: Any, tokens: jax.Array, cache: KVCache, start: jax.Array, window: int, *,
                  config: TransformerConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Log-probs, entropies and values ``[B, l]`` of the window tokens at buffer positions ``start + j``,
    recomputed on top of the slots' KV cache (``cache.keys [L, B, H, S, D]``).

    One forward pass over ``l`` tokens per slot: the inputs are the tokens at positions ``o, ..., o + l - 1``
    with ``o = min(start - 1, S - l)`` (the token before the window and the window's tokens but the last);
    their keys/values are recomputed with ``params`` and overwrite the cache there, while the context before
    ``o`` is read from the cache under ``stop_gradient``. With a cache computed under ``params`` this equals
    :func:`jaxrl_self.lm.score` on those positions; its gradient omits the context's dependence on ``params``.
    """
    B, S = tokens.shape
    off = jnp.clip(start - 1, 0, S - window)
    idx = off[:, None] + jnp.arange(window)[None, :]  # input positions
    inputs = jnp.take_along_axis(tokens, idx, axis=1)
    attn = jnp.arange(S)[None, None, :] <= idx[:, :, None]
    logits, values, _ = apply(params, inputs, idx, attn, jax.lax.stop_gradient(cache), config=config)
    targets = jnp.take_along_axis(tokens, jnp.minimum(idx + 1, S - 1), axis=1)
    logp, ent = token_logprobs(logits, targets), entropy_from_logits(logits)
    out_idx = jnp.clip(start[:, None] - 1 - off[:, None] + jnp.arange(window)[None, :], 0, window - 1)
    take = lambda x: jnp.take_along_axis(x, out_idx, axis=1)  # noqa: E731
    return take(logp), take(ent), take(values)


def tppo_loss(config: Config, model_config: TransformerConfig, params: Any, mb: Batch) -> tuple[jax.Array, dict]:
    """T-PPO's objective on a minibatch of slots: PPO-clip on the window tokens (token mean) + ``vf_coef`` x
    value loss on the value positions (token mean) − ``ent_coef`` x entropy of the window tokens.

    Every per-token input is replaced by a constant outside its mask before any arithmetic, so neither the loss
    nor its gradient sees padding. On a value warm-up step (``mb.warmup``) the loss is ``vf_coef`` x value loss
    and only the value head receives a gradient (the shared trunk is held fixed). With ``value_model="separate"``
    ``params`` is ``{"policy": ..., "value": ...}``: the value network re-scores the whole buffers for the value
    loss (whatever the learner) and a warm-up step holds the whole policy fixed. Returns ``(loss, aux)``.
    """
    warm = mb.warmup[0]
    freeze = lambda tree: jax.tree.map(lambda p: jnp.where(warm, jax.lax.stop_gradient(p), p), tree)  # noqa: E731
    if config.value_model == "separate":  # params = {"policy": ..., "value": ...}; warm-up: the policy is frozen
        policy, value_net = freeze(params["policy"]), params["value"]
    else:  # one network; warm-up: everything but the value head is frozen
        policy, value_net = {k: v if k == "value_head" else freeze(v) for k, v in params.items()}, None
    B, l = mb.window_mask.shape
    S = mb.tokens.shape[1]
    pos = jnp.clip(mb.start[:, None] + jnp.arange(l)[None, :], 0, S - 1)
    if config.learner == "full":
        out = lm.score(policy, mb.tokens, mb.prompt_len, mb.length, config=model_config, with_entropy=True)
        logp = jnp.take_along_axis(out.logp, pos, axis=1)
        entropy = jnp.take_along_axis(out.entropy, pos, axis=1)
        values, v_mask, v_target, v_old = out.values, mb.value_mask, mb.value_target, mb.value_old
    else:
        cache = jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), mb.cache)
        logp, entropy, values = window_scores(policy, mb.tokens, cache, mb.start, l, config=model_config)
        take = lambda x: jnp.take_along_axis(x, pos, axis=1)  # noqa: E731
        v_mask = take(mb.value_mask) & mb.window_mask
        v_target, v_old = take(mb.value_target), take(mb.value_old)
    if value_net is not None:  # the value network re-scores the whole buffers (every value position, any learner)
        values = lm.score(value_net, mb.tokens, mb.prompt_len, mb.length, config=model_config).values
        v_mask, v_target, v_old = mb.value_mask, mb.value_target, mb.value_old

    m, vm = mb.policy_mask, v_mask
    z = jnp.zeros((), jnp.float32)
    logp, old_logp, adv, entropy = (jnp.where(m, x, z) for x in (logp, mb.old_logp, mb.advantages, entropy))
    values, v_target, v_old = (jnp.where(vm, x, z) for x in (values, v_target, v_old))
    policy_loss, stats = rl.ppo_policy_loss(logp, old_logp, adv, config.clip_eps, m)
    v_loss = rl.value_loss(values, v_old, v_target, config.value_clip_eps if config.clip_value_loss else None, vm)
    pi_term, v_term = policy_loss, v_loss
    if config.loss_denominator == "window":  # token means -> token sums / the minibatch's window tokens
        n_window = jnp.maximum(jnp.sum(mb.window_mask), 1).astype(jnp.float32)
        pi_term, v_term = policy_loss * jnp.sum(m) / n_window, v_loss * jnp.sum(vm) / n_window
    ent = rl.entropy_bonus(entropy, m)
    loss = jnp.where(warm, config.vf_coef * v_term, pi_term + config.vf_coef * v_term - config.ent_coef * ent)
    return loss, {"policy_loss": policy_loss, "value_loss": v_loss, "value_tokens": jnp.sum(vm).astype(jnp.float32),
                  "entropy": jax.lax.stop_gradient(ent), "approx_kl": stats.approx_kl,
                  "clip_fraction": stats.clip_fraction}


# ============================================================================================ the run
def _finished_mean(x: jax.Array, done: jax.Array) -> jax.Array:
    """Mean of ``x`` over finished responses; NaN when none finished (never a placeholder zero)."""
    n = jnp.sum(done)
    return jnp.where(n > 0, jnp.sum(jnp.where(done, x, 0.0)) / jnp.maximum(n, 1), jnp.nan).astype(jnp.float32)


def make_train(config: Config, env: SequenceTask, env_params: Any = None, *, reward_fn: Any = None,
               reward_extras: Any = None, init_params: Any = None,
               model_config: TransformerConfig | None = None) -> Train[RunState]:
    """Build the training run ``train(key) -> (RunState, Metrics)`` (metrics ``[num_updates]`` per field).

    Args:
      config: the :class:`Config` (numeric fields may be traced: call inside ``jax.vmap`` for a sweep).
      env: the :class:`~jaxrl_self.core.SequenceTask` (default task of the CLI: ``chain``).
      env_params: the task's parameters (default ``env.default_params``; the config's difficulty range applies).
      reward_fn: a per-response :class:`~jaxrl_self.lm.RewardFn` (default: the verifier, 1/0 minus
        ``format_penalty`` for unparseable answers); group rewards are not supported (no groups here).
      reward_extras: the initial ``RunState.reward_extras``.
      init_params, model_config: start from these parameters (a value head is added if missing).
    """
    config.validate(env, env_params)
    task = env
    if reward_fn is not None and is_group_reward(reward_fn):
        raise ConfigError("reward_fn", getattr(reward_fn, "__name__", reward_fn),
                          "a per-response RewardFn (T-PPO has no groups of responses)", "tppo.make_train")
    task_params = lm.task_params_for(config, task, env_params)
    policy = lm.load_policy(config, task, value_head=True, init_params=init_params, model_config=model_config,
                            owner="tppo.Config")  # checks that prompts + max_new_tokens fit the model
    model_cfg, layout = policy.model_config, policy.prompt_layout
    reward_fn = verifier_reward(task, config.format_penalty) if reward_fn is None else reward_fn
    separate = config.value_model == "separate"
    tx = lm.make_optimizer(config)
    if separate:  # two networks, two Adam states and gradient-norm clips: {"policy": ..., "value": ...}
        tx = optax.multi_transform({"policy": tx, "value": lm.make_optimizer(config)},
                                   lambda p: {k: jax.tree.map(lambda _: k, v) for k, v in p.items()})
    B, l = config.num_slots, config.window

    def loss_fn(params, mb):
        return tppo_loss(config, model_cfg, params, mb)

    def init(key: jax.Array, params: Any = None, *, value_params: Any = None,
             reward_extras: Any = reward_extras) -> RunState:
        k_params, k_run = jax.random.split(key)
        params = policy.initial_params(k_params, params)
        if separate and value_params is None:  # the value network starts as a copy of the initial policy
            value_params = jax.tree.map(jnp.copy, params)
        value_params = value_params if separate else None
        zero = jnp.zeros((), jnp.int32)
        learned = {"policy": params, "value": value_params} if separate else params
        return RunState(params=params, opt_state=tx.init(learned), rng=k_run, update_step=zero, env_steps=zero,
                        nonfinite_update=jnp.full((), -1, jnp.int32),
                        pool=init_pool(model_cfg, task, B, config.max_new_tokens), prompts_issued=zero,
                        responses_finished=zero, reward_extras=reward_extras, value_params=value_params)

    def update(state: RunState) -> tuple[RunState, Metrics]:
        rng, k_window, k_learn = jax.random.split(state.rng, 3)
        # 1-2. refill finished slots, decode one window, score the responses that finished
        pool, issued, window = collect_window(
            k_window, state.params, state.pool, state.prompts_issued, config=config, task=task,
            task_params=task_params, model_config=model_cfg, prompt_layout=layout, reward_fn=reward_fn,
            reward_extras=state.reward_extras, value_params=state.value_params,
            ground_truth=config.ground_truth_metrics)
        pool, window = shard_envs((pool, window), what="slot")  # on a device mesh: each device's share of slots
        # 3. EGAE for the policy (per-response λ if length-adaptive)
        lam = (length_adaptive_lambda(window.response_len, config.lambda_alpha) if config.length_adaptive_lambda
               else config.policy_lambda)
        advantages, _ = window_advantages(config, window, lam)
        # 4. value targets (finished responses against their return, or every window token)
        v_mask, v_target = value_targets(config, window, pool)
        # 5. learn
        warmup = state.update_step < config.value_warmup_updates
        batch = make_batch(config, window, pool, advantages, v_mask, v_target, warmup)
        if separate:
            before = {"policy": state.params, "value": state.value_params}
            learned, opt_state, stats = lm.learn(k_learn, config, loss_fn, tx, before, state.opt_state, batch)
            learned, opt_state, nonfinite = lm.guard_nonfinite(state.replace(params=before), learned, opt_state,
                                                               stats["loss"])
            params, value_params = learned["policy"], learned["value"]
            # a warm-up step leaves the policy's Adam state as it was: its step count would otherwise advance
            # with zero gradients, and Adam's bias correction would then make its first real steps too large
            policy_opt = tree_select(warmup, state.opt_state.inner_states["policy"], opt_state.inner_states["policy"])
            opt_state = opt_state._replace(inner_states={**opt_state.inner_states, "policy": policy_opt})
        else:
            params, opt_state, stats = lm.learn(k_learn, config, loss_fn, tx, state.params, state.opt_state, batch)
            params, opt_state, nonfinite = lm.guard_nonfinite(state, params, opt_state, stats["loss"])
            value_params = None

        n_tokens = jnp.sum(window.mask, dtype=jnp.int32)
        env_steps = state.env_steps + n_tokens
        v_tokens = stats.pop("value_tokens")
        v_loss = stats.pop("value_loss")
        done = window.done
        truncated = done & ~jnp.any(window.finished & (window.tokens == task.vocab.EOS), axis=1)
        metrics = Metrics(
            env_steps=env_steps,
            episode_return=_finished_mean(window.reward, done),
            episode_return_valid=jnp.any(done),
            accuracy=(_finished_mean(window.correct.astype(jnp.float32), done) if config.ground_truth_metrics
                      else jnp.full((), jnp.nan, jnp.float32)),
            format_valid=_finished_mean(window.format_valid.astype(jnp.float32), done),
            response_length=_finished_mean(window.response_len.astype(jnp.float32), done),
            truncated=_finished_mean(truncated.astype(jnp.float32), done),
            num_finished=jnp.sum(done, dtype=jnp.int32),
            window_tokens=n_tokens,
            slot_utilization=n_tokens.astype(jnp.float32) / (B * l),
            value_loss=jnp.where(jnp.sum(v_tokens) > 0, jnp.sum(v_loss * v_tokens) / jnp.maximum(jnp.sum(v_tokens), 1),
                                 jnp.nan),
            value_tokens=jnp.sum(v_mask, dtype=jnp.int32),
            **{k: jnp.mean(v) for k, v in stats.items()},
            value_mean=rl.masked_mean(window.values, window.mask),
            advantage_mean=rl.masked_mean(advantages, window.mask),
            learning_rate=lm.learning_rate_at(config, state.update_step),  # the scheduled rate (warm-up)
            reward=lm.mean_metrics(window.reward_metrics, done),
        )
        new_state = state.replace(params=params, opt_state=opt_state, rng=rng, update_step=state.update_step + 1,
                                  env_steps=env_steps, nonfinite_update=nonfinite, pool=pool, prompts_issued=issued,
                                  value_params=value_params,
                                  responses_finished=state.responses_finished + jnp.sum(done, dtype=jnp.int32))
        return new_state, metrics

    return Train(init=init, update=update, num_updates=config.num_updates, config=config)


def make_eval(config: Config, env: SequenceTask, env_params: Any = None, *,
              model_config: TransformerConfig | None = None, greedy: bool = True):
    """Held-out accuracy of whole responses generated start to finish (``max_new_tokens``), as
    :func:`jaxrl_self.lm.make_eval` with the value-head model config."""
    return lm.make_eval(config, env, env_params, model_config=model_config, greedy=greedy, value_head=True)
