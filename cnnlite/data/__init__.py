"""Data: datasets, the batch loader, and image transforms.

>>> from cnnlite.data import Digits, DataLoader
>>> loader = DataLoader(Digits(train=True), batch_size=32, shuffle=True, seed=0)
>>> images, labels = next(iter(loader))
>>> images.shape, labels.shape
((32, 1, 8, 8), (32,))
"""
from cnnlite.data import transforms
from cnnlite.data.cifar import CIFAR10, CIFAR100
from cnnlite.data.dataset import ArrayDataset, Dataset, Subset, TensorDataset, random_split
from cnnlite.data.digits import Digits
from cnnlite.data.folder import ImageFolder
from cnnlite.data.loader import DataLoader, default_collate
from cnnlite.data.mnist import MNIST, read_idx

__all__ = ["Dataset", "TensorDataset", "ArrayDataset", "Subset", "random_split", "DataLoader",
           "default_collate", "Digits", "MNIST", "read_idx", "CIFAR10", "CIFAR100",
           "ImageFolder", "transforms"]
