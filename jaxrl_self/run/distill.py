"""Distil a fresh student from an RLT teacher's run folder: ``jaxrl-self distill RUN_DIR``.

The newest checkpoint of the run holds the teacher (``RunState.params``, seed ``seed_index``); it explains
``num_problems`` fresh problems of its training difficulty (greedy); a fresh copy of the run's base model is
trained by supervised learning on (question, explanation, solution) with the loss on what a student must write
(:func:`jaxrl_self.teach.rlt.distillation_data`); the student is evaluated (greedy accuracy on held-out problems
of the training difficulty and one harder) and saved in the base-model format, so ``--base-model PATH`` starts
any LM method from it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.run.runner import restore_run

__all__ = ["distill_run"]


def distill_run(run_dir: str | Path, *, num_problems: int = 1024, steps: int = 300, batch_size: int = 64,
                learning_rate: float = 5e-4, seed_index: int = 0, seed: int = 0, out: str | Path | None = None,
                eval_problems: int = 256) -> dict[str, Any]:
    """Distil a student from the teacher in ``run_dir`` (see the module docstring); returns a summary (also
    stored in the saved model's metadata)."""
    from jaxrl_self import lm
    from jaxrl_self.teach import rlt

    for name, value in (("num_problems", num_problems), ("steps", steps), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(name, value, "a positive integer", "distill")
    run = restore_run(run_dir, algo="rlt", owner="distill")
    desc, config, task, states, step = run.description, run.config, run.env, run.states, run.step
    if not 0 <= seed_index < int(desc["num_seeds"]):
        raise ConfigError("seed_index", seed_index, f"an int in [0, {int(desc['num_seeds']) - 1}]", "distill")
    teacher = jax.tree.map(lambda x: x[seed_index], states.params)
    policy = lm.load_policy(config, task, context=config.context_len(task))
    key = jax.random.key(seed)
    k_prob, k_expl, k_sft = jax.random.split(key, 3)
    problems = lm.sample_problems(k_prob, task, lm.task_params_for(config, task), num_problems)
    expl, length, ok = jax.jit(lambda p: rlt.explain(config, task, p, problems, k_expl))(teacher)
    data = rlt.distillation_data(problems, expl, length)
    sft = lm.SupervisedConfig(num_steps=steps, batch_size=batch_size, model=policy.model_config,
                              learning_rate=learning_rate, warmup_steps=min(50, steps))
    student = lm.make_supervised(sft, data, init_params=policy.params)
    state, metrics = jax.jit(student)(k_sft)
    d = int(np.asarray(config.max_difficulty if config.max_difficulty is not None else lm.max_difficulty(task)))
    evaluate = lm.make_evaluate(policy.model_config, task, lm.EvalConfig(
        num_samples=0, ks=(), max_new_tokens=config.max_explanation + task.answer_len + 5), prompt_layout="packed")
    accuracy = {}
    for k in sorted({d, min(d + 1, lm.max_difficulty(task))}):
        res = jax.jit(lambda p: evaluate(p, jax.random.key(1), lm.held_out_problems(task, (k,), eval_problems)))(
            state.params)
        accuracy[str(k)] = float(res.overall.greedy_accuracy)
    summary = {"teacher_run": str(run_dir), "checkpoint_step": step, "seed_index": seed_index,
               "num_problems": num_problems, "well_formed": float(np.mean(np.asarray(ok))), "steps": steps,
               "final_loss": float(np.asarray(metrics.loss)[-1]), "greedy_accuracy": accuracy,
               "sample": [f"{task.to_text(problems.prompt[i])} {task.to_text(expl[i][:int(length[i])])}"
                          for i in range(3)]}
    if out is not None:
        meta = {"name": Path(out).stem, "task": {"name": desc["env"], "kwargs": desc.get("env_kwargs", {}),
                                                  "repr": repr(task)},
                "prompt_layout": "packed", "distilled": summary}
        lm.save_model(out, state.params, policy.model_config, meta)
        summary["out"] = str(Path(out).with_suffix(".msgpack"))
    return summary
