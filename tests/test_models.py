"""Every registered model: its counts equal the reference figures, it runs forward and backward,
and its summary agrees with a real forward pass on every output shape.

The family test files (test_models_*.py) add what is particular to each family: parity of the
logits with PyTorch for the same weights, options such as aux_logits or stochastic depth.
"""
import numpy as np
import pytest

import cnnlite as cl
from cnnlite import models

NAMES = models.list_models()


def build_small(name):
    """The model with its quick-check settings, and the input shape to check it on."""
    entry = models.entry(name)
    size = entry.small_input or entry.input_size
    return models.get_model(name, **entry.small_kwargs), (entry.in_channels, *size)


def outputs(result):
    """The tensors a model returns: its logits, and auxiliary logits while training."""
    return list(result) if isinstance(result, tuple) else [result]


def test_every_model_has_reference_figures():
    assert [name for name in NAMES if name not in models.REFERENCES] == []


@pytest.mark.parametrize("name", NAMES)
def test_counts_equal_the_reference_figures(name):
    """Parameters and multiply-adds, counted by cl.summary, exactly as published."""
    figures = models.reference(name)
    table = cl.summary(models.get_model(name), figures.input_size)
    assert (table.total_params, table.total_macs) == (figures.params, figures.macs)


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward(name):
    model, shape = build_small(name)
    model.train()
    rng = np.random.default_rng(0)
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
    model, shape = build_small(name)
    table = cl.summary(model, shape)
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, tuple(outputs(output)[0].shape))
        return hook
    hooks = [module.register_forward_hook(record(key)) for key, module in model.named_modules()]
    model.eval()
    with cl.no_grad():
        model(cl.tensor(np.zeros((1, *shape), dtype=np.float32)))
    for hook in hooks:
        hook.remove()
    assert {row.name: row.output_shape for row in table.rows} == {
        key: seen[key] for key in {row.name for row in table.rows}}
    leaves = {key for key, module in model.named_modules()
              if next(iter(module.children()), None) is None}
    assert leaves & set(seen) <= {row.name for row in table.rows}
