"""``check_env``: the contract checker every built-in and every user environment runs.

It accepts an :class:`~jaxrl_self.core.Environment` (with extra checks for a
:class:`~jaxrl_self.core.LevelEnv`) or a :class:`~jaxrl_self.core.SequenceTask`, and raises
:class:`EnvCheckError` naming the method and what was wrong at the first failure::

    from jaxrl_self.envs import check_env
    check_env(MyEnv())            # returns a small report dict when everything holds
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_self.core.environment import Environment, LevelEnv
from jaxrl_self.core.sequence import Problem, SequenceTask
from jaxrl_self.core.spaces import Space, describe_mismatch

__all__ = ["check_env", "EnvCheckError"]


class EnvCheckError(AssertionError):
    """A contract violation found by :func:`check_env`. ``method`` names the offending method."""

    def __init__(self, env: Any, method: str, problem: str):
        self.method = method
        self.problem = problem
        name = getattr(env, "name", type(env).__name__)
        super().__init__(f"check_env({name}): {method}: {problem}")


# The checker only needs the programs' semantics, not their speed: compiling with XLA's backend
# optimisations off roughly halves the compile time of each check.
_CHECK_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _jit(fn, **kwargs):
    return jax.jit(fn, compiler_options=_CHECK_COMPILER_OPTIONS, **kwargs)


def _fail(env, method, problem):
    raise EnvCheckError(env, method, problem)


def _call(env, method, fn, *args):
    """Run ``fn(*args)``; turn any exception into an EnvCheckError naming ``method``."""
    try:
        return fn(*args)
    except EnvCheckError:
        raise
    except Exception as e:  # noqa: BLE001 - we re-raise with context
        raise EnvCheckError(env, method, f"raised {type(e).__name__}: {e}") from e


def _trees_equal(a, b, exact=True) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    if ta != tb:
        return False
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return False
        if exact or not np.issubdtype(x.dtype, np.floating):
            if not np.array_equal(x, y):
                return False
        elif not np.allclose(x, y, rtol=1e-5, atol=1e-5, equal_nan=True):
            return False
    return True


def _check_space(env, method, space: Space, value, batch=(), what="observation"):
    msg = describe_mismatch(space, value, batch, what)
    if msg:
        _fail(env, method, msg)


def _check_scalar(env, method, name, x, dtype_kind, batch=()):
    x = np.asarray(x)
    if x.shape != tuple(batch):
        _fail(env, method, f"{name} has shape {x.shape}, expected {tuple(batch)} (a scalar per environment)")
    if dtype_kind == "bool" and x.dtype != np.bool_:
        _fail(env, method, f"{name} has dtype {x.dtype}, expected bool")
    if dtype_kind == "float" and x.dtype != np.float32:
        _fail(env, method, f"{name} has dtype {x.dtype}, expected float32")


def _find_time(state) -> Any:
    """The ``time`` field of a state or of a wrapped state (``.env_state`` chain), or None."""
    seen = 0
    while state is not None and seen < 16:
        if hasattr(state, "time"):
            return state.time
        state = getattr(state, "env_state", None)
        seen += 1
    return None


def _short_params(params):
    """Params with a short time limit (if the env has one) so that episodes end inside the check horizon."""
    if hasattr(params, "max_steps_in_episode") and hasattr(params, "replace"):
        try:
            return params.replace(max_steps_in_episode=jnp.asarray(12, jnp.asarray(params.max_steps_in_episode).dtype))
        except Exception:  # noqa: BLE001 - params not replaceable: keep the defaults
            return params
    return params


def _rollout_fn(env: Environment, params, num_steps: int):
    action_space = env.action_space(params)

    def rollout(key):
        k_reset, k_run = jax.random.split(key)
        obs0, state0 = env.reset(k_reset, params)

        def body(carry, k):
            obs, state = carry
            k_act, k_step = jax.random.split(k)
            action = action_space.sample(k_act)
            obs2, state2, reward, term, trunc, info = env.step(k_step, state, action, params)
            out = dict(
                obs=obs,
                action=action,
                next_obs=obs2,
                final_obs=info["final_obs"] if isinstance(info, dict) and "final_obs" in info else None,
                reward=reward,
                terminated=term,
                truncated=trunc,
                time_before=_find_time(state),
                time_after=_find_time(state2),
            )
            return (obs2, state2), out

        (_, last_state), traj = jax.lax.scan(body, (obs0, state0), jax.random.split(k_run, num_steps))
        return obs0, state0, traj, last_state

    return rollout


def _check_environment(env: Environment, num_steps: int) -> dict:
    report: dict[str, Any] = {"kind": "Environment"}
    params = _call(env, "default_params", lambda: env.default_params)
    obs_space = _call(env, "observation_space", env.observation_space, params)
    act_space = _call(env, "action_space", env.action_space, params)
    for name, sp in (("observation_space", obs_space), ("action_space", act_space)):
        if not isinstance(sp, Space):
            _fail(env, name, f"returned {type(sp).__name__}, expected a jaxrl_self.core.spaces.Space")

    # -- single step, eager, to get precise messages for the basic contract
    key = jax.random.key(0)
    obs, state = _call(env, "reset", env.reset, key, params)
    _check_space(env, "reset", obs_space, obs)
    action = act_space.sample(jax.random.key(1))
    _check_space(env, "action_space.sample", act_space, action, what="sampled action")
    out = _call(env, "step", env.step, jax.random.key(2), state, action, params)
    if not isinstance(out, tuple) or len(out) != 6:
        _fail(env, "step", f"must return (obs, state, reward, terminated, truncated, info), got {type(out).__name__}"
              f" of length {len(out) if isinstance(out, tuple) else '?'}")
    obs2, state2, reward, term, trunc, info = out
    _check_space(env, "step", obs_space, obs2)
    _check_scalar(env, "step", "reward", reward, "float")
    _check_scalar(env, "step", "terminated", term, "bool")
    _check_scalar(env, "step", "truncated", trunc, "bool")
    if not isinstance(info, dict) or "final_obs" not in info:
        _fail(env, "step", "info must be a dict containing 'final_obs' (the observation before any auto-reset)")
    _check_space(env, "step", obs_space, info["final_obs"], what="info['final_obs']")
    if jax.tree.structure(state2) != jax.tree.structure(state):
        _fail(env, "step", "returned a state whose pytree structure differs from reset's state")

    # -- jit: a scanned rollout with random actions, episodes shortened if the env has a time limit
    short = _short_params(params)
    rollout = _rollout_fn(env, short, num_steps)
    jitted = _jit(rollout)
    obs0, _, traj, _ = _call(env, "step (under jit + lax.scan)", jitted, jax.random.key(3))
    _, _, traj_again, _ = jitted(jax.random.key(3))
    if not _trees_equal(traj, traj_again):
        _fail(env, "step", "the same key gave two different trajectories (the env must be a pure function of its key)")

    # -- vmap over 8 copies; lane 0 must match the unbatched run with the same key
    keys = jax.random.split(jax.random.key(4), 8)
    vobs0, _, vtraj, _ = _call(env, "step (under jit + vmap over 8 envs)", _jit(jax.vmap(rollout)), keys)
    _check_space(env, "reset (vmapped)", obs_space, vobs0, batch=(8,))
    _check_space(env, "step (vmapped)", obs_space, vtraj["next_obs"], batch=(8, num_steps))
    _check_space(env, "step (vmapped)", act_space, vtraj["action"], batch=(8, num_steps), what="action")
    _check_scalar(env, "step (vmapped)", "reward", vtraj["reward"], "float", (8, num_steps))
    _check_scalar(env, "step (vmapped)", "terminated", vtraj["terminated"], "bool", (8, num_steps))
    _, _, lane0, _ = jitted(keys[0])
    if not _trees_equal(jax.tree.map(lambda x: x[0], vtraj), lane0, exact=False):
        _fail(env, "step", "vmapped rollout differs from the unbatched rollout with the same key")

    # -- auto-reset exactly when terminated | truncated
    done = np.asarray(vtraj["terminated"]) | np.asarray(vtraj["truncated"])
    if vtraj["final_obs"] is None:
        _fail(env, "step", "info['final_obs'] missing under jit")
    same_as_final = np.ones(done.shape, bool)
    for a, b in zip(jax.tree.leaves(vtraj["next_obs"]), jax.tree.leaves(vtraj["final_obs"])):
        a, b = np.asarray(a), np.asarray(b)
        same_as_final &= np.all((a == b).reshape(a.shape[:2] + (-1,)), axis=-1)
    cont = ~done
    if np.any(cont & ~same_as_final):
        t = np.argwhere(cont & ~same_as_final)[0]
        _fail(env, "step", f"obs differs from info['final_obs'] on a step that did not end an episode (env {t[0]}, step {t[1]})")
    t_before, t_after = vtraj["time_before"], vtraj["time_after"]
    if t_before is not None and t_after is not None:
        tb, ta = np.asarray(t_before), np.asarray(t_after)
        if np.any(done & (ta != 0)):
            t = np.argwhere(done & (ta != 0))[0]
            _fail(env, "step", f"episode ended but the state was not reset (time={ta[t[0], t[1]]} after the "
                  f"auto-reset; env {t[0]}, step {t[1]})")
        if np.any(cont & (ta != tb + 1)):
            t = np.argwhere(cont & (ta != tb + 1))[0]
            _fail(env, "step", f"episode continued but time went from {tb[t[0], t[1]]} to {ta[t[0], t[1]]} "
                  f"(env {t[0]}, step {t[1]}): a reset happened without terminated/truncated")
        report["time_checked"] = True
    report["episodes_ended"] = int(done.sum())
    report["steps"] = int(done.size)

    if isinstance(env.unwrapped, LevelEnv):
        report.update(_check_level_env(env.unwrapped))
    return report


def _check_level_env(env: LevelEnv) -> dict:
    params = env.default_params
    key = jax.random.key(10)
    level = _call(env, "sample_level (under jit)", _jit(env.sample_level), key)
    levels = _call(env, "sample_level (under jit + vmap)", _jit(jax.vmap(env.sample_level)), jax.random.split(key, 8))
    if jax.tree.structure(levels) != jax.tree.structure(level):
        _fail(env, "sample_level", "vmapped levels have a different pytree structure")
    again = _jit(env.sample_level)(key)
    if not _trees_equal(level, again):
        _fail(env, "sample_level", "the same key gave two different levels")

    _, state = _call(env, "reset_to_level", _jit(env.reset_to_level), jax.random.key(11), level, params)
    got = _call(env, "get_level", env.get_level, state)
    if not _trees_equal(got, level):
        _fail(env, "reset_to_level", "the state does not hold the level it was reset to (get_level(state) != level)")

    text = _call(env, "level_to_str", env.level_to_str, level)
    if not isinstance(text, str):
        _fail(env, "level_to_str", f"returned {type(text).__name__}, expected str")
    back = _call(env, "level_from_str", env.level_from_str, text)
    if not _trees_equal(jax.device_get(back), jax.device_get(level)):
        _fail(env, "level_from_str", f"level_from_str(level_to_str(level)) != level; the text was:\n{text}")
    if env.level_to_str(back) != text:
        _fail(env, "level_to_str", "level_to_str(level_from_str(text)) != text")

    mutated = _call(env, "mutate_level (under jit + vmap)", _jit(jax.vmap(env.mutate_level, (0, 0, None))),
                    jax.random.split(key, 8), levels, 3)
    if jax.tree.structure(mutated) != jax.tree.structure(levels) or any(
        a.shape != b.shape or a.dtype != b.dtype for a, b in zip(jax.tree.leaves(mutated), jax.tree.leaves(levels))
    ):
        _fail(env, "mutate_level", "returned a level with a different structure, shape or dtype")
    sp = _call(env, "shortest_path (under jit + vmap)", _jit(jax.vmap(env.shortest_path)), levels)
    sp = np.asarray(sp)
    if sp.shape != (8,) or not np.issubdtype(sp.dtype, np.integer):
        _fail(env, "shortest_path", f"must return one integer per level; got shape {sp.shape} dtype {sp.dtype}")
    return {"level_checked": True}


def _check_task(task: SequenceTask) -> dict:
    v = task.vocab
    params = task.default_params
    key = jax.random.key(0)
    p = _call(task, "sample_problem (under jit)", _jit(task.sample_problem), key, params)
    if not isinstance(p, Problem):
        _fail(task, "sample_problem", f"returned {type(p).__name__}, expected Problem")
    for field, length in (("prompt", task.prompt_len), ("answer", task.answer_len), ("solution", task.solution_len)):
        x = np.asarray(getattr(p, field))
        if x.shape != (length,) or x.dtype != np.int32:
            _fail(task, "sample_problem", f"Problem.{field} has shape {x.shape} dtype {x.dtype}, "
                  f"expected ({length},) int32 (task.{field}_len)")
    again = _jit(task.sample_problem)(key, params)
    if not _trees_equal(p, again):
        _fail(task, "sample_problem", "the same key gave two different problems")
    n = 64
    ps = _call(task, "sample_problem (under jit + vmap)", _jit(jax.vmap(task.sample_problem, (0, None))),
               jax.random.split(key, n), params)
    for field in ("prompt", "answer", "solution"):
        x = np.asarray(getattr(ps, field))
        if x.min() < 0 or x.max() >= v.size:
            _fail(task, "sample_problem", f"Problem.{field} holds token ids outside the vocabulary [0, {v.size})")
    prompts = np.asarray(ps.prompt)
    if not np.all(prompts[:, 0] == v.BOS) or not np.all(prompts[:, 1] == v.Q):
        _fail(task, "sample_problem", "every prompt must start with BOS <q>")
    verify = _jit(jax.vmap(task.is_correct))
    ok = np.asarray(verify(ps, ps.solution))
    if not ok.all():
        i = int(np.argmin(ok))
        _fail(task, "is_correct", f"the reference solution is judged wrong: {task.to_text(prompts[i])} => "
              f"{task.to_text(np.asarray(ps.solution)[i])}")
    ans, valid = _jit(jax.vmap(task.extract_answer))(ps.solution)
    if not np.asarray(valid).all() or not np.array_equal(np.asarray(ans), np.asarray(ps.answer)):
        _fail(task, "extract_answer", "extract_answer(solution) does not give back Problem.answer")
    junk = jnp.full((n, task.solution_len), v.PAD, jnp.int32)
    if np.asarray(verify(ps, junk)).any():
        _fail(task, "is_correct", "an all-PAD response was judged correct")
    text = _call(task, "to_text", task.to_text, prompts[0])
    if not isinstance(text, str) or not text:
        _fail(task, "to_text", "must return a non-empty string")
    return {"kind": "SequenceTask", "problems": n}


def check_env(env: Any, num_steps: int = 64) -> dict:
    """Check ``env`` against the contract; raise :class:`EnvCheckError` on the first violation.

    Environments: spaces, reset/step signatures and dtypes, ``info['final_obs']``, jit, vmap over 8 copies
    (matching the unbatched run), determinism under a fixed key, auto-reset exactly on
    ``terminated | truncated`` (checked through ``state.time`` when the state has one; episodes are shortened
    through ``params.max_steps_in_episode`` when it exists). Level envs additionally: ``sample_level``,
    ``reset_to_level``/``get_level``, the ``level_to_str``/``level_from_str`` round trip, ``mutate_level``,
    ``shortest_path``. Sequence tasks: shapes/dtypes, determinism, vmap, the verifier on reference solutions.
    """
    if isinstance(env, SequenceTask):
        return _check_task(env)
    if not isinstance(env, Environment):
        raise EnvCheckError(env, "check_env", f"{type(env).__name__} is neither an Environment nor a SequenceTask "
                            "(subclass jaxrl_self.core.Environment, or wrap a gymnax env with envs.from_gymnax)")
    return _check_environment(env, num_steps)
