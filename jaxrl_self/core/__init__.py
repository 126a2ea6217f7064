"""Contracts shared by every layer: spaces, environments, level environments and sequence tasks."""
from jaxrl_self.core.environment import (
    Environment,
    EnvParams,
    EnvState,
    LevelEnv,
    StepResult,
    Wrapper,
    tree_select,
)
from jaxrl_self.core.algorithm import SEED_AXIS, Train, scan_updates, static_field, uniform_over_seeds
from jaxrl_self.core.errors import CheckpointMismatchError, ConfigError, NonFiniteLossError, check_field
from jaxrl_self.core.sequence import VOCAB, Problem, SequenceTask, TaskParams, Vocabulary
from jaxrl_self.core.spaces import Box, Dict, Discrete, Space, describe_mismatch, flat_dim

__all__ = [
    "Train",
    "scan_updates",
    "SEED_AXIS",
    "uniform_over_seeds",
    "static_field",
    "ConfigError",
    "NonFiniteLossError",
    "CheckpointMismatchError",
    "check_field",
    "Environment",
    "EnvParams",
    "EnvState",
    "LevelEnv",
    "StepResult",
    "Wrapper",
    "tree_select",
    "VOCAB",
    "Problem",
    "SequenceTask",
    "TaskParams",
    "Vocabulary",
    "Box",
    "Dict",
    "Discrete",
    "Space",
    "describe_mismatch",
    "flat_dim",
]
