"""Reading and writing model weights: safetensors files, and PyTorch's ``.pth`` through torch.

>>> from cnnlite import io, models
>>> model = models.lenet5()
>>> io.save_weights(model, "lenet5.safetensors", metadata={"model": "lenet5"})
>>> report = io.load_weights_into(models.lenet5(), "lenet5.safetensors")
>>> report.ok
True
"""
from cnnlite.io.weights import (WeightsError, load_weights, load_weights_into, read_metadata,
                                save_weights)

__all__ = ["WeightsError", "save_weights", "load_weights", "load_weights_into",
           "read_metadata"]
