"""Every registered model: its counts equal the reference figures, it runs forward and backward,
and its summary agrees with a real forward pass on every output shape.

The family test files (test_models_*.py) add what is particular to each family: parity of the
logits with PyTorch for the same weights, options such as aux_logits or stochastic depth.
"""
import contextlib

import numpy as np
import pytest

import cnnlite as cl
from cnnlite import models, nn

NAMES = models.list_models()


def build_small(name, initialise=True):
    """The model with its quick-check settings, and the input shape to check it on."""
    entry = models.entry(name)
    size = entry.small_input or entry.input_size
    with contextlib.nullcontext() if initialise else nn.init.skip_init():
        model = models.get_model(name, **entry.small_kwargs)
    return model, (entry.in_channels, *size)


def outputs(result):
    """The tensors a model returns: its logits, and auxiliary logits while training."""
    return list(result) if isinstance(result, tuple) else [result]


def test_every_model_has_reference_figures():
    assert [name for name in NAMES if name not in models.REFERENCES] == []


@pytest.mark.parametrize("name", NAMES)
def test_counts_equal_the_reference_figures(name):
    """Parameters and multiply-adds, counted by cl.summary, exactly as published."""
    figures = models.reference(name)
    with nn.init.skip_init():  # the counts need no random weights
        model = models.get_model(name, **figures.settings)
    table = cl.summary(model, figures.input_size)
    assert (table.total_params, table.total_macs) == (figures.params, figures.macs)


def quick_weights(model, rng):
    """Uniform weights of He's scale, drawn in float32: far quicker than the models' own
    initialisation for VGG's 138 million weights, and as good for a forward and backward
    check (the initialisations are tested by each family)."""
    for parameter in model.parameters():
        if parameter.ndim >= 2:
            fan_in = parameter.size // parameter.shape[0]
            bound = np.sqrt(6.0 / fan_in)
            parameter.data[...] = (rng.random(parameter.shape, dtype=np.float32) * 2 - 1) * bound


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward(name):
    model, shape = build_small(name, initialise=False)
    rng = np.random.default_rng(0)
    quick_weights(model, rng)
    model.train()
    x = cl.tensor(rng.standard_normal((2, *shape)).astype(np.float32))
    results = outputs(model(x))
    loss = sum((y * cl.tensor(rng.standard_normal(y.shape).astype(np.float32))).sum()
               for y in results)
    loss.backward()
    assert results[0].shape[0] == 2 and np.isfinite(results[0].data).all()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name}: no gradient reached {key}"
        assert parameter.grad.shape == parameter.shape and np.isfinite(parameter.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_summary_agrees_with_a_forward_pass(name):
    """Each row's output shape is what the layer really outputs, convolutions computed, and
    every layer without sub-layers that ran has its row."""
    model, shape = build_small(name, initialise=False)
    table = cl.summary(model, shape)
    seen = {}  # layer name -> output shape of each call (a ReLU may be called twice)

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, []).append(tuple(outputs(output)[0].shape))
        return hook
    hooks = [module.register_forward_hook(record(key)) for key, module in model.named_modules()]
    model.eval()
    with cl.no_grad():
        model(cl.tensor(np.zeros((1, *shape), dtype=np.float32)))
    for hook in hooks:
        hook.remove()
    rows = {}
    for row in table.rows:
        rows.setdefault(row.name, []).append(row.output_shape)
    assert rows == {key: seen[key] for key in rows}
    leaves = {key for key, module in model.named_modules()
              if next(iter(module.children()), None) is None}
    assert leaves & set(seen) <= {row.name for row in table.rows}
