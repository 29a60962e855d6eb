"""The error cnnlite raises for bad arguments and shapes."""


class OpError(ValueError):
    """A bad argument or shape, with a message that names the op (or layer) and the shapes.

    It is a ``ValueError``, so ``except ValueError`` catches it. ``Function.apply`` adds the op's
    name and input shapes to errors from deep inside NumPy; messages of this class already have
    both and pass through unchanged.
    """

    from_cnnlite = True
