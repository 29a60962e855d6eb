"""The direct convolution loops, ``conv2d_forward`` and ``conv2d_backward`` of
``cnnlite.reference.conv``: their gradients pass the float64 central-difference check and equal
PyTorch's for every stride, padding, dilation and groups; the check catches the classic mistakes;
and the student version of the file (the solution regions replaced) still imports and says what
to implement.

Shapes and hyper-parameters are drawn by hypothesis (``conv_cases`` of test_conv.py, small: the
loops run once per output and the gradient check runs them twice per input element).
"""
import ast
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

import cnnlite as cl
from cnnlite.assignment import stub_source
from cnnlite.reference import conv as loops
from helpers import assert_matches_torch, loops_function
from test_conv import (LANDMARKS, as_pair, conv_cases, make_case, torch_conv_of,
                       with_landmarks)

SOURCE = Path(loops.__file__)
EXERCISES = ("conv2d_forward", "conv2d_backward")


def settings_of(kwargs):
    """(stride, padding, dilation, groups) as the loops take them: pairs and an int."""
    return (*(as_pair(kwargs[name]) for name in ("stride", "padding", "dilation")),
            kwargs["groups"])


def backward_with_bias(x, w, b, gy, *settings):
    return loops.conv2d_backward(x, w, gy, *settings)


def forward_without_bias(x, w, *settings):
    return loops.conv2d_forward(x, w, None, *settings)


def backward_without_bias(x, w, gy, *settings):
    return loops.conv2d_backward(x, w, gy, *settings)[:2]


def loops_conv(kwargs, bias, backward=None):
    """The loops as a function of tensors (x, w) or (x, w, b), for cl.gradcheck. ``backward``
    replaces the loops' backward (same arguments as ``backward_with_bias``)."""
    if bias:
        return loops_function(loops.conv2d_forward, backward or backward_with_bias,
                              *settings_of(kwargs))
    return loops_function(forward_without_bias, backward or backward_without_bias,
                          *settings_of(kwargs))


# --- gradients and values -------------------------------------------------------------------

@with_landmarks
@given(case=conv_cases(max_channels=2, max_side=5))
def test_loops_pass_the_gradient_check(case):
    arrays, kwargs = case
    cl.gradcheck(loops_conv(kwargs, bias=len(arrays) == 3),
                 [cl.tensor(a, requires_grad=True) for a in arrays])


@with_landmarks
@given(case=conv_cases(max_channels=3, max_side=6))
def test_loops_equal_pytorch_values_and_gradients(case):
    arrays, kwargs = case
    assert_matches_torch(loops_conv(kwargs, bias=len(arrays) == 3), torch_conv_of(kwargs),
                         arrays, rtol=1e-12, atol=1e-12)


def test_loops_keep_float32():
    arrays, kwargs = LANDMARKS[0]
    x, w, b = (a.astype(np.float32) for a in arrays)
    y = loops.conv2d_forward(x, w, b, *settings_of(kwargs))
    gradients = loops.conv2d_backward(x, w, np.ones_like(y), *settings_of(kwargs))
    assert y.dtype == np.float32
    assert [g.dtype for g in gradients] == [np.float32] * 3


def test_loops_of_an_empty_batch():
    arrays, kwargs = LANDMARKS[0]
    x, w, _ = arrays
    y = loops.conv2d_forward(x[:0], w, None, *settings_of(kwargs))
    dx, dw, db = loops.conv2d_backward(x[:0], w, y, *settings_of(kwargs))
    assert y.shape == (0, 4, 3, 3) and dx.shape == (0, 3, 7, 7)
    assert not dw.any() and not db.any()


# --- the gradient check catches the classic mistakes ------------------------------------------

def dx_one_pixel_off(x, w, b, gy, *settings):
    """The padding cut off one column too far to the left."""
    dx, dw, db = backward_with_bias(x, w, b, gy, *settings)
    return np.roll(dx, 1, axis=-1), dw, db


def dw_flipped(x, w, b, gy, *settings):
    """A true convolution's kernel instead of the cross-correlation's: flipped in both axes."""
    dx, dw, db = backward_with_bias(x, w, b, gy, *settings)
    return dx, dw[:, :, ::-1, ::-1], db


def db_averaged(x, w, b, gy, *settings):
    """The bias gradient averaged over the outputs instead of summed."""
    dx, dw, db = backward_with_bias(x, w, b, gy, *settings)
    return dx, dw, db / (gy.shape[0] * gy.shape[2] * gy.shape[3])


@pytest.mark.parametrize("wrong_backward, culprit", [
    (dx_one_pixel_off, "input 0"), (dw_flipped, "input 1"), (db_averaged, "input 2")])
def test_the_gradient_check_catches_a_wrong_backward(wrong_backward, culprit):
    arrays, kwargs = make_case(1, 2, 2, (5, 5), (3, 3), stride=(1, 2), padding=1,
                               dilation=(2, 1))
    with pytest.raises(cl.GradcheckError, match=culprit):
        cl.gradcheck(loops_conv(kwargs, bias=True, backward=wrong_backward),
                     [cl.tensor(a, requires_grad=True) for a in arrays])


# --- the student version ----------------------------------------------------------------------

def functions_of(source):
    return {node.name: node for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef)}


def student_version():
    """The file as ``cnnlite assignment make`` gives it to students: the solution regions
    replaced by ``raise NotImplementedError("implement <function>")``."""
    stubbed, regions = stub_source(SOURCE.read_text(), SOURCE.name)
    assert sorted(region.function for region in regions) == sorted(EXERCISES)
    return stubbed


def test_the_body_of_each_exercise_is_one_solution_region():
    """The student gets the signature and the docstring of each exercise, and every other
    function of the file as it is."""
    solution, student = functions_of(SOURCE.read_text()), functions_of(student_version())
    for name in EXERCISES:
        docstring, raise_statement = student[name].body
        assert isinstance(docstring.value, ast.Constant) and docstring.value.value.strip()
        assert ast.unparse(raise_statement) == f"raise NotImplementedError('implement {name}')"
    assert set(student) == set(solution)
    for name in set(solution) - set(EXERCISES):
        assert ast.dump(student[name]) == ast.dump(solution[name])


def test_the_student_version_imports_and_says_what_to_implement():
    namespace = {"__name__": "student_conv"}
    exec(compile(student_version(), "student_conv.py", "exec"), namespace)
    arrays, kwargs = LANDMARKS[0]
    x, w, b = arrays
    with pytest.raises(NotImplementedError, match="^implement conv2d_forward$"):
        namespace["conv2d_forward"](x, w, b, *settings_of(kwargs))
    with pytest.raises(NotImplementedError, match="^implement conv2d_backward$"):
        namespace["conv2d_backward"](x, w, np.ones((2, 4, 3, 3)), *settings_of(kwargs))
