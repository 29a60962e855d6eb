"""The blocks several model families share (cnnlite.models.blocks)."""
import numpy as np
import pytest

import cnnlite as cl
from cnnlite.models.blocks import (ConvNormActivation, SqueezeExcitation, StochasticDepth,
                                   channel_shuffle, check_input_size)


def test_conv_norm_activation_has_torchvisions_keys_and_no_bias_before_batch_norm():
    block = ConvNormActivation(3, 8, kernel_size=3, stride=2)
    assert list(block.state_dict()) == ["0.weight", "1.weight", "1.bias", "1.running_mean",
                                        "1.running_var", "1.num_batches_tracked"]
    assert block(cl.tensor(np.zeros((1, 3, 9, 9), np.float32))).shape == (1, 8, 5, 5)
    plain = ConvNormActivation(3, 8, kernel_size=1, norm_layer=None, activation_layer=None)
    assert list(plain.state_dict()) == ["0.weight", "0.bias"]


def test_channel_shuffle_interleaves_the_groups():
    x = cl.tensor(np.arange(6.0).reshape(1, 6, 1, 1))
    assert channel_shuffle(x, 2).data.ravel().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).data.ravel().tolist() == [0, 2, 4, 1, 3, 5]
    with pytest.raises(cl.OpError, match="6 channels do not split into 4 groups"):
        channel_shuffle(x, 4)


def test_squeeze_excitation_equals_its_formula():
    rng = np.random.default_rng(0)
    se = SqueezeExcitation(6, 2).double()
    x = rng.standard_normal((2, 6, 5, 5))
    w1, b1 = se.fc1.weight.data[:, :, 0, 0], se.fc1.bias.data
    w2, b2 = se.fc2.weight.data[:, :, 0, 0], se.fc2.bias.data
    s = x.mean(axis=(2, 3))
    gate = 1 / (1 + np.exp(-(np.maximum(s @ w1.T + b1, 0) @ w2.T + b2)))
    np.testing.assert_allclose(se(cl.tensor(x)).data, gate[:, :, None, None] * x, rtol=1e-12)
    assert list(se.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_drops_at_rate_p_and_scales_survivors(mode):
    p, trials = 0.3, 4000
    layer = StochasticDepth(p, mode=mode, rng=np.random.default_rng(0))
    x = cl.tensor(np.ones((4, 2, 1, 1)))
    kept = np.array([layer(x).data for _ in range(trials)])     # (trials, 4, 2, 1, 1)
    assert set(np.unique(kept)) <= {0.0, 1 / (1 - p)}
    per_sample = kept[:, :, 0, 0, 0]
    assert abs((per_sample == 0).mean() - p) < 0.03
    assert (kept == kept[:, :, :1]).all()                      # one decision per sample
    if mode == "batch":
        assert (per_sample == per_sample[:, :1]).all()          # ... and for the whole batch
    else:
        assert (per_sample != per_sample[:, :1]).any()
    assert abs(kept.mean() - 1.0) < 0.05                        # expectation kept


def test_stochastic_depth_is_the_identity_in_evaluation_and_passes_gradients():
    layer = StochasticDepth(0.5, rng=np.random.default_rng(1))
    x = cl.tensor(np.ones((3, 2)), requires_grad=True)
    layer.eval()
    assert layer(x) is x
    layer.train()
    y = layer(x)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.data)  # d(x * mask)/dx = mask


def test_stochastic_depth_refuses_bad_settings():
    with pytest.raises(ValueError, match="mode must be 'row' or 'batch'"):
        StochasticDepth(0.1, mode="column")
    with pytest.raises(ValueError, match="StochasticDepth"):
        StochasticDepth(1.5)


def test_check_input_size_names_the_model_and_the_size_it_expects():
    with pytest.raises(cl.OpError, match=r"alexnet_paper: expected input of shape "
                                         r"\(N, 3, 227, 227\).*got \(1, 3, 224, 224\)"):
        check_input_size("alexnet_paper", np.zeros((1, 3, 224, 224)), 3, (227, 227))
    check_input_size("alexnet_paper", np.zeros((2, 3, 227, 227)), 3, (227, 227))
