"""The device-mesh vocabulary shared by the algorithms and the runner.

A run on several devices (``jaxrl-self train ... --mesh seeds=2,envs=4``) is compiled under a
:class:`jax.sharding.Mesh` with two named axes:

* :data:`SEEDS` (``"seeds"``): the runner's seed axis (the leading axis of every ``RunState`` leaf) is split over
  it. Seeds never talk to each other, so this costs no communication, and each seed's numbers are bitwise those
  of the unsharded run. The runner vmaps ``Train.update`` with ``axis_name=SEED_AXIS`` (``"seed"``, unchanged,
  what :func:`~jaxrl_self.core.uniform_over_seeds` reduces over) and ``spmd_axis_name=SEEDS``.
* :data:`ENVS` (``"envs"``): inside one seed, the batch of environments (or of prompts, for a language-model
  method) is split over it. Algorithms mark that batch with :func:`shard_envs` where it is made (the rollout's
  environment states, a prompt batch); XLA's SPMD partitioner (GSPMD, ``jax.jit`` with
  :class:`~jax.sharding.NamedSharding`) then runs each device's share of the environments and of the network's
  forward and backward passes, and turns every mean over the batch (the loss, hence the gradient) into a
  cross-device all-reduce. The algorithm is the same program: same minibatches, same random numbers
  (``jax_threefry_partitionable``), same updates; only the order of float sums differs.

Everything else (parameters, optimiser state, a curriculum's level buffer) is replicated: every device holds the
whole of it and applies the same update. See docs/scaling.md.

:func:`shard_envs` is the identity when no mesh is active or the mesh's ``envs`` axis has size 1, so algorithms
call it unconditionally and a single-device run is unchanged.
"""
from __future__ import annotations

from typing import Any

import jax
from jax.sharding import PartitionSpec

from jaxrl_self.core.errors import ConfigError

__all__ = ["SEEDS", "ENVS", "MESH_AXES", "shard_envs", "env_axis_size", "env_batch", "check_divides"]

#: Mesh axis over which the runner's seed axis is split.
SEEDS = "seeds"
#: Mesh axis over which one run's environments (or prompts) are split.
ENVS = "envs"
#: The mesh's axes, in order.
MESH_AXES = (SEEDS, ENVS)


def env_axis_size() -> int:
    """Size of the active mesh's :data:`ENVS` axis (1 when no mesh is active or it has none)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or ENVS not in mesh.axis_names:
        return 1
    return int(mesh.shape[ENVS])


def shard_envs(tree: Any, axis: int = 0, *, what: str = "environment") -> Any:
    """Split axis ``axis`` of every array leaf of ``tree`` over the active mesh's :data:`ENVS` axis.

    Called where an algorithm makes its batch of environments (axis 0 of a rollout state, axis 1 of a
    time-major trajectory), of sampled responses or of T-PPO's slots. Under the runner's seed vmap the seed axis is
    added in front (sharded over :data:`SEEDS`) by ``jax.vmap(..., spmd_axis_name=SEEDS)``. Identity without a
    mesh, or with ``envs=1``.

    A leaf whose axis does not divide evenly over the devices is left to the partitioner (computed whole, e.g. an
    evaluation over 10 held-out mazes on 4 devices): a constraint only places data, it never changes a value. The
    runner refuses a *configured* batch that does not divide before compiling (:func:`check_divides`); ``what``
    names the batch.
    """
    n = env_axis_size()
    if n == 1:
        return tree
    spec = PartitionSpec(*([None] * axis), ENVS)

    def constrain(x):
        if not hasattr(x, "shape") or len(x.shape) <= axis or x.shape[axis] % n:
            return x
        return jax.lax.with_sharding_constraint(x, spec)

    return jax.tree.map(constrain, tree)


#: Config fields (tried in order, also inside a nested ``ppo`` / ``student`` config) holding the batch the
#: environment axis splits: environments, T-PPO's slots, or an LM method's prompts (times ``group_size``).
BATCH_FIELDS = ("num_envs", "num_slots", "num_prompts")


def env_batch(config: Any) -> tuple[str, int] | None:
    """``(what, size)`` of the batch ``config``'s run splits over the :data:`ENVS` axis, or None when unknown."""
    for holder, prefix in ((config, ""), (getattr(config, "ppo", None), ""), (getattr(config, "student", None),
                                                                                 "student.")):
        if holder is None:
            continue
        for field in BATCH_FIELDS:
            value = getattr(holder, field, None)
            if isinstance(value, int):
                if field == "num_prompts" and isinstance(getattr(holder, "group_size", None), int):
                    return f"{prefix}num_prompts x group_size", value * holder.group_size
                return prefix + field, value
    return None


def check_divides(config: Any, envs: int) -> None:
    """Raise :class:`~jaxrl_self.core.ConfigError` (before compiling) when ``config``'s batch does not divide over
    an environment axis of ``envs`` devices: each device must hold the same share."""
    batch = env_batch(config)
    if envs > 1 and batch is not None and batch[1] % envs:
        name, size = batch
        raise ConfigError("mesh", f"envs={envs}", f"a number of devices that divides the batch it splits ({name} = "
                          f"{size})", owner="RunOptions")
