"""Tiny configs of every registered algorithm, cheap to build with ``make_train`` (tests/test_matrix.py,
tests/test_config_fuzz.py): the default config with its sizes shrunk, a one-layer model for the language-model
methods (or the shipped base model trained on the task, when the method starts from one)."""
from __future__ import annotations

from typing import Any

from jaxrl_self import algos, envs, lm
from jaxrl_self.algos import ppo
from jaxrl_self.curricula import common, paired
from jaxrl_self.lm.config import LMRLConfig
from jaxrl_self.nets.transformer import TransformerConfig
from jaxrl_self.run.runner import default_env_kwargs

__all__ = ["tiny_config", "tiny_cell"]

_STUDENT = dict(num_envs=4, num_steps=8, lstm_features=8, update_epochs=1, num_minibatches=1)
_CURRICULUM = dict(episode_steps=8, eval_every=-1, eval_attempts=1, eval_procedural=0, eval_max_steps=8)


def _tiny_lm(config: LMRLConfig, task) -> LMRLConfig:
    """Two updates of a one-layer model, or of the shipped base model trained on ``task`` when the method's
    default starts from one."""
    sizes = {f: v for f, v in dict(num_updates=2, num_prompts=2, update_epochs=1, num_minibatches=1).items()
             if hasattr(config, f)}
    config = config.replace(**sizes)
    if config.base_model:
        fits = [m for m in lm.available_base_models() if lm.read_metadata(m)["task"]["name"] == _task_name(task)]
        config = config.replace(base_model=fits[0])
        budget = int(lm.read_metadata(fits[0])["model_config"]["max_len"]) - task.prompt_len
    else:
        budget = config.max_new_tokens
        model = TransformerConfig(num_layers=1, d_model=16, num_heads=2, d_ff=32, max_len=task.prompt_len + budget,
                                  positional=config.model.positional, value_head=config.model.value_head)
        config = config.replace(model=model)
    return config.replace(max_new_tokens=min(config.max_new_tokens, budget))


def _task_name(task) -> str:
    return {"AdditionTask": "addition", "ChainTask": "chain"}.get(type(task).__name__, "")


def tiny_config(name: str, env):
    """The algorithm's default config, shrunk (sizes only) so that ``make_train`` is cheap."""
    module = algos.get(name)
    config = module.Config()
    if isinstance(config, ppo.Config):
        return config.replace(total_timesteps=4 * 8 * 2, num_envs=4, num_steps=8, update_epochs=1, num_minibatches=1)
    if isinstance(config, LMRLConfig):
        config = _tiny_lm(config, env)
        if name == "ttrl":
            config = config.replace(n_votes=2, n_train=2, num_problems=4, difficulty=1)
        if name == "tppo":
            config = config.replace(num_slots=2, window=2)
        if name == "rlt":
            config = config.replace(group_size=2, reader_steps=1, warmup_steps=1, sft_batch=2, max_explanation=4,
                                    max_new_tokens=6)
        if name == "soar":
            config = config.replace(num_datasets=2, num_students=1, hard_candidates=4, hard_samples=2,
                                    reward_problems=2, warmup_steps=1, sft_batch=2, hard_difficulty=1,
                                    student=config.student.replace(num_updates=1, num_prompts=2, group_size=2))
        return config
    if isinstance(getattr(config, "ppo", None), ppo.Config):  # a curriculum (or a teacher of one)
        steps = 4 * 8 * 2 * getattr(config, "num_batches", 1) * getattr(config, "num_students", 1) * max(
            1, getattr(config, "inner_updates", 1)) * (3 if name.startswith("parallel") else 1)
        changes = {f: v for f, v in _CURRICULUM.items() if hasattr(config, f)}
        config = config.replace(ppo=common.student_ppo(total_timesteps=steps, **_STUDENT), **changes)
        if hasattr(config, "sampler"):
            config = config.replace(sampler=config.sampler.replace(capacity=16, minimum_fill_ratio=0.25))
        if isinstance(getattr(config, "adversary", None), paired.AdversaryConfig):
            config = config.replace(adversary=paired.AdversaryConfig(
                n_walls=4, noise_dim=3, conv_features=2, ppo=paired.adversary_ppo(lstm_features=8, update_epochs=1)))
        if name == "soar_maze":
            config = config.replace(num_batches=2, num_students=1, inner_updates=1, hard_candidates=8,
                                    hard_attempts=1, hard_size=2, reward_levels=2, reward_attempts=1)
        return config
    return config  # a new family: its defaults (give it a tiny config above if they are costly)


def tiny_cell(name: str, env_name: str) -> tuple[Any, Any]:
    """``(tiny config, environment)`` of algorithm ``name`` on the registered ``env_name``, the environment built as
    the runner builds it (a task with the constructor arguments the config's base model was trained with)."""
    module = algos.get(name)
    env = envs.make(env_name, **(default_env_kwargs(module.Config(), env_name) or {}))
    config = tiny_config(name, env)
    kwargs = default_env_kwargs(config, env_name)  # the task as the tiny config's base model knows it
    if kwargs:
        env = envs.make(env_name, **kwargs)
        config = tiny_config(name, env)
    return config, env
