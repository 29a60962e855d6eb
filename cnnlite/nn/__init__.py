"""Layers and models as objects: ``Module``, ``Parameter``, containers, layers, initialisation.

>>> from cnnlite import nn
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
...                       nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(8, 10))
>>> list(model.state_dict())[:3]
['0.weight', '0.bias', '1.weight']

module       Module (registration, state_dict, train/eval, hooks, to(device))
state_dict   load_state_dict checks: LoadReport, StateDictError
parameter    Parameter
container    Sequential, ModuleList, ModuleDict
basic        Identity, Flatten, Dropout
conv         Conv2d, Linear, MaxoutConv2d, MaxoutLinear
pool         Max/Avg/Adaptive/Global/Stochastic/MaxAvg/SpatialPyramid pooling
generalized_pool  GatedMaxAvePool2d, TreePoolMaxAve2d, TreePool2d (Lee et al.), EltwiseAffine
norm         BatchNorm1d, BatchNorm2d, LocalResponseNorm
activation   ReLU and its family, ReLU6, Hardsigmoid, Hardswish, SiLU, Sigmoid, Tanh,
             Softplus, Maxout, APL, Softmax
loss         CrossEntropyLoss, NLLLoss, MSELoss
init         uniform_, normal_, xavier_*, kaiming_*, orthogonal_ (``nn.init.kaiming_normal_``)
lsuv         lsuv_init: layer-sequential unit-variance initialisation
"""
from cnnlite.nn import init
from cnnlite.nn.activation import (APL, ELU, SELU, Hardsigmoid, Hardswish, LeakyReLU,
                                   LogSoftmax, Maxout, PReLU, ReLU, ReLU6, RReLU, ScaledTanh,
                                   ShiftedSoftplus, Sigmoid, SiLU, Softmax, Softplus, Tanh)
from cnnlite.nn.basic import Dropout, Flatten, Identity
from cnnlite.nn.container import ModuleDict, ModuleList, Sequential
from cnnlite.nn.generalized_pool import (EltwiseAffine, GatedMaxAvePool2d, TreePool2d,
                                         TreePoolMaxAve2d)
from cnnlite.nn.conv import Conv2d, Linear, MaxoutConv2d, MaxoutLinear
from cnnlite.nn.loss import CrossEntropyLoss, MSELoss, NLLLoss
from cnnlite.nn.lsuv import REFERENCE_SCRIPT, LSUVLayer, LSUVReport, lsuv_init
from cnnlite.nn.module import HookHandle, Module
from cnnlite.nn.state_dict import LoadReport, StateDictError
from cnnlite.nn.norm import BatchNorm1d, BatchNorm2d, LocalResponseNorm
from cnnlite.nn.parameter import Parameter
from cnnlite.nn.pool import (AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, GlobalAvgPool2d,
                             MaxAvgPool2d, MaxPool2d, SpatialPyramidPool2d, StochasticPool2d)

__all__ = ["Module", "Parameter", "HookHandle", "LoadReport", "StateDictError", "Sequential",
           "ModuleList", "ModuleDict", "Identity", "Flatten", "Dropout", "Conv2d", "Linear",
           "MaxoutConv2d", "MaxoutLinear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "AdaptiveMaxPool2d", "GlobalAvgPool2d", "StochasticPool2d", "MaxAvgPool2d",
           "SpatialPyramidPool2d", "GatedMaxAvePool2d", "TreePoolMaxAve2d", "TreePool2d",
           "EltwiseAffine", "BatchNorm1d", "BatchNorm2d", "LocalResponseNorm", "ReLU",
           "LeakyReLU", "RReLU", "PReLU", "ELU", "SELU", "ReLU6", "Hardsigmoid", "Hardswish",
           "SiLU", "Sigmoid", "Tanh", "ScaledTanh",
           "Softplus", "ShiftedSoftplus", "Maxout", "APL", "Softmax", "LogSoftmax",
           "CrossEntropyLoss", "NLLLoss", "MSELoss", "init", "lsuv_init", "LSUVLayer",
           "LSUVReport", "REFERENCE_SCRIPT"]
