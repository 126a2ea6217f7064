"""Language-model RL core: resumable KV-cache generation over a pool of slots, and whole-sequence scoring;
supervised pretraining, evaluation (pass@k, maj@k, per difficulty), majority votes and the shipped base models.

See :mod:`jaxrl_self.lm.generate` for the design note (padding, cache layout, slot reset, log-prob meaning),
:mod:`jaxrl_self.lm.pretrain`, :mod:`jaxrl_self.lm.evaluate` (prompt layouts, held-out sets) and
:mod:`jaxrl_self.lm.base_models`.
"""
from jaxrl_self.lm.generate import (
    DecodeOutput,
    DecodeState,
    decode,
    generate,
    init_decode_state,
    prefill,
    refresh_cache,
    reset_slots,
)
from jaxrl_self.lm.sampling import SamplingConfig, entropy_from_logits, sample_token, token_logprobs
from jaxrl_self.lm.scoring import ScoreOutput, join_prompt_response, score, score_response
from jaxrl_self.lm.majority import MajorityVote, majority_vote
from jaxrl_self.lm.evaluate import (EvalConfig, EvalResult, EvalStats, Graded, difficulty_params, grade,
                                    held_out_problems, make_evaluate, max_difficulty, pass_at_k, prompt_lengths,
                                    summarize)
from jaxrl_self.lm.pretrain import PretrainConfig, make_sequences, sequence_loss, token_nll
from jaxrl_self.lm.pretrain import make_train as make_pretrain
from jaxrl_self.lm.base_models import (available_base_models, base_model_task, load_base_model, load_model,
                                       load_model_or_run, save_model)

__all__ = [
    "DecodeOutput",
    "DecodeState",
    "decode",
    "generate",
    "init_decode_state",
    "prefill",
    "refresh_cache",
    "reset_slots",
    "SamplingConfig",
    "entropy_from_logits",
    "sample_token",
    "token_logprobs",
    "ScoreOutput",
    "join_prompt_response",
    "score",
    "score_response",
    "MajorityVote",
    "majority_vote",
    "EvalConfig",
    "EvalResult",
    "EvalStats",
    "Graded",
    "difficulty_params",
    "grade",
    "held_out_problems",
    "make_evaluate",
    "max_difficulty",
    "pass_at_k",
    "prompt_lengths",
    "summarize",
    "PretrainConfig",
    "make_pretrain",
    "make_sequences",
    "sequence_loss",
    "token_nll",
    "available_base_models",
    "base_model_task",
    "load_base_model",
    "load_model",
    "load_model_or_run",
    "save_model",
]
