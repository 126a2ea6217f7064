"""Running trainings: chunked execution over seeds, checkpoints, metrics, sweeps and plots.

    from jaxrl_self.run import RunOptions, run_training
    result = run_training("ppo", "cartpole", options=RunOptions(seeds=4))

See :mod:`jaxrl_self.run.runner` for the execution model and the run-folder layout,
:mod:`jaxrl_self.run.sweep` for vmapped hyper-parameter sweeps.
"""
from jaxrl_self.run.checkpoint import Checkpointer, CheckpointSaveError, config_from_dict, config_to_dict, diff_configs
from jaxrl_self.run.metrics import MetricsWriter, flatten_metrics, read_jsonl
from jaxrl_self.run.runner import (
    CompiledPrograms,
    RunOptions,
    RunResult,
    Runner,
    UnknownAlgorithmError,
    load_algorithm,
    make_chunk_fn,
    plan_chunks,
    run_description,
    run_training,
    seed_keys,
)
from jaxrl_self.run.stats import MeanCI, final_value, mean_ci

__all__ = [
    "CompiledPrograms",
    "Checkpointer",
    "CheckpointSaveError",
    "config_from_dict",
    "config_to_dict",
    "diff_configs",
    "MetricsWriter",
    "flatten_metrics",
    "read_jsonl",
    "RunOptions",
    "RunResult",
    "Runner",
    "UnknownAlgorithmError",
    "load_algorithm",
    "make_chunk_fn",
    "plan_chunks",
    "run_description",
    "run_training",
    "seed_keys",
    "MeanCI",
    "final_value",
    "mean_ci",
]
