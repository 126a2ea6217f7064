"""The language-model RL layer: KV-cache generation over a pool of slots, whole-sequence scoring, problem sources,
rewards that never see answers, the shared LM-RL learner, ground-truth diagnostics, supervised training on
datasets, pretraining, evaluation (pass@k, maj@k, per difficulty), majority votes and the shipped base models.

GRPO, token PPO, T-PPO (:mod:`jaxrl_self.algos`) and the self-improvement methods (:mod:`jaxrl_self.teach`)
are short files on top of it; ``docs/lm-rl-layer.md`` is the guide to writing one. Modules:
:mod:`~jaxrl_self.lm.generate` (design note: padding, cache layout, slot reset, log-prob meaning),
:mod:`~jaxrl_self.lm.scoring`, :mod:`~jaxrl_self.lm.problems`, :mod:`~jaxrl_self.lm.rewards`,
:mod:`~jaxrl_self.lm.config`, :mod:`~jaxrl_self.lm.learner`, :mod:`~jaxrl_self.lm.diagnostics`,
:mod:`~jaxrl_self.lm.supervised`, :mod:`~jaxrl_self.lm.pretrain`, :mod:`~jaxrl_self.lm.evaluate`,
:mod:`~jaxrl_self.lm.majority`, :mod:`~jaxrl_self.lm.base_models`.
"""
from jaxrl_self.lm.generate import (
    DecodeOutput,
    DecodeState,
    clean_prompts,
    decode,
    generate,
    init_decode_state,
    prefill,
    refresh_cache,
    reset_slots,
)
from jaxrl_self.lm.sampling import SamplingConfig, entropy_from_logits, sample_token, token_logprobs
from jaxrl_self.lm.scoring import ScoreOutput, concat_segments, join_prompt_response, score, score_response
from jaxrl_self.lm.majority import MajorityVote, majority_vote
from jaxrl_self.lm.evaluate import (EvalConfig, EvalResult, EvalStats, Graded, difficulty_params, grade,
                                    held_out_problems, make_evaluate, max_difficulty, pass_at_k, prompt_lengths,
                                    summarize)
from jaxrl_self.lm.problems import (Draw, ProblemSet, PromptSide, SetSource, SetState, TaskSource, cycle_indices,
                                    problem_source, sample_problems)
from jaxrl_self.lm.rewards import (GroupRewardFn, RewardFn, compute_rewards, group_reward, is_group_reward,
                                   is_labelled, labelled_reward, mean_metrics, score_each, verifier_reward)
from jaxrl_self.lm.config import GroupConfig, LMRLConfig, Policy, load_policy, task_params_for
from jaxrl_self.lm.learner import (Batch, Rollout, RunState, init_run_state, group_policy_loss, guard_nonfinite,
                                   learn, learning_rate_at,
                                   make_batch, make_optimizer, policy_token_loss, reference_logp, rollout, row_mask,
                                   select_groups, subset_index, take_groups)
from jaxrl_self.lm.diagnostics import format_valid, make_eval, rollout_stats, verify
from jaxrl_self.lm.supervised import SequenceDataset, SupervisedConfig, masked_sequence_loss
from jaxrl_self.lm.supervised import make_train as make_supervised
from jaxrl_self.lm.pretrain import PretrainConfig, make_sequences, sequence_loss, token_nll
from jaxrl_self.lm.pretrain import make_train as make_pretrain
from jaxrl_self.lm.base_models import (available_base_models, base_model_task, load_base_model, load_model,
                                       load_model_or_file, read_metadata, save_model)

__all__ = [
    "DecodeOutput", "DecodeState", "clean_prompts", "decode", "generate", "init_decode_state", "prefill", "refresh_cache",
    "reset_slots",
    "SamplingConfig", "entropy_from_logits", "sample_token", "token_logprobs",
    "ScoreOutput", "concat_segments", "join_prompt_response", "score", "score_response",
    "MajorityVote", "majority_vote",
    "EvalConfig", "EvalResult", "EvalStats", "Graded", "difficulty_params", "grade", "held_out_problems",
    "make_evaluate", "max_difficulty", "pass_at_k", "prompt_lengths", "summarize",
    # the LM-RL layer
    "Draw", "ProblemSet", "PromptSide", "SetSource", "SetState", "TaskSource", "cycle_indices", "problem_source",
    "sample_problems",
    "GroupRewardFn", "RewardFn", "compute_rewards", "group_reward", "is_group_reward", "is_labelled",
    "labelled_reward", "mean_metrics", "score_each", "verifier_reward",
    "GroupConfig", "LMRLConfig", "Policy", "load_policy", "task_params_for",
    "Batch", "Rollout", "RunState", "init_run_state", "group_policy_loss", "guard_nonfinite", "learn",
    "learning_rate_at", "make_batch",
    "make_optimizer", "policy_token_loss", "reference_logp", "rollout", "row_mask", "select_groups", "subset_index",
    "take_groups",
    "format_valid", "make_eval", "rollout_stats", "verify",
    # supervised training and base models
    "SequenceDataset", "SupervisedConfig", "masked_sequence_loss", "make_supervised",
    "PretrainConfig", "make_pretrain", "make_sequences", "sequence_loss", "token_nll",
    "available_base_models", "base_model_task", "load_base_model", "load_model", "load_model_or_file",
    "read_metadata", "save_model",
]
