"""The package works from a plain (non-editable) wheel: envs/ is installed as jaxrl_self.envs with its data.

Builds the wheel, unpacks it into a temporary target directory (its dependencies are already in this
environment), and in a subprocess that imports jaxrl_self from that directory, not from the source tree,
runs check_env on every registered environment and task.
"""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHECK_ALL = textwrap.dedent(
    """
    import json, sys
    import jaxrl_self
    from jaxrl_self import envs
    from jaxrl_self.envs.maze import named_levels
    assert jaxrl_self.__file__.startswith(sys.argv[1]), jaxrl_self.__file__
    assert envs.__file__.startswith(sys.argv[1]), envs.__file__
    names = envs.registered_names()
    for name in names:
        envs.check_env(envs.make(name))
    print(json.dumps({"checked": names, "named_mazes": sorted(named_levels())}))
    """
)


@pytest.mark.timeout(900)
def test_wheel_install_passes_check_env_for_every_registered_env(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("jaxrl_self-*.whl")
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (target / "jaxrl_self" / "envs" / "data" / "heldout_mazes.txt").exists()
    for name in ("addition-base", "chain-base"):  # the shipped base models are package data too
        assert (target / "jaxrl_self" / "lm" / "base_models" / f"{name}.msgpack").exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-c", CHECK_ALL, str(target)], capture_output=True, text=True,
                         timeout=900, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '"maze"' in run.stdout and '"cartpole"' in run.stdout and '"SixteenRooms"' in run.stdout
