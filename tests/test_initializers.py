"""The fast-compiling initialisers have Flax's distributions: orthogonality, scale, variance, truncation."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_self.nets import initializers as inits


@pytest.mark.parametrize("shape,column_axis", [((4, 64), -1), ((64, 64), -1), ((64, 2), -1), ((3, 3, 3, 16), -1),
                                               ((8, 5), 0)])
def test_orthogonal_is_orthogonal(shape, column_axis):
    w = np.asarray(inits.orthogonal(0.5, column_axis=column_axis)(jax.random.key(1), shape), np.float64)
    assert w.shape == shape
    m = np.moveaxis(w, column_axis, -1).reshape(-1, shape[column_axis])  # rows x columns
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, 0.25 * np.eye(gram.shape[0]), atol=1e-5)


def test_orthogonal_entries_have_haar_moments():
    # entries of a Haar-random n x n orthogonal matrix have mean 0 and variance 1/n
    n = 256
    w = np.asarray(inits.orthogonal()(jax.random.key(0), (n, n)))
    assert abs(w.mean()) < 3 / n
    assert abs(w.var() * n - 1) < 0.02


def test_keys_give_different_matrices_and_same_key_same_matrix():
    init = inits.orthogonal()
    a, b = init(jax.random.key(0), (16, 16)), init(jax.random.key(1), (16, 16))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, init(jax.random.key(0), (16, 16)))


def test_lecun_normal_matches_flax_moments():
    shape = (512, 256)
    ours = np.asarray(inits.lecun_normal()(jax.random.key(0), shape))
    flax = np.asarray(nn.initializers.lecun_normal()(jax.random.key(0), shape))
    std = np.sqrt(1 / 512)
    for w in (ours, flax):
        assert abs(w.std() / std - 1) < 0.02
    # truncated at two standard deviations of the underlying normal
    assert np.abs(ours).max() <= 2 * std / 0.87962566103423978 + 1e-6
    # conv kernel: fan_in = receptive field x input channels
    conv = np.asarray(inits.lecun_normal()(jax.random.key(2), (3, 3, 32, 64)))
    assert abs(conv.std() / np.sqrt(1 / (9 * 32)) - 1) < 0.03


def test_bucket_size_and_bad_shapes():
    assert inits.bucket_size(1) == 4096 and inits.bucket_size(4096) == 4096 and inits.bucket_size(4097) == 8192
    with pytest.raises(ValueError, match="2 axes"):
        inits.orthogonal()(jax.random.key(0), (5,))


def test_flax_module_uses_them():
    layer = nn.Dense(32, kernel_init=inits.orthogonal(2.0))
    params = layer.init(jax.random.key(0), jnp.zeros((1, 8)))
    k = np.asarray(params["params"]["kernel"])
    assert k.shape == (8, 32)  # fewer rows than columns: the rows are orthonormal (times the scale)
    np.testing.assert_allclose(k @ k.T, 4 * np.eye(8), atol=1e-4)
