"""Optimisers and learning-rate policies. One training iteration::

    from cnnlite import optim
    optimizer = optim.SGD(optim.caffe_param_groups(model, lr=0.01, weight_decay=5e-4),
                          lr=0.01, momentum=0.9)
    scheduler = optim.lr_scheduler.PolyLR(optimizer, max_iter=320_000, power="linear")

    loss = criterion(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
"""
from cnnlite.optim import lr_scheduler
from cnnlite.optim.adaptive import AdaGrad, Adagrad, Adam, RMSProp, RMSprop
from cnnlite.optim.optimizer import Optimizer, caffe_param_groups, required
from cnnlite.optim.sgd import SGD

__all__ = ["Optimizer", "caffe_param_groups", "required", "SGD", "Adagrad", "AdaGrad",
           "RMSprop", "RMSProp", "Adam", "lr_scheduler"]
