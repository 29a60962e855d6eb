"""``Parameter``: a Tensor that a Module learns.

A layer keeps two kinds of state:

* parameters (conv weights, BN's gamma and beta): learned, so they require grad, show up in
  ``module.parameters()`` and are what an optimiser updates;
* buffers (BN's running mean and variance, its batch counter): saved with the model but never
  learned, so plain Tensors without grad.
"""
from __future__ import annotations

from cnnlite.errors import ArgumentTypeError
from cnnlite.tensor import Tensor, _as_array


class Parameter(Tensor):
    """A Tensor that is a learnable parameter of a Module (``requires_grad=True``).

    Assigning a Parameter as an attribute of a Module registers it there::

        self.weight = Parameter(np.zeros((64, 3, 3, 3), np.float32))

    Parameters
    ----------
    data : array, Tensor or nested list
        The initial values (a Tensor's array is shared, not copied).
    requires_grad : bool
        ``False`` freezes the parameter (an optimiser then skips it: it gets no gradient).
    """

    def __init__(self, data, requires_grad: bool = True):
        array = data.data if isinstance(data, Tensor) else _as_array(data, op_name="Parameter")
        if array.dtype.kind != "f":
            raise ArgumentTypeError(f"Parameter: a learned value is floating-point, got dtype "
                                    f"{array.dtype} of shape {tuple(array.shape)}; convert it "
                                    f"with .astype(np.float32)")
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
