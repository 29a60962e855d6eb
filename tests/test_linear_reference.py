"""linear (y = x @ w^T + b) and its loops in cnnlite.reference.linear.

The op has one vectorised version (a NumPy or cupy matrix product, the same on every device);
the loops, one sum written out term by term per output, are its ground truth. The op table
(``cnnlite/optable/table_conv.py``, run by tests/test_optable.py) checks both, with and
without a bias, on drawn shapes with zero to three leading axes: values against the NumPy
formula and PyTorch, float64 gradients by central differences, float32 and non-contiguous
gradients. Here: the table's checks catch a planted mistake in the op's backward.
"""
import pytest

from cnnlite import optable
from cnnlite.functional import conv
from cnnlite.optable import checks


@pytest.mark.parametrize("check", ["gradient", "torch"])
def test_a_bias_gradient_averaged_instead_of_summed_is_caught(monkeypatch, check):
    spec = optable.spec("linear")
    assert optable.run_check(spec, check, "numpy").passed
    correct_backward = conv.Linear.backward

    def backward_with_the_bias_gradient_averaged(self, gy):
        gx, gw, gb = correct_backward(self, gy)
        return gx, gw, gb / gy.shape[0]

    monkeypatch.setattr(conv.Linear, "backward", backward_with_the_bias_gradient_averaged)
    result = optable.run_check(spec, check, "numpy")
    assert result.status == checks.WRONG_GRADIENT and "input 2" in result.detail, str(result)
