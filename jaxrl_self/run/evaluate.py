"""Evaluate a run folder's checkpoint: every seed, optionally on a set of named levels, in one program.

    from jaxrl_self.run.evaluate import evaluate_run
    report = evaluate_run("runs/ppo-maze-...", num_episodes=32)          # maze: the held-out named mazes
    print(report.table())

What happens:

1. ``config.json`` of the run names the algorithm, environment and config; the config is rebuilt and
   ``jax.eval_shape(jax.vmap(train.init))`` gives the structure the newest (or a chosen) checkpoint is
   restored into.
2. The algorithm's ``make_eval(config, env)`` gives ``evaluate(params, key, env_params, num_episodes, ...)``,
   which is vmapped over seeds (each seed's parameters with its own key; ``obs_stats`` passed when the run
   state has an observation normaliser and ``evaluate`` accepts it).
3. For a level environment whose package ships named levels (``jaxrl_self.envs.maze.named_levels()``, the
   held-out mazes), the environment is wrapped so that *the level is part of the env params*
   (:class:`LevelInParams`): every episode starts on that level, and one compiled program vmaps over levels
   × seeds. A level counts as solved by an episode when its return is > 0 (the maze pays only at the goal).

The report holds, per level (or the single "env" row) and per seed, the mean return over ``num_episodes``
episodes and the solve rate, with the mean and 95% t-CI over seeds, and is written to
``RUN_DIR/eval-<env>.json``.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_self.core.environment import Environment, LevelEnv
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.run.metrics import write_json
from jaxrl_self.run.runner import restore_run, seed_keys
from jaxrl_self.run.stats import mean_ci

__all__ = ["LevelInParams", "LevelParams", "named_levels_for", "evaluate_run", "EvalReport"]


# ---------------------------------------------------------------------------------------------- levels
@struct.dataclass
class LevelParams:
    """Env params of :class:`LevelInParams`: the inner env's params plus the level every episode starts on."""

    env_params: Any
    level: Any

    @property
    def max_steps_in_episode(self):
        return self.env_params.max_steps_in_episode


class LevelInParams(Environment):
    """A level environment whose episodes always start on ``params.level`` (so levels can be vmapped)."""

    def __init__(self, env: LevelEnv, default_level: Any):
        self._env = env
        self._default_level = default_level

    def __getattr__(self, name: str):
        if name in ("_env", "_default_level"):
            raise AttributeError(name)
        return getattr(self._env, name)

    @property
    def default_params(self) -> LevelParams:
        return LevelParams(self._env.default_params, self._default_level)

    def _inner(self, params):
        return params.env_params if isinstance(params, LevelParams) else params

    def observation_space(self, params=None):
        return self._env.observation_space(None if params is None else self._inner(params))

    def action_space(self, params=None):
        return self._env.action_space(None if params is None else self._inner(params))

    def reset_env(self, key, params: LevelParams):
        return self._env.reset_env_to_level(key, params.level, params.env_params)

    def step_env(self, key, state, action, params: LevelParams):
        return self._env.step_env(key, state, action, params.env_params)

    @property
    def name(self) -> str:
        return self._env.name

    @property
    def unwrapped(self):
        return self._env.unwrapped


def named_levels_for(env: Any) -> dict[str, Any] | None:
    """Named (held-out) levels of ``env`` (its :meth:`~jaxrl_self.core.LevelEnv.heldout_levels`, e.g. Kinetix's)
    or shipped with its package (a module-level ``named_levels()``, e.g. the maze's), or None."""
    if not isinstance(env, LevelEnv):
        return None
    own = env.unwrapped.heldout_levels()
    if own is not None:
        return dict(own)
    module = type(env.unwrapped).__module__
    for name in (module, module.rpartition(".")[0]):
        if not name:
            continue
        mod = sys.modules.get(name) or importlib.import_module(name)
        fn = getattr(mod, "named_levels", None)
        if callable(fn):
            return dict(fn())
    return None


# ---------------------------------------------------------------------------------------------- report
@dataclasses.dataclass
class EvalReport:
    """``returns[level][seed]``: mean return over the episodes; ``solved`` likewise (fraction with return > 0)."""

    run_dir: Path
    env: str
    step: int
    num_episodes: int
    levels: list[str]
    returns: np.ndarray  # (levels, seeds)
    solved: np.ndarray  # (levels, seeds)
    named_levels: bool = False  # levels are named levels (solve rate reported) rather than the plain env

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, name in enumerate(self.levels):
            r, s = mean_ci(self.returns[i]), mean_ci(self.solved[i])
            row = {"level": name, **r.as_dict("return_"), "per_seed_return": self.returns[i].tolist()}
            if self.named_levels:
                row.update(**s.as_dict("solve_rate_"), per_seed_solve_rate=self.solved[i].tolist())
            out.append(row)
        return out

    def table(self) -> str:
        solve = self.named_levels
        head = f"{'level':<20} {'return (mean ± 95% CI)':>26}" + (f" {'solve rate':>18}" if solve else "")
        lines = [head, "-" * len(head)]
        rows = [(name, self.returns[i], self.solved[i]) for i, name in enumerate(self.levels)]
        if len(self.levels) > 1:
            rows.append(("(mean over levels)", self.returns.mean(0), self.solved.mean(0)))
        for name, ret, sol in rows:
            line = f"{name:<20} {str(mean_ci(ret)):>26}"
            lines.append(line + (f" {str(mean_ci(sol)):>18}" if solve else ""))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "env": self.env, "checkpoint_step": self.step,
                "num_episodes": self.num_episodes, "num_seeds": int(self.returns.shape[1]),
                "solved_means": "return > 0" if self.named_levels else None, "levels": self.rows()}


