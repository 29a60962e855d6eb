"""Models in and out: weights as safetensors files (and PyTorch's ``.pth`` through torch); Caffe's
network definitions (``caffe``, ``prototxt``) and solver files (``caffe_solver``).

>>> from cnnlite import io, models
>>> model = models.lenet5()
>>> io.save_weights(model, "lenet5.safetensors", metadata={"model": "lenet5"})
>>> report = io.load_weights_into(models.lenet5(), "lenet5.safetensors")
>>> report.ok
True
"""
from cnnlite.io.caffe import CaffeError, CaffeNet, describe_pooling_shapes, load_prototxt
from cnnlite.io.caffe_solver import CaffeSolver, SolverError, data_transform, load_solver
from cnnlite.io.prototxt import Message, PrototxtError, parse_prototxt, read_prototxt
from cnnlite.io.weights import (WeightsError, load_weights, load_weights_into, read_metadata,
                                save_weights)

__all__ = ["WeightsError", "save_weights", "load_weights", "load_weights_into",
           "read_metadata", "CaffeSolver", "SolverError", "load_solver", "data_transform",
           "CaffeError", "CaffeNet", "describe_pooling_shapes", "load_prototxt", "Message",
           "PrototxtError", "parse_prototxt", "read_prototxt"]
