"""Package discovery only; all metadata is in pyproject.toml.

``envs/`` sits at the top of the repository (so environment authors find it first) but is installed as the
subpackage ``jaxrl_self.envs``. setuptools needs the mapped package list spelled out, which pyproject.toml
cannot compute, so it is computed here.
"""
from setuptools import find_packages, setup


def _mapped(prefix: str, folder: str) -> list[str]:
    return [prefix] + [f"{prefix}.{p}" for p in find_packages(folder)]


setup(
    packages=_mapped("jaxrl_self", "jaxrl_self") + _mapped("jaxrl_self.envs", "envs"),
    package_dir={"jaxrl_self": "jaxrl_self", "jaxrl_self.envs": "envs"},
)
