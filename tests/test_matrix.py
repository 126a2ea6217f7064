"""Every registered algorithm on every registered environment (issue #15: never a traceback).

Each cell either fits (the environment is one ``jaxrl-self list`` shows for the algorithm, from its ``ENV_KINDS``)
or does not:

* a fitting cell builds the algorithm's ``make_train`` with a tiny config and validates it, and the shapes of
  ``init`` come out of ``jax.eval_shape`` (nothing is compiled; one CLI-level run per family is in the family's
  own tests). Through the CLI with the default flags it reaches ``make_train`` or is refused in one line;
* any other cell is refused through the CLI (``jaxrl-self train ALGO --env ENV``) before ``make_train`` is called:
  exit status 2, one line on stderr that names an environment that fits, no traceback.

A new algorithm joins the matrix by being registered in :mod:`jaxrl_self.algos` (its tiny config comes from
tests/tiny_configs.py: its family's, or its defaults; give it one there when those are costly to build). Also here: a language-model method given a base model trained on another
task is refused in one line naming the task that model fits.
"""
from __future__ import annotations

import functools
import re
import time

import jax
import pytest

from jaxrl_self import algos, cli, envs, lm
from jaxrl_self.core.errors import ConfigError
from jaxrl_self.lm.config import LMRLConfig
from jaxrl_self.run.catalog import algorithm_catalog
from tiny_configs import tiny_cell

#: a refusal happens in validation, before anything is built: far under this (the first call imports modules)
REFUSAL_SECONDS = 3.0

CELLS = [(a, e) for a in algos.names() for e in envs.registered_names()]


@functools.cache
def fitting() -> dict[str, tuple[str, ...]]:
    """Algorithm -> the registered environments ``jaxrl-self list`` shows for it."""
    return {info.name: info.environments for info in algorithm_catalog()}


class Reached(Exception):
    """``make_train`` was called: the config passed validation."""


def _stub_make_train(monkeypatch, module) -> None:
    def reached(*args, **kwargs):
        raise Reached(module.__name__)

    monkeypatch.setattr(module, "make_train", reached)


def _cli(capsys, argv):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------------ the matrix
@pytest.mark.parametrize("algo, env_name", CELLS)
def test_cell(algo, env_name, capsys, monkeypatch, tmp_path):
    module = algos.get(algo)
    fits = fitting()[algo]
    assert fits, f"{algo}: no registered environment fits its ENV_KINDS {getattr(module, 'ENV_KINDS', None)}"
    argv = ["train", algo, "--env", env_name, "--run-dir", str(tmp_path / "run"), "--no-progress"]
    if env_name in fits:
        config, env = tiny_cell(algo, env_name)
        config.validate(env)
        train = module.make_train(config, env)
        assert int(train.num_updates) >= 1
        state = jax.eval_shape(train.init, jax.random.key(0))
        assert jax.tree.leaves(state), (algo, env_name)
        # the default flags: the CLI gets to make_train, or says in one line which flag to change
        _stub_make_train(monkeypatch, module)
        try:
            code, _, err = _cli(capsys, argv)
        except Reached:
            return
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (code, err)
        assert err.startswith("jaxrl-self train: error: "), err
        return
    _stub_make_train(monkeypatch, module)
    start = time.perf_counter()
    try:
        code, out, err = _cli(capsys, argv)
    except Reached:
        pytest.fail(f"train {algo} --env {env_name}: validation let an environment that does not fit through")
    seconds = time.perf_counter() - start
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"jaxrl-self train: error: {algo}.Config.env="), err
    named = [e for e in fits if re.search(rf"(?<![\w-]){re.escape(e)}(?![\w-])", err)]
    assert named, f"the refusal names none of what fits ({', '.join(fits)}): {err}"
    assert seconds < REFUSAL_SECONDS, (algo, env_name, seconds)


def test_every_algorithm_fits_something_and_refuses_something():
    """The matrix has both kinds of cell for every algorithm (a registry that lists everything as fitting, or
    nothing, would make the matrix vacuous)."""
    for name in algos.names():
        fits = fitting()[name]
        assert fits and set(fits) < set(envs.registered_names()), (name, fits)


# ------------------------------------------------------------------------------------------ base model vs task
LM_ALGOS = [name for name in algos.names() if isinstance(algos.get(name).Config(), LMRLConfig)]


@pytest.mark.parametrize("algo", LM_ALGOS)
def test_a_base_model_of_another_task_is_refused_in_one_line(algo, capsys, monkeypatch, tmp_path):
    """``train tppo --task addition --base-model chain-base`` trained for a minute and said nothing: the model
    was trained on the chain. Every LM method refuses it (in the shared LM validation) naming the task it fits."""
    module = algos.get(algo)
    _stub_make_train(monkeypatch, module)
    for task, other in (("addition", "chain-base"), ("chain", "addition-base")):
        if task not in fitting()[algo]:
            continue  # RLT takes addition only
        trained_on = lm.read_metadata(other)["task"]["name"]
        start = time.perf_counter()
        code, _, err = _cli(capsys, ["train", algo, "--task", task, "--base-model", other,
                                     "--run-dir", str(tmp_path / task)])
        assert time.perf_counter() - start < REFUSAL_SECONDS
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert f"{algo}.Config.base_model='{other}' is not allowed: a model trained on this task" in err, err
        assert f"{other} was trained on '{trained_on}': pass --task {trained_on}" in err, err
        shipped = [m for m in lm.available_base_models() if lm.read_metadata(m)["task"]["name"] == task]
        assert f"shipped models for {type(envs.make(task)).__name__}: {', '.join(shipped)}" in err, err
    # in Python too, on the field the flag sets
    with pytest.raises(ConfigError) as e:
        module.Config(base_model="chain-base").validate(envs.make("addition"))
    assert e.value.field == "base_model" and "was trained on 'chain'" in e.value.allowed


def test_an_unreadable_base_model_is_a_config_error(tmp_path):
    """A base model that is neither shipped, a model file nor a run folder: a ConfigError on ``base_model`` naming
    the shipped models for the task (it was a FileNotFoundError from the loader, after validation)."""
    task = envs.make("addition")
    for ref in ("no-such-model", str(tmp_path / "missing")):
        with pytest.raises(ConfigError) as e:
            algos.get("grpo").Config(base_model=ref).validate(task)
        assert e.value.field == "base_model" and "shipped models for AdditionTask: addition-base" in e.value.allowed
    broken = tmp_path / "broken"
    broken.with_suffix(".json").write_text("{not json")
    with pytest.raises(ConfigError) as e:
        algos.get("grpo").Config(base_model=str(broken)).validate(task)
    assert e.value.field == "base_model" and "it cannot be read" in e.value.allowed


def test_a_base_model_of_the_right_task_is_accepted():
    for name in lm.available_base_models():
        meta = lm.read_metadata(name)
        task = lm.base_model_task(meta)
        config = algos.get("grpo").Config(base_model=name, max_new_tokens=4)
        config.validate(task)  # no error
        assert config.task_kwargs_for(meta["task"]["name"]) == meta["task"]["kwargs"]
