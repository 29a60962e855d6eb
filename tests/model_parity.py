"""One check for every model family: with the same weights, cnnlite's logits equal PyTorch's.

The PyTorch reference modules are written in each family's test file from the paper and
torchvision's definition, independently of cnnlite's code; their state-dict keys are the same,
so the weights copy across by name.
"""
import numpy as np
import torch


def randomise_batch_norm(torch_model, seed=0):
    """Give every BatchNorm random running statistics and affine parameters, so that a wrong
    eps, a swapped mean/variance or a missing scale shows in the logits (fresh statistics
    make batch norm nearly the identity)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in torch_model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                module.running_mean.copy_(torch.tensor(rng.normal(0, 0.1, c)))
                module.running_var.copy_(torch.tensor(rng.uniform(0.5, 1.5, c)))
                module.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, c)))
                module.bias.copy_(torch.tensor(rng.normal(0, 0.1, c)))


def copy_weights(torch_model, cl_model):
    """Load the PyTorch model's state dict into the cnnlite model (keys must be identical)."""
    cl_model.load_state_dict({key: value.detach().numpy()
                              for key, value in torch_model.state_dict().items()})


def assert_same_logits(cl_model, torch_model, input_shape, rtol=1e-4, seed=0,
                       dtype=np.float32):
    """Copy the weights across and compare the eval-mode outputs on one random input.

    The error is measured relative to the largest logit: max |cnnlite - torch| / max |torch|
    must stay below ``rtol``. Returns that relative error.
    """
    randomise_batch_norm(torch_model, seed)
    torch_model.eval()
    cl_model.eval()
    if dtype == np.float64:
        torch_model.double()
    copy_weights(torch_model, cl_model)
    if dtype == np.float64:
        cl_model.double()
    x = np.random.default_rng(seed).standard_normal(input_shape).astype(dtype)
    import cnnlite as cl
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    with cl.no_grad():
        got = cl_model(cl.tensor(x)).data
    assert got.shape == expected.shape, (got.shape, expected.shape)
    error = float(np.abs(got - expected).max() / np.abs(expected).max())
    assert error < rtol, f"logits differ from PyTorch's by {error:.2e} relative (rtol {rtol})"
    return error
