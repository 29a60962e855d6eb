"""LSUV makes a very deep plain network trainable (Mishkin and Matas, "All you need is a good
init"): a 20-layer fully connected ReLU network on the 8x8 digits learns after LSUV, and does
not move at all from small N(0, 0.01) weights, whose signal shrinks by a factor of
32 * 0.01^2 / 2 = 0.0016 in variance per layer and is gone long before the output."""
import math

import numpy as np
import pytest

from cnnlite import nn, optim
from cnnlite.data import DataLoader, Digits
from cnnlite.train import fit, seed_everything

DEPTH, WIDTH, EPOCHS = 20, 32, 6


def plain_relu_network(depth=DEPTH, width=WIDTH):
    """Linear(64, w) - ReLU - ... - Linear(w, 10): ``depth`` linear layers, no normalisation,
    no skip connections."""
    layers = [nn.Flatten(), nn.Linear(64, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def digits():
    return Digits(train=True), Digits(train=False)


def train(model, digits, seed):
    train_set, test_set = digits
    loader = DataLoader(train_set, batch_size=32, shuffle=True, seed=seed)
    optimizer = optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    return fit(model, loader, DataLoader(test_set, batch_size=512), optimizer, epochs=EPOCHS,
               progress=False)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_20_layer_plain_relu_network_trains_after_lsuv(digits, seed):
    seed_everything(seed)
    model = plain_relu_network()
    batch, _ = next(iter(DataLoader(digits[0], batch_size=128, shuffle=True, seed=seed)))
    report = nn.lsuv_init(model, batch, tol=0.1, max_iter=10, rng=np.random.default_rng(seed))
    assert len(report) == DEPTH
    history = train(model, digits, seed)
    assert history.train_loss[-1] < 0.6 * math.log(10)
    assert history.val_acc[-1] > 0.5                      # chance: 0.1


def test_the_same_network_stalls_from_small_gaussian_weights(digits):
    seed_everything(1)
    model = plain_relu_network()
    rng = np.random.default_rng(1)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01, rng=rng)
            nn.init.zeros_(module.bias)
    history = train(model, digits, seed=1)
    assert all(abs(loss - math.log(10)) < 0.01 for loss in history.train_loss)
    assert max(history.val_acc) < 0.2
