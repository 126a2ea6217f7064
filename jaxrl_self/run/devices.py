"""The runner's device mesh: how ``--devices`` / ``--mesh seeds=S,envs=E`` lay a run out over devices.

A run on one device (the default) has no mesh and is exactly the single-device program. With more devices the
runner builds a :class:`jax.sharding.Mesh` of shape ``(S, E)`` over the axes :data:`~jaxrl_self.core.mesh.SEEDS`
and :data:`~jaxrl_self.core.mesh.ENVS` (see :mod:`jaxrl_self.core.mesh` for what each axis splits) from
``jax.devices()``, which after ``jax.distributed.initialize()`` are the devices of *every* process. The axes are
``AxisType.Auto``: XLA's SPMD partitioner places everything the program does not pin.

Layout: ``--mesh seeds=S,envs=E`` asks for it explicitly (``S * E`` devices; ``--devices``, if given, must equal
it). ``--devices N`` alone puts as many devices as it can on the seed axis, which costs no communication
(``S = gcd(seeds, N)``), and the rest on the environment axis (``E = N / S``). Seeds must divide over ``S``; the
environments (or prompts) of a run must divide over ``E`` (checked when the program is traced, before it is
compiled).

Shardings at the program's boundary: every ``RunState`` leaf is split over ``seeds`` on its leading (seed) axis
and replicated over ``envs`` (inside the update the environments are split, see :func:`~jaxrl_self.core.mesh.
shard_envs`); the metrics rows are replicated, so every process can read them.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrl_self.core.errors import ConfigError
from jaxrl_self.core.mesh import MESH_AXES, SEEDS

__all__ = ["MeshShape", "parse_mesh", "resolve_mesh_shape", "make_mesh", "state_sharding", "replicated",
           "host_array", "to_host", "shard_abstract"]


@dataclasses.dataclass(frozen=True)
class MeshShape:
    """How many devices each mesh axis spans."""

    seeds: int = 1
    envs: int = 1

    @property
    def size(self) -> int:
        return self.seeds * self.envs

    def __str__(self) -> str:
        return f"seeds={self.seeds},envs={self.envs}"


def parse_mesh(text: str, owner: str = "RunOptions") -> MeshShape:
    """``"seeds=2,envs=4"`` (either part may be left out, meaning 1) as a :class:`MeshShape`."""
    allowed = f"comma-separated AXIS=N with AXIS in {list(MESH_AXES)} and N >= 1, e.g. seeds=2,envs=4"
    sizes: dict[str, int] = {}
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq or name not in MESH_AXES or name in sizes or not value.isdigit() or int(value) < 1:
            raise ConfigError("mesh", text, allowed, owner=owner)
        sizes[name] = int(value)
    if not sizes:
        raise ConfigError("mesh", text, allowed, owner=owner)
    return MeshShape(**sizes)


def resolve_mesh_shape(*, num_seeds: int, devices: int | None, mesh: str | None,
                       available: int | None = None, owner: str = "RunOptions") -> MeshShape:
    """The mesh a run asks for (see the module docstring), checked against the seeds and the visible devices.

    ``devices``: None or 1 = one device (unless ``mesh`` says more), 0 = every visible device.
    """
    available = jax.device_count() if available is None else int(available)
    if devices is not None and devices < 0:
        raise ConfigError("devices", devices, "an integer >= 1, or 0 for every visible device", owner=owner)
    want = available if devices == 0 else devices
    if mesh is not None:
        shape = parse_mesh(mesh, owner)
        if want is not None and want != shape.size:
            raise ConfigError("devices", devices, f"the mesh's size {shape.size} ({shape}), or leave --devices "
                              "out", owner=owner)
    else:
        n = 1 if want is None else int(want)
        seeds = math.gcd(num_seeds, n)
        shape = MeshShape(seeds=seeds, envs=n // seeds)
    if shape.size > available:
        raise ConfigError("devices" if mesh is None else "mesh", devices if mesh is None else mesh,
                          f"at most the {available} visible device{'s' * (available != 1)} "
                          f"({jax.devices()[0].platform}; on CPU XLA_FLAGS=--xla_force_host_platform_device_count=N "
                          "makes N)", owner=owner)
    if num_seeds % shape.seeds:
        raise ConfigError("mesh", str(shape), f"a seeds axis that divides --seeds {num_seeds}", owner=owner)
    return shape


def make_mesh(shape: MeshShape) -> Mesh | None:
    """The mesh over the first ``shape.size`` devices, or None for one device (the single-device program)."""
    if shape.size == 1:
        return None
    devices = np.asarray(jax.devices()[: shape.size]).reshape(shape.seeds, shape.envs)
    return Mesh(devices, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def state_sharding(mesh: Mesh) -> NamedSharding:
    """Every state leaf split over ``seeds`` on its leading axis, replicated over ``envs``."""
    return NamedSharding(mesh, PartitionSpec(SEEDS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shard_abstract(abstract: Any, mesh: Mesh | None) -> Any:
    """``abstract`` (``jax.ShapeDtypeStruct`` leaves) with the state sharding attached (without a mesh: this
    process's first device), the target of a restore: orbax then restores a checkpoint saved on any layout (one
    device, a mesh, several processes) onto this one."""
    sharding = state_sharding(mesh) if mesh is not None else jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)


def host_array(x: Any) -> np.ndarray:
    """``x`` as a NumPy array on this host; an array split over several processes is gathered first."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)



def to_host(tree: Any) -> Any:
    """Every array of ``tree`` whole on this process (NumPy; typed PRNG keys stay keys), e.g. a multi-process run's
    final states for an evaluation that process 0 runs alone. Every process must call it (it gathers)."""

    def one(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(host_array(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        return host_array(x) if isinstance(x, jax.Array) else x

    return jax.tree.map(one, tree)
