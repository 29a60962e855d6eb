"""The error cnnlite raises for bad arguments and shapes."""


class OpError(ValueError):
    """A bad argument or shape, with a message that names the op (or layer) and the shapes.

    It is a ``ValueError``, so ``except ValueError`` catches it. ``Function.apply`` adds the op's
    name and input shapes to errors from deep inside NumPy; messages of this class already have
    both and pass through unchanged.
    """

    from_cnnlite = True


class ArgumentTypeError(OpError, TypeError):
    """An argument of the wrong kind (``True`` as a kernel size, ``1.5`` as a padding, a string
    as a switch). Both a ``TypeError``, as Python raises for a wrong type, and an ``OpError``, so
    that code catching either sees it."""
