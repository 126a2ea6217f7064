"""The CLI's persistent compilation cache (jaxrl_self/run/compile_cache.py): where it lives, how it is switched off,
that library use never turns it on, and that a second CLI process of the same config compiles less."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.run import compile_cache as cc

_OPTIONS = ("jax_compilation_cache_dir", "jax_enable_compilation_cache", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")
TINY_PPO = ["train", "ppo", "--env", "cartpole", "--total-timesteps", "1024", "--num-envs", "4", "--num-steps", "32",
            "--update-epochs", "1", "--num-minibatches", "2", "--no-progress", "--keep-checkpoints", "0"]


@pytest.fixture
def restore_jax_config():
    """enable_compile_cache sets process-wide JAX options: put the test session's back afterwards."""
    saved = {k: getattr(jax.config, k) for k in _OPTIONS}
    yield
    for k, v in saved.items():
        jax.config.update(k, v)


def _clean_env(**extra: str) -> dict[str, str]:
    """Our environment without any compilation-cache setting (conftest's included), plus ``extra``."""
    drop = (cc.ENV_VAR, "JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


# ------------------------------------------------------------------------------------------ where the cache lives
def test_resolution_order_flag_then_variable_then_jax_then_user_cache(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert cc.resolve_cache_dir(None, env) == tmp_path / "xdg" / "jaxrl_self" / "jax"
    assert cc.resolve_cache_dir(None, {}) == Path(os.path.expanduser("~")) / ".cache" / "jaxrl_self" / "jax"
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax")
    assert cc.resolve_cache_dir(None, env) == tmp_path / "jax"
    env[cc.ENV_VAR] = str(tmp_path / "var")
    assert cc.resolve_cache_dir(None, env) == tmp_path / "var"
    assert cc.resolve_cache_dir(str(tmp_path / "flag"), env) == tmp_path / "flag"
    for off in ("0", "off", "OFF", "false", "no", "none"):
        assert cc.resolve_cache_dir(off, env) is None
        assert cc.resolve_cache_dir(None, {**env, cc.ENV_VAR: off}) is None


def test_an_empty_setting_is_a_one_line_error_naming_the_allowed_values():
    with pytest.raises(ConfigError, match=r"compile_cache='' is not allowed: a folder, or one of 0, off"):
        cc.resolve_cache_dir("", {})
    with pytest.raises(ConfigError, match=rf"{cc.ENV_VAR}=' ' is not allowed"):
        cc.resolve_cache_dir(None, {cc.ENV_VAR: " "})


def test_enable_sets_jax_options_and_off_switches_the_cache_off(tmp_path, restore_jax_config):
    path = cc.enable_compile_cache(str(tmp_path / "c"), environ={})
    assert path == tmp_path / "c" and not path.exists()  # JAX makes it at its first compile
    assert jax.config.jax_compilation_cache_dir == str(path) and jax.config.jax_enable_compilation_cache
    assert jax.config.jax_persistent_cache_min_compile_time_secs == cc.MIN_COMPILE_TIME_S < 1.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == 0
    assert cc.enable_compile_cache("off", environ={}) is None
    assert jax.config.jax_enable_compilation_cache is False


def test_a_cache_already_set_for_jax_is_kept_when_nothing_is_asked(tmp_path, restore_jax_config):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
    assert cc.enable_compile_cache(None, environ={}) == tmp_path / "mine"
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.0  # the user's threshold is left alone
    assert cc.enable_compile_cache(None, environ={cc.ENV_VAR: str(tmp_path / "ours")}) == tmp_path / "ours"


# ------------------------------------------------------------------------------------------ in fresh processes
def test_library_use_never_turns_the_cache_on(tmp_path):
    folder = tmp_path / "cache"
    script = ("import jaxrl_self, jaxrl_self.cli, jaxrl_self.run, jax, jax.numpy as jnp\n"
              "jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()\n"
              "print(jax.config.jax_compilation_cache_dir)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env=_clean_env(**{cc.ENV_VAR: str(folder), "XDG_CACHE_HOME": str(tmp_path / "xdg")}))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "None"
    assert not folder.exists() and not (tmp_path / "xdg").exists()


# Runs the CLI in a fresh process with a listener on JAX's own compilation-cache events, so the test reads what the
# cache did (hits, misses) instead of timing it: wall-time ratios flake on a loaded 2-core machine, and the timing
# claim lives in benchmarks/results/compile_cache.md.
_LAUNCHER = """
import collections, json, sys
import jax.monitoring
counts = collections.Counter()
jax.monitoring.register_event_listener(lambda event, **kw: counts.update([event]))
from jaxrl_self.cli import main
status = main(sys.argv[1:])
print("CACHE_EVENTS " + json.dumps(counts), file=sys.stderr)
sys.exit(status)
"""
_HITS, _MISSES = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"


def _cli_train(run_dir: Path, env: dict[str, str]) -> tuple[dict, dict[str, int]]:
    """The run's summary.json and the count of each compilation-cache event the process recorded."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *TINY_PPO, "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stderr.splitlines()[::-1] if ln.startswith("CACHE_EVENTS "))
    return json.loads((run_dir / "summary.json").read_text()), json.loads(line.split(" ", 1)[1])


def test_second_cli_process_of_the_same_config_loads_its_programs_from_the_cache(tmp_path):
    """The default folder ($XDG_CACHE_HOME here, so nothing is written to the home folder) fills on the first run;
    the second process finds every program it compiles in it (JAX's cache-hit events, no miss, no new entry) and
    computes the same run; with the cache off nothing is read or written."""
    env = _clean_env(XDG_CACHE_HOME=str(tmp_path / "xdg"))
    folder = cc.default_cache_dir(env)
    first, first_events = _cli_train(tmp_path / "a", env)
    entries = sorted(p.name for p in folder.iterdir())
    assert any(name.startswith("jit_chunk-") for name in entries), entries
    assert first_events.get(_MISSES, 0) >= 1, first_events
    second, second_events = _cli_train(tmp_path / "b", env)
    assert sorted(p.name for p in folder.iterdir()) == entries  # nothing new compiled
    assert second_events.get(_MISSES, 0) == 0, second_events
    assert second_events.get(_HITS, 0) >= 1, second_events
    assert second["final_return"] == first["final_return"]
    off, off_events = _cli_train(tmp_path / "c", {**env, cc.ENV_VAR: "off"})
    assert off_events.get(_HITS, 0) == 0 and off_events.get(_MISSES, 0) == 0, off_events
    assert off["final_return"] == first["final_return"]
    assert sorted(p.name for p in folder.iterdir()) == entries
