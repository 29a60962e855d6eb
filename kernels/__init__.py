"""CUDA C sources of cnnlite's GPU kernels, shipped inside the package as data files.

``importlib.resources.files("cnnlite.kernels")`` finds them in a checkout and in an installed
wheel alike.
"""