def _episode_returns(result: Any) -> jax.Array:
    for name in ("episode_return", "episode_returns", "returns", "return_"):
        value = getattr(result, name, None) if not isinstance(result, Mapping) else result.get(name)
        if value is not None:
            return value
    raise TypeError(f"cannot find per-episode returns in {type(result).__name__}: expected an 'episode_return' field")


def evaluate_run(run_dir: str | Path, *, env: str | None = None, num_episodes: int = 16, step: int | None = None,
                 levels: Sequence[str] | None = None, max_steps: int | None = None, seed: int = 1234,
                 write: bool = True) -> EvalReport:
    """Evaluate the checkpoint of ``run_dir`` (see the module docstring).

    Args:
        env: evaluate on another registered environment (default: the training one).
        levels: names of levels to evaluate on (default: all named levels the environment ships, if any).
        max_steps: episode time limit (sets ``env_params.max_steps_in_episode``).
        seed: evaluation key seed (seed index ``i`` uses ``key(seed + i)``).
    """
    from jaxrl_self import envs

    run_dir = Path(run_dir)
    run = restore_run(run_dir, step=step, owner="eval")
    desc, module, config, train_env, ckpt_step, states = (run.description, run.module, run.config, run.env,
                                                          run.step, run.states)
    if not hasattr(module, "make_eval"):
        raise AttributeError(f"algorithm {desc['algo']!r} has no make_eval")

    env_name = env or desc["env"]
    eval_env = train_env if env is None else envs.make(env)
    base_params = eval_env.default_params
    if max_steps is not None:
        base_params = base_params.replace(max_steps_in_episode=int(max_steps))
    named = named_levels_for(eval_env)
    if levels:
        if named is None:
            raise ConfigError("levels", list(levels), f"nothing: environment {env_name!r} has no named levels",
                              owner="eval")
        unknown = [n for n in levels if n not in named]
        if unknown:
            raise ConfigError("levels", unknown, f"names of {env_name!r}'s levels: {', '.join(named)}", owner="eval")
        named = {n: named[n] for n in levels}
    if named:
        names = list(named)
        level_batch = jax.tree.map(lambda *xs: jnp.stack(xs), *named.values())
        first = jax.tree.map(lambda x: x[0], level_batch)
        eval_env = LevelInParams(eval_env, first)
        params_batch = LevelParams(jax.tree.map(lambda x: jnp.broadcast_to(x, (len(names),) + jnp.shape(x)),
                                                base_params), level_batch)
    else:
        names = [env_name]
        params_batch = jax.tree.map(lambda x: jnp.asarray(x)[None], base_params)

    make_kwargs = {}
    if "env_params" in inspect.signature(module.make_eval).parameters:
        make_kwargs["env_params"] = jax.tree.map(lambda x: x[0], params_batch) if named else base_params
    evaluate = module.make_eval(config, eval_env, **make_kwargs)
    accepted = inspect.signature(evaluate).parameters
    obs_stats = getattr(states, "obs_stats", None)
    pass_obs_stats = "obs_stats" in accepted and obs_stats is not None

    def one(params, key, env_params, stats):
        kwargs = {"num_episodes": num_episodes}
        if "env_params" in accepted:
            kwargs["env_params"] = env_params
        if pass_obs_stats:
            kwargs["obs_stats"] = stats
        return _episode_returns(evaluate(params, key, **kwargs))

    eval_keys = seed_keys(seed, int(desc["num_seeds"]))
    stats = obs_stats if pass_obs_stats else jnp.zeros(int(desc["num_seeds"]))
    over_seeds = jax.vmap(one, in_axes=(0, 0, None, 0))
    over_levels = jax.vmap(over_seeds, in_axes=(None, None, 0, None))
    # the parameters to evaluate: the module's eval_params(state) where it has one (SOAR: the promoted student, not
    # the teacher the state's params are), else state.params
    policy = module.eval_params(states) if hasattr(module, "eval_params") else states.params
    returns = np.asarray(jax.jit(over_levels)(policy, eval_keys, params_batch, stats))  # (L, S, E)
    report = EvalReport(run_dir, env_name, int(ckpt_step), num_episodes, names,
                        returns.mean(-1), (returns > 0).mean(-1), named_levels=bool(named))
    if write:
        write_json(run_dir / f"eval-{env_name}.json", report.to_json())
    return report
