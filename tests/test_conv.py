"""PatchConv (a VALID convolution as a matmul of patches) is flax's nn.Conv: same parameters, same outputs and
gradients up to float summation order."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self.nets.actor_critic import MazeEncoder
from jaxrl_self.nets.conv import PatchConv, image_patches
from jaxrl_self.nets.initializers import lecun_normal

OPT0 = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}  # tiny programs: compile fast


@pytest.mark.parametrize("features,init,shape", [
    (16, lecun_normal(), (6, 5, 5, 3)),                    # the maze student's encoder
    (8, nn.initializers.lecun_normal(), (2, 7, 6, 4)),     # flax's default init, non-square, 4 channels
])
def test_same_parameters_values_and_gradients_as_flax_conv(features, init, shape):
    key = jax.random.key(3)
    x = jax.random.uniform(jax.random.key(4), shape) * 4.0
    ref = nn.Conv(features, (3, 3), strides=(1, 1), padding="VALID", kernel_init=init)
    ours = PatchConv(features, 3, kernel_init=init)
    p_ref, p_ours = ref.init(key, x), ours.init(key, x)
    # the same key gives the same parameters (same names, shapes and creation order): checkpoints carry over
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), p_ref, p_ours)
    p = jax.tree.map(lambda a: a + 0.1, p_ref)  # a non-zero bias too
    np.testing.assert_allclose(ours.apply(p, x), ref.apply(p, x), rtol=1e-5, atol=1e-5)

    def loss(module):
        return lambda params, x: jnp.sum(jnp.sin(module.apply(params, x)))

    g_ours = jax.jit(jax.grad(loss(ours), argnums=(0, 1)), compiler_options=OPT0)(p, x)
    g_ref = jax.jit(jax.grad(loss(ref), argnums=(0, 1)), compiler_options=OPT0)(p, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g_ours, g_ref)


def test_patches_by_hand():
    x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
    p = image_patches(x, 3)
    assert p.shape == (2, 2, 2, 9)
    # the patch at output (row 1, column 0) of the first image: rows 1..3, columns 0..2, row-major
    np.testing.assert_array_equal(p[0, 1, 0], [4, 5, 6, 8, 9, 10, 12, 13, 14])
    with pytest.raises(ValueError, match="does not fit"):
        image_patches(x[:, :2], 3)


def test_maze_encoder_parameter_tree_is_unchanged():
    obs = {"image": jnp.zeros((1, 5, 5, 3), jnp.uint8), "agent_dir": jnp.zeros((1,), jnp.int32)}
    params = MazeEncoder().init(jax.random.key(0), obs)["params"]
    assert jax.tree.map(jnp.shape, params) == {"conv": {"kernel": (3, 3, 3, 16), "bias": (16,)},
                                               "dir_embed": {"kernel": (4, 5), "bias": (5,)}}
