"""The configuration every LM-RL method shares, its checks, and the policy a run starts from.

:class:`LMRLConfig` holds the fields GRPO, token PPO, T-PPO, TTRL, RLT and SOAR all have (sizes, the model to
start from, the difficulty range, the optimiser and sampling numbers). A method's ``Config`` *inherits* it and
adds its own fields (and may give a shared field another default by declaring it again), so the CLI flags stay
``--learning-rate``, ``--base-model``... and ``config.learning_rate`` reads as before::

    @struct.dataclass
    class Config(LMRLConfig):
        num_prompts: int = static_field(16)
        kl_coef: float = 0.0

        def validate(self, env=None, env_params=None):
            self.validate_shared(env, env_params, owner="my_method.Config", extra_numeric={...})

Static fields (shapes, control flow) must be equal across a vmapped batch of configs; the numeric ones are
traced, so ``jax.vmap`` over stacked configs is a sweep in one program.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.algorithm import static_field as _static
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.sequence import SequenceTask
from jaxrl_self.lm.evaluate import PROMPT_LAYOUTS
from jaxrl_self.nets.transformer import TransformerConfig
from jaxrl_self.nets.transformer import init_params as init_model_params

__all__ = ["LMRLConfig", "GroupConfig", "Policy", "check_numeric", "check_model", "check_base_model",
           "task_params_for", "load_policy", "POSITIVE", "NON_NEGATIVE", "UNIT", "COUNT"]

POSITIVE = (lambda x: np.isfinite(x) & (x > 0), "a finite number > 0")
NON_NEGATIVE = (lambda x: np.isfinite(x) & (x >= 0), "a finite number >= 0")
UNIT = (lambda x: (x >= 0) & (x <= 1), "a number in [0, 1]")
COUNT = (lambda x: (x >= 0) & (x == np.round(x)), "an integer >= 0")


@struct.dataclass
class LMRLConfig:
    """The fields every LM-RL method shares (a method's ``Config`` inherits them)."""

    # -- sizes (static)
    num_updates: int = _static(200)
    """updates in the run (each: sample, score, learn)"""
    max_new_tokens: int = _static(16)
    """response budget in tokens (a response without EOS is cut there)"""
    update_epochs: int = _static(1)
    """passes over each batch of responses (> 1: PPO-style reuse with ratio clipping)"""
    num_minibatches: int = _static(1)
    """minibatches per epoch; must divide the batch"""
    # -- model (static)
    base_model: str = _static("")
    """start from this model: a shipped base model ('addition-base'), a model file or a pretrain run folder; '' = fresh init of `model`"""
    model: TransformerConfig = _static(TransformerConfig(num_layers=2, d_model=64, num_heads=4, d_ff=256, max_len=64))
    """architecture of a freshly initialised policy (ignored with base_model or explicit init_params)"""
    prompt_layout: str = _static("auto")
    """how prompts are shown to the model: 'packed', 'padded', or 'auto' (the base model's layout, else 'packed')"""
    ground_truth_metrics: bool = _static(True)
    """log accuracy against the true answers (the only place besides a labelled reward where answers are read); False: those metrics are NaN"""
    # -- task (traced; None = the task's default)
    min_difficulty: Optional[int] = None
    """lowest difficulty sampled (addition: operand digits, chain: steps); None = the task's default"""
    max_difficulty: Optional[int] = None
    """highest difficulty sampled; None = the task's default"""
    # -- numeric hyper-parameters (traced)
    learning_rate: float = 3e-4
    """Adam step size (after the warm-up)"""
    warmup_updates: int = 0
    """linear learning-rate warm-up over this many updates (0 = constant)"""
    clip_eps: float = 0.2
    """PPO ratio clip ε"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    temperature: float = 1.0
    """sampling temperature of the rollouts (the loss always uses the untempered policy)"""
    format_penalty: float = 0.0
    """default reward only: subtracted when no answer can be parsed from the response"""
    max_grad_norm: float = 1.0
    """global gradient-norm clip"""
    adam_eps: float = 1e-8
    """Adam ε"""
    weight_decay: float = 0.0
    """decoupled weight decay (AdamW); 0 = Adam"""

    def task_kwargs_for(self, env: str) -> dict[str, Any] | None:
        """The constructor arguments of the task ``base_model`` was trained on, if that task is ``env`` (the
        runner then builds that task rather than the registry's default); None otherwise, without a base model or
        with one that cannot be read (``validate`` then says why, on ``base_model``)."""
        if not self.base_model or not isinstance(self.base_model, str):
            return None
        from jaxrl_self.lm.base_models import read_metadata

        try:
            task = dict(read_metadata(self.base_model)).get("task") or {}
        except (OSError, ValueError):
            return None
        return dict(task.get("kwargs", {})) if task.get("name") == env else None

    def validate_shared(self, env: Any, env_params: Any, *, owner: str,
                        batch_size: int | Callable[[], int] | None = None,
                        batch_name: str = "the responses per update",
                        sizes: tuple[str, ...] = (), extra_numeric: Mapping[str, tuple[Callable, str]] | None = None,
                        flags: tuple[str, ...] = (), default_task: str = "addition") -> None:
        """Raise :class:`~jaxrl_self.core.ConfigError` naming the first bad shared field (traced values are
        skipped). ``sizes``: the method's own positive-integer fields; ``batch_size``: what ``num_minibatches``
        must divide (``batch_name`` says what it is), or a function computing it from ``sizes`` once they are
        checked; ``flags``: its bool fields; ``extra_numeric``:
        ``{field: (ok(x), allowed)}`` for its
        numbers. With ``env`` the task, difficulty range and model lengths are checked too."""

        def fail(field, value, allowed):
            raise ConfigError(field, value, allowed, owner)

        for name in ("num_updates", "max_new_tokens", "update_epochs", "num_minibatches") + tuple(sizes):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                fail(name, v, "a positive integer")
        if callable(batch_size):  # computed from sizes checked above (a None num_prompts cannot multiply)
            batch_size = batch_size()
        if batch_size is not None and batch_size % self.num_minibatches:
            fail("num_minibatches", self.num_minibatches, f"a divisor of {batch_name} = {batch_size}")
        for name in ("ground_truth_metrics",) + tuple(flags):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                fail(name, getattr(self, name), "True or False")
        if not isinstance(self.base_model, str):
            fail("base_model", self.base_model, "a base model name or '' (fresh initialisation)")
        if not isinstance(self.model, TransformerConfig):
            fail("model", self.model, "a jaxrl_self.nets.transformer.TransformerConfig")
        if self.prompt_layout not in ("auto",) + PROMPT_LAYOUTS:
            fail("prompt_layout", self.prompt_layout, f"one of {('auto',) + PROMPT_LAYOUTS}")
        for name in ("min_difficulty", "max_difficulty"):
            v = getattr(self, name)
            if v is None or isinstance(v, jax.core.Tracer):
                continue
            arr = np.asarray(v)
            if not (np.issubdtype(arr.dtype, np.integer) and np.all(arr >= 1)):
                fail(name, v, "None or an integer >= 1")
        lo, hi = self.min_difficulty, self.max_difficulty
        if (lo is not None and hi is not None and not isinstance(lo, jax.core.Tracer)
                and not isinstance(hi, jax.core.Tracer) and np.any(np.asarray(lo) > np.asarray(hi))):
            fail("min_difficulty", lo, f"<= max_difficulty={hi}")
        check_numeric(self, owner, {
            "learning_rate": POSITIVE, "clip_eps": POSITIVE, "ent_coef": NON_NEGATIVE, "temperature": POSITIVE,
            "max_grad_norm": (lambda x: x > 0, "a number > 0 (inf disables clipping)"), "adam_eps": POSITIVE,
            "weight_decay": NON_NEGATIVE, "format_penalty": (lambda x: np.isfinite(x), "a finite number"),
            "warmup_updates": COUNT, **(extra_numeric or {})})
        if env is not None:
            if not isinstance(env, SequenceTask):
                fail("env", getattr(env, "name", type(env).__name__),
                     f"a SequenceTask (a token task such as 'addition' or 'chain'); pass --task {default_task}")
            if self.base_model:
                check_base_model(self.base_model, env, owner)
            task_params_for(self, env, env_params, owner=owner)  # checks the difficulty range against the task
            if not self.base_model:
                check_model(self.model, env, self.max_new_tokens, owner, "model")


@struct.dataclass
class GroupConfig(LMRLConfig):
    """The shared fields plus those of a group policy-gradient method (GRPO, RLOO and the methods that train
    like them: TTRL, the RLT and SOAR teachers): prompts per update, the group advantage, the loss aggregation
    and the KL to a frozen reference. The group size itself is the method's own field."""

    # -- sizes (static)
    num_prompts: int = _static(16)
    """prompts per update (B)"""
    # -- method (static)
    advantage: str = _static("grpo")
    """group advantage: 'grpo' (r - mean)/(std + eps), 'rloo' (leave-one-out baseline), 'dr_grpo' (r - mean)"""
    std_ddof: int = _static(0)
    """GRPO's std: 0 = population (default), 1 = sample std (TRL)"""
    loss_agg: str = _static("token_mean")
    """'token_mean' (all response tokens weigh the same), 'seq_mean_token_mean' (original GRPO), 'seq_mean_token_sum_norm' (Dr. GRPO)"""
    use_reference: bool = _static(True)
    """keep a frozen copy of the initial policy and add kl_coef * k3 KL to it; False skips its forward pass"""
    # -- numeric hyper-parameters (traced)
    kl_coef: float = 0.0
    """β, weight of the k3 KL to the reference (needs use_reference)"""
    adv_eps: float = 1e-6
    """ε of GRPO's (r - mean)/(std + ε)"""

    def validate_group(self, env: Any, env_params: Any, *, owner: str, group_size: int, group_field: str,
                       batch_size: int | Callable[[], int], sizes: tuple[str, ...] = (), flags: tuple[str, ...] = (),
                       extra_numeric: Mapping[str, tuple[Callable, str]] | None = None) -> None:
        """:meth:`LMRLConfig.validate_shared` plus the group fields; ``group_size`` (named ``group_field``) must
        be >= 2 and ``batch_size`` (the trained responses per update) divisible by ``num_minibatches``."""
        from jaxrl_self.rl import group

        if not isinstance(group_size, (int, np.integer)) or isinstance(group_size, bool) or group_size < 2:
            raise ConfigError(group_field, group_size, "an integer >= 2 (a group needs at least two responses)",
                              owner)
        for field, allowed in (("advantage", group.ESTIMATORS), ("std_ddof", (0, 1)),
                               ("loss_agg", group.AGGREGATIONS)):
            if getattr(self, field) not in allowed:
                raise ConfigError(field, getattr(self, field), f"one of {allowed}", owner)
        self.validate_shared(env, env_params, owner=owner, sizes=("num_prompts",) + tuple(sizes),
                             batch_size=batch_size, flags=("use_reference",) + tuple(flags),
                             extra_numeric={"kl_coef": NON_NEGATIVE, "adv_eps": NON_NEGATIVE, **(extra_numeric or {})})


def check_numeric(config: Any, owner: str, rules: Mapping[str, tuple[Callable, str]]) -> None:
    """``rules``: ``{field: (ok(x) -> bool array, allowed)}``; concrete values of ``config`` only."""
    for name, (ok, allowed) in rules.items():
        v = getattr(config, name)
        if isinstance(v, jax.core.Tracer):
            continue
        if isinstance(v, (str, bytes)):  # np.asarray("8", np.float64) would be 8.0
            raise ConfigError(name, v, allowed, owner)
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(name, v, allowed, owner) from None
        if arr.size == 0 or not np.all(ok(arr)):
            raise ConfigError(name, v, allowed, owner)


def check_model(model: TransformerConfig, task: SequenceTask, max_new_tokens: int, owner: str, field: str,
                context: int | None = None) -> None:
    """The model reads the task's prompts plus ``max_new_tokens`` (or ``context`` tokens) and its vocabulary."""
    need = task.prompt_len + max_new_tokens if context is None else context
    if model.max_len < need:
        raise ConfigError(field, f"max_len={model.max_len}",
                          f"max_len >= prompt_len + max_new_tokens = {task.prompt_len} + {max_new_tokens} = {need}"
                          if context is None else f"max_len >= {need} (the longest context of the run"
                          + (f", with max_new_tokens={max_new_tokens})" if max_new_tokens else ")"), owner)
    if model.vocab_size != task.vocab.size:
        raise ConfigError(field, f"vocab_size={model.vocab_size}", f"the task's vocabulary size {task.vocab.size}",
                          owner)


def check_base_model(base_model: str, task: SequenceTask, owner: str, field: str = "base_model") -> None:
    """``base_model`` (a shipped name, a model file or a pretrain run folder) can be read and was trained on a task
    of ``task``'s kind: a :class:`~jaxrl_self.core.ConfigError` on ``field`` naming the task the model fits and
    the shipped models that fit ``task`` otherwise (e.g. ``chain-base`` given ``--task addition``)."""
    from jaxrl_self.lm.base_models import (BaseModelFormatError, available_base_models, base_model_task,
                                           read_metadata)

    def trained_on(ref: str) -> tuple[str, Any]:
        meta = dict(read_metadata(ref))
        return str(dict(meta.get("task") or {}).get("name")), base_model_task(meta)

    shipped = available_base_models()
    fitting = []
    for name in shipped:
        try:
            if type(trained_on(name)[1]) is type(task):
                fitting.append(name)
        except (OSError, ValueError, TypeError, BaseModelFormatError):  # a broken shipped file: not offered
            continue
    offer = f"shipped models for {type(task).__name__}: {', '.join(fitting)}" if fitting else (
        f"no shipped model is trained on {type(task).__name__} (shipped: {', '.join(shipped) or 'none'})")
    try:
        task_name, model_task = trained_on(base_model)
    except (OSError, ValueError, TypeError, BaseModelFormatError) as e:
        why = "" if isinstance(e, FileNotFoundError) else f"; it cannot be read: {' '.join(str(e).split())}"
        raise ConfigError(field, base_model, "a shipped base model, a model file (STEM.msgpack + STEM.json) or a "
                          f"pretrain run folder ({offer}){why}", owner) from None
    if type(model_task) is not type(task):
        raise ConfigError(field, base_model, f"a model trained on this task, {type(task).__name__} ({offer}); "
                          f"{base_model} was trained on {task_name!r}: pass --task {task_name}", owner)


def task_params_for(config: Any, task: SequenceTask, env_params: Any = None, *, owner: str = "Config") -> Any:
    """The task parameters to sample from: ``env_params`` (default ``task.default_params``) with its difficulty
    range replaced by ``config.min_difficulty``/``max_difficulty`` where given.

    The range is the params' single ``min_X``/``max_X`` pair of fields (``min_digits``/``max_digits`` for
    addition, ``min_steps``/``max_steps`` for the chain), so any task following that naming works. A range the task
    refuses is a :class:`~jaxrl_self.core.ConfigError` on ``min_difficulty`` / ``max_difficulty`` of ``owner``.
    """
    params = task.default_params if env_params is None else env_params
    lo, hi = config.min_difficulty, config.max_difficulty
    if lo is None and hi is None:
        return params
    names = [f.name for f in dataclasses.fields(params)] if dataclasses.is_dataclass(params) else []
    pairs = [n[4:] for n in names if n.startswith("min_") and f"max_{n[4:]}" in names]
    if len(pairs) != 1:
        raise ConfigError("min_difficulty", lo, f"None: {type(params).__name__} has no single min_X/max_X range "
                          f"(fields {names}); pass env_params instead", owner)
    x = pairs[0]
    updates = {}
    if lo is not None:
        updates[f"min_{x}"] = jnp.asarray(lo, jnp.int32)
    if hi is not None:
        updates[f"max_{x}"] = jnp.asarray(hi, jnp.int32)
    params = params.replace(**updates)
    if hasattr(task, "validate_params"):
        try:
            task.validate_params(params)
        except ConfigError as e:  # the task's own field (max_digits) is the config's difficulty bound
            field = "max_difficulty" if e.field == f"max_{x}" or lo is None else "min_difficulty"
            raise ConfigError(field, hi if field == "max_difficulty" else lo,
                              f"None or a difficulty {task!r} allows ({e.field}: {e.allowed})", owner) from None
    return params


@dataclasses.dataclass(frozen=True)
class Policy:
    """The policy a run starts from: ``params`` (None: initialise fresh per seed from ``model_config``), its
    architecture and the prompt layout it was trained with."""

    params: Any
    model_config: TransformerConfig
    prompt_layout: str

    def initial_params(self, key: jax.Array, params: Any = None) -> Any:
        """``params`` if given (an outer program's), else the loaded ones, else a fresh initialisation."""
        if params is not None:
            return params
        return init_model_params(key, self.model_config) if self.params is None else self.params


def load_policy(config: Any, task: SequenceTask | None = None, *, value_head: bool = False,
                init_params: Any = None, model_config: TransformerConfig | None = None,
                owner: str = "Config", context: int | None = None) -> Policy:
    """The initial :class:`Policy`.

    In order: explicit ``init_params`` (with ``model_config``, default ``config.model``); ``config.base_model``,
    a shipped base model's name, a model file or an exported pretrain run folder
    (:func:`jaxrl_self.lm.base_models.load_model_or_file`); otherwise no parameters (the caller initialises fresh
    ones per seed from ``config.model``). With ``value_head=True`` the returned config has a value head and
    loaded parameters get a fresh one (zero output) on their shared trunk. The prompt layout is
    ``config.prompt_layout`` unless ``"auto"``: then the base model's (``metadata["prompt_layout"]``), else
    ``"packed"``. With ``task``, the model must fit its prompts plus ``config.max_new_tokens`` (or ``context``).
    """
    params, cfg = None, config.model if model_config is None else model_config
    layout = "packed"
    if init_params is not None:
        params = init_params
    elif config.base_model:
        from jaxrl_self.lm.base_models import load_model_or_file

        params, cfg, meta = load_model_or_file(config.base_model)
        layout = dict(meta).get("prompt_layout", "packed")
    if config.prompt_layout != "auto":
        layout = config.prompt_layout
    if value_head and not cfg.value_head:
        cfg = cfg.replace(value_head=True)
        if params is not None:
            fresh = init_model_params(jax.random.key(0), cfg)
            params = {**fresh, **{k: v for k, v in params.items() if k != "value_head"}}
    if task is not None:
        check_model(cfg, task, config.max_new_tokens, owner, "base_model" if config.base_model else "model", context)
    return Policy(params=params, model_config=cfg, prompt_layout=layout)
